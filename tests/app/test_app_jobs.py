"""Background inference: shared pool, dedup, progress, device, cancel, failures, and the Run control;
in worker processes (the default: progress, cancel, info and errors across the process boundary, a
crashed worker fails its job only) and in threads (a runner that is any Python callable)."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from app import data
from app.jobs import JobManager, RunControl
from app.state import Selection
from app.swath import SwathMap, load
from tests.app_helpers import register_card, write_retrieval


class FakeRunner:
    """Stands in for models.run.run_inference (same signature); steps on demand."""

    def __init__(self, steps=4, fail=None, cache_hit=False, on_done=None):
        self.calls = []
        self.steps = steps
        self.fail = fail
        self.cache_hit = cache_hit
        self.on_done = on_done
        self.go = threading.Event()

    def __call__(self, model_name, orbit, source="synthetic", world_seed=0, device="auto", progress=None,
                 cancel=None, *, info=None):
        self.calls.append((model_name, orbit, source, world_seed, device))
        for k in range(self.steps):
            if progress:
                progress(k, self.steps, f"tile {k}")
            while not self.go.wait(0.01):
                if cancel is not None and cancel.is_set():
                    from models.base import InferenceCancelled

                    raise InferenceCancelled("inference cancelled")
            if self.fail:
                raise RuntimeError(self.fail)
        if info is not None:
            info.update(cache_hit=self.cache_hit, device="cpu (test)")
        if self.on_done:
            self.on_done(model_name, orbit)
        return f"/store/{model_name}/{orbit}"


def process_runner(model_name, orbit, source="synthetic", world_seed=0, device="auto", progress=None,
                   cancel=None, *, info=None):
    """A picklable stand-in for run_inference, for process mode. ``model_name`` picks the act:
    ``exit``/``kill``: the worker dies (os._exit / SIGKILL), ``fail``: raises, ``slow``: reports
    progress until cancelled or until the file $RAINCHECK_TEST_GATE exists; else returns at once."""
    if model_name == "exit":
        os._exit(3)
    if model_name == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if model_name == "fail":
        raise RuntimeError("checkpoint corrupt")
    if model_name == "slow":
        gate = os.environ["RAINCHECK_TEST_GATE"]
        k = 0
        t0 = time.time()
        while not os.path.exists(gate) and time.time() - t0 < 60:
            if cancel is not None and cancel.is_set():
                from models.base import InferenceCancelled

                raise InferenceCancelled("inference cancelled")
            if progress:
                progress(k % 10, 10, f"tile {k}")
            k += 1
            time.sleep(0.05)
    import torch

    if info is not None:
        info.update(cache_hit=False, device="cpu (test worker)", pid=os.getpid(), nice=os.nice(0),
                    threads=torch.get_num_threads(), orbit=int(orbit))
    return f"/store/{model_name}/{orbit}"


def wait_for(cond, timeout=20.0):
    t0 = time.time()
    while not cond():
        if time.time() - t0 > timeout:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


def test_dedup_progress_and_done():
    runner = FakeRunner()
    m = JobManager(runner=runner)
    a = m.submit("m1", 20000)
    b = m.submit("m1", 20000)
    assert a is b
    wait_for(lambda: a.status == "running" and a.message.startswith("tile"))
    assert a.device  # the device it runs on, known before it finishes
    assert 0 <= a.fraction < 1 and a.active
    runner.go.set()
    m.wait(a, timeout=20)
    assert a.status == "done" and a.fraction == 1.0 and a.path == "/store/m1/20000"
    assert a.device == "cpu (test)" and a.cache_hit is False
    assert runner.calls == [("m1", 20000, "synthetic", 0, "auto")]
    assert "computed on cpu (test)" in a.describe()
    # a new request after completion runs again (the store makes it a cache hit)
    c = m.submit("m1", 20000)
    assert c is not a
    m.wait(c, timeout=20)
    m.shutdown()


def test_cancel_and_failure_and_cache_hit():
    runner = FakeRunner()
    m = JobManager(runner=runner, max_workers=2)
    j = m.submit("m1", 1)
    wait_for(lambda: j.status == "running")
    assert m.cancel("m1", 1)
    m.wait(j, timeout=20)
    assert j.status == "cancelled" and j.error is None and not m.cancel("m1", 1)

    bad = FakeRunner(fail="checkpoint corrupt")
    bad.go.set()
    m2 = JobManager(runner=bad)
    f = m2.submit("m2", 2)
    m2.wait(f, timeout=20)
    assert f.status == "failed" and "checkpoint corrupt" in f.error and "failed" in f.describe()

    hit = FakeRunner(steps=0, cache_hit=True)
    m3 = JobManager(runner=hit)
    h = m3.submit("m3", 3)
    m3.wait(h, timeout=20)
    assert h.status == "done" and "cached result" in h.describe()
    for x in (m, m2, m3):
        x.shutdown()


def test_queued_job_can_be_cancelled_before_it_starts():
    runner = FakeRunner()
    m = JobManager(runner=runner, max_workers=1)
    first = m.submit("m1", 1)
    queued = m.submit("m1", 2)
    wait_for(lambda: first.status == "running")
    assert queued.status == "queued" and m.cancel("m1", 2)
    runner.go.set()
    m.wait(first, timeout=20)
    m.wait(queued, timeout=20)
    assert queued.status == "cancelled" and len(runner.calls) == 1
    m.shutdown()


def test_run_control_runs_and_the_map_shows_the_output(data_root):
    for memo in (data._swaths, data._outputs, data._geoms):
        memo.clear()
    register_card("unit-model", "ab" * 32)  # a registered model (outputs are found by its checkpoint)
    sel = Selection(orbit=20000, layers=["reference"], models=["unit-model"])
    swath, _, _ = load(sel)

    def land(model, orbit):
        write_retrieval(swath, model=model, orbit=orbit)

    runner = FakeRunner(on_done=land)
    manager = JobManager(runner=runner)
    rc = RunControl(sel, manager=manager)
    sm = SwathMap(selection=sel)
    rc.param.watch(lambda e: sm.param.trigger("refresh"), "landed")
    assert any("no output for orbit 20000 yet" in a.object for a in sm._alerts.objects)
    run, cancel, bar, text = rc._widgets["unit-model"]
    assert not run.disabled and cancel.disabled
    run.clicks += 1  # press Run
    job = manager.get("unit-model", 20000)
    wait_for(lambda: job.status == "running")
    rc.poll()
    assert run.disabled and not cancel.disabled and bar.visible and "unit-model" in text.object
    runner.go.set()
    manager.wait(job, timeout=30)
    rc.poll()
    assert job.status == "done" and not bar.visible and not run.disabled
    assert [lay.key for lay in sm.layers.layers] == ["reference", "unit-model:precip_mean"]
    assert not any("no output" in a.object for a in sm._alerts.objects)
    manager.shutdown()


def test_run_control_messages():
    rc = RunControl(Selection(models=[]), manager=JobManager(runner=FakeRunner()))
    assert "Select a model" in rc._rows.objects[0].object
    rc.selection.source = "real"  # no granule chosen yet (runs on a granule: tests/app/test_real_run.py)
    assert "choose a real granule" in rc._rows.objects[0].object


@pytest.mark.slow
def test_real_model_runs_in_the_background_and_is_cached(data_root):
    """The shipped bayes-baseline through models.run.run_inference: the job reports the
    device, lands in the model-output store, the map shows it, and a re-run is a cache hit."""
    from models.registry import list_models

    names = [c.name for c in list_models()]
    assert "bayes-baseline" in names, f"shipped models: {names}"
    for memo in (data._swaths, data._outputs, data._geoms):
        memo.clear()
    manager = JobManager()
    job = manager.submit("bayes-baseline", 20000)
    assert job is manager.submit("bayes-baseline", 20000)
    manager.wait(job, timeout=600)
    assert job.status == "done", job.error
    assert job.device and job.device.startswith(("cpu", "cuda", "mps")) and job.cache_hit is False
    sm = SwathMap(selection=Selection(orbit=20000, layers=[], models=["bayes-baseline"], product="pop"))
    lay = sm.layers.layers[0]
    assert lay.key == "bayes-baseline:pop" and np.nanmax(lay.values) <= 1
    again = manager.submit("bayes-baseline", 20000)
    manager.wait(again, timeout=120)
    assert again.status == "done" and again.cache_hit is True and "cached result" in again.describe()
    manager.shutdown()


# -- process mode ------------------------------------------------------------------------------
def test_process_mode_is_the_default_and_starts_workers_lazily():
    m = JobManager()
    assert m.mode == "process" and m.worker_pids() == []
    assert JobManager(runner=FakeRunner()).mode == "thread"
    with pytest.raises(ValueError, match="mode='thread'"):
        JobManager(runner=FakeRunner(), mode="process")  # holds a threading.Event: not picklable
    with pytest.raises(ValueError, match="fork"):
        JobManager(start_method="fork")
    m.shutdown()


def test_process_mode_progress_info_priority_and_dedup(tmp_path, monkeypatch):
    gate = tmp_path / "go"
    monkeypatch.setenv("RAINCHECK_TEST_GATE", str(gate))
    m = JobManager(runner=process_runner, mode="process", max_workers=1)
    a = m.submit("slow", 7)
    assert m.submit("slow", 7) is a  # one computation for identical requests
    wait_for(lambda: a.status == "running" and a.message.startswith("tile"), timeout=120)
    assert a.device and 0 <= a.fraction < 1 and a.active and "tile" in a.describe()
    gate.touch()
    m.wait(a, timeout=60)
    assert a.status == "done" and a.fraction == 1.0 and a.path == "/store/slow/7", a.error
    assert a.device == "cpu (test worker)" and a.cache_hit is False
    pid = a.info["pid"]
    assert pid != os.getpid() and m.worker_pids() == [pid]
    assert a.info["nice"] >= min(19, os.nice(0) + 10) and a.info["threads"] == 1
    b = m.submit("quick", 8)  # the same (warm) worker runs the next job
    m.wait(b, timeout=60)
    assert b.status == "done" and b.info["pid"] == pid and b.info["orbit"] == 8
    assert list(m.history) == [a, b]
    m.shutdown()
    assert m.worker_pids() == []


def test_process_mode_cancel_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("RAINCHECK_TEST_GATE", str(tmp_path / "never"))
    m = JobManager(runner=process_runner, mode="process", max_workers=1)
    j = m.submit("slow", 1)
    queued = m.submit("slow", 2)
    wait_for(lambda: j.status == "running" and j.message.startswith("tile"), timeout=120)
    assert queued.status == "queued" and m.cancel("slow", 2)
    assert m.cancel("slow", 1)
    m.wait(j, timeout=30)
    m.wait(queued, timeout=30)
    assert j.status == "cancelled" and j.error is None and queued.status == "cancelled"
    f = m.submit("fail", 3)
    m.wait(f, timeout=30)
    assert f.status == "failed" and f.error == "RuntimeError: checkpoint corrupt" and "failed" in f.describe()
    m.shutdown()


def test_a_worker_that_dies_fails_its_job_and_a_fresh_worker_takes_over():
    m = JobManager(runner=process_runner, mode="process", max_workers=1)
    ok = m.submit("quick", 1)
    m.wait(ok, timeout=120)
    first = ok.info["pid"]
    e = m.submit("exit", 2)
    m.wait(e, timeout=60)
    assert e.status == "failed" and "WorkerDied" in e.error and "exited with code 3" in e.error, e.error
    k = m.submit("kill", 3)
    m.wait(k, timeout=120)
    assert k.status == "failed" and "killed by SIGKILL" in k.error and "out of memory" in k.error, k.error
    assert "the server is fine" in k.describe()
    again = m.submit("quick", 4)
    m.wait(again, timeout=120)
    assert again.status == "done", again.error
    assert again.info["pid"] not in (first, os.getpid()) and m.worker_pids() == [again.info["pid"]]
    m.shutdown()


def test_serve_installs_a_process_job_manager():
    from click.testing import CliRunner

    from app.cli import main
    from app.commands.serve import make_job_manager

    m = make_job_manager()
    assert (m.mode, m.max_workers, m.nice, m.torch_threads) == ("process", 1, 10, 1) and m.worker_pids() == []
    assert make_job_manager(2, 0, 5, "thread").torch_threads is None
    r = CliRunner().invoke(main, ["serve", "--help"])
    assert r.exit_code == 0 and "--workers" in r.output and "--worker-threads" in r.output


# -- box-cube builds: the other kind of job ----------------------------------------------------
class BuildCancelled(RuntimeError):
    """Like evaluation.cube.BuildCancelled (a ...Cancelled error is a cancellation)."""


def box_builder(spec, main_cube, *, plan=None, progress=None, cancel=None, scheduler=None, model_fns=None):
    """A picklable stand-in for evaluation.boxes.build_box_cube: the box ``exit`` kills its worker;
    else it reports orbit steps until cancelled or until the file $RAINCHECK_TEST_GATE exists."""
    if spec == "exit":
        os._exit(3)
    gate = os.environ["RAINCHECK_TEST_GATE"]
    k = 0
    t0 = time.time()
    while not os.path.exists(gate) and time.time() - t0 < 60:
        if cancel.is_set():
            raise BuildCancelled(f"cancelled after {k} orbits; rerun to resume")
        progress(min(k, 9), 10, f"orbit {k}")
        k += 1
        time.sleep(0.05)
    progress(10, 10, "box cube written")
    return plan["path"]


def test_box_builds_run_in_a_worker_process_of_their_own_beside_inference(tmp_path, monkeypatch):
    from app.boxjobs import BoxJobManager

    gate = tmp_path / "go"
    monkeypatch.setenv("RAINCHECK_TEST_GATE", str(gate))
    m = JobManager(runner=process_runner, mode="process", max_workers=1)
    boxes = BoxJobManager(manager=m, builder=box_builder, mode="process")
    with pytest.raises(ValueError, match="mode='thread'"):
        BoxJobManager(builder=lambda *a, **k: None, mode="process")
    plan = {"spec": "bbox:0,0,1,1", "path": str(tmp_path / "box.zarr"), "main_cube": None}
    b = boxes.submit(plan)
    assert boxes.submit(dict(plan)) is b  # a second session asking for the same box
    wait_for(lambda: b.status == "running" and b.message.startswith("orbit"), timeout=120)
    box_pid = b.info["pid"]
    assert box_pid != os.getpid() and boxes.worker_pids() == [box_pid]
    assert "orbit steps" in b.describe() and 0 <= b.fraction < 1
    # an inference job completes while the (long) box build runs: in a worker of its own
    j = m.submit("quick", 5)
    m.wait(j, timeout=120)
    assert j.status == "done", j.error
    assert b.status == "running"
    assert j.info["pid"] not in (os.getpid(), box_pid) and m.worker_pids() == [j.info["pid"]]
    assert sorted(m.worker_pids(None)) == sorted([box_pid, j.info["pid"]])
    # the box worker runs at a lower CPU priority than the inference worker
    assert os.getpriority(os.PRIO_PROCESS, box_pid) == min(19, j.info["nice"] + 5)
    # cancel: a cancellation (finished orbits kept), not a failure; Compute again finishes
    assert boxes.cancel(plan["path"])
    boxes.wait(b, 30)
    assert b.status == "cancelled" and b.error is None and "resumes" in b.describe()
    gate.touch()
    c = boxes.submit(plan)
    assert c is not b
    boxes.wait(c, 60)
    assert c.status == "done" and c.result == plan["path"] and "box cube ready" in c.describe(), c.error
    assert c.info["pid"] == box_pid  # the warm worker
    # a box worker that dies fails its build only; inference goes on
    d = boxes.submit({"spec": "exit", "path": str(tmp_path / "exit.zarr"), "main_cube": None})
    boxes.wait(d, 60)
    assert d.status == "failed" and "WorkerDied: the box worker process" in d.error and "code 3" in d.error
    assert m.worker_pids() == [j.info["pid"]] and boxes.worker_pids() == []
    assert [x.kind for x in m.history] == ["box", "inference", "box", "box"]
    boxes.shutdown()  # the manager's: only cancels its builds
    assert m.submit("quick", 6) is not None
    m.shutdown()
    assert m.worker_pids(None) == []


def modules_runner(model_name, orbit, source="synthetic", world_seed=0, device="auto", progress=None,
                   cancel=None, *, info=None):
    """Reports where it ran and which of the heavy modules its worker had imported already."""
    import sys

    if info is not None:
        info.update(pid=os.getpid(), had=",".join(m for m in ("torch", "models.registry", "catalogs.simulator")
                                                  if m in sys.modules), device="cpu (test worker)")
    return f"/store/{model_name}/{orbit}"


def test_warm_starts_the_worker_with_torch_and_the_models_before_the_first_job():
    m = JobManager(runner=modules_runner, mode="process", max_workers=1)
    assert m.worker_pids() == []
    assert m.warm(models=["unet-reference"]) == 1
    pids = m.worker_pids()
    assert len(pids) == 1  # started now, not at the first Run
    assert m.warm(models=["unet-reference"]) == 0  # already warm: nothing more started
    j = m.submit("any", 5)
    m.wait(j, timeout=120)
    assert j.status == "done", j.error
    # the first job ran in the warmed worker, which had torch, the models and the simulator loaded
    assert j.info["pid"] == pids[0] and j.info["had"] == "torch,models.registry,catalogs.simulator", j.info
    m.shutdown()
    assert m.worker_pids() == []
    t = JobManager(runner=FakeRunner())
    assert t.warm() == 0  # thread mode: nothing to start
    t.shutdown()

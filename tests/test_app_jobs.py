"""Background inference: shared pool, dedup, progress, device, cancel, failures, and the Run control."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from app import data
from app.jobs import JobManager, RunControl
from app.state import Selection
from app.swath import SwathMap, load
from tests.app_helpers import write_retrieval


class FakeRunner:
    """Stands in for models.inference.run_inference (same signature); steps on demand."""

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
    rc.selection.source = "real"
    assert "synthetic orbits" in rc._rows.objects[0].object


@pytest.mark.slow
def test_real_model_runs_in_the_background_and_is_cached(data_root):
    """The shipped bayes-baseline through models.inference.run_inference: the job reports the
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

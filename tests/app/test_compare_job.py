"""The model comparison as a job of the app's one job system (app.comparejobs), on the real engine
(app.jobengine.JobManager) and the real comparison (evaluation.compare.compare of the shipped
Bayesian baseline on the tiny config's held-out sets: about a second once the sets are simulated):
the stored result is the comparison's, two sessions asking for the same comparison share one run and
both see its result, Cancel from the view stops it with nothing written, and the engine imports no
Panel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app.comparejobs import ComparisonJobs, normalise, request_key
from app.jobengine import JobManager

ROOT = Path(__file__).resolve().parents[2]


def _config():
    """The tiny config with a tiny future-decades split: the held-out sets of these comparisons."""
    from models.registry import load_config

    cfg = load_config("tiny")
    cfg["data"]["ood"] = {"start": "2055-01-01", "end": "2059-12-31", "orbits": 1, "scenes_per_orbit": 1,
                          "scene_scans": 64}
    return cfg


#: the model compared (shipped: no training needed; it loads and predicts fast)
MODEL = "bayes-baseline"
#: a small but real comparison: the model on the tiny held-out sets, no OOD detector
SETTINGS = {"config": _config(), "reference": MODEL, "draws": 2, "n_boot": 3, "ood": False}


@pytest.fixture(scope="module")
def sets_root(tmp_path_factory):
    """A data root with the held-out sets of :data:`SETTINGS` simulated."""
    from evaluation.compare import heldout_sets

    root = tmp_path_factory.mktemp("compare-job-root")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAINCHECK_DATA_ROOT", str(root))
        mp.delenv("RAINCHECK_READ_ROOTS", raising=False)
        heldout_sets(SETTINGS["config"])
    return root


@pytest.fixture
def root(sets_root, tmp_path, monkeypatch):
    """A fresh copy of that data root for one test (no comparison stored, no scores cached)."""
    r = tmp_path / "root"
    shutil.copytree(sets_root, r)
    monkeypatch.setenv("RAINCHECK_DATA_ROOT", str(r))
    monkeypatch.delenv("RAINCHECK_READ_ROOTS", raising=False)
    return r


def wait_for(cond, timeout=60.0):
    t0 = time.time()
    while not cond():
        if time.time() - t0 > timeout:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


class Gated:
    """The real evaluation.compare.compare, held at its first "predicting" step until ``go`` is
    set or the job is cancelled, so a test can act while it runs; counts the runs."""

    def __init__(self):
        self.go = threading.Event()
        self.at_gate = threading.Event()
        self.calls = []

    def __call__(self, names, *, progress=None, cancel=None, **kw):
        from evaluation.compare import compare

        self.calls.append(list(names))

        def hold(done, total, message=""):
            progress(done, total, message)
            if "predicting" in message and not self.at_gate.is_set():
                self.at_gate.set()
                t0 = time.time()
                while not self.go.is_set() and not cancel.is_set() and time.time() - t0 < 60:
                    time.sleep(0.01)

        return compare(names, progress=hold, cancel=cancel, **kw)


def _stored(path) -> dict:
    return json.loads(Path(path).read_text())


def test_the_engine_imports_no_panel():
    code = ("import sys, app.jobengine, app.comparejobs\n"
            "print(','.join(m for m in ('panel', 'bokeh', 'holoviews', 'param') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
    # the widgets live apart, and the old import path still gives the engine's names
    from app import jobengine, jobs

    assert jobs.JobManager is jobengine.JobManager and jobs.get_manager is jobengine.get_manager
    assert jobs.Job is jobengine.Job and jobs.Kind is jobengine.Kind and jobs.sendable is jobengine.sendable
    assert not hasattr(jobengine, "JobRow") and not hasattr(jobengine, "RunControl")


def test_requests_are_normalised_and_keyed_by_models_hashes_and_settings(root):
    from models.errors import ModelError
    from models.registry import get_card

    a, sa = normalise(["b", "ref", "a", "b"], {"reference": "ref"})
    assert a == ["ref", "a", "b"] and sa["draws"] == 4 and sa["config"] == "unet-reference"
    assert normalise(["a", "b"], {"reference": "ref"})[0] == a  # the reference comes first
    with pytest.raises(ValueError, match="unknown comparison setting.*boot.*use config"):
        normalise([MODEL], {"boot": 3})
    names, full = normalise([MODEL], SETTINGS)
    key = request_key(names, full, root / "c.json")
    assert key[1] == (get_card(MODEL).checkpoint_sha256,)
    assert key == request_key(*normalise([], dict(SETTINGS)), root / "c.json")
    assert key != request_key(*normalise([MODEL], dict(SETTINGS, draws=3)), root / "c.json")
    assert key != request_key(*normalise([MODEL, "unet-reference"], SETTINGS), root / "c.json")
    with pytest.raises(ModelError):
        request_key([MODEL, "no-such-model"], full, root / "c.json")


def test_a_comparison_job_stores_the_comparison_with_progress(root):
    from evaluation.compare import compare, default_result_path
    from evaluation.report import clean

    jobs = ComparisonJobs(JobManager(mode="thread"))
    assert jobs.mode == "thread"
    job = jobs.submit([MODEL], **SETTINGS)
    jobs.wait(job, timeout=300)
    assert job.status == "done", job.error
    assert job.path == str(default_result_path()) and job.fraction == 1.0 and job.info["models"] == 1
    assert "comparison stored" in job.describe()
    got = _stored(job.path)
    # the same numbers as the comparison called directly (its scores now come from the cache)
    seen = []
    direct = clean(compare([MODEL], **SETTINGS, progress=lambda d, t, m="": seen.append((d, t, m))))
    assert got["schema"] == "raincheck.compare/1" and list(got["models"]) == [MODEL]
    assert got["models"] == direct["models"] and got["thresholds_mm_h"] == direct["thresholds_mm_h"]
    assert np.isfinite(got["models"][MODEL]["test"]["crps"])
    # progress over the stages only moves forward and ends at its total
    fr = [d / t for d, t, _ in seen]
    assert fr == sorted(fr) and seen[-1][0] == seen[-1][1] and "cached scores" in " ".join(m for *_, m in seen)
    jobs.manager.shutdown()


def test_two_sessions_share_one_comparison_and_both_see_its_result(root):
    from app.views.compare import CompareView

    gated = Gated()
    jobs = ComparisonJobs(JobManager(mode="thread"), compare_fn=gated)
    one, two = CompareView(comparisons=jobs, settings=SETTINGS), CompareView(comparisons=jobs, settings=SETTINGS)
    for v, order in ((one, [MODEL]), (two, [])):  # the reference is always compared
        v.picker.options = [MODEL]
        v.picker.value = order
    a = one.run()
    wait_for(gated.at_gate.is_set)
    b = two.run()
    assert a is b and len(jobs.jobs()) == 1
    one.poll()
    assert one.running and one.row.button.disabled and not one.row.cancel_button.disabled and one.row.bar.visible
    assert 0 < a.fraction < 1 and "predicting" in a.message
    # a third session that opens the view meanwhile shows the running comparison
    three = CompareView(comparisons=jobs, settings=SETTINGS)
    three.poll()
    assert three.job is a and three.running and f"comparison of {MODEL}" in three.row.text.object
    gated.go.set()
    jobs.wait(a, timeout=300)
    assert a.status == "done", a.error
    assert len(gated.calls) == 1  # one computation for every session
    for v in (one, two, three):
        v.poll()
        assert not v.running and not v.row.button.disabled
        assert v.result is not None and list(v.result["models"]) == [MODEL], v.status.object
        assert v.result["models"][MODEL]["test"]["crps"] == _stored(a.path)["models"][MODEL]["test"]["crps"]
    jobs.manager.shutdown()


def test_cancel_from_the_view_stops_the_comparison_with_nothing_written(root):
    from app.views.compare import CompareView
    from evaluation.compare import default_result_path

    gated = Gated()
    jobs = ComparisonJobs(JobManager(mode="thread"), compare_fn=gated)
    v = CompareView(comparisons=jobs, settings=SETTINGS)
    v.picker.options, v.picker.value = [MODEL], [MODEL]
    job = v.run()
    wait_for(gated.at_gate.is_set)
    assert job.status == "running" and "predicting" in job.message
    v.cancel()  # the Cancel button
    jobs.wait(job, timeout=300)
    assert job.status == "cancelled" and job.error is None and job.result is None
    assert "no result written" in job.describe()
    out = default_result_path()
    assert not out.exists()
    left = sorted(p.name for p in out.parent.rglob("*")) if out.parent.exists() else []
    assert left in ([], ["models"]), left  # no result, no temporary file, no half-scored model
    v.poll()
    assert not v.running and "cancelled" in v.status.object and not v.row.button.disabled
    # Run again: it completes and the view shows it
    gated.go.set()
    again = v.run()
    assert again is not job
    jobs.wait(again, timeout=300)
    v.poll()
    assert again.status == "done" and out.exists() and v.result is not None, again.error
    jobs.manager.shutdown()


def test_an_unknown_model_is_a_message_not_a_job(root):
    from app.views.compare import CompareView

    jobs = ComparisonJobs(JobManager(mode="thread"))
    v = CompareView(comparisons=jobs)
    v.picker.options, v.picker.value = [MODEL, "gone"], ["gone"]
    assert v.run() is None and jobs.jobs() == []
    assert "cannot run the comparison" in v.status.object and "gone" in v.status.object
    jobs.manager.shutdown()


@pytest.mark.slow
def test_in_a_worker_process_two_requests_run_once(root):
    """What ``raincheck serve`` does: the comparison in a worker process of its own, below
    the inference workers' CPU priority; the same request twice is one job."""
    jobs = ComparisonJobs(JobManager(mode="process"))
    assert jobs.mode == "process"
    a = jobs.submit([MODEL], **SETTINGS)
    b = jobs.submit([MODEL], **dict(SETTINGS))
    assert a is b and [j.kind for j in jobs.manager.history] == ["compare"]
    jobs.wait(a, timeout=300)
    assert a.status == "done", a.error
    pid = a.info["pid"]
    assert pid != os.getpid() and jobs.worker_pids() == [pid]
    assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, os.nice(0) + jobs.manager.nice + 5)
    assert list(_stored(a.path)["models"]) == [MODEL]
    jobs.manager.shutdown()
    assert jobs.worker_pids() == []

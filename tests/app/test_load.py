"""Many users: 4 concurrent browser sessions (one Chromium, 4 contexts) open the app, pick orbits
(two orbits, each asked for by two sessions at once) and run the shipped U-Net through it, and
switch views all at the same time. No cross-talk, no deadlock, the same inference requested by
two sessions at once runs once, every asset comes from the server itself, and every session sees
every view's figures drawn. (How the served app holds up with 8 sessions, 10 switches each, is
timed by ``python -m benchmarks.bench_app --parts load``; this test checks that concurrent
sessions are served correctly, which 4 sessions on 2 orbits with 2 workers already exercise.)

What is waited for is what a user waits for: a page counts as loaded when the swath map is drawn
(not when the HTML arrived), and a view switch as done when the view's figures are drawn in the
browser (not when its first line of text arrived); the sessions switch at the same time (each
clicks, then all are waited for), as users do. The times are printed, not asserted: the speed
goals are checked by ``python -m benchmarks.bench_app --parts load``.

The job manager is the one `raincheck serve` uses (inference in worker processes, two of them
here); computations are counted from its job records (one record per run of the model) and the
model-output store, since the runs happen in other processes."""

from __future__ import annotations

import re
import time
from collections import Counter

import numpy as np
import pytest

from tests.app_helpers import RENDERED_JS, VIEW_MARKS
from tests.app.test_browser import CHROMIUM, CHROMIUM_ARGS, _errors, _query, _wait_query, watch

pytestmark = [pytest.mark.browser, pytest.mark.slow]

N_SESSIONS = 4
ORBITS = [20100, 20101]  # each asked for by two sessions at the same time, both run at once (2 workers)
MODEL = "unet-reference"
TIMEOUT_MS = 240_000


@pytest.fixture(scope="module")
def loaded_server(tmp_path_factory, small_cube_copy):
    from app import data, jobs
    from app.commands.serve import make_server
    from tests.app.test_app_serve import free_port, wait_http

    root = tmp_path_factory.mktemp("load-data-root")
    mp = pytest.MonkeyPatch()
    mp.setenv("RAINCHECK_DATA_ROOT", str(root))
    for memo in (data._swaths, data._outputs, data._geoms):
        memo.clear()
    manager = jobs.JobManager(max_workers=2)  # the real inference, in worker processes
    assert manager.mode == "process"
    jobs.set_manager(manager)
    cube = small_cube_copy(root / "cube.zarr")
    port = free_port()
    srv = make_server(port=port, threaded=True, cube_path=str(cube))
    wait_http(f"http://127.0.0.1:{port}/health")
    yield f"http://127.0.0.1:{port}", manager
    srv.stop()
    manager.shutdown()
    jobs.set_manager(None)
    mp.undo()


def wait_drawn(page, view):
    """Until ``view`` is answered and its figures are drawn in ``page`` (what the user waits for)."""
    mark, canvas = VIEW_MARKS[view]
    page.get_by_text(mark).first.wait_for(state="visible")
    page.wait_for_function(RENDERED_JS, arg=canvas, polling=50)


def test_concurrent_sessions_run_inference_without_cross_talk(loaded_server, tmp_path):
    from playwright.sync_api import sync_playwright

    from app import data
    from app.state import VIEW_LABELS

    url, manager = loaded_server
    loads: list[float] = []
    latencies: list[float] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pages, logs, opened = [], [], []
        try:
            # every session opens the app at the same time
            for k in range(N_SESSIONS):
                ctx = browser.new_context(viewport={"width": 1400, "height": 950})
                page = ctx.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                log: list = []
                watch(page, log)
                orbit = ORBITS[k % len(ORBITS)]
                opened.append(time.perf_counter())
                page.goto(f"{url}/?orbit={orbit}&models={MODEL}", wait_until="commit")
                pages.append(page)
                logs.append(log)
            for t0, page in zip(opened, pages):
                wait_drawn(page, "swath")  # the page is there for the user once its map is drawn
                loads.append(time.perf_counter() - t0)
            # every session presses Run for its orbit, pairs of sessions at the same time
            for page in pages:
                page.get_by_role("button", name=f"Run {MODEL}").click()
            # under that load, all sessions switch views at the same time: each switch is timed
            # until the view's figures are drawn
            # three views (every view is switched to in test_browser.test_app_end_to_end; bench_app switches
            # 10 times each): the cube views with the most figures, and back to the map
            for v in ["distributions", "extremes", "swath"]:
                clicked = []
                for page in pages:
                    clicked.append(time.perf_counter())
                    page.get_by_text(VIEW_LABELS[v], exact=True).first.click()
                for t0, page in zip(clicked, pages):
                    _wait_query(page, "view", v)
                    wait_drawn(page, v)
                    latencies.append(time.perf_counter() - t0)
                    assert page.locator(".alert-danger").count() == 0, v
            # every session sees its own orbit's output land, nobody else's
            for k, page in enumerate(pages):
                orbit = ORBITS[k % len(ORBITS)]
                page.get_by_text(re.compile(f"{MODEL} · orbit {orbit}: (computed|cached result)")).first.wait_for()
                q = _query(page)
                assert q["orbit"] == str(orbit), (k, q)
                assert page.get_by_label(re.compile("Orbit number")).input_value() == str(orbit)
                assert page.locator(".alert-danger").count() == 0
        finally:
            for k, page in enumerate(pages):
                try:
                    page.screenshot(path=str(tmp_path / f"session-{k}.png"))
                except Exception:
                    pass
            browser.close()
    # each (model, orbit) computed exactly once although two sessions asked for it together:
    # every run of the model is a job record; a computation is a run that was not a cache hit
    records = [j for j in manager.history if j.kind == "inference"]
    for job in records:
        manager.wait(job, timeout=60)
    assert all(j.status == "done" for j in records), [(j.key, j.status, j.error) for j in records]
    calls = Counter((j.model, j.orbit) for j in records)
    computed = Counter((j.model, j.orbit) for j in records if not j.cache_hit)
    assert sorted(computed) == sorted((MODEL, o) for o in ORBITS)
    assert all(data.output_stored(MODEL, o) for o in ORBITS)
    assert all(j.device for j in records if not j.cache_hit), records
    assert set(computed.values()) == {1}, computed
    assert all(calls[(MODEL, o)] <= 2 for o in ORBITS), calls
    print(f"\n{N_SESSIONS} sessions opened at once: swath map drawn after median {np.median(loads):.1f} s, "
          f"max {max(loads):.1f} s")
    print(f"{len(latencies)} view switches, all sessions at once, under inference load, until the figures are "
          f"drawn: median {np.median(latencies):.2f} s, p95 {np.percentile(latencies, 95):.2f} s, "
          f"max {max(latencies):.2f} s")
    runs = [j.finished - j.submitted for j in records if not j.cache_hit]
    print(f"inference ({manager.mode} mode, {manager.max_workers} workers): {len(runs)} computations, "
          f"{min(runs):.1f}-{max(runs):.1f} s from request to output; {len(records) - len(runs)} cache hits")
    for log in logs:  # no console or page error, nothing asked of another host
        assert _errors(log) == []

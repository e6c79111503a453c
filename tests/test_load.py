"""Many users: 8 concurrent browser sessions (one Chromium, 8 contexts) pick orbits and run the
shipped U-Net through the app. No cross-talk, no deadlock, the same inference requested by two
sessions at once runs once, and view switches stay responsive under that load (p95 reported).

The job manager is the one `raincheck serve` uses (inference in worker processes, two of them
here); computations are counted from its job records (one record per run of the model) and the
model-output store, since the runs happen in other processes."""

from __future__ import annotations

import re
import time
from collections import Counter

import numpy as np
import pytest

from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, _query, _wait_query

pytestmark = [pytest.mark.browser, pytest.mark.slow]

N_SESSIONS = 8
ORBITS = [20100, 20101, 20102, 20103]  # each asked for by two sessions at the same time
MODEL = "unet-reference"
TIMEOUT_MS = 240_000


@pytest.fixture(scope="module")
def loaded_server(tmp_path_factory):
    from app import data, jobs
    from app.commands.serve import make_server
    from tests.app_helpers import small_cube
    from tests.test_app_serve import free_port, wait_http

    root = tmp_path_factory.mktemp("load-data-root")
    mp = pytest.MonkeyPatch()
    mp.setenv("RAINCHECK_DATA_ROOT", str(root))
    for memo in (data._swaths, data._outputs, data._geoms):
        memo.clear()
    manager = jobs.JobManager(max_workers=2)  # the real inference, in worker processes
    assert manager.mode == "process"
    jobs.set_manager(manager)
    cube = small_cube(root / "cube.zarr")
    port = free_port()
    srv = make_server(port=port, threaded=True, cube_path=str(cube))
    wait_http(f"http://127.0.0.1:{port}/health")
    yield f"http://127.0.0.1:{port}", manager
    srv.stop()
    manager.shutdown()
    jobs.set_manager(None)
    mp.undo()


def test_eight_sessions_run_inference_concurrently(loaded_server, tmp_path):
    from playwright.sync_api import sync_playwright

    from app.state import VIEW_LABELS

    from app import data

    url, manager = loaded_server
    latencies: list[float] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pages, logs = [], []
        try:
            for k in range(N_SESSIONS):
                ctx = browser.new_context(viewport={"width": 1400, "height": 950})
                page = ctx.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                log: list = []
                page.on("console", lambda m, log=log: log.append((m.type, m.text)))
                page.on("pageerror", lambda e, log=log: log.append(("pageerror", str(e))))
                orbit = ORBITS[k % len(ORBITS)]
                page.goto(f"{url}/?orbit={orbit}&models={MODEL}")
                pages.append(page)
                logs.append(log)
            # every session presses Run for its orbit, pairs of sessions at the same time
            for page in pages:
                page.get_by_role("button", name=f"Run {MODEL}").click()
            # under that load: switch views in every session and time each switch
            views = ["distributions", "extremes", "trends", "scores", "swath"]
            shows = {"distributions": "baseline:", "extremes": "Tail index per source", "trends": "Verdicts",
                     "scores": "click a column to sort", "swath": "Click a pixel"}
            for v in views:
                for page in pages:
                    t0 = time.perf_counter()
                    page.get_by_text(VIEW_LABELS[v], exact=True).first.click()
                    _wait_query(page, "view", v)
                    page.get_by_text(shows[v]).first.wait_for()
                    latencies.append(time.perf_counter() - t0)
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
    records = list(manager.history)
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
    p95 = float(np.percentile(latencies, 95))
    print(f"\n{N_SESSIONS} sessions, {len(latencies)} view switches under inference load: "
          f"median {np.median(latencies):.2f} s, p95 {p95:.2f} s, max {max(latencies):.2f} s")
    runs = [j.finished - j.submitted for j in records if not j.cache_hit]
    print(f"inference ({manager.mode} mode, {manager.max_workers} workers): {len(runs)} computations, "
          f"{min(runs):.1f}-{max(runs):.1f} s from request to output; {len(records) - len(runs)} cache hits")
    for log in logs:
        assert [m for m in log if m[0] in ("error", "pageerror")] == []

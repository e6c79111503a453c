"""The app in a real browser (Debian's Chromium via Playwright): load, pick an orbit, run a model,
see the map, switch through every view (the model comparison included), export PDF, PNG and the
comparison as SVG, reload a shared link, no console errors.

The server runs in this process (threaded), on a free localhost port, with an isolated data root.
"Run" is the real job manager running the shipped reference U-Net on a whole orbit; everything
is the real stack (the climatology cube and the stored comparison are small real ones built for the test).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

CHROMIUM = os.environ.get("RAINCHECK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 60_000

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory, small_cube_copy):
    from tests.app.test_app_serve import free_port, wait_http

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM} (.ci/run installs Debian's chromium)")
    root = tmp_path_factory.mktemp("browser-data-root")
    mp = pytest.MonkeyPatch()
    mp.setenv("RAINCHECK_DATA_ROOT", str(root))
    from app import boxjobs, data, jobs
    from app.commands.serve import make_server
    from app.views.compare import save_result
    from tests.app_helpers import cube_model, small_comparison

    for memo in (data._swaths, data._outputs, data._geoms):
        memo.clear()

    # the real job manager running the shipped reference U-Net (real inference, on CPU here)
    manager = jobs.JobManager()
    jobs.set_manager(manager)
    # "Compute this box" builds box cubes in the server (the cube's stand-in model included)
    box_manager = boxjobs.BoxJobManager(model_fns={"unit-model": cube_model})
    boxjobs.set_box_manager(box_manager)
    cube = small_cube_copy(root / "cube.zarr")
    save_result(small_comparison())  # what `raincheck compare` stores, for the comparison view
    port = free_port()
    srv = make_server(port=port, threaded=True, cube_path=str(cube))
    wait_http(f"http://127.0.0.1:{port}/health")
    yield f"http://127.0.0.1:{port}"
    srv.stop()
    manager.shutdown()
    jobs.set_manager(None)
    box_manager.shutdown()
    boxjobs.set_box_manager(None)
    mp.undo()


@pytest.fixture(scope="module")
def rc_browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _errors(page_log):
    """Console errors, page errors and requests to another host than this machine (every asset
    the page needs is served by raincheck itself: air-gapped labs have no CDN)."""
    return [m for m in page_log if m[0] in ("error", "pageerror", "external request")]


def watch(page, log):
    """Log ``page``'s console messages, page errors and requests to other hosts into ``log``."""
    from tests.app_helpers import external_request

    page.on("console", lambda m: log.append((m.type, m.text)))
    page.on("pageerror", lambda e: log.append(("pageerror", str(e))))
    page.on("request", lambda r: log.append(("external request", r.url)) if external_request(r.url) else None)
    return page


def _open(rc_browser, url, log, wait_canvas=True):
    page = rc_browser.new_page(viewport={"width": 1500, "height": 1000}, accept_downloads=True)
    page.set_default_timeout(TIMEOUT_MS)
    watch(page, log)
    page.goto(url)
    if wait_canvas:
        page.wait_for_selector("canvas", state="attached")
    return page


def _query(page) -> dict:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


def _wait_query(page, key, value, timeout=60):
    t0 = time.time()
    while _query(page).get(key) != value:
        if time.time() - t0 > timeout:
            raise AssertionError(f"URL never got {key}={value}: {page.url}")
        page.wait_for_timeout(200)


CLICK_JS = """([X, Y]) => {
  const out = [], seen = new Set();
  function walk(v) { if (!v || seen.has(v)) return; seen.add(v);
    if (v.frame && v.frame.x_scale && v.canvas_view) out.push(v);
    for (const c of (v.child_views ?? [])) walk(c); }
  for (const v of (Bokeh.index.values ? Bokeh.index.values() : Object.values(Bokeh.index))) walk(v);
  const live = out.map(v => [v, v.canvas_view.el.getBoundingClientRect()])
    .filter(([v, r]) => v.canvas_view.el.isConnected && r.width > 0 && r.height > 0)
    .sort((a, b) => (a[1].top - b[1].top) || (a[1].left - b[1].left));  // the top-left map
  if (!live.length) return null;
  const [pv, r] = live[0];
  return {x: r.left + pv.frame.x_scale.compute(X), y: r.top + pv.frame.y_scale.compute(Y)};
}"""


def _click_map(page, x, y):
    """Click the first map at data coordinates (x, y)."""
    pos = page.evaluate(CLICK_JS, [x, y])
    assert pos, "no Bokeh plot found"
    page.mouse.click(pos["x"], pos["y"])


def _export(page, fmt, tmp_path):
    page.get_by_role("button", name=fmt.upper(), exact=True).click()
    page.locator(".rc-export button").click()
    page.get_by_text(re.compile(f"exported \\({fmt.upper()},")).wait_for()
    link = page.locator(".rc-dl-figure button", has_text=f".{fmt}")
    link.wait_for()
    with page.expect_download() as dl:
        link.click()
    out = tmp_path / dl.value.suggested_filename
    dl.value.save_as(out)
    return out


ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def server_errors():
    """ERROR records logged by the in-process server (tornado, bokeh, panel) during a test."""
    import logging

    records = []

    class Grab(logging.Handler):
        def emit(self, record):
            records.append(f"{record.name}: {record.getMessage()}")

    h = Grab(level=logging.ERROR)
    logging.getLogger().addHandler(h)
    yield records
    logging.getLogger().removeHandler(h)


@pytest.fixture
def pages():
    """Pages opened by a test; screenshots of them go to test-artifacts/ when it fails."""
    opened = []
    yield opened
    ARTIFACTS.mkdir(exist_ok=True)
    for i, p in enumerate(opened):
        try:
            p.screenshot(path=str(ARTIFACTS / f"browser-last-{i}.png"))
        except Exception:
            pass


def test_app_end_to_end(server, rc_browser, tmp_path, pages, server_errors):
    log = []
    page = _open(rc_browser, server + "/", log)
    pages.append(page)
    # the swath map of the default orbit: three linked maps, no error
    page.get_by_text("Swath map").first.wait_for()
    assert page.locator(".alert-danger").count() == 0

    # pick another orbit by number: the URL follows
    orbit = page.get_by_label(re.compile("Orbit number"))
    orbit.fill("20001")
    orbit.press("Enter")
    _wait_query(page, "orbit", "20001")

    # choose a model: it has no output yet, the map says so
    page.locator(".choices").first.click()
    page.keyboard.type("unet-reference")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")  # close the list of the other registered models
    page.get_by_text(re.compile("no output for orbit 20001 yet")).wait_for()

    # Run it: progress with the device, then the output lands and the message goes
    page.get_by_role("button", name="Run unet-reference").click()
    page.get_by_text(re.compile(r"unet-reference · orbit 20001: .*cpu|computed on cpu")).first.wait_for()
    page.get_by_text(re.compile("computed on cpu")).wait_for(timeout=240_000)
    page.get_by_text(re.compile("no output for orbit 20001 yet")).wait_for(state="detached")
    assert page.locator(".alert-danger").count() == 0

    # click a pixel in the middle of the swath: its predicted distribution appears
    from app import data as appdata
    from app.geometry import swath_geometry

    ds = appdata.load_swath(None, orbit=20001)
    g = swath_geometry(ds["lat"].values, ds["lon"].values)
    j = ds.sizes["cross_track"] // 2
    i = int(np.argmin(np.abs(ds["lat"].values[:, j])))  # mid-map: near the equator
    readout = page.get_by_text(re.compile(r"Pixel.* scan \d+, pixel \d+"))
    for _ in range(10):  # the maps may still be re-rendering after the output landed
        _click_map(page, float(g.x[i, j]), float(g.y[i, j]))
        try:
            readout.wait_for(timeout=5000)
            break
        except Exception:
            continue
    readout.wait_for()
    page.locator(".rc-pixel-plot canvas").first.wait_for(state="attached")

    # export the swath view as PNG and PDF
    png = _export(page, "png", tmp_path)
    assert png.suffix == ".png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(png) as im:
        assert abs(im.info["dpi"][0] - 300) < 1
    pdf = _export(page, "pdf", tmp_path)
    assert pdf.suffix == ".pdf" and pdf.read_bytes()[:5] == b"%PDF-"

    # switch through every view: each shows its content, no error
    from app.state import VIEW_LABELS

    shows = {"distributions": "baseline:", "extremes": "Tail index per source", "trends": "Verdicts",
             "scores": "click a column to sort", "compare": "Held-out sets of", "swath": "Pixel",
             "warming": "Paired counterfactual design"}
    assert set(shows) == set(VIEW_LABELS)
    for v in ("distributions", "extremes", "trends", "scores", "compare", "warming", "swath"):
        page.get_by_text(VIEW_LABELS[v], exact=True).first.click()
        _wait_query(page, "view", v)
        page.get_by_text(shows[v]).first.wait_for()
        assert page.locator(".alert-danger").count() == 0, v
        if v == "compare":
            # the comparison's tables and charts, and its export for papers
            assert page.locator(".rc-compare-scores .tabulator-row").count() == 6
            page.locator(".rc-compare-summary").get_by_text("unit-tail").wait_for()
            svg = _export(page, "svg", tmp_path)
            assert svg.name == "raincheck_compare.svg" and svg.read_text().lstrip().startswith("<?xml")

    # a shared link restores the same state in a new page
    page.get_by_text(VIEW_LABELS["trends"], exact=True).first.click()
    _wait_query(page, "view", "trends")
    shared = page.url
    q = _query(page)
    assert q["orbit"] == "20001" and "unet-reference" in q["models"]
    log2 = []
    page2 = rc_browser.new_page(viewport={"width": 1500, "height": 1000})
    page2.set_default_timeout(TIMEOUT_MS)
    watch(page2, log2)
    pages.append(page2)
    page2.goto(shared)
    page2.get_by_text("Verdicts").first.wait_for()  # opens on the shared view
    assert page2.get_by_label(re.compile("Orbit number")).input_value() == "20001"
    page2.get_by_role("button", name="Run unet-reference").wait_for(state="attached")  # the model is selected
    assert _query(page2) == q

    assert _errors(log) == [] and _errors(log2) == [], (_errors(log), _errors(log2))
    assert server_errors == []


def test_bad_link_shows_messages_not_tracebacks(server, rc_browser, pages, server_errors):
    log = []
    page = _open(rc_browser, server + "/?orbit=99999999&channel=XYZ", log, wait_canvas=False)
    pages.append(page)
    page.get_by_text(re.compile("does not exist in the synthetic record")).wait_for()
    page.get_by_text(re.compile("ignored the link's channel")).wait_for()
    assert "Traceback" not in page.content()
    assert _errors(log) == [] and server_errors == []


OUTLINE_JS = """() => {
  // paths of the region outline (dashed pink MultiLine) that have data, on every map
  const n = [];
  for (const doc of Bokeh.documents) for (const m of doc._all_models.values()) {
    const c = m.glyph?.line_color;
    if (m.type === "GlyphRenderer" && m.glyph.type === "MultiLine" && (c?.value ?? c) === "#ff1493")
      n.push((m.data_source.data.xs ?? []).length);
  }
  return n;
}"""


def _drag_map(page, a, b):
    """Drag on the first map from data point a to data point b (the active drag tool acts)."""
    p0, p1 = page.evaluate(CLICK_JS, list(a)), page.evaluate(CLICK_JS, list(b))
    assert p0 and p1, "no Bokeh plot found"
    page.mouse.move(p0["x"], p0["y"])
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(p0["x"] + (p1["x"] - p0["x"]) * k / 10, p0["y"] + (p1["y"] - p0["y"]) * k / 10)
        page.wait_for_timeout(30)
    page.mouse.up()


def test_draw_a_box_region_on_the_map(server, rc_browser, pages, server_errors):
    """Box-select on the swath map: the drawn box becomes the region (URL, sidebar), its outline
    stays on the maps, and the evaluation views use it: the cube (built without this box) offers
    "Compute this box", and once its box cube is built the Distributions view answers for it."""
    from app import data as appdata
    from app.geometry import swath_geometry
    from evaluation import cube as CB
    from evaluation.regions import get_region

    log = []
    # an orbit of the test cube's record, the box drawn on the part of it the cube holds (its
    # first 300 scans), so the cube's orbits cross the box
    orbit = CB.record_orbits(years=(2012, 2021), months=(1, 7), per_month=1)[0]
    page = _open(rc_browser, server + f"/?orbit={orbit}&layers=Tb,reference", log)
    pages.append(page)
    ds = appdata.load_swath(None, orbit=orbit)
    g = swath_geometry(ds["lat"].values, ds["lon"].values)
    j = ds.sizes["cross_track"] // 2
    i = 150
    x, y = float(g.x[i, j]), float(g.y[i, j])
    page.locator(".bk-tool-icon-box-select").first.click()  # the maps' shared toolbar
    box = (x - 4, y - 3), (x + 4, y + 3)
    for _ in range(5):  # the first render may still be settling
        _drag_map(page, *box)
        try:
            page.wait_for_function("() => new URLSearchParams(location.search).get('region')?.startsWith('bbox:')",
                                   timeout=5000)
            break
        except Exception:
            continue
    region = _query(page)["region"]
    lon0, lat0, lon1, lat1 = get_region(region).params
    tol = 0.5  # a screen pixel or two
    assert abs(lon0 - (((x - 4 + 180) % 360) - 180)) < tol and abs(lat0 - (y - 3)) < tol, region
    assert abs(lon1 - (((x + 4 + 180) % 360) - 180)) < tol and abs(lat1 - (y + 3)) < tol, region
    page.get_by_text(re.compile("Region: the drawn box")).wait_for()
    # the sidebar's region list shows it
    shown = page.locator("select").evaluate_all("els => els.map(e => e.options[e.selectedIndex]?.text)")
    assert region in shown, shown
    # the outline is on both maps
    page.wait_for_function(OUTLINE_JS.replace("return n;", "return n.length >= 2 && n.every(k => k > 0);"))
    # the Distributions view: the cube was built without this box, so it says so and offers to
    # compute it (how many orbits, how long); pressing the button builds the box cube in the
    # background (progress, Cancel) and the view then answers for the box from it
    page.get_by_text("Distributions", exact=True).first.click()
    _wait_query(page, "view", "distributions")
    page.get_by_text(re.compile(re.escape(region) + ".* is not in this climatology cube")).filter(
        visible=True).first.wait_for()
    button = page.locator(".rc-compute-box button")
    button.wait_for()
    assert re.search(r"Compute this box \(\d+ orbits?, about ", button.inner_text()), button.inner_text()
    button.click()
    page.get_by_text("baseline:").first.wait_for(timeout=180_000)
    page.get_by_text(re.compile("answered from its box cube")).first.wait_for()
    assert page.locator(".rc-compute-box").count() == 0
    assert page.locator(".alert-danger").count() == 0
    assert "Traceback" not in page.content()
    assert _errors(log) == [], _errors(log)
    assert server_errors == []


def test_run_on_a_real_granule(server, rc_browser, pages, server_errors):
    """Real mode: a link to a 1C-GMI granule (PPS format) in the data root; the note that the
    model was trained on synthetic Tb is on the map, Run computes it in the background and the
    map shows it (issue 16 item 4)."""
    from urllib.parse import quote

    from catalogs.pps import write_1c_gmi
    from catalogs.simulator import simulate_orbit

    path = write_1c_gmi(simulate_orbit(20002, n_scans=64), root=Path(os.environ["RAINCHECK_DATA_ROOT"]) / "pps")
    log = []
    page = _open(rc_browser, server + f"/?source=real&granule={quote(str(path))}&models=unet-reference&layers=Tb", log)
    pages.append(page)
    page.get_by_text(re.compile("unet-reference was trained on synthetic Tb; this granule is real PPS 1C-GMI")).wait_for()
    page.get_by_text(re.compile("has no output for 1C.GPM.GMI")).wait_for()
    page.get_by_role("button", name="Run unet-reference").click()
    page.get_by_text(re.compile("1C-GMI granule of orbit 20002: computed on cpu")).wait_for(timeout=120_000)
    page.get_by_text(re.compile("has no output for 1C.GPM.GMI")).wait_for(state="detached")
    assert page.locator(".alert-danger").count() == 0 and "Traceback" not in page.content()
    assert _errors(log) == [] and server_errors == []

def test_requests_to_other_hosts_are_caught(server, rc_browser, pages):
    """The guard of every browser test: the app's page asks nothing of another host, and a
    request to one (a CDN, say) is caught as an error."""
    log = []
    page = _open(rc_browser, server + "/", log)
    pages.append(page)
    page.get_by_text("Click a pixel").first.wait_for()
    assert _errors(log) == []
    page.evaluate("() => fetch('http://cdn.example.invalid/bokeh.min.js').catch(() => null)")
    page.wait_for_timeout(300)
    assert ("external request", "http://cdn.example.invalid/bokeh.min.js") in _errors(log)

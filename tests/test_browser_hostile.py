"""Hostile links against the served app, in a real browser (issue 12: "a link is enough").

Each case is a link anyone could send. For each: no script ran (the injected code would set
``window.__xss``), neither the server's secret (``AUDIT_SECRET`` in the server's environment) nor
a server path (the data root, the repository, site-packages, a folder outside the roots) appears
in the page, and a clear message says what was wrong. One app server (in this process, like
tests/test_browser.py) and one Chromium serve the whole module; a last test checks that no page
asked any host but this machine for anything.
"""

from __future__ import annotations

import re
import shutil
import site
import sys
from pathlib import Path
from urllib.parse import quote, urlparse

import pytest

from tests.test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser]

SECRET = "s3cr3t-hostile-4b1d9"
CMB = "2B.GPM.DPRGMI.CORRA2022.20140308-S220950-E234217.000144.V07A.HDF5"
TIMEOUT_MS = 60_000
REPO = Path(__file__).resolve().parents[1]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}

#: The text and markup of the whole page, shadow roots included (Bokeh renders into them),
#: and whether any element carries the injected code.
PAGE_JS = """() => {
  const html = [], injected = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      for (const a of el.getAttributeNames()) {
        if (a.startsWith('on') && (el.getAttribute(a) || '').includes('__xss')) injected.push(el.outerHTML);
      }
      if (el.tagName === 'SCRIPT' && (el.textContent || '').includes('window.__xss') && !el.type?.includes('json'))
        injected.push(el.outerHTML);
      if (el.shadowRoot) { html.push(el.shadowRoot.innerHTML); walk(el.shadowRoot); }
    }
  };
  html.push(document.documentElement.outerHTML);
  walk(document);
  const text = [];
  const texts = (root) => {
    text.push(root === document ? document.body.innerText : root.textContent);
    for (const el of root.querySelectorAll('*')) if (el.shadowRoot) texts(el.shadowRoot);
  };
  texts(document);
  return {html: html.join('\\n'), text: text.join('\\n'), injected, xss: window.__xss ?? null};
}"""


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory):
    from tests.test_app_serve import free_port, wait_http

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM} (.ci/run installs Debian's chromium)")
    from conftest import GPM_FIXTURES

    root = tmp_path_factory.mktemp("hostile-data-root")
    outside = tmp_path_factory.mktemp("outside-the-roots")
    shutil.copy(GPM_FIXTURES / CMB, outside / CMB)
    (root / CMB).symlink_to(outside / CMB)  # a symlink in the data root pointing outside it
    mp = pytest.MonkeyPatch()
    mp.setenv("RAINCHECK_DATA_ROOT", str(root))
    mp.delenv("RAINCHECK_READ_ROOTS", raising=False)
    mp.delenv("RAINCHECK_TRUST_CATALOG", raising=False)
    mp.setenv("AUDIT_SECRET", SECRET)
    from app import data, jobs
    from app.commands.serve import make_server

    for memo in (data._swaths, data._outputs, data._geoms):
        memo.clear()
    manager = jobs.JobManager(mode="thread")
    jobs.set_manager(manager)
    port = free_port()
    srv = make_server(port=port, threaded=True)
    wait_http(f"http://127.0.0.1:{port}/health")
    yield {"url": f"http://127.0.0.1:{port}", "root": root, "outside": outside}
    srv.stop()
    manager.shutdown()
    jobs.set_manager(None)
    mp.undo()


@pytest.fixture(scope="module")
def browser_context():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        ctx = b.new_context(viewport={"width": 1400, "height": 900})
        ctx.set_default_timeout(TIMEOUT_MS)
        requests: list[str] = []
        ctx.on("request", lambda r: requests.append(r.url))
        ctx.requests = requests
        yield ctx
        ctx.close()
        b.close()


def server_paths(srv) -> list[str]:
    paths = {str(srv["root"]), str(srv["root"].resolve()), str(srv["outside"]), str(REPO), sys.prefix,
             str(Path.home()), *site.getsitepackages()}
    return sorted(p for p in paths if p and p != "/")


def visit(srv, ctx, query: str, message: str):
    """Open the app at ``?query``, wait for ``message`` (a regex) and return what the page holds."""
    page = ctx.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(srv["url"] + "/?" + query)
        page.get_by_text(re.compile(message)).first.wait_for()
        page.wait_for_timeout(300)  # a broken image's onerror fires within a frame or two
        got = page.evaluate(PAGE_JS)
    except Exception:
        art = REPO / "test-artifacts"
        art.mkdir(exist_ok=True)
        page.screenshot(path=str(art / f"hostile-{re.sub(r'[^A-Za-z0-9]+', '-', query)[:60]}.png"))
        raise
    finally:
        page.close()
    got["errors"] = errors
    return got


def check_page(srv, got, *also_absent):
    assert got["xss"] is None, "injected script ran"
    assert got["injected"] == [], got["injected"][:2]
    page = got["html"] + "\n" + got["text"]
    assert SECRET not in page, "the server's secret reached the page"
    for p in server_paths(srv):
        assert p not in page, f"server path {p!r} in the page"
    for s in also_absent:
        assert s not in page, f"{s!r} in the page"
    assert "Traceback" not in page


def q(**kw) -> str:
    return "&".join(f"{k}={quote(str(v), safe='')}" for k, v in kw.items())


# --- the links ------------------------------------------------------------------------------------

def test_env_template_does_not_read_the_environment(hostile_server, browser_context):
    got = visit(hostile_server, browser_context, q(source="real", granule="env(AUDIT_SECRET)"),
                r"granule='env\(AUDIT_SECRET\)'.*template function env")
    check_page(hostile_server, got)


def test_func_template_imports_nothing(hostile_server, browser_context):
    sys.modules.pop("this", None)
    got = visit(hostile_server, browser_context, q(source="real", granule="func(this:s)"),
                r"granule='func\(this:s\)'.*template function func.*imports a Python module")
    check_page(hostile_server, got, "Gur Mra bs Clguba", "Beautiful is better than ugly")
    assert "this" not in sys.modules, "a link imported a module on the server"


IMG = ["<img src=x onerror=window.__xss=(window.__xss||0)+1>",
       '<img src="x" onerror="window.__xss=(window.__xss||0)+1">']


@pytest.mark.parametrize("value", IMG)
def test_html_in_a_granule_is_text(hostile_server, browser_context, value):
    got = visit(hostile_server, browser_context, q(source="real", granule=value), r"HTML markup")
    check_page(hostile_server, got)
    assert value in got["text"]  # shown as the text it is


def test_html_in_the_region_is_text(hostile_server, browser_context):
    value = IMG[1]
    got = visit(hostile_server, browser_context, q(region=value, view="distributions"), r"unknown region '<img")
    check_page(hostile_server, got)


def test_script_in_the_view_is_text(hostile_server, browser_context):
    value = "<script>window.__xss=1</script>"
    got = visit(hostile_server, browser_context, q(view=value),
                r"ignored the link's view=.*not a valid view; choose one of swath, distributions")
    check_page(hostile_server, got)
    assert value in got["text"]


def test_path_traversal_stays_in_the_roots(hostile_server, browser_context):
    got = visit(hostile_server, browser_context, q(source="real", granule="../../../../etc/passwd"),
                r"outside the configured data roots")
    check_page(hostile_server, got, "root:x:0:0")


def test_nul_byte_is_refused(hostile_server, browser_context):
    got = visit(hostile_server, browser_context, "source=real&granule=" + quote(CMB) + "%00.txt",
                r"granule=.*U\+0000")
    check_page(hostile_server, got)


def test_symlink_out_of_the_roots_is_refused(hostile_server, browser_context):
    got = visit(hostile_server, browser_context, q(source="real", granule=CMB), r"outside the configured data roots")
    check_page(hostile_server, got, "outside-the-roots")


def test_ten_kilobyte_value_is_refused_briefly(hostile_server, browser_context):
    got = visit(hostile_server, browser_context, q(source="real", granule="a" * 10_240),
                r"too long \(10240 characters; at most 1024\)")
    check_page(hostile_server, got)
    assert "a" * 200 not in got["text"]  # the message quotes the start of it, not all of it


@pytest.mark.parametrize("char", ["\u202e", "\x01", "\x1b", "\x1f", "\u2066"])
def test_control_characters_are_refused(hostile_server, browser_context, char):
    code = f"U+{ord(char):04X}"
    got = visit(hostile_server, browser_context, q(source="real", granule=f"abc{char}gpj.HDF5"),
                rf"granule=.*{re.escape(code)}")
    check_page(hostile_server, got)
    assert char not in got["text"]


def test_control_character_in_the_region(hostile_server, browser_context):
    got = visit(hostile_server, browser_context, q(region="global\u202e"), r"region=.*U\+202E")
    check_page(hostile_server, got)


def test_orbit_beyond_a_float(hostile_server, browser_context):
    got = visit(hostile_server, browser_context, "orbit=1e309", r"orbit='1e309': not a whole number")
    check_page(hostile_server, got)


def test_inverted_years(hostile_server, browser_context):
    got = visit(hostile_server, browser_context, "y0=2050&y1=2000",
                r"y0=2050 and y1=2000: the period ends before it starts")
    check_page(hostile_server, got)


def test_inverted_dates(hostile_server, browser_context):
    got = visit(hostile_server, browser_context, "from=2019-06-05&to=2019-06-01",
                r"from=2019-06-05 and to=2019-06-01: the period ends before it starts")
    check_page(hostile_server, got)


def test_sidebar_names_the_catalogue_not_its_path(hostile_server, browser_context):
    got = visit(hostile_server, browser_context, "source=synthetic", r"Catalogue: raincheck demo catalogue \(demo\.yaml\)")
    check_page(hostile_server, got, "catalogs/demo.yaml")


def test_no_request_leaves_the_machine(hostile_server, browser_context):
    """Every asset comes from the app's own server (air-gapped labs have no internet)."""
    visit(hostile_server, browser_context, q(source="real", granule="env(AUDIT_SECRET)"), r"template function env")
    hosts = sorted({urlparse(u).hostname for u in browser_context.requests
                    if urlparse(u).scheme in ("http", "https", "ws", "wss")} - LOCAL_HOSTS)
    assert hosts == [], f"the page asked other hosts: {hosts}"

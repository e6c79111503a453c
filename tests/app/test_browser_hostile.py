"""Hostile links against the served app, in a real browser (issue 12: "a link is enough").

Each case is a link anyone could send. For each: no script ran (the injected code would set
``window.__xss``), neither the server's secret (``AUDIT_SECRET`` in the server's environment) nor
a server path (the data root, the repository, site-packages, a folder outside the roots) appears
in the page, and a clear message says what was wrong. One app server (in this process, like
tests/app/test_browser.py) and one Chromium serve the whole module; a last test checks that no page
asked any host but this machine for anything.

Every link (``LINKS``) is opened once, in its own page (its own session on the server), a few
pages at a time (``AT_ONCE``) so that the browser draws one page while the server builds the
next; each test then checks what its link's page held. Values the app checks independently
(an inverted period and an orbit beyond a float, say) share one link.
"""

from __future__ import annotations

import re
import shutil
import site
import sys
import warnings
from pathlib import Path
from urllib.parse import quote, urlparse

import pytest

from tests.app.test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser]

SECRET = "s3cr3t-hostile-4b1d9"
CMB = "2B.GPM.DPRGMI.CORRA2022.20140308-S220950-E234217.000144.V07A.HDF5"
TIMEOUT_MS = 60_000
REPO = Path(__file__).resolve().parents[2]
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
    from tests.app.test_app_serve import free_port, wait_http

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM} (.ci/run installs Debian's chromium)")
    from tests.conftest import GPM_FIXTURES

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


def _screenshot(page, query: str) -> None:
    art = REPO / "test-artifacts"
    art.mkdir(exist_ok=True)
    try:
        page.screenshot(path=str(art / f"hostile-{re.sub(r'[^A-Za-z0-9]+', '-', query)[:60]}.png"))
    except Exception:
        pass


def server_threads() -> str:
    """The stacks of this process's threads (the app server runs in it): what the server was
    doing when a page did not come."""
    import threading
    import traceback

    names = {t.ident: t.name for t in threading.enumerate()}
    return "\n".join(f"--- thread {names.get(tid, tid)}\n" + "".join(traceback.format_stack(frame))
                     for tid, frame in sys._current_frames().items())


def _goto(page, url: str, name: str) -> None:
    """Open ``url``; a navigation that times out is tried once more in the same page, after the
    server's thread stacks are saved (test-artifacts/hostile-threads-<name>.txt) and a warning
    is emitted, so that a stall of the machine is told apart from a link that breaks the server
    (which fails the second try too)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.goto(url, wait_until="commit")
    except PlaywrightTimeout as e:
        art = REPO / "test-artifacts"
        art.mkdir(exist_ok=True)
        (art / f"hostile-threads-{name}.txt").write_text(f"{e}\n\n{server_threads()}")
        warnings.warn(f"link {name!r}: no response in {TIMEOUT_MS / 1000:.0f} s, tried again "
                      f"(server threads in test-artifacts/hostile-threads-{name}.txt)", stacklevel=2)
        page.goto(url, wait_until="commit")


def visit_all(srv, ctx, links: dict, at_once: int) -> dict:
    """Open each link ``name: (query, messages)`` in a page of its own, ``at_once`` pages at a
    time; for each, wait for every one of ``messages`` (regexes) and return what the page holds
    (or the error met on the way, raised again by the link's tests)."""
    out = {}
    items = list(links.items())
    for k in range(0, len(items), at_once):
        batch = []
        for name, (query, messages) in items[k:k + at_once]:
            page = ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            batch.append((name, query, messages, page, errors))
            try:
                _goto(page, srv["url"] + "/?" + query, name)
            except Exception as e:
                out[name] = e
        live = [b for b in batch if b[0] not in out]
        for name, query, messages, page, errors in live:
            try:
                for message in messages:
                    page.get_by_text(re.compile(message)).first.wait_for()
            except Exception as e:
                out[name] = e
        if live:
            live[0][3].wait_for_timeout(300)  # a broken image's onerror fires within a frame or two
        for name, query, messages, page, errors in batch:
            if name not in out:
                try:
                    got = page.evaluate(PAGE_JS)
                    got["errors"] = errors
                    out[name] = got
                except Exception as e:
                    out[name] = e
            if isinstance(out[name], Exception):
                _screenshot(page, query)
            page.close()
    return out


def q(**kw) -> str:
    return "&".join(f"{k}={quote(str(v), safe='')}" for k, v in kw.items())


IMG = ["<img src=x onerror=window.__xss=(window.__xss||0)+1>",
       '<img src="x" onerror="window.__xss=(window.__xss||0)+1">']
CONTROL = ["\u202e", "\x01", "\x1b", "\x1f", "\u2066"]

#: every hostile link of the module: name -> (query, the messages the page must show, regexes).
#: Values the app checks independently of each other share a link (one page of the synthetic
#: mode, which draws a whole orbit, instead of one each).
LINKS = {
    "env": (q(source="real", granule="env(AUDIT_SECRET)"), [r"granule='env\(AUDIT_SECRET\)'.*template function env"]),
    "func": (q(source="real", granule="func(this:s)"),
             [r"granule='func\(this:s\)'.*template function func.*imports a Python module"]),
    **{f"img{i}": (q(source="real", granule=v), [r"HTML markup"]) for i, v in enumerate(IMG)},
    "region-html": (q(region=IMG[1], view="distributions"), [r"unknown region '<img"]),
    "view-region": (q(view="<script>window.__xss=1</script>", region="global\u202e"),
                    [r"ignored the link's view=.*not a valid view; choose one of swath, distributions",
                     r"region=.*U\+202E"]),
    "traversal": (q(source="real", granule="../../../../etc/passwd"), [r"outside the configured data roots"]),
    "nul": ("source=real&granule=" + quote(CMB) + "%00.txt", [r"granule=.*U\+0000"]),
    "symlink": (q(source="real", granule=CMB), [r"outside the configured data roots"]),
    "10k": (q(source="real", granule="a" * 10_240), [r"too long \(10240 characters; at most 1024\)"]),
    **{f"control-{ord(c):04X}": (q(source="real", granule=f"abc{c}gpj.HDF5"), [rf"granule=.*{re.escape(f'U+{ord(c):04X}')}"])
       for c in CONTROL},
    "numbers": ("source=synthetic&orbit=1e309&y0=2050&y1=2000&from=2019-06-05&to=2019-06-01",
                [r"orbit='1e309': not a whole number",
                 r"y0=2050 and y1=2000: the period ends before it starts",
                 r"from=2019-06-05 and to=2019-06-01: the period ends before it starts",
                 r"Catalogue: raincheck demo catalogue \(demo\.yaml\)"]),
}
AT_ONCE = 4


@pytest.fixture(scope="module")
def pages(hostile_server, browser_context):
    """What each link's page held, by link name (every link opened once, ``AT_ONCE`` at a time)."""
    sys.modules.pop("this", None)  # the func() template must not import it
    return visit_all(hostile_server, browser_context, LINKS, AT_ONCE)


def visit(pages, name: str) -> dict:
    """What the page of link ``name`` held; the error its visit met, if any, fails the test."""
    got = pages[name]
    if isinstance(got, Exception):
        raise got
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


# --- the links ------------------------------------------------------------------------------------

def test_env_template_does_not_read_the_environment(hostile_server, pages):
    check_page(hostile_server, visit(pages, "env"))


def test_func_template_imports_nothing(hostile_server, pages):
    got = visit(pages, "func")
    check_page(hostile_server, got, "Gur Mra bs Clguba", "Beautiful is better than ugly")
    assert "this" not in sys.modules, "a link imported a module on the server"


@pytest.mark.parametrize("value", IMG)
def test_html_in_a_granule_is_text(hostile_server, pages, value):
    got = visit(pages, f"img{IMG.index(value)}")
    check_page(hostile_server, got)
    assert value in got["text"]  # shown as the text it is


def test_html_in_the_region_is_text(hostile_server, pages):
    check_page(hostile_server, visit(pages, "region-html"))


def test_script_in_the_view_is_text(hostile_server, pages):
    value = "<script>window.__xss=1</script>"
    got = visit(pages, "view-region")
    check_page(hostile_server, got)
    assert value in got["text"]


def test_path_traversal_stays_in_the_roots(hostile_server, pages):
    check_page(hostile_server, visit(pages, "traversal"), "root:x:0:0")


def test_nul_byte_is_refused(hostile_server, pages):
    check_page(hostile_server, visit(pages, "nul"))


def test_symlink_out_of_the_roots_is_refused(hostile_server, pages):
    check_page(hostile_server, visit(pages, "symlink"), "outside-the-roots")


def test_ten_kilobyte_value_is_refused_briefly(hostile_server, pages):
    got = visit(pages, "10k")
    check_page(hostile_server, got)
    assert "a" * 200 not in got["text"]  # the message quotes the start of it, not all of it


@pytest.mark.parametrize("char", CONTROL)
def test_control_characters_are_refused(hostile_server, pages, char):
    got = visit(pages, f"control-{ord(char):04X}")
    check_page(hostile_server, got)
    assert char not in got["text"]


def test_control_character_in_the_region(hostile_server, pages):
    got = visit(pages, "view-region")
    check_page(hostile_server, got)
    assert "\u202e" not in got["text"]


def test_out_of_range_numbers_and_inverted_periods(hostile_server, pages):
    """orbit=1e309 (beyond a float), y0 > y1 and from > to: each refused with its message
    (awaited by the visit), the page intact."""
    check_page(hostile_server, visit(pages, "numbers"))


def test_sidebar_names_the_catalogue_not_its_path(hostile_server, pages):
    check_page(hostile_server, visit(pages, "numbers"), "catalogs/demo.yaml")


def test_no_request_leaves_the_machine(hostile_server, browser_context, pages):
    """Every asset comes from the app's own server (air-gapped labs have no internet): no page
    of the module asked another host for anything."""
    assert set(pages) == set(LINKS)  # every link was opened
    seen = {urlparse(u).hostname for u in browser_context.requests if urlparse(u).scheme in ("http", "https", "ws", "wss")}
    assert "127.0.0.1" in seen, "no request of the pages was seen"  # the listener works
    hosts = sorted(seen - LOCAL_HOSTS)
    assert hosts == [], f"the page asked other hosts: {hosts}"

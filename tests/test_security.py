"""Security: localhost by default, exposure only when asked with origins and a login, logins
enforced, exported file names sanitised."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from app.cli import main
from app.export import safe_name


def test_default_bind_is_loopback():
    opt = next(p for p in main.commands["serve"].params if p.name == "address")
    assert opt.default == "127.0.0.1"


@pytest.mark.parametrize("args, message", [
    (["--address", "0.0.0.0"], "--allow-websocket-origin"),
    (["--address", "0.0.0.0", "--allow-websocket-origin", "lab:5006"], "--basic-auth"),
    (["--address", "192.168.1.5", "--allow-websocket-origin", "*"], "--basic-auth"),
])
def test_exposing_needs_explicit_origins_and_login(args, message):
    r = CliRunner().invoke(main, ["serve", *args])
    assert r.exit_code != 0 and message in r.output


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=0, max_size=300))
def test_export_names_are_sanitised(text):
    name = safe_name(text)
    assert name and len(name) <= 120
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert not name.startswith(".") and ".." not in name.split("-")
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in name)


@pytest.mark.parametrize("hostile", ["../../etc/passwd", "/root/.ssh/id_rsa", "..", "a/../../b", "con\x00.pdf",
                                     "<script>alert(1)</script>", "~/x"])
def test_hostile_export_names(hostile):
    name = safe_name(hostile)
    assert os.path.basename(name) == name and name not in ("..", ".")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_basic_auth_is_enforced(tmp_path):
    port = _free_port()
    env = dict(os.environ, RAINCHECK_DATA_ROOT=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", "from app.cli import main; main()", "serve", "--port", str(port),
                             "--basic-auth", "s3cret-pw"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    jar = CookieJar()
    plain = urllib.request.build_opener(NoRedirect, urllib.request.HTTPCookieProcessor(jar))

    def get(path, data=None):
        try:
            r = plain.open(base + path, data=urllib.parse.urlencode(data).encode() if data else None, timeout=30)
            return r.status, r.headers.get("Location", ""), r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Location", ""), ""

    try:
        t0 = time.monotonic()
        while True:
            try:
                if get("/health")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
            assert time.monotonic() - t0 < 120, "server did not start"
            time.sleep(0.5)
        status, loc, _ = get("/")
        assert status == 302 and "/login" in loc  # no session without logging in
        status, loc, _ = get("/login", {"username": "u", "password": "wrong"})
        assert status == 302 and "error" in loc
        assert get("/")[0] == 302
        status, loc, _ = get("/login", {"username": "u", "password": "s3cret-pw"})
        assert status == 302 and "error" not in loc
        status, _, body = get("/")
        assert status == 200 and "raincheck" in body
    finally:
        proc.terminate()
        proc.wait(30)

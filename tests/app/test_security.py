"""Security: localhost by default, exposure only when asked with origins and a login, logins
enforced, exported file names sanitised."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
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
    proc, base = _start_server(tmp_path, "--basic-auth", "s3cret-pw")
    get = _client(base)
    try:
        _wait_healthy(proc, get)
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


# --- login values (issue 12): refused before anything starts, the password never echoed --------

@pytest.mark.parametrize("value, message", [
    ("/no/such/users.json", "'/no/such/users.json' looks like a file path but there is no such file"),
    ("users.json", "'users.json' looks like a file path but there is no such file"),
    ("conf/passwords", "'conf/passwords' looks like a file path"),
    (" ", "is empty or only whitespace"),
    ("\t\n", "is empty or only whitespace"),
    ("pw12345", "too short (7 characters; at least 8)"),
    (" padded-password ", "starts or ends with whitespace"),
])
def test_basic_auth_values_are_checked(data_root, value, message):
    r = CliRunner().invoke(main, ["serve", "--basic-auth", value])
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit), r.output
    assert "--basic-auth" in r.output and message in r.output
    if "path" not in message and value.strip():
        assert value.strip() not in r.output  # a refused password is not printed
    assert not any(data_root.rglob("*"))


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not readable JSON"),
    ("[1, 2]", "must be a non-empty JSON object"),
    ("{}", "must be a non-empty JSON object"),
    (json.dumps({"ada": "ok"}), "the password of 'ada' is too short"),
    (json.dumps({"ada": "long-enough-1", " bob": "long-enough-2"}), "user name ' bob'"),
])
def test_basic_auth_users_file_is_checked(tmp_path, content, message):
    f = tmp_path / "users.json"
    f.write_text(content)
    r = CliRunner().invoke(main, ["serve", "--basic-auth", str(f)])
    assert r.exit_code == 2 and f"users file '{f}'" in r.output and message in r.output, r.output


def test_login_throttle_locks_out_and_forgives():
    from app.commands._login import LoginThrottle

    now = [0.0]
    t = LoginThrottle(max_failures=4, window_s=60, lockout_s=30, base_delay_s=0.25, max_delay_s=4, clock=lambda: now[0])
    assert [t.failed("a") for _ in range(3)] == [0.25, 0.5, 1.0]  # slower and slower
    assert t.retry_after("a") == 0 and t.retry_after("b") == 0
    assert t.failed("a") == 0 and t.retry_after("a") == 30  # the 4th locks the address out
    assert t.failed("b") == 0.25  # other addresses are not affected
    now[0] = 29.5
    assert t.retry_after("a") == pytest.approx(0.5)
    now[0] = 30.5
    assert t.retry_after("a") == 0 and t.failed("a") == 0.25  # a fresh start after the lockout
    t.succeeded("a")
    assert t.failed("a") == 0.25
    now[0] = 200  # failures older than the window are forgotten
    assert t.failed("b") == 0.25


def _start_server(tmp_path, *args):
    port = _free_port()
    env = dict(os.environ, RAINCHECK_DATA_ROOT=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", "from app.cli import main; main()", "serve", "--port", str(port),
                             *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def _client(base):
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPCookieProcessor(CookieJar()))

    def get(path, data=None):
        try:
            r = opener.open(base + path, data=urllib.parse.urlencode(data).encode() if data else None, timeout=180)
            return r.status, r.headers.get("Location", ""), r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Location", ""), ""

    return get


def _wait_healthy(proc, get):
    t0 = time.monotonic()
    while True:
        try:
            if get("/health")[0] == 200:
                return
        except OSError:
            pass
        assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
        assert time.monotonic() - t0 < 120, "server did not start"
        time.sleep(0.5)


@pytest.mark.slow
def test_failed_logins_are_throttled_per_address(tmp_path):
    """Before: 30 wrong passwords in 0.26 s, all answered at once. Now each failure is answered
    later than the one before (without holding the server), the 4th locks the address out (the
    right password too), and after the lockout the right password works."""
    lockout = 4
    proc, base = _start_server(tmp_path, "--basic-auth", "s3cret-pw", "--login-attempts", "4",
                               "--login-lockout", str(lockout))
    get = _client(base)
    unquote = urllib.parse.unquote_plus
    try:
        _wait_healthy(proc, get)
        assert get("/")[0] == 302
        assert "Invalid" in unquote(get("/login", {"username": "u", "password": "wrong1"})[1])
        assert "Invalid" in unquote(get("/login", {"username": "u", "password": "wrong2"})[1])
        # the 3rd failure is held back (1 s); the server answers others meanwhile
        box = {}
        th = threading.Thread(target=lambda: box.update(r=get("/login", {"username": "u", "password": "wrong3"})))
        th.start()
        time.sleep(0.2)
        assert get("/health")[0] == 200
        assert th.is_alive(), "the delayed failure was answered before a health check sent after it"
        th.join(30)
        assert "Invalid" in unquote(box["r"][1])
        status, loc, _ = get("/login", {"username": "u", "password": "wrong4"})
        assert status == 302 and "Too many failed logins" in unquote(loc)
        t_locked = time.monotonic()
        status, loc, _ = get("/login", {"username": "u", "password": "s3cret-pw"})  # locked: refused
        assert "Too many failed logins" in unquote(loc) and get("/")[0] == 302
        time.sleep(max(0.0, lockout + 0.5 - (time.monotonic() - t_locked)))
        status, loc, _ = get("/login", {"username": "u", "password": "s3cret-pw"})
        assert status == 302 and "error" not in loc
        status, _, body = get("/")
        assert status == 200 and "raincheck" in body
    finally:
        proc.terminate()
        proc.wait(30)

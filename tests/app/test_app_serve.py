"""`raincheck serve`: the server answers /health and serves the app page."""

from __future__ import annotations

import socket
import time
import urllib.request

from click.testing import CliRunner

from app.cli import main


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0):
    t0 = time.time()
    while True:
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                return r.status, r.read().decode()
        except OSError:
            if time.time() - t0 > timeout:
                raise
            time.sleep(0.3)


def test_health_and_app_page(data_root):
    from app.commands.serve import make_server

    port = free_port()
    server = make_server(port=port, threaded=True)
    try:
        status, body = wait_http(f"http://127.0.0.1:{port}/health")
        assert status == 200 and body == "ok"
        status, body = wait_http(f"http://127.0.0.1:{port}/")
        assert status == 200 and "raincheck" in body
    finally:
        server.stop()


def test_serve_cli_help_and_bad_catalogue(tmp_path):
    r = CliRunner().invoke(main, ["serve", "--help"])
    assert r.exit_code == 0
    for opt in ("--port", "--address", "--catalog", "--allow-websocket-origin", "--show"):
        assert opt in r.output
    r = CliRunner().invoke(main, ["serve", "--catalog", str(tmp_path / "missing.yaml")])
    assert r.exit_code != 0 and "does not exist" in r.output

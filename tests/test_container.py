"""The container starts exactly what the README's serve command starts.

No Docker engine runs on the CI machines, so the image itself cannot be built here; these tests
check what the image is made of: the Dockerfile's invariants (non-root, health check, CPU default
with a CUDA build argument, the README's serve command as CMD), that the build context leaves the
host's environment and data out, and they run the image's CMD and HEALTHCHECK commands on this
machine the way the container runs them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.app.test_app_serve import free_port

ROOT = Path(__file__).resolve().parents[1]


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def instruction(name: str) -> list[str]:
    lines = re.sub(r"\\\n", " ", dockerfile()).splitlines()
    return [ln.split(None, 1)[1].strip() for ln in lines if ln.split(None, 1)[:1] == [name]]


def test_image_runs_as_non_root_with_health_check_and_cpu_default():
    users = instruction("USER")
    assert users and users[-1] not in ("root", "0"), "the server must not run as root"
    text = dockerfile()
    # the last USER comes before CMD: the server process is that user's
    assert text.rindex("USER ") < text.rindex("CMD ")
    health = instruction("HEALTHCHECK")
    assert health and "/health" in health[0]
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in instruction("ARG") if "=" in a}
    assert "cpu" in args["TORCH_INDEX"], "the default image is the CPU one"
    assert "BASE" in args and "cuda" in text.lower(), "CUDA is a documented build argument"
    assert "5006" in instruction("EXPOSE")[0]


def test_cmd_is_the_readme_serve_command():
    cmd = json.loads(instruction("CMD")[0])
    assert cmd[:2] == ["make", "serve"]
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"^make serve\b", readme, re.M), "README's serve command is `make serve`"
    # the image only adds what exposing a server needs (address, websocket origin): see test below
    extra = [c for c in cmd[2:] if c.startswith("SERVE_ARGS=")]
    assert len(cmd) == 2 + len(extra)


def test_build_context_leaves_host_environment_and_data_out():
    ignored = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")]
    for must in (".venv", ".git", ".raincheck-data"):
        assert must in ignored, f"{must} would be copied into the image"
    # what the image needs is not ignored: the shipped checkpoints and the demo cube
    for need in ("models/checkpoints/unet-reference/model.safetensors", "evaluation/data/demo_cube.nc",
                 "catalogs/demo.yaml", "pyproject.toml", "Makefile"):
        assert (ROOT / need).exists()
        assert not any(Path(need).match(p) or need.startswith(p.rstrip("/") + "/") for p in ignored), need


def _serve(env_extra: dict, port: int):
    """Run the image's CMD (make serve with its SERVE_ARGS, plus --port) from the repository."""
    cmd = json.loads(instruction("CMD")[0])
    cmd = [c + f" --port {port}" if c.startswith("SERVE_ARGS=") else c for c in cmd]
    env = {**os.environ, **env_extra, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    # `make serve` depends on the venv stamp; the test environment is that venv
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


@pytest.mark.slow
def test_container_cmd_needs_a_login_then_serves_health_and_a_protected_app(data_root):
    if not (ROOT / ".venv" / ".installed").exists():
        pytest.skip("`make serve` needs the .venv that `make install` builds")
    port = free_port()
    # no login given: exposing on 0.0.0.0 is refused with a message, nothing listens
    p = _serve({"RAINCHECK_BASIC_AUTH": ""}, port)
    out, _ = p.communicate(timeout=120)
    assert p.returncode != 0
    assert "basic-auth" in out or "RAINCHECK_BASIC_AUTH" in out, out[-2000:]

    p = _serve({"RAINCHECK_BASIC_AUTH": "correct-horse-battery"}, port)
    try:
        health = instruction("HEALTHCHECK")[0].split("CMD", 1)[1].strip().replace("5006", str(port))
        health = health.replace("|| exit 1", "").strip()
        t0 = time.time()
        while True:
            r = subprocess.run(shlex.split(health), capture_output=True, text=True)
            if r.returncode == 0:
                break
            assert p.poll() is None, p.stdout.read()[-3000:]
            assert time.time() - t0 < 150, "the health check never passed"
            time.sleep(1)
        assert "ok" in r.stdout.lower()
        # the app itself is behind the login
        req = urllib.request.Request(f"http://127.0.0.1:{port}/", method="GET")
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                final = resp.geturl()
                body = resp.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            final, body = e.url, str(e.code)
        assert "login" in final or "login" in body.lower() or body in ("401", "403")
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)

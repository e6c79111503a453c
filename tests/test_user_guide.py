"""docs/user-guide.md, run as written: every ```bash block, in order, in one shell (fresh data
root; ARCHIVE = a copy of the shared real PPS granule cuts). `raincheck serve` lines are started
in the background, checked through /health and stopped."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import GPM_FIXTURES
from tests.test_app_serve import free_port, wait_http

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "user-guide.md"


def blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", GUIDE.read_text(), flags=re.S)


def test_guide_has_the_five_tasks():
    text = GUIDE.read_text()
    for title in ("Browse the demo", "Your own PPS archive", "Run a model over a period",
                  "Build the climatology", "Export a figure"):
        assert re.search(rf"^## \d\. {title}", text, flags=re.M), title
    cmds = [ln for b in blocks() for ln in b.splitlines() if ln.strip().startswith("raincheck ")]
    assert len(cmds) >= 12


@pytest.mark.slow
def test_every_command_in_the_guide_runs(tmp_path):
    archive = tmp_path / "archive"
    shutil.copytree(GPM_FIXTURES, archive)
    work = tmp_path / "work"
    work.mkdir()
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ, RAINCHECK_DATA_ROOT=str(tmp_path / "root"), ARCHIVE=str(archive),
               PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))
    env.pop("RAINCHECK_READ_ROOTS", None)
    script, serve = [], []
    for b in blocks():
        for line in b.splitlines():
            (serve if line.strip().startswith("raincheck serve") else script).append(line)
    # the guide's server: started, healthy, the app page served, stopped
    assert serve, "the guide shows how to serve the app"
    for line in serve:
        port = free_port()
        proc = subprocess.Popen(["bash", "-c", f"exec {line} --port {port}"], cwd=work, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            status, body = wait_http(f"http://127.0.0.1:{port}/health", timeout=120)
            assert (status, body) == (200, "ok")
            assert wait_http(f"http://127.0.0.1:{port}/")[0] == 200
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    r = subprocess.run(["bash", "-euxo", "pipefail", "-c", "\n".join(script)], cwd=work, env=env,
                       capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-6000:]
    out = r.stdout
    assert "2B-CMB" in out and "bayes-baseline" in out
    orbits = json.loads((work / "orbits.json").read_text())
    assert [o["orbit"] for o in orbits] == [20009]
    assert (work / "my-cube.zarr").is_dir()
    figs = {p.suffix: p for p in (work / "figures").iterdir() if p.suffix in (".pdf", ".svg", ".png")}
    assert set(figs) == {".pdf", ".svg", ".png"}
    assert figs[".pdf"].read_bytes()[:5] == b"%PDF-" and figs[".png"].read_bytes()[:4] == b"\x89PNG"
    man = json.loads(next((work / "figures").glob("*swath*.manifest.json")).read_text())
    assert man["orbits"] == [20009] and man["models"][0]["checkpoint_sha256"]
    assert "bayes-baseline" in man["model_outputs"]

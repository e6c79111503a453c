"""docs/user-guide.md, run as written: every ```bash block, in order, in one shell (fresh data
root; ARCHIVE = a copy of the shared real PPS granule cuts). `raincheck serve` lines are started
in the background, checked through /health and the app page, and stopped; they are checked while
the other commands run (a server and a command line share nothing but the data root, as when a
user keeps the app open while following the guide), so that the server's start-up and first page
do not add to the test's time."""

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
from tests.app.test_app_serve import free_port, wait_http

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
    assert serve, "the guide shows how to serve the app"
    servers = []
    try:
        for k, line in enumerate(serve):
            port = free_port()
            log = (tmp_path / f"serve-{k}.log").open("wb")
            proc = subprocess.Popen(["bash", "-c", f"exec {line} --port {port}"], cwd=work, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            servers.append((proc, port, log))
        # the other commands, in order, in one shell, while the servers start
        out_path, err_path = tmp_path / "guide.out", tmp_path / "guide.err"
        with out_path.open("w") as out_f, err_path.open("w") as err_f:
            script_proc = subprocess.Popen(["bash", "-euxo", "pipefail", "-c", "\n".join(script)], cwd=work, env=env,
                                           stdout=out_f, stderr=err_f, text=True, start_new_session=True)
            try:
                # the guide's server: started, healthy, the app page served, stopped
                for k, (proc, port, log) in enumerate(servers):
                    try:
                        status, body = wait_http(f"http://127.0.0.1:{port}/health", timeout=120)
                        assert (status, body) == (200, "ok")
                        assert wait_http(f"http://127.0.0.1:{port}/", timeout=120)[0] == 200
                    except BaseException:
                        log.flush()
                        print((tmp_path / f"serve-{k}.log").read_text(errors="replace")[-4000:])
                        raise
                    finally:
                        os.killpg(proc.pid, signal.SIGTERM)
                        proc.wait(timeout=30)
                returncode = script_proc.wait(timeout=1500)
            finally:
                if script_proc.poll() is None:
                    os.killpg(script_proc.pid, signal.SIGKILL)
                    script_proc.wait()
    finally:
        for proc, _, log in servers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()
    stdout, stderr = out_path.read_text(), err_path.read_text()
    assert returncode == 0, stdout[-4000:] + stderr[-6000:]
    out = stdout
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
    # the archive, end to end: trained on PPS-format pairs, evaluated against 2B-CMB with GPROF beside it
    assert "12 orbits pair up" in out
    assert "training_data:\n  kind: archive\n" in out and "reference: 2B-CMB" in out  # models show archive-tiny
    ev = json.loads((work / "archive-evaluation.json").read_text())
    assert ev["cube"]["archive"]["orbits"] == 12 and "truth" in ev["cube"]
    for m in ("archive-tiny", "GPROF2021v1"):
        assert ev["skill"][m]["vs_reference"]["n"] > 1000
    assert any(p.suffix == ".png" and "2019" in p.name for p in (work / "archive-figures").iterdir())

"""Faults: kill -9 during inference and during a climatology build, a dask worker dying mid-build.
Finished work is kept, nothing is counted twice, no store reads as valid when it is not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from catalogs import store
from evaluation import cube as C

pytestmark = pytest.mark.slow

ORBITS = list(range(20000, 20008))
N_SCANS = 600


def _env(root: Path) -> dict:
    env = dict(os.environ, RAINCHECK_DATA_ROOT=str(root), OMP_NUM_THREADS="1")
    env.pop("RAINCHECK_READ_ROOTS", None)
    return env


def _raincheck(*args) -> list[str]:
    return [sys.executable, "-c", "from app.cli import main; main()", *args]


def _wait_for(cond, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return True
        if proc is not None and proc.poll() is not None:
            return cond()
        time.sleep(0.01)
    return False


def _reference_cube(tmp_path: Path) -> C.Cube:
    path = tmp_path / "reference-cube.zarr"
    C.build_cube(ORBITS, path=path, scheduler="inline", n_scans=N_SCANS)
    return C.open_cube(path)


def _assert_same_cube(a: C.Cube, b: C.Cube) -> None:
    assert a.ledger["sources"] == b.ledger["sources"]
    for name, var in a.ds.data_vars.items():
        x, y = var.values, b.ds[name].values
        if np.issubdtype(x.dtype, np.integer):
            np.testing.assert_array_equal(x, y, err_msg=name)  # counts: exactly, no double counting
        else:
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=0, err_msg=name)


def test_kill9_during_cube_build_then_resume(tmp_path, data_root):
    cube_path = data_root / "cube.zarr"
    pdir = C.partials_dir(cube_path)
    cmd = _raincheck("climatology", "build", "--orbits", ",".join(map(str, ORBITS)),
                     "--n-scans", str(N_SCANS), "--inline", "--cube", str(cube_path))
    proc = subprocess.Popen(cmd, env=_env(data_root), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert _wait_for(lambda: len(list(pdir.glob("o*.npz"))) >= 3, 300, proc), proc.stderr.read()[-2000:]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    kept = {p.name for p in pdir.glob("o*.npz")}
    assert 3 <= len(kept) < len(ORBITS), "the kill must land mid-build"
    assert not store.is_complete(cube_path)
    with pytest.raises(store.IncompleteStore):
        C.open_cube(cube_path)
    # rerun: finished orbits are reused, not recomputed
    before = {p.name: p.stat().st_mtime_ns for p in pdir.glob("o*.npz")}
    r = subprocess.run(cmd, env=_env(data_root), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    after = {p.name: p.stat().st_mtime_ns for p in pdir.glob("o*.npz")}
    assert all(after.get(n) == t for n, t in before.items() if n in after)
    resumed = C.open_cube(cube_path)
    _assert_same_cube(resumed, _reference_cube(tmp_path))
    # a third run adds nothing (ledger prevents double counting)
    r = subprocess.run(cmd, env=_env(data_root), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    _assert_same_cube(C.open_cube(cube_path), resumed)


def test_kill9_during_inference_write_then_rerun(data_root):
    from models.registry import get_card
    from catalogs.outputs import output_path

    model = "unet-reference"  # the write is what is killed; the model only has to be quick to reach it
    card = get_card(model)
    killed_mid_write = False
    for orbit in (20000, 20001, 20002):
        final = output_path(model, card.checkpoint_sha256, orbit, "synthetic")
        cmd = _raincheck("infer", "--model", model, "--orbit", str(orbit), "--device", "cpu")
        proc = subprocess.Popen(cmd, env=_env(data_root), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        tmp_seen = _wait_for(lambda: final.parent.exists() and any(final.parent.glob(f".{final.name}.tmp-*")),
                             600, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if tmp_seen and proc.returncode == -signal.SIGKILL:
            killed_mid_write = True
            break
    assert killed_mid_write, "could not kill inference while it was writing"
    assert not store.is_complete(final), "a half-written output must not read as valid"
    assert not final.exists()
    r = subprocess.run(cmd, env=_env(data_root), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert store.is_complete(final)
    assert not list(final.parent.glob(".*.tmp-*")), "the killed run's temporary files must be cleaned"
    ds = store.open_dataset(final)
    assert ds.attrs["orbit_number"] == orbit
    assert np.isfinite(ds.precip_mean.values).mean() > 0.9


def test_dask_worker_dies_mid_build(tmp_path, data_root):
    from distributed import Client, LocalCluster

    cube_path = data_root / "cube-dask.zarr"
    pdir = C.partials_dir(cube_path)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        pids = list(client.run(os.getpid).values())
        err: list[BaseException] = []

        def build():
            try:
                C.build_cube(ORBITS, path=cube_path, scheduler=client, n_scans=N_SCANS)
            except BaseException as e:  # noqa: BLE001 - reported below
                err.append(e)

        t = threading.Thread(target=build)
        t.start()
        assert _wait_for(lambda: len(list(pdir.glob("o*.npz"))) >= 1, 300)
        os.kill(pids[0], signal.SIGKILL)
        t.join(600)
        assert not t.is_alive()
        assert not err, err
    _assert_same_cube(C.open_cube(cube_path), _reference_cube(tmp_path))

"""Recovery from crashes and damaged files: a resumed cube build discards a damaged partial
(truncated, empty, bit-flipped) with a message and recomputes its orbit; temporary files of a
writer killed with SIGKILL are cleaned on the next run, never those of a live writer."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from catalogs.simulator import geometry
from evaluation import cube as CB

N_SCANS = 120
ROOT = Path(__file__).resolve().parents[2]


def _orbits(n):
    o0 = geometry.orbit_at_time(np.datetime64("2016-01-31T20:00"))
    return [o0 + k for k in range(n)]


def _build(path, orbits, **kw):
    return CB.build_cube(orbits, ["truth", "reference"], path, scheduler="inline", n_scans=N_SCANS, **kw)


def _damage(path: Path, kind: str) -> None:
    b = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(b[: len(b) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "bit-flipped":  # one bit inside a compressed array
        with zipfile.ZipFile(path) as z:
            info = next(i for i in z.infolist() if i.filename.startswith("count_"))
        off = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
        bb = bytearray(b)
        bb[off] ^= 0x10
        path.write_bytes(bytes(bb))
    else:
        raise ValueError(kind)


def _env(data_root):
    return {**os.environ, "RAINCHECK_DATA_ROOT": str(data_root), "PYTHONPATH": str(ROOT)}


KINDS = ("truncated", "empty", "bit-flipped")


@pytest.mark.slow
def test_resumed_build_discards_damaged_partials_and_recomputes(data_root):
    orbits = _orbits(4)
    full = _build(data_root / "full.zarr", orbits)
    path = data_root / "r.zarr"
    with pytest.raises(CB.BuildCancelled):
        _build(path, orbits, max_tasks=3)
    parts = sorted(CB.partials_dir(path).glob("o*.npz"))
    assert len(parts) == 3
    for p, kind in zip(parts, KINDS):
        _damage(p, kind)
        assert CB.partial_damage(p) is not None
    spec = ",".join(str(o) for o in orbits)
    r = subprocess.run([sys.executable, "-c", "from app.cli import main; main()", "climatology", "build", "--orbits", spec, "--n-scans",
                        str(N_SCANS), "--cube", str(path), "--inline"], capture_output=True, text=True,
                       env=_env(data_root), cwd=ROOT, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Traceback" not in out and "Aborted" not in out
    for p in parts:
        assert f"discarding damaged partial {p.name}" in out
    a, b = CB.open_cube(path), CB.open_cube(full)
    assert a.ledger["sources"] == b.ledger["sources"]
    np.testing.assert_array_equal(a.ds["count"].values, b.ds["count"].values)
    np.testing.assert_allclose(a.ds["total"].values, b.ds["total"].values, rtol=1e-12)
    assert not list(CB.partials_dir(path).glob("o*.npz"))


@pytest.mark.parametrize("kind", KINDS)
def test_merge_skips_a_damaged_partial(tmp_path, kind, caplog):
    orbits = _orbits(3)
    path = tmp_path / "m.zarr"
    with pytest.raises(CB.BuildCancelled):
        _build(path, orbits, max_tasks=2)
    parts = sorted(CB.partials_dir(path).glob("o*.npz"))
    assert CB.partial_damage(parts[0]) is None
    _damage(parts[0], kind)
    cfg = {"world_seed": 0, "n_scans": N_SCANS, "regions": CB.region_labels(()), "extra_regions": [],
           "model_fns": {}, "model_product": "precip_mean", "torch_threads": 1, "loader": "simulator",
           "skill_extra": False, "identities": CB._identities(CB.expand_sources(["truth", "reference"]), {})}
    ledger = CB.merge_partials(path, parts, cfg)
    assert ledger["sources"]["truth"] == [orbits[1]]  # the damaged orbit is not merged: a rerun computes it
    assert f"discarding damaged partial {parts[0].name}" in caplog.text
    _build(path, orbits[:2])
    assert CB.open_cube(path).ledger["sources"]["truth"] == orbits[:2]


# --------------------------------------------------------------------------- temps of killed writers
_WRITER = r"""
import sys, time
from pathlib import Path
from catalogs.store import atomic_write

def writer(tmp):
    tmp.mkdir()
    (tmp / "chunk").write_bytes(b"x" * 2_000_000)
    print("writing", flush=True)
    time.sleep(600)

atomic_write(Path(sys.argv[1]), writer)
"""


def _start(args, data_root, ready="writing"):
    proc = subprocess.Popen([sys.executable, "-c", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=_env(data_root), cwd=ROOT)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.strip() == ready:
            return proc
    proc.wait()
    raise AssertionError("the writer ended before writing:\n" + "".join(lines))


def _kill(proc):
    proc.kill()  # SIGKILL: no cleanup handler runs
    proc.wait()
    proc.stdout.close()


def _temps(folder):
    return sorted(p.name for p in Path(folder).glob(".*.tmp-*"))


def test_temps_of_a_killed_writer_are_cleaned_and_a_live_writers_kept(data_root):
    from catalogs import store
    from tests.app_helpers import orbit_like_swath, write_retrieval

    folder = data_root / "outputs" / "m-0123456789ab" / "synthetic"
    target = folder / "orbit-000007.zarr"
    live = _start([_WRITER, str(target)], data_root)
    try:
        (tmp,) = _temps(folder)
        assert f"-{live.pid}-" in tmp
        # another write in the same folder while the writer is alive: its temp is kept
        write_retrieval(orbit_like_swath(n_scans=20, n_pix=5, orbit=8), model="m", sha="0123456789ab" * 5 + "0123",
                        orbit=8)
        assert _temps(folder) == [tmp] and store.cleanup_stale(folder) == 0
    finally:
        _kill(live)
    # the writer was killed: the next write in that folder removes its 2 MB temp
    assert _temps(folder) == [tmp]
    path = write_retrieval(orbit_like_swath(n_scans=20, n_pix=5, orbit=7), model="m",
                           sha="0123456789ab" * 5 + "0123", orbit=7)
    assert path == target and store.is_complete(target)
    assert _temps(folder) == []


def test_temp_without_a_pid_is_removed_only_when_old(tmp_path):
    from catalogs import store

    fresh = tmp_path / ".x.zarr.tmp-0123456789ab"  # the name older versions wrote
    old = tmp_path / ".y.npz.tmp-01234567.npz"
    fresh.mkdir()
    old.write_bytes(b"z")
    t = old.stat().st_mtime - 2 * store.STALE_AGE_S
    os.utime(old, (t, t))
    assert store.cleanup_stale(tmp_path) == 1 and fresh.exists() and not old.exists()
    mine = tmp_path / store.temp_name("w.zarr")  # this process is alive: kept whatever its age
    mine.write_bytes(b"")
    os.utime(mine, (t, t))
    assert store.cleanup_stale(tmp_path) == 0 and mine.exists()


_MERGE = r"""
import sys, time
from pathlib import Path
import numpy as np
from catalogs.simulator import geometry
from evaluation import cube as CB
from evaluation.cube import store as CS  # the module whose _write_cube writes through atomic_write

real = CS.atomic_write

def slow(path, writer, meta=None):
    def w(tmp):
        writer(tmp)  # the merged cube is written whole into its temp, then the process is killed
        print("writing", flush=True)
        time.sleep(600)
    return real(path, w, meta)

CS.atomic_write = slow
o0 = geometry.orbit_at_time(np.datetime64("2016-01-31T20:00"))
CB.build_cube([o0, o0 + 1], ["truth", "reference"], Path(sys.argv[1]), scheduler="inline", n_scans=int(sys.argv[2]))
"""


@pytest.mark.slow
def test_cube_merge_killed_mid_write_leaves_no_temp_after_the_rerun(data_root):
    path = data_root / "cubes" / "k.zarr"
    proc = _start([_MERGE, str(path), str(N_SCANS)], data_root)
    (tmp,) = _temps(path.parent)
    assert f"-{proc.pid}-" in tmp
    _kill(proc)
    assert not path.exists() and len(list(CB.partials_dir(path).glob("o*.npz"))) == 2
    r = subprocess.run([sys.executable, "-c", "from app.cli import main; main()", "climatology", "build",
                        "--orbits", ",".join(str(o) for o in _orbits(2)), "--n-scans", str(N_SCANS),
                        "--cube", str(path), "--inline"], capture_output=True, text=True, env=_env(data_root),
                       cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert CB.open_cube(path).ledger["sources"]["truth"] == _orbits(2)
    assert _temps(path.parent) == [] and _temps(CB.partials_dir(path)) == []


def test_a_whole_store_left_aside_by_a_killed_writer_is_restored(tmp_path, tiny_swath):
    """Killed between moving the old store aside and renaming the new one into place: both are
    whole; the next run puts the newest back instead of deleting it."""
    import time

    from catalogs import store

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = dead.stdout.strip()

    target = tmp_path / "orbit-000001.zarr"
    host = store.temp_name("x").split("-")[1]

    def aside(ds, meta, tag):  # a whole store, under the temp name the killed writer gave it
        src = tmp_path / "elsewhere" / tag / target.name
        store.write_dataset(ds, src, meta=meta)
        to = target.with_name(f".{target.name}.tmp-{host}-{pid}-{tag * 12}")
        os.replace(src, to)
        return to

    old = aside(tiny_swath, {"v": "old"}, "a")  # the old store, moved aside
    time.sleep(0.05)
    new = aside(tiny_swath.assign_attrs(version="new"), {"v": "new"}, "b")  # the new one, not yet renamed
    assert not target.exists() and old.exists() and new.exists()
    store.write_dataset(tiny_swath, tmp_path / "orbit-000002.zarr")  # the next write in that folder
    assert store.read_marker(target) == {"v": "new"} and store.open_dataset(target).attrs["version"] == "new"
    assert _temps(tmp_path) == []

"""Data roots confine every user path; stores are atomic and only valid once complete."""

import os

import numpy as np
import pytest
import xarray as xr

from catalogs import store
from catalogs.config import PathOutsideRoots, confine, get_roots


def test_relative_and_inside_paths_resolve(data_root):
    roots = get_roots()
    (data_root / "a").mkdir()
    assert roots.confine("a") == (data_root / "a").resolve()
    assert roots.confine(str(data_root / "a" / "b.nc")) == (data_root / "a" / "b.nc").resolve()


@pytest.mark.parametrize("bad", ["../outside", "/etc/passwd", "a/../../x", "~/.ssh/id_rsa", "", "a\x00b"])
def test_escapes_are_refused(data_root, bad):
    with pytest.raises(PathOutsideRoots):
        get_roots().confine(bad)


def test_symlink_out_of_root_is_refused(data_root, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("no")
    (data_root / "link").symlink_to(secret)
    with pytest.raises(PathOutsideRoots, match="outside the configured data roots"):
        get_roots().confine("link")


def test_extra_read_roots_are_readable_not_writable(data_root, tmp_path, monkeypatch):
    archive = tmp_path / "archive"
    archive.mkdir()
    monkeypatch.setenv("RAINCHECK_READ_ROOTS", str(archive))
    roots = get_roots()
    assert roots.confine(archive / "g.HDF5") == archive / "g.HDF5"
    with pytest.raises(PathOutsideRoots):
        roots.confine(archive / "g.HDF5", write=True)


def test_confine_prefix_trick(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root-evil").mkdir()
    with pytest.raises(PathOutsideRoots):
        confine(tmp_path / "root-evil" / "x", [tmp_path / "root"])


@pytest.mark.parametrize("suffix", [".zarr", ".nc"])
def test_atomic_write_roundtrip(tiny_swath, tmp_path, suffix):
    path = tmp_path / f"orbit{suffix}"
    store.write_dataset(tiny_swath, path, meta={"orbit": 1234})
    assert store.is_complete(path)
    assert store.read_marker(path) == {"orbit": 1234}
    back = store.open_dataset(path).load()
    np.testing.assert_array_equal(back.Tc.values, tiny_swath.Tc.values)
    assert list(tmp_path.glob(".*tmp-*")) == []


@pytest.mark.parametrize("suffix", [".zarr", ".nc"])
def test_crash_mid_write_leaves_nothing_valid(tiny_swath, tmp_path, suffix):
    path = tmp_path / f"orbit{suffix}"

    def crashing_writer(tmp):
        tiny_swath.to_netcdf(tmp, engine="h5netcdf") if suffix == ".nc" else tiny_swath.to_zarr(tmp)
        raise KeyboardInterrupt("killed mid-write")

    with pytest.raises(KeyboardInterrupt):
        store.atomic_write(path, crashing_writer)
    assert not store.is_complete(path)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(store.IncompleteStore):
        store.open_dataset(path)


def test_crash_keeps_the_previous_valid_store(tiny_swath, tmp_path):
    path = tmp_path / "orbit.zarr"
    store.write_dataset(tiny_swath, path, meta={"v": 1})

    def crashing_writer(tmp):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        store.atomic_write(path, crashing_writer, meta={"v": 2})
    assert store.read_marker(path) == {"v": 1}
    xr.testing.assert_identical(store.open_dataset(path).load(), store.open_dataset(path).load())


def test_store_without_marker_is_not_valid(tiny_swath, tmp_path):
    path = tmp_path / "half.zarr"
    tiny_swath.to_zarr(path)  # written by something that crashed before marking it complete
    assert not store.is_complete(path)
    with pytest.raises(store.IncompleteStore, match="incomplete"):
        store.open_dataset(path)


def test_cleanup_stale(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    name = store.temp_name("orbit.zarr").split("-")  # this host, a process that has exited
    (tmp_path / "-".join([*name[:-2], dead.stdout.strip(), name[-1]])).mkdir()
    old = tmp_path / ".x.nc.tmp-0123456789ab"  # no pid recorded: stale when old
    old.write_text("")
    t = old.stat().st_mtime - 2 * store.STALE_AGE_S
    os.utime(old, (t, t))
    live = tmp_path / store.temp_name("y.zarr")  # this process is writing it
    live.mkdir()
    assert store.cleanup_stale(tmp_path) == 2
    assert list(tmp_path.iterdir()) == [live]


def test_unknown_suffix(tiny_swath, tmp_path):
    with pytest.raises(ValueError, match="use a .zarr or .nc suffix"):
        store.write_dataset(tiny_swath, tmp_path / "x.csv")

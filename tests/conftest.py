"""Shared test fixtures: tiny canonical swaths, an isolated data root, the shared fixtures dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from catalogs import schema

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
GPM_FIXTURES = SHARED / "fixtures" / "gpm"


def make_tiny_swath(n_scans: int = 12, n_pix: int = 9, orbit: int = 1234, seed: int = 0, **kw):
    rng = np.random.default_rng(seed)
    lat = np.linspace(-10, 10, n_scans)[:, None] + np.zeros((1, n_pix))
    lon = np.linspace(-5, 5, n_pix)[None, :] + np.linspace(0, 3, n_scans)[:, None]
    tc = 150 + 100 * rng.random((n_scans, n_pix, schema.N_CHANNELS))
    time = np.datetime64("2016-05-01T00:00:00", "ns") + np.arange(n_scans) * np.timedelta64(1900, "ms")
    rain = rng.gamma(0.3, 2.0, (n_scans, n_pix)).astype(np.float32)
    ref = rain.copy()
    ref[:, : n_pix // 3] = np.nan
    args = dict(tc=tc, lat=lat, lon=lon, time=time, surface_type=np.zeros((n_scans, n_pix), np.int8),
                orbit_number=orbit, source="test", surface_precip=ref, surface_precip_truth=rain)
    args.update(kw)
    return schema.make_swath(**args)


@pytest.fixture
def tiny_swath():
    return make_tiny_swath()


@pytest.fixture(scope="session", autouse=True)
def _session_data_root(tmp_path_factory):
    """No test reads or writes the data root of whoever runs the suite (``~/.cache/raincheck``):
    the session gets an empty one of its own (one per xdist worker). A developer's built demo
    cube there once made a test read it instead of the shipped one; CI has no such cube."""
    root = tmp_path_factory.mktemp("session-data-root")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAINCHECK_DATA_ROOT", str(root))
        mp.delenv("RAINCHECK_READ_ROOTS", raising=False)
        yield root


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    """An isolated raincheck data root for one test."""
    root = tmp_path / "data-root"
    root.mkdir()
    monkeypatch.setenv("RAINCHECK_DATA_ROOT", str(root))
    monkeypatch.delenv("RAINCHECK_READ_ROOTS", raising=False)
    return root


@pytest.fixture(scope="session")
def small_cube_copy(tmp_path_factory):
    """``copy(dest)``: puts a copy of one small climatology cube (:func:`tests.app_helpers.small_cube`
    with its defaults, built once per test session) and its partials at ``dest``; returns ``dest``.
    For the servers of the browser tests, which each get a cube of their own to change."""
    import shutil

    from evaluation.cube import partials_dir
    from tests.app_helpers import small_cube

    folder = tmp_path_factory.mktemp("small-cube")
    with pytest.MonkeyPatch.context() as mp:  # whatever the build reads or writes stays in the session's tmp
        mp.setenv("RAINCHECK_DATA_ROOT", str(folder))
        mp.delenv("RAINCHECK_READ_ROOTS", raising=False)
        built = small_cube(folder / "cube.zarr")

    def copy(dest):
        dest = Path(dest)
        shutil.copytree(built, dest)
        if partials_dir(built).exists():
            shutil.copytree(partials_dir(built), partials_dir(dest))
        return dest

    return copy


#: modules started first under pytest-xdist (``make test``): the user guide runs its commands one
#: after another for about 3.5 min on one core; collected last, it ran alone at the end while the
#: other worker idled. (Starting every slow module first was tried and was slower: the dask
#: clusters and subprocesses of two slow tests at once oversubscribe two cores: 12:51 -> 15:38.)
FIRST = ("tests/test_user_guide.py",)


def pytest_collection_modifyitems(config, items):
    """``FIRST`` modules first, the rest in collection order (each module's tests kept together,
    so that its module fixtures are built once)."""
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in FIRST)

"""Tests of the synthetic GMI observing system (catalogs.simulator)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from catalogs import schema, store
from catalogs.simulator import (REFERENCE_PIXELS, SIMULATED_TB_OFFSET_K, climate, forward, geometry,
                                simulate_orbit, simulate_truth)

SEG = 300  # scans in a short segment


@pytest.fixture(scope="module")
def full_orbit():
    return simulate_orbit(2000, world_seed=3)


# ------------------------------------------------------------------ determinism and schema
def test_same_seed_and_orbit_give_identical_bytes(tmp_path):
    a = simulate_orbit(123, world_seed=7, n_scans=SEG)
    b = simulate_orbit(123, world_seed=7, n_scans=SEG)
    for v in ("Tc", "surface_precip", "surface_precip_truth", "surface_type", "quality_flag", "lat", "lon", "time"):
        assert a[v].values.tobytes() == b[v].values.tobytes(), v
    assert a.attrs == b.attrs or all(np.array_equal(a.attrs[k], b.attrs[k]) for k in a.attrs)
    pa, pb = tmp_path / "a.nc", tmp_path / "b.nc"
    store.write_dataset(a, pa)
    store.write_dataset(b, pb)
    ra, rb = store.open_dataset(pa), store.open_dataset(pb)
    assert ra["Tc"].values.tobytes() == rb["Tc"].values.tobytes() == a["Tc"].values.tobytes()
    ra.close(), rb.close()


def test_different_seed_orbit_or_source_differ():
    a = simulate_orbit(123, world_seed=7, n_scans=SEG)
    assert not np.array_equal(a.Tc.values, simulate_orbit(123, world_seed=8, n_scans=SEG).Tc.values)
    assert not np.array_equal(a.Tc.values, simulate_orbit(124, world_seed=7, n_scans=SEG).Tc.values)
    assert not np.array_equal(a.Tc.values, simulate_orbit(123, world_seed=7, source="simulated", n_scans=SEG).Tc.values)


def test_segment_is_prefix_of_full_orbit(full_orbit):
    seg = simulate_orbit(2000, world_seed=3, n_scans=SEG)
    for v in ("Tc", "surface_precip_truth", "surface_precip", "lat", "lon", "surface_type"):
        assert seg[v].values.tobytes() == full_orbit[v].isel(along_track=slice(0, SEG)).values.tobytes(), v


def test_schema_and_truth_attributes(full_orbit):
    ds = schema.validate(full_orbit)
    assert ds.attrs["source"] == "synthetic-observed"
    assert ds.attrs["platform"] == "SYN-GPM"
    assert ds.attrs["world_seed"] == 3
    assert ds.attrs["scaling_mean_pct_per_K"] == 2.0
    assert ds.attrs["scaling_extreme_pct_per_K"] == 7.0
    t_mid = ds.time.values[len(ds.time) // 2]
    assert ds.attrs["gmst_anomaly_K"] == pytest.approx(climate.gmst_anomaly(t_mid), abs=1e-3)
    assert ds.Tc.dtype == np.float32 and np.isfinite(ds.Tc.values).all()
    assert set(np.unique(ds.surface_type.values)) <= set(schema.SURFACE_TYPES)


def test_bad_arguments():
    with pytest.raises(ValueError, match="source"):
        simulate_orbit(1, source="model")
    with pytest.raises(ValueError, match="outside"):
        simulate_orbit(geometry.ORBIT_RANGE[1] + 1, n_scans=5)


# ------------------------------------------------------------------ geometry
def test_orbit_numbering_and_record_span():
    assert geometry.orbit_start_time(0) == np.datetime64("2014-03-04T00:00:00")
    lo, hi = geometry.ORBIT_RANGE
    assert geometry.orbit_start_time(lo) <= np.datetime64("1998-01-01")
    assert geometry.orbit_start_time(hi + 1) >= np.datetime64("2060-12-31T12:00")
    assert 92.4 <= geometry.PERIOD_S / 60 <= 92.8
    orbits = np.array([lo, -1, 0, 1, 12345, hi])
    t = geometry.orbit_start_time(orbits)
    assert np.array_equal(geometry.orbit_at_time(t), orbits)
    assert np.array_equal(geometry.orbit_at_time(t + np.timedelta64(5555, "s")), orbits)
    assert geometry.orbit_at_time("2014-03-04T01:33:00") == 1


def test_swath_shape_width_and_latitude_bounds(full_orbit):
    n = full_orbit.sizes["along_track"]
    assert 2900 <= n <= 3000 and full_orbit.sizes["cross_track"] == 221
    lat, lon = full_orbit.lat.values, full_orbit.lon.values
    assert 68.0 < lat.max() < 71.0 and -71.0 < lat.min() < -68.0
    w = geometry.great_circle_km(lat[:, 0], lon[:, 0], lat[:, -1], lon[:, -1])
    assert np.all((w > 860) & (w < 910)), (w.min(), w.max())
    dt = np.diff(full_orbit.time.values).astype(np.int64) / 1e9
    assert np.allclose(dt, 1.9, atol=0.01)
    # one orbit: the swath comes back to where it started (next orbit begins 24° further west)
    assert abs(lat[0, 110] - lat[-1, 110]) < 1.0


def test_antimeridian_crossing_orbit_is_continuous():
    for orbit in range(0, 40):
        g = geometry.swath_geometry(orbit)
        lon = g["lon"]
        d = np.abs(np.diff(lon, axis=0))
        if (d > 180).any():
            break
    else:
        pytest.fail("no antimeridian crossing found")
    assert lon.min() >= -180 and lon.max() < 180
    # across the crossing the true step is small: wrapped differences stay below 1 degree
    wrapped = np.abs((np.diff(lon, axis=0) + 180) % 360 - 180)
    assert wrapped.max() < 1.0
    ds = simulate_orbit(orbit, n_scans=geometry.N_SCANS)
    schema.validate(ds)
    # pixels either side of the antimeridian are physically close
    i, j = np.argwhere(d > 180)[0]
    assert geometry.great_circle_km(lon[i, j] * 0 + g["lat"][i, j], lon[i, j], g["lat"][i + 1, j], lon[i + 1, j]) < 20


def test_ground_tracks_walk_with_time():
    lat, lon, t = geometry.subsatellite_track(np.array([0, 1, 2, 15, 16]), 61)
    assert lat.shape == lon.shape == t.shape == (5, 61)
    # successive orbits start ≈ 24° further west
    step = (lon[1, 0] - lon[0, 0] + 180) % 360 - 180
    assert -25.5 < step < -22.5
    # after a day the tracks do not repeat exactly (nodal precession, non-integer orbits per day)
    assert abs((lon[3, 0] - lon[0, 0] + 180) % 360 - 180) > 1.0
    assert np.allclose(lat[:, 0], -65.0, atol=0.01)
    assert abs(lat.max() - 65.0) < 0.5


def test_subsatellite_track_is_vectorised_and_fast():
    import time
    orbits = np.arange(*geometry.ORBIT_RANGE)
    t0 = time.perf_counter()
    lat, lon, t = geometry.subsatellite_track(orbits, 60)
    assert time.perf_counter() - t0 < 10.0
    assert lat.shape == (orbits.size, 60)
    # spot-check against the per-orbit geometry
    g = geometry.subsatellite_track(orbits[[7, 100000]], 60)
    assert np.allclose(g[0], lat[[7, 100000]]) and np.allclose(g[1], lon[[7, 100000]])

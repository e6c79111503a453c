"""Tests of the synthetic GMI observing system (catalogs.simulator)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from catalogs import schema, store
from catalogs.simulator import (REFERENCE_MIN_RATE, REFERENCE_PIXELS, SIMULATED_TB_OFFSET_K, climate, forward,
                                geometry, simulate_orbit, simulate_truth)

SEG = 300  # scans in a short segment


@pytest.fixture(scope="module")
def full_orbit():
    return simulate_orbit(2000, world_seed=3)


@pytest.fixture(scope="module")
def full_truth():
    return simulate_truth(2000, world_seed=3)


def tb(ds, label):
    return ds["Tc"].sel(pmw_frequency=label).values


def scaling_pct_per_K(ratio, dT):
    """Compound scaling (%/K) implied by a ratio between climates dT apart."""
    return 100.0 * (ratio ** (1.0 / dT) - 1.0)


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
    # pixels either side of the antimeridian are physically close (one scan apart)
    i, j = np.argwhere(d > 180)[0]
    assert geometry.great_circle_km(g["lat"][i, j], lon[i, j], g["lat"][i + 1, j], lon[i + 1, j]) < 20


def test_climatology_is_continuous_across_the_antimeridian():
    """The climatology's longitude patterns (warm pool at 140°E, eastern-basin dry zones, mild
    Western Europe) wrap around: every field steps across 180° no more than between two
    neighbouring longitudes elsewhere on the globe (sim-4 jumped 9.4 % in rain probability there)."""
    from catalogs.simulator import climate
    lat = np.repeat(np.arange(-60.0, 60.5, 0.5, dtype=np.float32)[:, None], 2, axis=1)
    zeros = np.zeros_like(lat)
    step = np.float32(0.02)
    for doy in (15, 196):
        for land in (zeros, zeros + 1):
            across = climate.climatology(lat, np.array([180.0 - step / 2, -180.0 + step / 2], np.float32) + zeros,
                                         doy, land, hour_utc=6.0)
            lons = np.arange(-179.0, 179.0, 1.0, dtype=np.float32)
            for name, v in across.items():
                jump = np.abs(np.log(v[:, 1] / v[:, 0]))
                # the steepest relative change of this field over the same 0.02° step anywhere else
                ref = 0.0
                for lon0 in lons:
                    pair = climate.climatology(lat, np.array([lon0, lon0 + step], np.float32) + zeros, doy, land, hour_utc=6.0)[name]
                    ref = max(ref, float(np.abs(np.log(pair[:, 1] / pair[:, 0])).max()))
                assert jump.max() <= ref + 1e-6, (name, doy, float(jump.max()), ref)
    # and the seam of sim-4 is gone: the warm pool's rain probability is the same on both sides
    p = climate.climatology(np.zeros(2, np.float32), np.array([179.99, -179.99], np.float32), 100, np.zeros(2, np.float32))["p_wet"]
    assert abs(p[1] / p[0] - 1) < 1e-3, p


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


# ------------------------------------------------------------------ rain structure
def test_truth_rain_is_zero_inflated_heavy_tailed_and_spatially_correlated(full_truth):
    r = full_truth["rain"].astype(np.float64)
    wet = r > 0.1
    assert 0.02 < wet.mean() < 0.15  # a few percent of pixels rain
    assert (r == 0).mean() > 0.8
    x = r[wet]
    assert np.quantile(x, 0.99) > 8 * np.median(x)  # heavy tail
    assert x.max() > 50 and x.max() < 300
    # both regimes present; convective pixels rain harder
    conv = full_truth["conv"]
    assert conv.sum() > 0 and (~conv & wet).sum() > conv.sum()
    assert np.median(r[conv]) > 3 * np.median(r[~conv & wet])
    # power-law spectrum across track, slope within NOTES' k^-2.5...-3.5 (± 0.4)
    rows = r[r.mean(1) > 0.3]
    p = np.mean(np.abs(np.fft.rfft(rows - rows.mean(1, keepdims=True), axis=1)) ** 2, 0)
    k = np.fft.rfftfreq(r.shape[1], d=5.2)
    m = (k > 1 / 200) & (k < 1 / 15)
    slope = np.polyfit(np.log(k[m]), np.log(p[m]), 1)[0]
    assert -3.9 < slope < -2.1, slope
    # neighbouring pixels are strongly correlated, distant ones are not
    a = r - r.mean()
    c1 = np.mean(a[:, :-1] * a[:, 1:]) / a.var()
    c60 = np.mean(a[:, :-60] * a[:, 60:]) / a.var()
    assert c1 > 0.7 and c60 < 0.15, (c1, c60)


# ------------------------------------------------------------------ surfaces and physics
def test_land_mask_is_real_geography():
    from catalogs.simulator import surface

    lf = surface.land_fraction
    for lat, lon in [(48.0, 2.0), (-15.0, -55.0), (40.0, -100.0), (-25.0, 135.0), (20.0, 80.0)]:
        assert lf(np.array(lat), np.array(lon)) > 0.95, (lat, lon)
    for lat, lon in [(0.0, -140.0), (-40.0, 0.0), (30.0, -40.0), (-10.0, 80.0), (45.0, -179.99)]:
        assert lf(np.array(lat), np.array(lon)) < 0.05, (lat, lon)
    frac, res = surface.land_fraction_raster()
    w = np.cos(np.radians(np.linspace(90 - res / 2, -90 + res / 2, frac.shape[0])))[:, None]
    assert 0.27 < float((frac * w).sum() / (w.sum() * frac.shape[1])) < 0.31  # Earth: 29 % land


def test_sea_ice_and_snow_follow_the_seasons():
    from catalogs.simulator import surface

    lat = np.linspace(-70, 70, 281)
    def edge_south(doy):  # northernmost ice-covered latitude south of the equator
        return lat[(lat < 0) & surface.sea_ice(lat, np.zeros_like(lat), doy)].max()

    assert edge_south(258) > edge_south(75) + 5  # Antarctic ice reaches furthest north in September
    north = lambda doy: lat[(lat > 0) & surface.sea_ice(lat, np.full_like(lat, -170.0), doy)]  # noqa: E731
    assert north(75).size and north(75).min() < north(258).min(initial=90) - 5  # Bering Sea: March >> Sept
    jan = simulate_truth(int(geometry.orbit_at_time(np.datetime64("2015-01-15"))), n_scans=geometry.N_SCANS)
    assert (jan["surface_type"] == 4).sum() > 1000  # northern winter: snow on land
    # snow retreats in a warmer world (same weather, +4 K)
    o = int(geometry.orbit_at_time(np.datetime64("2015-01-15")))
    cold = simulate_truth(o, source="simulated", climate_offset_K=0.0)["surface_type"]
    warm = simulate_truth(o, source="simulated", climate_offset_K=4.0)["surface_type"]
    assert (warm == 4).sum() < (cold == 4).sum()


def test_clear_sky_ocean_and_land_tb(full_orbit, full_truth):
    ds, t = full_orbit, full_truth
    clear = (t["rain"] == 0) & (t["clw"] < 0.03)
    ocean = clear & (t["surface_type"] == 0) & (t["wv"] > 10) & (t["wv"] < 40)
    land = clear & (t["surface_type"] == 1)
    assert ocean.sum() > 10000 and land.sum() > 2000
    med = {c: np.median(tb(ds, c)[ocean]) for c in ("18.7V", "18.7H", "36.64V", "89.0V")}
    assert 185 <= med["18.7V"] <= 200, med
    assert 110 <= med["18.7H"] <= 130, med
    assert 200 <= med["36.64V"] <= 215, med
    assert 240 <= med["89.0V"] <= 265, med
    # land (emissivity ≈ 0.9) is warm and weakly polarised; the ocean is cold and strongly polarised
    assert np.median(tb(ds, "18.7H")[land]) > med["18.7H"] + 80
    assert np.median(tb(ds, "10.65V")[land] - tb(ds, "10.65H")[land]) < 25
    assert np.median(tb(ds, "10.65V")[ocean] - tb(ds, "10.65H")[ocean]) > 60


@pytest.fixture(scope="module")
def rainy_orbits():
    # a few tropical-season orbits with their truth, for the rain signatures
    out = []
    for o in (2000, 2001, 2002):
        out.append((simulate_orbit(o, world_seed=3), simulate_truth(o, world_seed=3)))
    return out


def test_rain_emission_warms_10_to_37_ghz_over_ocean(rainy_orbits):
    for ds, t in rainy_orbits:
        ocean = t["surface_type"] == 0
        clear = ocean & (t["rain"] == 0) & (t["clw"] < 0.05) & (t["wv"] > 20) & (t["wv"] < 50)
        rain = ocean & (t["rain"] > 3) & (t["rain"] < 15) & (t["wv"] > 20) & (t["wv"] < 50)
        assert rain.sum() > 200
        for ch, min_warming in (("10.65H", 10), ("18.7H", 40), ("36.64H", 40), ("18.7V", 15)):
            d = np.mean(tb(ds, ch)[rain]) - np.mean(tb(ds, ch)[clear])
            assert d > min_warming, (ch, d)


def test_ice_scattering_depresses_89_to_183_ghz_in_convection(rainy_orbits):
    deep_min = []
    for ds, t in rainy_orbits:
        clear = (t["rain"] == 0) & (t["clw"] < 0.05) & (t["surface_type"] <= 1)
        conv = t["conv"] & (t["rain"] > 10) & (t["surface_type"] <= 1)
        assert conv.sum() > 20
        for ch in ("89.0V", "166.0V", "183.31±7V"):
            d = np.mean(tb(ds, ch)[conv]) - np.mean(tb(ds, ch)[clear])
            assert d < -40, (ch, d)
        deep_min.append(tb(ds, "89.0V")[conv].min())
        # stratiform light rain barely scatters
        strat = (t["rain"] > 0.5) & (t["rain"] < 2) & ~t["conv"] & (t["surface_type"] == 0)
        assert np.mean(tb(ds, "89.0V")[strat]) > np.mean(tb(ds, "89.0V")[clear]) - 25
    # deepest cores are depressed by ~100 K or more, but stay physical
    assert min(deep_min) < 170
    assert min(deep_min) > 60


def test_footprints_coarser_at_low_frequency():
    # one raining pixel in a clear tropical ocean scene, no noise: the response spreads over
    # more pixels at 10 GHz than at 89 GHz
    n, m = 41, 41
    f = lambda v: np.full((n, m), v, np.float32)  # noqa: E731
    state = {"t_surf": f(300.0), "wv": f(40.0), "clw": f(0.0), "iwp": f(0.0), "rain": f(0.0),
             "freezing_km": f(4.5), "land_frac": f(0.0), "ice": np.zeros((n, m), bool),
             "snow": np.zeros((n, m), bool), "wind": f(7.0), "soil_wet": f(0.0)}
    base = forward.brightness_temperatures(state, (13.3, 5.2), None)
    state["rain"][20, 20], state["clw"][20, 20], state["iwp"][20, 20] = 20.0, 1.0, 2.0
    resp = np.abs(forward.brightness_temperatures(state, (13.3, 5.2), None) - base)
    idx = {c: schema.CHANNELS.index(c) for c in ("10.65H", "18.7H", "36.64H", "89.0V", "166.0V")}
    width = {c: int((resp[..., k] > 0.1 * resp[..., k].max()).sum()) for c, k in idx.items()}
    assert width["10.65H"] > width["18.7H"] > width["89.0V"], width
    assert width["36.64H"] > width["89.0V"] >= 1 and width["166.0V"] <= width["89.0V"], width
    # the footprint average dilutes a small cell: peak response far below the pencil-beam one
    assert resp[..., idx["10.65H"]].max() < 0.5 * resp[..., idx["89.0V"]].max()


def test_instrument_noise_matches_nedt():
    n, m = 200, 50
    f = lambda v: np.full((n, m), v, np.float32)  # noqa: E731
    state = {"t_surf": f(290.0), "wv": f(20.0), "clw": f(0.0), "iwp": f(0.0), "rain": f(0.0),
             "freezing_km": f(3.0), "land_frac": f(0.0), "ice": np.zeros((n, m), bool),
             "snow": np.zeros((n, m), bool), "wind": f(7.0), "soil_wet": f(0.0)}
    noise = np.random.default_rng(0).standard_normal((n, m, 13), dtype=np.float32)
    d = forward.brightness_temperatures(state, (13.3, 5.2), noise) - forward.brightness_temperatures(state, (13.3, 5.2), None)
    assert np.allclose(d.std(axis=(0, 1)), forward.NEDT, rtol=0.05)


# ------------------------------------------------------------------ reference
def test_reference_only_on_central_strip(full_orbit):
    ds = full_orbit
    ref, truth = ds.surface_precip.values, ds.surface_precip_truth.values
    on = np.zeros(ref.shape[1], bool)
    on[REFERENCE_PIXELS] = True
    assert on.sum() == 49 and abs(np.flatnonzero(on).mean() - 110) <= 0.5
    assert np.isfinite(ref[:, on]).all() and np.isnan(ref[:, ~on]).all()
    assert np.isfinite(truth).all()
    assert ((ds.quality_flag.values & 8) > 0).tolist() == np.broadcast_to(~on, ref.shape).tolist()
    # strip ≈ 245 km wide
    lat, lon = ds.lat.values, ds.lon.values
    i0, i1 = REFERENCE_PIXELS.start, REFERENCE_PIXELS.stop - 1
    w = np.median(geometry.great_circle_km(lat[:, i0], lon[:, i0], lat[:, i1], lon[:, i1]))
    assert 220 < w < 270, w
    # minimum detectable rate and a small error
    r, t = ref[:, on], truth[:, on]
    assert (r[t < 0.5 * REFERENCE_MIN_RATE] == 0).all()
    assert ((r == 0) | (r >= REFERENCE_MIN_RATE)).all()
    heavy = t > 1.0
    rel = r[heavy] / t[heavy]
    assert 0.95 < np.median(rel) < 1.05 and 0.08 < np.std(np.log(rel)) < 0.25
    assert np.corrcoef(r[heavy], t[heavy])[0, 1] > 0.95


# ------------------------------------------------------------------ the simulated source
def test_simulated_source_attributes_and_offsets():
    for orbit, off in ((1000, 2.0), (1001, 4.0)):
        ds = simulate_orbit(orbit, source="simulated", n_scans=50)
        schema.validate(ds)
        assert ds.attrs["source"] == "synthetic-simulated"
        assert ds.attrs["climate_offset_K"] == off
        t_mid = geometry.orbit_start_time(orbit) + np.timedelta64(int(geometry.PERIOD_S / 2), "s")
        assert ds.attrs["gmst_anomaly_K"] == pytest.approx(climate.gmst_anomaly(t_mid) + off, abs=1e-3)
        assert np.allclose(ds.attrs["tb_offset_K"], SIMULATED_TB_OFFSET_K)
    obs = simulate_orbit(1000, n_scans=50)
    assert "climate_offset_K" not in obs.attrs and "tb_offset_K" not in obs.attrs
    with pytest.raises(ValueError):
        simulate_orbit(1000, climate_offset_K=2.0)


def test_simulated_tb_differ_by_stated_offset_in_clear_sky():
    o = 3001
    obs, sim = simulate_orbit(o), simulate_orbit(o, source="simulated", climate_offset_K=0.0)
    to, ts = simulate_truth(o), simulate_truth(o, source="simulated", climate_offset_K=0.0)
    # independent weather ...
    assert np.corrcoef(to["rain"].ravel(), ts["rain"].ravel())[0, 1] < 0.2
    # ... in the same climate, seen by a forward model offset by a few K
    m = (to["rain"] == 0) & (ts["rain"] == 0) & (to["clw"] < 0.05) & (ts["clw"] < 0.05) & (to["surface_type"] == 0)
    d = sim.Tc.values[m].mean(0) - obs.Tc.values[m].mean(0)
    assert np.allclose(d, SIMULATED_TB_OFFSET_K, atol=1.0), d
    assert np.abs(SIMULATED_TB_OFFSET_K).max() >= 2.0


def test_simulated_warmer_worlds_scale_as_stated():
    o = 1500
    base = simulate_truth(o, source="simulated", climate_offset_K=0.0)
    for off in (2.0, 4.0):
        warm = simulate_truth(o, source="simulated", climate_offset_K=off)
        assert warm["gmst_anomaly_K"] == pytest.approx(base["gmst_anomaly_K"] + off)
        assert np.allclose(warm["wv"] / base["wv"], 1.07 ** off, rtol=1e-4)
        assert scaling_pct_per_K(warm["rain"].mean() / base["rain"].mean(), off) == pytest.approx(2.0, abs=0.4)
        q = np.quantile(warm["rain"], 0.9995) / np.quantile(base["rain"], 0.9995)
        assert scaling_pct_per_K(q, off) == pytest.approx(7.0, abs=0.5)


# ------------------------------------------------------------------ climate
def test_gmst_scenario():
    g = climate.gmst_anomaly
    t = lambda y: np.datetime64(f"{y}-07-01")  # noqa: E731
    rate = (g(t(2024)) - g(t(2004))) / 2.0
    assert 0.18 <= rate <= 0.28  # K per decade, observed ≈ 0.2-0.26
    d2000s = np.mean([g(t(y)) for y in range(2000, 2010)])
    d2050s = np.mean([g(t(y)) for y in range(2050, 2060)])
    assert d2050s - d2000s >= 1.0
    assert 1.0 <= np.mean([g(t(y)) for y in range(2011, 2021)]) <= 1.2  # AR6: 1.09 K
    ys = np.arange(1998, 2061)
    assert np.all(np.diff([g(t(y)) for y in ys]) > 0)


def _decade_orbits(y0, n):
    days = (np.arange(n) * (3652.0 / n)).astype(int)
    return geometry.orbit_at_time(np.datetime64(f"{y0}-01-01T00:00", "s") + days.astype("timedelta64[D]"))


def test_warming_signal_in_truth_same_weather_between_decades():
    """The forced change alone: 2000s weather, in its own climate and in the 2050s climate."""
    late = np.mean([climate.gmst_anomaly(np.datetime64(f"{y}-07-01")) for y in range(2050, 2060)])
    a, b, dts = [], [], []
    for o in _decade_orbits(2000, 5):
        t0 = simulate_truth(int(o), world_seed=11)
        t1 = simulate_truth(int(o), world_seed=11, gmst_anomaly_K=late)
        a.append(t0["rain"].ravel()), b.append(t1["rain"].ravel()), dts.append(late - t0["gmst_anomaly_K"])
        assert np.array_equal(t0["rain"] > 0, t1["rain"] > 0)  # occurrence unchanged
    a, b, dT = np.concatenate(a), np.concatenate(b), float(np.mean(dts))
    assert 1.0 < dT < 1.3
    assert scaling_pct_per_K(b.mean() / a.mean(), dT) == pytest.approx(2.0, abs=0.3)
    for q in (0.999, 0.9999):
        assert scaling_pct_per_K(np.quantile(b, q) / np.quantile(a, q), dT) == pytest.approx(7.0, abs=0.4)
    # light rain gets lighter
    assert np.quantile(b[b > 0], 0.3) < np.quantile(a[a > 0], 0.3)


@pytest.mark.slow
def test_warming_signal_measurable_between_decades_of_the_record():
    """2000-2009 vs 2050-2059 orbits (independent weather), with bootstrap 95 % intervals over
    orbits. Weather noise with 80 orbits per decade is ≈ 2 %/K (1 σ): the extreme-rain signal
    is detectable, the mean signal (≈ 2 % in 50 years) is not, as in the real world (NOTES)."""
    n = 80
    edges = np.concatenate([[0.0], np.geomspace(0.01, 500.0, 801)])

    def orbit_stats(o):
        t = simulate_truth(int(o), world_seed=5)
        r = t["rain"].ravel()
        return np.histogram(r, edges)[0], t["gmst_anomaly_K"], r.sum(dtype=np.float64)

    per = {}
    # the orbits are independent and the simulator is numpy and FFTs (which release the GIL):
    # two threads use both cores of the CI machine; results are in orbit order, as in a loop
    with ThreadPoolExecutor(max_workers=2) as pool:
        for y0 in (2000, 2050):
            hists, dts, sums = zip(*pool.map(orbit_stats, _decade_orbits(y0, n)))
            per[y0] = (np.array(hists), np.array(dts), np.array(sums))

    def quantile(h, q):
        return np.interp(q, np.cumsum(h) / h.sum(), edges[1:])

    def est(ia, ib):
        (ha, da, sa), (hb, db, sb) = ([x[ia] for x in per[2000]], [x[ib] for x in per[2050]])
        dT = db.mean() - da.mean()
        mean = (sb.sum() / hb.sum()) / (sa.sum() / ha.sum())
        q = quantile(hb.sum(0), 0.999) / quantile(ha.sum(0), 0.999)
        return scaling_pct_per_K(mean, dT), scaling_pct_per_K(q, dT)

    m, q = est(np.arange(n), np.arange(n))
    rng = np.random.default_rng(0)
    boot = np.array([est(rng.integers(0, n, n), rng.integers(0, n, n)) for _ in range(300)])
    lo, hi = np.quantile(boot, [0.025, 0.975], axis=0)
    assert lo[0] <= 2.0 <= hi[0], ("mean", m, lo[0], hi[0])
    assert lo[1] <= 7.0 <= hi[1], ("99.9th percentile", q, lo[1], hi[1])
    assert lo[1] > 0.0, ("extreme-rain increase not detectable", q, lo[1])
    assert hi[1] - lo[1] < 12.0
    assert q > m


@pytest.fixture(scope="module")
def seasonal_truth():
    out = {}
    for month in ("01", "07"):
        t0 = np.datetime64(f"2015-{month}-10T00:00", "s")
        orbits = geometry.orbit_at_time(t0) + np.arange(0, 16 * 15, 15)  # one orbit a day for ≈ 2 weeks
        s = np.zeros(18)
        c = np.zeros(18)
        for o in orbits:
            t = simulate_truth(int(o), world_seed=2)
            i = np.clip(((t["lat"] + 90) // 10).astype(int), 0, 17)
            s += np.bincount(i.ravel(), t["rain"].ravel(), 18)
            c += np.bincount(i.ravel(), minlength=18)
        out[month] = s / np.maximum(c, 1) * 24  # mm/day by 10° band, index 9 = 0-10N
    return out


def test_latitudinal_and_seasonal_pattern(seasonal_truth):
    for month, z in seasonal_truth.items():
        band = lambda lat: z[(lat + 90) // 10]  # noqa: E731
        itcz = max(band(-10), band(0), band(10))
        assert itcz > 3 * band(20) and itcz > 3 * band(-30), (month, z)  # wet ITCZ, dry subtropics
        assert band(40) > 1.5 * band(20) and band(-50) > 1.5 * band(-30), (month, z)  # storm tracks
        assert 1.5 < np.sum(z[3:15] * np.cos(np.radians(np.arange(-55, 65, 10)))) / np.sum(np.cos(np.radians(np.arange(-55, 65, 10)))) < 4.5
    jan, jul = seasonal_truth["01"], seasonal_truth["07"]
    # the ITCZ follows the sun
    assert jul[10] > jan[10] and jan[8] > jul[8], (jan, jul)
    # northern storm track stronger in winter
    assert jan[13] > jul[13]


# ------------------------------------------------------------------ command line
def test_cli_simulate_writes_nc_and_zarr(tmp_path):
    from click.testing import CliRunner

    from app.cli import main

    runner = CliRunner()
    for suffix in (".nc", ".zarr"):
        out = tmp_path / f"orbit{suffix}"
        res = runner.invoke(main, ["simulate", "--orbit", "-5", "--world", "4", "--source", "simulated",
                                   "--scans", "20", "--out", str(out)])
        assert res.exit_code == 0, res.output
        assert store.is_complete(out)
        ds = store.open_dataset(out)
        schema.validate(ds)
        ref = simulate_orbit(-5, world_seed=4, source="simulated", n_scans=20)
        assert ds.Tc.values.tobytes() == ref.Tc.values.tobytes()
        assert ds.attrs["world_seed"] == 4 and ds.attrs["climate_offset_K"] == 4.0
        assert ds.attrs["gmst_anomaly_K"] == ref.attrs["gmst_anomaly_K"]
        ds.close()
    res = runner.invoke(main, ["simulate", "--orbit", "1", "--out", str(tmp_path / "x.txt")])
    assert res.exit_code != 0 and ".nc or .zarr" in res.output
    res = runner.invoke(main, ["simulate", "--orbit", "1", "--climate-offset", "2", "--out", str(tmp_path / "x.nc")])
    assert res.exit_code != 0 and "simulated" in res.output


def test_identical_bytes_across_processes(tmp_path):
    """No hidden global state: a fresh interpreter writes the same netCDF bytes."""
    import subprocess
    import sys

    args = ["simulate", "--orbit", "777", "--world", "9", "--scans", "40"]
    code = "import sys; from app.cli import main; main(sys.argv[1:])"
    for name in ("p1.nc", "p2.nc"):
        subprocess.run([sys.executable, "-c", code, *args, "--out", str(tmp_path / name)], check=True,
                       capture_output=True)
    local = tmp_path / "local.nc"
    store.write_dataset(simulate_orbit(777, world_seed=9, n_scans=40), local)
    b1, b2, b3 = ((tmp_path / n).read_bytes() for n in ("p1.nc", "p2.nc", "local.nc"))
    assert b1 == b2 == b3

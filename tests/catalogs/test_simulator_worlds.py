"""World presets and counterfactual warming of the synthetic observing system (issue 14).

The paired design: the same weather (same random draws) in a warmer climate, by the rules of a
world preset. Checked here against independent numpy computations on the simulator's output:
bit-identity at zero warming, scenes inside an orbit, the truth's forced response, what the
stationary control keeps fixed, and the errors on bad input.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from catalogs.simulator import geometry, simulate_orbit, simulate_truth
from catalogs.simulator.worlds import WARMING_RANGE_K, WORLDS, World, get_world

ORBIT = 2000  # July 2014
SEG = dict(scan_start=900, n_scans=120)  # tropical Pacific and land: wet tropics, convection


def _same(a, b) -> bool:
    """Bit-identical arrays (NaN where NaN)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _same_swath(a, b) -> None:
    for v in ("Tc", "surface_precip", "surface_precip_truth", "water_vapour", "lat", "lon", "time", "surface_type",
              "quality_flag"):
        assert _same(a[v].values, b[v].values), v


# ------------------------------------------------------------------ presets and the API
def test_presets_are_named_versioned_and_documented():
    assert {"today", "stationary"} <= set(WORLDS) and any(w.mechanisms for w in WORLDS.values())
    for name, w in WORLDS.items():
        assert isinstance(w, World) and w.name == name and w.version and w.title and w.description
        assert get_world(name) is w and get_world(w) is w
        for m in w.mechanisms:
            assert m.name and m.description and m.magnitude and m.citation and m.params
            for param, value in m.params:  # the mechanism's parameters are what the world's physics reads
                assert getattr(w, param) == value, (name, m.name, param)
        d = w.describe()
        assert d["name"] == name and d["version"] == w.version
    with pytest.raises(dataclass_frozen_error()):
        WORLDS["today"].version = "x"


def dataclass_frozen_error():
    import dataclasses
    return dataclasses.FrozenInstanceError


def test_unknown_world_and_bad_warming_are_refused_with_the_value_and_the_range():
    with pytest.raises(ValueError, match="unknown world preset 'tomorrow'.*today.*stationary"):
        simulate_orbit(ORBIT, world="tomorrow", n_scans=10)
    with pytest.raises(ValueError, match="unknown world preset"):
        simulate_truth(ORBIT, world="Today", n_scans=10)
    lo, hi = WARMING_RANGE_K
    for bad in (hi + 0.5, lo - 0.1, 100.0, float("nan"), float("inf"), -float("inf"), "two", None, True):
        with pytest.raises(ValueError, match=r"warming_K.*\[-3, 8\]") as err:
            simulate_orbit(ORBIT, warming_K=bad, n_scans=10)
        assert repr(bad) in str(err.value) or str(bad) in str(err.value)
        with pytest.raises(ValueError, match=r"warming_K"):
            simulate_truth(ORBIT, warming_K=bad, n_scans=10)
    for bad in (-1, geometry.N_SCANS, 2.5, "3"):
        with pytest.raises(ValueError, match="scan_start"):
            simulate_orbit(ORBIT, scan_start=bad, n_scans=10)
    simulate_truth(ORBIT, warming_K=hi, n_scans=5)  # the ends of the range are accepted
    simulate_truth(ORBIT, warming_K=lo, n_scans=5)


# ------------------------------------------------------------------ zero warming is today, bit for bit
def test_every_preset_at_zero_warming_is_todays_output_bit_for_bit():
    ref = simulate_orbit(ORBIT, **SEG)
    assert ref.attrs["world"] == "today" and ref.attrs["warming_K"] == 0.0
    assert ref.attrs["scene_gmst_anomaly_K"] == ref.attrs["gmst_anomaly_K"]
    for name in WORLDS:
        _same_swath(simulate_orbit(ORBIT, world=name, warming_K=0.0, **SEG), ref)
    sim = simulate_orbit(10867, source="simulated", n_scans=40)
    _same_swath(simulate_orbit(10867, source="simulated", n_scans=40, world="stationary"), sim)


# ------------------------------------------------------------------ scenes inside an orbit
@pytest.fixture(scope="module")
def full_orbit():
    return simulate_orbit(ORBIT, world="published", warming_K=2.0)


@pytest.mark.parametrize("first,n", [(0, 30), (3, 40), (1500, 300), (geometry.N_SCANS - 25, None)])
def test_a_scene_equals_the_same_scans_of_the_full_orbit(full_orbit, first, n):
    seg = simulate_orbit(ORBIT, world="published", warming_K=2.0, scan_start=first, n_scans=n)
    stop = geometry.N_SCANS if n is None else first + n
    assert seg.sizes["along_track"] == stop - first
    _same_swath(seg, full_orbit.isel(along_track=slice(first, stop)))
    tr = simulate_truth(ORBIT, world="published", warming_K=2.0, scan_start=first, n_scans=n)
    assert _same(tr["rain"], full_orbit["surface_precip_truth"].values[first:stop])
    whole = simulate_truth(ORBIT, world="published", warming_K=2.0)
    for k in ("iwp", "clw", "wv", "t_surf", "wet_rank"):  # the anvils' smoothing too
        assert _same(tr[k], whole[k][first:stop]), k


# ------------------------------------------------------------------ the truth's forced response
SCENES = [(2000 + 1361 * k, 700) for k in range(4)]  # 4 scenes of 300 scans, tropics to mid-latitudes


@functools.lru_cache(maxsize=None)
def _truths(world: str, warming: float) -> list[dict]:
    if warming == 0.0 and world != "today":  # every preset at zero warming is today (tested above)
        return _truths("today", 0.0)
    return [simulate_truth(o, world=world, warming_K=warming, scan_start=s, n_scans=300) for o, s in SCENES]


@pytest.mark.parametrize("world", ["today", "stationary"])
@pytest.mark.parametrize("warming", [1.0, 4.0])
def test_truth_scales_exactly_by_the_injected_factor_above_the_95th_wet_percentile(world, warming):
    base, warm = _truths(world, 0.0), _truths(world, warming)
    factor = 1.07 ** warming
    for b, w in zip(base, warm):
        assert _same(b["rain"] > 0, w["rain"] > 0)  # occurrence does not change
        assert _same(b["wet_rank"], w["wet_rank"])  # the same weather
        top = b["wet_rank"] >= 0.95
        assert top.sum() > 20
        np.testing.assert_allclose(w["rain"][top] / b["rain"][top], factor, rtol=2e-6)
        assert w["gmst_anomaly_K"] == pytest.approx(b["gmst_anomaly_K"] + warming, abs=1e-12)
    # the all-pixel p99.9 of the paired scenes, numpy's quantile on the pooled pixels
    pb = np.quantile(np.concatenate([b["rain"].ravel() for b in base]), 0.999)
    pw = np.quantile(np.concatenate([w["rain"].ravel() for w in warm]), 0.999)
    pct = 100 * ((pw / pb) ** (1 / warming) - 1)
    assert abs(pct - get_world(world).injected_pct_per_K("p99.9")) < 0.3, pct


def test_truth_of_the_published_world_follows_its_mechanisms():
    w = get_world("published")
    base, warm = _truths("published", 0.0), _truths("published", 2.0)
    pct = w.convective_extreme_pct_per_K
    for b, x in zip(base, warm):
        top = b["wet_rank"] >= 0.95
        assert b["conv"][top].all()  # the top wet ranks are convective everywhere in this world
        np.testing.assert_allclose(x["rain"][top] / b["rain"][top], (1 + pct / 100) ** 2, rtol=2e-6)
    pb = np.quantile(np.concatenate([b["rain"].ravel() for b in base]), 0.999)
    pw = np.quantile(np.concatenate([x["rain"].ravel() for x in warm]), 0.999)
    assert abs(100 * ((pw / pb) ** 0.5 - 1) - w.injected_pct_per_K("p99.9")) < 0.3


# ------------------------------------------------------------------ what the stationary control keeps fixed
def test_stationary_keeps_the_environment_and_today_warms_it():
    b = simulate_truth(ORBIT, **SEG)
    st = simulate_truth(ORBIT, world="stationary", warming_K=3.0, **SEG)
    td = simulate_truth(ORBIT, world="today", warming_K=3.0, **SEG)
    assert st["scene_gmst_anomaly_K"] == b["gmst_anomaly_K"] and st["gmst_anomaly_K"] == td["gmst_anomaly_K"]
    assert td["scene_gmst_anomaly_K"] == td["gmst_anomaly_K"]
    assert _same(st["rain"], td["rain"])  # the same rain in both worlds
    for k in ("t_surf", "wv", "surface_type"):
        assert _same(st[k], b[k]), k
    warm_ocean = (b["surface_type"] == 0)
    np.testing.assert_allclose((td["t_surf"] - b["t_surf"])[warm_ocean], 3.0, atol=1e-4)
    np.testing.assert_allclose((td["wv"] / b["wv"]), 1.07 ** 3, rtol=1e-5)
    # the Tb of pixels with no rain nearby (beyond beam filling and anvils) do not change in the control
    o_b, o_s, o_t = (simulate_orbit(ORBIT, world=w, warming_K=k, **SEG)
                     for w, k in (("today", 0.0), ("stationary", 3.0), ("today", 3.0)))
    from scipy import ndimage
    wide = simulate_truth(ORBIT, scan_start=SEG["scan_start"] - 20, n_scans=SEG["n_scans"] + 40)["rain"]  # rain nearby
    far = ~ndimage.binary_dilation(wide > 0, iterations=12)[20:-20]
    assert far.sum() > 1000
    assert _same(o_s["Tc"].values[far], o_b["Tc"].values[far])
    assert np.abs(o_t["Tc"].values[far] - o_b["Tc"].values[far]).max() > 1.0  # today's environment moved
    assert o_s.attrs["warming_K"] == 3.0 and o_s.attrs["world"] == "stationary"
    assert o_s.attrs["world_version"] == get_world("stationary").version
    assert math.isclose(o_s.attrs["gmst_anomaly_K"], o_b.attrs["gmst_anomaly_K"] + 3.0)
    assert o_s.attrs["scene_gmst_anomaly_K"] == o_b.attrs["gmst_anomaly_K"]


# ------------------------------------------------------------------ the published mechanisms
def _freezing_level_0c_km(t_surf: float, rh: float = 0.8) -> float:
    """Independent check of the moist adiabat: scipy's ODE solver on dT/dz of a saturated parcel above
    the lifting condensation level (Espy: 125 m per K of dew-point depression), Tetens' saturation
    vapour pressure (not Bolton's), hydrostatic pressure."""
    from scipy.integrate import solve_ivp
    g, rd, cp, lv, eps = 9.81, 287.04, 1005.7, 2.501e6, 0.622

    def es(t):  # Tetens (Murray 1967), Pa
        return 610.78 * np.exp(17.27 * (t - 273.15) / (t - 35.86))

    e = rh * es(t_surf)
    x = np.log(e / 610.78)
    td = (17.27 * 273.15 - 35.86 * x) / (17.27 - x)
    z_lcl = 125.0 * (t_surf - td)
    t_lcl = t_surf - g / cp * z_lcl
    p_lcl = 101325.0 * (t_lcl / t_surf) ** (cp / rd)  # dry adiabat (Poisson)

    def rhs(z, y):
        t, p = y
        r = eps * es(t) / (p - es(t))
        gm = g * (1 + lv * r / (rd * t)) / (cp + lv * lv * r * eps / (rd * t * t))
        return [-gm, -p * g / (rd * t)]

    hit = lambda z, y: y[0] - 273.15  # noqa: E731
    hit.terminal = True
    sol = solve_ivp(rhs, (z_lcl, 20000.0), [t_lcl, p_lcl], events=hit, rtol=1e-7, atol=1e-5, max_step=250.0)
    return float(sol.t_events[0][0]) / 1000.0


def test_moist_adiabat_freezing_level_against_an_independent_integration():
    from catalogs.simulator import climate
    for ts in (280.0, 290.0, 300.0, 303.0):
        rise = climate.moist_adiabat_freezing_km(ts + 1) - climate.moist_adiabat_freezing_km(ts)
        ref = _freezing_level_0c_km(ts + 1) - _freezing_level_0c_km(ts)
        assert rise == pytest.approx(ref, rel=0.03), ts
        assert climate.moist_adiabat_freezing_km(ts) == pytest.approx(_freezing_level_0c_km(ts), abs=0.05)
    # faster than today's lapse-rate rule over warm surfaces, close to it over cold ones
    assert 0.29 < climate.moist_adiabat_freezing_km(301) - climate.moist_adiabat_freezing_km(300) < 0.34
    assert abs(climate.moist_adiabat_freezing_km(281) - climate.moist_adiabat_freezing_km(280) - 1 / 6) < 0.02


def test_published_freezing_level_changes_the_observation_but_not_the_truth():
    td = simulate_truth(ORBIT, world="today", warming_K=2.0, **SEG)
    fl = simulate_truth(ORBIT, world="published-freezing-level", warming_K=2.0, **SEG)
    for k in ("rain", "t_surf", "wv", "clw", "surface_type"):
        assert _same(td[k], fl[k]), k
    o_td = simulate_orbit(ORBIT, world="today", warming_K=2.0, **SEG)
    o_fl = simulate_orbit(ORBIT, world="published-freezing-level", warming_K=2.0, **SEG)
    wet_ocean = (td["rain"] > 2.0) & (td["surface_type"] == 0)
    assert wet_ocean.sum() > 50
    # a deeper warm-rain layer: more emission at 18.7 GHz H over raining ocean (the rain layer's optical depth grows)
    d19h = (o_fl["Tc"].values[..., 3] - o_td["Tc"].values[..., 3])[wet_ocean]
    assert np.median(d19h) > 0
    assert get_world("published-freezing-level").injected_pct_per_K("p99.9") == 7.0
    assert get_world("published").injected_pct_per_K("p99.9") == 14.0
    assert get_world("published").injected_pct_per_K("mean") is None


# ------------------------------------------------------------------ command line and catalogue
def test_cli_simulates_a_scene_in_a_counterfactual_climate(tmp_path):
    from click.testing import CliRunner

    from app.cli import main
    from catalogs import store

    runner = CliRunner()
    out = tmp_path / "warm.nc"
    res = runner.invoke(main, ["simulate", "--orbit", "2000", "--warming", "+2", "--world", "stationary",
                               "--world-seed", "3", "--scan-start", "900", "--scans", "12", "--out", str(out)])
    assert res.exit_code == 0, res.output
    ds = store.open_dataset(out)
    ref = simulate_orbit(2000, world_seed=3, world="stationary", warming_K=2.0, scan_start=900, n_scans=12)
    assert ds.Tc.values.tobytes() == ref.Tc.values.tobytes()
    assert ds.attrs["world"] == "stationary" and ds.attrs["warming_K"] == 2.0 and ds.attrs["world_seed"] == 3
    ds.close()
    # the old form --world N is the seed
    res = runner.invoke(main, ["simulate", "--orbit", "2000", "--world", "3", "--scans", "5", "--out",
                               str(tmp_path / "seed.nc")])
    assert res.exit_code == 0, res.output
    assert "world seed" in res.output
    bad = [(["--warming", "9"], "outside the accepted range"), (["--warming", "-3.5"], "outside the accepted range"),
           (["--warming", "nan"], "outside the accepted range"), (["--warming", "two"], "not a valid float"),
           (["--world", "tomorrow"], "unknown world preset 'tomorrow'"),
           (["--world", "3", "--world-seed", "4"], "seed is --world-seed"),
           (["--scan-start", str(geometry.N_SCANS)], "outside the orbit's scans")]
    for args, message in bad:
        target = tmp_path / "bad.nc"
        res = runner.invoke(main, ["simulate", "--orbit", "2000", *args, "--scans", "5", "--out", str(target)])
        assert res.exit_code != 0 and message in res.output, (args, res.output)
        assert not target.exists() and not store.is_complete(target)


def test_catalogue_entries_take_warming_and_world_preset():
    from catalogs.catalog import open_catalog, reader
    from catalogs.userinput import UserInputError

    cat = open_catalog()
    a = reader(cat, "truth", orbit=20000).read(n_scans=6)
    b = reader(cat, "truth", orbit=20000, warming="+2", world_preset="stationary").read(n_scans=6)
    assert a.attrs["world"] == "today" and a.attrs["warming_K"] == 0.0
    assert b.attrs["world"] == "stationary" and b.attrs["warming_K"] == 2.0
    assert b.attrs["orbit_number"] == 20000
    ref = simulate_orbit(20000, world="stationary", warming_K=2.0, n_scans=6)
    assert _same(b["surface_precip_truth"].values, ref["surface_precip_truth"].values)
    c = cat(orbit=20000, warming=1.5, world_preset="published").truth.read(n_scans=6)  # Intake's own overrides
    assert c.attrs["world"] == "published" and c.attrs["warming_K"] == 1.5
    with pytest.raises(ValueError, match=r"outside the accepted range \[-3, 8\]"):
        reader(cat, "observations", orbit=20000, warming=12).read(n_scans=6)
    with pytest.raises(UserInputError, match="warming"):
        reader(cat, "truth", orbit=20000, warming="nan").read(n_scans=6)
    with pytest.raises(ValueError, match="unknown world preset 'tomorrow'; presets: today, stationary"):
        reader(cat, "swath", orbit=20000, world_preset="tomorrow").read(n_scans=6)
    # the catalogue's description names every preset
    import yaml
    from catalogs.catalog import DEMO_CATALOG
    text = yaml.safe_load(DEMO_CATALOG.read_text())["user_parameters"]["world_preset"]["description"]
    assert all(name in text for name in WORLDS)

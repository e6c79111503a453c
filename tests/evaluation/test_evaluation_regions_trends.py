"""Regions (antimeridian, offline AR6, fallback), trends (Sen/MK vs scipy, CI coverage), IPCC
envelope and verdicts."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.stats
import shapely.geometry

from evaluation import ipcc, regions, trends


# --------------------------------------------------------------------------- regions
def test_ar6_offline_from_package(monkeypatch):
    # no network: any attempt to download must fail loudly
    import pooch

    def no_net(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(pooch.HTTPDownloader, "__call__", no_net)
    regions._reference_regions.cache_clear()
    regions._ar6_region.cache_clear()
    try:
        assert regions.ar6_available()
        assert len(regions.reference_abbrevs()) == 58
        r = regions.get_region("WAF")
        # Lagos (6.5N, 3.4E) is in West Africa; Paris is not
        assert r.mask([6.5, 48.9], [3.4, 2.35]).tolist() == [True, False]
    finally:
        regions._reference_regions.cache_clear()
        regions._ar6_region.cache_clear()


def test_fallback_to_srex_when_ar6_unavailable(monkeypatch, caplog):
    import regionmask

    class Unavailable:  # what a failed download looks like to raincheck
        def __getattr__(self, name):
            raise OSError("AR6 shapefile cannot be downloaded (offline)")

    monkeypatch.setattr(regionmask.defined_regions, "ar6", Unavailable())
    regions._reference_regions.cache_clear()
    regions._ar6_region.cache_clear()
    try:
        with caplog.at_level(logging.WARNING):
            assert regions.reference_region_set() == "SREX"
        assert "falling back" in caplog.text
        med = regions.get_region("MED")
        assert med.kind == "srex"
        assert med.mask([40.0], [15.0]).tolist() == [True]
    finally:
        monkeypatch.undo()
        regions._reference_regions.cache_clear()
        regions._ar6_region.cache_clear()


def test_antimeridian_regions():
    lat = np.array([0.0, 0.0, 0.0, 0.0, 0.0])
    lon = np.array([179.9, -179.9, 180.0, -150.0, 0.0])
    # AR6 Equatorial Pacific spans the date line
    epo = regions.get_region("EPO")
    assert epo.mask(lat, lon).tolist() == [True, True, True, True, False]
    # lookup grid agrees on both sides of the date line
    ids = regions.ar6_lookup(lat, lon)
    assert ids[0] == ids[1] == ids[2] == epo.params[0]
    # a box crossing the antimeridian (lon0 > lon1)
    box = regions.get_region("bbox:170,-10,-170,10")
    assert box.mask(lat, lon).tolist() == [True, True, True, False, False]
    # the same box as a polygon drawn in 0..360 longitudes
    poly = shapely.geometry.box(170, -10, 190, 10)
    pr = regions.get_region(poly)
    assert pr.mask(lat, lon).tolist() == [True, True, True, False, False]
    # and drawn with longitudes beyond -180
    pr2 = regions.get_region(shapely.geometry.box(-190, -10, -170, 10))
    assert pr2.mask(lat, lon).tolist() == [True, True, True, False, False]


def test_lookup_grid_agrees_with_polygons():
    rng = np.random.default_rng(0)
    lat = rng.uniform(-70, 70, 4000)
    lon = rng.uniform(-180, 180, 4000)
    ids = regions.ar6_lookup(lat, lon)
    # exact assignment by polygon tests, region by region
    exact = np.full(lat.size, -1)
    for a in regions.reference_abbrevs():
        r = regions.get_region(a)
        exact[r.mask(lat, lon)] = r.params[0]
    agree = np.mean(ids == exact)
    assert agree > 0.99, agree  # disagreements only within a grid cell of a border


def test_simple_regions_and_errors():
    lat = np.array([-45.0, 0.0, 29.99, 30.0, np.nan])
    lon = np.array([0.0, 0.0, 0.0, 0.0, 0.0])
    assert regions.get_region("global").mask(lat, lon).tolist() == [True, True, True, True, False]
    assert regions.get_region("lat:-30:30").mask(lat, lon).tolist() == [False, True, True, False, False]
    # land/ocean: Sahara vs mid-Pacific
    assert regions.get_region("land").mask([23.0, 0.0], [10.0, -150.0]).tolist() == [True, False]
    assert regions.get_region("ocean").mask([23.0, 0.0], [10.0, -150.0]).tolist() == [False, True]
    for bad in ("nowhere", "lat:40:30", "bbox:1,2,3", ""):
        with pytest.raises(ValueError):
            regions.get_region(bad)
    specs = [r["spec"] for r in regions.list_regions()]
    assert "global" in specs and "WAF" in specs and "lat:-10:0" in specs


# --------------------------------------------------------------------------- trends
def test_sen_slope_equals_scipy_theilslopes():
    rng = np.random.default_rng(1)
    for n in (5, 12, 40):
        x = np.sort(rng.uniform(0, 10, n))
        y = 0.3 * x + rng.normal(0, 1, n)
        y[::4] = np.round(y[::4])  # some ties
        ours = trends.sen_slope(y, x)
        ref = scipy.stats.theilslopes(y, x, alpha=0.95)
        assert ours["slope"] == pytest.approx(ref.slope)
        assert ours["intercept"] == pytest.approx(ref.intercept)
        assert ours["ci"][0] == pytest.approx(ref.low_slope)
        assert ours["ci"][1] == pytest.approx(ref.high_slope)


def test_mann_kendall_matches_pymannkendall_and_autocorrelation_widens_ci():
    import pymannkendall as mk

    rng = np.random.default_rng(2)
    n = 60
    e = np.zeros(n)
    for i in range(1, n):
        e[i] = 0.8 * e[i - 1] + rng.normal(0, 1)
    y = 0.02 * np.arange(n) + e
    r = trends.mann_kendall(y, "hamed_rao")
    ref = mk.hamed_rao_modification_test(y)
    assert r["p"] == pytest.approx(ref.p) and r["var_s"] == pytest.approx(ref.var_s)
    t = np.array([np.datetime64(f"{1960 + i}-07-01") for i in range(n)])
    hr = trends.trend(t, y + 10, method="hamed_rao")
    orig = trends.trend(t, y + 10, method="original")
    assert hr["var_inflation"] > 1
    w_hr = np.diff(hr["ci_per_decade"])[0]
    w_or = np.diff(orig["ci_per_decade"])[0]
    assert w_hr > w_or


def test_trend_pct_per_decade_and_per_K_coverage():
    """The 95 % CIs cover the true scaling in most of many noisy synthetic records."""
    rng = np.random.default_rng(3)
    years = np.arange(1998, 2061)
    t = np.array([np.datetime64(f"{y}-07-01") for y in years])
    g = 0.6 + 0.025 * (years - 1998) + rng.normal(0, 0.08, years.size)  # GMST with noise
    true_k = 7.0
    hits = 0
    for k in range(40):
        y = 3.0 * np.exp(np.log1p(true_k / 100) * g) * np.exp(rng.normal(0, 0.03, years.size))
        out = trends.trend(t, y, gmst=g)
        lo, hi = out["ci_pct_per_K"]
        hits += lo <= true_k <= hi
    assert hits >= 34  # ≈ 95 % nominal, allow sampling noise
    # per decade: d ln y / d decade = ln(1.07) * 0.25 K/decade
    out = trends.trend(t, 3.0 * np.exp(np.log1p(0.07) * (0.6 + 0.025 * (years - 1998))))
    assert out["pct_per_decade"] == pytest.approx(100 * (1.07 ** 0.25 - 1), rel=1e-6)


def test_trend_edge_cases():
    t = np.array([np.datetime64(f"{2000 + i}-01-01") for i in range(3)])
    out = trends.trend(t, [1.0, 2.0, np.nan])
    assert out["n"] == 2 and np.isnan(out["pct_per_decade"])
    t = np.array([np.datetime64(f"{2000 + i}-01-01") for i in range(10)])
    out = trends.trend(t, np.zeros(10))  # all zero (e.g. no exceedances): no estimate, not 0 ± 0
    assert np.isnan(out["pct_per_K"]) and "zero" in out["note"]
    from evaluation import ipcc

    assert ipcc.verdict(out["pct_per_K"], out["ci_pct_per_K"], ipcc.EXTREME_INTENSITY)["verdict"] == "not detectable"
    y = np.array([0.0, 1, 2, 3, 4, 5, 6, 7, 8, 9])  # one zero: the linear (mean-relative) method
    out = trends.trend(t, y)
    assert out["method"] == "linear" and out["pct_per_decade"] > 0


def test_deseasonalise_removes_cycle():
    t = np.array([np.datetime64(f"{2000 + i // 12}-{i % 12 + 1:02d}-15") for i in range(120)])
    cyc = 1 + 0.5 * np.sin(2 * np.pi * np.arange(120) / 12)
    d = trends.deseasonalise(t, 2 * cyc)
    np.testing.assert_allclose(d, 1.0)


# --------------------------------------------------------------------------- IPCC
def test_envelopes_and_sources():
    assert (ipcc.GLOBAL_MEAN.lo, ipcc.GLOBAL_MEAN.hi) == (1.0, 3.0)
    assert ipcc.EXTREME_INTENSITY.central == 7.0
    assert "SPM" in ipcc.EXTREME_INTENSITY.source and "Pendergrass" in ipcc.GLOBAL_MEAN.source
    assert ipcc.envelope_for("mean", "global") is ipcc.GLOBAL_MEAN
    assert ipcc.envelope_for("q999", "WAF") is ipcc.EXTREME_INTENSITY
    assert ipcc.envelope_for("mean", "MED").hi == 0
    assert ipcc.envelope_for("mean", "WAF") is None
    assert ipcc.envelope_for("wet_fraction") is None
    fe = ipcc.frequency_envelope(-3.0)
    # a Pareto tail with slope -3: 7 %/K in intensity -> 1.07**3 - 1 in frequency
    assert fe.central == pytest.approx(100 * (1.07**3 - 1))
    e = ipcc.spm6_expected(2.0)
    assert e["frequency_ratio"] == 1.7 and e["intensity_change_pct"] == 14.0
    assert ipcc.spm6_expected(1.25)["intensity_change_pct"] == pytest.approx((6.7 + 10.5) / 2)


@pytest.mark.parametrize("est,ci,expected", [
    (2.0, (1.2, 2.8), "consistent"),
    (0.5, (-1.5, 2.5), "not detectable"),
    (-2.0, (-3.0, -0.5), "inconsistent"),
    (8.0, (3.5, 3.9), "inconsistent"),
    (float("nan"), (float("nan"), float("nan")), "not detectable"),
])
def test_verdicts(est, ci, expected):
    v = ipcc.verdict(est, ci, ipcc.GLOBAL_MEAN)
    assert v["verdict"] == expected
    assert v["reason"]


def test_verdict_without_expectation():
    assert ipcc.verdict(1.0, (0.5, 1.5), None)["verdict"] == "detected, no AR6 expectation"
    assert ipcc.verdict(1.0, (-0.5, 1.5), None)["verdict"] == "not detectable"


def test_default_gmst_labelled():
    g = ipcc.default_gmst(np.array(["2015-07-02", "2025-07-02"], dtype="datetime64[ns]"))
    assert g[0] == pytest.approx(1.09, abs=0.01)
    assert g[1] - g[0] == pytest.approx(0.25, abs=0.01)
    vals, label = trends.gmst_for(np.array(["2015-07-02"], dtype="datetime64[ns]"), "default")
    assert "default" in label

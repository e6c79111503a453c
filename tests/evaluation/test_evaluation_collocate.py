"""Collocation tables: contents, selection by region/season/surface, and per-orbit scores that
agree with the cube's aggregated statistics on the same orbit."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import xarray as xr

from catalogs import schema
from catalogs.simulator import geometry, simulate_orbit
from evaluation import collocate as CL
from evaluation import cube as CB
from evaluation import regions as RG

LEVELS = np.array([0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99])
N_SCANS = 200


def retrieval_for(swath: xr.Dataset) -> xr.Dataset:
    """A canonical retrieval: a lognormal spread around the truth (test stand-in for a model)."""
    t = swath["surface_precip_truth"].values.astype(np.float64)
    q = (t[..., None] * np.exp(0.4 * scipy.stats.norm.ppf(LEVELS))).astype(np.float32)
    mean = (t * np.exp(0.08)).astype(np.float32)
    dims = (schema.ALONG, schema.CROSS)
    ds = xr.Dataset(
        {"precip_quantiles": (dims + ("quantile",), q, {"units": "mm h-1"}),
         "precip_mean": (dims, mean, {"units": "mm h-1"}),
         "precip_median": (dims, t.astype(np.float32), {"units": "mm h-1"}),
         "pop": (dims, (t >= 0.1).astype(np.float32), {"units": "1"}),
         "p_heavy": (dims, (t >= 10).astype(np.float32), {"units": "1"})},
        coords={"lat": swath["lat"], "lon": swath["lon"], "time": swath["time"], "quantile": LEVELS},
        attrs={"orbit_number": swath.attrs["orbit_number"], "sensor": "GMI", "source": "test", "model": "fake",
               "model_sha256": "0" * 64})
    return schema.validate(ds, "retrieval")


def fake_model(swath):
    return retrieval_for(swath)


def test_collocation_table_and_selection():
    o = geometry.orbit_at_time(np.datetime64("2019-07-01"))
    sw = simulate_orbit(o, n_scans=N_SCANS)
    tab = CL.collocate(sw, {"fake": retrieval_for(sw)})
    n = sw.sizes["along_track"] * sw.sizes["cross_track"]
    assert tab.sizes["pixel"] == n
    np.testing.assert_array_equal(tab["truth"].values, sw["surface_precip_truth"].values.ravel())
    assert tab["on_strip"].sum() == np.isfinite(sw["surface_precip"].values).sum()
    assert set(np.unique(tab["season"].values)) == {"JJA"}
    sub = CL.select(tab, "ocean", surface="ocean")
    assert np.all(np.isin(sub["surface"].values, [0, 3]))  # the ocean group: ocean + sea ice
    assert np.all(np.isin(CL.select(tab, surface="land")["surface"].values, [1, 2, 4]))
    strip = CL.select(tab, strip=True)
    assert np.isfinite(strip["reference"].values).all()
    ids = RG.ar6_lookup(tab["lat"].values, tab["lon"].values)
    soo = RG.get_region("SOO").params[0]
    assert np.sum(tab["ar6"].values == "SOO") == np.sum(ids == soo)
    assert CL.select(tab, season="DJF").sizes["pixel"] == 0


def test_orbit_scores_agree_with_cube(tmp_path):
    o = geometry.orbit_at_time(np.datetime64("2019-07-01"))
    sw = simulate_orbit(o, n_scans=N_SCANS)
    tab = CL.collocate(sw, {"fake": retrieval_for(sw)})
    p = CB.build_cube([o], ["reference", "fake"], tmp_path / "c.zarr", scheduler="inline", n_scans=N_SCANS,
                      model_fns={"fake": fake_model})
    c = CB.open_cube(p)
    for against in ("reference", "truth"):
        a = CL.orbit_scores(tab, "fake", against)
        b = c.skill("fake", against)
        assert a["n"] == b["n"]
        for k in ("bias_pct", "mae", "mse", "smape_pct"):
            assert a[k] == pytest.approx(b[k], rel=1e-9), (against, k)
        assert a["corr"] == pytest.approx(b["corr"], rel=1e-6)
        for t in ("0.1", "1"):
            for k in ("pod", "far", "csi", "hss"):
                assert a["categorical"][t][k] == pytest.approx(b["categorical"][t][k], rel=1e-9, nan_ok=True)
        pr = a["probabilistic"]
        assert pr["crps"] == pytest.approx(b["crps"], rel=1e-9)
        assert pr["pit_hist"] == pytest.approx(b["pit_hist"], rel=1e-9)  # fractional (randomised PIT)
        for cov in ("0.5", "0.8", "0.9", "0.98"):
            assert pr["coverage"][cov] == pytest.approx(b["coverage"][cov], rel=1e-12)

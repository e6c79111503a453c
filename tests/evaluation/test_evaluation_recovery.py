"""The core test: in the synthetic world, the truth's injected scalings (mean +2 %/K, high
quantiles +7 %/K; ``catalogs.simulator.climate``) are recovered by the trend machinery within
their confidence intervals.

Two designs:

- *paired warming* (fast, tight): the same orbits' weather at several warming levels (the
  simulator's "simulated" source keeps the weather of an orbit whatever ``climate_offset_K``
  is), histogrammed on the cube's bins, quantiles from the histograms, %/K from the Sen slope of
  ln(statistic) against the GMST anomaly. Weather noise cancels, so the estimate must match the
  injected scaling closely.
- *the record* (slow): orbit segments over 1998–2060 through the cube and the yearly trend
  report. Weather noise is large against a 1.3 K warming, so the intervals are wide (honestly
  so: they match an ordinary least-squares standard error); the injected scalings must lie
  inside them and the verdicts must not call the truth inconsistent.
"""

from __future__ import annotations

import numpy as np
import pytest

from catalogs.simulator import climate, geometry, simulate_truth
from evaluation import cube as CB
from evaluation import distributions as D
from evaluation import ipcc, report, trends


#: the injected scalings (%/K). raincheck reports %/K as log-slopes (compounding); the
#: simulator defines its factors as 1 + s·ΔT from pre-industrial. Over the ΔT sampled here the
#: two readings differ by ≈ 0.1 %/K for the mean, so the mean is held to ±0.2 %/K; the 99.9th
#: percentile, which the simulator lets grow a little faster than 1 + 0.07 ΔT (≈ 6.8–6.9 %/K as
#: a log-slope), is held to ±0.6 %/K of the nominal 7 %/K.
MEAN = climate.SCALING_MEAN_PCT_PER_K
EXTREME = climate.SCALING_EXTREME_PCT_PER_K


def test_paired_warming_recovers_injected_scalings():
    orbits = [int(geometry.orbit_at_time(np.datetime64(f"2020-{m:02d}-03"))) for m in (1, 4, 7, 10)]
    offsets = np.arange(0.0, 4.01, 0.5)
    stats = {"mean": [], "q99": [], "q999": []}
    dTs = []
    for off in offsets:
        counts = np.zeros(D.N_BINS, np.int64)
        total, n, dT = 0.0, 0, []
        for o in orbits:
            t = simulate_truth(o, source="simulated", climate_offset_K=float(off), n_scans=700)
            r = t["rain"]
            counts += D.histogram(r)
            total += float(np.sum(r, dtype=np.float64))
            n += r.size
            dT.append(t["gmst_anomaly_K"])
        dTs.append(float(np.mean(dT)))
        stats["mean"].append(total / n)
        q = D.quantile_from_hist(counts, [0.99, 0.999])
        stats["q99"].append(q[0])
        stats["q999"].append(q[1])
    dTs = np.array(dTs)
    time = np.array([np.datetime64(f"{2000 + i}-07-01") for i in range(dTs.size)])
    res = {k: trends.trend(time, v, gmst=dTs) for k, v in stats.items()}
    # weather is shared across warming levels, so the estimates must be close to the injected
    # scalings and the intervals narrow. The mean scales exactly per regime in the simulator:
    assert res["mean"]["pct_per_K"] == pytest.approx(MEAN, abs=0.2)
    assert np.diff(res["mean"]["ci_pct_per_K"])[0] < 0.5
    # the 99.9th percentile (from the histogram) sits above the ramp of the intensity scaling:
    assert res["q999"]["pct_per_K"] == pytest.approx(EXTREME, abs=0.6)
    assert np.diff(res["q999"]["ci_pct_per_K"])[0] < 2.0
    # the 99th percentile of *all* pixels is only ≈ the 86th percentile of wet pixels (wet
    # fraction ≈ 7 %), inside the simulator's ramp from light-rain drying to +7 %/K: it scales
    # clearly less than the 99.9th
    assert res["q99"]["pct_per_K"] < res["q999"]["pct_per_K"] - 2


# orbit segments (the first scans of each orbit: the same latitudes every time) sampling the
# whole record every third year, one month per season, two orbits a month
YEARS = (1998, 2060)
N_SCANS = 800


@pytest.fixture(scope="module")
def record_cube(tmp_path_factory):
    d = tmp_path_factory.mktemp("record")
    orbits = CB.record_orbits(years=YEARS, per_month=2)
    years = np.arange(YEARS[0], YEARS[1] + 1)
    keep = set(years[::3].tolist())
    per_year = len(orbits) // years.size
    orbits = [o for i, o in enumerate(orbits) if YEARS[0] + i // per_year in keep]
    p = CB.build_cube(orbits, ["truth"], d / "record.zarr", n_scans=N_SCANS, n_workers=2)
    return CB.open_cube(p)


@pytest.mark.slow
def test_record_trends_contain_injected_scalings(record_cube):
    out = report.trends(record_cube, "truth", "global", stats=("mean", "q99", "q999"), freq="year")
    assert out["gmst"]["source"] == "synthetic"
    got = {s["stat"]: s for s in out["series"]}
    g = np.asarray(got["mean"]["gmst_K"], dtype=float)
    expected = {"mean": MEAN, "q999": EXTREME}
    for stat, true in expected.items():
        t = got[stat]["trend"]
        lo, hi = t["ci_pct_per_K"]
        assert lo <= true <= hi, (stat, t["pct_per_K"], lo, hi, true)
        # the interval is as wide as the data say, not wider: compare with an OLS standard error
        y = np.log(np.asarray(got[stat]["value"], dtype=float))
        A = np.vstack([g, np.ones_like(g)]).T
        coef = np.linalg.lstsq(A, y, rcond=None)[0]
        r = y - A @ coef
        se = np.sqrt(r @ r / (y.size - 2) / np.sum((g - g.mean()) ** 2))
        ols_width = 100 * (np.exp(coef[0] + 1.96 * se) - np.exp(coef[0] - 1.96 * se))
        assert 0.5 * ols_width < hi - lo < 2.5 * ols_width, (stat, hi - lo, ols_width)
    # the truth is never judged inconsistent with the IPCC envelope it was built to follow
    for s in out["series"]:
        assert s["ipcc"]["verdict"] in ("consistent", "not detectable", ipcc.NO_EXPECTATION), s["ipcc"]
        assert s["ipcc"]["world_pct_per_K"] == pytest.approx(ipcc.world_scaling_pct_per_K(s["stat"]))
    # the all-pixel q99 is not an extreme statistic: no AR6 envelope, whatever the record says
    assert got["q99"]["ipcc"]["envelope"] is None

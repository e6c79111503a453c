"""The core test: in the synthetic world, the truth's injected scalings (mean +2 %/K, high
quantiles +7 %/K; ``catalogs.simulator.climate``) are recovered by the cube + trend machinery
within their confidence intervals, and the verdict logic agrees."""

from __future__ import annotations

import numpy as np
import pytest

from catalogs.simulator import climate
from evaluation import cube as CB
from evaluation import report

# orbit segments (the first scans of each orbit: the same latitudes every time) sampling the
# whole record every third year, one month per season, two orbits a month
YEARS = (1998, 2060)
N_SCANS = 800


@pytest.fixture(scope="module")
def record_cube(tmp_path_factory):
    d = tmp_path_factory.mktemp("record")
    orbits = [o for o in CB.record_orbits(years=YEARS, per_month=2)]
    years = np.arange(YEARS[0], YEARS[1] + 1)
    keep = set(years[::3].tolist())
    per_year = len(orbits) // years.size
    orbits = [o for i, o in enumerate(orbits) if YEARS[0] + i // per_year in keep]
    p = CB.build_cube(orbits, ["truth"], d / "record.zarr", n_scans=N_SCANS, n_workers=2)
    return CB.open_cube(p)


@pytest.mark.slow
def test_truth_scalings_recovered_within_ci(record_cube):
    out = report.trends(record_cube, "truth", "global", stats=("mean", "q99", "q999"), freq="year")
    assert out["gmst"]["source"] == "synthetic"
    got = {s["stat"]: s for s in out["series"]}
    expected = {"mean": climate.SCALING_MEAN_PCT_PER_K, "q99": climate.SCALING_EXTREME_PCT_PER_K,
                "q999": climate.SCALING_EXTREME_PCT_PER_K}
    for stat, true in expected.items():
        t = got[stat]["trend"]
        lo, hi = t["ci_pct_per_K"]
        assert lo <= true <= hi, (stat, t["pct_per_K"], lo, hi, true)
        # and the interval is informative (not a trivially wide one)
        assert hi - lo < (6.0 if stat != "q999" else 12.0), (stat, lo, hi)
    # the high quantiles scale faster than the mean (the CIs of q99 and the mean barely touch)
    assert got["q99"]["trend"]["pct_per_K"] > got["mean"]["trend"]["pct_per_K"] + 2
    # the verdicts of the truth against the IPCC envelope are never "inconsistent"
    for s in out["series"]:
        assert s["ipcc"]["verdict"] in ("consistent", "not detectable"), s["ipcc"]
    # %/decade and %/K agree through the synthetic GMST rate (≈ 0.21 K/decade over 1998-2060)
    m = got["q99"]["trend"]
    g = np.asarray(got["q99"]["gmst_K"])
    rate = np.polyfit(np.arange(g.size) * 0.3, g, 1)[0]  # K per decade (every third year)
    assert m["pct_per_decade"] == pytest.approx((1 + m["pct_per_K"] / 100) ** rate * 100 - 100, rel=0.35)

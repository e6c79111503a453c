"""`raincheck climatology build`, `evaluate --json`, `trends --json`: the documented schemas,
computed by the same report functions the app calls."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from app.cli import main
from catalogs.simulator import geometry
from evaluation import cube as CB
from evaluation import report


def test_cli_build_evaluate_trends(data_root, tmp_path):
    o0 = int(geometry.orbit_at_time(np.datetime64("2016-01-31T20:00")))
    cube = str(data_root / "cubes" / "t.zarr")
    r = CliRunner().invoke(main, ["climatology", "build", "--orbits", f"{o0}:{o0 + 3}", "--n-scans", "200",
                                  "--inline", "--cube", cube, "--sources", "truth,reference"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output[r.output.index("{"):])["orbits"]["truth"] == 4
    r = CliRunner().invoke(main, ["evaluate", "--cube", cube, "--json", "--region", "SOO"])
    assert r.exit_code == 0, r.output
    ev = json.loads(r.output)
    assert ev["schema"] == "raincheck.evaluate/1"
    assert set(ev) >= {"cube", "selection", "bins", "distributions", "comparison", "extremes", "skill"}
    assert ev["selection"]["region"] == "SOO"
    s = ev["distributions"]["all_pixels"]["truth"]
    assert set(s) >= {"n", "mean", "wet_fraction", "q99", "q999", "exceedance", "pdf_fraction"}
    assert ev["skill"]["reference"]["vs_truth"]["categorical"]["1"]["pod"] is not None
    # the CLI prints exactly what the report function returns
    direct = report.evaluate(CB.open_cube(cube), None, "SOO")
    assert direct["distributions"] == ev["distributions"]
    r = CliRunner().invoke(main, ["trends", "--cube", cube, "--json", "--freq", "month", "--source", "reference"])
    assert r.exit_code == 0, r.output
    tr = json.loads(r.output)
    assert tr["schema"] == "raincheck.trends/1" and tr["source"] == "reference"
    for s in tr["series"]:
        assert s["ipcc"]["verdict"] in ("consistent", "inconsistent", "not detectable", "detected, no AR6 expectation")
        assert set(s["trend"]) >= {"pct_per_decade", "ci_pct_per_decade", "pct_per_K", "ci_pct_per_K", "mann_kendall"}
    # a user's GMST file (time,gmst_K) is what the %/K figures use: twice the synthetic
    # anomalies halve every per-K trend, the per-decade trend is unchanged
    from catalogs.simulator.climate import gmst_anomaly

    times = pd.date_range("1995-01-01", "2065-01-01", freq="MS")
    f = data_root / "gmst.csv"
    pd.DataFrame({"time": times.strftime("%Y-%m-%d"),
                  "gmst_K": [2 * float(gmst_anomaly(np.datetime64(t))) for t in times]}).to_csv(f, index=False)
    r = CliRunner().invoke(main, ["trends", "--cube", cube, "--json", "--freq", "month", "--source", "reference",
                                  "--stats", "mean", "--gmst", str(f)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    user = out["series"][0]
    synth = next(s for s in tr["series"] if s["stat"] == "mean")
    assert out["gmst"]["label"] == "user GMST series" != tr["gmst"]["label"]
    assert user["gmst_K"] == pytest.approx([2 * g for g in synth["gmst_K"]], rel=1e-3, abs=1e-4)
    assert user["trend"]["pct_per_decade"] == pytest.approx(synth["trend"]["pct_per_decade"])
    if synth["trend"]["pct_per_K"] is not None:  # (four orbits of one day may span too little warming)
        assert user["trend"]["pct_per_K"] == pytest.approx(synth["trend"]["pct_per_K"] / 2, rel=0.02)
    # errors are messages, not tracebacks
    r = CliRunner().invoke(main, ["evaluate", "--cube", cube, "--models", "nope"])
    assert r.exit_code != 0 and "nope" in r.output
    r = CliRunner().invoke(main, ["trends", "--cube", cube, "--region", "bbox:0,0,10,10"])
    assert r.exit_code != 0 and "extra_regions" in r.output

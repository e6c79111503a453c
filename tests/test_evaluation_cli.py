"""`raincheck climatology build`, `evaluate --json`, `trends --json`: the documented schemas,
computed by the same report functions the app calls."""

from __future__ import annotations

import json

import numpy as np
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
        assert s["ipcc"]["verdict"] in ("consistent", "inconsistent", "not detectable")
        assert set(s["trend"]) >= {"pct_per_decade", "ci_pct_per_decade", "pct_per_K", "ci_pct_per_K", "mann_kendall"}
    # errors are messages, not tracebacks
    r = CliRunner().invoke(main, ["evaluate", "--cube", cube, "--models", "nope"])
    assert r.exit_code != 0 and "nope" in r.output
    r = CliRunner().invoke(main, ["trends", "--cube", cube, "--region", "bbox:0,0,10,10"])
    assert r.exit_code != 0 and "extra_regions" in r.output

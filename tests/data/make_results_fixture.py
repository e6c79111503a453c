"""Record what the cube queries, the box plan and the distributions / extremes / scores views
answer on the shipped demo cube, as plain JSON (tests/data/results_fixture.json), for
tests/evaluation/test_evaluation_results.py: the typed histogram and box plan must give exactly these
(``to_dict()``); the views' typed answers must have the recorded shape (keys, columns, notes,
query, models; their numbers are checked against the old compute logic run live).

The recorded file was made by the code *before* the typed results (commit 7dd6660, where the
queries and views returned dicts) with::

    RAINCHECK_DATA_ROOT=$(mktemp -d) .venv/bin/python tests/data/make_results_fixture.py

Re-record only when the numbers change on purpose (a rebuilt demo cube, a retrained model, a
changed metric), and say why in the commit. Re-recorded on 2026-12-02 for the demo cube rebuilt on
simulator raincheck-sim-5, by the same old code (a worktree of commit c1f86a2 with the new cube copied
in; the box plan's cube path then written as ``<repo>/...``). Paths are stored relative to the data root
(``<data_root>``) and the repository (``<repo>``), so the record does not depend on where it runs.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]
OUT = Path(__file__).with_name("results_fixture.json")

#: what is recorded (the test asks the same questions)
HISTOGRAMS = [("reference", "WAF", {"period": "2015-2019", "season": "JJA", "surface": "land"}),
              ("unet-reference@strip", "global", {"period": "2012-2021"})]
BOX = "bbox:-5,45,5,55"
SELECTION = {"models": ["unet-reference", "bayes-baseline"], "start_year": 2012, "end_year": 2021,
             "region": "WAF", "season": "JJA"}
VIEWS = ("distributions", "extremes", "scores")


def plain(x, data_root: str | None = None):
    """JSON-ready: numpy → python, NaN/inf → None, DataFrames → {columns, records}, tuples →
    lists, the data root and the repository in paths → placeholders."""
    if hasattr(x, "to_dict") and not isinstance(x, (pd.DataFrame, pd.Series, dict)):
        x = x.to_dict()
    if isinstance(x, pd.DataFrame):
        return {"columns": [str(c) for c in x.columns],
                "records": [[plain(v, data_root) for v in row] for row in x.itertuples(index=False)]}
    if isinstance(x, dict):
        return {str(k): plain(v, data_root) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v, data_root) for v in x]
    if isinstance(x, np.ndarray):
        return [plain(v, data_root) for v in x.tolist()]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if x is None or (not isinstance(x, str) and pd.isna(x)):
        return None
    if isinstance(x, str):
        if data_root:
            x = x.replace(data_root, "<data_root>")
        return x.replace(str(REPO), "<repo>")
    return str(x)


def record() -> dict:
    from app.state import Selection
    from app.views import distributions, extremes, scores
    from evaluation import boxes as BX
    from evaluation import cube as CB

    root = str(Path(os.environ["RAINCHECK_DATA_ROOT"]).resolve())
    cube_path = CB.PACKAGED_DEMO  # the shipped cube, whatever the data root holds
    c = CB.open_cube(cube_path)
    out = {"histograms": [plain(c.histogram(s, r, **kw), root) for s, r, kw in HISTOGRAMS],
           "box_plan": plain(BX.box_plan(BOX, c), root), "views": {}}
    sel = Selection(**SELECTION)
    for name, mod in zip(VIEWS, (distributions, extremes, scores)):
        out["views"][name] = plain(mod.compute(sel, str(cube_path)), root)
    return out


if __name__ == "__main__":
    if not os.environ.get("RAINCHECK_DATA_ROOT"):
        sys.exit("set RAINCHECK_DATA_ROOT to an empty folder (box plans name paths under it)")
    OUT.write_text(json.dumps(record(), sort_keys=True) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")

"""Typed results at the evaluation → app boundary (evaluation/results.py, app/views/answers.py):
on the shipped demo cube each type's ``to_dict()`` is exactly what the code returned before the
types (tests/data/results_fixture.json, recorded by tests/data/make_results_fixture.py at commit
7dd6660), the report types read the ``raincheck.evaluate/1`` dict back unchanged, and bad input
is refused with a message naming what is wrong."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from app.state import Selection
from app.views import distributions, extremes, scores
from app.views.answers import DistributionsAnswer, ExtremesAnswer, ScoresAnswer
from evaluation import boxes as BX
from evaluation import cube as CB
from evaluation import distributions as D
from evaluation import regions as RG
from evaluation import report
from evaluation.skill import SKILL_DEFINITIONS
from evaluation.results import (QQ, BoxGroup, BoxPlan, Comparison, CubeQuery, DistributionSummary,
                                EvaluationReport, ExtremesSummary, Histogram, Scores)
from tests.data.make_results_fixture import BOX, HISTOGRAMS, OUT, SELECTION, plain

RECORD = json.loads(OUT.read_text())
#: the cube the record was made on: the shipped demo cube, never one a user built into their data
#: root (``demo_cube_path()`` prefers that one, and its path and numbers differ)
DEMO = CB.PACKAGED_DEMO


def same(got, want, path="") -> None:
    """``got`` == ``want`` key for key and item for item (types included: a list stays a list,
    an int an int), floats to 1e-9 relative (platform rounding only); names the first difference."""
    assert type(got) is type(want), f"{path or 'top'}: {type(got).__name__} {got!r:.80} != {want!r:.80}"
    if isinstance(want, dict):
        assert sorted(got) == sorted(want), f"{path}: keys {sorted(got)} != {sorted(want)}"
        for k in want:
            same(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert len(got) == len(want), f"{path}: {len(got)} items != {len(want)}"
        for i, (a, b) in enumerate(zip(got, want)):
            same(a, b, f"{path}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-300), f"{path}: {got!r} != {want!r}"
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


@pytest.fixture(scope="module")
def demo():
    return CB.open_cube(DEMO)


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("RAINCHECK_DATA_ROOT", str(tmp_path))
    return str(tmp_path.resolve())


# ------------------------------------------------------------------------------ histogram
@pytest.mark.parametrize("i", range(len(HISTOGRAMS)))
def test_histogram_to_dict_is_the_recorded_dict(demo, i):
    source, region, kw = HISTOGRAMS[i]
    h = demo.histogram(source, region, **kw)
    assert isinstance(h, Histogram)
    same(plain(h.to_dict()), RECORD["histograms"][i])
    assert list(h.to_dict()) == ["counts", "n", "total", "total_sq", "edges"]
    # what it answers travels with it
    assert (h.source, h.region, h.period, h.season, h.surface) == (source, RG.get_region(region).spec,
                                                                   kw.get("period"), kw.get("season"),
                                                                   kw.get("surface"))
    # round trip, and the dict reading old callers use
    assert Histogram.from_dict(h.to_dict(), source=h.source, region=h.region, period=h.period, season=h.season,
                               surface=h.surface, months=h.months) == h
    assert h["counts"] is h.counts and h["n"] == h.n == int(h.counts.sum()) and h.get("nope") is None
    with pytest.raises(KeyError):
        h["source"]  # not a key of the documented dict


def test_histogram_counts_are_the_cubes_own_sums(demo):
    """Independent of the query code: sum the stored counts with xarray over the global latitude
    bands and the months of the period."""
    h = demo.histogram("unet-reference@strip", "global", period="2012-2021")
    t = demo.ds["time"].values
    sel = (t >= np.datetime64("2012-01-01")) & (t < np.datetime64("2022-01-01"))
    da = demo.ds["count"].sel(source="unet-reference@strip", region=list(RG.LAT_BAND_SPECS)).isel(time=sel)
    want = da.sum([d for d in da.dims if d != "bin"]).values
    np.testing.assert_array_equal(h.counts, want)
    assert h.months == int(sel.sum()) and h.n == int(want.sum())
    tot = float(demo.ds["total"].sel(source="unet-reference@strip", region=list(RG.LAT_BAND_SPECS))
                .isel(time=sel).sum())
    assert h.total == pytest.approx(tot, rel=1e-12) and h.mean == pytest.approx(tot / want.sum(), rel=1e-12)


def test_histogram_refuses_what_is_not_one():
    c = np.arange(D.N_BINS)
    with pytest.raises(ValueError, match="counts\\[bin\\] and edges\\[bin \\+ 1\\]"):
        Histogram(c, 0.0, 0.0, D.EDGES[:-1])
    with pytest.raises(ValueError, match="non-negative integers"):
        Histogram(-c, 0.0, 0.0, D.EDGES)
    with pytest.raises(ValueError, match="non-negative integers"):
        Histogram(c + 0.5, 0.0, 0.0, D.EDGES)
    with pytest.raises(ValueError, match="needs total_sq"):
        Histogram.from_dict({"counts": c, "total": 1.0, "edges": D.EDGES})
    with pytest.raises(ValueError, match="n=3 is not the sum"):
        Histogram.from_dict({"counts": c, "n": 3, "total": 1.0, "total_sq": 1.0, "edges": D.EDGES})
    h = Histogram(c, 1.0, 2.0, D.EDGES)
    with pytest.raises(ValueError):
        h.counts[0] = 5  # the histogram's counts are its own, read-only
    with pytest.raises(AttributeError):
        h.total = 3.0  # frozen


# ------------------------------------------------------------------------------ box plan
def test_box_plan_to_dict_is_the_recorded_dict(demo, root, tmp_path):
    plan = BX.box_plan(BOX, demo)
    assert isinstance(plan, BoxPlan) and all(isinstance(g, BoxGroup) for g in plan.groups)
    same(plain(plan.to_dict(), root), RECORD["box_plan"])
    assert json.loads(json.dumps(plan.to_dict())) == plan.to_dict()  # plain JSON
    # round trips: its dict, dict(plan) (another session), pickling (a box job in a worker process)
    assert BoxPlan.from_dict(plan.to_dict()) == plan == BoxPlan.coerce(dict(plan))
    assert pickle.loads(pickle.dumps(plan)) == plan
    # the dict reading old callers use (app.boxjobs, raincheck climatology build-box)
    assert plan["groups"][0]["sources"] == ["truth", "reference"] and plan.get("main_cube") == plan.main_cube
    assert plan["orbits"] == len({o for g in plan.groups for o in g.orbits}) and plan.sources[:2] == ["truth",
                                                                                                       "reference"]
    # what a built box cube keeps beside it reads back as the plan
    side = tmp_path / "b.zarr.box.json"
    side.write_text(json.dumps(plan.to_dict(), sort_keys=True))
    assert BX.box_info(tmp_path / "b.zarr") == plan
    side.write_text(json.dumps({"spec": plan.spec}))
    assert BX.box_info(tmp_path / "b.zarr") is None
    assert not BX.box_complete(plan) and not BX.box_complete(plan.to_dict())  # not built


def test_box_plan_refuses_an_incomplete_dict():
    with pytest.raises(ValueError, match="needs groups, skipped"):
        BoxPlan.from_dict({"spec": "bbox:0,0,1,1", "path": "p", "main_cube": None, "config": {}})


# ------------------------------------------------------------------------------ view answers
def _legacy(name: str, sel: Selection, cube_path: str) -> dict:
    """What the view's compute returned before the typed answers (the code of commit 7dd6660),
    reading the plain ``raincheck.evaluate/1`` dict by string keys and the histograms' dicts:
    a path that does not go through the typed answers or the typed report."""
    import pandas as pd

    from app.views import common as C

    cube = CB.open_cube(cube_path)
    q = {"region": sel.region, "period": f"{sel.start_year}-{sel.end_year}",
         "season": None if sel.season == "annual" else sel.season}
    models, notes = C.models_in(cube, sel, None)
    strip = sel.pixels == "strip"
    ex = name == "extremes"
    ev = report.evaluate(cube, models, q["region"], period=q["period"], season=q["season"], extremes=ex,
                         n_boot=C.N_BOOT)
    head = {"query": q, "models": models, "cube": str(cube.path), "box": None}
    if name == "scores":
        rows = []
        for model, byref in ev["skill"].items():
            for key, k in byref.items():
                if "error" in k or not k.get("n"):
                    continue
                row = {"model": model, "against": scores.AGAINST.get(key, key), "pixels": k.get("n"),
                       "bias (%)": k.get("bias_pct"), "MAE (mm h-1)": k.get("mae"), "RMSE (mm h-1)": k.get("rmse"),
                       "correlation": k.get("corr"), "SMAPE (%)": k.get("smape_pct")}
                for t in ("0.1", "10"):
                    for s in ("pod", "far", "hss"):
                        row[f"{s.upper()} ≥{t} mm h-1"] = ((k.get("categorical") or {}).get(t) or {}).get(s)
                row["CRPS (mm h-1)"] = k.get("crps")
                row["90 % interval coverage"] = (k.get("coverage") or {}).get("0.9")
                row["effective resolution (km)"] = k.get("effective_resolution_km")
                rows.append(row)
        for model, byref in ev["skill"].items():
            notes += [f"{model} {scores.AGAINST.get(key, key)}: {k['error']}"
                      for key, k in byref.items() if "error" in k]
            # since skill definitions 2: a cube of older definitions says why PIT/coverage are absent
            for k in byref.values():
                notes += [n for n in k.get("notes") or [] if n not in notes]
        return {"notes": notes, "table": pd.DataFrame(rows).dropna(axis=1, how="all"), "strip": True, **head}
    base, sources = distributions.sources_for(models, strip)
    sources = [s for s in sources if s in cube.sources]
    hists = {s: cube.histogram(s, q["region"], period=q["period"], season=q["season"]).to_dict() for s in sources}
    rows, table = [], []
    e = D.EDGES
    for s in sources:
        h = hists[s]
        if not h["n"]:
            notes.append(f"no pixels for {C.source_label(s)} in this selection")
            continue
        if not ex:
            cdf = D.cdf(h["counts"])
            rows += [{"curve": "pdf", "source": s, "rate_mm_h": x, "value": p}
                     for x, p in zip(np.sqrt(e[1:-2] * e[2:-1]), D.pdf(h["counts"], per="log10")[1:-1])]
            rows += [{"curve": "cdf", "source": s, "rate_mm_h": x, "value": c} for x, c in zip(e[1:-1], cdf[:-1])]
            continue
        x, surv = D.exceedance_curve(h["counts"])
        rows += [{"curve": "exceedance", "source": s, "rate_mm_h": xi, "value": p}
                 for xi, p in zip(x[1:], surv[1:]) if p > 0 and np.isfinite(xi)]
        x = ev["extremes"].get(s)
        if not x:
            continue
        rl = x["return_levels"]
        if not any(v is not None and np.isfinite(v) for v in rl["level"]):
            notes.append(f"{C.source_label(s)}: too few rain rates above {x['threshold']:g} mm h-1 in this selection "
                         "for a GPD fit (no return levels)")
        rows += [{"curve": "return_level", "source": s, "return_period_pixels": T, "value": lv, "ci_lower": lo,
                  "ci_upper": hi} for T, lv, lo, hi in zip(rl["return_period_pixels"], rl["level"], rl["ci_lower"],
                                                           rl["ci_upper"]) if lv is not None and np.isfinite(lv)]
        g = x["gpd"]
        table.append({"source": C.source_label(s), "GPD ξ (tail index)": g["xi"],
                      "ξ CI low": (g["ci_xi"] or [None, None])[0], "ξ CI high": (g["ci_xi"] or [None, None])[1],
                      "σ (mm h-1)": g["sigma"], "exceedances > 10 mm h-1": g["n_exceed"],
                      "Hill index (binned)": x["hill_binned"], "CI level": g["confidence"]})
    if not ex:
        key = "vs_reference" if strip else "vs_truth"
        summaries = ev["distributions"]["strip" if strip else "all_pixels"]
        for s in [s for s in sources if s in summaries]:
            sm = summaries[s]
            comp = ev["comparison"].get(s.split("@")[0], {}).get(key, {})
            table.append({"source": C.source_label(s), "pixels": sm.get("n"), "mean (mm h-1)": sm.get("mean"),
                          "wet fraction": sm.get("wet_fraction"), "q99 (mm h-1)": sm.get("q99"),
                          "q99.9 (mm h-1)": sm.get("q999"),
                          f"W1 vs {base.replace('_', ' ')} (mm h-1)": comp.get("wasserstein1_mm_h"),
                          "Perkins score": comp.get("perkins_score")})
            if comp.get("qq"):
                qq = comp["qq"]
                rows += [{"curve": "qq", "source": s, "level": lv, "rate_mm_h": b, "value": a}
                         for lv, a, b in zip(qq["levels"], qq["model"], qq[key[3:]])]
    out = {"notes": notes, "curves": pd.DataFrame(rows), "table": pd.DataFrame(table), "baseline": base,
           "strip": strip, **head}
    return out | ({"n_boot": C.N_BOOT} if ex else {})


VIEW_TYPES = [("distributions", distributions, DistributionsAnswer), ("extremes", extremes, ExtremesAnswer),
              ("scores", scores, ScoresAnswer)]


@pytest.mark.parametrize("name, mod, typ", VIEW_TYPES)
def test_view_answers_to_dict_are_the_dicts_of_before(name, mod, typ, root):
    sel = Selection(**SELECTION)
    res = mod.compute(sel, str(DEMO))
    assert isinstance(res, typ) and isinstance(res.query, CubeQuery)
    got = plain(res.to_dict(), root)
    # every number and row as the old code computes it now, from the report's plain dict
    same(got, plain(_legacy(name, sel, str(DEMO)), root))
    # and the shape of the answer as recorded by the old code (keys, columns, notes, query, models);
    # the recorded numbers are not compared here: a change of a metric changes them on purpose
    rec = RECORD["views"][name]
    assert sorted(got) == sorted(rec)
    for k in rec:
        # a cube of older skill definitions withholds PIT/coverage/resolution with one note (SKILL_DEFINITIONS)
        stale = CB.open_cube(DEMO).skill_definitions < SKILL_DEFINITIONS
        if name == "scores" and k == "notes" and stale:
            extra = [n for n in got[k] if n not in rec[k]]
            assert len(extra) == 1 and "skill definitions 1" in extra[0], extra
            continue
        if name == "scores" and k == "table" and stale:
            gone = {"90 % interval coverage", "effective resolution (km)"}
            assert got[k]["columns"] == [c for c in rec[k]["columns"] if c not in gone], k
            assert len(got[k]["records"]) == len(rec[k]["records"]), k
            continue
        if isinstance(rec[k], dict) and "columns" in rec[k]:
            assert got[k]["columns"] == rec[k]["columns"] and len(got[k]["records"]) == len(rec[k]["records"]), k
        else:
            same(got[k], rec[k], k)
    assert res["table"] is res.table and res["query"]["region"] == SELECTION["region"]


# ------------------------------------------------------------------------------ the evaluation report
def test_evaluation_report_reads_the_report_back_unchanged(demo):
    ev = report.evaluate(demo, ["unet-reference"], "WAF", period="2012-2021", extremes=True, n_boot=10)
    rep = EvaluationReport.from_dict(ev)
    assert rep.to_dict() == ev and list(rep.to_dict()) == list(ev)
    assert json.dumps(rep.to_dict()) == json.dumps(ev)  # the same JSON, key order included
    # the typed parts are the report's numbers
    ref = rep.summaries(strip=True)["reference"]
    assert isinstance(ref, DistributionSummary) and ref.q99 == ev["distributions"]["strip"]["reference"]["q99"]
    assert rep.summaries(strip=False)["truth"].n == ev["distributions"]["all_pixels"]["truth"]["n"]
    comp = rep.comparison_of("unet-reference", "reference")
    assert isinstance(comp, Comparison) and isinstance(comp.qq, QQ)
    raw = ev["comparison"]["unet-reference"]["vs_reference"]
    assert comp.perkins_score == raw["perkins_score"] and comp.qq.reference == raw["qq"]["reference"]
    assert comp.qq.truth is None and comp.qq.baseline == raw["qq"]["reference"]
    ex = rep.extremes_of("truth")
    assert isinstance(ex, ExtremesSummary) and ex.gpd.xi == ev["extremes"]["truth"]["gpd"]["xi"]
    assert ex.return_levels.level == ev["extremes"]["truth"]["return_levels"]["level"]
    sk = rep.skill["unet-reference"]["vs_truth"]
    raw = ev["skill"]["unet-reference"]["vs_truth"]
    assert isinstance(sk, Scores) and sk.rmse == raw["rmse"]
    assert sk.category("10", "hss") == raw["categorical"]["10"]["hss"] and sk.category("99", "hss") is None
    # dict reading for old callers, nested
    assert rep["skill"]["unet-reference"]["vs_truth"]["rmse"] == raw["rmse"]


def test_report_parts_keep_keys_they_do_not_know():
    """The schema only ever adds fields: a part keeps an unknown key and gives it back in place."""
    d = {"n": 3, "newly_added": {"x": 1}, "mean": None, "q99": 2.0}
    s = DistributionSummary.from_dict(d)
    assert s.to_dict() == d and list(s.to_dict()) == list(d) and s.extra == {"newly_added": {"x": 1}}
    assert s.wet_fraction is None and "wet_fraction" not in s  # absent stays absent
    e = Scores.from_dict({"error": "no skill statistics"})
    assert e.error == "no skill statistics" and e.n is None and e.to_dict() == {"error": "no skill statistics"}
    with pytest.raises(TypeError, match="Comparison reads a dict"):
        Comparison.from_dict([1, 2])


def test_cube_query():
    q = CubeQuery("WAF", "2015-2019", None)
    assert q.to_dict() == {"region": "WAF", "period": "2015-2019", "season": None}
    assert CubeQuery.coerce(q.to_dict()) == q and CubeQuery.coerce(q) is q and q["period"] == "2015-2019"
    with pytest.raises(ValueError, match="region, period and season"):
        CubeQuery.coerce({"region": "WAF", "perod": "2015"})

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
from evaluation.results import (QQ, BoxGroup, BoxPlan, Comparison, CubeQuery, DistributionSummary,
                                EvaluationReport, ExtremesSummary, Histogram, Scores)
from tests.data.make_results_fixture import BOX, HISTOGRAMS, OUT, SELECTION, plain

RECORD = json.loads(OUT.read_text())


@pytest.fixture(scope="module")
def demo():
    return CB.open_cube(CB.demo_cube_path())


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
    assert plain(h.to_dict()) == RECORD["histograms"][i]
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
    assert plain(plan.to_dict(), root) == RECORD["box_plan"]
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
@pytest.mark.parametrize("name, mod, typ", [("distributions", distributions, DistributionsAnswer),
                                            ("extremes", extremes, ExtremesAnswer), ("scores", scores, ScoresAnswer)])
def test_view_answers_to_dict_are_the_recorded_dicts(name, mod, typ, root):
    res = mod.compute(Selection(**SELECTION), str(CB.demo_cube_path()))
    assert isinstance(res, typ) and isinstance(res.query, CubeQuery)
    assert plain(res.to_dict(), root) == RECORD["views"][name]
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

"""The evaluation views (distributions, extremes, trends, scores) on a small climatology cube, and
the model comparison view on a small real comparison: the numbers shown are evaluation's, bad
selections give messages, exports work, answers are fast."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from app import data
from app.export import export_view
from app.state import Selection
from app.views import compare, distributions, extremes, make_views, scores, trends
from tests.app_helpers import small_comparison, small_cube


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("RAINCHECK_DATA_ROOT", str(tmp_path_factory.mktemp("views-root")))
    path = small_cube(tmp_path_factory.mktemp("cube") / "c.zarr")
    yield str(path)
    mp.undo()


def sel(**kw):
    kw.setdefault("models", ["unit-model"])
    kw.setdefault("start_year", 2012)
    kw.setdefault("end_year", 2021)
    return Selection(**kw)


def test_distributions_are_the_cubes(cube):
    from evaluation import cube as CB
    from evaluation import distributions as D

    res = distributions.compute(sel(), cube)
    c = CB.open_cube(cube)
    h = c.histogram("reference", "global", period="2012-2021")
    pdf = res["curves"].query("curve == 'pdf' and source == 'reference'")["value"].values
    np.testing.assert_allclose(pdf, D.pdf(h["counts"], per="log10")[1:-1], equal_nan=True)
    assert set(res["curves"].source) == {"reference", "truth_strip", "unit-model@strip"}
    assert res["baseline"] == "reference"
    assert (res["curves"].curve == "qq").any()
    assert {"mean (mm h-1)", "wet fraction", "q99.9 (mm h-1)"} <= set(res["table"].columns)
    res_all = distributions.compute(sel(pixels="all"), cube)
    assert res_all["baseline"] == "truth" and set(res_all["curves"].source) == {"truth", "unit-model"}


def test_extremes_trends_scores(cube):
    ex = extremes.compute(sel(), cube)
    assert (ex["curves"].curve == "return_level").any()
    rl = ex["curves"].query("curve == 'return_level'")
    assert (rl.ci_lower <= rl.value).all() and (rl.value <= rl.ci_upper).all()
    assert "GPD ξ (tail index)" in ex["table"].columns and len(ex["table"]) == 3

    tr = trends.compute(sel(trend_stat="q99"), cube)
    assert set(tr["table"].verdict) <= {"consistent", "inconsistent", "not detectable", "detected, no AR6 expectation"}
    assert set(tr["table"].source_id) == {"reference", "truth_strip", "unit-model@strip"}
    assert tr["stat"] == "q99" and (tr["series"].stat == "q99").any()
    from evaluation import cube as CB
    from evaluation import report

    direct = report.trends(CB.open_cube(cube), "reference", "global", period="2012-2021", freq="year",
                           stats=trends.stats_for(sel()))
    mine = tr["table"].query("source_id == 'reference' and stat == 'mean'").iloc[0]
    ref = [s for s in direct["series"] if s["stat"] == "mean"][0]
    assert mine["slope (%/K)"] == pytest.approx(ref["trend"]["pct_per_K"])
    assert mine["verdict"] == ref["ipcc"]["verdict"]

    sc = scores.compute(sel(), cube)
    t = sc["table"]
    assert set(t.model) == {"unit-model", "reference"}
    assert {"bias (%)", "MAE (mm h-1)", "RMSE (mm h-1)", "correlation", "CRPS (mm h-1)"} <= set(t.columns)
    # the stand-in model is 10 % wet-biased against the truth: the table says so
    b = t.query("model == 'unit-model' and against == 'truth (all pixels)'")["bias (%)"].iloc[0]
    assert 10 < b < 30


@pytest.mark.parametrize("kw,message", [
    (dict(region="bbox:0,0,10,10"), "not in this cube"),
    (dict(start_year=1990, end_year=1991), "no data"),
    (dict(start_year=2020, end_year=2015), "ends"),
])
def test_bad_selections_give_messages(cube, kw, message):
    s = sel(**kw)
    views = make_views(s, cube_path=cube)
    for name in ("distributions", "extremes", "trends", "scores"):
        s.view = name
        v = views[name]
        alerts = [(a.alert_type, a.object) for a in v._alerts.objects]
        assert alerts and alerts[0][0] == "danger" and message in alerts[0][1], (name, alerts)
        assert v._body.objects == []


def test_missing_cube_and_model_not_in_cube(cube, tmp_path):
    s = sel(view="scores")
    v = make_views(s, cube_path=str(tmp_path / "none.zarr"))["scores"]
    assert "raincheck climatology build" in v._alerts.objects[0].object
    s2 = sel(models=["unit-model", "other"], view="distributions")
    v2 = make_views(s2, cube_path=cube)["distributions"]
    texts = [a.object for a in v2._alerts.objects]
    assert any("model other is not in the climatology cube" in t for t in texts)
    assert v2._body.objects  # the rest is still shown


def test_views_update_only_when_shown(cube, monkeypatch):
    s = sel(view="swath")
    views = make_views(s, cube_path=cube)
    calls = []
    monkeypatch.setattr(views["scores"], "compute", lambda: calls.append(1) or scores.compute(s, cube))
    s.region = "ocean"
    assert calls == []
    s.view = "scores"
    assert calls == [1] and views["scores"].result is not None


def test_every_view_answers_a_new_selection_from_the_cube(cube):
    # each evaluation view answers a new region/season from the cube alone (speed is
    # benchmarks.bench_app's job): the answer is for the selection asked, never an error
    distributions.compute(sel(), cube)
    for i, mod in enumerate((distributions, extremes, trends, scores)):
        season = ("annual", "DJF", "JJA", "DJF")[i]  # the cube holds January and July
        res = mod.compute(sel(region="ocean", season=season), cube)
        q = res["query"]
        assert q["region"] == "ocean"
        assert (q["season"] or "annual") == season
    # a season the cube holds no orbit of is a message naming the selection, not empty scores
    with pytest.raises(data.DataError, match="ocean"):
        scores.compute(sel(region="ocean", season="MAM"), cube)


@pytest.mark.parametrize("view", ["distributions", "extremes", "trends", "scores"])
def test_export_every_evaluation_view(cube, tmp_path, view):
    r = export_view(view, sel(), "svg" if view != "scores" else "png", tmp_path, cube_path=cube)
    assert r.figure.stat().st_size > 5000
    df = pd.read_csv(r.data)
    assert len(df) > 0
    man = json.loads(r.manifest.read_text())
    assert man["view"] == view and man["cube"] == cube and man["period"] == [2012, 2021]
    assert man["season"] == "annual" and man["region"] == "global"
    assert man["files"][r.figure.name]["bytes"] == r.figure.stat().st_size


def test_scores_csv_download(cube):
    s = sel(view="scores")
    v = make_views(s, cube_path=cube)["scores"]
    csv = v.csv().getvalue()
    df = pd.read_csv(pd.io.common.StringIO(csv))
    assert list(df.columns) == list(v.result["table"].columns)
    dl = v._body.objects[-1]
    assert dl.filename.endswith(".csv") and "/" not in dl.filename


@pytest.mark.parametrize("view", ["distributions", "extremes", "trends", "scores"])
def test_tables_show_three_decimals_and_keep_the_numbers(cube, view):
    """Every float column of a view's table is shown with 3 decimals (a slope came out as
    -0.211495), integers as they are; the table's data keep full precision."""
    import panel as pn

    s = sel(view=view)
    v = make_views(s, cube_path=cube)[view]
    v.update()
    tables = [o for o in v._body.select(pn.widgets.Tabulator)]
    assert tables, [type(o).__name__ for o in v._body.objects]
    for t in tables:
        floats = [c for c in t.value.columns if t.value[c].dtype.kind == "f"]
        assert floats and sorted(t.formatters) == sorted(floats), (view, t.formatters)
        assert all(f == {"type": "money", "precision": 3, "thousand": ""} for f in t.formatters.values())
        assert any(not np.allclose(t.value[c].dropna(), t.value[c].dropna().round(3)) for c in floats)


# --------------------------------------------------------------------------- model comparison
@pytest.fixture(scope="module")
def comparison():
    """A real ``raincheck.compare/1`` result of three stand-in models (evaluation.compare)."""
    return small_comparison()


@pytest.fixture
def stored(comparison, data_root):
    compare.save_result(comparison)
    return comparison


def test_compare_is_a_view_in_the_url_and_the_tabs(data_root):
    from panel.io.location import Location

    from app.main import create_app
    from app.state import VIEW_LABELS, VIEWS, sync_url

    assert "compare" in VIEWS and VIEW_LABELS["compare"] == "Model comparison"
    s = Selection()
    assert sync_url(s, Location(search="?view=compare&y0=2016")) == [] and s.view == "compare"
    assert Selection(view="compare").query()["view"] == "compare"
    app = create_app(selection=Selection(view="compare"))
    tabs, views = app._rc["tabs"], app._rc["views"]
    assert tabs._names[tabs.active] == "Model comparison" and isinstance(views["compare"], compare.CompareView)
    app._rc["selection"].view = "trends"
    assert tabs._names[tabs.active] == "Trends"
    tabs.active = list(tabs._names).index("Model comparison")
    assert app._rc["selection"].view == "compare"


def test_compare_view_shows_the_stored_comparison(stored):
    s = sel(view="swath")
    v = make_views(s)["compare"]
    assert v.body.objects == [] and v.result is None  # loads only when its tab is shown
    s.view = "compare"
    assert v.result is not None and len(v.body.objects) >= 4
    summary = v.body.objects[0].object
    assert "unit-tail" in summary.split("**")[-2] and "unit-boosted" not in summary.split("**")[-2]
    assert "test year 2021-01-01..2021-12-31" in summary
    scores_t, trends_t = v.body.objects[1].value, v.body.objects[3].value
    assert "**Unpaired design**" in v.body.objects[2].object  # the comparison's trend errors are labelled
    row = scores_t.query("model == 'unit-boosted' and split == 'future decades'").iloc[0]
    assert row["CRPS"] == stored["models"]["unit-boosted"]["ood"]["crps"]
    assert row["twCRPS p99.9"] == stored["models"]["unit-boosted"]["ood"]["twcrps@p99.9"]
    assert list(trends_t["model"]) == ["unit-ref", "unit-tail", "unit-boosted"]
    t = trends_t.set_index("model")
    tr = stored["models"]["unit-tail"]["trend"]
    assert t.loc["unit-tail", "p99 error"] == tr["p99"]["error_pct_per_K"]
    assert t.loc["unit-tail", "p99 error CI90 low"] == tr["p99"]["error_ci90"][0]
    assert bool(t.loc["unit-tail", "goal met"]) and not bool(t.loc["unit-boosted", "goal met"])
    # the goal chart is the goal check's: the reference at the origin, the thresholds drawn
    g = compare.goal_frame(v.result).set_index("model")
    assert g.loc["unit-ref", "trend error change (%)"] == 0.0
    red = stored["goal"]["models"]["unit-tail"]["trend_error_reduction"]
    assert g.loc["unit-tail", "trend error change (%)"] == pytest.approx(-100 * red)
    assert g.loc["unit-tail", "trend error change (%)"] <= compare.GOAL_TREND_PCT
    assert g.loc["unit-boosted", "trend error change (%)"] > compare.GOAL_TREND_PCT
    import holoviews as hv

    goal = compare.elements(v.result, backend="matplotlib")[2]
    lines = [(type(e).__name__, e.data) for e in goal if isinstance(e, (hv.HLine, hv.VLine))]
    assert ("HLine", -30.0) in lines and ("VLine", 5.0) in lines

    # a new comparison on disk (e.g. `raincheck compare` in a terminal) shows on the next visit
    from evaluation.compare import goal_check

    newer = json.loads(json.dumps(stored))
    newer["reference"] = "unit-tail"
    newer["goal"] = goal_check(newer)
    compare.save_result(newer)
    s.view = "scores"
    s.view = "compare"
    assert v.result["reference"] == "unit-tail" and "Reference: `unit-tail`" in v.body.objects[0].object


def test_compare_view_without_a_comparison_says_how_to_make_one(data_root, monkeypatch):
    import evaluation.compare as EC

    monkeypatch.setattr(EC, "PACKAGED_RESULT", data_root / "no-shipped-comparison.json")  # none shipped
    s = sel(view="compare")
    v = make_views(s)["compare"]
    (alert,) = v.body.objects
    assert alert.alert_type == "info" and "No model comparison yet" in alert.object
    assert "raincheck compare" in alert.object and "Traceback" not in alert.object
    # a broken or foreign file: a message, not a traceback
    compare.save_result({"schema": "something/else", "models": {}})
    s.view = "swath"
    s.view = "compare"
    (alert,) = v.body.objects
    assert alert.alert_type == "danger" and "not a complete raincheck.compare/1 result" in alert.object


def test_the_demo_shows_the_shipped_comparison_of_the_shipped_models(data_root):
    """A fresh data root shows the comparison shipped with raincheck, and it is the comparison of
    the checkpoints that ship (a retrained model without a new comparison fails here)."""
    from evaluation.compare import PACKAGED_RESULT, load_result
    from models.registry import list_models

    res = load_result()
    assert res is not None and res == json.loads(PACKAGED_RESULT.read_text())
    shipped = {c.name: c.checkpoint_sha256 for c in list_models()}
    assert {n: m["sha256"] for n, m in res["models"].items()} == shipped
    s = sel(view="compare")
    v = make_views(s)["compare"]
    s.view = "compare"
    assert "unet-reference" in v.body.objects[0].object


# --------------------------------------------------------------------------- the forced response in the comparison
def _shipped_row(world, source, level_q, warming_K):
    """A row of a shipped forced-response result, picked by hand from its JSON."""
    from evaluation.warming.response import SHIPPED_DIR

    with open(SHIPPED_DIR / f"{world}.json") as f:
        rows = json.load(f)["rows"]
    (r,) = [r for r in rows if r["source"] == source and r["group"] == "global" and r["population"] == "all"
            and r["warming_K"] == warming_K and (r["statistic"] == "mean" if level_q is None else
                                                 (r["statistic"] == "quantile" and abs(r["level_q"] - level_q) < 1e-12))]
    return r


def test_compare_view_shows_the_shipped_forced_response_beside_the_crps(data_root):
    """With the shipped comparison and results: the forced-response table holds the results' rows
    and the comparison's CRPS, the world picker is the link's ``preset``, the figure has a panel
    per statistic, and the unpaired trend errors are labelled with how many intervals hold zero."""
    from panel.io.location import Location

    from app.state import sync_url
    from evaluation.compare import PACKAGED_RESULT

    comp = json.loads(PACKAGED_RESULT.read_text())
    s = sel(view="swath")
    v = make_views(s)["compare"]
    assert v.forced_result is None  # loads with its tab
    s.view = "compare"
    fres = v.forced_result
    from evaluation.warming import load_results

    today = load_results()["today"]
    both = [m for m in comp["models"] if m in today.models]
    assert fres["world"] == "today" and len(both) >= 8
    # drawn: the models of the result (comparison order first); a note only for a model missing from a source
    assert fres["models"] == [m for m in dict.fromkeys([*comp["models"], *today.models]) if m in today.models]
    assert not any(m in n for n in fres["notes"] for m in both)
    table, headline = (next(o for o in v.forced_body.objects if css in getattr(o, "css_classes", []))
                       for css in ("rc-compare-forced-table", "rc-compare-forced-headline"))
    shown = table.value.set_index(["model", "statistic"])
    raw = _shipped_row("today", "unet-hybrid", 0.999, 4.0)
    assert shown.loc[("unet-hybrid", "p99.9"), "+4 K error (%/K) [90 %]"] == \
        f"{raw['error']:+.2f} [{raw['error_lo']:+.2f}, {raw['error_hi']:+.2f}]"
    assert shown.loc[("unet-hybrid", "p99.9"), "+4 K verdict"] == raw["verdict"]
    crps = comp["models"]["unet-hybrid"]["test"]["crps"]
    assert shown.loc[("unet-hybrid", "p99.9"), "CRPS test year"] == crps
    assert shown.loc[("unet-hybrid", "p99.9"), "CRPS / reference"] == pytest.approx(
        crps / comp["models"]["unet-reference"]["test"]["crps"], rel=1e-15)
    head = headline.value.set_index("model")
    raw = _shipped_row("stationary", "bayes-baseline", 0.999, 4.0)
    assert head.loc["bayes-baseline", "stationary: p99.9 error +4 K"] == \
        f"{raw['error']:+.2f} [{raw['error_lo']:+.2f}, {raw['error_hi']:+.2f}] {raw['verdict']}"
    # one panel per statistic, each with every model's errors and the zero line
    import holoviews as hv

    panels = compare.forced_elements(fres, backend="matplotlib")
    assert len(panels) == 3
    for p, stat in zip(panels, ("mean", "p99", "p99.9")):
        assert any(isinstance(e, hv.HLine) and e.data == 0 for e in p)
        pts = [e for e in p if isinstance(e, hv.Scatter)]
        assert [e.label for e in pts] == fres["models"]
        raw = _shipped_row("today", "unet-climate", None if stat == "mean" else float(stat[1:]) / 100, 2.0)
        ys = pts[fres["models"].index("unet-climate")].dimension_values(1)
        assert raw["error"] in list(ys)
    # the unpaired design: the count of its intervals holding zero, by hand
    n = sum(1 for m in comp["models"].values() for k in comp["thresholds_mm_h"])
    inside = sum(m["trend"][k]["error_ci90"][0] <= 0 <= m["trend"][k]["error_ci90"][1]
                 for m in comp["models"].values() for k in comp["thresholds_mm_h"])
    note = v.body.objects[2].object
    assert (f"All {n} of their 90 % intervals contain zero" if inside == n else f"{inside} of their {n}") in note
    # the picker is the selection's world preset, mirrored in the link (`preset`)
    s.warm_world = "published"
    assert v.forced_result["world"] == "published" and v.world.value == "published"
    s2 = Selection()
    assert sync_url(s2, Location(search="?view=compare&preset=stationary")) == [] and s2.warm_world == "stationary"
    v2 = make_views(s2)["compare"]
    assert v2.forced_result["world"] == "stationary" and s2.query()["preset"] == "stationary"


def test_forced_response_with_stand_in_models_and_without_a_result(stored, monkeypatch, tmp_path):
    """Models of only one source keep their rows (NaN and a note); a world without a result is
    a message; with no comparison the forced response still shows, without CRPS."""
    s = sel(view="compare")
    v = make_views(s)["compare"]
    t = v.forced_result["world_table"]
    assert set(stored["models"]) <= set(t["model"]) and "unet-reference" in set(t["model"])
    stand_in = t[t["model"] == "unit-tail"]
    assert stand_in["error"].isna().all() and stand_in["note"].str.contains("not in the today").all()
    assert np.isfinite(stand_in["crps_test"]).all()
    shipped_model = t[t["model"] == "unet-reference"]
    assert shipped_model["crps_test"].isna().all() and shipped_model["error"].notna().all()
    assert shipped_model["note"].str.contains("not in the model comparison").all()
    assert "unit-tail" not in v.forced_result["models"]  # nothing to draw for it
    # no result for the world: a message naming the command, not a traceback
    from evaluation.warming import response

    monkeypatch.setattr(response, "SHIPPED_DIR", tmp_path / "no-results")
    s.warm_world = "published-super-cc"
    (alert,) = v.forced_body.objects
    assert v.forced_result is None and "raincheck warming run --world published-super-cc" in alert.object

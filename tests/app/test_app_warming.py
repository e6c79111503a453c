"""The "Warming response" view: it draws the rows of a real forced-response result (computed by
``evaluation.warming.compute_response`` from per-scene summaries of known rain fields), its
controls and link switch the answer, a missing result is a message, and it exports figure + CSV +
manifest like every view."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from app.state import Selection, sync_url
from app.views import make_views
from app.views import warming as WV

LEVELS = (1.0, 2.0, 4.0)
#: the truth of these scenes scales by 1.07 per K everywhere: its response is 7 %/K for every
#: statistic but the wet fraction (and the exceedances of fixed thresholds)
TRUTH_PCT = 7.0
#: stand-in models: one scales like the truth (its response is the truth's), one damps the
#: rain's growth (rain ** 0.9: 0.9 × the truth's log response, ≈ 6.3 %/K)
MODELS = {"unit-same": lambda r: 1.1 * r, "unit-damped": lambda r: r ** 0.9}
SHAS = {"unit-same": "ab" * 32, "unit-damped": "cd" * 32}


def scenes(n=8, shape=(40, 50), seed=0):
    """Rain fields (mm h-1, zero-inflated, heavy-tailed), latitudes and surfaces of ``n`` scenes."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        wet = rng.random(shape) < 0.25
        rain = np.where(wet, rng.lognormal(0.0, 1.3, shape), 0.0)
        lat = rng.uniform(-60, 60, shape)
        surf = np.where(rng.random(shape) < 0.7, 0, 1).astype(np.int8)  # ocean, land
        out.append((rain, lat, surf))
    return out


def forced_response(world="today", n_boot=100):
    """A real ``ForcedResponse`` (evaluation.warming) of the truth and two stand-in models."""
    from catalogs.simulator.worlds import get_world
    from evaluation.warming import compute_response
    from evaluation.warming.summary import group_masks, summarise

    sc = scenes()
    summaries = {"truth": [], **{m: [] for m in MODELS}}
    for L in (0.0, *LEVELS):
        per = {s: [] for s in summaries}
        for rain, lat, surf in sc:
            masks = group_masks(lat, surf)
            truth = rain * (1 + TRUTH_PCT / 100) ** L
            per["truth"].append(summarise(truth, masks))
            for m, f in MODELS.items():
                per[m].append(summarise(f(truth), masks))
        for s, lst in per.items():
            summaries[s].append({k: np.stack([d[k] for d in lst]) for k in lst[0]})
    w = get_world(world)
    meta = {"command": f"raincheck warming run --world {world} (test fixture)", "world": w.describe(),
            "models": {m: {"checkpoint_sha256": SHAS[m], "product": "precip_mean"} for m in MODELS},
            "scenes": {"n_scans": 40, "orbits": list(range(len(sc)))}, "training_climate_K": 0.62,
            "product": "precip_mean", "product_version": "test", "created": "2026-12-01T00:00:00Z",
            "injected_truth_pct_per_K": w.describe()["injected_pct_per_K"]}
    return compute_response(summaries, LEVELS, n_boot=n_boot, seed=0, meta=meta)


@pytest.fixture(scope="module")
def result():
    return forced_response()


@pytest.fixture
def stored(result, data_root, tmp_path, monkeypatch):
    """The result in the user store of a fresh data root, and no shipped result."""
    from evaluation.warming import response, run

    monkeypatch.setattr(response, "SHIPPED_DIR", tmp_path / "no-shipped-results")
    folder = run.store_root() / "results"
    folder.mkdir(parents=True)
    result.to_json(folder / "today.json")  # atomic, with its completion marker, as `raincheck warming run`
    return result


def test_spm6_points_are_the_ar6_table_per_kelvin():
    # independent: AR6 SPM.6 intensity changes of the 10-year 1-day land event, compounded per K
    spm = WV.spm6_pct_per_K().set_index("warming_K")["response"]
    assert spm[1.0] == pytest.approx(6.7)
    assert spm[2.0] == pytest.approx(100 * (math.sqrt(1.14) - 1))
    assert spm[4.0] == pytest.approx(100 * (1.302 ** 0.25 - 1))
    assert WV.CC_PCT_PER_K == 7.0


def test_the_view_draws_the_results_rows(stored):
    res = WV.compute(Selection(view="warming"))
    assert res["world"] == "today" and res["level"] == 2.0 and res["levels"] == list(LEVELS)
    assert res["models"] == list(MODELS)  # no model selected: all of the result's
    df = stored.frame()
    curve = res["curve"]
    assert set(curve.source) == {"truth", *MODELS} and (curve.warming_K == 2.0).all()
    assert (curve.population == "all").all() and (curve.group == "global").all()
    # every value drawn is the result's row
    for _, r in curve.iterrows():
        want = df[(df.group == "global") & (df.statistic == "quantile") & (df.population == "all")
                  & (df.level_q == r.level_q) & (df.warming_K == 2.0) & (df.source == r.source)]
        assert len(want) == 1 and want.response.iloc[0] == r.response and want.lo.iloc[0] == r.lo
    # the all-pixel median of these scenes is 0 (75 % dry): no response, not drawn, and said
    undrawn = df[(df.group == "global") & (df.statistic == "quantile") & (df.population == "all")
                 & (df.warming_K == 2.0) & df.response.isna()]
    assert set(undrawn.level_q) == {0.5, 0.75} and not set(curve.level_q) & {0.5, 0.75}
    assert any("no response at q50, q75 of all pixels" in n for n in res["notes"])
    # and the truth's response is the injected 7 %/K (quantiles from 0.5 %-wide histogram bins)
    top = curve[(curve.source == "truth") & (curve.level_q >= 0.9)]
    np.testing.assert_allclose(top.response, TRUTH_PCT, atol=0.3)
    # the damped model's extremes grow at 0.9 × the truth's log rate: an under-statement
    dq = curve[(curve.source == "unit-damped") & (curve.level_q == 0.999)].response.iloc[0]
    assert dq == pytest.approx(100 * (1.07 ** 0.9 - 1), abs=0.3)
    m = WV.matrix_frame(res).set_index(["model", "stat"])
    assert m.loc[("unit-damped", "q99.9"), "verdict"] == "under-states"
    assert m.loc[("unit-same", "q99.9"), "verdict"] == "tracks"
    assert m.loc[("unit-same", "mean"), "error"] == pytest.approx(0.0, abs=1e-6)
    # panel (b): p99.9 at every level, truth and models; and each model's error growth +1 -> +4 K
    bl = res["by_level"]
    assert set(bl.stat) == {"q99.9"} and sorted(set(bl.warming_K)) == list(LEVELS) and len(bl) == 9
    g = res["growth"].set_index("source")
    gf = stored.growth_frame()
    want = gf[(gf.group == "global") & (gf.statistic == "quantile") & (gf.level_q == 0.999) & (gf.population == "all")
              & (gf.source == "unit-damped")].iloc[0]
    assert g.loc["unit-damped", "growth"] == want.growth and (want.from_K, want.to_K) == (1.0, 4.0)
    # independent: the damped model's error is 100 (1.07^0.9 - 1) - 7 %/K at every level, so it does not grow
    assert abs(want.growth) < 0.3 and "Error growth of q99.9 from +1 to +4 K" in WV.growth_text(res)


def test_caption_says_the_design(stored):
    res = WV.compute(Selection(view="warming"))
    cap = WV.caption(res)
    for text in ("Paired counterfactual design", "8 scenes of 40 scans", "+1, +2, +4 K", "today (version today-1",
                 "100 paired scene-bootstrap replicates", "90 % intervals", "unit-same abababababab",
                 "10-year 1-day precipitation event over land", "not the instantaneous pixel quantiles"):
        assert text in cap, text


def test_controls_and_models_switch_the_answer(stored, monkeypatch):
    s = Selection(view="warming")
    v = make_views(s)["warming"]
    assert v.result is not None and v._body.objects
    assert list(v.level.options.values()) == list(LEVELS) and v.level.value == 2.0
    s.param.update(warm_group="land", warm_pop="wet", warm_stat="mean")
    r = v.result
    assert (r["group"], r["population"], r["stat"]) == ("land", "wet", "mean")
    assert (r["curve"].population == "wet").all() and (r["curve"].group == "land").all()
    assert v.population.value == "wet"  # the control follows the selection (a link), and the other way
    v.population.value = "all"
    assert s.warm_pop == "all" and v.result["population"] == "all"
    v.population.value = "wet"
    # the mean is computed over all pixels only: said, and drawn for all pixels
    assert (r["by_level"].population == "all").all()
    assert any("computed over all pixels only" in a.object for a in v._alerts.objects)
    import holoviews as hv

    for el in WV.elements(r):  # the app's (bokeh) figures draw
        assert hv.render(el, backend="bokeh") is not None
    s.warm_axis = "error"  # panel (b) draws each model's error (model - truth) instead of the responses
    assert v.axis.value == "error" and v.result["axis"] == "error"
    b = WV.elements(v.result, backend="matplotlib")[1]
    drawn = {e.label: list(e.data.iloc[:, 1]) for e in b if isinstance(e, hv.Scatter)}
    bl = v.result["by_level"]
    assert drawn == {m: list(bl[bl.source == m].sort_values("warming_K").error) for m in MODELS}
    v.axis.value = "response"
    assert s.warm_axis == "response"
    v.level.value = 4.0  # the level picker is the selection's
    assert s.warm_level == 4.0 and v.result["level"] == 4.0
    s.models = ["unit-damped", "not-run"]
    assert v.result["models"] == ["unit-damped"]
    texts = " ".join(a.object for a in v._alerts.objects)
    assert "not-run is not in the" in texts and "raincheck warming run" in texts
    # a level the result does not have: the nearest is shown, and said
    s.warm_level = 3.5
    assert v.result["level"] == 4.0 and any("no +3.5 K level" in a.object for a in v._alerts.objects)


def test_link_carries_the_warming_selection(stored):
    from panel.io.location import Location

    s = Selection()
    q = "?view=warming&preset=stationary&group=tropics&population=wet&warming=4&wstat=q99&wy=error&models=unit-same"
    assert sync_url(s, Location(search=q)) == []
    assert (s.view, s.warm_world, s.warm_group, s.warm_pop, s.warm_level, s.warm_stat, s.warm_axis) == \
        ("warming", "stationary", "tropics", "wet", 4.0, "q99", "error")
    back = Selection()
    sync_url(back, Location(search="?" + "&".join(f"{k}={v}" for k, v in s.query().items())))
    assert back.describe() == s.describe()
    bad = Selection()
    problems = sync_url(bad, Location(search="?preset=mars&warming=9&group=moon&population=dry&wstat=q42&wy=x"))
    assert len(problems) == 6, problems
    assert any("preset='mars': not a valid world preset" in p and "today, stationary" in p for p in problems)
    assert any("warming='9'" in p and "between 0.0 and 6.0" in p for p in problems)
    assert (bad.warm_world, bad.warm_level, bad.warm_group) == ("today", 2.0, "global")


def test_a_missing_result_is_a_message_not_a_traceback(stored):
    s = Selection(view="warming", warm_world="published")
    v = make_views(s)["warming"]
    (alert,) = v._alerts.objects
    assert alert.alert_type == "danger" and "No warming-response result for the world preset" in alert.object
    assert "published" in alert.object and "raincheck warming run --world published" in alert.object
    assert "Traceback" not in alert.object and v._body.objects == []
    s.warm_world = "today"
    assert v._body.objects and v.result["world"] == "today"


def test_no_result_at_all_and_a_new_result_shows(data_root, tmp_path, monkeypatch, result):
    from evaluation.warming import response, run

    monkeypatch.setattr(response, "SHIPPED_DIR", tmp_path / "none")
    s = Selection(view="warming")
    v = make_views(s)["warming"]
    assert "No warming-response result yet" in v._alerts.objects[0].object
    folder = run.store_root() / "results"
    folder.mkdir(parents=True)
    result.to_json(folder / "today.json")  # `raincheck warming run` finished meanwhile
    s.view = "swath"
    s.warm_group = "ocean"
    s.view = "warming"
    assert v.result is not None and v.result["group"] == "ocean"


@pytest.mark.parametrize("fmt", ["png", "svg"])  # (PDF goes through the same matplotlib figure)
def test_export_figure_csv_and_manifest(stored, tmp_path, fmt):
    from app.export import export_view

    s = Selection(view="warming", warm_group="ocean", warm_level=4.0)
    r = export_view("warming", s, fmt, tmp_path, public=True)
    assert r.figure.stat().st_size > 5000
    assert "warming" in r.figure.name and "ocean" in r.figure.name and "today" in r.figure.name
    df = pd.read_csv(r.data)
    res = WV.compute(s)
    n = len(res["curve"]) + len(res["by_level"]) + len(res["table"]) + len(res["growth"])
    assert len(df) == n and set(df.panel) == {"a: response curve", "b: against warming level", "b: error growth",
                                              "c: verdict matrix"}
    a = df[df.panel == "a: response curve"]
    np.testing.assert_allclose(a.response.values, res["curve"].response.values)
    man = json.loads(r.manifest.read_text())
    assert man["view"] == "warming" and man["world"]["name"] == "today" and man["world"]["version"] == "today-1"
    assert {m["name"]: m["checkpoint_sha256"] for m in man["models"]} == SHAS
    assert man["n_boot"] == 100 and man["n_scenes"] == 8 and man["warming_K"] == 4.0 and man["region"] == "ocean"
    assert man["command"].startswith("raincheck warming run") and "Paired counterfactual" in man["caption"]
    assert man["files"][r.figure.name]["bytes"] == r.figure.stat().st_size


def test_export_without_a_result_is_a_clear_error(stored, tmp_path):
    from app.export import ExportError, export_view

    with pytest.raises(ExportError, match="No warming-response result for the world preset"):
        export_view("warming", Selection(warm_world="published"), "png", tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())  # nothing half-written


# --------------------------------------------------------------------------- the Trends view
def test_trends_show_the_known_forced_response(stored, tmp_path, small_cube_copy):
    import holoviews as hv

    from app.views import trends

    cube = str(small_cube_copy(tmp_path / "c.zarr"))  # (the session's small cube: 2012-2021)
    s = Selection(view="trends", models=["unit-model"], start_year=2012, end_year=2021, trend_stat="q999",
                  pixels="all")
    res = trends.compute(s, cube)
    f = res["forced"]
    df = stored.frame()
    want = df[(df.source == "truth") & (df.group == "global") & (df.statistic == "quantile")
              & (df.population == "all") & (df.level_q == 0.999) & (df.warming_K == 1.0)].iloc[0]
    assert (f["value"], f["lo"], f["hi"], f["warming_K"]) == (want.response, want.lo, want.hi, 1.0)
    text = trends.forced_text(res)
    assert f"Known forced response of the synthetic world (today, version today-1): {want.response:+.1f}" in text
    assert "the record's truth trend is" in text and "weather-sampling noise" in text
    slopes = trends.elements(res, backend="matplotlib")[1]
    drawn = [e for e in slopes if isinstance(e, hv.Scatter) and "known forced response" in e.label]
    assert len(drawn) == 1 and drawn[0].data.iloc[0, 1] == want.response
    parts = trends.export_parts(s, cube_path=cube)
    row = parts.data[parts.data.kind == "forced"].iloc[0]
    assert row["slope (%/K)"] == want.response and parts.provenance["known_forced_response"]["world"] == "today"
    v = make_views(s, cube_path=cube)["trends"]
    assert "Known forced response of the synthetic world" in v._body.objects[0].object
    # real data: no synthetic world to compare with
    s.source = "real"
    assert trends.compute(s, cube)["forced"] is None and "Known forced" not in v._body.objects[0].object


def test_known_forced_response_without_a_result_or_outside_the_groups():
    # without a stored result: the world's injected scaling where it sets one exactly (7 %/K at q99.9)
    from catalogs.simulator.worlds import get_world

    f = WV.known_forced_response("q999", "global", results={})
    assert f["value"] == get_world("today").injected_pct_per_K("p99.9") == 7.0 and "injects" in f["how"]
    # the all-pixel q99 is not set by the injection: it needs a measured result
    g = WV.known_forced_response("q99", "global", results={})
    assert g["value"] is None and "raincheck warming run --world today" in g["why"]
    h = WV.known_forced_response("q999", "WAF", results={})
    assert h["value"] is None and "not for WAF" in h["why"]


def test_a_result_of_an_older_checkpoint_is_flagged(data_root):
    from models.registry import get_card

    sha = str(get_card("unet-reference").checkpoint_sha256)
    assert WV._stale_checkpoints({"unet-reference": sha}, ["unet-reference"]) == []
    (note,) = WV._stale_checkpoints({"unet-reference": "00" * 32}, ["unet-reference"])
    assert "unet-reference was retrained since this result" in note and sha[:12] in note


def test_the_demo_shows_the_shipped_results_of_the_shipped_models(data_root):
    """A fresh data root shows the forced-response results shipped with raincheck, one per world
    preset, computed with the checkpoints that ship (a retrained model without a new result fails)."""
    from app.state import WARMING_WORLDS
    from evaluation.warming import load_results
    from models.registry import list_models

    shipped = load_results()
    assert set(shipped) == set(WARMING_WORLDS)
    cards = {c.name: str(c.checkpoint_sha256) for c in list_models()}
    for world, fr in shipped.items():
        assert {m: i["checkpoint_sha256"] for m, i in fr.meta["models"].items()} == cards, world
        res = WV.compute(Selection(view="warming", warm_world=world))
        assert res["models"] == list(fr.meta["models"]) and not any("retrained" in n for n in res["notes"])
        df = fr.frame()
        t = df[(df.source == "truth") & (df.group == "global") & (df.population == "all") & (df.level_q == 0.999)
               & (df.warming_K == 2.0)].response.iloc[0]
        assert res["curve"].query("source == 'truth' and level_q == 0.999").response.iloc[0] == t
        assert f"the same {fr.meta['n_scenes']} scenes" in WV.caption(res)


def test_every_shipped_model_has_its_own_colour():
    """A paper figure of all shipped models must not draw two of them in one colour."""
    from app.views.warming import _colours
    from models.registry import list_models

    names = [c.name for c in list_models()]
    cols = _colours(names)
    assert len({cols[n] for n in names}) == len(names), cols
    assert cols["truth"] not in {cols[n] for n in names}

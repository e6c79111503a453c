"""`evaluation.warming.ood` / `raincheck warming ood`: the OOD score against the forced error.

The AUROC and its exact scene bootstrap are checked against scipy's Mann-Whitney U on explicitly
resampled data; the positives rule on hand-made numbers; the bootstrap's unit (scenes, not pixels)
with scenes whose pixels are perfect copies; a tiny run with the real shipped models against a
direct simulation + retrieval of the same scene; bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import mannwhitneyu

from evaluation.warming import ood as O


def _mw(scores, positive) -> float:
    s, p = np.asarray(scores, float), np.asarray(positive, bool)
    u = mannwhitneyu(s[p], s[~p], alternative="two-sided", method="asymptotic").statistic
    return float(u) / (p.sum() * (~p).sum())


# --------------------------------------------------------------------------- AUROC
def test_auroc_equals_mann_whitney_with_ties():
    rng = np.random.default_rng(3)
    s = rng.integers(0, 6, 400).astype(float)  # many ties
    p = rng.random(400) < 0.2 + 0.1 * s / 5
    assert O.auroc(s, p) == pytest.approx(_mw(s, p), abs=1e-12)
    # and the detector module's own AUROC (models.research.ood) agrees
    from models.research.ood import auroc as auroc_ood

    assert O.auroc(s, p) == pytest.approx(auroc_ood(s[~p], s[p]), abs=1e-12)
    # perfect, inverted and all-tied scores
    assert O.auroc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0
    assert O.auroc([4, 3, 2, 1], [0, 0, 1, 1]) == 0.0
    assert O.auroc([1, 1, 1, 1], [0, 0, 1, 1]) == 0.5
    assert math.isnan(O.auroc([1, 2], [0, 0]))


def test_weighted_scene_auroc_equals_auroc_of_the_resampled_data():
    """AUROC(w) = w U w / ((w n1)(w n0)) equals the Mann-Whitney AUROC of the data built by repeating
    each scene w_k times (a cross-scene pair counts w_k w_l times)."""
    rng = np.random.default_rng(5)
    K = 6
    scene = np.repeat(np.arange(K), rng.integers(5, 40, K))
    s = np.round(rng.normal(scene * 0.1, 1.0), 1)  # ties across scenes
    p = rng.random(scene.size) < 0.3
    s[3] = np.nan  # a non-finite score is left out
    U, n1, n0 = O.auroc_parts(s, p, scene, K)
    ok = np.isfinite(s)
    assert O.auroc_from_parts(U, n1, n0) == pytest.approx(_mw(s[ok], p[ok]), abs=1e-12)
    W = O.boot_weights(K, 5, seed=1)[1:]
    got = O.auroc_from_parts(U, n1, n0, W)
    for w, g in zip(W, got):
        idx = np.concatenate([np.flatnonzero((scene == k) & ok) for k in range(K) for _ in range(int(w[k]))])
        assert g == pytest.approx(_mw(s[idx], p[idx]), abs=1e-12)


def test_bootstrap_resamples_scenes_not_pixels():
    """Scenes whose pixels are perfect copies carry one scene's information: the interval is the
    same with 1 or 200 copies a scene (a pixel bootstrap would shrink it by ~sqrt(200))."""
    rng = np.random.default_rng(11)
    K = 12
    s1 = rng.normal(size=K)
    p1 = np.array([True, False] * (K // 2))
    s1[p1] += 0.5
    W = O.boot_weights(K, 1000, seed=0)[1:]
    one = O.bootstrap_auroc(s1, p1, np.arange(K), W)
    many = O.bootstrap_auroc(np.repeat(s1, 200), np.repeat(p1, 200), np.repeat(np.arange(K), 200), W)
    assert many["auroc"] == pytest.approx(one["auroc"], abs=1e-12)
    assert (many["lo"], many["hi"]) == pytest.approx((one["lo"], one["hi"]), abs=1e-12)
    assert one["hi"] - one["lo"] > 0.3  # 12 scenes: a wide interval (0.67..1.0)
    assert many["n_pos"] == 200 * p1.sum() and many["n_neg"] == 200 * (~p1).sum()
    # resampling pixels instead gives an interval ~ 14x narrower (0.02): the test above would then fail
    rng2 = np.random.default_rng(0)
    sp, pp = np.repeat(s1, 200), np.repeat(p1, 200)
    reps = []
    for _ in range(200):
        i = rng2.integers(0, sp.size, sp.size)
        reps.append(O.auroc(sp[i], pp[i]))
    assert np.percentile(reps, 95) - np.percentile(reps, 5) < 0.2 * (one["hi"] - one["lo"])


# --------------------------------------------------------------------------- the rules
def test_positives_rule_by_hand():
    v = np.arange(10.0)  # 0..9
    pos, t = O.top_positives(v, 0.25)  # k = ceil(2.5) = 3: 7, 8, 9
    assert t == 7.0 and pos.tolist() == [False] * 7 + [True] * 3
    pos, t = O.top_positives(v, 0.01)  # k = max(1, ceil(0.1)) = 1
    assert t == 9.0 and pos.sum() == 1
    pos, t = O.top_positives(v, 0.2)  # k = 2 exactly (no float round-up to 3)
    assert t == 8.0 and pos.sum() == 2
    pos, t = O.top_positives([1.0, 5.0, 5.0, 5.0, 2.0, np.nan], 0.2)  # n = 5 finite, k = 1; ties at 5 all in
    assert t == 5.0 and pos.tolist() == [False, True, True, True, False, False]
    with pytest.raises(ValueError, match="fraction"):
        O.top_positives(v, 0.0)


def test_forced_error_population_and_spread_by_hand():
    t0, tL = np.array([0.0, 0.1, 2.0, 0.0, np.nan]), np.array([0.0, 0.1, 3.0, 0.05, 1.0])
    m0, mL = np.array([0.0, 0.0, 1.0, 0.0, 1.0]), np.array([0.05, 0.1, 2.5, 0.2, 1.0])
    assert O.forced_error(t0, tL, m0, mL)[:4].tolist() == pytest.approx([0.05, 0.1, 0.5, 0.15])
    # wet is > 0.1 mm/h: exactly 0.1 is dry; wet in any one of the four makes the pixel count
    assert O.population_mask(t0, tL, m0, mL).tolist() == [False, False, True, True, True]
    levels = [0.05, 0.1, 0.5, 0.8, 0.95]
    q = np.array([[0.0, 1.0, 2.0, 5.0, 9.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    # q0.1 = 1.0; q0.9 = 5 + (0.1/0.15) * 4
    assert O.predictive_spread(q, levels).tolist() == pytest.approx([5 + 4 * 0.1 / 0.15 - 1.0, 0.0])
    with pytest.raises(ValueError, match="outside the model's levels"):
        O.predictive_spread(q, [0.2, 0.5, 0.8])


def _scene(rng, n=400, bias=0.0):
    t0 = np.where(rng.random(n) < 0.3, rng.gamma(1.0, 2.0, n), 0.0)
    tL = t0 * 1.3
    m0 = t0 * 0.9
    mL = m0 * (1.3 + bias)
    spread = 2.0 * np.abs(O.forced_error(t0, tL, m0, mL))  # a score that ranks |e| perfectly
    return {"t0": t0, "tL": tL, "m0": m0, "mL": mL, "spread": spread, "ood0": rng.random(n),
            "oodL": np.clip(rng.random(n) + 0.05, 0, 1)}


def test_compute_result_rules_and_json_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    per = [_scene(rng, bias=0.1 * k) for k in range(10)]
    res = O.compute_ood_result(per, n_boot=200, seed=0, meta={"command": "test", "world": {"name": "w"}})
    # the positives by hand: pooled population, top 5 % of |e|
    e = np.concatenate([O.forced_error(d["t0"], d["tL"], d["m0"], d["mL"])[O.population_mask(
        d["t0"], d["tL"], d["m0"], d["mL"])] for d in per])
    k = math.ceil(0.05 * e.size)
    row = next(r for r in res.rows if r["unit"] == "pixel" and r["fraction"] == 0.05 and r["score"] == "rain_warm")
    assert row["n_pos"] == int((np.abs(e) >= np.sort(np.abs(e))[-k]).sum()) and row["n_pos"] + row["n_neg"] == e.size
    assert row["auroc"] == pytest.approx(_mw(np.concatenate([d["mL"][O.population_mask(
        d["t0"], d["tL"], d["m0"], d["mL"])] for d in per]), np.abs(e) >= np.sort(np.abs(e))[-k]), abs=1e-6)
    diag = next(p for p in res.meta["positives"] if p["unit"] == "pixel" and p["positives"] == "top 5 %")
    top = np.abs(e) >= np.sort(np.abs(e))[-k]
    assert diag["n_pos"] == row["n_pos"] and diag["share_over_stated"] == pytest.approx(np.mean(e[top] > 0), abs=1e-6)
    # the spread here is 2 |e|: it ranks the positives perfectly; vs_rain is the paired difference
    sp = next(r for r in res.rows if r["unit"] == "pixel" and r["fraction"] == 0.05 and r["score"] == "spread_warm")
    assert sp["auroc"] == 1.0 and sp["vs_rain"] == pytest.approx(1.0 - row["auroc"], abs=1e-6)
    assert sp["vs_rain_lo"] <= sp["vs_rain"] <= sp["vs_rain_hi"] and row["vs_rain"] is None
    # the OOD score is noise: near 0.5 with an interval that holds 0.5
    oo = next(r for r in res.rows if r["unit"] == "pixel" and r["fraction"] == 0.05 and r["score"] == "ood_warm")
    assert oo["lo"] < 0.5 < oo["hi"] and abs(oo["auroc"] - 0.5) < 0.1
    # scene level: the later scenes (larger bias) have the larger mean |e|; top 20 % of 10 = 2 scenes
    sc = next(r for r in res.rows if r["unit"] == "scene" and r["score"] == "rain_warm")
    assert sc["n_pos"] == 2 and sc["n_neg"] == 8
    assert [s["mean_abs_error_mm_h"] for s in res.scenes] == sorted(s["mean_abs_error_mm_h"] for s in res.scenes)
    # reference: warm scores are shifted by +0.05 → AUROC slightly above 0.5, the same pixels in both classes
    ref = next(r for r in res.reference if r["unit"] == "pixel" and r["population"] == "wet")
    assert ref["n_pos"] == ref["n_neg"] == e.size and 0.5 < ref["auroc"] < 0.65
    ref = next(r for r in res.reference if r["unit"] == "scene" and r["population"] == "all valid")
    assert ref["n_pos"] == ref["n_neg"] == 10
    path = tmp_path / "ood-w.json"
    text = res.to_json(path)
    d = json.loads(path.read_text())
    assert d["kind"] == O.KIND and d["schema_version"] == O.SCHEMA_VERSION and text == path.read_text()
    back = O.WarmingOOD.from_json(path)
    assert back.rows == res.rows and back.reference == res.reference and back.meta["command"] == "test"
    assert list(back.frame().columns) == list(O.COLUMNS)
    with pytest.raises(ValueError, match="not a warming-OOD result"):
        O.WarmingOOD.from_json('{"kind": "raincheck.forced_response"}')
    with pytest.raises(ValueError, match="at least 2 scenes"):
        O.compute_ood_result(per[:1])
    with pytest.raises(ValueError, match="no wet pixel"):
        O.compute_ood_result([{k: np.zeros(5) for k in per[0]}] * 2)


# --------------------------------------------------------------------------- end to end
def test_tiny_run_with_the_shipped_models(data_root):
    """2 scenes × 24 scans, the real unet-reference and flow-residual; one scene redone by hand."""
    from catalogs.simulator import simulate_orbit
    from models.inference import predict_swath
    from models.registry import get_card, load_model
    from models.research.flow import predict_with_ood

    res = O.run_warming_ood("published-freezing-level", 4, n_scenes=2, n_scans=24, n_boot=100)
    m = res.meta
    assert m["model"]["checkpoint_sha256"] == get_card("unet-reference").checkpoint_sha256
    assert m["detector"]["checkpoint_sha256"] == get_card("flow-residual").checkpoint_sha256
    assert m["world"]["name"] == "published-freezing-level" and m["world"]["version"] and m["level_K"] == 4.0
    plan = O.plan_scenes(2, 24, 0)
    assert m["scenes"]["orbits"] == [p["orbit"] for p in plan]
    assert len(res.rows) == 3 * len(O.SCORES) and len(res.reference) == 3
    for r in res.rows:
        assert r["auroc"] is None or 0.0 <= r["auroc"] <= 1.0
    back = O.WarmingOOD.from_json(res.to_json())  # the plan and the per-scene values both survive
    assert back.meta["scenes"] == json.loads(json.dumps(m["scenes"])) and back.scenes == res.scenes
    # scene 0 by hand: simulate both climates, retrieve, score
    sc, (w0, wL) = plan[0], m["scenes"]["warming_K"][0]
    got = {}
    for tag, wk in (("0", w0), ("L", wL)):
        ds = simulate_orbit(sc["orbit"], world_seed=0, source="observed", n_scans=24, scan_start=sc["scan_start"],
                            warming_K=wk, world="published-freezing-level")
        got["t" + tag] = ds["surface_precip_truth"].values
        got["m" + tag] = predict_swath(load_model("unet-reference"), ds)["precip_mean"].values
        got["ood" + tag] = predict_with_ood(load_model("flow-residual"), ds)["ood_score"].values
    pop = O.population_mask(got["t0"], got["tL"], got["m0"], got["mL"])
    s0 = res.scenes[0]
    assert s0["n_population"] == int(pop.sum()) > 0
    e = O.forced_error(got["t0"], got["tL"], got["m0"], got["mL"])[pop]
    assert s0["mean_abs_error_mm_h"] == pytest.approx(np.abs(e).mean(), rel=1e-4, abs=1e-6)
    assert s0["rain_warm"] == pytest.approx(got["mL"][pop].mean(), rel=1e-4, abs=1e-6)
    assert s0["ood_warm"] == pytest.approx(got["oodL"][pop].mean(), rel=1e-4, abs=1e-6)


def test_cli_writes_result_and_refuses_bad_input(data_root, tmp_path):
    from app.cli import main

    out = tmp_path / "ood.json"
    r = CliRunner().invoke(main, ["warming", "ood", "--world", "today", "--level", "2", "--scenes", "2",
                                  "--scan-length", "16", "--boot", "100", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(out.read_text())
    assert d["kind"] == O.KIND and d["world"]["name"] == "today" and d["level_K"] == 2.0
    assert d["command"].startswith("raincheck ") and d["n_scenes"] == 2
    assert len(d["scenes"]["orbits"]) == 2 and len(d["per_scene"]) == 2
    for args, msg in ((["--world", "nowhere"], "unknown world preset 'nowhere'"),
                      (["--level", "7"], "outside (0, 6]"),
                      (["--level", "0"], "outside (0, 6]"),
                      (["--model", "unet-refrence"], "did you mean 'unet-reference'"),
                      (["--detector", "unet-reference"], "ships no OOD detector; models with one: flow-residual"),
                      (["--model", "all"], "give one model name")):
        bad = tmp_path / "bad.json"
        r = CliRunner().invoke(main, ["warming", "ood", "--scenes", "2", "--out", str(bad), *args])
        assert r.exit_code != 0 and msg in r.output, (args, r.output)
        assert not bad.exists()
    with pytest.raises(O.NoDetector, match="ships no OOD detector"):
        O.run_warming_ood("today", 1, detector="unet-reference", n_scenes=2)
    with pytest.raises(ValueError, match="outside"):
        O.run_warming_ood("today", 6.5, n_scenes=2)
    with pytest.raises(ValueError, match="unknown world|world"):
        O.run_warming_ood("nowhere", 1, n_scenes=2)

"""The forced-response evaluation (evaluation.warming, `raincheck warming`): histogram quantiles
and the vectorised bootstrap against brute force, verdicts, the JSON round trip, the paired design
against the world's injected scaling, resumability, a failing model, the CLI's refusals, and the
shipped demo result (the stationary control)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from evaluation.warming import response as RS
from evaluation.warming import run as RN
from evaluation.warming import summary as SM

QS = RS.QUANTILE_LEVELS
RATIO = 10 ** (1 / SM.BINS_PER_DECADE)  # one bin


def _within_bin(got, x, q):
    """A histogram quantile lies between the order statistics around it, widened by one bin."""
    lo = np.quantile(x, q, method="lower") / RATIO
    hi = np.quantile(x, q, method="higher") * RATIO
    assert np.all((got >= lo) & (got <= hi)), (got, lo, hi)


def _rain(rng, n, wet=0.2, sigma=1.4):
    v = rng.lognormal(0.0, sigma, n) * (rng.random(n) < wet)
    return v


# --------------------------------------------------------------------------- summaries
def test_bins_match_searchsorted_on_edges_and_values():
    rng = np.random.default_rng(1)
    v = np.concatenate([SM.EDGES[:-1], SM.EDGES[1:-1] * (1 - 1e-12), rng.lognormal(0, 3, 20000), [0.0, 1e6, -1, np.nan]])
    ref = np.searchsorted(SM.EDGES, v, side="right") - 1
    ref = np.where(np.isfinite(v) & (v >= 0), np.minimum(ref, SM.N_BINS - 1), -1)
    np.testing.assert_array_equal(SM.bin_index(v), ref)
    assert np.all(SM.EDGES[2:-1] / SM.EDGES[1:-2] <= 1.005)
    assert SM.EDGES[-2] >= 500.0 and SM.EDGES[1] == pytest.approx(0.01)


def test_histogram_quantiles_match_numpy_within_a_bin():
    rng = np.random.default_rng(2)
    v = _rain(rng, 400_000)
    s = SM.summarise(v, {"global": np.ones(v.size, bool)}, ["global"])
    got = SM.hist_quantiles(s["hist"][0], QS)
    exact = np.quantile(v, QS)
    pos = exact > 0.01
    assert np.all(got[~pos] == 0.0)
    _within_bin(got[pos], v, np.array(QS)[pos])
    wet = v[v >= SM.WET_THRESHOLD]
    _within_bin(SM.hist_quantiles(s["hist"][0], QS, wet=True), wet, QS)
    # where the sample is dense (not the sparse q99.99 tail), within one bin of np.quantile
    np.testing.assert_allclose(got[pos][:-1], exact[pos][:-1], rtol=RATIO - 1)
    assert s["n"][0] == v.size and s["wet"][0] == np.count_nonzero(v > 0.1)
    assert s["sum"][0] == pytest.approx(v.sum())
    np.testing.assert_array_equal(s["exceed"][0], [np.count_nonzero(v > t) for t in SM.THRESHOLDS])


def test_groups_split_surface_and_latitude():
    lat = np.array([[-50.0, 0.0, 29.9, 30.0]])
    st = np.array([[0, 1, 2, 3]])
    m = SM.group_masks(lat, st)
    np.testing.assert_array_equal(m["ocean"], [[True, False, False, True]])
    np.testing.assert_array_equal(m["land"], [[False, True, True, False]])
    np.testing.assert_array_equal(m["tropics"], [[False, True, True, False]])
    np.testing.assert_array_equal(m["extratropics"], ~m["tropics"])


# --------------------------------------------------------------------------- bootstrap
def _scenes(seed, n_sc=6, npx=3000, factor=1.0, shift=1.0):
    """Per-scene pixel arrays of a base and a warmed climate (the warmed one: the same weather
    scaled by ``factor`` per K × 2 K), truth and a 'model' that under-states."""
    rng = np.random.default_rng(seed)
    base = [_rain(rng, npx, wet=rng.uniform(0.05, 0.3), sigma=rng.uniform(1.0, 1.8)) for _ in range(n_sc)]
    warm = [b * 1.07 ** 2 for b in base]
    model_b = [b * shift for b in base]
    model_w = [b * 1.03 ** 2 * shift for b in base]
    return {"truth": (base, warm), "m": (model_b, model_w)}


def _summ(arrs):
    g = ["global"]
    ss = [SM.summarise(a, {"global": np.ones(a.size, bool)}, g) for a in arrs]
    return {f: np.stack([s[f] for s in ss]) for f in ss[0]}


def _brute_stats(arrs, wrow, method="linear"):
    x = np.concatenate([np.repeat(a[None], int(k), 0).ravel() for a, k in zip(arrs, wrow) if k > 0])
    wet = x[x >= SM.WET_THRESHOLD]
    return np.concatenate([[x.mean(), np.mean(x > 0.1)], np.quantile(x, QS, method=method),
                           np.quantile(wet, QS, method=method), [np.mean(x > t) for t in SM.THRESHOLDS]])


def test_vectorised_bootstrap_equals_brute_force():
    data = _scenes(3)
    w = RS.boot_weights(6, 12, seed=5)
    assert np.all(w[1:].sum(axis=1) == 6) and np.all(w[0] == 1)
    for src, (b, _) in data.items():
        got = RS.statistics(*RS._pool(_summ(b), 0, w))
        nq = 2 * len(QS)
        for r in range(w.shape[0]):
            exact = _brute_stats(b, w[r])
            np.testing.assert_allclose(got[r, :2], exact[:2], rtol=1e-12)
            np.testing.assert_allclose(got[r, -len(SM.THRESHOLDS):], exact[-len(SM.THRESHOLDS):], rtol=1e-12)
            lo = _brute_stats(b, w[r], "lower")[2:2 + nq] / RATIO
            hi = _brute_stats(b, w[r], "higher")[2:2 + nq] * RATIO
            g = got[r, 2:2 + nq]
            ok = (g >= lo) & (g <= hi) | ((g == 0) & (lo < 0.01))
            assert ok.all(), (src, r, g[~ok], lo[~ok], hi[~ok])


def test_responses_intervals_and_errors_against_brute_force():
    data = _scenes(4)
    summ = {s: [_summ(b), _summ(wm)] for s, (b, wm) in data.items()}
    n_boot, ci = 40, 90.0
    fr = RS.compute_response(summ, [2.0], n_boot=n_boot, seed=7, ci=ci, groups=("global",))
    df = fr.frame()
    w = RS.boot_weights(6, n_boot, seed=7)
    resp = {}
    for s, (b, wm) in data.items():
        sb = np.array([_brute_stats(b, wr) for wr in w])
        sw = np.array([_brute_stats(wm, wr) for wr in w])
        with np.errstate(invalid="ignore", divide="ignore"):
            resp[s] = 100 * ((sw / sb) ** 0.5 - 1)
    err = resp["m"] - resp["truth"]
    specs = RS.stat_specs()
    for j, sp in enumerate(specs):
        # results carry 6 significant digits; quantiles: one bin on each side (%/K over 2 K)
        tol = 1e-4 if sp["statistic"] != "quantile" else 100 * (RATIO - 1)
        row = df[(df.source == "m") & (df.statistic == sp["statistic"]) & (df.population == sp["population"])]
        if sp["level_q"] is not None:
            row = row[np.isclose(row.level_q, sp["level_q"])]
        if sp["threshold_mm_h"] is not None:
            row = row[np.isclose(row.threshold_mm_h, sp["threshold_mm_h"])]
        row = row.iloc[0]
        if not np.isfinite(err[0, j]) or (sp["level_q"] or 0) > 0.99:  # brute-force quantiles: dense part only
            continue
        lo, hi = np.percentile(err[1:, j], [5, 95])
        assert row.error == pytest.approx(err[0, j], abs=tol), sp
        assert row.error_lo == pytest.approx(lo, abs=tol) and row.error_hi == pytest.approx(hi, abs=tol), sp
    # exact scaling: the truth's p99.9 response is 7 %/K, the model's 3 %/K, in every replicate
    t = df[(df.source == "truth") & (df.statistic == "quantile") & (df.population == "wet") & np.isclose(df.level_q, .999)]
    assert t.response.iloc[0] == pytest.approx(7.0, abs=0.3)
    m = df[(df.source == "m") & (df.statistic == "quantile") & (df.population == "wet") & np.isclose(df.level_q, .999)]
    assert m.verdict.iloc[0] == "under-states" and m.error.iloc[0] == pytest.approx(-4.0, abs=0.3)
    # the mean scales exactly (the same factor on every pixel)
    mt = df[(df.source == "m") & (df.statistic == "mean")].iloc[0]
    assert mt.error == pytest.approx(100 * (1.03 - 1.07), abs=1e-4)


def test_verdicts():
    assert RS.verdict(0.1, 2.0, 1.0) == "over-states"
    assert RS.verdict(-2.0, -0.1, 1.0) == "under-states"
    assert RS.verdict(-0.5, 0.9, 1.0) == "tracks"
    assert RS.verdict(-1.5, 0.9, 1.0) == "undetermined"
    assert RS.verdict(np.nan, 0.9, 1.0) == "undetermined"


def test_compound_response_matches_trend_pct_per_K():
    from evaluation.compare import trend_pct_per_K

    assert RS.compound_pct_per_K(2.0, 2.6, 4.0) == pytest.approx(trend_pct_per_K(2.0, 2.6, 4.0))
    assert np.isnan(RS.compound_pct_per_K(0.0, 2.6, 4.0))


def test_json_round_trip_and_frame_columns(tmp_path):
    data = _scenes(5, n_sc=4, npx=1000)
    summ = {s: [_summ(b), _summ(wm), _summ(wm)] for s, (b, wm) in data.items()}
    fr = RS.compute_response(summ, [1.0, 2.0], n_boot=100, groups=("global",), meta={"world": {"name": "x"}})
    p = tmp_path / "x.json"
    fr.to_json(p)
    back = RS.ForcedResponse.from_json(p)
    assert back.rows == fr.rows and back.growth == fr.growth and back.world == "x"
    df = back.frame()
    assert list(df.columns) == list(RS.COLUMNS)
    assert set(df.verdict.dropna()) <= set(RS.VERDICTS)
    assert len(back.growth_frame()) == len(RS.stat_specs())
    assert RS.load_results(tmp_path)["x"].rows == fr.rows
    bad = json.loads(p.read_text())
    bad["kind"] = "other"
    with pytest.raises(ValueError, match="not a forced-response"):
        RS.ForcedResponse.from_json(json.dumps(bad))
    with pytest.raises(ValueError, match="at least 2 scenes"):
        RS.compute_response({s: [{k: v[:1] for k, v in c.items()} for c in cl] for s, cl in summ.items()},
                            [1.0, 2.0], n_boot=100, groups=("global",))


def test_levels_checked():
    assert RN.check_levels("4,1,2") == [1.0, 2.0, 4.0]
    for bad, msg in (("0", "outside"), ("-1", "outside"), ("7", "outside"), ("a", "not a number"), ("1,1", "repeat"),
                     ("", "at least one")):
        with pytest.raises(ValueError, match=msg):
            RN.check_levels(bad)


def test_design_training_climate_and_scenes():
    from catalogs.simulator.climate import gmst_anomaly
    from catalogs.simulator.geometry import N_SCANS, orbit_start_time

    t = np.arange(np.datetime64("2015-01-01"), np.datetime64("2020-01-01"), np.timedelta64(7, "D"))
    assert RN.training_climate_K() == pytest.approx(float(np.mean(gmst_anomaly(t.astype("datetime64[ns]")))), abs=2e-3)
    sc = RN.plan_scenes(20, 300, seed=3)
    assert sc == RN.plan_scenes(20, 300, seed=3) and len({s["orbit"] for s in sc}) == 20
    assert RN.plan_scenes(8, 300, seed=3) == sc[:8]  # nested: a run can be extended or cut
    years = {str(orbit_start_time(s["orbit"]))[:4] for s in sc}
    assert years == {"2021"} and all(0 <= s["scan_start"] <= N_SCANS - 300 for s in sc)
    assert RN.climates(sc[0], 1.2, [1.0, 4.0]) == pytest.approx([1.2 - sc[0]["scene_gmst_K"] + L for L in (0, 1, 4)])


# --------------------------------------------------------------------------- the paired design on the simulator
def truth_only(orbit, world_seed=0, source="observed", *, n_scans=None, scan_start=0, warming_K=0.0, world="today"):
    """The truth of a scene as a minimal swath (no forward model): what the truth summaries read."""
    from catalogs.simulator import simulate_truth

    t = simulate_truth(orbit, world_seed, source, n_scans=n_scans, scan_start=scan_start, warming_K=warming_K,
                       world=world)
    dims = ("along_track", "cross_track")
    return xr.Dataset({"surface_precip_truth": (dims, t["rain"]), "surface_type": (dims, t["surface_type"]),
                       "lat": (dims, t["lat"])}, attrs={"gmst_anomaly_K": t["gmst_anomaly_K"]})


def _truth_p(world, q, tmp_path, levels=(1.0, 2.0, 4.0)):
    fr = RN.run_forced_response([], levels, world, n_scenes=10, n_scans=120, n_boot=200,
                                scheduler="inline", root=tmp_path, simulate=truth_only)
    df = fr.frame()
    sel = df[(df.group == "global") & (df.statistic == "quantile") & (df.population == "all")
             & np.isclose(df.level_q, q)]
    assert len(sel) == len(levels)
    return fr, sel


@pytest.mark.parametrize("world", ["today", "published"])
def test_paired_design_recovers_the_injected_scaling(tmp_path, world):
    """On 10 paired scenes the truth's all-pixel p99.99 response at +4 K equals the world's injected
    scaling within 0.3 %/K (the weather is the same: no sampling noise to average out). At +4 K, as
    the 27 pixels above p99.99 are sparse on the 0.5 % bins, the bin interpolation adds < 0.13 %/K."""
    from catalogs.simulator import get_world

    fr, sel = _truth_p(world, 0.9999, tmp_path, levels=(4.0,))
    want = get_world(world).injected_pct_per_K("p99.99")
    assert fr.meta["injected_truth_pct_per_K"]["p99.99"] == want
    for _, r in sel.iterrows():
        assert r.response == pytest.approx(want, abs=0.3), r.warming_K


def test_paired_design_p999_equals_the_injected_scaling(tmp_path):
    """Issue 14: on 10 paired scenes the truth's all-pixel p99.9 response equals the injected 7 %/K
    within 0.3 %/K at +1, +2 and +4 K (measured 6.91, 6.96, 6.98). Not exact: the global p99.9 mixes
    regimes, and pixels of heavy-rain regimes on the intensity ramp below their own 95th wet
    percentile (scaled by less than 7 %/K) can reach it (another 10-scene draw gave 6.67-6.70)."""
    from catalogs.simulator import get_world

    _, sel = _truth_p("today", 0.999, tmp_path)
    want = get_world("today").injected_pct_per_K("p99.9")
    for _, r in sel.iterrows():
        assert r.response == pytest.approx(want, abs=0.3), r.warming_K


def fake_retriever(swath):
    """A deterministic function of the Tb (89 GHz V depression → rain): a stand-in model."""
    tc = swath["Tc"].values
    return np.clip((270.0 - tc[..., 7]) / 8.0, 0.0, None) ** 1.5


def broken_retriever(swath):
    raise RuntimeError("weights went missing")


_IDS = {"fake": {"checkpoint_sha256": "f" * 64, "product": "precip_mean"},
        "broken": {"checkpoint_sha256": "b" * 64, "product": "precip_mean"}}


def test_run_resumes_and_a_failing_model_writes_nothing(tmp_path):
    kw = dict(n_scenes=3, n_scans=48, n_boot=100, scheduler="inline", root=tmp_path, model_fns={"fake": fake_retriever},
              identities={"fake": _IDS["fake"]})
    calls = []
    fr = RN.run_forced_response(["fake"], [1.0, 4.0], "today", progress=lambda d, t, m="": calls.append(m), **kw)
    files = sorted(tmp_path.rglob("*.npz"))
    assert len(files) == 3 * 3 * 2  # scenes × climates × sources
    stamps = [f.stat().st_mtime_ns for f in files]
    calls.clear()
    again = RN.run_forced_response(["fake"], [1.0, 4.0], "today", progress=lambda d, t, m="": calls.append(m), **kw)
    assert [f.stat().st_mtime_ns for f in sorted(tmp_path.rglob("*.npz"))] == stamps  # nothing recomputed
    assert "0 scene(s) to compute" in calls[0]
    assert again.rows == fr.rows
    assert set(fr.frame().query("source == 'fake'").verdict) <= set(RS.VERDICTS)
    # the model is told the counterfactual climate of each scene it sees
    meta = json.loads(np.load(files[0])["meta"].item())
    assert meta["gmst_anomaly_K"] == pytest.approx(meta["scene"]["scene_gmst_K"] + meta["warming_K"])
    # a model that fails mid-run is named; the other sources' summaries stay as cache
    kw["model_fns"] = {"fake": fake_retriever, "broken": broken_retriever}
    kw["identities"] = _IDS
    with pytest.raises(RN.ModelRunFailed, match="'broken' failed on orbit"):
        RN.run_forced_response(["fake", "broken"], [1.0, 4.0], "today", **kw)
    assert not list(tmp_path.rglob("broken@*.npz"))
    assert len(list(tmp_path.rglob("fake@*.npz"))) == 9


def test_a_shipped_model_on_few_scenes(tmp_path):
    fr = RN.run_forced_response(["unet-reference"], [2.0], "today", n_scenes=2, n_scans=64, n_boot=100,
                                scheduler="inline", root=tmp_path)
    from models.registry import get_card

    assert fr.meta["models"]["unet-reference"]["checkpoint_sha256"] == get_card("unet-reference").checkpoint_sha256
    df = fr.frame().query("group == 'global' and statistic == 'mean'")
    t, m = df[df.source == "truth"].iloc[0], df[df.source == "unet-reference"].iloc[0]
    assert m.error == pytest.approx(m.response - t.response, abs=1e-4)
    assert np.isfinite(m.response) and m.value > 0


# --------------------------------------------------------------------------- the command line
@pytest.mark.parametrize("args, msg", [
    (["--models", "all", "--world", "tomorrow"], "unknown world preset 'tomorrow'; presets: today, stationary"),
    (["--models", "all", "--levels", "1,-2"], "outside (0, 6]"),
    (["--models", "all", "--levels", "1,abc"], "'abc' is not a number"),
    (["--models", "all", "--levels", "10"], "outside (0, 6]"),
    (["--models", "unet-refrence"], "did you mean 'unet-reference'?"),
])
def test_cli_refuses_bad_input_before_computing(tmp_path, monkeypatch, args, msg):
    from app.cli import main

    monkeypatch.setenv("RAINCHECK_DATA_ROOT", str(tmp_path))
    monkeypatch.setattr(RN, "run_forced_response", lambda *a, **k: pytest.fail("computed despite bad input"))
    out = tmp_path / "r.json"
    res = CliRunner().invoke(main, ["warming", "run", *args, "--out", str(out)])
    assert res.exit_code != 0 and msg in res.output, res.output
    assert not out.exists() and not (tmp_path / "warming").exists()


def test_cli_model_failing_mid_run_leaves_no_result(tmp_path, monkeypatch):
    from app.cli import main

    monkeypatch.setenv("RAINCHECK_DATA_ROOT", str(tmp_path))

    def failing(*a, **k):
        raise RN.ModelRunFailed("model 'unet-hybrid' failed on orbit 38951: RuntimeError: boom")

    monkeypatch.setattr(RN, "run_forced_response", failing)
    import evaluation.warming as WM

    monkeypatch.setattr(WM, "run_forced_response", failing)
    out = tmp_path / "r.json"
    res = CliRunner().invoke(main, ["warming", "run", "--models", "unet-hybrid", "--inline", "--out", str(out)])
    assert res.exit_code == 1 and "'unet-hybrid' failed" in res.output and "No result written" in res.output
    assert not out.exists()


# --------------------------------------------------------------------------- the shipped demo result
def test_shipped_results_are_complete_and_current():
    from catalogs.simulator import PRODUCT_VERSION, WORLDS
    from models.registry import get_card, list_models

    res = RS.load_results()
    assert {"today", "stationary", "published"} <= set(res), sorted(res)
    for name, fr in res.items():
        assert fr.meta["world"]["version"] == WORLDS[name].version, name
        assert fr.meta["product_version"] == PRODUCT_VERSION, name
        assert fr.meta["n_boot"] >= 1000 and fr.meta["levels_K"] == [1.0, 2.0, 4.0]
        assert set(fr.models) == {c.name for c in list_models()}, name
        for m, ident in fr.meta["models"].items():
            assert ident["checkpoint_sha256"] == get_card(m).checkpoint_sha256, (name, m)
        assert fr.meta["command"].startswith("raincheck warming run")


@pytest.mark.xfail(strict=True, reason=(
    "Measured on the shipped result (71 scenes x 150 scans, 1000 replicates, 90 %): several models' p99.9 "
    "error intervals exclude zero at +4 K, all below it (bayes-baseline, flow-residual, unet-climate, unet-density, "
    "unet-invariant, unet-paired, unet-paired-ideal), and "
    "every model under-states the mean. Not a defect of the experiment: with p(Tb | R) unchanged, a retrieval "
    "trained under the present climate's rain distribution still lags a shift of that distribution (Bayes: "
    "p(R | Tb) carries the training prior), so the expected sign is negative; "
    "test_a_perfect_present_climate_retrieval_under_states_a_prior_shift shows it against the closed form. The "
    "predictive draws (--product precip_sample, 47 scenes) under-state too (-0.4..-2.4 %/K at p99.9 for all but "
    "bayes-baseline, intervals excluding zero for 11 of 12 models); about 0.2 %/K of a p99.9 error on this few "
    "scenes is the estimator's small-sample bias (tools/interval_coverage.py). Issue 14 expects zero everywhere; "
    "reported, not tuned."))
def test_stationary_control_intervals_contain_zero():
    """Issue 14: in the stationary control (the Tb-rain relation does not change with warming),
    every shipped model's forced p99.9 error interval contains zero."""
    fr = RS.load_results()["stationary"]
    df = fr.frame()
    sel = df[(df.group == "global") & (df.source != "truth") & (df.statistic == "quantile") & (df.population == "all")
             & np.isclose(df.level_q, 0.999)]
    assert len(sel) == 3 * len(fr.models)
    bad = sel[~((sel.error_lo <= 0) & (sel.error_hi >= 0))]
    assert bad.empty, bad[["source", "warming_K", "error", "error_lo", "error_hi"]].to_string()


def test_cli_lists_the_world_presets():
    """`raincheck warming worlds` (named by `warming run --help`) lists every preset with its version
    and mechanisms; --json gives each World.describe()."""
    from app.cli import main
    from catalogs.simulator import WORLDS

    res = CliRunner().invoke(main, ["warming", "worlds"])
    assert res.exit_code == 0, res.output
    for w in WORLDS.values():
        assert f"{w.name} ({w.version})" in res.output
        for m in w.mechanisms:
            assert m.name in res.output
    res = CliRunner().invoke(main, ["warming", "worlds", "--json"])
    assert res.exit_code == 0 and json.loads(res.output) == {k: json.loads(json.dumps(w.describe()))
                                                             for k, w in WORLDS.items()}


# --------------------------------------------------------------------------- the sample product
def _retrieval(q: np.ndarray, levels: np.ndarray) -> xr.Dataset:
    return xr.Dataset({"precip_quantiles": (("along_track", "cross_track", "quantile"), q)},
                      coords={"quantile": levels})


def test_predictive_samples_invert_the_quantile_function():
    """At uniforms on the levels a draw is the quantile itself; between levels it is linear (np.interp, an
    independent path); a NaN pixel stays NaN."""
    levels = np.array([0.1, 0.5, 0.9, 0.99])
    q = np.array([[[0.0, 1.0, 4.0, 9.0], [0.0, 0.0, 0.5, 2.0]],
                  [[0.2, 0.3, 0.4, 0.5], [np.nan] * 4]])
    u = np.array([[[0.5, 0.9], [0.1, 0.5]], [[0.3, 0.7], [0.95, 0.3]]])
    x = RN.predictive_samples(_retrieval(q, levels), u)
    assert x.shape == (2, 2, 2)
    assert x[0, 0, 0] == pytest.approx(1.0) and x[0, 0, 1] == pytest.approx(0.5)
    assert x[0, 1, 0] == pytest.approx(0.2)
    for d, i, j in [(1, 0, 0), (1, 0, 1), (1, 1, 0)]:
        assert x[d, i, j] == pytest.approx(np.interp(u[d, i, j], levels, q[i, j]), rel=1e-6)
    assert np.isnan(x[:, 1, 1]).all()
    with pytest.raises(ValueError, match="uniforms of shape"):
        RN.predictive_samples(_retrieval(q, levels), u[:, :1])


def test_sample_uniforms_are_common_to_the_climates_of_a_scene():
    sc = {"orbit": 39000, "scan_start": 100, "n_scans": 64}
    a, b = RN.scene_uniforms(sc, (64, 221)), RN.scene_uniforms(dict(sc), (64, 221))
    assert a.shape == (RN.SAMPLE_DRAWS, 64, 221) and np.array_equal(a, b)
    assert not np.array_equal(a, RN.scene_uniforms({**sc, "orbit": 39001}, (64, 221)))
    assert 0 < a.min() and a.max() < 1 and abs(a.mean() - 0.5) < 0.01


def test_samples_of_a_calibrated_forecast_reproduce_the_truth_distribution():
    """A forecast that knows only the climatology (the same predictive distribution everywhere, equal to
    the truth's): its posterior mean is one number, its draws have the truth's quantiles."""
    rng = np.random.default_rng(3)
    truth = rng.gamma(0.3, 4.0, size=(200, 221))
    levels = np.linspace(0.005, 0.995, 199)
    q = np.broadcast_to(np.quantile(truth, levels), (200, 221, levels.size))
    x = RN.predictive_samples(_retrieval(np.ascontiguousarray(q), levels),
                              RN.scene_uniforms({"orbit": 1, "scan_start": 0, "n_scans": 200}, (200, 221)))
    for p in (0.5, 0.9, 0.99):
        assert np.quantile(x, p) == pytest.approx(np.quantile(truth, p), rel=0.03)


def test_a_run_of_the_sample_product_is_stored_apart_and_filtered(tmp_path):
    fr = RN.run_forced_response(["unet-reference"], [2.0], "today", n_scenes=2, n_scans=32, n_boot=100,
                                scheduler="inline", root=tmp_path, product="precip_sample")
    assert fr.meta["product"] == "precip_sample" and fr.meta["sample_draws"] == RN.SAMPLE_DRAWS
    assert list(tmp_path.rglob("unet-reference@*@precip_sample.npz"))
    assert not list(tmp_path.rglob("unet-reference@*@precip_mean.npz"))
    fr.to_json(tmp_path / "res" / "today-precip_sample.json")
    assert RS.load_results(tmp_path / "res") == {}
    assert set(RS.load_results(tmp_path / "res", product="precip_sample")) == {"today"}
    with pytest.raises(ValueError, match="unknown product 'precip_mode'"):
        RN.run_forced_response(["unet-reference"], [2.0], "today", n_scenes=2, n_scans=32, scheduler="inline",
                               root=tmp_path, product="precip_mode")


def test_versus_the_reference_is_paired_against_brute_force():
    """Model 'better' scales like the truth but 5 %/K short at half the pixels; against 'unet-reference'
    (3 %/K on every pixel) its diff and |error| change come from the same replicates (brute force)."""
    data = _scenes(5)
    base, warm = data["truth"]
    ref_b, ref_w = data.pop("m")
    data["unet-reference"] = (ref_b, ref_w)
    data["better"] = (base, [wm if i % 2 else wm * 0.9 for i, wm in enumerate(warm)])
    summ = {s: [_summ(b), _summ(wm)] for s, (b, wm) in data.items()}
    fr = RS.compute_response(summ, [2.0], n_boot=40, seed=3, groups=("global",))
    assert fr.meta["versus"] == "unet-reference" and set(fr.versus_frame().source) == {"better"}
    w = RS.boot_weights(6, 40, seed=3)
    resp = {}
    for s, (b, wm) in data.items():
        sb, sw = np.array([_brute_stats(b, wr) for wr in w]), np.array([_brute_stats(wm, wr) for wr in w])
        with np.errstate(invalid="ignore", divide="ignore"):
            resp[s] = 100 * ((sw / sb) ** 0.5 - 1)
    e_ref, e_b = resp["unet-reference"] - resp["truth"], resp["better"] - resp["truth"]
    v = fr.versus_frame()
    row = v[v.statistic == "mean"].iloc[0]  # the mean: exact in the summaries (no bins)
    d, a = e_b[:, 0] - e_ref[:, 0], np.abs(e_b[:, 0]) - np.abs(e_ref[:, 0])
    assert row["diff"] == pytest.approx(d[0], abs=1e-4) and row.abs_change == pytest.approx(a[0], abs=1e-4)
    assert [row.diff_lo, row.diff_hi] == pytest.approx(list(np.percentile(d[1:], [5, 95])), abs=1e-4)
    assert [row.abs_change_lo, row.abs_change_hi] == pytest.approx(list(np.percentile(a[1:], [5, 95])), abs=1e-4)
    back = RS.ForcedResponse.from_json(fr.to_json())
    assert back.versus == fr.versus
    old = json.loads(fr.to_json())
    old.pop("versus")
    assert RS.ForcedResponse.from_json(json.dumps(old)).versus == []  # results written before 'versus' still load


def test_a_perfect_present_climate_retrieval_under_states_a_prior_shift():
    """Why the stationary control cannot give zero (issue 14): with p(Tb | R) unchanged, a retrieval that is
    exact for the present climate's prior still lags a shift of the prior (Bayes). Conjugate toy, checked
    against the closed form: log R ~ N(mu, s^2), Tb = log R + N(0, t^2); warming multiplies R by k per K.
    The posterior (mean and draws) moves by w = s^2 / (s^2 + t^2) of the shift, so its quantiles respond by
    100 (k^w - 1) %/K while the truth's respond by 100 (k - 1) %/K."""
    rng = np.random.default_rng(11)
    mu, s, t, k, L = -0.5, 1.0, 0.6, 1.07, 4.0
    w = s ** 2 / (s ** 2 + t ** 2)
    n_sc, npx = 40, 20000
    z = rng.standard_normal((n_sc, npx))
    eps = rng.standard_normal((n_sc, npx))
    u = rng.standard_normal((n_sc, npx))
    sources = {"truth": [], "posterior_mean": [], "posterior_draw": []}
    for dT in (0.0, L):
        logr = mu + s * z + dT * np.log(k)  # the same weather (z), a warmer climate
        tb = logr + t * eps  # the unchanged observation relation
        post_m = (s ** 2 * tb + t ** 2 * mu) / (s ** 2 + t ** 2)  # the present climate's posterior
        post_sd = np.sqrt(s ** 2 * t ** 2 / (s ** 2 + t ** 2))
        for src, x in (("truth", np.exp(logr)), ("posterior_mean", np.exp(post_m + post_sd ** 2 / 2)),
                       ("posterior_draw", np.exp(post_m + post_sd * u))):
            sources[src].append(_summ(list(x)))
    fr = RS.compute_response(sources, [L], n_boot=100, seed=1, groups=("global",))
    df = fr.frame()
    q = df[(df.statistic == "quantile") & (df.population == "all") & np.isclose(df.level_q, 0.99)]
    got = dict(zip(q.source, q.response))
    assert got["truth"] == pytest.approx(100 * (k - 1), abs=0.1)
    for src in ("posterior_mean", "posterior_draw"):
        assert got[src] == pytest.approx(100 * (k ** w - 1), abs=0.15), src
        assert q[q.source == src].verdict.iloc[0] == "under-states"

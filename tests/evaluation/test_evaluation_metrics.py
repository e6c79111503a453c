"""Distributions, extremes and skill scores against independent computations, on random and
edge-case data (all dry, all wet, NaNs, a single pixel)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from evaluation import distributions as D
from evaluation import extremes as E
from evaluation import skill as S

RNG = np.random.default_rng(42)


def rain(n, seed=0, wet=0.3):
    r = np.random.default_rng(seed)
    x = r.gamma(0.5, 4.0, n)
    x[r.random(n) > wet] = 0.0
    return x


def edge_cases():
    r = np.random.default_rng(3)
    base = rain(5000, 1)
    with_nan = base.copy()
    with_nan[r.random(base.size) < 0.2] = np.nan
    return {
        "random": (rain(5000, 2) * r.lognormal(0, 0.4, 5000), base),
        "all_dry": (np.zeros(200), np.zeros(200)),
        "all_wet": (r.gamma(2, 3, 300) + 0.2, r.gamma(2, 3, 300) + 0.2),
        "nans": (rain(5000, 4), with_nan),
        "single": (np.array([3.0]), np.array([2.0])),
        "pred_dry_ref_wet": (np.zeros(100), r.gamma(2, 3, 100) + 0.2),
    }


# --------------------------------------------------------------------------- distributions
def test_bins_layout():
    e = D.EDGES
    assert e[0] == 0 and np.isinf(e[-1])
    for t in (0.1, 1.0, 10.0, 100.0):
        assert np.isclose(e, t).any(), f"{t} must be a bin edge"
    assert np.all(np.diff(e) > 0)


def test_histogram_matches_numpy_and_bin_index():
    x = np.concatenate([rain(20000, 5), D.EDGES[:-1], [np.nan, 1e4]])
    c = D.histogram(x)
    finite_edges = np.concatenate([D.EDGES[:-1], [1e9]])
    ref = np.histogram(x[np.isfinite(x)], finite_edges)[0]
    np.testing.assert_array_equal(c, ref)
    idx = D.bin_index(x)
    np.testing.assert_array_equal(np.bincount(idx[idx >= 0], minlength=D.N_BINS), c)
    assert idx[np.isnan(x)].tolist() == [-1]


@pytest.mark.parametrize("gen", [
    lambda r: r.gamma(0.3, 3, 300_000),
    lambda r: r.lognormal(0, 1.2, 300_000),
    lambda r: r.pareto(3, 300_000) + 0.5,
    lambda r: np.where(r.random(300_000) < 0.2, r.weibull(0.7, 300_000) * 3, 0.0),
])
def test_quantiles_from_histogram_close_to_exact(gen):
    x = gen(np.random.default_rng(7))
    c = D.histogram(x)
    for q in (0.99, 0.999):
        exact = np.quantile(x, q)
        approx = D.quantile_from_hist(c, q)
        assert approx == pytest.approx(exact, rel=0.02), (q, exact, approx)


def test_quantile_from_hist_vectorised_and_empty():
    c = np.stack([D.histogram(rain(10000, 1)), np.zeros(D.N_BINS, int)])
    q = D.quantile_from_hist(c, [0.5, 0.99])
    assert q.shape == (2, 2)
    assert np.isnan(q[1]).all() and np.isfinite(q[0]).all()


def test_pdf_cdf_wet_fraction():
    x = rain(50000, 9)
    c = D.histogram(x)
    frac = D.pdf(c, per="fraction")
    assert frac.sum() == pytest.approx(1.0)
    dens = D.pdf(c, per="rate")
    w = np.diff(D.EDGES)
    finite = np.isfinite(w)
    assert np.nansum(dens[finite] * w[finite]) == pytest.approx(frac[finite].sum())
    np.testing.assert_allclose(D.cdf(c), [np.mean(x < e) for e in D.EDGES[1:]], atol=1e-12)
    assert D.wet_fraction(c) == pytest.approx(np.mean(x >= 0.1))
    assert D.wet_fraction(values=x) == pytest.approx(np.mean(x >= 0.1))
    assert D.wet_fraction(D.histogram(np.zeros(10))) == 0
    assert D.wet_fraction(D.histogram(np.full(10, 5.0))) == 1


def test_wasserstein_hist_matches_fine_sampling():
    a, b = rain(40000, 1), rain(40000, 2) * 1.3
    ca, cb = D.histogram(a), D.histogram(b)
    # independent: samples spread uniformly within each bin, W1 by scipy
    def spread(c):
        e = np.concatenate([D.EDGES[:-1], [D.EDGES[-2]]])
        vals, wts = [], []
        for i, n in enumerate(c):
            if n:
                g = np.linspace(e[i], e[i + 1], 201)
                mid = 0.5 * (g[1:] + g[:-1])
                vals.append(mid)
                wts.append(np.full(mid.size, n / mid.size))
        return np.concatenate(vals), np.concatenate(wts)
    va, wa = spread(ca)
    vb, wb = spread(cb)
    ref = scipy.stats.wasserstein_distance(va, vb, wa, wb)
    assert D.wasserstein1_hist(ca, cb) == pytest.approx(ref, rel=1e-3)
    # and close to the raw-sample distance
    assert D.wasserstein1_hist(ca, cb) == pytest.approx(D.wasserstein1(a, b), rel=0.05)
    assert D.wasserstein1_hist(ca, ca) == 0


def test_perkins_and_qq():
    a = rain(10000, 1)
    ca = D.histogram(a)
    assert D.perkins_score(ca, ca) == pytest.approx(1.0)
    disjoint = D.histogram(np.full(100, 50.0))
    assert D.perkins_score(D.histogram(np.zeros(10)), disjoint) == 0
    b = rain(10000, 2)
    hand = np.sum(np.minimum(ca / ca.sum(), D.histogram(b) / b.size))
    assert D.perkins_score(ca, D.histogram(b)) == pytest.approx(hand)
    lv, qa, qb = D.qq(a, b)
    assert lv.max() >= 0.999
    np.testing.assert_allclose(qa, np.quantile(a, lv))
    assert np.isnan(D.wasserstein1([np.nan], [1.0]))


# --------------------------------------------------------------------------- extremes
def test_exceedance_exact_at_edges_and_interpolated_between():
    x = np.random.default_rng(1).pareto(2.5, 200000) * 2
    c = D.histogram(x)
    edges, surv = E.exceedance_curve(c)
    for k in (5, 15, 25):
        assert surv[k] == pytest.approx(np.mean(x >= edges[k]))
    for t in (3.0, 7.0, 20.0):
        assert E.exceedance_probability(c, threshold=t) == pytest.approx(np.mean(x >= t), rel=0.03)
    np.testing.assert_allclose(E.exceedance_frequency(x, [1, 10]), [np.mean(x >= 1), np.mean(x >= 10)])


def test_gpd_fit_recovers_parameters_and_binned_agrees():
    r = np.random.default_rng(2)
    xi, sigma, u = 0.2, 2.0, 1.0
    exc = scipy.stats.genpareto.rvs(xi, scale=sigma, size=20000, random_state=r)
    x = np.concatenate([r.uniform(0, u, 60000), u + exc])
    f = E.gpd_fit(x, u)
    assert f["xi"] == pytest.approx(xi, abs=0.03)
    assert f["sigma"] == pytest.approx(sigma, rel=0.05)
    assert f["rate"] == pytest.approx(0.25)
    fb = E.gpd_fit_binned(D.histogram(x), u)
    assert fb["xi"] == pytest.approx(f["xi"], abs=0.03)
    assert fb["sigma"] == pytest.approx(f["sigma"], rel=0.05)
    # return level: the m-observation level has exceedance probability 1/m under the fit
    m = 1e5
    rl = E.return_level(f, m)
    p = f["rate"] * scipy.stats.genpareto.sf(rl - u, f["xi"], scale=f["sigma"])
    assert p == pytest.approx(1 / m, rel=1e-6)
    with pytest.raises(ValueError):
        E.gpd_fit_binned(D.histogram(x), 1.05)


def test_bootstrap_ci_contains_truth():
    r = np.random.default_rng(3)
    xi, sigma, u = 0.15, 1.5, 1.0
    x = np.concatenate([r.uniform(0, u, 30000), u + scipy.stats.genpareto.rvs(xi, scale=sigma, size=10000, random_state=r)])
    out = E.bootstrap_gpd(counts=D.histogram(x), threshold=u, n_boot=60, seed=1)
    lo, hi = out["ci"]["xi"]
    assert lo < xi < hi
    rl_true = u + sigma / xi * ((1e5 * 0.25) ** xi - 1)
    lo, hi = out["ci"]["return_levels"][:, 1]
    assert lo < rl_true < hi
    raw = E.bootstrap_gpd(x, u, n_boot=30, seed=1)
    assert raw["ci"]["xi"][0] < xi < raw["ci"]["xi"][1]


def test_hill_on_pareto():
    alpha = 2.5
    x = (np.random.default_rng(4).pareto(alpha, 200000) + 1)
    assert E.hill(x, k=5000) == pytest.approx(1 / alpha, rel=0.05)
    # hand computation of the estimator
    s = np.sort(x)[::-1]
    assert E.hill(x, k=100) == pytest.approx(np.mean(np.log(s[:100] / s[100])))
    assert E.hill_binned(D.histogram(x), 10.0) == pytest.approx(1 / alpha, rel=0.15)
    assert np.isnan(E.hill(np.zeros(100)))
    assert np.isnan(E.gpd_fit(np.zeros(100), 1.0)["xi"])


# --------------------------------------------------------------------------- skill
def hand_scores(p, r):
    ok = np.isfinite(p) & np.isfinite(r)
    p, r = p[ok], r[ok]
    out = {"n": p.size}
    if p.size == 0:
        return out
    out["bias_pct"] = 100 * (p.sum() - r.sum()) / r.sum() if r.sum() > 0 else np.nan
    out["mae"] = np.mean(np.abs(p - r))
    out["mse"] = np.mean((p - r) ** 2)
    out["corr"] = scipy.stats.pearsonr(p, r)[0] if p.size > 1 and p.std() > 0 and r.std() > 0 else np.nan
    s = r > 0.1  # SatRain: reference strictly above 0.1 mm/h
    out["smape_pct"] = 100 * np.mean(2 * np.abs(p[s] - r[s]) / (p[s] + r[s])) if s.any() else np.nan
    for t in (0.1, 1.0, 10.0):
        pe, re_ = p >= t, r >= t
        a, b, c, d = (np.sum(pe & re_), np.sum(pe & ~re_), np.sum(~pe & re_), np.sum(~pe & ~re_))
        out[f"pod{t:g}"] = a / (a + c) if a + c else np.nan
        out[f"far{t:g}"] = b / (a + b) if a + b else np.nan
        out[f"csi{t:g}"] = a / (a + b + c) if a + b + c else np.nan
        n = a + b + c + d
        expected = ((a + b) * (a + c) + (c + d) * (b + d)) / n
        out[f"hss{t:g}"] = (a + d - expected) / (n - expected) if n != expected else np.nan
    return out


def close(a, b):
    if b is None or (isinstance(b, float) and np.isnan(b)) or (np.ndim(b) == 0 and np.isnan(b)):
        return a is None or np.isnan(a)
    return np.isclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("case", list(edge_cases()))
def test_skill_scores_agree_with_hand_and_additive_route(case):
    p, r = edge_cases()[case]
    hand = hand_scores(p, r)
    arr = S.continuous_scores(p, r)
    cat = S.categorical_scores(p, r)
    add = S.scores_from_stats(S.stats_dict(S.skill_stats(p, r, fields=False), S.stat_names()))
    assert arr["n"] == hand["n"] == add["n"]
    for k in ("bias_pct", "mae", "mse", "corr", "smape_pct"):
        assert close(arr[k], hand[k]), (case, k, arr[k], hand[k])
        assert close(add[k], hand[k]) or (k == "corr" and abs(add[k] - hand[k]) < 1e-6), (case, k, add[k], hand[k])
    for t in ("0.1", "1", "10"):
        for k in ("pod", "far", "csi", "hss"):
            h = hand[f"{k}{t}"]
            assert close(add["categorical"][t][k], h), (case, t, k, add["categorical"][t][k], h)
            # the scores library agrees where the score is defined
            if np.isfinite(h):
                assert close(cat[t][k], h), (case, t, k, cat[t][k], h)
        if np.isfinite(cat[t]["sedi"]) and np.isfinite(add["categorical"][t]["sedi"]):
            assert cat[t]["sedi"] == pytest.approx(add["categorical"][t]["sedi"], rel=1e-9)


def test_skill_stats_are_additive():
    p, r = rain(8000, 1), rain(8000, 2)
    names = S.stat_names()
    whole = S.skill_stats(p, r, fields=False)
    parts = S.skill_stats(p[:3000], r[:3000], fields=False) + S.skill_stats(p[3000:], r[3000:], fields=False)
    np.testing.assert_allclose(parts, whole, rtol=1e-12)
    assert len(names) == whole.size


def test_fss_additive_matches_scores_library():
    r = np.random.default_rng(5)
    from scipy.ndimage import gaussian_filter
    ref = np.maximum(gaussian_filter(r.normal(0, 1, (96, 49)), 3) * 20, 0)
    pred = np.maximum(gaussian_filter(r.normal(0, 1, (96, 49)), 3) * 20 + np.roll(ref, 2, axis=0) * 0.8, 0)
    for t, w in ((1.0, 5), (1.0, 15), (3.0, 5), (3.0, 45)):
        num, den = S._fss_sums(pred, ref, t, w)
        assert 1 - num / den == pytest.approx(S.fss(pred, ref, t, w), abs=1e-9)
    assert S.fss(ref, ref, 1.0, 5) == pytest.approx(1.0)


def test_effective_resolution_detects_smoothing():
    r = np.random.default_rng(6)
    from scipy.ndimage import gaussian_filter, uniform_filter
    fields = [gaussian_filter(r.normal(0, 1, (128, 64)), 1) for _ in range(4)]
    names = S.stat_names(fss_thresholds=(), coherence_tile=32)
    tot_same = sum(S.skill_stats(f, f, fss_thresholds=()) for f in fields)
    tot_blur = sum(S.skill_stats(uniform_filter(f, 9) + 0.3 * r.normal(0, 1, f.shape), f, fss_thresholds=()) for f in fields)
    res_same = S.effective_resolution(S.stats_dict(tot_same, names))[0]
    res_blur = S.effective_resolution(S.stats_dict(tot_blur, names))[0]
    # identical fields: coherent to the smallest scale, the wavelength of the last pooled bin
    # (2 · 32 · 13.7 km / 31: 32-pixel tiles, the along-track spacing sets the bin width)
    assert res_same == pytest.approx(2 * 32 * S.PIXEL_SPACING_KM[0] / 31)
    assert res_blur > 3 * res_same


def test_probabilistic_scores_need_quantile_distribution():
    import models.quantiles as qd
    levels = np.array([0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99])
    r = np.random.default_rng(8)
    obs = r.gamma(2, 2, 4000)
    quant = np.tile(scipy.stats.gamma.ppf(levels, 2, scale=2), (obs.size, 1))
    out = S.probabilistic_scores(quant, levels, obs)
    # calibrated forecast: coverage matches the nominal levels, PIT near flat
    for c in ("0.5", "0.8", "0.9", "0.98"):
        assert out["coverage"][c] == pytest.approx(float(c), abs=0.03)
    # quantile score against a hand pinball loss
    d = obs - quant[:, 4]
    assert out["quantile_score"][4] == pytest.approx(np.mean(np.maximum(0.5 * d, -0.5 * d)))
    # additive route equals the array route
    names = S.stat_names(levels=levels)
    st = S.stats_dict(S.skill_stats(obs * 0 + quant[:, 4], obs, quantiles=quant, levels=levels, fields=False), names)
    add = S.scores_from_stats(st, levels=levels)
    assert add["crps"] == pytest.approx(out["crps"], rel=1e-9)
    for a, v in add["quantile_score"].items():
        assert v == pytest.approx(out["quantile_score"][list(levels).index(float(a))], rel=1e-9)
    assert add["pit_hist"] == out["pit_hist"]
    # CRPS of the quantile distribution vs a numerical integral of its CDF
    dist = qd.QuantileDistribution(quant[:5], levels)
    assert np.all(np.asarray(dist.crps(obs[:5])) >= 0)


def test_gpd_survival_matches_scipy():
    x = np.linspace(0, 50, 101)
    for xi in (-0.3, 0.0, 0.2, 0.6):
        np.testing.assert_allclose(E._gpd_sf(x, xi, 2.5), scipy.stats.genpareto.sf(x, xi, scale=2.5), atol=1e-12)

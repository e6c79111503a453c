"""Extremes: exceedance curves, peaks over threshold with a generalised Pareto (GPD) fit and
bootstrap confidence intervals, return levels, the Hill tail index, exceedance frequencies.

Raw-sample versions use scipy.stats.genpareto (maximum likelihood, location fixed at 0 on the
excesses). Histogram versions (for the cube) fit the GPD by maximum likelihood to the binned
excess counts (interval-censored likelihood: each bin contributes n_i log(F(b_i+1) - F(b_i))),
and bootstrap by multinomial resampling of the counts.

Return levels (Coles 2001, eq. 4.13): the level exceeded on average once every ``m``
observations is ``x_m = u + σ/ξ [(m ζ_u)^ξ - 1]`` (``u + σ log(m ζ_u)`` for ξ = 0), with ζ_u the
fraction of observations above the threshold ``u``. Pixel rain rates are not independent, so a
"return period" here counts pixel observations; pass ``obs_per_year`` to express it in years
of sampling.
"""

from __future__ import annotations

import numpy as np
import scipy.optimize
import scipy.stats

from evaluation.distributions import EDGES
# the survival function of a histogram lives with the other histogram functions (distributions);
# it stays importable from here, where the docs and the views look for it
from evaluation.distributions import exceedance_curve as exceedance_curve
from evaluation.distributions import exceedance_probability as exceedance_probability


# --------------------------------------------------------------------------- exceedance
def exceedance_frequency(values, thresholds=(1.0, 10.0, 20.0, 50.0)):
    """Fraction of finite samples >= each threshold (exact)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    t = np.atleast_1d(thresholds)
    if v.size == 0:
        return np.full(t.shape, np.nan)
    return np.array([np.mean(v >= x) for x in t])


# --------------------------------------------------------------------------- GPD
def gpd_fit(values, threshold):
    """Fit a GPD to the excesses over ``threshold`` (values > threshold). Returns dict xi, sigma,
    threshold, n_exceed, rate (= fraction of finite samples above the threshold), n."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    exc = v[v > threshold] - threshold
    if exc.size < 10:
        return {"xi": np.nan, "sigma": np.nan, "threshold": float(threshold), "n_exceed": int(exc.size),
                "rate": float(exc.size / v.size) if v.size else np.nan, "n": int(v.size)}
    xi, _, sigma = scipy.stats.genpareto.fit(exc, floc=0)
    return {"xi": float(xi), "sigma": float(sigma), "threshold": float(threshold), "n_exceed": int(exc.size),
            "rate": float(exc.size / v.size), "n": int(v.size)}


def _gpd_sf(x, xi, sigma):
    """GPD survival function (closed form; equals scipy.stats.genpareto.sf, tested)."""
    z = np.asarray(x, dtype=np.float64) / sigma
    with np.errstate(all="ignore"):
        if abs(xi) < 1e-9:
            return np.exp(-z)
        t = 1.0 + xi * z
        return np.where(t > 0, t ** (-1.0 / xi), 0.0)


def _gpd_binned_nll(params, lo, hi, n):
    xi, log_sigma = params
    sigma = np.exp(log_sigma)
    s_hi = np.where(np.isfinite(hi), _gpd_sf(np.where(np.isfinite(hi), hi, 0.0), xi, sigma), 0.0)
    p = _gpd_sf(lo, xi, sigma) - s_hi
    used = n > 0
    if np.any(~np.isfinite(p[used])) or np.any(p[used] <= 0):
        return 1e300
    return -float(np.sum(n[used] * np.log(p[used])))


def gpd_fit_binned(counts, threshold, edges=EDGES):
    """GPD fit to a histogram's counts above ``threshold`` (which must be a bin edge):
    interval-censored maximum likelihood. Same output keys as :func:`gpd_fit`."""
    e = np.asarray(edges, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    k = int(np.searchsorted(e, threshold))
    if k >= e.size or not np.isclose(e[k], threshold):
        raise ValueError(f"threshold {threshold} must be one of the bin edges")
    n = c[k:]
    lo, hi = e[k:-1] - threshold, e[k + 1:] - threshold
    tot = c.sum()
    out = {"threshold": float(threshold), "n_exceed": int(n.sum()), "rate": float(n.sum() / tot) if tot else np.nan,
           "n": int(tot)}
    if n.sum() < 10 or np.count_nonzero(n) < 2:
        return {"xi": np.nan, "sigma": np.nan, **out}
    # start from the method of moments on bin mid-points
    mid = np.where(np.isfinite(hi), 0.5 * (lo + hi), lo)
    m = np.average(mid, weights=n)
    res = scipy.optimize.minimize(_gpd_binned_nll, x0=[0.1, np.log(max(m, 1e-3))], args=(lo, hi, n),
                                  method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-8, "maxiter": 4000})
    xi, log_sigma = res.x
    return {"xi": float(xi), "sigma": float(np.exp(log_sigma)), **out}


def return_level(fit: dict, return_period, *, obs_per_year=None):
    """Return level(s) from a GPD fit; ``return_period`` in observations, or in years when
    ``obs_per_year`` is given."""
    m = np.asarray(return_period, dtype=np.float64)
    if obs_per_year is not None:
        m = m * obs_per_year
    xi, sigma, u, zeta = fit["xi"], fit["sigma"], fit["threshold"], fit["rate"]
    mz = m * zeta
    with np.errstate(invalid="ignore", divide="ignore"):
        if abs(xi) < 1e-9:
            x = u + sigma * np.log(mz)
        else:
            x = u + sigma / xi * (mz**xi - 1)
    return np.where(mz >= 1, x, np.nan)


def bootstrap_gpd(values=None, threshold=None, *, counts=None, edges=EDGES, return_periods=(1e4, 1e5, 1e6),
                  n_boot=200, alpha=0.1, seed=0, obs_per_year=None):
    """Fit + percentile-bootstrap CIs of ξ, σ and return levels. From samples (resampling
    pixels) or from a histogram (multinomial resampling of the counts). Returns dict with
    ``fit``, ``return_levels`` and ``ci`` (lower/upper for xi, sigma, return levels)."""
    rng = np.random.default_rng(seed)
    rp = np.asarray(return_periods, dtype=np.float64)
    if counts is not None:
        c = np.asarray(counts, dtype=np.int64)
        fit = gpd_fit_binned(c, threshold, edges)
        tot = int(c.sum())
        p = c / tot if tot else c
        draws = [gpd_fit_binned(rng.multinomial(tot, p), threshold, edges) for _ in range(n_boot)] if tot else []
    else:
        v = np.asarray(values, dtype=np.float64).ravel()
        v = v[np.isfinite(v)]
        fit = gpd_fit(v, threshold)
        draws = [gpd_fit(rng.choice(v, v.size, replace=True), threshold) for _ in range(n_boot)]
    rl = return_level(fit, rp, obs_per_year=obs_per_year)
    xs = np.array([d["xi"] for d in draws]) if draws else np.array([np.nan])
    ss = np.array([d["sigma"] for d in draws]) if draws else np.array([np.nan])
    rls = np.array([return_level(d, rp, obs_per_year=obs_per_year) for d in draws]) if draws else np.full((1, rp.size), np.nan)
    lo, hi = 100 * alpha / 2, 100 * (1 - alpha / 2)

    def ci(a, axis=0):
        with np.errstate(all="ignore"):
            return np.nanpercentile(a, [lo, hi], axis=axis) if np.isfinite(a).any() else np.full((2,) + a.shape[1:], np.nan)

    return {"fit": fit, "return_periods": rp, "return_levels": rl, "confidence": 1 - alpha,
            "ci": {"xi": ci(xs), "sigma": ci(ss), "return_levels": ci(rls)}}


# --------------------------------------------------------------------------- Hill
def hill(values, k=None, *, fraction=0.01):
    """Hill (1975) estimator of the tail index ξ = 1/α from the ``k`` largest positive values
    (default: the top ``fraction``): mean of log(X_(i) / X_(k+1)), i = 1..k."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = np.sort(v[np.isfinite(v) & (v > 0)])[::-1]
    if k is None:
        k = int(fraction * v.size)
    if k < 2 or k >= v.size:
        return float("nan")
    return float(np.mean(np.log(v[:k])) - np.log(v[k]))


def hill_binned(counts, threshold, edges=EDGES):
    """Hill-type tail index from a histogram: the mean of log(x / u) over pixels above the
    bin edge ``u``, taking each pixel at its bin's geometric centre (overflow bin: lower edge)."""
    e = np.asarray(edges, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    k = int(np.searchsorted(e, threshold))
    n = c[k:]
    lo, hi = e[k:-1], e[k + 1:]
    centre = np.where(np.isfinite(hi), np.sqrt(lo * hi), lo)
    if n.sum() < 2:
        return float("nan")
    return float(np.sum(n * np.log(centre / threshold)) / n.sum())

"""Skill scores of a retrieval against a reference, with the IPWG SatRain definitions where
they exist.

Two routes to the same numbers:

- array functions (``continuous_scores``, ``categorical_scores``, ``probabilistic_scores``,
  ``fss``) on collocated pixels/fields, built on the ``scores`` library (and the project's
  ``models.quantiles.QuantileDistribution`` for CRPS and PIT);
- additive *sufficient statistics* (``skill_stats`` → a float64 vector of sums and counts that
  add across orbits, regions and months) and ``scores_from_stats``, which is what the
  climatology cube stores. The tests check that both routes agree.

Definitions (pred = retrieval p, ref = reference r, pixels where both are finite):

- bias (%) = 100 · Σ(p − r) / Σ r  (SatRain "Bias", relative)
- MAE = mean |p − r|; MSE = mean (p − r)²; correlation = Pearson's r
- SMAPE (%) = 100 · mean over pixels with r > 0.1 mm h-1 (strictly) of |p − r| / ((|p| + |r|) / 2),
  as SatRain's ``SMAPE(threshold=0.1)`` (``|target| > threshold``)
- at each threshold t (0.1, 1, 10 mm h-1; "event" = rate ≥ t): a hits, b false alarms,
  c misses, d correct negatives; POD = a/(a+c); FAR (false-alarm *ratio*) = b/(a+b);
  CSI = a/(a+b+c); HSS = 2(ad − bc)/((a+c)(c+d) + (a+b)(b+d));
  SEDI (Ferro & Stephenson 2011) = [ln F − ln H − ln(1−F) + ln(1−H)] / [ln F + ln H + ln(1−F) + ln(1−H)]
  with H = a/(a+c), F = b/(b+d)
- quantile score at level τ: mean pinball loss (τ − 1[r < q]) (r − q)
- CRPS of the predicted distribution (piecewise-linear CDF through the quantiles, from
  ``QuantileDistribution.crps``)
- PIT: the *randomised* PIT U(F(r−), F(r)) of the CDF ``QuantileDistribution.cdf`` (F(r−) its
  left limit), so that an observation on a point mass -- a dry pixel whose forecast has
  F(0) = p0 -- gets a PIT uniform on [0, p0], not p0 (Czado, Gneiting & Held 2009, Biometrics
  65, 1254). It is counted by its expectation: each observation spreads one unit of count over
  the 10 PIT bins in proportion to the overlap of [F(r−), F(r)] with each bin (a continuous point
  counts wholly in its bin), so the histogram holds fractional counts, is deterministic and adds
  across orbits. A calibrated forecast gives a flat histogram even on zero-inflated rain.
- coverage of the central interval c (c in 50, 80, 90, 98 %, only for levels the model predicts)
  is defined on the same randomised PIT: the probability that it falls in [(1−c)/2, (1+c)/2],
  i.e. |[F(r−), F(r)] ∩ [(1−c)/2, (1+c)/2]| / (F(r) − F(r−)) per observation (for a continuous
  point, 1 if q_(1−c)/2 ≤ r ≤ q_(1+c)/2 else 0). A dry observation with F(0) = p0 and lower
  quantile 0 therefore counts (min(p0, (1+c)/2) − (1−c)/2)⁺ / p0, not 1: it is not "covered"
  just because the lower quantile is 0, and a calibrated forecast has coverage c.
- FSS (Roberts & Lean 2008) at thresholds and windows of w × w *pixels* (FSS_WINDOWS):
  1 − Σ(P_f − P_o)² / (Σ P_f² + Σ P_o²) of the neighbourhood event fractions, over the
  window positions that lie wholly inside the field (no padding). GMI pixels are not square, so
  a window of w pixels spans w·13.7 km along × w·5.2 km across track (:func:`fss_window_km`;
  the scores carry these extents as ``fss_windows_km``).
- Fields are (along track, across track) = (scan, pixel) arrays of GMI S1 pixels, spaced
  :data:`PIXEL_SPACING_KM` = 13.7 km along × 5.2 km across (the simulator's grid,
  ``catalogs.simulator.SPACING_KM``, is 13.69 × 5.23 km). Every km in this module comes from
  that spacing.
- effective resolution, two definitions (both from 2-D DCT-II spectra of tiles, ``norm="ortho"``,
  each coefficient at its physical wavenumber κ = √((k_y / 2N_y Δy)² + (k_x / 2N_x Δx)²)):

  * **pooled** (the additive statistics of the climatology cube, :func:`effective_resolution`):
    over complete 32 × 32-pixel tiles, the power and cross spectra are summed per bin of κ
    (bins centred on multiples of Δκ = 1 / (2 · 32 · 13.7 km), the along-track coefficient step;
    κ beyond the along-track Nyquist is left out), the coherence of a bin is
    |Σ P̂R̂| / √(Σ P̂² Σ R̂²), and the effective resolution is the *wavelength* 1/κ of the last bin
    still coherent (≥ 1/√2) going from the largest scales towards smaller ones.
  * **satrain** (:func:`spectral_coherence`, the IPWG SatRain ``SpectralCoherence`` of
    Pfreundschuh et al. 2024, AMT 17, 515): over tiles as square in km as the pixels allow
    (12 × 32 pixels ≈ 164 × 166 km), the coherence of each coefficient |Σ P̂R̂| / √(Σ P̂² Σ R̂²)
    is averaged (not pooled) within bins of width 1/L in κ (L the tile's extent: width 2 in k
    on a square grid), and reported against SatRain's *scale* (N − 1)Δ / 2n ≈ half a
    wavelength; the effective resolution is the smallest coherent scale (> 1/√2), interpolated
    linearly towards the next smaller one. On the same fields it is about half the pooled figure
    (a half against a full wavelength), so always quote which one.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

THRESHOLDS = (0.1, 1.0, 10.0)
SMAPE_THRESHOLD = 0.1
COVERAGE = (0.5, 0.8, 0.9, 0.98)
PIT_BINS = 10
FSS_THRESHOLDS = (1.0, 10.0)
FSS_WINDOWS = (1, 5, 15, 45)
COHERENCE_TILE = 32
COHERENCE_THRESHOLD = 1 / np.sqrt(2)
#: GMI S1 pixel spacing (km): along track (scan to scan) × across track (pixel to pixel)
PIXEL_SPACING_KM = (13.7, 5.2)
#: version of the definitions of the stored probabilistic and spectral statistics (``pit*``,
#: ``cov@*``, ``coh_*``): 1 = deterministic PIT, coverage read off the quantiles, coherence binned
#: by coefficient index on square 5 km pixels; 2 = randomised PIT and coverage on it, coherence
#: binned by physical wavenumber on the 13.7 x 5.2 km grid. A cube records the version it was
#: built with (attribute ``skill_definitions``); statistics of an older version are not served.
SKILL_DEFINITIONS = 2
#: the statistics whose definition changed with :data:`SKILL_DEFINITIONS`
REDEFINED_PREFIXES = ("pit", "cov@", "coh_")
POOLED_DEFINITION = (
    "pooled coherence |sum PR|/sqrt(sum PP sum RR) of 2-D DCT spectra of 32x32-pixel tiles (13.7 km along x 5.2 km "
    "across), in bins of physical wavenumber of width 1/(2*32*13.7 km); the effective resolution is a full "
    "wavelength (SatRain's SpectralCoherence reports a scale of about half a wavelength)")
SATRAIN_DEFINITION = (
    "SatRain SpectralCoherence (Pfreundschuh et al. 2024): per-coefficient coherence averaged in bins of width 2 "
    "in k (1/L in wavenumber) over tiles about square in km; the effective resolution is a scale "
    "(N-1)*dx/(2n), about half a wavelength")


def _paired(pred, ref):
    p = np.asarray(pred, dtype=np.float64).ravel()
    r = np.asarray(ref, dtype=np.float64).ravel()
    if p.shape != r.shape:
        raise ValueError(f"pred and ref must have the same size, got {p.shape} and {r.shape}")
    ok = np.isfinite(p) & np.isfinite(r)
    return p[ok], r[ok]


# --------------------------------------------------------------------------- array route
def continuous_scores(pred, ref, *, smape_threshold=SMAPE_THRESHOLD) -> dict:
    """bias (%), MAE, MSE, RMSE, correlation, SMAPE (%) and n on pixels where both are finite
    (``scores`` library for MAE/MSE/correlation)."""
    import scores.continuous as sc

    p, r = _paired(pred, ref)
    out = {"n": int(p.size)}
    if p.size == 0:
        return out | {k: float("nan") for k in ("bias_pct", "mae", "mse", "rmse", "corr", "smape_pct")}
    P, R = xr.DataArray(p, dims="pixel"), xr.DataArray(r, dims="pixel")
    sr = r.sum()
    out["bias_pct"] = float(100 * (p - r).sum() / sr) if sr > 0 else float("nan")
    out["mae"] = float(sc.mae(P, R))
    out["mse"] = float(sc.mse(P, R))
    out["rmse"] = float(np.sqrt(out["mse"]))
    if p.size > 1 and np.std(p) > 0 and np.std(r) > 0:
        out["corr"] = float(sc.correlation.pearsonr(P, R))
    else:
        out["corr"] = float("nan")
    sel = r > smape_threshold
    if sel.any():
        out["smape_pct"] = float(100 * np.mean(np.abs(p[sel] - r[sel]) / ((np.abs(p[sel]) + np.abs(r[sel])) / 2)))
    else:
        out["smape_pct"] = float("nan")
    return out


def categorical_scores(pred, ref, thresholds=THRESHOLDS) -> dict:
    """POD, FAR, CSI, HSS, SEDI at each threshold (event: rate ≥ t), ``scores`` library."""
    from scores.categorical import BinaryContingencyManager

    p, r = _paired(pred, ref)
    out = {}
    for t in thresholds:
        key = f"{t:g}"
        if p.size == 0:
            out[key] = {k: float("nan") for k in ("pod", "far", "csi", "hss", "sedi")}
            continue
        m = BinaryContingencyManager(xr.DataArray((p >= t).astype(float), dims="pixel"),
                                     xr.DataArray((r >= t).astype(float), dims="pixel"))
        ct = m.transform()
        with np.errstate(all="ignore"):
            out[key] = {
                "pod": float(ct.probability_of_detection()),
                "far": float(ct.false_alarm_ratio()),
                "csi": float(ct.critical_success_index()),
                "hss": float(ct.heidke_skill_score()),
                "sedi": float(ct.symmetric_extremal_dependence_index()),
            }
    return out


def _qdist(quantiles, levels):
    from models.quantiles import QuantileDistribution

    return QuantileDistribution(np.asarray(quantiles, dtype=np.float64), np.asarray(levels, dtype=np.float64))


def probabilistic_scores(quantiles, levels, obs, *, coverage=COVERAGE, pit_bins=PIT_BINS) -> dict:
    """CRPS from ``models.quantiles.QuantileDistribution``, quantile scores at each level
    (``scores.continuous.quantile_score``), the randomised-PIT histogram (fractional counts) and
    the coverage of central intervals defined on the randomised PIT (see the module docstring)."""
    import scores.continuous as sc

    q = np.asarray(quantiles, dtype=np.float64)
    lv = np.asarray(levels, dtype=np.float64)
    q = q.reshape(-1, lv.size)
    o = np.asarray(obs, dtype=np.float64).ravel()
    ok = np.isfinite(o) & np.all(np.isfinite(q), axis=1)
    q, o = q[ok], o[ok]
    out = {"n": int(o.size), "levels": lv.tolist()}
    if o.size == 0:
        return out | {"crps": float("nan"), "quantile_score": [float("nan")] * lv.size,
                      "pit_hist": [0.0] * pit_bins, "coverage": {}}
    dist = _qdist(q, lv)
    out["crps"] = float(np.mean(dist.crps(o)))
    O = xr.DataArray(o, dims="pixel")
    out["quantile_score"] = [float(sc.quantile_score(xr.DataArray(q[:, i], dims="pixel"), O, float(a)))
                             for i, a in enumerate(lv)]
    a, b = _pit_bounds(dist, o)
    out["pit_hist"] = _pit_hist_weights(a, b, pit_bins).sum(axis=0).tolist()
    out["coverage"] = {}
    for c in _interval_indices(lv, coverage):
        out["coverage"][f"{c:g}"] = float(np.mean(_pit_in(a, b, (1 - c) / 2, (1 + c) / 2)))
    return out


#: PIT intervals narrower than this are treated as a point (no point mass at the observation)
_PIT_POINT = 1e-12


def _cdf_left(dist, x) -> np.ndarray:
    """Left limit F(x−) = P(R < x) of ``QuantileDistribution.cdf`` (same piecewise-linear CDF
    with its lower linear piece and exponential upper tail; it differs from F(x) only at a point
    mass: zero rain when the lowest quantiles are 0, equal neighbouring quantiles)."""
    v, tau = dist.values, dist.levels
    x = np.asarray(x, dtype=np.float64)
    nq = tau.size
    k = np.sum(v < x[..., None], axis=-1)  # knots strictly below x
    kk = np.clip(k, 1, nq - 1)
    xa = np.take_along_axis(v, (kk - 1)[..., None], -1)[..., 0]
    xb = np.take_along_axis(v, kk[..., None], -1)[..., 0]
    ta, tb = tau[kk - 1], tau[kk]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        inner = ta + (tb - ta) * np.where(xb > xa, (x - xa) / (xb - xa), 1.0)  # xa < x <= xb here
        x0 = v[..., 0]
        lower = np.where(x <= 0, 0.0, tau[0] * x / np.where(x0 > 0, x0, 1.0))  # k == 0: 0 < x <= x0
        s = dist.tail_scale()
        upper = 1.0 - (1.0 - tau[-1]) * np.where(s > 0, np.exp(-(x - v[..., -1]) / s), 0.0)
    out = np.where(k == 0, lower, np.where(k >= nq, upper, inner))
    return np.clip(out, 0.0, 1.0)


def _pit_bounds(dist, obs):
    """(F(obs−), F(obs)): the randomised PIT of ``obs`` is uniform on this interval."""
    b = np.clip(np.asarray(dist.cdf(obs), dtype=np.float64).reshape(-1), 0.0, 1.0)
    a = np.minimum(_cdf_left(dist, np.asarray(obs, dtype=np.float64).reshape(-1)), b)
    return a, b


def _pit_in(a, b, lo, hi) -> np.ndarray:
    """P(lo ≤ U ≤ hi) for U uniform on [a, b] (a point when b − a is below ``_PIT_POINT``)."""
    w = b - a
    point = w < _PIT_POINT
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.clip(np.minimum(b, hi) - np.maximum(a, lo), 0.0, None) / np.where(point, 1.0, w)
    return np.where(point, ((b >= lo) & (b <= hi)).astype(np.float64), frac)


def _pit_hist_weights(a, b, pit_bins) -> np.ndarray:
    """(n, pit_bins): each observation's unit count spread over the PIT bins as U(a, b) falls."""
    edges = np.linspace(0.0, 1.0, pit_bins + 1)
    w = b - a
    point = w < _PIT_POINT
    with np.errstate(invalid="ignore", divide="ignore"):
        over = np.clip(np.minimum(b[:, None], edges[None, 1:]) - np.maximum(a[:, None], edges[None, :-1]), 0.0, None)
        m = over / np.where(point, 1.0, w)[:, None]
    pb = np.minimum((b * pit_bins).astype(np.int64), pit_bins - 1)
    m[point] = 0.0
    m[np.flatnonzero(point), pb[point]] = 1.0
    return m


def randomised_pit(quantiles, levels, obs, rng=None) -> np.ndarray:
    """Draws of the randomised PIT U(F(obs−), F(obs)) (one per observation; NaN where the
    observation or a quantile is missing). For tests and plots; the histograms and coverage use
    its expectation (:func:`probabilistic_scores`)."""
    lv = np.asarray(levels, dtype=np.float64)
    q = np.asarray(quantiles, dtype=np.float64).reshape(-1, lv.size)
    o = np.asarray(obs, dtype=np.float64).ravel()
    ok = np.isfinite(o) & np.all(np.isfinite(q), axis=1)
    out = np.full(o.size, np.nan)
    if ok.any():
        a, b = _pit_bounds(_qdist(q[ok], lv), o[ok])
        out[ok] = a + (b - a) * np.random.default_rng(rng).random(a.size)
    return out


def _interval_indices(levels, coverage):
    lv = np.asarray(levels, dtype=np.float64)
    out = {}
    for c in coverage:
        lo, hi = (1 - c) / 2, (1 + c) / 2
        i, j = np.argmin(np.abs(lv - lo)), np.argmin(np.abs(lv - hi))
        if abs(lv[i] - lo) < 1e-6 and abs(lv[j] - hi) < 1e-6:
            out[c] = (int(i), int(j))
    return out


def fss(pred_field, ref_field, threshold, window) -> float:
    """Fractions skill score of two 2-D fields (``scores.spatial.fss_2d_single_field``), NaN
    pixels (either field) taken as no event in both."""
    from scores.spatial import fss_2d_single_field

    p = np.asarray(pred_field, dtype=np.float64)
    r = np.asarray(ref_field, dtype=np.float64)
    bad = ~(np.isfinite(p) & np.isfinite(r))
    p = np.where(bad, 0.0, p)
    r = np.where(bad, 0.0, r)
    return float(fss_2d_single_field(p, r, event_threshold=threshold, window_size=(window, window),
                                     zero_padding=False, threshold_operator=np.greater_equal))


# --------------------------------------------------------------------------- additive route
#: quantile levels whose quantile score is kept in the additive statistics (when predicted)
QS_LEVELS = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


def _qs_levels(levels):
    lv = np.asarray(levels, dtype=np.float64)
    return [a for a in QS_LEVELS if np.min(np.abs(lv - a)) < 1e-6]


def pixel_stat_names(thresholds=THRESHOLDS, levels=None, coverage=COVERAGE, pit_bins=PIT_BINS):
    """Names of the per-pixel additive statistics, in order (see :func:`pixel_stats`)."""
    names = ["n", "sum_p", "sum_r", "sum_pp", "sum_rr", "sum_pr", "sum_abs", "smape_sum", "smape_n"]
    for t in thresholds:
        names += [f"a@{t:g}", f"b@{t:g}", f"c@{t:g}", f"d@{t:g}"]
    if levels is not None:
        names += ["prob_n", "crps_sum"]
        names += [f"qs_sum@{a:g}" for a in _qs_levels(levels)]
        names += [f"pit{i}" for i in range(pit_bins)]
        names += [f"cov@{c:g}" for c in _interval_indices(levels, coverage)]
    return names


def field_stat_names(fss_thresholds=FSS_THRESHOLDS, fss_windows=FSS_WINDOWS, coherence_tile=COHERENCE_TILE):
    names = []
    for t in fss_thresholds:
        for w in fss_windows:
            names += [f"fss_num@{t:g}/{w}", f"fss_den@{t:g}/{w}"]
    if coherence_tile:
        nk = coherence_tile
        names += [f"coh_pp{k}" for k in range(nk)] + [f"coh_rr{k}" for k in range(nk)] + [f"coh_pr{k}" for k in range(nk)]
    return names


def stat_names(thresholds=THRESHOLDS, levels=None, coverage=COVERAGE, pit_bins=PIT_BINS,
               fss_thresholds=FSS_THRESHOLDS, fss_windows=FSS_WINDOWS, coherence_tile=COHERENCE_TILE):
    """Names of the entries of the :func:`skill_stats` vector, in order."""
    return (pixel_stat_names(thresholds, levels, coverage, pit_bins)
            + field_stat_names(fss_thresholds, fss_windows, coherence_tile))


def pixel_stats(pred, ref, *, quantiles=None, levels=None, thresholds=THRESHOLDS, coverage=COVERAGE,
                pit_bins=PIT_BINS):
    """Per-pixel contributions to the additive statistics: (valid mask over the flattened
    input, matrix (n_valid, K) laid out as :func:`pixel_stat_names`). Summing rows over any
    grouping gives that group's statistics."""
    P = np.asarray(pred, dtype=np.float64).ravel()
    R = np.asarray(ref, dtype=np.float64).ravel()
    ok = np.isfinite(P) & np.isfinite(R)
    q = None
    if levels is not None:
        q = np.asarray(quantiles, dtype=np.float64).reshape(P.size, -1)
        ok &= np.all(np.isfinite(q), axis=1)
        q = q[ok]
    p, r = P[ok], R[ok]
    d = p - r
    sel = r > SMAPE_THRESHOLD
    with np.errstate(invalid="ignore", divide="ignore"):
        smape = np.where(sel, np.abs(d) / ((np.abs(p) + np.abs(r)) / 2), 0.0)
    cols = [np.ones_like(p), p, r, p * p, r * r, p * r, np.abs(d), smape, sel.astype(np.float64)]
    for t in thresholds:
        pe, re_ = p >= t, r >= t
        cols += [(pe & re_), (pe & ~re_), (~pe & re_), (~pe & ~re_)]
    if levels is not None:
        lv = np.asarray(levels, dtype=np.float64)
        if r.size:
            dist = _qdist(q, lv)
            crps = np.asarray(dist.crps(r), dtype=np.float64).reshape(-1)
            pa, pb = _pit_bounds(dist, r)
        else:
            crps, pa, pb = np.zeros(0), np.zeros(0), np.zeros(0)
        cols += [np.ones_like(r), crps]
        for a in _qs_levels(lv):
            i = int(np.argmin(np.abs(lv - a)))
            diff = r - q[:, i]
            cols.append(np.where(diff >= 0, a * diff, (a - 1) * diff))
        hist = _pit_hist_weights(pa, pb, pit_bins)
        cols += [hist[:, k] for k in range(pit_bins)]
        for c in _interval_indices(lv, coverage):
            cols.append(_pit_in(pa, pb, (1 - c) / 2, (1 + c) / 2))
    m = np.empty((p.size, len(cols)), dtype=np.float64)
    for k, c in enumerate(cols):
        m[:, k] = c
    return ok, m


def field_stats(pred, ref, *, fss_thresholds=FSS_THRESHOLDS, fss_windows=FSS_WINDOWS,
                coherence_tile=COHERENCE_TILE) -> np.ndarray:
    """FSS and spectral-coherence sums of two 2-D fields (laid out as :func:`field_stat_names`)."""
    P = np.asarray(pred, dtype=np.float64)
    R = np.asarray(ref, dtype=np.float64)
    v = []
    for t in fss_thresholds:
        for w in fss_windows:
            v += list(_fss_sums(P, R, t, w)) if P.ndim == 2 else [0.0, 0.0]
    if coherence_tile:
        v += list(_coherence_sums(P, R, coherence_tile)) if P.ndim == 2 else [0.0] * (3 * coherence_tile)
    return np.asarray(v, dtype=np.float64)


def skill_stats(pred, ref, *, quantiles=None, levels=None, thresholds=THRESHOLDS, coverage=COVERAGE,
                pit_bins=PIT_BINS, fields=True, fss_thresholds=FSS_THRESHOLDS, fss_windows=FSS_WINDOWS,
                coherence_tile=COHERENCE_TILE) -> np.ndarray:
    """Additive sufficient statistics of (pred, ref): a float64 vector laid out as
    :func:`stat_names`. ``quantiles`` (..., Q) at ``levels`` add CRPS / quantile score / PIT /
    coverage sums. With ``fields=True`` and 2-D inputs, FSS and spectral-coherence sums are
    added (fields are taken whole; NaN pixels count as no event / are excluded from tiles)."""
    _, m = pixel_stats(pred, ref, quantiles=quantiles, levels=levels, thresholds=thresholds,
                       coverage=coverage, pit_bins=pit_bins)
    v = m.sum(axis=0)
    if fields:
        f = field_stats(pred, ref, fss_thresholds=fss_thresholds, fss_windows=fss_windows, coherence_tile=coherence_tile)
    else:
        f = np.zeros(len(field_stat_names(fss_thresholds, fss_windows, coherence_tile)))
    return np.concatenate([v, f])


def _fss_sums(P, R, t, w):
    from scipy.ndimage import uniform_filter

    bad = ~(np.isfinite(P) & np.isfinite(R))
    fp = np.where(bad, 0.0, P >= t).astype(np.float64)
    fo = np.where(bad, 0.0, R >= t).astype(np.float64)
    if w > min(P.shape):
        return 0.0, 0.0
    # fractions over the windows that lie wholly inside the field ("valid" positions)
    h0, h1 = w // 2, w - 1 - w // 2
    sl = (slice(h0, P.shape[0] - h1), slice(h0, P.shape[1] - h1))
    Pf = uniform_filter(fp, size=w, mode="constant", cval=0.0)[sl]
    Po = uniform_filter(fo, size=w, mode="constant", cval=0.0)[sl]
    return float(np.sum((Pf - Po) ** 2)), float(np.sum(Pf**2) + np.sum(Po**2))


def _wavenumbers(shape, spacing_km=PIXEL_SPACING_KM) -> np.ndarray:
    """Physical wavenumber κ (cycles per km) of each DCT-II coefficient of a (rows, cols) tile
    of pixels spaced ``spacing_km`` = (along, across): κ = √((k_y / 2N_yΔy)² + (k_x / 2N_xΔx)²)."""
    ny, nx = shape
    dy, dx = spacing_km
    ky = np.arange(ny) / (2.0 * ny * dy)
    kx = np.arange(nx) / (2.0 * nx * dx)
    return np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)


def coherence_bin_width(tile=COHERENCE_TILE, spacing_km=PIXEL_SPACING_KM) -> float:
    """Δκ (cycles per km) of the pooled bins: the coefficient step of the coarser-spaced axis."""
    return 1.0 / (2.0 * tile * max(spacing_km))


def coherence_wavelengths_km(tile=COHERENCE_TILE, spacing_km=PIXEL_SPACING_KM) -> np.ndarray:
    """Wavelength (km) of each pooled bin k (1 / (k Δκ); inf for k = 0). For a caller that plots
    the pooled sums of :func:`_coherence_sums` (e.g. power-ratio spectra)."""
    k = np.arange(tile)
    with np.errstate(divide="ignore"):
        return np.where(k > 0, 1.0 / (np.maximum(k, 1) * coherence_bin_width(tile, spacing_km)), np.inf)


def _pooled_bins(n, spacing_km=PIXEL_SPACING_KM) -> np.ndarray:
    """Pooled bin of each coefficient of an n × n tile (rounded κ/Δκ); n (dropped) beyond bin n − 1."""
    b = np.floor(_wavenumbers((n, n), spacing_km) / coherence_bin_width(n, spacing_km) + 0.5).astype(int)
    return np.where(b < n, b, n)


def _tiles(P, R, shape):
    """Complete, non-overlapping tiles of ``shape`` on a grid from the corner where both fields are finite."""
    ny, nx = shape
    for i in range(0, P.shape[0] - ny + 1, ny):
        for j in range(0, P.shape[1] - nx + 1, nx):
            a, b = P[i:i + ny, j:j + nx], R[i:i + ny, j:j + nx]
            if np.isfinite(a).all() and np.isfinite(b).all():
                yield a, b


def _coherence_sums(P, R, n, spacing_km=PIXEL_SPACING_KM):
    """DCT power and cross spectra of complete n × n tiles, summed per pooled bin of physical
    wavenumber (see the module docstring): (3n,) = (Σ P̂², Σ R̂², Σ P̂R̂) per bin."""
    from scipy.fft import dctn

    out = np.zeros((3, n + 1))
    kbin = _pooled_bins(n, spacing_km).ravel()
    for a, b in _tiles(np.asarray(P, dtype=np.float64), np.asarray(R, dtype=np.float64), (n, n)):
        fa, fb = dctn(a, norm="ortho").ravel(), dctn(b, norm="ortho").ravel()
        out[0] += np.bincount(kbin, fa * fa, n + 1)
        out[1] += np.bincount(kbin, fb * fb, n + 1)
        out[2] += np.bincount(kbin, fa * fb, n + 1)
    return out[:, :n].ravel()


def effective_resolution(stats: dict, *, spacing_km=PIXEL_SPACING_KM, tile=COHERENCE_TILE):
    """Pooled effective resolution (module docstring): (wavelength in km, wavelengths km of the
    bins, coherence per bin) from accumulated coherence sums (dict name → value as returned by
    :func:`stats_dict`). inf: not coherent even at the largest scale; NaN: no tiles."""
    pp = np.array([stats.get(f"coh_pp{k}", 0.0) for k in range(tile)])
    rr = np.array([stats.get(f"coh_rr{k}", 0.0) for k in range(tile)])
    pr = np.array([stats.get(f"coh_pr{k}", 0.0) for k in range(tile)])
    with np.errstate(invalid="ignore", divide="ignore"):
        coh = np.abs(pr) / np.sqrt(pp * rr)
    wl = coherence_wavelengths_km(tile, spacing_km)
    # from the largest scales (k = 1) towards smaller ones, find the first k where coherence drops
    res = float("nan")
    if np.isfinite(coh[1:]).any():
        below = np.where(~(coh[1:] >= COHERENCE_THRESHOLD))[0]
        if below.size == 0:
            res = float(wl[-1])
        elif below[0] > 0:
            res = float(wl[below[0]])  # last wavelength still coherent
        else:
            res = float("inf")
    return res, wl, coh


def satrain_tile(nx=COHERENCE_TILE, spacing_km=PIXEL_SPACING_KM) -> tuple[int, int]:
    """(rows, cols) of a tile of ``nx`` pixels across that is as square in km as the pixels allow."""
    dy, dx = spacing_km
    return max(int(round(nx * dx / dy)), 2), int(nx)


def _coefficient_sums(pred_fields, ref_fields, shape):
    from scipy.fft import dctn

    s = np.zeros((3,) + tuple(shape))
    n_tiles = 0
    for P, R in zip(pred_fields, ref_fields):
        for a, b in _tiles(np.asarray(P, dtype=np.float64), np.asarray(R, dtype=np.float64), shape):
            fa, fb = dctn(a, norm="ortho"), dctn(b, norm="ortho")
            s[0] += fa * fa
            s[1] += fb * fb
            s[2] += fa * fb
            n_tiles += 1
    return s, n_tiles


def spectral_coherence(pred_fields, ref_fields, *, definition="satrain", spacing_km=PIXEL_SPACING_KM,
                       tile=None) -> dict:
    """Spectral coherence and effective resolution of retrieved against reference fields (a
    sequence of 2-D (along, across) arrays, or one), under ``definition`` "satrain" (SatRain's
    ``SpectralCoherence``, the default here) or "pooled" (the climatology cube's); see the module
    docstring. ``tile`` (rows, cols): default 12 × 32 pixels for "satrain" (≈ square in km),
    32 × 32 for "pooled". Returns definition, description, tile, tiles, scale_km (satrain: half
    a wavelength) or wavelength_km (pooled), coherence, effective_resolution_km,
    smallest_resolvable_km and at_limit (coherent down to the smallest scale the tiles resolve:
    the effective resolution is then an upper bound, set by the 13.7 km along-track spacing)."""
    if np.ndim(pred_fields) == 2:
        pred_fields, ref_fields = [pred_fields], [ref_fields]
    if definition == "pooled":
        n = COHERENCE_TILE if tile is None else int(tile[0])
        if tile is not None and tile[0] != tile[1]:
            raise ValueError(f"the pooled definition uses square tiles in pixels, got {tile}")
        sums = sum((_coherence_sums(P, R, n, spacing_km) for P, R in zip(pred_fields, ref_fields)), np.zeros(3 * n))
        st = {f"coh_{w}{k}": sums[i * n + k] for i, w in enumerate(("pp", "rr", "pr")) for k in range(n)}
        res, wl, coh = effective_resolution(st, spacing_km=spacing_km, tile=n)
        return {"definition": "pooled", "description": POOLED_DEFINITION, "tile": (n, n),
                "tiles": None, "wavelength_km": wl[1:].tolist(), "coherence": coh[1:].tolist(),
                "effective_resolution_km": res, "smallest_resolvable_km": float(wl[-1]),
                "at_limit": bool(res == wl[-1])}
    if definition != "satrain":
        raise ValueError(f"definition must be 'satrain' or 'pooled', got {definition!r}")
    shape = satrain_tile(spacing_km=spacing_km) if tile is None else (int(tile[0]), int(tile[1]))
    s, n_tiles = _coefficient_sums(pred_fields, ref_fields, shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        co = np.abs(s[2]) / np.sqrt(s[0] * s[1])
    # SatRain: n = 0.5·|k| on a square grid = κ·L; bins of width 1 in n centred on integers,
    # up to the smaller of the two axes' largest n; scale = 0.5 (N − 1) Δ / n along the axis of L
    ext = np.array([shape[0] * spacing_km[0], shape[1] * spacing_km[1]])
    ax = int(np.argmin(ext))
    L = float(ext[ax])
    nn = _wavenumbers(shape, spacing_km) * L
    n_max = min((shape[0] - 1) / (2.0 * shape[0] * spacing_km[0]), (shape[1] - 1) / (2.0 * shape[1] * spacing_km[1])) * L
    edges = np.arange(n_max + 1) - 0.5  # as SatRain: np.arange(min(n_y.max(), n_x.max()) + 1) - 0.5
    counts = np.histogram(nn, edges)[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        coh = np.histogram(nn, edges, weights=np.nan_to_num(co))[0] / counts
        centre = 0.5 * (edges[1:] + edges[:-1])
        scales = 0.5 * (shape[ax] - 1) * spacing_km[ax] / centre
    res = _satrain_resolution(scales[1:], coh[1:]) if n_tiles else float("nan")
    smallest = float(np.min(scales[1:])) if scales.size > 1 else float("nan")
    return {"definition": "satrain", "description": SATRAIN_DEFINITION, "tile": tuple(shape), "tiles": n_tiles,
            "scale_km": scales[1:].tolist(), "coherence": coh[1:].tolist(), "effective_resolution_km": res,
            "smallest_resolvable_km": smallest, "at_limit": bool(res == smallest)}


def _satrain_resolution(scales, coh) -> float:
    """SatRain's rule: the smallest scale whose coherence exceeds 1/√2, interpolated linearly
    towards the next smaller (incoherent) scale; inf if no scale is coherent."""
    order = np.argsort(scales)
    sc, co = np.asarray(scales)[order], np.asarray(coh)[order]
    ok = np.where(co > COHERENCE_THRESHOLD)[0]
    if ok.size == 0:
        return float("inf")
    r = int(ok[0])
    if r == 0:
        return float(sc[0])
    left = r - 1
    return float(sc[left] + (sc[r] - sc[left]) * (COHERENCE_THRESHOLD - co[left]) / (co[r] - co[left]))


def fss_window_km(window, spacing_km=PIXEL_SPACING_KM) -> tuple[float, float]:
    """(along, across) extent in km of an FSS window of ``window`` × ``window`` pixels."""
    return float(window * spacing_km[0]), float(window * spacing_km[1])


def stats_dict(vector, names) -> dict:
    return dict(zip(names, np.asarray(vector, dtype=np.float64).tolist()))


def _div(a, b):
    return a / b if b else float("nan")


def scores_from_stats(stats: dict, *, thresholds=THRESHOLDS, levels=None, spacing_km=PIXEL_SPACING_KM) -> dict:
    """Every score from summed statistics (``stats_dict`` output, possibly summed over orbits,
    regions, months)."""
    s = stats
    n = s["n"]
    out = {"n": int(n)}
    mp, mr = _div(s["sum_p"], n), _div(s["sum_r"], n)
    out["bias_pct"] = 100 * _div(s["sum_p"] - s["sum_r"], s["sum_r"]) if s["sum_r"] > 0 else float("nan")
    out["mae"] = _div(s["sum_abs"], n)
    out["mse"] = _div(s["sum_pp"] - 2 * s["sum_pr"] + s["sum_rr"], n)
    out["rmse"] = float(np.sqrt(max(out["mse"], 0))) if n else float("nan")
    if n > 1:
        cov = s["sum_pr"] / n - mp * mr
        vp = s["sum_pp"] / n - mp * mp
        vr = s["sum_rr"] / n - mr * mr
        out["corr"] = float(cov / np.sqrt(vp * vr)) if vp > 0 and vr > 0 else float("nan")
    else:
        out["corr"] = float("nan")
    out["smape_pct"] = 100 * _div(s["smape_sum"], s["smape_n"])
    cat = {}
    for t in thresholds:
        a, b, c, d = (s[f"{x}@{t:g}"] for x in "abcd")
        cat[f"{t:g}"] = _categorical_from_counts(a, b, c, d)
    out["categorical"] = cat
    if levels is not None and "prob_n" in s:
        m = s["prob_n"]
        out["crps"] = _div(s["crps_sum"], m)
        out["quantile_score"] = {f"{a:g}": _div(s[f"qs_sum@{a:g}"], m) for a in _qs_levels(levels)}
        pit = [s[k] for k in sorted((k for k in s if k.startswith("pit")), key=lambda k: int(k[3:]))]
        out["pit_hist"] = [float(x) for x in pit]  # fractional counts (randomised PIT)
        out["coverage"] = {k.split("@")[1]: _div(s[k], m) for k in s if k.startswith("cov@")}
    fss_out = {}
    for k in s:
        if k.startswith("fss_num@"):
            tag = k.split("@")[1]
            den = s[f"fss_den@{tag}"]
            fss_out[tag] = 1 - s[k] / den if den > 0 else float("nan")
    out["fss"] = fss_out
    if fss_out:
        wins = sorted({int(t.split("/")[1]) for t in fss_out})
        out["fss_windows_km"] = {str(w): list(fss_window_km(w, spacing_km)) for w in wins}  # (along, across)
    if "coh_pp1" in s:
        res, _, _ = effective_resolution(s, spacing_km=spacing_km)
        out["effective_resolution_km"] = res
        out["effective_resolution_definition"] = POOLED_DEFINITION
    return out


def _categorical_from_counts(a, b, c, d) -> dict:
    a, b, c, d = (float(x) for x in (a, b, c, d))
    H = _div(a, a + c)
    F = _div(b, b + d)
    den_h = (a + c) * (c + d) + (a + b) * (b + d)
    with np.errstate(all="ignore"):
        if 0 < H < 1 and 0 < F < 1:
            lF, lH, l1F, l1H = np.log(F), np.log(H), np.log(1 - F), np.log(1 - H)
            sedi = float((lF - lH - l1F + l1H) / (lF + lH + l1F + l1H))
        else:
            sedi = float("nan")
    return {"pod": H, "far": _div(b, a + b), "csi": _div(a, a + b + c),
            "hss": _div(2 * (a * d - b * c), den_h), "sedi": sedi,
            "hits": int(a), "false_alarms": int(b), "misses": int(c), "correct_negatives": int(d)}

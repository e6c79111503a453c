"""Trends: Sen slope with an autocorrelation-aware Mann–Kendall test and confidence intervals,
in %/decade and in %/K against a global-mean surface temperature (GMST) series.

- Mann–Kendall: ``pymannkendall.hamed_rao_modification_test`` (Hamed & Rao 1998: the variance
  of S is inflated by the effective-sample-size ratio n/n* estimated from the significant
  autocorrelations of the ranks of the detrended series). ``method="yue_wang"`` (Yue & Wang
  2004, Water Resour. Manage. 18, 201) uses the lag-1 serial correlation of the detrended series
  only (:data:`YUE_WANG_LAG`, as R modifiedmk's ``mmky1lag``): pymannkendall's default sums the
  sample autocorrelations of *all* n − 1 lags, which for a mean-removed series add up to about
  −1/2, so n/n* collapses (median 0.13–0.30 on AR(1) noise) and with it the interval.
  ``"original"`` is the unmodified test.
- The correction is floored at 1: an autocorrelation correction may widen the interval, never
  narrow it below the unmodified test's (negative sample autocorrelations of short series are
  mostly noise). Where the floor applies, Var(S), z, p and the trend call are the unmodified
  test's (``mk.floored`` says so).
- Coverage, measured (``tests/evaluation/test_science_checks.py``: 300 series of AR(1) noise, 40 yearly
  periods, log-series slopes): the 95 % Sen interval holds the true slope in ≈ 94 % of
  white-noise series with every method; for φ = 0.5 in ≈ 81 % (Hamed–Rao), ≈ 86 % (Yue–Wang,
  lag 1) and ≈ 75 % (original). Short series under-estimate their autocorrelation, so read the
  interval of a strongly autocorrelated series as too narrow.
- Sen's slope and its confidence interval (Sen 1968; Gilbert 1987): the CI takes order
  statistics of the pairwise slopes at ranks (N ∓ z·√Var(S))/2, with Var(S) the *modified*
  variance from the chosen MK test -- so autocorrelation widens the interval. With the original
  test this is exactly ``scipy.stats.theilslopes`` (tested).
- Relative slopes: when the series is positive the slope is fitted to ln(y), and reported as
  100·(e^b − 1) % per decade / per K; otherwise as 100·b / mean(y) (``method`` says which).
- %/K: the Sen slope of ln(y) against the GMST anomaly of each period (the synthetic world's
  own series, ``catalogs.simulator.climate.gmst_anomaly``; for real data a user series or the
  labelled default :func:`evaluation.ipcc.default_gmst`), with the same variance inflation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pymannkendall as mk
import scipy.stats
import warnings
from evaluation import ipcc
from catalogs.simulator.climate import gmst_anomaly

#: lag of the Yue–Wang correction (the lag-1 serial correlation; see the module docstring)
YUE_WANG_LAG = 1


def _yue_wang(y, alpha=0.05):
    return mk.yue_wang_modification_test(y, alpha=alpha, lag=YUE_WANG_LAG)


MK_TESTS = {
    "hamed_rao": mk.hamed_rao_modification_test,
    "yue_wang": _yue_wang,
    "original": mk.original_test,
}


def _pairwise_slopes(x, y):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    i, j = np.triu_indices(x.size, 1)
    dx = x[j] - x[i]
    ok = dx != 0
    return np.sort((y[j] - y[i])[ok] / dx[ok])


def _ties(a):
    _, c = np.unique(a, return_counts=True)
    c = c[c > 1]
    return float(np.sum(c * (c - 1) * (2 * c + 5)))


def sen_slope(y, x=None, *, var_s=None, confidence=0.95):
    """Sen's slope of y against x (default 0..n-1), intercept, and the CI at ``confidence``.

    ``var_s`` overrides Var(S) (e.g. the autocorrelation-modified variance from
    :func:`mann_kendall`); by default it is Sen's (1968) variance with ties in x and y, which
    makes the result identical to ``scipy.stats.theilslopes``."""
    y = np.asarray(y, dtype=np.float64)
    x = np.arange(y.size, dtype=np.float64) if x is None else np.asarray(x, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = y.size
    if n < 3:
        return {"slope": np.nan, "intercept": np.nan, "ci": (np.nan, np.nan), "n": int(n)}
    slopes = _pairwise_slopes(x, y)
    if slopes.size == 0:
        return {"slope": np.nan, "intercept": np.nan, "ci": (np.nan, np.nan), "n": int(n)}
    b = float(np.median(slopes))
    a = float(np.median(y) - b * np.median(x))
    sigsq = (n * (n - 1) * (2 * n + 5) - _ties(x) - _ties(y)) / 18.0 if var_s is None else float(var_s)
    z = scipy.stats.norm.ppf(0.5 + confidence / 2)
    nt = slopes.size
    sigma = np.sqrt(max(sigsq, 0.0))
    ru = min(int(np.round((nt + z * sigma) / 2.0)), nt - 1)
    rl = max(int(np.round((nt - z * sigma) / 2.0)) - 1, 0)
    return {"slope": b, "intercept": a, "ci": (float(slopes[rl]), float(slopes[ru])), "n": int(n)}


def mann_kendall(y, method="hamed_rao", alpha=0.05) -> dict:
    """Autocorrelation-aware Mann–Kendall test (pymannkendall), its correction floored at 1.
    Returns test, trend, p, z, tau, s, var_s (the variance used: the modified one, but never
    below the unmodified), var_s_original, var_s_modified (before the floor), floored, n."""
    if method not in MK_TESTS:
        raise ValueError(f"unknown Mann-Kendall test {method!r}; choose one of {', '.join(MK_TESTS)}")
    y = np.asarray(y, dtype=np.float64)
    y = y[np.isfinite(y)]
    if y.size < 4:
        return {"test": method, "trend": "no trend", "p": float("nan"), "z": float("nan"), "tau": float("nan"),
                "s": float("nan"), "var_s": float("nan"), "var_s_original": float("nan"),
                "var_s_modified": float("nan"), "floored": False, "n": int(y.size)}

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # constant series: autocorrelation 0/0
        r = MK_TESTS[method](y, alpha=alpha)
        r0 = mk.original_test(y, alpha=alpha)
    var_mod = float(r.var_s)
    floored = not (np.isfinite(var_mod) and var_mod >= float(r0.var_s))
    use = r0 if floored else r  # below the unmodified variance: the unmodified test's z, p and call
    return {"test": method, "trend": use.trend, "p": float(use.p), "z": float(use.z), "tau": float(r.Tau),
            "s": float(r.s), "var_s": float(use.var_s), "var_s_original": float(r0.var_s),
            "var_s_modified": var_mod, "floored": bool(floored and method != "original"), "n": int(y.size)}


def _decimal_years(time) -> np.ndarray:
    t = np.asarray(time, dtype="datetime64[ns]")
    year = t.astype("datetime64[Y]")
    start, end = year.astype("datetime64[ns]"), (year + 1).astype("datetime64[ns]")
    frac = (t - start).astype(np.float64) / (end - start).astype(np.float64)
    return year.astype(np.int64) + 1970 + frac


def deseasonalise(time, y):
    """Divide a monthly series by its calendar-month means (so seasonality does not enter the
    trend); positive series only, otherwise subtract the means."""
    y = np.asarray(y, dtype=np.float64)
    m = pd.DatetimeIndex(np.asarray(time, dtype="datetime64[ns]")).month.to_numpy()
    out = y.copy()
    positive = np.nanmin(y, initial=np.inf) > 0
    for k in np.unique(m):
        sel = m == k
        c = np.nanmean(y[sel])
        out[sel] = y[sel] / c if positive else y[sel] - c
    if not positive:
        out = out + np.nanmean(y)
    return out


def trend(time, values, *, gmst=None, method="hamed_rao", confidence=0.95, deseason=False) -> dict:
    """Trend of one series (one value per period at ``time``): MK test, Sen slope per decade with
    CI, relative slopes in %/decade and %/K (when ``gmst`` values per period are given).

    Output keys: n, method ("log" or "linear"), mk {...}, slope_per_decade, ci_per_decade,
    pct_per_decade, ci_pct_per_decade, pct_per_K, ci_pct_per_K, var_inflation (Var*(S)/Var(S)),
    mean."""
    time = np.asarray(time, dtype="datetime64[ns]")
    y = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(y)
    time, y = time[ok], y[ok]
    g = None if gmst is None else np.asarray(gmst, dtype=np.float64)[ok]
    if deseason and y.size:
        y = deseasonalise(time, y)
    out = {"n": int(y.size), "confidence": confidence, "mean": float(np.mean(y)) if y.size else float("nan")}
    nanci = [float("nan"), float("nan")]
    if y.size < 4:
        return out | {"method": None, "mk": mann_kendall(y, method), "slope_per_decade": float("nan"),
                      "ci_per_decade": nanci, "pct_per_decade": float("nan"), "ci_pct_per_decade": nanci,
                      "pct_per_K": float("nan"), "ci_pct_per_K": nanci, "var_inflation": float("nan")}
    if y.size and np.mean(y == 0) > 0.25:
        # a relative trend of a series that is mostly zero (e.g. no exceedances in most periods)
        # is not estimable: report no estimate rather than a degenerate 0 ± 0
        return out | {"method": None, "mk": mann_kendall(y, method), "slope_per_decade": float("nan"),
                      "ci_per_decade": nanci, "pct_per_decade": float("nan"), "ci_pct_per_decade": nanci,
                      "pct_per_K": float("nan"), "ci_pct_per_K": nanci, "var_inflation": float("nan"),
                      "note": f"{np.mean(y == 0):.0%} of the periods are zero: no relative trend"}
    dec = _decimal_years(time) / 10.0
    order = np.argsort(dec)
    dec, y = dec[order], y[order]
    if g is not None:
        g = g[order]
    log = bool(np.all(y > 0))
    z = np.log(y) if log else y
    mkr = mann_kendall(z, method)
    infl = mkr["var_s"] / mkr["var_s_original"] if mkr["var_s_original"] > 0 else 1.0
    # Sen's variance with ties, inflated by the MK test's autocorrelation factor
    n = z.size

    def var_for(x):
        return infl * (n * (n - 1) * (2 * n + 5) - _ties(x) - _ties(z)) / 18.0

    s_raw = sen_slope(y, dec, var_s=infl * (n * (n - 1) * (2 * n + 5) - _ties(dec) - _ties(y)) / 18.0,
                      confidence=confidence)
    s_rel = sen_slope(z, dec, var_s=var_for(dec), confidence=confidence)

    def rel(b):
        if log:
            return 100 * np.expm1(b)
        m = np.mean(y)
        return 100 * b / m if m != 0 else float("nan")

    out.update({
        "method": "log" if log else "linear",
        "mk": mkr,
        "var_inflation": float(infl),
        "slope_per_decade": s_raw["slope"],
        "ci_per_decade": list(s_raw["ci"]),
        "pct_per_decade": float(rel(s_rel["slope"])),
        "ci_pct_per_decade": [float(rel(s_rel["ci"][0])), float(rel(s_rel["ci"][1]))],
    })
    if g is not None and np.ptp(g[np.isfinite(g)]) > 0:
        s_k = sen_slope(z, g, var_s=var_for(g), confidence=confidence)
        out.update({"pct_per_K": float(rel(s_k["slope"])),
                    "ci_pct_per_K": [float(rel(s_k["ci"][0])), float(rel(s_k["ci"][1]))]})
    else:
        out.update({"pct_per_K": float("nan"), "ci_pct_per_K": nanci})
    return out


def gmst_for(time, gmst="synthetic"):
    """GMST anomaly (K) at ``time``: ``"synthetic"`` (the simulator's own series), ``"default"``
    (:func:`evaluation.ipcc.default_gmst`, clearly labelled), a callable, or a pandas Series
    indexed by time (interpolated). Returns (values, label)."""

    t = np.asarray(time, dtype="datetime64[ns]")
    if callable(gmst):
        return np.asarray(gmst(t), dtype=np.float64), getattr(gmst, "__name__", "user GMST function")
    if isinstance(gmst, pd.Series):
        s = gmst.sort_index()
        xi = s.index.values.astype("datetime64[ns]").astype(np.int64).astype(np.float64)
        return np.interp(t.astype(np.int64).astype(np.float64), xi, s.values.astype(np.float64)), "user GMST series"
    if gmst == "synthetic":
        return np.asarray([float(gmst_anomaly(x)) for x in t], dtype=np.float64), \
            "synthetic world GMST (catalogs.simulator.climate.gmst_anomaly)"
    if gmst == "default":
        return ipcc.default_gmst(t), ipcc.DEFAULT_GMST_LABEL
    raise ValueError(f"gmst must be 'synthetic', 'default', a callable or a pandas Series, got {gmst!r}")


def read_gmst_csv(path) -> pd.Series:
    """A user GMST series from a CSV file (``time,gmst_K``: a header, then one row per time):
    a Series of finite anomalies (K) indexed by time. Refuses, naming the file and the problem,
    a file that is not such a table (``ValueError``)."""
    if not Path(path).is_file():
        raise ValueError(f"GMST file {str(path)!r} not found")
    try:
        df = pd.read_csv(path, nrows=1_000_000)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"GMST file {str(path)!r} is not a CSV table (time,gmst_K): {str(e)[:200]}") from None
    if df.shape[1] < 2:
        raise ValueError(f"GMST file {str(path)!r} needs two columns (time,gmst_K), has {df.shape[1]}")
    if len(df) < 2:
        raise ValueError(f"GMST file {str(path)!r} needs at least two rows, has {len(df)}")
    t = pd.to_datetime(df.iloc[:, 0], errors="coerce", format="mixed")
    if t.isna().any():
        i = int(np.flatnonzero(t.isna().values)[0])
        raise ValueError(f"GMST file {str(path)!r}: row {i + 2} has no valid time in its first column "
                         f"({str(df.iloc[i, 0])[:40]!r})")
    g = pd.to_numeric(df.iloc[:, 1], errors="coerce")
    bad = ~np.isfinite(g.values.astype(np.float64))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"GMST file {str(path)!r}: row {i + 2} has no finite GMST anomaly (K) in its second "
                         f"column ({str(df.iloc[i, 1])[:40]!r})")
    if t.duplicated().any():
        raise ValueError(f"GMST file {str(path)!r} repeats a time ({t[t.duplicated()].iloc[0]})")
    return pd.Series(g.values.astype(np.float64), index=pd.DatetimeIndex(t))

"""Mergeable per-scene summaries of a rain field for the forced-response evaluation.

One summary per (scene, climate, source) and pixel group: pixel count, sum (mm h-1), wet count
(> :data:`WET_THRESHOLD`), counts above the :data:`THRESHOLDS`, and a histogram on fine
log-spaced bins. Summaries of several scenes add up (the bootstrap pools them with weights).

Bins (:data:`EDGES`): bin 0 is ``[0, 0.01)`` mm h-1 (zero and under-range), then
:data:`BINS_PER_DECADE` = 462 log-spaced bins a decade from 0.01 mm h-1 (a ratio of
10**(1/462) ≈ 1.00500 between edges, so 0.01, 0.1, 1, 10, 100 are edges) up to ≈ 500 mm h-1,
then an overflow bin. A quantile is interpolated log-linearly inside its bin, so it is exact to
well within the 0.5 % bin ratio (``tests/evaluation/test_warming.py`` measures it against ``np.quantile``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from catalogs import schema

#: rain rate above which a pixel is wet (mm h-1), as in IPWG SatRain
WET_THRESHOLD = 0.1
#: exceedance thresholds (mm h-1)
THRESHOLDS = (1.0, 5.0, 10.0, 20.0, 50.0)
BINS_PER_DECADE = 462  # 10**(1/462) = 1.004996: ≤ 1.005 per bin
LOG_LO = -2.0  # 0.01 mm h-1
N_LOG = int(np.ceil((np.log10(500.0) - LOG_LO) * BINS_PER_DECADE))  # bins from 0.01 to ≥ 500 mm h-1
#: bin edges: 0, 0.01 ... ≈ 500.4, inf
EDGES = np.concatenate([[0.0], 10.0 ** (LOG_LO + np.arange(N_LOG + 1) / BINS_PER_DECADE), [np.inf]])
N_BINS = EDGES.size - 1
#: first bin of the wet population (its lower edge is WET_THRESHOLD)
WET_BIN = BINS_PER_DECADE * 1 + 1
assert abs(EDGES[WET_BIN] - WET_THRESHOLD) < 1e-12
#: pixel groups: name -> description (surface groups as the climatology cube: coast counts as land)
GROUPS = {
    "global": "all pixels",
    "ocean": "surface ocean or sea ice",
    "land": "surface land, coast or snow",
    "tropics": "|lat| < 30°",
    "extratropics": "|lat| ≥ 30°",
}
_OCEAN = tuple(k for k, v in schema.SURFACE_TYPES.items() if v in ("ocean", "sea_ice"))
_LAND = tuple(k for k, v in schema.SURFACE_TYPES.items() if v in ("land", "coast", "snow"))


def bin_index(values: np.ndarray) -> np.ndarray:
    """Bin of each value (int32); -1 for NaN or negative values."""
    v = np.asarray(values, np.float64)
    ok = np.isfinite(v) & (v >= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.floor((np.log10(np.where(v > 0, v, 1.0)) - LOG_LO) * BINS_PER_DECADE).astype(np.int64) + 1
    k = np.where(v < EDGES[1], 0, np.clip(k, 1, N_BINS - 1))
    # floating point at the edges: make the index agree with the left-closed edges exactly
    k = np.where((k > 1) & (k < N_BINS) & (v < EDGES[np.clip(k, 0, N_BINS)]), k - 1, k)
    k = np.where((k < N_BINS - 1) & (v >= EDGES[np.clip(k + 1, 0, N_BINS)]), k + 1, k)
    return np.where(ok, k, -1).astype(np.int32)


def group_masks(lat: np.ndarray, surface_type: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of the :data:`GROUPS` for a swath's ``lat`` and ``surface_type``."""
    lat = np.asarray(lat)
    st = np.asarray(surface_type)
    return {
        "global": np.ones(lat.shape, bool),
        "ocean": np.isin(st, _OCEAN),
        "land": np.isin(st, _LAND),
        "tropics": np.abs(lat) < 30.0,
        "extratropics": np.abs(lat) >= 30.0,
    }


def summarise(values: np.ndarray, masks: dict[str, np.ndarray], groups: Sequence[str] = tuple(GROUPS)) -> dict:
    """Summary of the finite, non-negative ``values`` (mm h-1) in each group: a dict of arrays
    ``n`` (G,), ``sum`` (G,), ``wet`` (G,), ``exceed`` (G, T), ``hist`` (G, N_BINS)."""
    v = np.asarray(values, np.float64)
    k = bin_index(v)
    ok = k >= 0
    G, T = len(groups), len(THRESHOLDS)
    out = {"n": np.zeros(G, np.int64), "sum": np.zeros(G, np.float64), "wet": np.zeros(G, np.int64),
           "exceed": np.zeros((G, T), np.int64), "hist": np.zeros((G, N_BINS), np.int64)}
    for g, name in enumerate(groups):
        sel = ok & masks[name]
        x = v[sel]
        out["n"][g] = x.size
        out["sum"][g] = float(x.sum())
        out["wet"][g] = int(np.count_nonzero(x > WET_THRESHOLD))
        out["exceed"][g] = [np.count_nonzero(x > t) for t in THRESHOLDS]
        out["hist"][g] = np.bincount(k[sel], minlength=N_BINS)
    return out


def hist_quantiles(hist: np.ndarray, q: Sequence[float], *, wet: bool = False) -> np.ndarray:
    """Quantiles from histograms ``hist[..., N_BINS]`` (counts or weighted counts): ``(..., len(q))``.

    Inside a bin the value is interpolated log-linearly between its edges. A quantile in the
    zero/under-range bin is 0; in the overflow bin, its lower edge (≈ 500 mm h-1). ``wet``: the
    quantiles of the wet population (bins from :data:`WET_THRESHOLD` up). NaN where the
    population is empty."""
    h = np.asarray(hist, np.float64)
    if wet:
        h = h[..., WET_BIN:]
        edges = EDGES[WET_BIN:]
        first = WET_BIN
    else:
        edges = EDGES
        first = 0
    nb = h.shape[-1]
    cum = np.cumsum(h, axis=-1)
    tot = cum[..., -1:]
    qs = np.asarray(q, np.float64)
    target = qs * tot  # (..., Q)
    # bin of each target: the first bin whose cumulative count reaches it
    idx = np.sum(cum[..., None, :] < target[..., :, None], axis=-1)
    idx = np.minimum(idx, nb - 1)
    before = np.where(idx > 0, np.take_along_axis(cum, np.maximum(idx - 1, 0), axis=-1), 0.0)
    cnt = np.take_along_axis(h, idx, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.clip(np.where(cnt > 0, (target - before) / cnt, 0.0), 0.0, 1.0)
    lo = edges[idx]
    hi = edges[np.minimum(idx + 1, edges.size - 1)]
    gbin = idx + first
    finite_hi = np.isfinite(hi) & (lo > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        val = np.where(finite_hi, lo * np.power(np.where(finite_hi, hi / np.where(lo > 0, lo, 1.0), 1.0), frac), lo)
    val = np.where(gbin == 0, 0.0, val)
    return np.where(tot > 0, val, np.nan)

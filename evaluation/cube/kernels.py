"""Per-orbit aggregation kernels: region / latitude band / month / surface group of every pixel
and the binned counts and sums (numba when installed; the numpy fallback gives identical results)."""

from __future__ import annotations

import math

import numpy as np

from evaluation import distributions as D
from evaluation import regions as RG
from evaluation.cube.layout import SURFACES

try:  # numba: one fused pass per layer; numpy fallback below gives identical results
    import numba

    @numba.njit(cache=True, nogil=True)
    def _groups_nb(lat, lon, surf, midx_scan, n_cross, grid, res_inv, region_of_number, n_reg, n_surf,
                   band0, out_ar6, out_band):
        n_lat, n_lon = grid.shape
        for i in range(lat.size):
            la = lat[i]
            lo = lon[i]
            s = surf[i]
            if s < 0 or s >= n_surf - 1:
                s = n_surf - 1
            if not (np.isfinite(la) and np.isfinite(lo)):
                out_ar6[i] = -1
                out_band[i] = -1
                continue
            gi = int((la + 90.0) * res_inv)
            gi = min(max(gi, 0), n_lat - 1)
            gj = int((lo + 180.0) * res_inv) % n_lon
            num = grid[gi, gj]
            r = region_of_number[num] if num >= 0 else region_of_number[region_of_number.size - 1]
            m = midx_scan[i // n_cross]
            base = m * n_reg
            out_ar6[i] = (base + r) * n_surf + s
            b = int((la + 90.0) / 10.0)
            b = min(max(b, 0), 17)
            out_band[i] = (base + band0 + b) * n_surf + s

    @numba.njit(cache=True, nogil=True)
    def _acc_nb(v, g, edges, log_min, per_decade, counts, sums, sumsq):
        nb = edges.size - 1
        ng = counts.shape[0]
        for i in range(v.size):
            gi = g[i]
            if gi < 0 or gi >= ng:  # -1: no group; out of range never happens (kept memory-safe)
                continue
            x = np.float64(v[i])
            if not (x >= 0.0):
                continue
            if x < edges[1]:
                b = 0
            else:
                b = int((math.log10(x) - log_min) * per_decade) + 1
                if b > nb - 1:
                    b = nb - 1
                while b > 1 and x < edges[b]:
                    b -= 1
                while b < nb - 1 and x >= edges[b + 1]:
                    b += 1
            counts[gi, b] += 1
            sums[gi] += x
            sumsq[gi] += x * x

    @numba.njit(inline="always")
    def _bin_of(x, edges, log_min, per_decade, nb):
        if x < edges[1]:
            return 0
        b = int((math.log10(x) - log_min) * per_decade) + 1
        if b > nb - 1:
            b = nb - 1
        while b > 1 and x < edges[b]:
            b -= 1
        while b < nb - 1 and x >= edges[b + 1]:
            b += 1
        return b

    @numba.njit(cache=True, nogil=True)
    def _acc2_nb(v, g1, g2, edges, log_min, per_decade, counts, sums, sumsq):
        """Both partition layers in one pass over the values."""
        nb = edges.size - 1
        ng = counts.shape[0]
        for i in range(v.size):
            a = g1[i]
            if a < 0 or a >= ng:
                continue
            x = np.float64(v[i])
            if not (x >= 0.0):
                continue
            c = g2[i]
            b = _bin_of(x, edges, log_min, per_decade, nb)
            counts[a, b] += 1
            if c >= 0 and c < ng:
                counts[c, b] += 1
            if x > 0.0:
                sums[a] += x
                sumsq[a] += x * x
                if c >= 0 and c < ng:
                    sums[c] += x
                    sumsq[c] += x * x

    @numba.njit(cache=True, nogil=True)
    def _fused_nb(v, lat, lon, surf, midx_scan, grid, res_inv, region_of_number, n_reg, n_surf, band0,
                  edges, log_min, per_decade, counts, sums, sumsq):
        """Region lookup, latitude band, month, surface and bin of every pixel, accumulated
        into both partition layers in a single pass (the benchmarked per-orbit aggregation)."""
        n_lat, n_lon = grid.shape
        n_scan, n_cross = v.shape
        nb = edges.size - 1
        none_r = region_of_number[region_of_number.size - 1]
        for i in range(n_scan):
            base = midx_scan[i] * n_reg
            for j in range(n_cross):
                x = np.float64(v[i, j])
                if not (x >= 0.0):
                    continue
                la = lat[i, j]
                lo = lon[i, j]
                if not (np.isfinite(la) and np.isfinite(lo)):
                    continue
                s = surf[i, j]
                if s < 0 or s >= n_surf - 1:
                    s = n_surf - 1
                gi = int((la + 90.0) * res_inv)
                gi = min(max(gi, 0), n_lat - 1)
                gj = int((lo + 180.0) * res_inv)
                if gj >= n_lon:
                    gj -= n_lon
                elif gj < 0:
                    gj += n_lon
                num = grid[gi, gj]
                r = region_of_number[num] if num >= 0 else none_r
                bb = int((la + 90.0) * 0.1)
                bb = min(max(bb, 0), 17)
                a = (base + r) * n_surf + s
                c = (base + band0 + bb) * n_surf + s
                b = _bin_of(x, edges, log_min, per_decade, nb)
                counts[a, b] += 1
                counts[c, b] += 1
                if x > 0.0:
                    sums[a] += x
                    sumsq[a] += x * x
                    sums[c] += x
                    sumsq[c] += x * x

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised by forcing the numpy path in tests
    HAVE_NUMBA = False


def _groups_np(lat, lon, surf, midx_scan, n_cross, grid, res_inv, region_of_number, n_reg, n_surf, band0):
    ok = np.isfinite(lat) & np.isfinite(lon)
    surf = np.where((surf < 0) | (surf >= n_surf - 1), n_surf - 1, surf)
    la = np.where(ok, lat, 0.0)
    lo = np.where(ok, lon, 0.0)
    n_lat, n_lon = grid.shape
    gi = np.clip(((la + 90.0) * res_inv).astype(np.int64), 0, n_lat - 1)
    gj = ((lo + 180.0) * res_inv).astype(np.int64) % n_lon
    num = grid[gi, gj].astype(np.int64)
    r = np.where(num >= 0, region_of_number[np.maximum(num, 0)], region_of_number[-1])
    m = np.repeat(midx_scan.astype(np.int64), n_cross)
    base = m * n_reg
    s = surf.astype(np.int64)
    g_ar6 = np.where(ok, (base + r) * n_surf + s, -1)
    b = np.clip(((la + 90.0) / 10.0).astype(np.int64), 0, 17)
    g_band = np.where(ok, (base + band0 + b) * n_surf + s, -1)
    return g_ar6, g_band


def _acc_np(v, g, counts, sums, sumsq):
    x = np.asarray(v, dtype=np.float64)
    ok = (g >= 0) & (g < counts.shape[0]) & (x >= 0)  # NaN compares False
    x, gg = x[ok], g[ok]
    b = D.bin_index(x).astype(np.int64)
    nb = counts.shape[1]
    counts += np.bincount(gg * nb + b, minlength=counts.size).reshape(counts.shape)
    sums += np.bincount(gg, weights=x, minlength=sums.size)
    sumsq += np.bincount(gg, weights=x * x, minlength=sumsq.size)


_LOOKUP_CACHE: dict = {}


def _lookup():
    if not _LOOKUP_CACHE:
        idx = RG.load_index()
        numbers = idx["numbers"]
        rmap = np.full(max(numbers) + 2, len(numbers), dtype=np.int64)  # last slot: ar6:none
        for k, n in enumerate(numbers):
            rmap[n] = k
        rmap[-1] = len(numbers)
        _LOOKUP_CACHE.update(grid=idx["ar6"].astype(np.int16), res_inv=1.0 / idx["res"], rmap=rmap,
                             n_ar6=len(numbers) + 1)
    return _LOOKUP_CACHE


def pixel_groups(lat, lon, surface_type, midx_scan, n_reg, *, use_numba=None):
    """Flat group ids (month, region, surface) of every pixel for the AR6 and latitude-band
    layers: two int64 arrays of size lat.size, -1 where a pixel has no valid position/surface."""
    lk = _lookup()
    lat = np.ascontiguousarray(lat, dtype=np.float64).ravel()
    lon = np.ascontiguousarray(lon, dtype=np.float64).ravel()
    surf = np.ascontiguousarray(surface_type, dtype=np.int64).ravel()
    n_cross = lat.size // max(len(midx_scan), 1)
    midx = np.ascontiguousarray(midx_scan, dtype=np.int64)
    args = (lat, lon, surf, midx, n_cross, lk["grid"], lk["res_inv"], lk["rmap"], n_reg, len(SURFACES), lk["n_ar6"])
    if (HAVE_NUMBA if use_numba is None else use_numba):
        g1 = np.empty(lat.size, np.int64)
        g2 = np.empty(lat.size, np.int64)
        _groups_nb(*args, g1, g2)
        return g1, g2
    return _groups_np(*args)


def accumulate_layers(values, layers, counts, sums, sumsq, *, use_numba=None):
    """:func:`accumulate` for several group layers (two at a time in one numba pass)."""
    v = np.ascontiguousarray(values).ravel()
    layers = list(layers)
    if (HAVE_NUMBA if use_numba is None else use_numba):
        while len(layers) >= 2:
            g1, g2 = layers.pop(0), layers.pop(0)
            _acc2_nb(v, g1, g2, D.EDGES, D.LOG_MIN, float(D.BINS_PER_DECADE), counts, sums, sumsq)
    for g in layers:
        accumulate(v, g, counts, sums, sumsq, use_numba=use_numba)


def aggregate_orbit(values, lat, lon, surface_type, midx_scan, n_months, n_reg, *, use_numba=None):
    """The whole per-orbit aggregation of one rain field (A, C) into the AR6 and latitude-band
    layers by month and surface: (counts (n_months*n_reg*n_surf, bin), sums, sumsq)."""
    n_surf = len(SURFACES)
    G = n_months * n_reg * n_surf
    counts = np.zeros((G, D.N_BINS), np.int64)
    sums = np.zeros(G)
    sumsq = np.zeros(G)
    if (HAVE_NUMBA if use_numba is None else use_numba):
        lk = _lookup()
        _fused_nb(np.ascontiguousarray(values), np.ascontiguousarray(lat, np.float64),
                  np.ascontiguousarray(lon, np.float64), np.ascontiguousarray(surface_type, np.int64),
                  np.ascontiguousarray(midx_scan, np.int64), lk["grid"], lk["res_inv"], lk["rmap"], n_reg, n_surf,
                  lk["n_ar6"], D.EDGES, D.LOG_MIN, float(D.BINS_PER_DECADE), counts, sums, sumsq)
    else:
        g1, g2 = pixel_groups(lat, lon, surface_type, midx_scan, n_reg, use_numba=False)
        accumulate_layers(values, [g1, g2], counts, sums, sumsq, use_numba=False)
    return counts, sums, sumsq


def accumulate(values, groups, counts, sums, sumsq, *, use_numba=None):
    """Add ``values`` (flat) into ``counts[group, bin]``, ``sums[group]``, ``sumsq[group]``
    (group -1, NaN and negative values skipped)."""
    v = np.ascontiguousarray(values).ravel()
    if (HAVE_NUMBA if use_numba is None else use_numba):
        _acc_nb(v, groups, D.EDGES, D.LOG_MIN, float(D.BINS_PER_DECADE), counts, sums, sumsq)
    else:
        _acc_np(v, groups, counts, sums, sumsq)

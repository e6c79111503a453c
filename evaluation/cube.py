"""The climatology cube: mergeable per-orbit summaries from which every distribution, tail,
skill and trend view is answered in well under a second.

Layout (an xarray Dataset, stored as zarr with a completion marker and a ledger)
--------------------------------------------------------------------------------
dims    ``source``  truth, truth_strip, reference, <model>, <model>@strip
        ``region``  the AR6 reference regions (abbreviations), ``ar6:none`` (no AR6 region),
                    the 18 ten-degree latitude bands ``lat:-90:-80`` … ``lat:80:90``, and any
                    extra regions the cube was built with (``bbox:…``, ``polygon:…``). The AR6
                    set (with ``ar6:none``) and the latitude bands are each a partition of the
                    globe, so a pixel is counted once in each; "global" = Σ over the bands.
        ``time``    month (datetime64, first of the month); only months with data
        ``surface`` ocean, land, coast, sea_ice, snow (``catalogs.schema.SURFACE_TYPES``)
        ``bin``     the rain-rate bins of :data:`evaluation.distributions.EDGES`
vars    ``count``   (source, region, time, surface, bin) int64 pixel counts
        ``total``, ``total_sq`` (source, region, time, surface) float64 Σ rate, Σ rate²
        ``skill``   (pair, skill_region, time, surface, stat) float64: additive skill statistics
                    (:func:`evaluation.skill.pixel_stats`) per pair, on the AR6 partition
        ``field_skill`` (pair, time, fstat): FSS and spectral-coherence sums per orbit field
pairs   ``<model>@strip|reference`` (model vs the reference, on the radar strip),
        ``<model>|truth`` (model vs the truth, whole swath; synthetic world),
        ``reference|truth_strip`` (the reference vs the truth on the strip).

Sources: ``truth`` is the synthetic truth on every pixel, ``truth_strip`` the same on the
reference strip, ``reference`` the radar-like reference (strip only), ``<model>`` a model's
``precip_mean`` on every pixel and ``<model>@strip`` on the strip (so model, reference and
truth can be compared on the same pixels).

Counts are integers and Σ rate / Σ rate² are float64, so means and wet fractions are exact
and merging is exact: a cube built in any order or chunking is identical (tested). Quantiles
are interpolated within bins (:func:`evaluation.distributions.quantile_from_hist`).

Building
--------
:func:`build_cube` runs one task per orbit on dask.distributed (a ``LocalCluster`` by default,
a scheduler address, or ``"inline"`` for no dask at all). Each task loads (simulates) the orbit,
runs the models, computes the partial summaries and writes them atomically to
``<cube>.partials/``; the driver then merges the partials into the cube, written atomically
with a ledger of included (source, orbit) pairs. Re-running skips what the ledger holds and
reuses partials already written, so an interrupted build resumes without redoing finished
orbits and never double-counts (tested by interrupting). New orbits or models only add.

Source identities
-----------------
The ledger (and every partial file) records *which version* of each source the numbers come
from (:func:`source_identity`): for a model, the first 12 hex digits of its registered
checkpoint's sha256 and, with the simulator loader, the simulator's ``PRODUCT_VERSION`` (the Tb
every model reads); for truth/reference, the simulator's ``TRUTH_VERSION`` (bumped only when the
rain truth or the reference change, so a Tb-only simulator change keeps them). A build compares
the current identity of each requested source with the ledger's: on a mismatch (a retrained
model, a new simulator) it raises :class:`StaleSource` unless ``replace_stale=True``, which drops
that source (histograms, skill pairs, ledger entries) and rebuilds it on the requested orbits.
Partials are only reused when their identity is the current one, and a merge never mixes two
identities of one source. A cube written before identities were recorded counts as stale for its
models and as current for its truth/reference (logged).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time as _time
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from catalogs import schema
from catalogs.store import atomic_write, is_complete, temp_name
from evaluation import distributions as D
from evaluation import regions as RG
from evaluation import skill as SK

log = logging.getLogger(__name__)

TRUTH, TRUTH_STRIP, REFERENCE = "truth", "truth_strip", "reference"
BUILTIN = (TRUTH, TRUTH_STRIP, REFERENCE)
STRIP = "@strip"
#: surface categories: the non-negative CF flag values of ``catalogs.schema.SURFACE_TYPES`` in
#: order, then "unknown" (flag -1, or any flag the schema does not know)
_CODES = tuple(sorted(k for k in schema.SURFACE_TYPES if k >= 0))
assert _CODES == tuple(range(len(_CODES))), "surface flags must be 0..n-1"
SURFACES = tuple(schema.SURFACE_TYPES[k] for k in _CODES) + ("unknown",)
#: surface groups answering the "land" / "ocean" region specs from the cube (coast counts as land)
SURFACE_GROUPS = {"ocean": ("ocean", "sea_ice"), "land": ("land", "coast", "snow")}
SEASONS = {"DJF": (12, 1, 2), "MAM": (3, 4, 5), "JJA": (6, 7, 8), "SON": (9, 10, 11)}
LEDGER = "ledger.json"
FORMAT_VERSION = 1
NONE_REGION = "ar6:none"
#: canonical quantile levels of the stored probabilistic statistics
CANON_LEVELS = tuple(sorted(set(SK.QS_LEVELS) | {round((1 - c) / 2, 6) for c in SK.COVERAGE}
                            | {round((1 + c) / 2, 6) for c in SK.COVERAGE}))
PIXEL_STATS = tuple(SK.pixel_stat_names(levels=CANON_LEVELS))
FIELD_STATS = tuple(SK.field_stat_names())
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


class BuildCancelled(RuntimeError):
    """A cube build was cancelled; finished orbits are kept as partials and resume later."""


class CubeConfigMismatch(ValueError):
    """The requested build does not match the existing cube's configuration."""


class StaleSource(CubeConfigMismatch):
    """A source in the cube was computed by another version of it (a retrained model, another
    simulator version); rebuild it with ``replace_stale=True`` (``--replace-stale``)."""


class RegionNotInCube(KeyError):
    """A region that the cube cannot answer (build it with ``extra_regions``)."""


# --------------------------------------------------------------------------- region layout
def ar6_labels() -> list[str]:
    return list(RG.load_index()["abbrevs"]) + [NONE_REGION]


def region_labels(extra_regions: Sequence[str] = ()) -> list[str]:
    return ar6_labels() + list(RG.LAT_BAND_SPECS) + [RG.get_region(s).spec for s in extra_regions]


def model_of(source: str) -> str | None:
    if source in BUILTIN:
        return None
    return source[: -len(STRIP)] if source.endswith(STRIP) else source


def expand_sources(sources: Iterable[str]) -> list[str]:
    """truth → truth + truth_strip; a model name → model + model@strip; order kept, no dups."""
    out: list[str] = []
    for s in sources:
        s = str(s).strip()
        if not s:
            continue
        base = s[: -len(STRIP)] if s.endswith(STRIP) else s
        if base not in BUILTIN and not _NAME_RE.match(base):
            raise ValueError(f"invalid source/model name {s!r}")
        adds = [TRUTH, TRUTH_STRIP] if s == TRUTH else ([base, base + STRIP] if base not in BUILTIN else [s])
        for a in adds:
            if a not in out:
                out.append(a)
    return out


def pairs_for(sources: Sequence[str]) -> list[str]:
    """Skill pairs computed when ``sources`` are built."""
    out = []
    for m in dict.fromkeys(model_of(s) for s in sources if model_of(s)):
        out += [f"{m}{STRIP}|{REFERENCE}", f"{m}|{TRUTH}"]
    if REFERENCE in sources:
        out.append(f"{REFERENCE}|{TRUTH_STRIP}")
    return out


# --------------------------------------------------------------------------- source identities
def source_identity(source: str, cfg: dict) -> dict:
    """What version of ``source`` a build with ``cfg`` computes (recorded in the ledger).

    truth / truth_strip / reference: ``{"truth_version": catalogs.simulator.TRUTH_VERSION}``
    (simulator loader). A model: ``{"checkpoint_sha256": <first 12 hex of the registered
    checkpoint>}`` (or ``{"model": ...}`` for a callable in ``cfg["model_fns"]``: its
    ``identity`` attribute, else its qualified name) plus ``"product_version":
    catalogs.simulator.PRODUCT_VERSION`` with the simulator loader (the Tb the model reads)."""
    loader = cfg.get("loader", "simulator")
    m = model_of(source)
    if m is None:
        if loader == "simulator":
            from catalogs.simulator import TRUTH_VERSION

            return {"truth_version": TRUTH_VERSION}
        return {"loader": str(loader)}
    fn = (cfg.get("model_fns") or {}).get(m)
    if fn is not None:
        ident = {"model": str(getattr(fn, "identity", None)
                              or f"callable:{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}")}
    else:
        from models.registry import get_card

        ident = {"checkpoint_sha256": str(get_card(m).checkpoint_sha256)[:12]}
    if loader == "simulator":
        from catalogs.simulator import PRODUCT_VERSION

        ident["product_version"] = PRODUCT_VERSION
    return ident


def _identities(sources: Iterable[str], cfg: dict, known: dict | None = None) -> dict:
    """Identities of ``sources`` and of the sides of their skill pairs (``known`` first)."""
    sources = list(sources)
    need = list(sources) + [x for p in pairs_for(sources) for x in p.split("|")]
    known = known or {}
    out: dict = {}
    for s in dict.fromkeys(need):
        out[s] = known[s] if s in known else source_identity(s, cfg)
    return out


def _fmt_identity(ident) -> str:
    if not ident:
        return "not recorded (cube written before identities were recorded)"
    return ", ".join(f"{k}={v}" for k, v in sorted(ident.items()))


def _legacy_partial(pid: dict, names: Iterable[str], cur: dict | None, where: str) -> dict:
    """Identities of a partial written before they were recorded (``pid`` empty): its truth /
    reference count as the current version (as in a cube of that age), its models as unknown."""
    if pid or not cur:
        return pid
    out = {x: cur[x] for x in names if model_of(x) is None and x in cur}
    if out:
        log.info("%s records no identities (written before they were); its truth/reference are taken as %s",
                 where, _fmt_identity(next(iter(out.values()))))
    return out


def _group(source: str) -> str:
    """The sources computed together: a model's (name), or truth/reference ("truth")."""
    return model_of(source) or TRUTH


# --------------------------------------------------------------------------- kernels
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


# --------------------------------------------------------------------------- orbit loading
_MODEL_CACHE: dict = {}


def _load_swath(orbit: int, cfg: dict) -> xr.Dataset:
    from catalogs.simulator import simulate_orbit

    return simulate_orbit(int(orbit), world_seed=int(cfg.get("world_seed", 0)), source="observed",
                          n_scans=cfg.get("n_scans"))


def _model_output(name: str, swath: xr.Dataset, cfg: dict):
    """(precip_mean (A, C), quantiles (A, C, Q), levels) of a model on ``swath``.

    ``cfg["model_fns"]`` may map a name to a callable(swath) -> retrieval dataset (tests,
    custom models); otherwise the registered model is loaded and run with
    ``models.inference.predict_swath``."""
    fn = (cfg.get("model_fns") or {}).get(name)
    if fn is not None:
        ret = fn(swath)
    else:
        from models.inference import predict_swath
        from models.registry import load_model

        from models.registry import get_card

        sha = str(get_card(name).checkpoint_sha256)
        want = ((cfg.get("identities") or {}).get(name) or {}).get("checkpoint_sha256")
        if want and not sha.startswith(want):
            raise StaleSource(f"model {name!r} changed during the build (checkpoint {sha[:12]}, the build "
                              f"started with {want}); rerun the build")
        key = (name, sha)  # a retrained model (new checkpoint) is never served from the cache
        if key not in _MODEL_CACHE:
            threads = cfg.get("torch_threads")
            if threads:
                import torch

                torch.set_num_threads(int(threads))
            for k in [k for k in _MODEL_CACHE if k[0] == name]:
                del _MODEL_CACHE[k]
            r = load_model(name, device=cfg.get("device", "cpu"))
            got = str(getattr(getattr(r, "card", None), "checkpoint_sha256", sha) or sha)
            if got != sha:
                raise StaleSource(f"model {name!r} changed while loading it (checkpoint {got[:12]}, expected "
                                  f"{sha[:12]}); rerun the build")
            _MODEL_CACHE[key] = r
        ret = predict_swath(_MODEL_CACHE[key], swath, validate=False)
    product = cfg.get("model_product", "precip_mean")
    return (np.asarray(ret[product].values, np.float32), np.asarray(ret["precip_quantiles"].values, np.float32),
            np.asarray(ret["quantile"].values, np.float64))


def orbit_partial(orbit: int, sources: Sequence[str], cfg: dict, *, swath: xr.Dataset | None = None) -> dict:
    """Summaries of one orbit for ``sources`` (already expanded): the cube's arrays restricted to
    the orbit's months. Pure function of the orbit and config."""
    ds = _load_swath(orbit, cfg) if swath is None else swath
    labels = cfg["regions"]
    n_reg = len(labels)
    n_ar6 = len(ar6_labels())
    n_surf, nb = len(SURFACES), D.N_BINS
    lat = ds["lat"].values
    lon = ds["lon"].values
    A, C = lat.shape
    tm = ds["time"].values.astype("datetime64[M]")
    months, midx = np.unique(tm, return_inverse=True)
    n_m = months.size
    g_ar6, g_band = pixel_groups(lat, lon, ds["surface_type"].values, midx, n_reg)
    layers = [g_ar6, g_band]
    for k, spec in enumerate(cfg.get("extra_regions", ())):
        inside = RG.get_region(spec).mask(lat, lon).ravel()
        r = n_ar6 + len(RG.LAT_BAND_SPECS) + k
        # same month and surface as the AR6 layer, region r
        layers.append(np.where(inside & (g_ar6 >= 0), _regroup(g_ar6, n_reg, n_surf, r), -1))
    strip = np.isfinite(ds["surface_precip"].values) if "surface_precip" in ds else np.zeros((A, C), bool)
    truth = ds["surface_precip_truth"].values if "surface_precip_truth" in ds else None
    ref = ds["surface_precip"].values if "surface_precip" in ds else None
    model_out = {}
    for m in dict.fromkeys(model_of(s) for s in sources if model_of(s)):
        model_out[m] = _model_output(m, ds, cfg)

    def values_of(src):
        if src == TRUTH:
            return truth
        if src == TRUTH_STRIP:
            return None if truth is None else np.where(strip, truth, np.nan)
        if src == REFERENCE:
            return ref
        m = model_of(src)
        v = model_out[m][0]
        return np.where(strip, v, np.nan) if src.endswith(STRIP) else v

    out = {"orbit": int(orbit), "months": months.astype("datetime64[ns]"), "sources": list(sources),
           "identities": _identities(sources, cfg, cfg.get("identities")),
           "counts": {}, "sums": {}, "sumsq": {}, "skill": {}, "field_skill": {}}
    n_groups = n_m * n_reg * n_surf
    for src in sources:
        v = values_of(src)
        counts = np.zeros((n_groups, nb), np.int64)
        sums = np.zeros(n_groups)
        sumsq = np.zeros(n_groups)
        if v is not None:
            accumulate_layers(v, layers, counts, sums, sumsq)
        out["counts"][src] = counts.reshape(n_m, n_reg, n_surf, nb)
        out["sums"][src] = sums.reshape(n_m, n_reg, n_surf)
        out["sumsq"][src] = sumsq.reshape(n_m, n_reg, n_surf)
    # skill pairs on the AR6 partition (and on the extra regions, with cfg["skill_extra"])
    n_skill = len(skill_labels(cfg))
    smap = np.full(n_reg, -1, np.int64)
    smap[:n_ar6] = np.arange(n_ar6)
    skill_layers = [g_ar6]
    if cfg.get("skill_extra"):
        for k in range(len(cfg.get("extra_regions", ()))):
            smap[n_ar6 + len(RG.LAT_BAND_SPECS) + k] = n_ar6 + k
            skill_layers.append(layers[2 + k])
    main_month = int(np.bincount(midx).argmax())
    for pair in pairs_for(sources):
        a, b = pair.split("|")
        pa, pb = values_of(a), values_of(b)
        if pa is None or pb is None:
            continue
        quant = levels = None
        if model_of(a):
            _, quant, levels = model_out[model_of(a)]
        out["skill"][pair] = _grouped_skill(pa, pb, quant, levels, skill_layers, n_m, n_reg, smap, n_skill)
        cols = strip.any(axis=0) if a.endswith(STRIP) or b == TRUTH_STRIP else np.ones(C, bool)
        f = np.zeros((n_m, len(FIELD_STATS)))
        f[main_month] = SK.field_stats(pa[:, cols], pb[:, cols])
        out["field_skill"][pair] = f
    return out


def _regroup(g, n_reg, n_surf, region):
    s = g % n_surf
    mon = (g // n_surf) // n_reg
    return (mon * n_reg + region) * n_surf + s


def _grouped_skill(p, r, quant, levels, layers, n_m, n_reg, smap, n_skill):
    """Additive skill statistics of the pixel pairs grouped by (month, skill region, surface):
    ``layers`` are group-id arrays on the full region axis (the AR6 layer, then any extra-region
    layers); ``smap`` maps a full-axis region index to its skill-region index (-1: not stored)."""
    n_surf = len(SURFACES)
    ok, mat = SK.pixel_stats(p, r, quantiles=quant, levels=levels)
    names = SK.pixel_stat_names(levels=levels)
    size = n_m * n_skill * n_surf
    out = np.zeros((size, len(PIXEL_STATS)))
    col = {n: i for i, n in enumerate(PIXEL_STATS)}
    for layer in layers:
        g = layer[ok]
        keep = g >= 0
        g, m = g[keep], mat[keep]
        # regroup from the full region axis to the skill regions
        s = g % n_surf
        rest = g // n_surf
        reg = smap[rest % n_reg]
        mon = rest // n_reg
        keep = reg >= 0
        gg = ((mon * n_skill + reg) * n_surf + s)[keep]
        m = m[keep]
        for k, name in enumerate(names):
            if name in col and m.shape[0]:
                out[:, col[name]] += np.bincount(gg, weights=m[:, k], minlength=size)
    return out.reshape(n_m, n_skill, n_surf, len(PIXEL_STATS))


# --------------------------------------------------------------------------- partial files
def _partial_name(orbit: int, sources: Sequence[str]) -> str:
    return f"o{int(orbit)}__{'+'.join(sorted(sources))}.npz"


def _parse_partial_name(name: str):
    m = re.match(r"^o(-?\d+)__(.+)\.npz$", name)
    if not m:
        return None
    return int(m.group(1)), m.group(2).split("+")


def write_partial(part: dict, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / _partial_name(part["orbit"], part["sources"])
    arrays = {"orbit": np.array(part["orbit"]), "months": part["months"],
              "sources": np.array(part["sources"]), "pairs": np.array(list(part["skill"])),
              "identities": np.array(json.dumps(part.get("identities") or {}, sort_keys=True))}
    for i, s in enumerate(part["sources"]):
        arrays[f"count_{i}"] = part["counts"][s]
        arrays[f"sum_{i}"] = part["sums"][s]
        arrays[f"sumsq_{i}"] = part["sumsq"][s]
    for i, p in enumerate(part["skill"]):
        arrays[f"skill_{i}"] = part["skill"][p]
        arrays[f"field_{i}"] = part["field_skill"][p]
    tmp = folder / temp_name(path.name, ".npz")  # records the pid: stale once this process is gone
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return path


def read_partial(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        srcs = [str(s) for s in z["sources"]]
        pairs = [str(p) for p in z["pairs"]]
        return {"orbit": int(z["orbit"]), "months": z["months"].astype("datetime64[ns]"), "sources": srcs,
                "identities": _npz_identities(z),
                "counts": {s: z[f"count_{i}"] for i, s in enumerate(srcs)},
                "sums": {s: z[f"sum_{i}"] for i, s in enumerate(srcs)},
                "sumsq": {s: z[f"sumsq_{i}"] for i, s in enumerate(srcs)},
                "skill": {p: z[f"skill_{i}"] for i, p in enumerate(pairs)},
                "field_skill": {p: z[f"field_{i}"] for i, p in enumerate(pairs)}}


#: what reading a damaged partial raises (truncated, empty, bit-flipped files)
_DAMAGE = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)
_PARTIAL_FIELDS = {"orbit.npy", "months.npy", "sources.npy", "pairs.npy"}


def partial_damage(path: Path) -> str | None:
    """None if the partial file is whole (a zip whose every member passes its CRC check and
    that holds the fields of a partial), else what is wrong with it."""
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
            names = set(z.namelist())
    except _DAMAGE as e:
        return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    if bad is not None:
        return f"member {bad} fails its CRC check"
    if not _PARTIAL_FIELDS <= names:
        return f"fields missing: {', '.join(sorted(_PARTIAL_FIELDS - names))}"
    return None


def _discard_damaged(path: Path, why: str) -> None:
    log.warning("discarding damaged partial %s (%s): its orbit is recomputed", Path(path).name, why)
    Path(path).unlink(missing_ok=True)


def _npz_identities(z) -> dict:
    """Identities recorded in an open partial file ({} for partials written before they were)."""
    if "identities" not in z.files:
        return {}
    try:
        return json.loads(str(z["identities"]))
    except ValueError:
        return {}


def partial_identities(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return _npz_identities(z)


def _orbit_task(orbit: int, sources: list[str], cfg: dict, folder: str) -> dict:
    """One dask task: compute and write the partial of one orbit; return where and what."""
    t0 = _time.perf_counter()
    part = orbit_partial(orbit, sources, cfg)
    path = write_partial(part, Path(folder))
    return {"orbit": int(orbit), "path": str(path), "seconds": _time.perf_counter() - t0,
            "pixels": int(sum(np.sum(c[..., :]) for c in part["counts"].values()))}


# --------------------------------------------------------------------------- the cube store
def default_cube_path() -> Path:
    from catalogs.config import get_roots

    return get_roots().sub("cubes") / "climatology.zarr"


def partials_dir(path: Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".partials")


def read_ledger(path: Path) -> dict:
    path = Path(path)
    if not is_complete(path):
        return {"format": FORMAT_VERSION, "config": None, "sources": {}, "pairs": {}, "identities": {}}
    return json.loads((path / LEDGER).read_text())


def _config_key(cfg: dict) -> dict:
    key = {"format": FORMAT_VERSION, "world_seed": int(cfg.get("world_seed", 0)), "n_scans": cfg.get("n_scans"),
           "regions": list(cfg["regions"]), "edges": [float(e) for e in D.EDGES[:-1]],
           "model_product": cfg.get("model_product", "precip_mean"), "loader": cfg.get("loader", "simulator")}
    if cfg.get("skill_extra"):  # only when set: cubes built before the option keep their key
        key["skill_extra"] = True
    return key


def skill_labels(cfg: dict) -> list[str]:
    """The ``skill_region`` axis: the AR6 partition, then (``skill_extra``) the extra regions."""
    return ar6_labels() + (list(cfg.get("extra_regions", ())) if cfg.get("skill_extra") else [])


def empty_cube(sources, pairs, regions, months, skill_regions=None) -> xr.Dataset:
    ns, nr, nt, nsf, nb = len(sources), len(regions), len(months), len(SURFACES), D.N_BINS
    skill_regions = ar6_labels() if skill_regions is None else list(skill_regions)
    n_ar6 = len(skill_regions)
    return xr.Dataset(
        {
            "count": (("source", "region", "time", "surface", "bin"), np.zeros((ns, nr, nt, nsf, nb), np.int64)),
            "total": (("source", "region", "time", "surface"), np.zeros((ns, nr, nt, nsf))),
            "total_sq": (("source", "region", "time", "surface"), np.zeros((ns, nr, nt, nsf))),
            "skill": (("pair", "skill_region", "time", "surface", "stat"),
                      np.zeros((len(pairs), n_ar6, nt, nsf, len(PIXEL_STATS)))),
            "field_skill": (("pair", "time", "fstat"), np.zeros((len(pairs), nt, len(FIELD_STATS)))),
        },
        coords={"source": list(sources), "region": list(regions), "time": np.asarray(months, "datetime64[ns]"),
                "surface": list(SURFACES), "bin": np.arange(nb), "bin_lower": ("bin", D.EDGES[:-1]),
                "bin_upper": ("bin", D.EDGES[1:]), "pair": list(pairs), "skill_region": skill_regions,
                "stat": list(PIXEL_STATS), "fstat": list(FIELD_STATS)},
    )


def _write_cube(ds: xr.Dataset, ledger: dict, path: Path) -> Path:
    ds = ds.copy()
    ds.attrs = {"title": "raincheck climatology cube", "format": FORMAT_VERSION,
                "bins": "bin 0: [0, 0.1) mm h-1; 35 log bins 0.1..316 (10/decade); overflow [316, inf)",
                "units_total": "mm h-1 (sum of rates)", "created_by": "evaluation.cube.build_cube"}
    ds["count"].attrs = {"long_name": "pixel count", "units": "1"}
    ds["total"].attrs = {"long_name": "sum of rain rates", "units": "mm h-1"}
    ds["total_sq"].attrs = {"long_name": "sum of squared rain rates", "units": "mm2 h-2"}
    enc = {
        "count": {"chunks": (1, 1, max(ds.sizes["time"], 1), len(SURFACES), D.N_BINS)},
        "total": {"chunks": (1, 1, max(ds.sizes["time"], 1), len(SURFACES))},
        "total_sq": {"chunks": (1, 1, max(ds.sizes["time"], 1), len(SURFACES))},
        "skill": {"chunks": (1, ds.sizes["skill_region"], max(ds.sizes["time"], 1), len(SURFACES), len(PIXEL_STATS))},
    }

    def writer(tmp: Path) -> None:
        ds.to_zarr(tmp, mode="w", consolidated=True, zarr_format=2, encoding=enc)
        (tmp / LEDGER).write_text(json.dumps(ledger, sort_keys=True))

    return atomic_write(path, writer, meta={"kind": "climatology-cube", "format": FORMAT_VERSION})


def _pair_sides(pair: str) -> list[str]:
    return pair.split("|")


def merge_partials(path: Path, partial_paths: Sequence[Path], cfg: dict, *, progress=None,
                   drop: Iterable[str] = (), adopt: dict | None = None) -> dict:
    """Merge partial files into the cube at ``path`` (created if missing), atomically, with the
    ledger updated; (source, orbit) pairs already in the ledger are skipped. Returns the ledger.

    ``drop``: sources to remove first (their histograms, every skill pair involving them, their
    ledger entries and identities), e.g. stale ones being rebuilt. Identities: a source of a
    partial is merged only if its identity equals the one the ledger records for that source
    (or the source is new to the cube); a pair only if both its sides match. What does not match
    is skipped with a warning (the cube never mixes two versions of a source). A truth/reference
    source of a cube written before identities were recorded takes the partial's identity (logged),
    or the one given in ``adopt`` ({source: identity}, what :func:`build_cube` checked)."""
    path = Path(path)
    ledger = read_ledger(path)
    key = _config_key(cfg)
    if ledger["config"] is not None and ledger["config"] != key:
        raise CubeConfigMismatch(f"cube {path} was built with a different configuration: "
                                 f"{_diff(ledger['config'], key)}")
    ledger["config"] = key
    drop = set(drop)
    idents: dict = dict(ledger.get("identities") or {})
    for s in drop:
        ledger["sources"].pop(s, None)
        idents.pop(s, None)
    for p in list(ledger["pairs"]):
        if drop & set(_pair_sides(p)):
            ledger["pairs"].pop(p)
    assumed = [s for s in ledger.get("assumed_identities", []) if s not in drop]
    done_s = {s: set(v) for s, v in ledger["sources"].items()}
    for s, ident in (adopt or {}).items():
        if done_s.get(s) and s not in idents and model_of(s) is None:
            log.info("cube %s: %s has no recorded identity (written before identities were recorded); taking it "
                     "as %s", path, s, _fmt_identity(ident))
            idents[s] = ident
            assumed.append(s)
    done_p = {p: set(v) for p, v in ledger["pairs"].items()}
    parts = []
    for pp in partial_paths:
        info = _parse_partial_name(Path(pp).name)
        if info is None:
            continue
        o, srcs = info
        if all(o in done_s.get(s, ()) for s in srcs):
            continue
        parts.append(Path(pp))
    old = open_cube(path).ds.load() if is_complete(path) else None
    if old is not None and drop:
        keep_s = [str(s) for s in old["source"].values if str(s) not in drop]
        keep_p = [str(p) for p in old["pair"].values if not drop & set(_pair_sides(str(p)))]
        old = old.sel(source=keep_s, pair=keep_p)
        # months only the dropped sources had
        has = old["count"].sum(("source", "region", "surface", "bin")).values > 0 if keep_s else \
            np.zeros(old.sizes["time"], bool)
        old = old.isel(time=np.flatnonzero(has))
    if not parts and not (drop and old is not None):
        return ledger
    # the union of sources, pairs, months
    sources = [str(s) for s in old["source"].values] if old is not None else []
    pairs = [str(p) for p in old["pair"].values] if old is not None else []
    months = set(old["time"].values.astype("datetime64[ns]").tolist()) if old is not None else set()

    def accepts(s, pid, pp) -> bool:
        """Whether the partial's ``s`` is the version the cube holds (adopting it if new)."""
        got = pid.get(s)
        if s in idents:
            if got == idents[s]:
                return True
            log.warning("cube %s: skipping %s of %s: identity %s, the cube holds %s", path, s, Path(pp).name,
                        _fmt_identity(got), _fmt_identity(idents[s]))
            return False
        if got is None:
            log.warning("cube %s: skipping %s of %s: the partial records no identity", path, s, Path(pp).name)
            return False
        if done_s.get(s) and model_of(s) is not None:
            log.warning("cube %s: skipping %s of %s: the cube holds %s with no recorded identity (stale); rebuild "
                        "it with replace_stale=True", path, s, Path(pp).name, s)
            return False
        if done_s.get(s):
            log.info("cube %s: %s has no recorded identity (written before identities were recorded); taking it "
                     "as %s", path, s, _fmt_identity(got))
            assumed.append(s)
        idents[s] = got
        return True

    metas = []
    taking_s: dict = {}
    taking_p: dict = {}
    damaged = []
    for pp in parts:
        why = partial_damage(pp)
        if why is None:
            try:
                with np.load(pp, allow_pickle=False) as z:
                    srcs = [str(s) for s in z["sources"]]
                    prs = [str(p) for p in z["pairs"]]
                    ms = z["months"].astype("datetime64[ns]")
                    pid = _npz_identities(z)
                    o = int(z["orbit"])
            except _DAMAGE as e:
                why = f"{type(e).__name__}: {e}"
        if why is not None:  # not merged: its orbit stays missing from the ledger, a rerun computes it
            _discard_damaged(pp, why)
            damaged.append(pp)
            continue
        pid = _legacy_partial(pid, srcs + [x for p in prs for x in _pair_sides(p)], cfg.get("identities"),
                              f"partial {Path(pp).name}")
        srcs = [s for s in srcs if o not in done_s.get(s, ()) and o not in taking_s.get(s, ()) and accepts(s, pid, pp)]
        ok_p = []
        for p in prs:
            if o in done_p.get(p, ()) or o in taking_p.get(p, ()):
                continue
            if all(pid.get(x) is not None and (x not in idents or pid[x] == idents[x]) for x in _pair_sides(p)):
                ok_p.append(p)
            else:
                log.warning("cube %s: skipping pair %s of %s: its sides are not the versions the cube holds",
                            path, p, Path(pp).name)
        for s in srcs:
            taking_s.setdefault(s, set()).add(o)
        for p in ok_p:
            taking_p.setdefault(p, set()).add(o)
        if not srcs and not ok_p:
            continue
        metas.append((pp, srcs, ok_p, ms))
        for s in srcs:
            if s not in sources:
                sources.append(s)
        for p in ok_p:
            if p not in pairs:
                pairs.append(p)
        months.update(ms.tolist())
    if not metas and not drop and set(idents) == set(ledger.get("identities") or {}):
        for pp in parts:  # nothing usable in them (already merged, or stale)
            Path(pp).unlink(missing_ok=True)
        return ledger
    months = np.array(sorted(months), dtype="datetime64[ns]")
    new = empty_cube(sources, pairs, cfg["regions"], months, skill_labels(cfg))
    cnt, tot, tsq = new["count"].values, new["total"].values, new["total_sq"].values
    skl, fsk = new["skill"].values, new["field_skill"].values
    si = {s: i for i, s in enumerate(sources)}
    pi = {p: i for i, p in enumerate(pairs)}
    ti = {m: i for i, m in enumerate(months.tolist())}
    if old is not None:
        t_old = [ti[m] for m in old["time"].values.astype("datetime64[ns]").tolist()]
        for s in old["source"].values:
            k = si[str(s)]
            cnt[k][:, t_old] = old["count"].sel(source=s).values
            tot[k][:, t_old] = old["total"].sel(source=s).values
            tsq[k][:, t_old] = old["total_sq"].sel(source=s).values
        for p in old["pair"].values:
            k = pi[str(p)]
            skl[k][:, t_old] = old["skill"].sel(pair=p).values
            fsk[k][t_old] = old["field_skill"].sel(pair=p).values

    for n, (pp, srcs, prs, ms) in enumerate(metas):
        part = read_partial(pp)
        o = part["orbit"]
        t_idx = [ti[m] for m in ms.tolist()]
        for s in srcs:
            k = si[s]
            cnt[k][:, t_idx] += np.moveaxis(part["counts"][s], 0, 1)
            tot[k][:, t_idx] += np.moveaxis(part["sums"][s], 0, 1)
            tsq[k][:, t_idx] += np.moveaxis(part["sumsq"][s], 0, 1)
            done_s.setdefault(s, set()).add(o)
        for p in prs:
            k = pi[p]
            skl[k][:, t_idx] += np.moveaxis(part["skill"][p], 0, 1)
            fsk[k][t_idx] += part["field_skill"][p]
            done_p.setdefault(p, set()).add(o)
        if progress:
            progress(n + 1, len(metas), "merging partials")
    ledger["sources"] = {s: sorted(v) for s, v in done_s.items()}
    ledger["pairs"] = {p: sorted(v) for p, v in done_p.items()}
    ledger["identities"] = {s: idents[s] for s in sorted(idents) if s in done_s}
    if assumed:
        ledger["assumed_identities"] = sorted(set(assumed))
    else:
        ledger.pop("assumed_identities", None)
    _write_cube(new, ledger, path)
    for pp in parts:  # merged and recorded: the partials are no longer needed
        Path(pp).unlink(missing_ok=True)
    return ledger


def _diff(a: dict, b: dict) -> str:
    keys = sorted(set(a) | set(b))
    return "; ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in keys if a.get(k) != b.get(k))[:500]


def build_cube(
    orbits: Iterable[int],
    sources: Sequence[str] = (TRUTH, REFERENCE),
    path: str | os.PathLike | None = None,
    *,
    scheduler=None,
    n_workers: int = 2,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: threading.Event | None = None,
    world_seed: int = 0,
    n_scans: int | None = None,
    extra_regions: Sequence[str] = (),
    model_fns: dict | None = None,
    model_product: str = "precip_mean",
    torch_threads: int | None = 1,
    max_tasks: int | None = None,
    replace_stale: bool = False,
    skill_extra: bool = False,
) -> Path:
    """Build (or extend) the cube at ``path`` with ``orbits`` × ``sources``.

    ``sources``: ``truth`` (adds ``truth_strip``), ``reference``, model names (add
    ``<model>@strip``; pairs with reference and truth). ``scheduler``: None → a
    ``LocalCluster(n_workers, threads_per_worker=1, processes=True)``; a scheduler address
    (``tcp://…``) or a ``distributed.Client``; ``"inline"`` → in this process, no dask.
    ``progress(done, total, message)``; ``cancel`` (threading.Event) stops after the running
    tasks (finished orbits are kept and resume). ``max_tasks`` stops after that many orbits
    were computed (for tests of interruption). Returns the cube path.

    Identities (:func:`source_identity`): if the cube holds a requested source computed by
    another version of it (a retrained model, another simulator version), the build raises
    :class:`StaleSource`; with ``replace_stale=True`` it drops that source (histograms, skill
    pairs, ledger entries; for truth/reference every model too, since their pairs go) and its
    partials, and rebuilds it on ``orbits``. Partials of another version are never reused.

    ``skill_extra``: also store the skill statistics on the extra regions (the ``skill_region``
    axis is then the AR6 partition + ``extra_regions``), so scores answer for them too (box cubes
    are built this way)."""
    path = Path(path) if path is not None else default_cube_path()
    if path.parent.is_dir():  # a merge killed mid-write: its temp goes (or a whole cube comes back)
        from catalogs.store import cleanup_stale

        cleanup_stale(path.parent)
    srcs = expand_sources(sources)
    cfg = {"world_seed": int(world_seed), "n_scans": n_scans, "regions": region_labels(extra_regions),
           "extra_regions": [RG.get_region(s).spec for s in extra_regions], "model_fns": model_fns or {},
           "model_product": model_product, "torch_threads": torch_threads, "loader": "simulator",
           "skill_extra": bool(skill_extra and extra_regions)}
    ledger = read_ledger(path)
    if ledger["config"] is not None and ledger["config"] != _config_key(cfg):
        raise CubeConfigMismatch(f"cube {path} was built with a different configuration: "
                                 f"{_diff(ledger['config'], _config_key(cfg))}")
    cur = _identities(srcs, cfg)
    cfg["identities"] = cur
    drop, adopt = _check_identities(path, ledger, srcs, cur, replace_stale)
    pdir = partials_dir(path)
    pdir.mkdir(parents=True, exist_ok=True)
    from catalogs.store import cleanup_stale

    cleanup_stale(pdir)  # temps of killed workers (a live writer's are kept)
    # what each orbit still needs, minus what finished partials (of the current versions) hold
    have: dict[int, set] = {}
    damaged = 0
    for f in sorted(pdir.glob("o*.npz")):
        info = _parse_partial_name(f.name)
        if not info:
            continue
        why = partial_damage(f)
        if why is None:
            try:
                pid = partial_identities(f)
            except _DAMAGE as e:
                why = f"{type(e).__name__}: {e}"
        if why is not None:  # truncated, empty or bit-flipped (a crash, a full disk): recompute it
            _discard_damaged(f, why)
            damaged += 1
            continue
        pid = _legacy_partial(pid, [x for x in cur if x in info[1] or x in BUILTIN], cur, f"partial {f.name}")
        bad = sorted({x for x in set(info[1]) | set(pid) if (x in cur and pid.get(x) != cur[x])
                      or (x in drop and x not in cur)})
        if bad:
            log.info("removing stale partial %s (%s: not the current version)", f.name, ", ".join(bad))
            f.unlink(missing_ok=True)
            continue
        have.setdefault(info[0], set()).update(info[1])
    done = {s: (set() if s in drop else set(v)) for s, v in ledger["sources"].items()}
    todo = []
    for o in dict.fromkeys(int(x) for x in orbits):
        need = [s for s in srcs if o not in done.get(s, ()) and s not in have.get(o, set())]
        if need:
            # keep a model's two sources together (one inference feeds both)
            todo.append((o, expand_sources(need)))
    total = len(todo)
    if progress:
        progress(0, total, f"{total} orbit(s) to compute, {len(have)} partial(s) to reuse"
                 + (f", {damaged} damaged partial(s) discarded" if damaged else ""))
    if max_tasks is not None:
        todo = todo[:max_tasks]
    try:
        _run_tasks(todo, cfg, pdir, scheduler, n_workers, progress, cancel, total)
    finally:
        pass
    if max_tasks is not None and max_tasks < total:
        raise BuildCancelled(f"stopped after {max_tasks} of {total} orbits (max_tasks)")
    merge_partials(path, sorted(pdir.glob("o*.npz")), cfg, progress=None, drop=drop, adopt=adopt)
    if progress:
        progress(total, total, "cube written")
    return path


def _check_identities(path: Path, ledger: dict, srcs: Sequence[str], cur: dict, replace_stale: bool):
    """(sources to drop, legacy truth/reference identities to adopt) for a build of ``srcs``
    whose current identities are ``cur``; raises :class:`StaleSource` on a mismatch unless
    ``replace_stale``."""
    stored_all = ledger.get("identities") or {}
    stale: dict = {}
    adopt: dict = {}
    for s in srcs:
        if not ledger["sources"].get(s):
            continue
        stored = stored_all.get(s)
        if stored is None and model_of(s) is None:
            log.info("cube %s: %s has no recorded identity (written before identities were recorded); it is "
                     "taken as the current %s", path, s, _fmt_identity(cur[s]))
            adopt[s] = cur[s]
        elif stored != cur[s]:
            stale.setdefault(_group(s), (stored, cur[s]))
    if not stale:
        return set(), adopt
    if not replace_stale:
        lines = [f"  {'truth/reference' if g == TRUTH else repr(g)}: the cube holds {_fmt_identity(a)}; "
                 f"now {_fmt_identity(b)}" for g, (a, b) in stale.items()]
        names = ",".join(sorted("truth,reference" if g == TRUTH else g for g in stale))
        raise StaleSource(f"cube {path} holds sources computed by another version of them (a retrained model or "
                          f"another simulator version); their numbers would be mixed with the new ones:\n"
                          + "\n".join(lines)
                          + f"\nFix: rebuild them with replace_stale=True (raincheck climatology build --sources "
                            f"{names} ... --replace-stale): the stale sources are dropped (histograms, skill pairs, "
                            f"ledger entries) and recomputed on the requested orbits.")
    in_cube = set(ledger["sources"])
    drop = set()
    for g in stale:
        if g == TRUTH:  # every pair involves truth or reference: models go too
            drop |= {x for x in in_cube if model_of(x) is None} | {TRUTH, TRUTH_STRIP, REFERENCE}
            others = sorted({model_of(x) for x in in_cube if model_of(x) and model_of(x) not in
                             {model_of(y) for y in srcs}})
            if others:
                log.warning("cube %s: truth/reference are stale; dropping the models built against them too (%s): "
                            "rebuild them with --sources", path, ", ".join(others))
            drop |= {x for x in in_cube if model_of(x)}
        else:
            drop |= {g, g + STRIP}
        a, b = stale[g]
        log.warning("cube %s: replacing stale %s (%s → %s)", path, "truth/reference" if g == TRUTH else g,
                    _fmt_identity(a), _fmt_identity(b))
    return drop, {k: v for k, v in adopt.items() if k not in drop}


def _run_tasks(todo, cfg, pdir, scheduler, n_workers, progress, cancel, total):
    if not todo:
        return
    if scheduler == "inline":
        for n, (o, s) in enumerate(todo):
            if cancel is not None and cancel.is_set():
                raise BuildCancelled(f"cancelled after {n} of {total} orbits; rerun to resume")
            _orbit_task(o, s, cfg, str(pdir))
            if progress:
                progress(n + 1, total, f"orbit {o}")
        return
    from distributed import as_completed

    from catalogs.runtime import dask_client

    with dask_client(scheduler, n_workers) as client:
        cfg_f = client.scatter(cfg, broadcast=True) if cfg.get("model_fns") else cfg
        futs = [client.submit(_orbit_task, o, s, cfg_f, str(pdir), key=f"cube-orbit-{o}-{uuid.uuid4().hex[:6]}",
                              pure=False) for o, s in todo]
        done = 0
        for fut in as_completed(futs):
            fut.result()  # re-raise task errors
            done += 1
            if progress:
                progress(done, total, "orbits")
            if cancel is not None and cancel.is_set():
                for f in futs:
                    f.cancel()
                raise BuildCancelled(f"cancelled after {done} of {total} orbits; rerun to resume")


# --------------------------------------------------------------------------- query
def parse_period(period) -> tuple[np.datetime64 | None, np.datetime64 | None]:
    """"2015-2019" (years inclusive), "2015", "2015-06:2016-05" (months inclusive), a
    (start, end) pair, or None → (start, end-exclusive) datetime64 bounds."""
    if period is None or period == "":
        return None, None
    if isinstance(period, (tuple, list)):
        a, b = period
        return np.datetime64(a, "ns"), np.datetime64(b, "ns")
    p = str(period).strip()
    m = re.fullmatch(r"(\d{4})(?:\s*-\s*(\d{4}))?", p)
    if m:
        y0 = int(m.group(1))
        y1 = int(m.group(2) or y0)
        if y1 < y0:
            raise ValueError(f"period {period!r} ends before it starts")
        return np.datetime64(f"{y0}-01-01", "ns"), np.datetime64(f"{y1 + 1}-01-01", "ns")
    m = re.fullmatch(r"(\d{4}-\d{2})\s*:\s*(\d{4}-\d{2})", p)
    if m:
        a = np.datetime64(m.group(1), "M")
        b = np.datetime64(m.group(2), "M") + 1
        return a.astype("datetime64[ns]"), b.astype("datetime64[ns]")
    raise ValueError(f"period must look like '2015-2019', '2015' or '2015-06:2016-05', got {period!r}")


def parse_season(season) -> tuple[int, ...] | None:
    if season is None or season == "" or str(season).lower() == "all":
        return None
    s = str(season).upper()
    if s in SEASONS:
        return SEASONS[s]
    try:
        m = int(s)
        if 1 <= m <= 12:
            return (m,)
    except ValueError:
        pass
    raise ValueError(f"season must be one of DJF, MAM, JJA, SON or a month 1-12, got {season!r}")


class Cube:
    """Read access to a climatology cube; every query is a sum over stored integer counts."""

    def __init__(self, ds: xr.Dataset, path: Path | None = None, ledger: dict | None = None):
        self.ds = ds
        self.path = path
        self.ledger = ledger or {}
        self._cache: dict = {}

    # -- metadata
    @property
    def sources(self) -> list[str]:
        return [str(s) for s in self.ds["source"].values]

    @property
    def models(self) -> list[str]:
        return [s for s in self.sources if s not in BUILTIN and not s.endswith(STRIP)]

    @property
    def regions(self) -> list[str]:
        return [str(r) for r in self.ds["region"].values]

    @property
    def times(self) -> np.ndarray:
        return self.ds["time"].values

    def n_orbits(self, source: str) -> int:
        return len(self.ledger.get("sources", {}).get(source, ()))

    def identity(self, source: str) -> dict | None:
        """Which version of ``source`` the cube's numbers come from (:func:`source_identity`):
        e.g. ``{"checkpoint_sha256": "0123456789ab", "product_version": "raincheck-sim-4"}`` for a
        model (``<model>@strip`` is the model's), ``{"truth_version": ...}`` for truth/reference;
        None when the cube was written before identities were recorded."""
        ids = self.ledger.get("identities") or {}
        if source not in ids and source.endswith(STRIP):
            source = source[: -len(STRIP)]
        got = ids.get(source)
        return dict(got) if got is not None else None

    def identities(self) -> dict:
        """{source: identity or None} for the cube's models, truth and reference."""
        return {s: self.identity(s) for s in self.sources if not s.endswith(STRIP) and s != TRUTH_STRIP}

    def describe(self) -> dict:
        t = self.times
        return {"path": str(self.path) if self.path else None, "sources": self.sources,
                "orbits": {s: self.n_orbits(s) for s in self.sources},
                "months": int(t.size),
                "first_month": str(t.min())[:7] if t.size else None, "last_month": str(t.max())[:7] if t.size else None,
                "regions": len(self.regions), "config": self.ledger.get("config", {}) and {
                    k: v for k, v in self.ledger["config"].items() if k in ("world_seed", "n_scans", "model_product")},
                "identities": self.identities(),
                **({"identities_assumed": list(self.ledger["assumed_identities"])}
                   if self.ledger.get("assumed_identities") else {})}

    # -- selection helpers
    def region_selection(self, region) -> tuple[list[str], list[str] | None]:
        """(region labels to sum, surfaces or None) answering a region spec from the cube."""
        r = RG.get_region(region)
        if r.kind == "global":
            return list(RG.LAT_BAND_SPECS), None
        if r.kind in ("land", "ocean"):
            return list(RG.LAT_BAND_SPECS), list(SURFACE_GROUPS[r.kind])
        if r.kind == "lat":
            lo, hi = r.params
            bands = [s for s in RG.LAT_BAND_SPECS if lo <= float(s.split(":")[1]) and float(s.split(":")[2]) <= hi]
            covered = sum(10 for _ in bands)
            if covered != hi - lo:
                raise RegionNotInCube(f"latitude band {r.spec} does not align with the cube's 10° bands; "
                                      f"build the cube with extra_regions=[{r.spec!r}]")
            return bands, None
        if r.spec in self.regions:
            return [r.spec], None
        raise RegionNotInCube(f"region {r.spec!r} is not in this cube; rebuild with "
                              f"extra_regions=[{r.spec!r}] (raincheck climatology build --extra-region ...)")

    def _time_mask(self, period=None, season=None) -> np.ndarray:
        t = self.times
        m = np.ones(t.size, bool)
        a, b = parse_period(period)
        if a is not None:
            m &= (t >= a) & (t < b)
        months = parse_season(season)
        if months is not None:
            m &= np.isin(pd.DatetimeIndex(t).month, months)
        return m

    def _slab(self, var: str, source: str, labels: list[str], surfaces: list[str] | None, dim="region"):
        """Σ over regions and surfaces of one source: (time, [bin])."""
        key = (var, source, tuple(labels), tuple(surfaces) if surfaces else None)
        if key in self._cache:
            return self._cache[key]
        if source not in self.sources:
            raise KeyError(f"source {source!r} is not in this cube (has {', '.join(self.sources)})")
        # one in-memory copy per (variable, source), then plain numpy: indexing the lazily
        # opened file with lists of regions/surfaces re-reads and re-decompresses it each time
        skey = ("source-array", var, source)
        arr = self._cache.get(skey)
        if arr is None:
            arr = self._cache[skey] = np.asarray(self.ds[var].isel(source=self.sources.index(source)).values)
        dims = [d for d in self.ds[var].dims if d != "source"]
        ra, sa = dims.index("region"), dims.index("surface")
        idx = [self.regions.index(x) for x in labels]
        sub = np.take(arr, idx, axis=ra)
        if surfaces:
            surf_all = [str(v) for v in self.ds["surface"].values]
            sub = np.take(sub, [surf_all.index(x) for x in surfaces], axis=sa)
        out = sub.sum(axis=(ra, sa))
        self._cache[key] = out
        return out

    def histogram(self, source: str, region="global", *, period=None, season=None, surface=None) -> dict:
        """Summed histogram of ``source`` over a region, period, season and surface:
        {counts (bin,), n, total, total_sq, edges}."""
        labels, surfs = self.region_selection(region)
        if surface:
            surfs = [s for s in _surfaces(surface) if surfs is None or s in surfs]
        tm = self._time_mask(period, season)
        c = self._slab("count", source, labels, surfs)[tm].sum(axis=0)
        s = self._slab("total", source, labels, surfs)[tm].sum()
        s2 = self._slab("total_sq", source, labels, surfs)[tm].sum()
        return {"counts": c.astype(np.int64), "n": int(c.sum()), "total": float(s), "total_sq": float(s2),
                "edges": D.EDGES}

    def series(self, source: str, region="global", stat="mean", *, freq="year", period=None, season=None,
               surface=None, min_count: int = 1) -> pd.DataFrame:
        """One value per period (``freq`` year | season | month) of ``stat``: mean, wet_fraction,
        q99, q999 (or q<digits>, e.g. q95), exceed:<threshold>. Columns: time (mid-period),
        value, n (pixels), months (number of months sampled). Seasons are labelled by the year
        of their last month (DJF 2000 = Dec 1999 – Feb 2000)."""
        labels, surfs = self.region_selection(region)
        if surface:
            surfs = [s for s in _surfaces(surface) if surfs is None or s in surfs]
        tm = self._time_mask(period, season)
        t = pd.DatetimeIndex(self.times[tm])
        C = self._slab("count", source, labels, surfs)[tm]
        S = self._slab("total", source, labels, surfs)[tm]
        if freq == "month":
            key = t.year * 100 + t.month
            mid = t + pd.Timedelta(days=14)
        elif freq == "year":
            key = np.asarray(t.year)
            mid = pd.to_datetime([f"{y}-07-02" for y in t.year])
        elif freq == "season":
            sy = t.year + (t.month == 12)
            sidx = ((t.month % 12) // 3)  # DJF 0, MAM 1, JJA 2, SON 3
            key = np.asarray(sy * 10 + sidx)
            mid = pd.to_datetime([f"{y}-{[1, 4, 7, 10][i]:02d}-15" for y, i in zip(sy, sidx)])
        else:
            raise ValueError(f"freq must be 'year', 'season' or 'month', got {freq!r}")
        rows = []
        for k in np.unique(key):
            sel = np.asarray(key == k)
            c = C[sel].sum(axis=0)
            n = int(c.sum())
            if n < min_count:
                continue
            rows.append({"time": mid[sel][0], "value": _stat(stat, c, S[sel].sum(), n), "n": n,
                         "months": int(sel.sum()), "month_times": t[sel].values})
        df = pd.DataFrame(rows, columns=["time", "value", "n", "months", "month_times"])
        return df

    def skill(self, model: str, against: str = REFERENCE, region="global", *, period=None, season=None,
              surface=None) -> dict:
        """Scores of ``model`` (a model name, or ``reference``) against ``reference`` (on the
        strip) or ``truth`` from the summed statistics; FSS / effective resolution are global
        (whole fields) and ignore region and surface."""
        pair = _pair_name(model, against)
        if pair not in [str(p) for p in self.ds["pair"].values]:
            raise KeyError(f"no skill statistics for {model!r} against {against!r} in this cube")
        labels, surfs = self.region_selection(region)
        if labels == list(RG.LAT_BAND_SPECS):
            labels = ar6_labels()  # the AR6 partition covers the globe too
        ar6 = [str(x) for x in self.ds["skill_region"].values]  # the AR6 partition (+ extra regions)
        if not all(x in ar6 for x in labels):
            raise RegionNotInCube(f"skill statistics are stored on the AR6 partition; {region!r} is not answerable")
        if surface:
            surfs = [s for s in _surfaces(surface) if surfs is None or s in surfs]
        tm = self._time_mask(period, season)
        key = ("skill", pair, tuple(labels), tuple(surfs) if surfs else None)
        if key not in self._cache:
            da = self.ds["skill"].sel(pair=pair).isel(skill_region=[ar6.index(x) for x in labels])
            if surfs:
                da = da.sel(surface=surfs)
            self._cache[key] = np.asarray(da.sum(("skill_region", "surface")).values)
        v = self._cache[key][tm].sum(axis=0)
        f = np.asarray(self.ds["field_skill"].sel(pair=pair).values)[tm].sum(axis=0)
        stats = SK.stats_dict(np.concatenate([v, f]), list(PIXEL_STATS) + list(FIELD_STATS))
        has_prob = stats.get("prob_n", 0) > 0
        out = SK.scores_from_stats(stats, levels=CANON_LEVELS if has_prob else None)
        out["pair"] = pair
        return out


def _pair_name(model: str, against: str) -> str:
    if model == REFERENCE:
        return f"{REFERENCE}|{TRUTH_STRIP}"
    if against == REFERENCE:
        return f"{model}{STRIP}|{REFERENCE}"
    if against == TRUTH:
        return f"{model}|{TRUTH}"
    raise ValueError(f"against must be 'reference' or 'truth', got {against!r}")


def _surfaces(surface) -> list[str]:
    if isinstance(surface, str):
        surface = [x.strip() for x in surface.split(",") if x.strip()]
    out = []
    for s in surface:
        if s in SURFACE_GROUPS:
            out += list(SURFACE_GROUPS[s])
        elif s in SURFACES:
            out.append(s)
        else:
            raise ValueError(f"unknown surface {s!r}; use {', '.join(SURFACES)} or land/ocean")
    return out


def _stat(stat: str, counts, total, n):
    if n == 0:
        return float("nan")
    if stat == "mean":
        return float(total / n)
    if stat == "wet_fraction":
        return float(1 - counts[0] / n)
    if stat.startswith("exceed:"):
        from evaluation.extremes import exceedance_probability

        return float(exceedance_probability(counts, D.EDGES, float(stat.split(":", 1)[1])))
    m = re.fullmatch(r"q(\d+)", stat)
    if m:
        digits = m.group(1)
        q = float("0." + digits) if len(digits) > 2 else float(digits) / 100
        return float(D.quantile_from_hist(counts, q))
    raise ValueError(f"unknown statistic {stat!r}: use mean, wet_fraction, q99, q999, exceed:<mm/h>")


def open_cube(path: str | os.PathLike | None = None) -> Cube:
    """Open a complete cube (raises ``catalogs.store.IncompleteStore`` otherwise)."""
    from catalogs.store import IncompleteStore

    path = Path(path) if path is not None else default_cube_path()
    if not is_complete(path):
        raise IncompleteStore(f"no complete climatology cube at {path}; build one with "
                              f"'raincheck climatology build'")
    if path.suffix == ".nc":
        ds = xr.open_dataset(path, engine="h5netcdf", chunks=None)
        ledger = json.loads(ds.attrs.get("ledger", "{}"))
        for c in ("source", "region", "surface", "pair", "skill_region", "stat", "fstat"):
            if c in ds.coords:
                ds = ds.assign_coords({c: [str(v) for v in ds[c].values]})
        return Cube(ds, path, ledger)
    ds = xr.open_zarr(path, consolidated=True, chunks=None)
    ledger = json.loads((path / LEDGER).read_text())
    return Cube(ds, path, ledger)


def export_cube(src, dest) -> Path:
    """Write a cube as one compressed netCDF file (ledger in the ``ledger`` attribute), e.g. to
    ship it inside the package; :func:`open_cube` reads both forms. Atomic, with a marker."""
    c = open_cube(src)
    ds = c.ds.load().copy()
    ds.attrs = dict(ds.attrs) | {"ledger": json.dumps(c.ledger, sort_keys=True)}
    for c_ in ("source", "region", "surface", "pair", "skill_region", "stat", "fstat"):
        ds = ds.assign_coords({c_: np.array([str(v) for v in ds[c_].values], dtype=object)})
    enc = {}
    for v in ("count", "total", "total_sq", "skill", "field_skill"):
        shape = ds[v].shape
        chunks = tuple(1 if i < 2 and v != "field_skill" else max(n, 1) for i, n in enumerate(shape))
        enc[v] = {"zlib": True, "complevel": 6, "shuffle": True, "chunksizes": chunks}
    dest = Path(dest)

    def writer(tmp: Path) -> None:
        ds.to_netcdf(tmp, engine="h5netcdf", encoding=enc, invalid_netcdf=True)

    return atomic_write(dest, writer, meta={"kind": "climatology-cube", "format": FORMAT_VERSION})


def import_cube(src, dest) -> Path:
    """Write a cube (e.g. the packaged netCDF one) as a zarr cube with its ledger, so that it can
    be extended or have stale sources replaced by :func:`build_cube`."""
    c = open_cube(src)
    ds = c.ds.load().copy()
    for c_ in ("source", "region", "surface", "pair", "skill_region", "stat", "fstat"):
        ds = ds.assign_coords({c_: [str(v) for v in ds[c_].values]})
    for v in ds.variables.values():
        v.encoding = {}
    return _write_cube(ds, json.loads(json.dumps(c.ledger)), Path(dest))


# --------------------------------------------------------------------------- the demo record
PACKAGED_DEMO = Path(__file__).resolve().parent / "data" / "demo_cube.nc"
#: the recorded demo build (``raincheck climatology build --demo``): the synthetic record
#: 1998–2060, one month per season, ``per_month`` whole orbits per month, truth + reference; each
#: shipped model on every k-th of those orbits (k coprime with the 8 orbits a year, so a model's
#: orbits rotate through the sampled months), k set by its cost on a 2-core CPU (≈ 4 s an orbit
#: and worker for a U-Net, simulation included; the Bayesian database retrieval ≈ 1–2.5 min):
#: the reference U-Net on every third orbit (168 orbits, 2.7 a year: its trends are the seed's
#: question), two research models (tail loss, hybrid) on every ninth, the Bayesian baseline on
#: every 63rd. The whole build takes ≈ 15 min on 2 workers here.
DEMO = {"years": (1998, 2060), "months": (1, 4, 7, 10), "per_month": 2,
        "sources": (TRUTH, REFERENCE),
        "models": {"unet-reference": 3, "unet-hybrid": 9, "unet-tailpinball": 9, "bayes-baseline": 63}}


def record_orbits(years=DEMO["years"], months=DEMO["months"], per_month=DEMO["per_month"], *, seed: int = 0) -> list[int]:
    """Orbits sampling the synthetic record: ``per_month`` orbits in each of ``months`` of each
    year, stratified-random in time: the k-th orbit of a month is the first orbit that starts
    after a time drawn uniformly in the k-th of ``per_month`` equal parts of the month
    (deterministic: ``default_rng([seed, year, month, k])``). Every sampled orbit starts in its
    month.

    Why random: orbits taken at the same UTC times every year have ground tracks (longitudes,
    local times) that drift *systematically* from year to year, which aliases the geography and
    the diurnal cycle of rain into a spurious multi-decadal trend (measured on the synthetic
    record: ≈ -5 %/K in the global mean with fixed 00 UTC days-1-and-15 sampling, against the
    injected +2 %/K). Random times turn that drift into noise that averages out."""
    from catalogs.simulator import geometry

    out = []
    margin = np.timedelta64(2 * 3600, "s")  # > one orbit period: the next orbit still starts in the month
    for y in range(int(years[0]), int(years[1]) + 1):
        for m in months:
            a = np.datetime64(f"{y}-{m:02d}", "M")
            t0 = a.astype("datetime64[s]")
            t1 = (a + 1).astype("datetime64[s]") - margin
            span = (t1 - t0).astype(np.int64)
            for k in range(per_month):
                rng = np.random.default_rng([int(seed), y, int(m), k])
                frac = (k + rng.random()) / per_month
                t = (t0 + np.timedelta64(int(frac * span), "s")).astype("datetime64[ns]")
                o = int(geometry.orbit_at_time(t)) + 1  # the first orbit starting after t
                out.append(o)
    return out


def demo_cube_path(*, for_writing: bool = False) -> Path:
    """The demo cube: one built into the data root (``cubes/demo.zarr``) if complete, else the
    one shipped in the package."""
    from catalogs.config import get_roots

    built = get_roots().sub("cubes") / "demo.zarr"
    if for_writing or is_complete(built) or not is_complete(PACKAGED_DEMO):
        return built
    return PACKAGED_DEMO


def build_demo(path=None, *, models=None, scheduler=None, n_workers=2, progress=None, cancel=None,
               per_month=DEMO["per_month"], years=DEMO["years"], replace_stale: bool = False,
               from_packaged: bool = True) -> Path:
    """Build the demo cube: truth + reference over the record, then each available shipped model
    on its subset of the same orbits (``models``: name → stride, default :data:`DEMO`).
    Resumable like any build; models that are not registered are skipped.

    A new demo cube (the standard record: default ``years`` and ``per_month``) starts from the
    packaged one (``from_packaged``), so only what is missing or stale is computed: after models
    are retrained, ``replace_stale=True`` rebuilds just them. ``replace_stale`` as in
    :func:`build_cube`."""
    path = Path(path) if path is not None else demo_cube_path(for_writing=True)
    standard = tuple(years) == tuple(DEMO["years"]) and int(per_month) == DEMO["per_month"]
    if (from_packaged and standard and not is_complete(path) and is_complete(PACKAGED_DEMO)
            and path.resolve() != PACKAGED_DEMO.resolve()):
        log.info("starting the demo cube %s from the packaged %s", path, PACKAGED_DEMO)
        import_cube(PACKAGED_DEMO, path)
    orbits = record_orbits(years=years, per_month=per_month)
    build_cube(orbits, DEMO["sources"], path, scheduler=scheduler, n_workers=n_workers, progress=progress, cancel=cancel,
               replace_stale=replace_stale)
    if models is None:
        try:
            from models.registry import list_models

            have = {c.name for c in list_models()}
        except Exception:  # noqa: BLE001 - no models layer: truth/reference only
            have = set()
        models = {m: k for m, k in DEMO["models"].items() if m in have}
    for m, k in dict(models).items():
        build_cube(orbits[::int(k)], [m], path, scheduler=scheduler, n_workers=n_workers, progress=progress,
                   cancel=cancel, replace_stale=replace_stale)
    return path

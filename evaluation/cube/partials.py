"""Per-orbit partial summaries: load (simulate) an orbit, run the models, aggregate every source
and skill pair into the cube's arrays for the orbit's months; and the partial files
(``<cube>.partials/o<orbit>__<sources>.npz``) written atomically, read back and checked for damage."""

from __future__ import annotations

import json
import logging
import os
import re
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from catalogs.store import temp_name
from evaluation import distributions as D
from evaluation import regions as RG
from evaluation import skill as SK
from evaluation.cube import archive as AR
from evaluation.cube.kernels import accumulate_layers, pixel_groups
from evaluation.cube.layout import (FIELD_STATS, PIXEL_STATS, REFERENCE, STRIP, SURFACES, TRUTH, TRUTH_STRIP,
                                    StaleSource, ar6_labels, model_of, pairs_for, skill_labels)
from evaluation.cube.ledger import _identities
from catalogs.simulator import simulate_orbit

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- orbit loading


def _load_swath(orbit: int, cfg: dict) -> xr.Dataset:
    if AR.is_archive_config(cfg):  # a PPS archive: 1C-GMI Tb with 2B-CMB collocated
        return AR.load_orbit(orbit, cfg)
    return simulate_orbit(int(orbit), world_seed=int(cfg.get("world_seed", 0)), source="observed",
                          n_scans=cfg.get("n_scans"))


def _model_output(name: str, swath: xr.Dataset, cfg: dict):
    """(precip_mean (A, C), quantiles (A, C, Q), levels) of a model on ``swath``.

    ``cfg["model_fns"]`` may map a name to a callable(swath) -> retrieval dataset (tests,
    custom models); otherwise the registered model is loaded and run with
    ``models.inference.predict_swath``; a baseline of an archive build (GPROF) is read from its
    granule (:func:`evaluation.cube.archive.baseline_output`), never run."""
    fn = (cfg.get("model_fns") or {}).get(name)
    if name in (cfg.get("baselines") or {}):
        ret = AR.baseline_output(name, swath, cfg)
    elif fn is not None:
        ret = fn(swath)
    else:
        from models.run import CheckpointChanged, predict_current

        want = ((cfg.get("identities") or {}).get(name) or {}).get("checkpoint_sha256")
        try:
            ret = predict_current(name, want, swath, job="the build", device=cfg.get("device", "cpu"),
                                  torch_threads=cfg.get("torch_threads"))
        except CheckpointChanged as e:
            raise StaleSource(f"{e}; rerun the build") from None
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

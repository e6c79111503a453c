"""Compare retrieval models on the same held-out scene sets: an in-distribution year and the
future warmer decades, with overall, tail and extreme-trend scores, and an OOD split.

Held-out sets: the ``test`` (2021) and ``ood`` (2055-2059) splits of a training config's data
section (default ``unet-reference``; cached scene sets of :func:`models.train.build_training_set`),
strip pixels only (where the radar-like reference exists). Every model sees the same pixels.

Definitions (fixed before any model was scored; thresholds come from the *training* period):

- ``crps``: mean CRPS of the predicted distribution (:class:`models.quantiles.QuantileDistribution`);
- ``qs``: mean quantile (pinball) score over the levels :data:`QS_LEVELS`, the model's
  distribution evaluated at those levels (comparable across models with different level sets);
- ``mse``, ``corr``: of the posterior mean;
- ``twcrps@p99`` / ``twcrps@p99.9``: threshold-weighted CRPS with weight ``1{z >= t}``, ``t`` the
  training reference's 99th / 99.9th percentile (:func:`models.losses.twcrps_numpy`);
- ``sedi@...``, ``fbias@...``: SEDI and frequency bias ``(hits + false alarms) / (hits + misses)``
  of the posterior mean exceeding the same thresholds;
- extremes: the 99th / 99.9th percentiles of the pooled *predictive* distribution of each period
  (``draws`` random draws per pixel from the model's distribution, fixed seed) and of the reference;
  the extreme trend (%/K) between the two periods is ``100 ((P_ood / P_test)^(1 / dT) - 1)`` with
  ``dT`` the difference of the periods' mean GMST anomaly (the synthetic world's own series);
  the trend error is model minus reference. A scene bootstrap (the same resampled scenes for model
  and reference) gives a 90 % interval of the error. ``trend_error`` (the headline) is the mean
  absolute error over the two percentiles.
- OOD split: a flow model that ships a detector (:mod:`models.research.ood`) scores every pixel;
  CRPS is reported separately for pixels with ``ood_score < 0.95`` ("in") and ``>= 0.95`` ("out").
  Detection quality (AUROC, FPR at 95 % TPR, pixel and scene level) where the truth of "out of
  distribution" is known: future decades vs the test year, the simulated source vs observed, and
  corrupted inputs (all Tb + 30 K; Gaussian noise of 5 K; on copies of the first 20 test scenes).

Goal of issue 7: some model with ``trend_error`` <= 0.7 x the reference U-Net's while its
in-distribution CRPS is <= 1.05 x the reference's (:func:`goal_check`).

:func:`compare` is a long job (minutes of CPU): it reports ``progress(done, total, message)`` over
its stages (the held-out sets, the OOD detection, each model) and stops at the next check of its
``cancel`` event (between held-out sets, models and splits) with :class:`ComparisonCancelled`;
it writes no comparison result (only the per-model score cache, whose entries are complete).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
from evaluation.skill import _categorical_from_counts, _coherence_sums, coherence_wavelengths_km
from catalogs.store import open_dataset
import json
import os
import hashlib
from catalogs.config import get_roots
import tempfile

log = logging.getLogger(__name__)

SCHEMA = "raincheck.compare/1"
QS_LEVELS = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
PERCENTILES = (99.0, 99.9)
OOD_THRESHOLD = 0.95
#: The issue-7 goal (:func:`goal_check`'s defaults; the app's comparison view draws these): the
#: extreme-trend error at least 30 % below the reference's, test-year CRPS at most 5 % above it.
GOAL_TREND_GAIN = 0.30
GOAL_CRPS_COST = 0.05


def _pkey(p: float) -> str:
    return f"p{p:g}"


class ComparisonCancelled(RuntimeError):
    """The caller's cancel flag was set; no comparison result was returned or written (the scores
    of the models finished before it stay in the per-model cache: a rerun reuses them)."""


def _check_cancel(cancel, where: str) -> None:
    if cancel is not None and cancel.is_set():
        raise ComparisonCancelled(f"comparison cancelled {where}; no result was written")


def _within(progress, step: int, steps: int, scale: int = 100, prefix: str = ""):
    """``progress`` of one stage (``step`` of ``steps``): its own (done, total) mapped into the
    stage's share of the whole, so a bar over the comparison only moves forward; ``prefix``
    names the stage in its messages."""
    if progress is None:
        return None

    def report(done, total, message=""):
        frac = min(max(float(done) / total, 0.0), 1.0) if total and total > 0 else 0.0
        progress(step * scale + int(scale * frac), steps * scale, f"{prefix}{message}")

    return report


# --------------------------------------------------------------------------- metrics
def quantile_score(dist, obs, levels=QS_LEVELS) -> float:
    """Mean pinball loss over ``levels`` of the distribution's quantiles at those levels."""
    q = dist.quantile(np.asarray(levels))
    lv = np.asarray(levels)
    d = np.asarray(obs, np.float64)[..., None] - q
    return float(np.mean(np.where(d >= 0, lv * d, (lv - 1) * d)))


def categorical(pred, ref, threshold) -> dict:
    """SEDI and frequency bias of ``pred >= t`` against ``ref >= t``."""

    p, r = np.asarray(pred) >= threshold, np.asarray(ref) >= threshold
    a, b, c, d = (float(np.sum(x)) for x in (p & r, p & ~r, ~p & r, ~p & ~r))
    cat = _categorical_from_counts(a, b, c, d)
    return {"sedi": cat["sedi"], "fbias": (a + b) / (a + c) if a + c else float("nan"), "hits": int(a),
            "events": int(a + c), "forecasts": int(a + b)}


def trend_pct_per_K(p_early: float, p_late: float, dT: float) -> float:
    """Compound trend (%/K) between two periods ``dT`` kelvin apart."""
    if not (p_early > 0 and p_late > 0 and dT > 0):
        return float("nan")
    return 100.0 * ((p_late / p_early) ** (1.0 / dT) - 1.0)


def _percentiles(x, pct=PERCENTILES) -> np.ndarray:
    return np.percentile(np.asarray(x, np.float64), pct)


# --------------------------------------------------------------------------- data
def heldout_sets(config="unet-reference", progress=None, cancel=None) -> dict:
    """The held-out scene sets (``test``, ``ood``) of a config: Tb, reference, scene GMST
    (``cancel``: checked between the sets, and by the simulation of each)."""
    from catalogs.simulator.climate import gmst_anomaly
    from catalogs.simulator.geometry import orbit_start_time
    from models.registry import load_config
    from models.train import build_training_set, load_scenes

    cfg = load_config(config) if not isinstance(config, dict) else config
    out = {}
    for k, split in enumerate(("test", "ood")):
        _check_cancel(cancel, f"before the {split} set")
        path = build_training_set(cfg, split, progress=_within(progress, k, 3), cancel=cancel)
        tc, ref = load_scenes(path)
        orbits = open_dataset(path)["orbit"].values
        g = np.array([float(gmst_anomaly(orbit_start_time(int(o)))) for o in orbits])
        spec = cfg["data"][split]
        out[split] = {"tc": tc, "ref": ref, "gmst": g, "orbits": orbits,
                      "period": f"{spec['start']}..{spec['end']}"}
    _check_cancel(cancel, "before the training set")
    tr = build_training_set(cfg, "train", progress=_within(progress, 2, 3), cancel=cancel)
    _, ref_tr = load_scenes(tr)
    r = ref_tr[np.isfinite(ref_tr)]
    out["thresholds"] = {_pkey(p): float(v) for p, v in zip(PERCENTILES, _percentiles(r))}
    out["config"] = cfg["name"]
    from models.train import data_key

    out["key"] = data_key(cfg["data"])
    return out


def _ood_detector(names):
    """(the first loadable flow model among ``names``, then all registered, shipping a detector,
    or None; the candidates that could not be loaded, as "name: reason" notes)."""
    from models.registry import list_models, load_model

    cands = list(names) + [c.name for c in list_models() if c.kind == "flow" and c.name not in names]
    skipped = []
    for n in cands:
        try:
            r = load_model(n)
        except Exception as e:  # a broken or stale checkpoint: say so in the result, try the next
            log.warning("OOD detector candidate %s not loaded: %s", n, e)
            skipped.append(f"{n}: {type(e).__name__}: {e}")
            continue
        if getattr(r, "ood", None) is not None:
            return r, skipped
    return None, skipped


def _ood_pixel_scores(det, tc: np.ndarray, cols: np.ndarray | None = None, batch: int = 4,
                      stride: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(per-pixel calibrated score (N, A, C) on the columns ``cols`` (default all; NaN elsewhere),
    per-scene calibrated score (N,) from the mean log distance on a ``stride`` grid)."""
    import torch

    from models.inference import invalid_tb_mask
    from models.research.ood import encoder_features
    from models.train import _pad_cross

    n, a, c = tc.shape[:3]
    cols = np.ones(c, bool) if cols is None else np.asarray(cols, bool)
    ci = np.flatnonzero(cols)
    pix = np.full((n, a, c), np.nan, np.float32)
    scn = np.full(n, np.nan)
    with torch.inference_mode():
        for i in range(0, n, batch):
            part = np.asarray(tc[i:i + batch], np.float32)
            x = _pad_cross(torch.from_numpy(part).permute(0, 3, 1, 2), det.base.multiple)
            f = encoder_features(det.base, x)[:, :, :a, :c]
            ok = ~invalid_tb_mask(part)
            ld = torch.log(det.ood._d2(f[:, :, :, ci])).numpy()
            pix[i:i + batch][:, :, ci] = np.where(ok[:, :, ci], det.ood.calibrate_pixels(ld), np.nan)
            ldg = torch.log(det.ood._d2(f[:, :, ::stride, ::stride])).numpy()
            for k in range(part.shape[0]):
                scn[i + k] = det.ood.scene_score(ldg[k], ok[k, ::stride, ::stride])
    return pix, scn


# --------------------------------------------------------------------------- per model
SPECTRUM_TILE = 32


def _strip_pixels(retriever, tc, ref, chunk: int = 8, gmst=None):
    """Per-pixel quantiles (P, Q) on the strip, reference (P,), scene index (P,), and spectra
    sums (posterior mean and, for ensembles, one member against the reference). ``gmst``: each
    scene's GMST anomaly (K), for climate-conditioned models."""
    from models.quantiles import QuantileDistribution
    from models.research.trainer import predict_strip

    strip = np.isfinite(ref)
    cols = strip.any(axis=(0, 1))
    c0 = int(np.flatnonzero(cols)[0])
    qs, ys, sc, oks = [], [], [], []
    spec = {"mean": np.zeros(3 * SPECTRUM_TILE), "member": np.zeros(3 * SPECTRUM_TILE)}
    is_flow = retriever.kind == "flow"
    for i in range(0, tc.shape[0], chunk):
        fields = [] if is_flow else None
        q = predict_strip(retriever, tc[i:i + chunk], cols, member_fields=fields,
                          gmst=None if gmst is None else gmst[i:i + chunk])
        r = ref[i:i + chunk]
        ok = np.isfinite(r) & np.isfinite(q).all(-1)
        oks.append(ok)
        qs.append(q[ok])
        ys.append(r[ok].astype(np.float64))
        sc.append(np.broadcast_to(np.arange(i, i + r.shape[0])[:, None, None], r.shape)[ok])
        mean = np.full(r.shape, np.nan)
        mean[ok] = QuantileDistribution(q[ok], retriever.levels).mean()
        member = np.concatenate(fields) if is_flow else None
        for k in range(r.shape[0]):
            sl = (k, slice(None), slice(c0, c0 + SPECTRUM_TILE))
            spec["mean"] += _coherence_sums(mean[sl], r[sl], SPECTRUM_TILE)
            if is_flow:
                spec["member"] += _coherence_sums(member[sl], r[sl], SPECTRUM_TILE)
    return np.concatenate(qs), np.concatenate(ys), np.concatenate(sc), spec, np.concatenate(oks)


def _spectra(sums) -> dict:
    """Power ratio (retrieval / reference) per pooled wavenumber bin of the coherence sums, at
    the bins' physical wavelengths on the 13.7 x 5.2 km grid (:func:`evaluation.skill.coherence_wavelengths_km`)."""

    n = SPECTRUM_TILE
    pp, rr = sums[:n], sums[n:2 * n]
    wl = coherence_wavelengths_km(n)
    small = wl <= 40.0  # wavelengths <= 40 km
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = pp / rr
        return {"wavelength_km": wl[1:].tolist(), "power_ratio": ratio[1:].tolist(),
                "small_scale_power_ratio": float(pp[small].sum() / rr[small].sum()) if rr[small].sum() > 0 else float("nan")}


def ensemble_scores(members_sorted: np.ndarray, y: np.ndarray, rng) -> dict:
    """Rank histogram (ties broken at random) and the fair ensemble CRPS of sorted members (P, M)."""
    x = np.asarray(members_sorted, np.float64)
    m = x.shape[1]
    below = (x < y[:, None]).sum(1)
    ties = (x == y[:, None]).sum(1)
    rank = below + np.floor(rng.random(y.size) * (ties + 1)).astype(int)
    hist = np.bincount(rank, minlength=m + 1) / y.size
    # fair CRPS: mean |x_i - y| - sum_{i,j} |x_i - x_j| / (2 M (M - 1)); for sorted x,
    # sum_{i,j} |x_i - x_j| = 2 sum_i (2 i - M + 1) x_i  (i from 0)
    w = 2 * np.arange(m) - m + 1
    spread = 2 * (x * w).sum(1)
    crps = np.abs(x - y[:, None]).mean(1) - spread / (2 * m * (m - 1))
    return {"rank_histogram": hist.tolist(), "crps_fair_ensemble": float(crps.mean()),
            "rank_histogram_chi2_flatness": float(((hist - 1 / (m + 1)) ** 2).sum() * (m + 1))}


def model_scores(name: str, retriever, sets: dict, *, draws: int = 4, seed: int = 0, n_boot: int = 100,
                 ood_pixels: dict | None = None, progress=None, pixels_out: dict | None = None,
                 cancel=None) -> dict:
    """Scores of one model on both held-out splits (see the module docstring). ``pixels_out``
    (a dict), if given, receives per split the scored-pixel mask and per-pixel CRPS (for the
    OOD split, :func:`ood_split`). ``cancel``: checked before each split and the trends
    (:class:`ComparisonCancelled`)."""
    from models.losses import twcrps_numpy
    from models.quantiles import QuantileDistribution

    out = {"kind": retriever.kind, "sha256": retriever.sha256, "levels": len(retriever.levels)}
    pools = {}
    t0 = time.perf_counter()
    for i, split in enumerate(("test", "ood")):
        s = sets[split]
        _check_cancel(cancel, f"while scoring {name}")
        if progress:
            progress(i, 3, f"{name}: predicting {split}")
        qv, y, scene_of, spec, ok = _strip_pixels(retriever, s["tc"], s["ref"], gmst=s["gmst"])
        d = QuantileDistribution(qv, retriever.levels)
        mean = d.mean()
        crps = d.crps(y)
        res = {"pixels": int(y.size), "crps": float(np.mean(crps)), "qs": quantile_score(d, y),
               "mse": float(np.mean((mean - y) ** 2)), "corr": float(np.corrcoef(mean, y)[0, 1]),
               "bias_pct": float(100 * (mean.sum() - y.sum()) / y.sum())}
        for k, t in sets["thresholds"].items():
            res[f"twcrps@{k}"] = float(np.mean(twcrps_numpy(d.values, d.levels, y, t)))
            cat = categorical(mean, y, t)
            res[f"sedi@{k}"], res[f"fbias@{k}"] = cat["sedi"], cat["fbias"]
        rng = np.random.default_rng([seed, 0 if split == "test" else 1])
        smp = d.sample(draws, rng)  # (draws, n)
        res["extremes"] = {_pkey(p): float(v) for p, v in zip(PERCENTILES, _percentiles(smp.ravel()))}
        res["extremes_mean_field"] = {_pkey(p): float(v) for p, v in zip(PERCENTILES, _percentiles(mean))}
        res["spectra_mean"] = _spectra(spec["mean"])
        if retriever.kind == "flow":
            res["ensemble"] = ensemble_scores(qv, y, rng)
            res["spectra_member"] = _spectra(spec["member"])
        pools[split] = (scene_of, smp, y)
        if pixels_out is not None:
            pixels_out[split] = {"ok": ok, "crps": crps.astype(np.float32)}
        if ood_pixels is not None and split in ood_pixels:
            res.update(ood_split(ood_pixels[split], ok, crps))
        out[split] = res
    _check_cancel(cancel, f"while scoring {name}")
    if progress:
        progress(2, 3, f"{name}: extreme trends")
    dT = float(np.mean(sets["ood"]["gmst"]) - np.mean(sets["test"]["gmst"]))
    out["trend"] = _trends(pools, dT, sets, seed, n_boot)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def ood_split(ood_pixel_scores: np.ndarray, ok: np.ndarray, crps: np.ndarray) -> dict:
    """Mean CRPS of pixels with ``ood_score < 0.95`` ("in") and ``>= 0.95`` ("out")."""
    sc = ood_pixel_scores[ok]
    res = {}
    for lab, sel in (("in", sc < OOD_THRESHOLD), ("out", sc >= OOD_THRESHOLD)):
        res[f"crps_ood_{lab}"] = float(np.mean(crps[sel])) if sel.any() else float("nan")
        res[f"pixels_ood_{lab}"] = int(sel.sum())
    return res


def _trends(pools: dict, dT: float, sets: dict, seed: int, n_boot: int) -> dict:
    res = {"dT_K": dT}
    (s0, m0, y0), (s1, m1, y1) = pools["test"], pools["ood"]
    pm0, pm1 = _percentiles(m0.ravel()), _percentiles(m1.ravel())
    pr0, pr1 = _percentiles(y0), _percentiles(y1)
    errs = []
    for i, p in enumerate(PERCENTILES):
        tm = trend_pct_per_K(pm0[i], pm1[i], dT)
        tr = trend_pct_per_K(pr0[i], pr1[i], dT)
        res[_pkey(p)] = {"model_pct_per_K": tm, "truth_pct_per_K": tr, "error_pct_per_K": tm - tr}
        errs.append(abs(tm - tr))
    res["trend_error"] = float(np.mean(errs))
    # scene bootstrap of the error (same resampled scenes for model and reference)
    if n_boot:
        rng = np.random.default_rng([seed, 77])
        n0, n1 = len(sets["test"]["tc"]), len(sets["ood"]["tc"])
        idx0 = [np.flatnonzero(s0 == k) for k in range(n0)]
        idx1 = [np.flatnonzero(s1 == k) for k in range(n1)]
        boots = {_pkey(p): [] for p in PERCENTILES}
        for _ in range(n_boot):
            a = np.concatenate([idx0[k] for k in rng.integers(0, n0, n0)])
            b = np.concatenate([idx1[k] for k in rng.integers(0, n1, n1)])
            qm0, qm1 = _percentiles(m0[:, a].ravel()), _percentiles(m1[:, b].ravel())
            qr0, qr1 = _percentiles(y0[a]), _percentiles(y1[b])
            for i, p in enumerate(PERCENTILES):
                boots[_pkey(p)].append(trend_pct_per_K(qm0[i], qm1[i], dT) - trend_pct_per_K(qr0[i], qr1[i], dT))
        for k, v in boots.items():
            v = np.asarray(v)
            res[k]["error_ci90"] = [float(np.nanpercentile(v, 5)), float(np.nanpercentile(v, 95))]
    return res


# --------------------------------------------------------------------------- OOD detection
def ood_detection(det, sets: dict, simulated_tc: np.ndarray | None = None, seed: int = 0,
                  max_pixels: int = 400_000, n_corrupt: int = 20) -> dict:
    """AUROC / FPR@95 %TPR of the detector (pixel and scene level) for known shifts."""
    from models.research.ood import auroc, fpr_at_tpr

    rng = np.random.default_rng(seed)
    cols = np.isfinite(sets["test"]["ref"]).any(axis=(0, 1))  # pixel scores on the reference strip
    base_pix, base_scn = _ood_pixel_scores(det, sets["test"]["tc"], cols)

    def sub(x):
        x = x[np.isfinite(x)]
        return x if x.size <= max_pixels else rng.choice(x, max_pixels, replace=False)

    shifted = {"future_decades": sets["ood"]["tc"]}
    if simulated_tc is not None:
        shifted["simulated_source"] = simulated_tc
    tc = np.asarray(sets["test"]["tc"][:n_corrupt], np.float32)  # corrupted copies of the first test scenes
    shifted["tb_plus_30K"] = tc + 30.0
    shifted["noise_5K"] = tc + rng.normal(0, 5.0, tc.shape).astype(np.float32)
    out = {"in_distribution": "test split (" + sets["test"]["period"] + ")",
           "in_pixel_score_mean": float(np.nanmean(base_pix)),
           "in_fraction_flagged": float(np.nanmean(base_pix >= OOD_THRESHOLD))}
    pix_cache = {}
    for k, t in shifted.items():
        p, s = _ood_pixel_scores(det, t, cols)
        pix_cache[k] = p
        out[k] = {"pixel_auroc": auroc(sub(base_pix), sub(p)), "pixel_fpr95": fpr_at_tpr(sub(base_pix), sub(p)),
                  "scene_auroc": auroc(base_scn, s), "scene_fpr95": fpr_at_tpr(base_scn, s),
                  "fraction_flagged": float(np.nanmean(p >= OOD_THRESHOLD))}
    return out, {"test": base_pix, "ood": pix_cache["future_decades"]}


def cached_ood_detection(det, config, sets: dict, seed: int = 0, progress=None, cache: bool = True):
    """:func:`ood_detection` (with the simulated held-out set), cached by detector hash + sets."""

    from evaluation.report import clean

    d = default_result_path().parent / "models"
    key = f"ood-{det.sha256[:16]}-{sets['key']}-{seed}-v{CACHE_VERSION}"
    if cache:
        try:
            res = unclean(json.loads((d / f"{key}.json").read_text()))
            z = np.load(d / f"{key}.npz")
            return res, {"test": z["test"], "ood": z["ood"]}
        except (OSError, ValueError):
            pass
    sim_tc = simulated_heldout(config, progress=progress)
    res, pix = ood_detection(det, sets, sim_tc, seed)
    res["detector"] = det.name
    if cache:
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{key}.tmp.npz"
        np.savez(tmp, test=pix["test"], ood=pix["ood"])
        os.replace(tmp, d / f"{key}.npz")
        tj = d / f".{key}.json.tmp"
        tj.write_text(json.dumps(clean(res)))
        os.replace(tj, d / f"{key}.json")
    return res, pix


def simulated_heldout(config="unet-reference", orbits: int = 10, progress=None) -> np.ndarray:
    """Tb of a held-out simulated-source set over the test year (for OOD detection)."""
    from models.registry import load_config
    from models.train import build_training_set, load_scenes

    cfg = load_config(config) if not isinstance(config, dict) else dict(config)
    spec = dict(cfg["data"]["test"], orbits=orbits)
    data = {k: v for k, v in cfg["data"].items() if k not in ("train", "validation", "test", "ood")}
    data.update(source="simulated", seed=int(cfg["data"].get("seed", 0)) + 3000, train=spec)
    return load_scenes(build_training_set({"name": "simulated-heldout", "data": data}, "train", progress=progress))[0]


# --------------------------------------------------------------------------- the comparison
def compare(names, *, config="unet-reference", reference="unet-reference", draws: int = 4, n_boot: int = 100,
            ood: bool = True, seed: int = 0, progress=None, cache: bool = True, cancel=None) -> dict:
    """The comparison of models ``names`` (registered names) on the same held-out sets.

    A model's scores are cached under ``<data_root>/comparison/models/`` keyed by its checkpoint
    hash, the held-out sets and the settings (:func:`score_model` fills the cache ahead of time).
    ``progress(done, total, message)`` runs over the stages (held-out sets, OOD detection, each
    model); ``cancel`` (a ``threading.Event`` or anything with ``is_set()``) is checked between
    them and between a model's splits: :class:`ComparisonCancelled`, and nothing is returned."""
    from models.registry import load_model

    names = list(dict.fromkeys(names))
    if reference not in names:
        names = [reference] + names
    steps = 2 + len(names)  # the held-out sets, the OOD detection, one per model
    t0 = time.perf_counter()
    _check_cancel(cancel, "before it started")
    sets = heldout_sets(config, _within(progress, 0, steps), cancel)
    out = {"schema": SCHEMA, "config": sets["config"], "reference": reference,
           "thresholds_mm_h": sets["thresholds"], "draws_per_pixel": draws,
           "periods": {k: {"period": sets[k]["period"], "scenes": int(len(sets[k]["tc"])),
                           "gmst_K": float(np.mean(sets[k]["gmst"]))} for k in ("test", "ood")},
           "models": {}}
    ood_pix = None
    if ood:
        _check_cancel(cancel, "before the OOD detection")
        if progress:
            progress(100, 100 * steps, "OOD detection")
        det, skipped = _ood_detector(names)
        if skipped:
            out["ood_detector_skipped"] = skipped
        if det is not None:
            out["ood_detection"], ood_pix = cached_ood_detection(
                det, config, sets, seed, _within(progress, 1, steps, prefix="OOD detection: "), cache)
    for i, n in enumerate(names):
        _check_cancel(cancel, f"before {n}")
        step = _within(progress, 2 + i, steps)
        r = load_model(n)
        key = _cache_key(n, r.sha256, sets, draws, seed, n_boot)
        got = _cache_read(key) if cache else None
        if got is None:
            pix: dict = {}
            m = model_scores(n, r, sets, draws=draws, seed=seed, n_boot=n_boot, progress=step, pixels_out=pix,
                             cancel=cancel)
            if cache:
                _cache_write(key, m, pix)
        else:
            m, pix = got
            if step:
                step(1, 1, f"{n}: cached scores")
        if ood_pix is not None:
            for split in ("test", "ood"):
                m[split].update(ood_split(ood_pix[split], pix[split]["ok"], pix[split]["crps"]))
        out["models"][n] = m
    _check_cancel(cancel, "after the last model")
    out["goal"] = goal_check(out)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    if progress:
        progress(steps, steps, "comparison done")
    return out


CACHE_VERSION = 1


def _cache_key(name, sha, sets, draws, seed, n_boot) -> str:
    blob = json.dumps({"name": name, "sha": sha, "sets": sets["key"], "draws": draws, "seed": seed,
                       "boot": n_boot, "v": CACHE_VERSION, "schema": SCHEMA}, sort_keys=True)
    return f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def _cache_dir():
    return default_result_path().parent / "models"


def _cache_read(key):
    d = _cache_dir()
    try:
        m = json.loads((d / f"{key}.json").read_text())
        z = np.load(d / f"{key}.npz")
    except (OSError, ValueError):
        return None
    m = unclean(m)
    pix = {}
    for split in ("test", "ood"):
        shape = tuple(z[f"{split}_shape"])
        ok = np.unpackbits(z[f"{split}_ok"])[: int(np.prod(shape))].reshape(shape).astype(bool)
        pix[split] = {"ok": ok, "crps": z[f"{split}_crps"]}
    return m, pix


def unclean(x):
    """JSON null (None) back to NaN, e.g. for the table formatter."""
    if isinstance(x, dict):
        return {k: unclean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [unclean(v) for v in x]
    return float("nan") if x is None else x


def _cache_write(key, m, pix) -> None:
    from evaluation.report import clean

    d = _cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, v in pix.items():
        arrays[f"{split}_ok"] = np.packbits(v["ok"].ravel())
        arrays[f"{split}_shape"] = np.array(v["ok"].shape)
        arrays[f"{split}_crps"] = v["crps"]
    tmp = d / f".{key}.npz.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, d / f"{key}.npz")
    tmpj = d / f".{key}.json.tmp"
    tmpj.write_text(json.dumps(clean(m)))
    os.replace(tmpj, d / f"{key}.json")  # the JSON last: it marks the entry complete


def score_model(name: str, config="unet-reference", draws: int = 4, seed: int = 0, n_boot: int = 100,
                progress=None) -> dict:
    """Score one model into the comparison cache (e.g. right after training it)."""
    from models.registry import load_model

    sets = heldout_sets(config, progress)
    r = load_model(name)
    key = _cache_key(name, r.sha256, sets, draws, seed, n_boot)
    got = _cache_read(key)
    if got is not None:
        return got[0]
    pix: dict = {}
    m = model_scores(name, r, sets, draws=draws, seed=seed, n_boot=n_boot, progress=progress, pixels_out=pix)
    _cache_write(key, m, pix)
    return m


def goal_check(res: dict, trend_gain: float = GOAL_TREND_GAIN, crps_cost: float = GOAL_CRPS_COST) -> dict:
    """Which models cut the reference's extreme-trend error by >= 30 % while their
    in-distribution CRPS worsens by <= 5 %."""
    res = unclean(res)
    ref = res["models"][res["reference"]]
    e0, c0 = ref["trend"]["trend_error"], ref["test"]["crps"]
    rows = {}
    for n, m in res["models"].items():
        if n == res["reference"]:
            continue
        gain = 1 - m["trend"]["trend_error"] / e0 if e0 > 0 else float("nan")
        cost = m["test"]["crps"] / c0 - 1
        rows[n] = {"trend_error_reduction": gain, "crps_change": cost,
                   "met": bool(gain >= trend_gain and cost <= crps_cost)}
    return {"criterion": f"trend error -{trend_gain:.0%} and test CRPS +{crps_cost:.0%} at most",
            "models": rows, "met_by": [n for n, r in rows.items() if r["met"]]}


def table(res: dict) -> str:
    """A plain-text (markdown) table of a comparison."""
    th = list(res["thresholds_mm_h"])
    head = ["model", "split", "CRPS", "QS", "MSE", "corr"] + [f"twCRPS {k}" for k in th] + \
        [f"SEDI {k}" for k in th] + [f"FB {k}" for k in th]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n, m in res["models"].items():
        for split in ("test", "ood"):
            s = m[split]
            row = [n, split, f"{s['crps']:.4f}", f"{s['qs']:.4f}", f"{s['mse']:.3f}", f"{s['corr']:.3f}"]
            row += [f"{s[f'twcrps@{k}']:.4f}" for k in th] + [f"{s[f'sedi@{k}']:.3f}" for k in th] + \
                [f"{s[f'fbias@{k}']:.2f}" for k in th]
            lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    head2 = (["model"] + [f"{k} trend %/K (truth)" for k in th] + [f"{k} error (90% CI)" for k in th]
             + ["trend error", "goal"])
    lines += ["| " + " | ".join(head2) + " |", "|" + "---|" * len(head2)]
    for n, m in res["models"].items():
        t = m["trend"]
        row = [n] + [f"{t[k]['model_pct_per_K']:+.2f} ({t[k]['truth_pct_per_K']:+.2f})" for k in th]
        for k in th:
            ci = t[k].get("error_ci90")
            row.append(f"{t[k]['error_pct_per_K']:+.2f}" + (f" [{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci else ""))
        g = res["goal"]["models"].get(n)
        goal = "reference" if g is None else (f"{-100 * g['trend_error_reduction']:+.0f}% err, "
                                              f"{100 * g['crps_change']:+.1f}% CRPS" + (" MET" if g["met"] else ""))
        row += [f"{t['trend_error']:.2f}", goal]
        lines.append("| " + " | ".join(row) + " |")
    if "ood_detection" in res:
        o = res["ood_detection"]
        lines += ["", f"OOD detector: {o.get('detector')} (in-distribution: {o['in_distribution']})",
                  "| shift | pixel AUROC | pixel FPR@95 | scene AUROC | scene FPR@95 | flagged |",
                  "|---|---|---|---|---|---|"]
        for k, v in o.items():
            if isinstance(v, dict):
                lines.append(f"| {k} | {v['pixel_auroc']:.3f} | {v['pixel_fpr95']:.3f} | {v['scene_auroc']:.3f} | "
                             f"{v['scene_fpr95']:.3f} | {v['fraction_flagged']:.3f} |")
        lines += ["", "| model | future CRPS in | future CRPS out | pixels out |", "|---|---|---|---|"]
        for n, m in res["models"].items():
            s = m["ood"]
            if "crps_ood_in" in s:
                lines.append(f"| {n} | {s['crps_ood_in']:.4f} | {s['crps_ood_out']:.4f} | {s['pixels_ood_out']} |")
    return "\n".join(lines)


def update_cards(res: dict, names=None) -> list[str]:
    """Write the compared models' rows (``names``, default all) into their cards'
    ``metrics['comparison']`` (writable card folders only); returns the names updated."""
    from evaluation.report import clean
    from models.registry import get_card

    done = []
    for n, m in res["models"].items():
        if names is not None and n not in names:
            continue
        card = get_card(n)
        card.metrics = dict(card.metrics or {})
        card.metrics["comparison"] = clean({"schema": SCHEMA, "reference": res["reference"],
                                            "thresholds_mm_h": res["thresholds_mm_h"], "periods": res["periods"],
                                            "test": m["test"], "ood": m["ood"], "trend": m["trend"],
                                            "goal": res["goal"]["models"].get(n)})
        try:
            card.save(card.path)
            done.append(n)
        except OSError:
            continue
    return done


def default_result_path():
    """Where the last comparison is kept for the app: ``<data_root>/comparison/compare.json``."""

    return get_roots().data_root / "comparison" / "compare.json"


def save_result(res: dict, path=None):
    """Write a (JSON-clean) comparison atomically; returns the path."""

    p = Path(path) if path is not None else default_result_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".compare-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(res, f, indent=1)
    os.replace(tmp, p)
    return p


#: the comparison of the shipped models (``raincheck compare``), shown until a user runs their own
PACKAGED_RESULT = Path(__file__).resolve().parent / "data" / "demo_compare.json"


def load_result(path=None) -> dict | None:
    """The comparison at ``path``; by default the last one run here
    (:func:`default_result_path`), else the one shipped for the shipped models
    (:data:`PACKAGED_RESULT`); None when there is none (or it is unreadable)."""

    if path is not None:
        p = Path(path)
    else:
        p = default_result_path()
        if not p.is_file():
            p = PACKAGED_RESULT
    try:
        return json.loads(p.read_text()) if p.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def _finite(x) -> bool:
    return isinstance(x, float) and math.isfinite(x)

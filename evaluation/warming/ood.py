"""Does an out-of-distribution score flag where a model's forced response goes wrong? (issue 15)

On N paired scenes of a world preset (the forced-response design of :mod:`evaluation.warming.run`:
the same weather at the training climate, level 0, and at +L K) a model M retrieves both climates
and a detector D (a model that ships an OOD detector, e.g. ``flow-residual``) scores them.

Per pixel the **forced error** is ``e = (M_L - M_0) - (T_L - T_0)`` (mm h-1; M = M's
``precip_mean``, T = ``surface_precip_truth``). The **population** is the valid pixels (every
input finite) that are wet (> :data:`WET_MM_H` mm h-1) in the truth or in M at either climate; the
**positives** are the pixels of the population with the largest ``|e|``: with n population pixels
(pooled over the scenes) and a fraction f (:data:`TOP_FRACTIONS`, 1 % and 5 %), k = max(1,
ceil(f n)), the threshold t is the k-th largest ``|e|`` and a pixel is positive iff ``|e| >= t``
(ties at t included); the others of the population are the negatives. Scene level: a scene's
value of a score is its mean over the scene's population pixels, a scene's error its mean ``|e|``
there; the positive scenes are the top :data:`SCENE_TOP_FRACTION` (20 %) of the scenes with a
population by that mean, by the same rule.

Scores (higher = flagged): ``ood_warm`` D's calibrated OOD score on the warm scene; baselines
``spread_warm`` M's q0.9 - q0.1 on the warm scene (quantiles interpolated linearly in the quantile
level), ``ood_change`` D's score warm minus base, and ``rain_warm`` M's posterior mean on the warm
scene (how much a score only says "heavy rain here").

AUROC = P(score of a positive > score of a negative) + P(tie) / 2 (Mann-Whitney U / (n1 n0)).
Interval: a scene bootstrap (never pixels): B multinomial resamples of the scenes
(:func:`evaluation.warming.response.boot_weights`); the AUROC of a resample is computed exactly from
the cross-scene U matrix (``U[k, l]`` = pairs positive-in-scene-k > negative-in-scene-l, ties half):
``AUROC(w) = w U w / ((w n1)(w n0))``. The positives' threshold is the full sample's (held fixed in
the replicates). For reference the AUROC of D's score for "this pixel (scene) is from the warm
climate" (level L positives, level 0 negatives, the same pixels) over the population pixels, and
per scene (its mean score over the population, or over all its valid pixels), bootstrapped the
same way (a scene's two climates are resampled together).
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from catalogs.store import atomic_write
from evaluation.warming.response import boot_weights, interval, read_result_json
from evaluation.warming.run import (DEFAULT_CONFIG, WarmingCancelled, _period, _simulate, check_levels, climates,
                                    plan_scenes, training_climate_K)

KIND = "raincheck.warming_ood"
SCHEMA_VERSION = 1
WET_MM_H = 0.1
TOP_FRACTIONS = (0.01, 0.05)
SCENE_TOP_FRACTION = 0.2
SPREAD_LEVELS = (0.1, 0.9)
SCORES = {
    "ood_warm": "the detector's calibrated OOD score on the warm scene",
    "spread_warm": "the model's predictive spread q0.9 - q0.1 on the warm scene (mm h-1)",
    "ood_change": "the detector's OOD score, warm minus base",
    "rain_warm": "the model's posterior mean on the warm scene (mm h-1): the 'heavy rain' baseline",
}
COLUMNS = ("unit", "positives", "fraction", "score", "auroc", "lo", "hi", "vs_rain", "vs_rain_lo", "vs_rain_hi",
           "n_pos", "n_neg", "threshold_mm_h")
REFERENCE_COLUMNS = ("unit", "population", "auroc", "lo", "hi", "n_pos", "n_neg")


class NoDetector(ValueError):
    """The detector model ships no OOD detector."""


# --------------------------------------------------------------------------- pure functions
def forced_error(t0, tL, m0, mL) -> np.ndarray:
    """Per-pixel forced error ``(mL - m0) - (tL - t0)`` (mm h-1)."""
    return (np.asarray(mL, np.float64) - np.asarray(m0, np.float64)) - (np.asarray(tL, np.float64)
                                                                        - np.asarray(t0, np.float64))


def population_mask(t0, tL, m0, mL, wet: float = WET_MM_H) -> np.ndarray:
    """Pixels wet (> ``wet`` mm h-1) in the truth or the model at either climate (NaN is not wet)."""
    out = np.zeros(np.shape(t0), bool)
    for a in (t0, tL, m0, mL):
        with np.errstate(invalid="ignore"):
            out |= np.asarray(a, np.float64) > wet
    return out


def top_positives(values, fraction: float) -> tuple[np.ndarray, float]:
    """``(positive mask, threshold)``: with n finite values, k = max(1, ceil(fraction n)), the
    threshold is the k-th largest value and a value is positive iff it is >= the threshold."""
    v = np.asarray(values, np.float64)
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"fraction {fraction!r} is outside (0, 1]")
    ok = np.isfinite(v)
    n = int(ok.sum())
    if n == 0:
        return np.zeros(v.shape, bool), float("nan")
    k = max(1, math.ceil(float(fraction) * n - 1e-9))
    t = float(np.partition(v[ok], n - k)[n - k])
    with np.errstate(invalid="ignore"):
        return ok & (v >= t), t


def quantile_at(quantiles, levels, level: float) -> np.ndarray:
    """The quantile at ``level`` from quantiles (..., Q) at sorted ``levels``, linear in the level."""
    lv = np.asarray(levels, np.float64)
    if not lv[0] <= level <= lv[-1]:
        raise ValueError(f"quantile level {level:g} is outside the model's levels {lv[0]:g}..{lv[-1]:g}")
    j = int(np.clip(np.searchsorted(lv, level, side="right") - 1, 0, lv.size - 2))
    a = (level - lv[j]) / (lv[j + 1] - lv[j])
    q = np.asarray(quantiles, np.float64)
    return (1.0 - a) * q[..., j] + a * q[..., j + 1]


def predictive_spread(quantiles, levels, lo: float = SPREAD_LEVELS[0], hi: float = SPREAD_LEVELS[1]) -> np.ndarray:
    """``q(hi) - q(lo)`` of quantiles (..., Q) at ``levels`` (mm h-1)."""
    return quantile_at(quantiles, levels, hi) - quantile_at(quantiles, levels, lo)


def auroc_parts(scores, positive, scene, n_scenes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cross-scene Mann-Whitney counts: ``U`` (K, K) with ``U[k, l]`` = number of pairs (positive of
    scene k, negative of scene l) where the positive scores higher, ties counted half; ``n1`` (K)
    positives and ``n0`` (K) negatives per scene. Pixels with a non-finite score are left out."""
    s = np.asarray(scores, np.float64).ravel()
    p = np.asarray(positive, bool).ravel()
    sc = np.asarray(scene, np.int64).ravel()
    if not s.size == p.size == sc.size:
        raise ValueError(f"scores ({s.size}), positive ({p.size}) and scene ({sc.size}) differ in length")
    K = int(n_scenes)
    if sc.size and (sc.min() < 0 or sc.max() >= K):
        raise ValueError(f"scene index outside 0..{K - 1}")
    ok = np.isfinite(s)
    s, p, sc = s[ok], p[ok], sc[ok]
    n1 = np.bincount(sc[p], minlength=K).astype(np.float64)
    n0 = np.bincount(sc[~p], minlength=K).astype(np.float64)
    U = np.zeros((K, K), np.float64)
    ps, psc = s[p], sc[p]
    o = np.argsort(ps, kind="stable")  # sorted queries: searchsorted runs far faster
    ps, psc = ps[o], psc[o]
    if ps.size == 0:
        return U, n1, n0
    neg_s, neg_sc = s[~p], sc[~p]
    order = np.argsort(neg_sc, kind="stable")
    neg_s, neg_sc = neg_s[order], neg_sc[order]
    bounds = np.searchsorted(neg_sc, np.arange(K + 1))
    for k in range(K):
        a, b = bounds[k], bounds[k + 1]
        if a == b:
            continue
        neg = np.sort(neg_s[a:b])
        below = np.searchsorted(neg, ps, side="left")
        upto = np.searchsorted(neg, ps, side="right")
        U[:, k] = np.bincount(psc, weights=below + 0.5 * (upto - below), minlength=K)
    return U, n1, n0


def auroc_from_parts(U, n1, n0, weights=None) -> np.ndarray | float:
    """AUROC of the scenes weighted by ``weights`` ((B, K) or (K,); None: every scene once):
    ``w U w / ((w n1)(w n0))``; NaN where there is no positive or no negative."""
    U, n1, n0 = (np.asarray(x, np.float64) for x in (U, n1, n0))
    if weights is None:
        tot = float(n1.sum() * n0.sum())
        return float(U.sum() / tot) if tot > 0 else float("nan")
    w = np.asarray(weights, np.float64)
    one = w.ndim == 1
    w = np.atleast_2d(w)
    num = np.einsum("bk,kl,bl->b", w, U, w)
    den = (w @ n1) * (w @ n0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return float(out[0]) if one else out


def auroc(scores, positive) -> float:
    """Plain AUROC of ``scores`` for ``positive`` (Mann-Whitney U / (n1 n0), ties half)."""
    s = np.asarray(scores, np.float64).ravel()
    return auroc_from_parts(*auroc_parts(s, positive, np.zeros(s.size, np.int64), 1))


def bootstrap_auroc(scores, positive, scene, weights: np.ndarray, ci: float = 90.0) -> dict:
    """``{auroc, lo, hi, n_pos, n_neg}``: the AUROC (every scene once) and its scene-bootstrap
    percentile interval over the replicates ``weights`` ((B, K) multinomial scene counts)."""
    return _boot(scores, positive, scene, weights, ci)[0]


def _boot(scores, positive, scene, weights, ci):
    w = np.asarray(weights, np.float64)
    U, n1, n0 = auroc_parts(scores, positive, scene, w.shape[1])
    reps = auroc_from_parts(U, n1, n0, w)
    lo, hi = interval(reps, ci)
    est = auroc_from_parts(U, n1, n0)
    return {"auroc": est, "lo": float(lo), "hi": float(hi), "n_pos": int(n1.sum()), "n_neg": int(n0.sum())}, est, reps


def _versus(est, reps, base_est, base_reps, ci) -> dict:
    """The paired difference of two AUROCs over the same replicates (vs_rain, its interval)."""
    lo, hi = interval(np.asarray(reps) - np.asarray(base_reps), ci)
    return {"vs_rain": est - base_est, "vs_rain_lo": float(lo), "vs_rain_hi": float(hi)}


# --------------------------------------------------------------------------- the result
def _num(x, digits: int = 6):
    if x is None:
        return None
    x = float(x)
    return float(f"{x:.{digits}g}") if math.isfinite(x) else None


@dataclass
class WarmingOOD:
    """The result: ``meta`` (world, checkpoints, scene plan, command, rules), ``rows`` (AUROC of each
    score against the largest forced errors, :data:`COLUMNS`), ``reference`` (warm-vs-base AUROC of
    the detector, :data:`REFERENCE_COLUMNS`) and ``scenes`` (per scene, in the plan's order:
    population, mean |e|, scene scores; ``per_scene`` in the JSON, apart from ``meta["scenes"]``, the
    plan)."""

    meta: dict
    rows: list[dict] = field(default_factory=list)
    reference: list[dict] = field(default_factory=list)
    scenes: list[dict] = field(default_factory=list)

    @property
    def world(self) -> str:
        return str((self.meta.get("world") or {}).get("name", ""))

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The JSON (docs/evaluation.md, "OOD score against the forced error"); written atomically
        to ``path`` if given."""
        d = {**self.meta, "rows": self.rows, "reference": self.reference, "per_scene": self.scenes}
        text = json.dumps(d, indent=1, allow_nan=False) + "\n"
        if path is not None:
            atomic_write(path, lambda tmp: Path(tmp).write_text(text), meta={"kind": KIND})
        return text

    @classmethod
    def from_json(cls, text_or_path) -> WarmingOOD:
        d = read_result_json(text_or_path, KIND, SCHEMA_VERSION, "warming-OOD")
        return cls(meta={k: v for k, v in d.items() if k not in ("rows", "reference", "per_scene")},
                   rows=d["rows"], reference=d["reference"], scenes=d["per_scene"])

    def frame(self):
        """Tidy :class:`pandas.DataFrame` of :data:`COLUMNS` (None → NaN)."""
        import pandas as pd

        df = pd.DataFrame(self.rows, columns=list(COLUMNS))
        for c in ("fraction", "auroc", "lo", "hi", "vs_rain", "vs_rain_lo", "vs_rain_hi", "threshold_mm_h"):
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
        return df

    def text(self) -> str:
        """A plain-text table of the AUROCs with their intervals."""
        m = self.meta
        f = lambda x: "—" if x is None else f"{x:.3f}"  # noqa: E731
        g = lambda x: "—" if x is None else f"{x:+.3f}"  # noqa: E731
        lines = [f"world {self.world} ({m['world'].get('version')}), +{m['level_K']:g} K, model {m['model']['name']}, "
                 f"detector {m['detector']['name']}, {m['n_scenes']} scenes × {m['scenes']['n_scans']} scans, "
                 f"{m['n_boot']} scene-bootstrap replicates, {m['ci']:g} % intervals",
                 f"population: {m['n_population']} pixels wet (> {m['wet_mm_h']:g} mm h-1) in truth or model at either "
                 "climate; AUROC of each score for the pixels (scenes) with the largest |forced error|"]
        for r in self.rows:
            thr = "" if r["threshold_mm_h"] is None else f"  |e| >= {r['threshold_mm_h']:.3g} mm h-1"
            vs = "" if r["vs_rain"] is None else (f"  vs rain {r['vs_rain']:+.3f} [{g(r['vs_rain_lo'])}, "
                                                  f"{g(r['vs_rain_hi'])}]")
            lines.append(f"  {r['unit']:5s} {r['positives']:7s} {r['score']:11s} {f(r['auroc'])} "
                         f"[{f(r['lo'])}, {f(r['hi'])}]{vs}  ({r['n_pos']} pos / {r['n_neg']} neg){thr}")
        for p in m.get("positives", []):
            lines.append(f"  {p['unit']} {p['positives']}: detector score at level 0, median {f(p['ood_base_median_pos'])}"
                         f" (positives) vs {f(p['ood_base_median_neg'])} (negatives); positives >= 0.99 already: "
                         f"{f(p['share_pos_ood_base_ge_0.99'])}; over-stated (e > 0): {f(p['share_over_stated'])}")
        lines.append("reference: the detector's AUROC for 'from the warm climate' (level L vs level 0)")
        for r in self.reference:
            lines.append(f"  {r['unit']:5s} {r['population']:10s} {f(r['auroc'])} [{f(r['lo'])}, {f(r['hi'])}]")
        return "\n".join(lines)


#: how every figure of a result is defined (stored in its meta)
RULES = {
    "forced_error": "e = (M_L - M_0) - (T_L - T_0) per pixel, mm h-1 (M: the model's precip_mean, "
                    "T: surface_precip_truth)",
    "population": f"valid pixels wet (> {WET_MM_H:g} mm h-1) in the truth or the model at either "
                  "climate, pooled over the scenes",
    "pixel_positives": "k = max(1, ceil(f n)) of the n population pixels; positive iff |e| >= the "
                       "k-th largest |e| (ties included); negatives: the rest of the population",
    "scene_positives": "scenes with a population, by their mean |e| over it: positive iff >= the "
                       "k-th largest, k = max(1, ceil(f K))",
    "scene_score": "mean of the pixel score over the scene's population pixels (reference 'all "
                   "valid': over its valid pixels)",
    "bootstrap": "multinomial resamples of the scenes (never pixels); the AUROC of a resample is "
                 "exact (cross-scene U matrix); the positives' threshold is the full sample's",
    "auroc": "P(score positive > score negative) + P(tie)/2; 0.5 = no skill, < 0.5 = lower on "
             "the positives",
    "vs_rain": "AUROC of the score minus that of rain_warm, paired over the same replicates",
    "positives": "share_over_stated: share of the positive pixels with e > 0; ood_base_median_pos|"
                 "neg: median detector score at level 0 (scene level: of the scene means); "
                 "share_pos_ood_base_ge_0.99: positives at the score's ceiling (an ECDF in [0, 1]) "
                 "already at level 0"
}


def _pool_scenes(per_scene: list[dict]) -> tuple[dict, list[dict]]:
    """The population pixels of every scene pooled (``pix``: forced error ``e``, the scores, the
    scene index of each pixel) and one summary per scene (sizes, mean |e|, mean scores)."""
    keys = ("t0", "tL", "m0", "mL", "spread", "ood0", "oodL")
    pix = {k: [] for k in ("e", "ood_warm", "spread_warm", "ood_change", "rain_warm", "ood0", "scene")}
    scenes = []
    for i, d in enumerate(per_scene):
        a = {k: np.asarray(d[k], np.float64).ravel() for k in keys}
        if len({v.size for v in a.values()}) != 1:
            raise ValueError(f"scene {i}: arrays differ in size")
        valid = np.logical_and.reduce([np.isfinite(v) for v in a.values()])
        pop = valid & population_mask(a["t0"], a["tL"], a["m0"], a["mL"])
        e = forced_error(a["t0"], a["tL"], a["m0"], a["mL"])[pop]
        vals = {"e": e, "ood_warm": a["oodL"][pop], "spread_warm": a["spread"][pop],
                "ood_change": (a["oodL"] - a["ood0"])[pop], "rain_warm": a["mL"][pop], "ood0": a["ood0"][pop],
                "scene": np.full(e.size, i, np.int64)}
        for k, v in vals.items():
            pix[k].append(v)
        has = e.size > 0
        scenes.append({"n_valid": int(valid.sum()), "n_population": int(e.size),
                       "mean_abs_error_mm_h": float(np.abs(e).mean()) if has else float("nan"),
                       **{s: float(vals[s].mean()) if has else float("nan") for s in SCORES},
                       "ood_base": float(vals["ood0"].mean()) if has else float("nan"),
                       "ood_base_valid": float(a["ood0"][valid].mean()) if valid.any() else float("nan"),
                       "ood_warm_valid": float(a["oodL"][valid].mean()) if valid.any() else float("nan")})
    return {k: np.concatenate(v) for k, v in pix.items()}, scenes


def compute_ood_result(per_scene: list[dict], *, n_boot: int = 1000, seed: int = 0, ci: float = 90.0,
                       fractions=TOP_FRACTIONS, scene_fraction: float = SCENE_TOP_FRACTION,
                       meta: dict | None = None) -> WarmingOOD:
    """The result from per-scene pixel arrays. Each entry of ``per_scene``: ``t0, tL, m0, mL``
    (truth and model mean at level 0 and L), ``spread`` (model q0.9 - q0.1, warm), ``ood0, oodL``
    (detector score at level 0 and L), all of one shape."""
    K = len(per_scene)
    if K < 2:
        raise ValueError(f"at least 2 scenes are needed for the scene bootstrap, got {K}")
    pix, scenes = _pool_scenes(per_scene)
    n_pop = int(pix["e"].size)
    if n_pop == 0:
        raise ValueError("no wet pixel in any scene: nothing to evaluate")
    W = boot_weights(K, n_boot, seed)[1:]
    abs_e = np.abs(pix["e"])
    rows = []
    s_err = np.array([sc["mean_abs_error_mm_h"] for sc in scenes])
    cases = [("pixel", f, *top_positives(abs_e, f), lambda s: pix[s], pix["scene"]) for f in fractions]
    cases.append(("scene", scene_fraction, *top_positives(s_err, scene_fraction),
                  lambda s: np.where(np.isfinite(s_err), np.array([sc[s] for sc in scenes]), np.nan), np.arange(K)))
    positives = []
    for unit, f, pos, thr, values, scene_of in cases:
        e_of = pix["e"] if unit == "pixel" else np.array([np.nan] * K)
        ob = values("ood_warm") - values("ood_change")  # the detector's score at level 0
        neg = np.isfinite(ob) & ~pos
        positives.append({"unit": unit, "positives": f"top {100 * f:g} %", "threshold_mm_h": thr,
                          "n_pos": int(pos.sum()), "share_over_stated": float(np.mean(e_of[pos] > 0))
                          if unit == "pixel" and pos.any() else None,
                          "ood_base_median_pos": float(np.median(ob[pos])) if pos.any() else None,
                          "ood_base_median_neg": float(np.median(ob[neg])) if neg.any() else None,
                          "share_pos_ood_base_ge_0.99": float(np.mean(ob[pos] >= 0.99)) if pos.any() else None})
        base = _boot(values("rain_warm"), pos, scene_of, W, ci)
        for s in SCORES:
            r, est, reps = _boot(values(s), pos, scene_of, W, ci) if s != "rain_warm" else base
            vs = (_versus(est, reps, base[1], base[2], ci) if s != "rain_warm"
                  else {"vs_rain": None, "vs_rain_lo": None, "vs_rain_hi": None})
            rows.append({"unit": unit, "positives": f"top {100 * f:g} %", "fraction": f, "score": s, **r, **vs,
                         "threshold_mm_h": thr})
    reference = []
    both = lambda b, w, sc: (np.concatenate([b, w]), np.r_[np.zeros(b.size, bool), np.ones(w.size, bool)],  # noqa: E731
                             np.concatenate([sc, sc]))
    reference.append({"unit": "pixel", "population": "wet", **bootstrap_auroc(
        *both(pix["ood0"], pix["ood_warm"], pix["scene"]), W, ci)})
    idx = np.arange(K)
    for pop, (kb, kw) in (("wet", ("ood_base", "ood_warm")), ("all valid", ("ood_base_valid", "ood_warm_valid"))):
        b = np.array([sc[kb] for sc in scenes])
        w = np.array([sc[kw] for sc in scenes])
        reference.append({"unit": "scene", "population": pop, **bootstrap_auroc(*both(b, w, idx), W, ci)})
    clean = lambda r: {k: (_num(v) if isinstance(v, float) else v) for k, v in r.items()}  # noqa: E731
    meta = {"kind": KIND, "schema_version": SCHEMA_VERSION, **(meta or {})}
    meta.update({"positives": [clean(r) for r in positives], "n_scenes": K, "n_boot": int(n_boot),
                 "boot_seed": int(seed), "ci": float(ci), "wet_mm_h": WET_MM_H, "n_population": n_pop,
                 "n_valid": int(sum(sc["n_valid"] for sc in scenes)), "top_fractions": [float(f) for f in fractions],
                 "scene_top_fraction": float(scene_fraction), "spread_levels": list(SPREAD_LEVELS),
                 "scores": dict(SCORES), "rules": dict(RULES)})
    return WarmingOOD(meta=meta, rows=[clean(r) for r in rows], reference=[clean(r) for r in reference],
                      scenes=[clean(s) for s in scenes])


# --------------------------------------------------------------------------- the run
def detector_models() -> list[str]:
    """The registered models that ship an OOD detector."""
    from models.registry import list_models
    from models.run import loaded_model

    out = []
    for c in list_models():
        if c.kind == "flow" and getattr(loaded_model(c.name, str(c.checkpoint_sha256)), "ood", None) is not None:
            out.append(c.name)
    return out


def _retrieval(name: str, sha: str, swath, torch_threads):
    from models.run import predict_current

    ds = predict_current(name, sha, swath, job="the OOD run", torch_threads=torch_threads)
    return (np.asarray(ds["precip_mean"].values, np.float64), np.asarray(ds["precip_quantiles"].values, np.float64),
            np.asarray(ds["quantile"].values, np.float64), ds)


def _ood_score(name: str, sha: str, swath, ref_ds, torch_threads) -> np.ndarray:
    from models.research.flow import add_ood_layer
    from models.run import loaded_model

    d = loaded_model(name, sha, torch_threads=torch_threads)
    if getattr(d, "ood", None) is None:
        raise NoDetector(f"model {name!r} ships no OOD detector")
    ds = add_ood_layer(d, swath, ref_ds.drop_vars("ood_score", errors="ignore"))
    return np.asarray(ds["ood_score"].values, np.float64)


def run_warming_ood(
    world: str = "published-freezing-level",
    level: float = 4.0,
    *,
    model: str = "unet-reference",
    detector: str = "flow-residual",
    n_scenes: int = 30,
    n_scans: int = 150,
    seed: int = 0,
    world_seed: int = 0,
    n_boot: int = 1000,
    ci: float = 90.0,
    config: str = DEFAULT_CONFIG,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: threading.Event | None = None,
    command: str = "",
    simulate: Callable | None = None,
    torch_threads: int | None = 1,
) -> WarmingOOD:
    """Simulate the first ``n_scenes`` scenes of the forced-response plan at level 0 and ``level``
    under ``world``, retrieve with ``model``, score with ``detector`` and return the
    :class:`WarmingOOD`. Nothing is stored (the scenes are recomputed, ~1 s each)."""
    from catalogs.simulator import PRODUCT_VERSION, TRUTH_VERSION, get_world
    from models.registry import get_card

    w = get_world(world)
    (lv,) = check_levels([level])
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    cm, cd = get_card(model), get_card(detector)
    sha_m, sha_d = str(cm.checkpoint_sha256), str(cd.checkpoint_sha256)
    if detector not in detector_models():
        raise NoDetector(f"model {detector!r} ships no OOD detector; models with one: "
                         f"{', '.join(detector_models()) or 'none'}")
    levels = np.asarray(cm.levels, np.float64)
    if not (levels[0] <= SPREAD_LEVELS[0] and SPREAD_LEVELS[1] <= levels[-1]):
        raise ValueError(f"model {model!r} has quantile levels {levels[0]:g}..{levels[-1]:g}; the spread needs "
                         f"{SPREAD_LEVELS[0]:g}..{SPREAD_LEVELS[1]:g}")
    dT = training_climate_K(config)
    scenes = plan_scenes(n_scenes, n_scans, seed, config)
    cfg = {"world": w.name, "world_seed": int(world_seed), "simulate": simulate}
    per = []
    for i, sc in enumerate(scenes):
        if cancel is not None and cancel.is_set():
            raise WarmingCancelled(f"cancelled after {i} of {len(scenes)} scenes; nothing written")
        d = {}
        for tag, wk in zip(("0", "L"), climates(sc, dT, [lv])):
            ds = _simulate(sc, wk, cfg)
            mean, q, qlev, ret = _retrieval(model, sha_m, ds, torch_threads)
            d["t" + tag] = np.asarray(ds["surface_precip_truth"].values, np.float32)
            d["m" + tag] = mean.astype(np.float32)
            d["ood" + tag] = _ood_score(detector, sha_d, ds, ret, torch_threads).astype(np.float32)
            if tag == "L":
                d["spread"] = predictive_spread(q, qlev).astype(np.float32)
        per.append(d)
        if progress:
            progress(i + 1, len(scenes), f"orbit {sc['orbit']}")
    meta = {
        "command": command,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "world": w.describe(),
        "level_K": lv,
        "product_version": PRODUCT_VERSION,
        "truth_version": TRUTH_VERSION,
        "model": {"name": model, "checkpoint_sha256": sha_m, "product": "precip_mean"},
        "detector": {"name": detector, "checkpoint_sha256": sha_d, "product": "ood_score"},
        "scenes": {"config": config, "period": list(_period(config, "test")), "seed": int(seed),
                   "world_seed": int(world_seed), "n_scans": int(n_scans),
                   "orbits": [sc["orbit"] for sc in scenes], "scan_starts": [sc["scan_start"] for sc in scenes],
                   "scene_gmst_K": [round(sc["scene_gmst_K"], 6) for sc in scenes],
                   "warming_K": [[round(x, 6) for x in climates(sc, dT, [lv])] for sc in scenes]},
        "training_climate_K": dT,
    }
    if progress:
        progress(len(scenes), len(scenes), "bootstrap")
    return compute_ood_result(per, n_boot=n_boot, seed=seed, ci=ci, meta=meta)

"""The forced response of rain statistics to warming, truth and models on the same scenes, with a
paired scene bootstrap, the error of each model's response and a verdict (docs/evaluation.md,
"Forced response").

Input: per-scene summaries (:mod:`evaluation.warming.summary`) of every source at the base
climate (level 0 K: the training climate) and at each warming level L (K above it), stacked over
the N scenes. The response of a statistic S is compound, like
:func:`evaluation.compare.trend_pct_per_K`: ``100 * ((S_L / S_0) ** (1 / L) - 1)`` %/K.

Bootstrap: one multinomial weight matrix (B × N, the scene is the unit) is applied to every source
and climate, so model and truth are resampled together; pooled histograms are ``weights @
per-scene histograms`` and the quantiles are taken per replicate. Intervals are percentile
intervals; a model's error is its response minus the truth's in the same replicate.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from catalogs.store import MARKER
from evaluation.warming.summary import GROUPS, THRESHOLDS, hist_quantiles

KIND = "raincheck.forced_response"
SCHEMA_VERSION = 1
TRUTH = "truth"
#: quantile levels of the quantile curves (all pixels and wet pixels)
QUANTILE_LEVELS = (0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9999)
VERDICTS = ("over-states", "under-states", "tracks", "undetermined")
#: a bootstrap interval is given only if at most this fraction of replicates is undefined
MAX_NAN_FRACTION = 0.05
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "data" / "warming"
COLUMNS = ("world", "group", "statistic", "population", "level_q", "threshold_mm_h", "warming_K", "source",
           "value_base", "value", "response", "lo", "hi", "error", "error_lo", "error_hi", "verdict")
VERSUS_COLUMNS = ("world", "group", "statistic", "population", "level_q", "threshold_mm_h", "warming_K", "source",
                  "against", "diff", "diff_lo", "diff_hi", "abs_change", "abs_change_lo", "abs_change_hi")
#: the model every other is compared with in the same bootstrap replicates
REFERENCE_MODEL = "unet-reference"
GROWTH_COLUMNS = ("world", "group", "statistic", "population", "level_q", "threshold_mm_h", "source",
                  "from_K", "to_K", "growth", "lo", "hi")


def stat_specs(quantiles: Sequence[float] = QUANTILE_LEVELS, thresholds: Sequence[float] = THRESHOLDS) -> list[dict]:
    """The statistics, in the order :func:`statistics` computes them."""
    out = [{"statistic": "mean", "population": "all", "level_q": None, "threshold_mm_h": None},
           {"statistic": "wet_fraction", "population": "all", "level_q": None, "threshold_mm_h": None}]
    out += [{"statistic": "quantile", "population": pop, "level_q": float(q), "threshold_mm_h": None}
            for pop in ("all", "wet") for q in quantiles]
    out += [{"statistic": "exceedance", "population": "all", "level_q": None, "threshold_mm_h": float(t)}
            for t in thresholds]
    return out


def statistics(n, total, wet, exceed, hist, quantiles: Sequence[float] = QUANTILE_LEVELS) -> np.ndarray:
    """The statistics of pooled summaries (leading dims ``...``): mean (mm h-1), wet fraction,
    quantiles of all and of wet pixels (mm h-1), exceedance frequencies; ``(..., n_stats)``."""
    n = np.asarray(n, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.asarray(total, np.float64) / n, np.nan)
        wf = np.where(n > 0, np.asarray(wet, np.float64) / n, np.nan)
        ex = np.where(n[..., None] > 0, np.asarray(exceed, np.float64) / n[..., None], np.nan)
    qa = hist_quantiles(hist, quantiles)
    qw = hist_quantiles(hist, quantiles, wet=True)
    return np.concatenate([mean[..., None], wf[..., None], qa, qw, ex], axis=-1)


def compound_pct_per_K(s_base, s_level, level_K: float) -> np.ndarray:
    """``100 * ((s_level / s_base) ** (1 / level_K) - 1)``; NaN unless both are > 0."""
    a = np.asarray(s_base, np.float64)
    b = np.asarray(s_level, np.float64)
    ok = (a > 0) & (b > 0) & np.isfinite(a) & np.isfinite(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = 100.0 * (np.power(np.where(ok, b / np.where(ok, a, 1.0), 1.0), 1.0 / float(level_K)) - 1.0)
    return np.where(ok, r, np.nan)


def boot_weights(n_scenes: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """``(1 + n_boot, n_scenes)`` weights: row 0 all ones (the estimate), then multinomial
    resamples of the scenes (each row sums to ``n_scenes``)."""
    rng = np.random.default_rng([int(seed), 14])
    w = rng.multinomial(n_scenes, np.full(n_scenes, 1.0 / n_scenes), size=int(n_boot)).astype(np.float64)
    return np.vstack([np.ones((1, n_scenes)), w])


def interval(reps: np.ndarray, ci: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over ``axis`` (the bootstrap replicates); NaN where more than
    :data:`MAX_NAN_FRACTION` of them are undefined."""
    r = np.asarray(reps, np.float64)
    a = (100.0 - ci) / 2.0
    bad = np.mean(~np.isfinite(r), axis=axis) > MAX_NAN_FRACTION
    with np.errstate(invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo = np.nanpercentile(r, a, axis=axis)
            hi = np.nanpercentile(r, 100.0 - a, axis=axis)
    return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def verdict(lo: float, hi: float, tolerance: float) -> str:
    """From the interval of a model's error (%/K): "over-states" (lo > 0), "under-states"
    (hi < 0), "tracks" (the interval lies inside ±tolerance: an equivalence test), otherwise
    "undetermined" (also when the interval is undefined)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "undetermined"
    if lo > 0:
        return "over-states"
    if hi < 0:
        return "under-states"
    if -tolerance <= lo and hi <= tolerance:
        return "tracks"
    return "undetermined"


def _pool(s: dict, g: int, w: np.ndarray) -> tuple:
    """Pooled (weighted) summaries of group ``g`` for every weight row."""
    return (w @ s["n"][:, g].astype(np.float64), w @ s["sum"][:, g].astype(np.float64),
            w @ s["wet"][:, g].astype(np.float64), w @ s["exceed"][:, g, :].astype(np.float64),
            w @ s["hist"][:, g, :].astype(np.float64))


def _r(x, nd=6):
    if x is None:
        return None
    x = float(x)
    if not math.isfinite(x):
        return None
    return float(f"{x:.{nd}g}")


def compute_response(summaries: dict, levels: Sequence[float], *, n_boot: int = 1000, seed: int = 0,
                     ci: float = 90.0, tolerance: float = 1.0, groups: Sequence[str] = tuple(GROUPS),
                     quantiles: Sequence[float] = QUANTILE_LEVELS, meta: dict | None = None,
                     against: str | None = REFERENCE_MODEL) -> ForcedResponse:
    """The forced response from per-scene summaries.

    ``summaries[source]`` is a list with one entry per climate (index 0: the base, then one per
    ``levels``), each a dict of arrays stacked over scenes: ``n``, ``sum``, ``wet`` (N, G),
    ``exceed`` (N, G, T), ``hist`` (N, G, N_BINS). ``summaries["truth"]`` is required; every other
    source is a model. Scenes must be in the same order in every source and climate.

    ``against``: a model (default the reference U-Net) every other model is compared with, in the same
    bootstrap replicates (:data:`VERSUS_COLUMNS`): ``diff`` = error(model) − error(against) and
    ``abs_change`` = |error(model)| − |error(against)|, each with its paired interval (an ``abs_change``
    interval below zero: the model's forced error is smaller in magnitude, beyond the scene noise)."""
    levels = [float(x) for x in levels]
    if not levels or any(not (x > 0) for x in levels):
        raise ValueError(f"warming levels must be > 0 K, got {levels}")
    if TRUTH not in summaries:
        raise ValueError("summaries need the truth")
    n_sc = {src: [int(np.asarray(c["n"]).shape[0]) for c in clim] for src, clim in summaries.items()}
    flat = {x for v in n_sc.values() for x in v}
    if len(flat) != 1 or any(len(v) != len(levels) + 1 for v in n_sc.values()):
        raise ValueError(f"every source needs {len(levels) + 1} climates of the same scenes; got {n_sc}")
    N = flat.pop()
    if N < 2:
        raise ValueError(f"the scene bootstrap needs at least 2 scenes, got {N}")
    meta = dict(meta or {})
    world = str((meta.get("world") or {}).get("name", meta.get("world_name", "")))
    w = boot_weights(N, n_boot, seed)
    specs = stat_specs(quantiles)
    models = [s for s in summaries if s != TRUTH]
    rows, growth, versus = [], [], []
    for g, gname in enumerate(groups):
        S = {src: np.stack([statistics(*_pool(c, g, w), quantiles=quantiles) for c in clim])
             for src, clim in summaries.items()}  # (1 + n_levels, 1 + B, n_stats)
        R = {src: np.stack([compound_pct_per_K(s[0], s[k + 1], L) for k, L in enumerate(levels)])
             for src, s in S.items()}  # (n_levels, 1 + B, n_stats)
        for src in [TRUTH, *models]:
            lo, hi = interval(R[src][:, 1:], ci, axis=1)
            if src != TRUTH:
                err = R[src] - R[TRUTH]
                elo, ehi = interval(err[:, 1:], ci, axis=1)
            for k, L in enumerate(levels):
                for j, sp in enumerate(specs):
                    row = {"world": world, "group": gname, **sp, "warming_K": L, "source": src,
                           "value_base": _r(S[src][0, 0, j]), "value": _r(S[src][k + 1, 0, j]),
                           "response": _r(R[src][k, 0, j]), "lo": _r(lo[k, j]), "hi": _r(hi[k, j]),
                           "error": None, "error_lo": None, "error_hi": None, "verdict": None}
                    if src != TRUTH:
                        row.update(error=_r(err[k, 0, j]), error_lo=_r(elo[k, j]), error_hi=_r(ehi[k, j]),
                                   verdict=verdict(elo[k, j], ehi[k, j], tolerance))
                    rows.append(row)
            if src != TRUTH and len(levels) >= 2:
                a, b = int(np.argmin(levels)), int(np.argmax(levels))
                gr = err[b] - err[a]
                glo, ghi = interval(gr[1:], ci)
                for j, sp in enumerate(specs):
                    growth.append({"world": world, "group": gname, **sp, "source": src, "from_K": levels[a],
                                   "to_K": levels[b], "growth": _r(gr[0, j]), "lo": _r(glo[j]), "hi": _r(ghi[j])})
        if against in R:
            e_ref = R[against] - R[TRUTH]
            for src in models:
                if src == against:
                    continue
                e_m = R[src] - R[TRUTH]
                d, a_ch = e_m - e_ref, np.abs(e_m) - np.abs(e_ref)
                dlo, dhi = interval(d[:, 1:], ci, axis=1)
                alo, ahi = interval(a_ch[:, 1:], ci, axis=1)
                for k, L in enumerate(levels):
                    for j, sp in enumerate(specs):
                        versus.append({"world": world, "group": gname, **sp, "warming_K": L, "source": src,
                                       "against": against, "diff": _r(d[k, 0, j]), "diff_lo": _r(dlo[k, j]),
                                       "diff_hi": _r(dhi[k, j]), "abs_change": _r(a_ch[k, 0, j]),
                                       "abs_change_lo": _r(alo[k, j]), "abs_change_hi": _r(ahi[k, j])})
    meta.update({"kind": KIND, "schema_version": SCHEMA_VERSION, "levels_K": levels, "n_boot": int(n_boot),
                 "boot_seed": int(seed), "ci": float(ci), "tolerance_pct_per_K": float(tolerance),
                 "groups": {k: GROUPS.get(k, k) for k in groups}, "quantile_levels": [float(q) for q in quantiles],
                 "thresholds_mm_h": [float(t) for t in THRESHOLDS], "n_scenes": N, "sources": [TRUTH, *models]})
    if against in summaries:
        meta["versus"] = against
    return ForcedResponse(meta=meta, rows=rows, growth=growth, versus=versus)


def read_result_json(text_or_path, kind: str, schema_version: int, what: str) -> dict:
    """The dict of a result JSON given as its text or a path, checked to be of ``kind`` and
    ``schema_version`` (a ValueError naming ``what`` otherwise)."""
    if isinstance(text_or_path, (Path, os.PathLike)) or (isinstance(text_or_path, str)
                                                         and not text_or_path.lstrip().startswith("{")):
        text = Path(text_or_path).read_text()
    else:
        text = str(text_or_path)
    d = json.loads(text)
    if d.get("kind") != kind:
        raise ValueError(f"not a {what} result (kind {d.get('kind')!r}, expected {kind!r})")
    if int(d.get("schema_version", -1)) != schema_version:
        raise ValueError(f"{what} schema version {d.get('schema_version')} is not the supported {schema_version}")
    return d


@dataclass
class ForcedResponse:
    """A forced-response result: ``meta`` (provenance and design), ``rows`` (one per group ×
    statistic × level × source, the :data:`COLUMNS`) and ``growth`` (per model, the error at the
    largest level minus the error at the smallest, with its paired interval)."""

    meta: dict
    rows: list = field(default_factory=list)
    growth: list = field(default_factory=list)
    versus: list = field(default_factory=list)

    @property
    def world(self) -> str:
        return str((self.meta.get("world") or {}).get("name", ""))

    @property
    def models(self) -> list[str]:
        return [s for s in self.meta.get("sources", []) if s != TRUTH]

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The documented JSON (docs/evaluation.md); written atomically to ``path`` if given."""
        head = json.dumps(self.meta, indent=1, allow_nan=False)[:-2]
        body = ",\n".join(json.dumps(r, separators=(",", ":"), allow_nan=False) for r in self.rows)
        grow = ",\n".join(json.dumps(r, separators=(",", ":"), allow_nan=False) for r in self.growth)
        vs = ",\n".join(json.dumps(r, separators=(",", ":"), allow_nan=False) for r in self.versus)
        text = (f'{head},\n "rows": [\n{body}\n],\n "growth": [\n{grow}\n],\n "versus": [\n{vs}\n]\n}}\n')  # a row a line
        if path is not None:
            from catalogs.store import atomic_write

            atomic_write(path, lambda tmp: Path(tmp).write_text(text), meta={"kind": KIND})
        return text

    @classmethod
    def from_json(cls, text_or_path) -> ForcedResponse:
        return cls._from_dict(read_result_json(text_or_path, KIND, SCHEMA_VERSION, "forced-response"))

    @classmethod
    def _from_dict(cls, d: dict) -> ForcedResponse:
        d = dict(d)
        rows, growth, versus = d.pop("rows"), d.pop("growth"), d.pop("versus", [])  # versus: optional (later)
        return cls(meta=d, rows=rows, growth=growth, versus=versus)

    def frame(self):
        """Tidy :class:`pandas.DataFrame` of :data:`COLUMNS` (None → NaN)."""
        import pandas as pd

        df = pd.DataFrame(self.rows, columns=list(COLUMNS))
        for c in ("level_q", "threshold_mm_h", "value_base", "value", "response", "lo", "hi", "error", "error_lo",
                  "error_hi", "warming_K"):
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
        return df

    def versus_frame(self):
        """Tidy frame of :data:`VERSUS_COLUMNS`: each model against ``meta["versus"]`` (paired)."""
        import pandas as pd

        df = pd.DataFrame(self.versus, columns=list(VERSUS_COLUMNS))
        for c in ("level_q", "threshold_mm_h", "warming_K", "diff", "diff_lo", "diff_hi", "abs_change",
                  "abs_change_lo", "abs_change_hi"):
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
        return df

    def growth_frame(self):
        import pandas as pd

        df = pd.DataFrame(self.growth, columns=list(GROWTH_COLUMNS))
        for c in ("level_q", "threshold_mm_h", "from_K", "to_K", "growth", "lo", "hi"):
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
        return df


def load_results(folder: str | os.PathLike | None = None, *, user: bool = False,
                 product: str = "precip_mean") -> dict[str, ForcedResponse]:
    """``{world: ForcedResponse}`` of the results in ``folder`` (default: the shipped
    ``evaluation/data/warming/*.json``) for the retrieval ``product`` (results of another product,
    e.g. ``precip_sample``, are skipped); ``user=True`` adds those of the user store
    (``<data root>/warming/results``), which replace a shipped result of the same world."""
    folders = [Path(folder) if folder is not None else SHIPPED_DIR]
    if user:
        from catalogs.config import get_roots

        folders.append(get_roots().data_root / "warming" / "results")
    out: dict[str, ForcedResponse] = {}
    for d in folders:
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.json")):
            if f.name.endswith(MARKER):  # the completion marker of an atomic write
                continue
            try:
                head = json.loads(f.read_text())
            except (OSError, ValueError) as e:  # not silent: a damaged file is named in the log
                logging.getLogger(__name__).warning("forced-response result %s not read: %s", f, e)
                continue
            if head.get("kind") != KIND or head.get("product", "precip_mean") != product:
                continue
            if int(head.get("schema_version", -1)) != SCHEMA_VERSION:
                raise ValueError(f"forced-response result {f}: schema version {head.get('schema_version')} is not "
                                 f"the supported {SCHEMA_VERSION}")
            fr = ForcedResponse._from_dict(head)  # parsed once
            out[fr.world] = fr
    return out

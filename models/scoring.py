"""Small, explicit skill scores for model cards (the full evaluation lives in ``evaluation/``).

Definitions (following IPWG SatRain's conventions), on pixels where the reference is finite:

- ``bias_pct``: ``100 (sum(pred) - sum(ref)) / sum(ref)`` with ``pred`` the posterior mean;
- ``mse``: mean of ``(pred - ref)^2`` (mm2 h-2); ``correlation``: Pearson's r of pred and ref;
- ``crps``: mean CRPS of the predicted distribution against ``ref`` (mm h-1);
- ``pod_T`` / ``far_T`` for T in 0.1 and 10 mm h-1: detection when the posterior mean exceeds T;
  ``pod = hits / (hits + misses)``, ``far = false alarms / (hits + false alarms)``.
"""

from __future__ import annotations

import numpy as np

from models.quantiles import QuantileDistribution

THRESHOLDS = (0.1, 10.0)


def _fmt(t: float) -> str:
    return str(t).replace(".", "p") if t < 1 else str(int(t))


def detection_scores(pred: np.ndarray, ref: np.ndarray, threshold: float) -> dict[str, float]:
    p, r = pred > threshold, ref > threshold
    hits = float(np.sum(p & r))
    misses = float(np.sum(~p & r))
    false = float(np.sum(p & ~r))
    pod = hits / (hits + misses) if hits + misses else float("nan")
    far = false / (hits + false) if hits + false else float("nan")
    return {f"pod_{_fmt(threshold)}": pod, f"far_{_fmt(threshold)}": far}


def score(dist: QuantileDistribution, ref: np.ndarray, chunk: int = 200_000) -> dict[str, float]:
    """Scores of distributions ``dist`` (N,) against reference rain ``ref`` (N,)."""
    ref = np.asarray(ref, np.float64).ravel()
    values = dist.values.reshape(-1, dist.levels.size)
    if values.shape[0] != ref.size:
        raise ValueError(f"{values.shape[0]} distributions for {ref.size} reference values")
    mean = np.empty(ref.size)
    crps = np.empty(ref.size)
    for i in range(0, ref.size, chunk):
        d = QuantileDistribution(values[i:i + chunk], dist.levels)
        mean[i:i + chunk] = d.mean()
        crps[i:i + chunk] = d.crps(ref[i:i + chunk])
    ok = np.isfinite(ref) & np.isfinite(mean)
    return point_scores(mean[ok], ref[ok]) | {"crps": float(np.mean(crps[ok]))}


def point_scores(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    pred = np.asarray(pred, np.float64)
    ref = np.asarray(ref, np.float64)
    out = {
        "n": int(ref.size),
        "bias_pct": float(100 * (pred.sum() - ref.sum()) / ref.sum()) if ref.sum() else float("nan"),
        "mse": float(np.mean((pred - ref) ** 2)),
        "correlation": float(np.corrcoef(pred, ref)[0, 1]) if pred.std() > 0 and ref.std() > 0 else float("nan"),
    }
    for t in THRESHOLDS:
        out |= detection_scores(pred, ref, t)
    return out


def climatology_quantiles(rain: np.ndarray, levels) -> np.ndarray:
    """Quantiles (Q,) of the unconditional distribution of ``rain`` (the climatology reference)."""
    rain = np.asarray(rain, np.float64)
    rain = rain[np.isfinite(rain)]
    q = np.quantile(rain, np.asarray(levels))
    return np.maximum.accumulate(q)

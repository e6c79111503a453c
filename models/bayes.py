"""A Bayesian database retrieval: the principle of the operational GPROF, as a classical anchor.

The database is a subsample of (Tb, rain) pairs from the training period's reference strip. For
an observed Tb vector the posterior is the database's rain weighted by Tb similarity,
``w_i = exp(-|z - z_i|^2 / (2 sigma^2))`` with ``z`` the Tb normalised per channel and projected
on the leading principal components. To stay fast on full orbits only the ``k`` nearest entries
(KD-tree in the PCA space) carry weight -- the rest have negligible weight anyway. The posterior
quantiles are weighted empirical quantiles of those entries' rain (so they never cross), and the
output follows the same retrieval schema as the U-Net. ``sigma`` is chosen on the validation year.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

from models.base import ModelError, Retriever


def fit_pca(tb: np.ndarray, n_components: int) -> dict[str, np.ndarray]:
    """Per-channel normalisation and principal axes of ``tb`` (N, C)."""
    mean = tb.mean(0)
    std = tb.std(0) + 1e-3
    z = (tb - mean) / std
    _, _, vt = np.linalg.svd(z - z.mean(0), full_matrices=False)
    return {"tb_mean": mean.astype(np.float32), "tb_std": std.astype(np.float32),
            "components": vt[:n_components].astype(np.float32)}


def project(tb: np.ndarray, pca: dict[str, np.ndarray]) -> np.ndarray:
    return (((tb - pca["tb_mean"]) / pca["tb_std"]) @ pca["components"].T).astype(np.float32)


#: rows of the database-weight arrays handled at a time: (rows, k) blocks that stay in the CPU's
#: cache (a whole orbit at once, 646 204 x 64, made every step memory-bound; benchmarks/bench_bayes.py)
BLOCK_ROWS = 1024


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, levels: np.ndarray, *,
                       block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """Row-wise weighted quantiles: ``values``, ``weights`` (N, K) -> (N, Q), non-decreasing.

    Each entry is placed at the middle of its weight interval of the cumulative distribution
    (Hazen plotting positions) and levels (increasing) are interpolated linearly between
    entries; a level below the first entry's position gives the first value, one above the
    last's the last value."""
    levels = np.asarray(levels, np.float64)
    if levels.ndim != 1 or (levels.size > 1 and np.any(np.diff(levels) <= 0)):
        raise ValueError(f"weighted_quantiles: levels must increase, got {levels}")
    values, weights = np.asarray(values), np.asarray(weights)
    if values.shape != weights.shape or values.ndim != 2:
        raise ValueError(f"weighted_quantiles: values {values.shape} and weights {weights.shape} must be the same (N, K)")
    out = np.empty((values.shape[0], levels.size), np.float32)
    for i in range(0, values.shape[0], block_rows):
        out[i:i + block_rows] = _block_quantiles(values[i:i + block_rows], weights[i:i + block_rows], levels)
    return out


def _block_quantiles(values: np.ndarray, weights: np.ndarray, levels: np.ndarray) -> np.ndarray:
    order = np.argsort(values, axis=1, kind="stable")
    v = np.take_along_axis(values, order, 1)
    w = np.take_along_axis(weights, order, 1)
    w = w / w.sum(1, keepdims=True)
    pos = np.cumsum(w, axis=1) - 0.5 * w  # (n, K), increasing
    n, kk = v.shape
    nq = levels.size
    # k[i, j] = #{entries of row i with pos < levels[j]}: an entry counts for every level above
    # it, i.e. from the first level index past it (searchsorted) on: a cumulative histogram
    first = np.searchsorted(levels, pos, side="right")
    rows = np.arange(n)
    counts = np.bincount((rows[:, None] * (nq + 1) + first).ravel(), minlength=n * (nq + 1))
    k = np.cumsum(counts.reshape(n, nq + 1)[:, :nq], axis=1)
    base = (rows * kk)[:, None]
    hi = base + np.minimum(k, kk - 1)  # flat indices of the entries around each level
    lo = base + np.maximum(k - 1, 0)
    fv, fp = v.ravel(), pos.ravel()
    p_lo, p_hi = fp[lo], fp[hi]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(p_hi > p_lo, (levels - p_lo) / (p_hi - p_lo), 0.0)
    np.clip(t, 0.0, 1.0, out=t)
    v_lo = fv[lo]
    out = (v_lo + t * (fv[hi] - v_lo)).astype(np.float32)
    np.maximum.accumulate(out, axis=1, out=out)
    return out


class BayesRetriever(Retriever):
    """GPROF-like retrieval from a database stored in safetensors (``db_tb`` (N, 13) K,
    ``db_rain`` (N,) mm h-1, ``tb_mean``, ``tb_std``, ``components``, ``sigma``)."""

    kind = "bayes"
    multiple = 1
    overlap_margin = 0

    def __init__(self, card, tensors: dict[str, torch.Tensor]):
        need = {"db_tb", "db_rain", "tb_mean", "tb_std", "components", "sigma"}
        if not need <= set(tensors):
            raise ModelError(f"database of {card.name!r} lacks {sorted(need - set(tensors))}")
        self.card = card
        self.name = card.name
        self.sha256 = card.checkpoint_sha256
        self.levels = np.asarray(card.levels, np.float64)
        if self.levels.ndim != 1 or np.any(np.diff(self.levels) <= 0):
            raise ModelError(f"{card.name!r}: its quantile levels must increase, got {card.levels}")
        cfg = card.config.get("bayes", {}) or {}
        self.k = int(cfg.get("neighbours", 64))
        self.pca = {k: tensors[k].numpy().astype(np.float32) for k in ("tb_mean", "tb_std", "components")}
        self.sigma = float(tensors["sigma"].item())
        self.db_rain = tensors["db_rain"].numpy().astype(np.float32)
        db_tb = tensors["db_tb"].numpy().astype(np.float32)
        if db_tb.ndim != 2 or db_tb.shape[1] != 13 or db_tb.shape[0] != self.db_rain.size:
            raise ModelError(f"database of {card.name!r} has inconsistent shapes {db_tb.shape}, {self.db_rain.shape}")
        self.db_z = project(db_tb, self.pca)
        self.tree = cKDTree(self.db_z)
        self.inference_config = {"tile_scans": int((card.config.get("inference") or {}).get("tile_scans", 512)), "overlap": 0}
        self.cpu_batch_tiles = 1

    @classmethod
    def from_arrays(cls, card, db_tb, db_rain, pca, sigma) -> "BayesRetriever":
        return cls(card, bayes_tensors(db_tb, db_rain, pca, sigma))

    def quantiles(self, tb: np.ndarray, sigma: float | None = None) -> np.ndarray:
        """(N, 13) Tb in K -> (N, Q) posterior quantiles; NaN rows for invalid Tb."""
        tb = np.asarray(tb, np.float32)
        out = np.full((tb.shape[0], self.levels.size), np.nan, np.float32)
        ok = np.isfinite(tb).all(1)
        if not ok.any():
            return out
        z = project(tb[ok], self.pca)
        k = min(self.k, self.db_rain.size)
        d, idx = self.tree.query(z, k=k, workers=torch.get_num_threads())
        if k == 1:
            d, idx = d[:, None], idx[:, None]
        s = float(sigma if sigma is not None else self.sigma)
        q = np.empty((idx.shape[0], self.levels.size), np.float32)
        for i in range(0, idx.shape[0], BLOCK_ROWS):  # in cache-sized blocks, as weighted_quantiles
            d2 = d[i:i + BLOCK_ROWS].astype(np.float64) ** 2
            w = np.exp(-(d2 - d2[:, :1]) / (2 * s * s))  # relative to the nearest: never all zero
            q[i:i + BLOCK_ROWS] = _block_quantiles(self.db_rain[idx[i:i + BLOCK_ROWS]], w, self.levels)
        out[ok] = q
        return out

    def predict_batch(self, tb: torch.Tensor) -> torch.Tensor:
        b, c, h, w = tb.shape
        flat = tb.permute(0, 2, 3, 1).reshape(-1, c).cpu().numpy()
        q = self.quantiles(flat)
        return torch.from_numpy(q).reshape(b, h, w, -1).permute(0, 3, 1, 2)


def bayes_tensors(db_tb, db_rain, pca, sigma) -> dict[str, torch.Tensor]:
    return {
        "db_tb": torch.as_tensor(np.asarray(db_tb, np.float16)),
        "db_rain": torch.as_tensor(np.asarray(db_rain, np.float32)),
        "tb_mean": torch.as_tensor(pca["tb_mean"]),
        "tb_std": torch.as_tensor(pca["tb_std"]),
        "components": torch.as_tensor(pca["components"]),
        "sigma": torch.tensor(float(sigma), dtype=torch.float32),
    }

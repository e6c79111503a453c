"""Tail-sensitive training losses and metrics for quantile retrievals.

Each loss takes predicted quantiles ``pred`` (B, Q, H, W) at ``levels`` (Q,), a reference
``target`` (B, H, W) (NaN where there is no reference) and an optional boolean ``mask`` and
optional per-pixel ``weight`` (B, H, W); only finite, masked-in pixels count, and the mean is
weighted: ``sum(w * l) / sum(w)``.

- :func:`tail_weighted_pinball`: the pinball loss with a weight per quantile level, larger for
  the far-tail levels (:func:`tail_level_weights`: ``1 + gain`` for ``tau >= tail_from``).
- :func:`twcrps_loss`: the threshold-weighted CRPS (Gneiting & Ranjan 2011) with weight
  ``w(z) = 1{z >= t}``: ``twCRPS(F, y) = integral_t^inf (F(z) - 1{y <= z})^2 dz``, in closed form
  over the same CDF as :class:`models.quantiles.QuantileDistribution` (piecewise linear through
  ``(0, 0), (x_0, tau_0), ..., (x_{Q-1}, tau_{Q-1})`` and the exponential upper tail through the
  last two knots). Several thresholds may be summed; ``t = 0`` gives the plain CRPS.
- :func:`density_weights`: sample weights from the training distribution of the reference
  (:class:`DensityWeighter`: a histogram on fixed log-spaced rain bins, weight ``p(bin)^-beta``
  normalised to mean 1 over the training pixels and capped at ``max_weight``) -- rare
  intensities are up-weighted.

:func:`twcrps_numpy` is the same closed form in numpy for evaluation (float64, any batch shape).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


# --------------------------------------------------------------------------- reductions
def _valid_mask(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    valid = torch.isfinite(target)
    if mask is not None:
        valid = valid & mask
    return valid


def _weighted_mean(loss: torch.Tensor, valid: torch.Tensor, weight: torch.Tensor | None,
                   pred: torch.Tensor) -> torch.Tensor:
    w = valid.to(loss.dtype)
    if weight is not None:
        w = w * torch.nan_to_num(weight.to(loss.dtype), nan=0.0)
    tot = w.sum()
    if tot <= 0:
        return pred.sum() * 0.0
    return (torch.where(valid, loss, torch.zeros_like(loss)) * w).sum() / tot


# --------------------------------------------------------------------------- pinball
def tail_level_weights(levels: Sequence[float], tail_from: float = 0.95, gain: float = 4.0,
                       lower_tail_from: float | None = None) -> np.ndarray:
    """Weights per quantile level: 1, and ``1 + gain`` for levels ``>= tail_from`` (and
    ``<= lower_tail_from`` when given). Normalised to mean 1 (the loss scale stays comparable)."""
    lv = np.asarray(levels, np.float64)
    w = np.ones_like(lv)
    w[lv >= tail_from] += gain
    if lower_tail_from is not None:
        w[lv <= lower_tail_from] += gain
    return w / w.mean()


def tail_weighted_pinball(pred: torch.Tensor, target: torch.Tensor, levels: torch.Tensor,
                          level_weights: torch.Tensor, mask: torch.Tensor | None = None,
                          weight: torch.Tensor | None = None) -> torch.Tensor:
    """Pinball loss ``sum_k lw_k rho_tau_k(y - q_k) / Q`` averaged over valid pixels (weighted by
    ``weight``). With all ``level_weights`` 1 and no pixel weights this equals
    :func:`models.unet.pinball_loss`."""
    valid = _valid_mask(pred, target, mask)
    y = torch.where(valid, target, torch.zeros_like(target))[:, None]
    diff = y - pred
    tau = levels.to(pred)[None, :, None, None]
    lw = level_weights.to(pred)[None, :, None, None]
    per = (torch.maximum(tau * diff, (tau - 1) * diff) * lw).mean(dim=1)
    return _weighted_mean(per, valid, weight, pred)


# --------------------------------------------------------------------------- twCRPS
def _twcrps_terms(v, tau, y, t, lib):
    """Closed-form twCRPS over the QuantileDistribution CDF. ``v`` (..., Q) non-decreasing >= 0,
    ``tau`` (Q,), ``y`` (...), ``t`` scalar >= 0. ``lib`` is numpy or torch (same code)."""
    if lib is np:
        cat, clip, exp, where = np.concatenate, np.clip, np.exp, np.where
        zeros = np.zeros(v.shape[:-1] + (1,))
        maximum = np.maximum
        fs = np.concatenate([[0.0], tau])
    else:
        cat = torch.cat
        clip, exp, where, maximum = torch.clamp, torch.exp, torch.where, torch.maximum
        zeros = torch.zeros(v.shape[:-1] + (1,), dtype=v.dtype, device=v.device)
        fs = torch.cat([torch.zeros(1, dtype=v.dtype, device=v.device), tau.to(v)])
    xs = cat([zeros, v], -1)
    a, b = xs[..., :-1], xs[..., 1:]
    fa, fb = fs[:-1], fs[1:]
    width = b - a
    safe = where(width > 0, width, width * 0 + 1.0)
    # integrate only over [max(a, t), b]
    a2 = clip(a * 0 + t, a, b) if lib is np else torch.maximum(torch.minimum(a * 0 + t, b), a)
    fa2 = fa + (fb - fa) * where(width > 0, (a2 - a) / safe, a2 * 0)
    yy = y[..., None]
    yc = clip(yy, a2, b) if lib is np else torch.maximum(torch.minimum(yy, b), a2)
    fy = fa + (fb - fa) * where(width > 0, (yc - a) / safe, yc * 0)
    left = (yc - a2) * (fa2 * fa2 + fa2 * fy + fy * fy) / 3.0
    fy1, fb1 = fy - 1.0, fb - 1.0
    right = (b - yc) * (fy1 * fy1 + fy1 * fb1 + fb1 * fb1) / 3.0
    total = (left + right).sum(-1)
    # exponential upper tail G(z) = m exp(-(z - xl)/s) beyond xl, integrated from L = max(xl, t)
    xl = v[..., -1]
    m = 1.0 - float(tau[-1])
    s = (v[..., -1] - v[..., -2]) / math.log((1 - float(tau[-2])) / (1 - float(tau[-1])))
    s_safe = where(s > 0, s, s * 0 + 1.0)
    L = maximum(xl, xl * 0 + t)
    Y = maximum(y, L)
    gL = where(s > 0, m * exp(-(L - xl) / s_safe), L * 0)
    gY = where(s > 0, m * exp(-(Y - xl) / s_safe), Y * 0)
    tail = (Y - L) - 2.0 * s * (gL - gY) + s * gL * gL / 2.0
    return total + tail


def twcrps_numpy(values, levels, obs, threshold: float = 0.0) -> np.ndarray:
    """Threshold-weighted CRPS (weight ``1{z >= threshold}``, ``threshold >= 0``) of the
    quantile distributions ``values`` (..., Q) at ``levels`` against ``obs`` (...); NaN where
    any quantile or the observation is missing. ``threshold = 0`` equals
    :meth:`models.quantiles.QuantileDistribution.crps` for observations ``>= 0``."""
    if threshold < 0:
        raise ValueError("threshold must be >= 0 (rain is never negative)")
    v = np.asarray(values, np.float64)
    tau = np.asarray(levels, np.float64)
    y = np.broadcast_to(np.asarray(obs, np.float64), v.shape[:-1])
    ok = np.all(np.isfinite(v), -1) & np.isfinite(y)
    v = np.where(ok[..., None], np.maximum.accumulate(np.where(np.isfinite(v), v, 0.0), axis=-1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        out = _twcrps_terms(v, tau, np.where(ok, y, 0.0), float(threshold), np)
    return np.where(ok, out, np.nan)


def twcrps_loss(pred: torch.Tensor, target: torch.Tensor, levels: torch.Tensor,
                thresholds: Sequence[float] = (0.0,), threshold_weights: Sequence[float] | None = None,
                mask: torch.Tensor | None = None, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Sum over ``thresholds`` of ``threshold_weights[i] * twCRPS_t`` (closed form, differentiable
    in the quantiles), averaged over valid pixels. ``pred`` (B, Q, H, W)."""
    valid = _valid_mask(pred, target, mask)
    y = torch.where(valid, target, torch.zeros_like(target)).clamp_min(0.0)
    v = pred.permute(0, 2, 3, 1)  # (B, H, W, Q)
    tw = threshold_weights or [1.0] * len(thresholds)
    lv = torch.as_tensor(np.asarray(levels.detach().cpu() if hasattr(levels, "detach") else levels, np.float64),
                         dtype=pred.dtype)
    per = 0.0
    for t, w in zip(thresholds, tw):
        per = per + float(w) * _twcrps_terms(v, lv.to(pred.device), y, float(t), torch)
    return _weighted_mean(per, valid, weight, pred)


# --------------------------------------------------------------------------- density weights
#: bin edges (mm h-1) of the density weighting: zero, then log-spaced from 0.1 to 200 mm h-1
DENSITY_EDGES = np.concatenate([[0.0, 0.1], np.geomspace(0.2, 200.0, 31)[1:], [np.inf]])


class DensityWeighter:
    """Per-pixel weights ``min(p(bin(y))^-beta / c, max_weight)`` from the training histogram of
    the reference on :data:`DENSITY_EDGES`; ``c`` makes the mean weight over the training pixels 1
    (before capping)."""

    def __init__(self, counts, beta: float = 0.5, max_weight: float = 20.0, edges=DENSITY_EDGES):
        self.edges = np.asarray(edges, np.float64)
        c = np.asarray(counts, np.float64)
        if c.shape != (self.edges.size - 1,):
            raise ValueError(f"counts must have {self.edges.size - 1} bins, got {c.shape}")
        self.counts, self.beta, self.max_weight = c, float(beta), float(max_weight)
        p = c / c.sum()
        with np.errstate(divide="ignore"):
            raw = np.where(p > 0, p ** -self.beta, 0.0)
        norm = float(np.sum(p * raw))  # mean of raw weight over training pixels
        self.table = np.minimum(raw / norm, self.max_weight) if norm > 0 else np.ones_like(p)

    @classmethod
    def fit(cls, ref, beta: float = 0.5, max_weight: float = 20.0, edges=DENSITY_EDGES) -> "DensityWeighter":
        r = np.asarray(ref, np.float64).ravel()
        r = r[np.isfinite(r)]
        counts = np.histogram(np.maximum(r, 0.0), bins=np.asarray(edges, np.float64))[0]
        return cls(counts, beta, max_weight, edges)

    def bin_index(self, y) -> np.ndarray:
        return np.clip(np.searchsorted(self.edges, np.asarray(y, np.float64), side="right") - 1, 0, self.edges.size - 2)

    def __call__(self, y) -> np.ndarray:
        """Weights for references ``y`` (any shape; NaN -> 0)."""
        y = np.asarray(y, np.float64)
        w = self.table[self.bin_index(np.where(np.isfinite(y), np.maximum(y, 0.0), 0.0))]
        return np.where(np.isfinite(y), w, 0.0)

    def torch_weights(self, y: torch.Tensor) -> torch.Tensor:
        edges = torch.as_tensor(self.edges[1:-1], dtype=y.dtype, device=y.device)
        idx = torch.bucketize(torch.nan_to_num(y, nan=0.0).clamp_min(0.0).contiguous(), edges, right=True)
        table = torch.as_tensor(self.table, dtype=y.dtype, device=y.device)
        return torch.where(torch.isfinite(y), table[idx], torch.zeros_like(y))

    def to_dict(self) -> dict:
        return {"beta": self.beta, "max_weight": self.max_weight, "edges": self.edges.tolist(),
                "counts": self.counts.astype(np.int64).tolist()}


def density_weights(ref, train_ref, beta: float = 0.5, max_weight: float = 20.0) -> np.ndarray:
    """Convenience: weights of ``ref`` from the histogram of ``train_ref``."""
    return DensityWeighter.fit(train_ref, beta, max_weight)(ref)


# --------------------------------------------------------------------------- the configured loss
class ResearchLoss:
    """The training loss described by a config's ``loss`` section::

        loss: {type: pinball}                                  # the reference loss
        loss: {type: tail_pinball, tail_from: 0.95, gain: 4}
        loss: {type: twcrps, thresholds: [0, 5, 20], threshold_weights: [1, 1, 1]}
        loss: {type: density, beta: 0.5, max_weight: 20}       # density-weighted pinball

    ``density`` needs the training reference (``train_ref``) to fit its histogram."""

    TYPES = ("pinball", "tail_pinball", "twcrps", "density")

    def __init__(self, spec: dict | None, levels, train_ref=None):
        spec = dict(spec or {"type": "pinball"})
        self.spec = spec
        self.type = spec.get("type", "pinball")
        if self.type not in self.TYPES:
            raise ValueError(f"unknown loss type {self.type!r}; choose from {self.TYPES}")
        self.levels = torch.tensor(np.asarray(levels, np.float64), dtype=torch.float32)
        lw = np.ones(len(levels))
        if self.type == "tail_pinball":
            lw = tail_level_weights(levels, float(spec.get("tail_from", 0.95)), float(spec.get("gain", 4.0)))
        self.level_weights = torch.tensor(lw, dtype=torch.float32)
        self.weighter = None
        if self.type == "density":
            if train_ref is None:
                raise ValueError("the density loss needs the training reference to fit its weights")
            self.weighter = DensityWeighter.fit(train_ref, float(spec.get("beta", 0.5)),
                                                float(spec.get("max_weight", 20.0)))

    def __call__(self, pred, target, mask=None, weight=None) -> torch.Tensor:
        if self.weighter is not None:
            dw = self.weighter.torch_weights(target)
            weight = dw if weight is None else weight * dw
        if self.type == "twcrps":
            th = [float(t) for t in self.spec.get("thresholds", [0.0])]
            return twcrps_loss(pred, target, self.levels, th, self.spec.get("threshold_weights"), mask, weight)
        return tail_weighted_pinball(pred, target, self.levels, self.level_weights, mask, weight)

    def describe(self) -> dict:
        d = dict(self.spec)
        if self.weighter is not None:
            d["density_table"] = [float(f"{x:.4g}") for x in self.weighter.table]
        if self.type == "tail_pinball":
            d["level_weights"] = [float(f"{x:.4g}") for x in self.level_weights.tolist()]
        return d

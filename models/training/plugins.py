"""What differs between U-Net configs, as plug-ins of :func:`models.training.loop.train_unet`.

Loss (``loss(pred, y, weight=None)``, ``describe()``):
    :class:`PinballLoss` (the default) or :class:`ResearchLossPlugin` (``loss:`` in the config:
    tail-weighted pinball, twCRPS, density-weighted pinball; :mod:`models.losses`).
Batch source (``steps_per_epoch``, ``scenes_per_epoch``, ``epoch(epoch)`` yielding
``Batch(x, y, weight, gmst, domain)``):
    :class:`ShuffledScenes` (every training scene once per epoch, in a seeded order) or
    :class:`MixedScenes` (the research configs: ``max_scenes_per_epoch`` scenes per epoch and,
    with ``hybrid:``, simulated scenes mixed into every batch at the ratio asked).
Conditioning (the ``gmst``/``domain`` inputs of a batch and the validation ΔT):
    carried by :class:`MixedScenes` (``obs_gmst``, ``sim_gmst``) and the loop's ``val_gmst``;
    set up by :func:`models.research.trainer.gmst_conditioning`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from models.base import ModelError
from models.losses import ResearchLoss, tail_weighted_pinball
from models.unet import pinball_loss


# --------------------------------------------------------------------------- losses
class PinballLoss:
    """The strip-only pinball loss of DRAIN (:func:`models.unet.pinball_loss`)."""

    def __init__(self, levels):
        self.levels = torch.as_tensor(np.asarray(levels, np.float64), dtype=torch.float32)

    def __call__(self, pred, target, weight=None):
        if weight is not None:
            return tail_weighted_pinball(pred, target, self.levels, torch.ones_like(self.levels), None, weight)
        return pinball_loss(pred, target, self.levels)

    def describe(self) -> dict:
        return {"type": "pinball"}


class ResearchLossPlugin:
    """A research loss (``loss:`` section; :class:`models.losses.ResearchLoss`)."""

    def __init__(self, spec: dict | None, levels, train_ref=None):
        self.loss = ResearchLoss(spec, levels, train_ref=train_ref)

    def __call__(self, pred, target, weight=None):
        return self.loss(pred, target, weight=weight)

    def describe(self) -> dict:
        return self.loss.describe()


# --------------------------------------------------------------------------- batch sources
@dataclass
class Batch:
    x: torch.Tensor  # (B, 13, A, C) Tb, not padded
    y: torch.Tensor  # (B, A, C) reference (NaN off the strip)
    weight: torch.Tensor | None = None  # (B,) per-scene loss weight
    gmst: torch.Tensor | None = None  # (B,) ΔT (K), conditioned networks
    domain: torch.Tensor | None = None  # (B,) 1 = simulated scene, domain-conditioned networks


def crop_bounds(ref: np.ndarray, crop: int, n_cross: int) -> tuple[int, int, int]:
    """(crop, lowest start, highest start) of a cross-track window of ``crop`` pixels that always
    holds the whole reference strip (the strip's columns over all scenes); (0, 0, 0): no crop."""
    strip_cols = np.flatnonzero(np.isfinite(ref).any(axis=(0, 1)))
    if crop and strip_cols.size and crop < n_cross:
        lo = max(0, int(strip_cols[-1]) + 1 - crop)
        hi = min(int(strip_cols[0]), n_cross - crop)
        if hi < lo:
            raise ModelError(f"crop_cross={crop} is narrower than the reference strip ({strip_cols.size} pixels)")
        return crop, lo, hi
    return 0, 0, 0


def scenes(tc, ref, idx, crop, c0, flip) -> tuple[torch.Tensor, torch.Tensor]:
    """Tb (B, 13, A, C) float32 and reference of scenes ``idx``, cropped and flipped as asked."""
    if crop:
        x = torch.from_numpy(np.asarray(tc[idx][:, :, c0:c0 + crop], np.float32)).permute(0, 3, 1, 2)
        y = torch.from_numpy(np.asarray(ref[idx][:, :, c0:c0 + crop]))
    else:
        x = torch.from_numpy(np.asarray(tc[idx], np.float32)).permute(0, 3, 1, 2)
        y = torch.from_numpy(np.asarray(ref[idx]))
    if flip:
        x, y = x.flip(-2), y.flip(-2)
    return x, y


class ShuffledScenes:
    """Every training scene once per epoch in batches of ``batch_size`` (order seeded by
    ``[seed, epoch]``), a random crop window per batch and random along-track flips."""

    def __init__(self, tc, ref, batch_size: int, seed: int, crop: int = 0, flip: bool = True):
        self.tc, self.ref, self.bs, self.seed, self.flip = tc, ref, batch_size, seed, flip
        self.crop, self.lo, self.hi = crop_bounds(ref, crop, tc.shape[2])
        self.steps_per_epoch = math.ceil(tc.shape[0] / batch_size)
        self.scenes_per_epoch = int(tc.shape[0])

    def epoch(self, epoch: int):
        seed = self.seed
        order = np.random.default_rng([seed, epoch]).permutation(self.tc.shape[0])
        for b in range(self.steps_per_epoch):
            idx = np.sort(order[b * self.bs:(b + 1) * self.bs])
            c0 = int(np.random.default_rng([seed, epoch, b, 1]).integers(self.lo, self.hi + 1)) if self.crop else 0
            flip = self.flip and np.random.default_rng([seed, epoch, b]).random() < 0.5
            x, y = scenes(self.tc, self.ref, idx, self.crop, c0, flip)
            yield Batch(x, y)


def mixed_batches(n_obs: int, n_sim: int, batch_size: int, ratio: float, epoch: int, seed: int = 0):
    """Batches of one epoch as lists of ``(source, index)`` with ``source`` 0 = observed,
    1 = simulated: every batch holds ``round(ratio * batch_size)`` simulated scenes (drawn
    without replacement, cycling) and the rest observed; the epoch covers every observed scene
    once."""
    if not 0 <= ratio < 1:
        raise ValueError("hybrid ratio must be in [0, 1)")
    k_sim = int(round(ratio * batch_size)) if n_sim else 0
    k_obs = batch_size - k_sim
    rng = np.random.default_rng([seed, epoch, 11])
    obs = rng.permutation(n_obs)
    sim = rng.permutation(n_sim) if n_sim else np.zeros(0, int)
    steps = math.ceil(n_obs / k_obs)
    out = []
    for b in range(steps):
        o = obs[b * k_obs:(b + 1) * k_obs]
        s = [int(sim[(b * k_sim + j) % n_sim]) for j in range(k_sim)] if k_sim else []
        out.append([(0, int(i)) for i in o] + [(1, i) for i in s])
    return out


class MixedScenes:
    """The research batch source: each epoch a seeded subset of ``scenes_per_epoch`` observed
    scenes; with simulated scenes (``sim_tc``), ``ratio`` of every batch drawn from them (weight
    ``domain_weight``; ``sim_map`` maps draws to scenes, so some may repeat). ``obs_gmst`` /
    ``sim_gmst``: the scenes' ΔT for conditioned networks; ``domain``: add the domain flag."""

    def __init__(self, tc, ref, batch_size: int, seed: int, crop: int = 0, flip: bool = True,
                 scenes_per_epoch: int | None = None, sim_tc=None, sim_ref=None, sim_map=None, ratio: float = 0.0,
                 domain_weight: float = 1.0, obs_gmst=None, sim_gmst=None, domain: bool = False):
        self.tc, self.ref, self.bs, self.seed, self.flip = tc, ref, batch_size, seed, flip
        self.crop, self.lo, self.hi = crop_bounds(ref, crop, tc.shape[2])
        self.n_train = int(tc.shape[0] if scenes_per_epoch is None else scenes_per_epoch)
        self.sim_tc, self.sim_ref, self.sim_map = sim_tc, sim_ref, sim_map
        self.ratio = ratio if sim_tc is not None else 0.0
        self.dw, self.g_obs, self.g_sim, self.domain = domain_weight, obs_gmst, sim_gmst, domain
        self.n_draw = 0 if sim_tc is None else (sim_tc.shape[0] if sim_map is None else sim_map.size)
        self.scenes_per_epoch = min(self.n_train, int(tc.shape[0]))
        self.steps_per_epoch = len(mixed_batches(self.scenes_per_epoch, self.n_draw, batch_size, self.ratio, 0, seed))

    def epoch(self, epoch: int):
        seed = self.seed
        sub = np.sort(np.random.default_rng([seed, epoch, 5]).permutation(self.tc.shape[0])[:self.n_train])
        for b, members in enumerate(mixed_batches(sub.size, self.n_draw, self.bs, self.ratio, epoch, seed)):
            brng = np.random.default_rng([seed, epoch, b])
            c0 = int(brng.integers(self.lo, self.hi + 1)) if self.crop else 0
            flip = self.flip and brng.random() < 0.5
            xs, ys, ws, gs, ds = [], [], [], [], []
            obs_idx = np.sort(sub[[i for s, i in members if s == 0]])
            if obs_idx.size:
                x, y = scenes(self.tc, self.ref, obs_idx, self.crop, c0, flip)
                xs.append(x), ys.append(y), ws.append(torch.ones(obs_idx.size))
                if self.g_obs is not None:
                    gs.append(torch.from_numpy(self.g_obs[obs_idx]))
                    ds.append(torch.zeros(obs_idx.size))
            sim_idx = np.sort([i for s, i in members if s == 1]).astype(int)
            if self.sim_map is not None:
                sim_idx = np.sort(self.sim_map[sim_idx])
            if sim_idx.size:
                x, y = scenes(self.sim_tc, self.sim_ref, sim_idx, self.crop, c0, flip)
                xs.append(x), ys.append(y), ws.append(torch.full((sim_idx.size,), self.dw))
                if self.g_sim is not None:
                    gs.append(torch.from_numpy(self.g_sim[sim_idx]))
                    ds.append(torch.ones(sim_idx.size))
            yield Batch(torch.cat(xs), torch.cat(ys), torch.cat(ws), torch.cat(gs) if gs else None,
                        torch.cat(ds) if (gs and self.domain) else None)

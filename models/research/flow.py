"""Residual conditional flow matching (Lipman et al. 2023; residual setting as in
ArchesWeatherGen, Couairon et al. 2024): a generative model of rain fields given Tb that learns
the *residual* of a deterministic/quantile U-Net, sampled with a few Euler steps into ensembles.

Target. With ``m(x)`` the base U-Net's posterior mean, the residual in log space
``r = (log1p(y) - log1p(m(x))) / scale`` (``scale``: its training standard deviation) is what the
flow generates; a member is ``y = max(expm1(log1p(m) + scale * r), 0)``.

Flow matching (optimal-transport path, sigma_min = 0): ``x_0 ~ N(0, 1)``, ``x_1 = r``,
``x_t = (1 - t) x_0 + t x_1``; the network ``v(x_t, t | c)`` regresses ``x_1 - x_0`` (mean squared
error over the pixels with a reference). Sampling integrates ``dx/dt = v`` from ``t = 0`` to 1
with ``steps`` (<= 10) Euler steps, all members in one batch.

Conditioning ``c``: the 13 normalised Tb and log1p of the base's mean and 0.5/0.9/0.99 quantiles.
The conditioning part of the first convolution is computed once per window and shared by all
members and steps (it is linear), so a step costs only the velocity trunk.

Implementation: our own (~150 lines, no flow-matching library needed; the facebookresearch
``flow_matching`` package is non-commercial and not used).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
from torch import nn

from catalogs import schema
from models.base import ModelError, Retriever
from models.inference import _pad_to, invalid_tb_mask, predict_swath
from models.research.ood import MahalanobisOOD
from models.unet import QuantileUNet
from models.unet_retriever import build_unet

MAX_STEPS = 10
N_COND_BASE = 4  # log1p of mean, q50, q90, q99 of the base model


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.SiLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.SiLU())


class FlowNet(nn.Module):
    """Velocity network: a small U-Net without normalisation layers (batch-independent)."""

    def __init__(self, n_cond: int = 13 + N_COND_BASE, base: int = 16, depth: int = 2, patch: int = 2):
        super().__init__()
        self.depth, self.base, self.n_cond, self.patch = depth, base, n_cond, patch
        widths = [base * 2 ** i for i in range(depth + 1)]
        p2 = patch * patch
        # the trunk runs on patch x patch super-pixels (space-to-depth): 1/p^2 of the cost
        self.in_x = nn.Conv2d(p2 + 3, base, 3, padding=1, bias=False)  # x_t (p^2), t, sin, cos
        self.in_c = nn.Conv2d(n_cond * p2, base, 3, padding=1)
        self.in2 = nn.Conv2d(base, base, 3, padding=1)
        self.down = nn.ModuleList([_block(widths[i], widths[i + 1]) for i in range(depth)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth))])
        self.dec = nn.ModuleList([_block(2 * widths[i], widths[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(base, p2, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @property
    def multiple(self) -> int:
        return 2 ** self.depth * self.patch

    @property
    def receptive_radius(self) -> int:
        d = self.depth
        return self.patch * (3 + 4 * (2 ** d - 1) + 2 * 2 ** d)

    def cond_features(self, cond: torch.Tensor) -> torch.Tensor:
        """The conditioning part of the first convolution (computed once per window)."""
        return self.in_c(F.pixel_unshuffle(cond, self.patch) if self.patch > 1 else cond)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cfeat: torch.Tensor) -> torch.Tensor:
        """Velocity (B, 1, H, W) at ``x`` (B, 1, H, W), times ``t`` (B,), cond features (B, base, H, W)."""
        if self.patch > 1:
            x = F.pixel_unshuffle(x, self.patch)
        tt = t.to(x).view(-1, 1, 1, 1).expand(x.shape[0], 1, *x.shape[-2:])
        inp = torch.cat([x, tt, torch.sin(np.pi * tt), torch.cos(np.pi * tt)], 1)
        h = F.silu(self.in_x(inp) + cfeat)
        h = F.silu(self.in2(h))
        skips = []
        for blk in self.down:
            skips.append(h)
            h = blk(F.max_pool2d(h, 2))
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            h = dec(torch.cat([up(h), skip], 1))
        out = self.head(h)
        return F.pixel_shuffle(out, self.patch) if self.patch > 1 else out


# --------------------------------------------------------------------------- conditioning
def _quantile_mean(q: torch.Tensor, levels: np.ndarray) -> torch.Tensor:
    """Posterior mean (B, H, W) of quantiles (B, Q, H, W): the closed form of
    :meth:`models.quantiles.QuantileDistribution.mean` in torch."""
    tau = torch.as_tensor(levels, dtype=q.dtype, device=q.device)
    lower = tau[0] * q[:, 0] / 2
    inner = ((tau[1:] - tau[:-1])[None, :, None, None] * (q[:, 1:] + q[:, :-1]) / 2).sum(1)
    s = (q[:, -1] - q[:, -2]) / float(np.log((1 - levels[-2]) / (1 - levels[-1])))
    upper = (1 - tau[-1]) * (q[:, -1] + s)
    return lower + inner + upper


def base_conditioning(base: QuantileUNet, base_levels: np.ndarray, tb: torch.Tensor,
                      fast: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(cond (B, 13 + 4, H, W), base mean (B, H, W)) for Tb (B, 13, H, W)."""
    q = (fast or base)(tb).float()
    mean = _quantile_mean(q, base_levels).clamp_min(0.0)
    idx = [int(np.argmin(np.abs(base_levels - a))) for a in (0.5, 0.9, 0.99)]
    feats = [torch.log1p(mean)[:, None]] + [torch.log1p(q[:, i:i + 1]) for i in idx]
    cond = torch.cat([base.normalise(tb).float()] + feats, 1)
    return cond, mean


def residual_target(ref: torch.Tensor, base_mean: torch.Tensor, scale: float) -> torch.Tensor:
    return (torch.log1p(ref.clamp_min(0.0)) - torch.log1p(base_mean)) / scale


def rain_from_residual(r: torch.Tensor, base_mean: torch.Tensor, scale: float) -> torch.Tensor:
    return torch.expm1(torch.log1p(base_mean) + scale * r).clamp_min(0.0)


# --------------------------------------------------------------------------- training / sampling
def cfm_loss(net: FlowNet, x1: torch.Tensor, cfeat: torch.Tensor, valid: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Conditional flow-matching loss (OT path) on pixels ``valid`` (B, H, W)."""
    b = x1.shape[0]
    x0 = torch.randn(x1.shape, generator=generator, dtype=x1.dtype)
    t = torch.rand((b,), generator=generator, dtype=x1.dtype)
    tt = t.view(-1, 1, 1, 1)
    xt = (1 - tt) * x0 + tt * x1
    v = net(xt, t, cfeat)
    err = ((v - (x1 - x0)) ** 2)[:, 0]
    n = valid.sum()
    return (err * valid).sum() / n.clamp_min(1)


@torch.no_grad()
def euler_sample(net: FlowNet, cfeat: torch.Tensor, members: int, steps: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Members (B, M, H, W) of the residual by ``steps`` Euler steps from Gaussian noise; the
    conditioning features (B, base, H, W) are shared by all members (batched together)."""
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be in 1..{MAX_STEPS}, got {steps}")
    b, _, h, w = cfeat.shape
    h, w = h * net.patch, w * net.patch
    x = torch.randn((b * members, 1, h, w), generator=generator, dtype=cfeat.dtype).to(cfeat.device)
    cf = cfeat.repeat_interleave(members, dim=0)
    dt = 1.0 / steps
    for k in range(steps):
        t = torch.full((b * members,), k * dt, dtype=cfeat.dtype, device=cfeat.device)
        x = x + dt * net(x, t, cf)
    return x.view(b, members, h, w)


def member_levels(members: int) -> list[float]:
    """Quantile levels of sorted ensemble members: plotting positions (k + 0.5) / M."""
    return [float((k + 0.5) / members) for k in range(members)]


# --------------------------------------------------------------------------- retriever
def build_flow(config: dict) -> FlowNet:
    fc = config.get("flow", {}) or {}
    return FlowNet(base=int(fc.get("base", 16)), depth=int(fc.get("depth", 2)), patch=int(fc.get("patch", 2)))


class FlowRetriever(Retriever):
    """The residual flow model as a :class:`Retriever`: ``predict_batch`` returns the sorted
    ensemble members as quantiles at :func:`member_levels`; :meth:`sample` returns members;
    :meth:`ood_scores` the calibrated OOD score of the base U-Net's features (when shipped)."""

    kind = "flow"

    def __init__(self, card, tensors: dict[str, torch.Tensor]):
        self.card, self.name, self.sha256 = card, card.name, card.checkpoint_sha256
        cfg = card.config
        bcfg = cfg["base_config"]
        self.base = build_unet(bcfg)
        self.base_levels = np.asarray(bcfg["quantile_levels"], np.float64)
        try:
            self.base.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("base.")}, strict=True)
            self.flow = build_flow(cfg)
            self.flow.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("flow.")}, strict=True)
        except RuntimeError as e:
            raise ModelError(f"checkpoint of {card.name!r} does not fit its config: {str(e).splitlines()[0]}") from None
        self.base.eval()
        self.flow.eval()
        self._fast = self.base.fused().eval()
        self.scale = float(tensors["residual_scale"].item())
        s = cfg.get("sampling", {}) or {}
        self.members = int(s.get("members", 10))
        self.steps = int(s.get("steps", 8))
        self.seed = int(s.get("seed", 0))
        if not 1 <= self.steps <= MAX_STEPS:
            raise ModelError(f"model {card.name!r}: sampling steps must be in 1..{MAX_STEPS}")
        self.levels = np.asarray(card.levels, np.float64)
        if self.levels.size != self.members:
            raise ModelError(f"model {card.name!r}: {self.levels.size} levels for {self.members} members")
        self.ood = None
        if "ood.mean" in tensors:
            self.ood = MahalanobisOOD.from_tensors(tensors)
        self.multiple = max(self.base.multiple, self.flow.multiple)
        self.overlap_margin = self.base.receptive_radius + self.flow.receptive_radius
        self.inference_config = cfg.get("inference", {}) or {}
        self.cpu_batch_tiles = int(self.inference_config.get("cpu_batch_tiles", 1))
        self.bytes_per_pixel = 4 * (12 * 16 + self.members * 8 * self.flow.base)
        self.channels_last = False
        self._device = torch.device("cpu")

    @property
    def device(self) -> torch.device:
        return self._device

    def to(self, device) -> "FlowRetriever":
        device = torch.device(device)
        if device != self._device:
            self.base, self._fast, self.flow = self.base.to(device), self._fast.to(device), self.flow.to(device)
            self._device = device
        return self

    @torch.inference_mode()
    def sample(self, tb: torch.Tensor, members: int | None = None, steps: int | None = None,
               seed: int | None = None) -> torch.Tensor:
        """Rain members (B, M, H, W) (mm h-1) for Tb (B, 13, H, W); deterministic for a seed."""
        members = members or self.members
        steps = steps or self.steps
        g = torch.Generator().manual_seed(self.seed if seed is None else int(seed))
        cond, mean = base_conditioning(self.base, self.base_levels, tb.to(self._device).float(), self._fast)
        cfeat = self.flow.cond_features(cond)
        r = euler_sample(self.flow, cfeat, members, steps, g)
        return rain_from_residual(r, mean[:, None], self.scale)

    def predict_batch(self, tb: torch.Tensor) -> torch.Tensor:
        return torch.sort(self.sample(tb), dim=1).values

    def extra_layers(self, swath, ds, **kw):
        """Extra output layers (``ood_score``) for a retrieval ``ds`` of ``swath``."""
        return add_ood_layer(self, swath, ds, **kw)

    @torch.inference_mode()
    def ood_scores(self, tb: torch.Tensor) -> torch.Tensor:
        """Calibrated per-pixel OOD score (B, H, W) in [0, 1]."""
        if self.ood is None:
            raise ModelError(f"model {self.name!r} ships no OOD detector")
        return self.ood.pixel_scores(self.base, tb.to(self._device).float())


# --------------------------------------------------------------------------- the OOD map layer
class _OODLayer(Retriever):
    """Adapter that lets :func:`models.inference.predict_swath` tile the OOD score like a
    product: its two "quantiles" are both the calibrated score."""

    kind = "ood-layer"

    def __init__(self, owner: FlowRetriever):
        self.owner = owner
        self.name, self.sha256 = owner.name, owner.sha256
        self.levels = np.array([0.25, 0.75])
        self.multiple = owner.base.multiple
        self.overlap_margin = owner.base.receptive_radius
        self.inference_config = {"tile_scans": owner.inference_config.get("tile_scans", 512)}
        self.cpu_batch_tiles = 1

    @property
    def device(self) -> torch.device:
        return self.owner.device

    def to(self, device) -> "_OODLayer":
        self.owner.to(device)
        return self

    def predict_batch(self, tb: torch.Tensor) -> torch.Tensor:
        s = torch.nan_to_num(self.owner.ood_scores(tb), nan=0.0)[:, None]
        return torch.cat([s, s], 1)


def add_ood_layer(retriever: FlowRetriever, swath, ds, **kw):
    """Add ``ood_score`` (units "1", NaN where Tb are invalid) to a retrieval dataset ``ds`` of
    ``swath``; tiled like the products (same blending), so it works on whole orbits."""
    if retriever.ood is None or "ood_score" in ds:
        return ds
    kw = {k: v for k, v in kw.items() if k in ("device", "progress", "cancel")}
    layer = predict_swath(_OODLayer(retriever), swath, validate=False, **kw)
    score = layer["precip_quantiles"].isel(quantile=0).drop_vars("quantile")
    score = score.where(np.isfinite(ds["precip_mean"]))
    ds = ds.copy()
    ds["ood_score"] = score.assign_attrs(units="1", long_name="Out-of-distribution score",
                                         comment="fraction of in-distribution (validation-year) pixels with a smaller "
                                                 "Mahalanobis distance of the base U-Net's encoder features")
    return ds


def predict_with_ood(retriever: Retriever, swath, **kw):
    """:func:`models.inference.predict_swath` plus the ``ood_score`` layer when the model ships a
    detector (the app and ``raincheck compare`` use this)."""
    ds = predict_swath(retriever, swath, **kw)
    if isinstance(retriever, FlowRetriever) and retriever.ood is not None:
        ds = add_ood_layer(retriever, swath, ds, **kw)
        schema.validate(ds, "retrieval")
    return ds


def sample_window(retriever: FlowRetriever, swath, along: slice, cross: slice, members: int | None = None,
                  steps: int | None = None, seed: int | None = None):
    """Ensemble members on a user-selected window of a swath (the app's CPU path): an
    ``xarray.DataArray`` (member, along_track, cross_track) in mm h-1, NaN where Tb are invalid."""
    sub = swath.isel(along_track=along, cross_track=cross)
    tc = np.asarray(sub["Tc"].transpose("along_track", "cross_track", "pmw_frequency").values, np.float32)
    bad = invalid_tb_mask(tc)
    a, c = tc.shape[:2]
    m = retriever.multiple
    x = np.full((_pad_to(a, m), _pad_to(c, m), 13), np.nan, np.float32)
    x[:a, :c] = np.where(bad[..., None], np.nan, tc)
    y = retriever.sample(torch.from_numpy(x).permute(2, 0, 1)[None], members, steps, seed)[0, :, :a, :c].numpy()
    y[:, bad] = np.nan
    return xr.DataArray(y, dims=("member", "along_track", "cross_track"),
                        coords={k: sub[k] for k in ("lat", "lon")},
                        attrs={"units": "mm h-1", "long_name": f"{retriever.name} ensemble members",
                               "steps": int(steps or retriever.steps), "seed": int(retriever.seed if seed is None else seed)})

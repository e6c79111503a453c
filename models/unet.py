"""A DRAIN-like U-Net for quantile regression of surface rain rate on GMI swaths.

Input: a (B, 13, along, cross) tensor of brightness temperatures in K (NaN allowed: set to the
channel mean after normalisation; such pixels are masked in the output by the caller). The
network selects its configured channels (all 13, or DRAIN's 37/89 GHz set), normalises them
with statistics stored as buffers (so they travel in the checkpoint) and predicts Q quantiles
per pixel.

Quantiles never cross, by construction: the head outputs ``o_0 .. o_{Q-1}`` and the quantiles
are ``q_0 = softplus(o_0)``, ``q_k = q_{k-1} + softplus(o_k)`` -- a cumulative sum of positive
increments starting from a non-negative base (rain >= 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from catalogs.schema import CHANNELS
import copy

#: DRAIN's 4-channel configuration (37 and 89 GHz, both polarisations).
DRAIN_CHANNELS = ("36.64V", "36.64H", "89.0V", "89.0H")


def pad_cross(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the last two dims (along, cross) to multiples of ``multiple`` with NaN (the network's
    :attr:`QuantileUNet.multiple`)."""
    h, w = x.shape[-2:]
    ph = (-h) % multiple
    pw = (-w) % multiple
    if ph or pw:
        x = torch.nn.functional.pad(x, (0, pw, 0, ph), value=float("nan"))
    return x


def resolve_channels(spec) -> list[int]:
    """Channel indices into the 13 GMI channels from a config value: ``"all"``, ``"drain"`` or
    a list of channel labels."""
    if spec in (None, "all"):
        return list(range(len(CHANNELS)))
    if spec == "drain":
        spec = DRAIN_CHANNELS
    out = []
    for label in spec:
        if label not in CHANNELS:
            raise ValueError(f"unknown GMI channel {label!r}; choose from {list(CHANNELS)}")
        out.append(CHANNELS.index(label))
    return out


class ConvBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )


def _fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      conv.padding, bias=True)
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    fused.weight.data = conv.weight.detach() * scale[:, None, None, None]
    b0 = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.data = (b0 - bn.running_mean) * scale + bn.bias.detach()
    return fused


class QuantileUNet(nn.Module):
    """U-Net with ``depth`` down-samplings, widths ``base * 2**level`` (capped by ``max_width``)
    and a monotone quantile head with ``n_quantiles`` outputs."""

    def __init__(self, n_quantiles: int, channels: Sequence[int] | None = None, base: int = 16,
                 depth: int = 3, max_width: int = 256, head_hidden: int = 0, gmst: bool = False,
                 domain: bool = False):
        super().__init__()
        channels = list(range(len(CHANNELS))) if channels is None else list(channels)
        self.depth = depth
        self.n_quantiles = n_quantiles
        self.register_buffer("channel_index", torch.tensor(channels, dtype=torch.long))
        self._all_channels = channels == list(range(len(CHANNELS)))  # then no channel gather is needed
        self.register_buffer("tb_mean", torch.full((len(channels),), 200.0))
        self.register_buffer("tb_std", torch.full((len(channels),), 50.0))
        # optional climate conditioning (config ``conditioning: {gmst: true}``): the scene's
        # global-mean surface temperature anomaly (K) joins the input as one more constant
        # channel, normalised with statistics stored as buffers like the Tb's. Off by default:
        # the network, its state dict and its outputs are then exactly the unconditioned ones.
        # ``domain: true`` (with gmst) adds a second constant channel, 1 for scenes of the simulated
        # source and 0 for the observing system, so the simulated domain's own differences are not
        # learnt as an effect of ΔT (observed scenes exist only in the present climate); at
        # inference it is 0: the model retrieves the observing system.
        self.gmst_conditioned = bool(gmst)
        self.domain_conditioned = bool(domain)
        if self.domain_conditioned and not self.gmst_conditioned:
            raise ValueError("conditioning: domain needs gmst")
        n_in = len(channels) + int(self.gmst_conditioned) + int(self.domain_conditioned)
        if self.gmst_conditioned:
            self.register_buffer("gmst_mean", torch.zeros(1))
            self.register_buffer("gmst_std", torch.ones(1))
        widths = [min(base * 2 ** i, max_width) for i in range(depth + 1)]
        self.enc = nn.ModuleList()
        cin = n_in
        for w in widths[:-1]:
            self.enc.append(ConvBlock(cin, w))
            cin = w
        self.bottom = ConvBlock(cin, widths[-1])
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in reversed(range(depth)):
            self.up.append(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2))
            self.dec.append(ConvBlock(2 * widths[i], widths[i]))
        # optional per-pixel head: the normalised Tb of the pixel itself joins the decoder
        # features and pass a hidden 1x1 layer (the Tb -> rain relation is largely per pixel)
        self.head_hidden = int(head_hidden)
        if self.head_hidden:
            self.pixel = nn.Sequential(nn.Conv2d(widths[0] + n_in, self.head_hidden, 1), nn.ReLU(inplace=True),
                                       nn.Conv2d(self.head_hidden, self.head_hidden, 1), nn.ReLU(inplace=True))
            head_in = self.head_hidden
        else:
            self.pixel = None
            head_in = widths[0]
        self.head = nn.Conv2d(head_in, n_quantiles, 1)
        # start near "no rain": small increments, so the zero-inflated target is learnt quickly
        nn.init.constant_(self.head.bias, -4.0)

    @property
    def multiple(self) -> int:
        """Spatial sizes must be multiples of this (``2**depth``)."""
        return 2 ** self.depth

    @property
    def receptive_radius(self) -> int:
        """Pixels beyond which an input cannot influence an output (an upper bound): used to
        size tile overlaps so tiled inference equals a single pass."""
        d = self.depth
        return 5 * (2 ** d - 1) + 2 * 2 ** d + 2 ** d

    def set_normalisation(self, mean, std) -> None:
        self.tb_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.tb_std.copy_(torch.clamp(torch.as_tensor(std, dtype=torch.float32), min=1e-3))

    def set_gmst_normalisation(self, mean: float, std: float) -> None:
        self.gmst_mean.fill_(float(mean))
        self.gmst_std.fill_(max(float(std), 1e-3))

    #: weights whose input channels are the network input (normalised Tb, then ΔT if conditioned)
    INPUT_WEIGHTS = ("enc.0.0.weight", "pixel.0.weight")

    def load_unconditioned(self, state: dict) -> None:
        """Load an *unconditioned* U-Net's state dict into this GMST-conditioned one: every
        tensor as is, the input weights padded with a zero column for the ΔT channel (so the
        outputs equal the unconditioned network's for any ΔT) and the ΔT statistics left as set."""
        if not self.gmst_conditioned:
            raise ValueError("load_unconditioned: this network is not GMST-conditioned")
        own = self.state_dict()
        state = dict(state)
        extra = int(self.gmst_conditioned) + int(self.domain_conditioned)
        for k in self.INPUT_WEIGHTS:
            if k in state and k in own and state[k].shape[1] + extra == own[k].shape[1]:
                w = state[k]
                state[k] = torch.cat([w, torch.zeros_like(w[:, :extra])], dim=1)
        for k in ("gmst_mean", "gmst_std"):
            state.setdefault(k, own[k])
        self.load_state_dict(state, strict=True)

    def gmst_channel(self, gmst, like: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) normalised ΔT channel from ``gmst`` (K: a scalar or one value per scene)."""
        if gmst is None:
            raise ValueError("this U-Net is conditioned on the GMST anomaly: pass gmst (K per scene)")
        g = torch.as_tensor(gmst, dtype=torch.float32, device=like.device).reshape(-1)
        b = like.shape[0]
        if g.numel() == 1:
            g = g.expand(b)
        if g.numel() != b or not torch.isfinite(g).all():
            raise ValueError(f"gmst: expected one finite value per scene ({b}), got {g.tolist()}")
        g = (g - self.gmst_mean) / self.gmst_std
        return g.to(like.dtype)[:, None, None, None].expand(b, 1, like.shape[2], like.shape[3])

    def normalise(self, tb: torch.Tensor) -> torch.Tensor:
        """(B, 13, H, W) Tb in K -> (B, C, H, W) normalised, NaN replaced by 0 (the mean)."""
        if tb.dim() != 4 or tb.shape[1] != len(CHANNELS):
            raise ValueError(f"expected input (batch, {len(CHANNELS)} channels, along, cross), got {tuple(tb.shape)}")
        x = tb if self._all_channels else tb.index_select(1, self.channel_index)
        x = (x - self.tb_mean[None, :, None, None]) / self.tb_std[None, :, None, None]
        return torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)

    def domain_channel(self, domain, like: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) domain channel: ``domain`` 1 = simulated source, 0 = observing system
        (None: 0, the domain the model retrieves)."""
        b = like.shape[0]
        d = torch.zeros(b) if domain is None else torch.as_tensor(domain, dtype=torch.float32).reshape(-1)
        if d.numel() == 1:
            d = d.expand(b)
        if d.numel() != b:
            raise ValueError(f"domain: expected one value per scene ({b})")
        return d.to(device=like.device, dtype=like.dtype)[:, None, None, None].expand(b, 1, like.shape[2], like.shape[3])

    def forward(self, tb: torch.Tensor, gmst=None, domain=None, increments: bool = False) -> torch.Tensor:
        """(B, 13, H, W) Tb (H, W multiples of :attr:`multiple`) -> (B, Q, H, W) quantiles.
        ``gmst``: the scenes' GMST anomaly in K (a scalar or (B,)); required by a
        GMST-conditioned network, ignored otherwise. ``domain`` (training only; see ``__init__``).
        ``increments``: return the non-negative increments ``softplus(o_k)`` instead, whose
        cumulative sum along dim 1 is the quantiles (inference sums them while blending tiles)."""
        x0 = x = self.normalise(tb).to(self.head.weight.dtype)
        if self.gmst_conditioned:
            parts = [x, self.gmst_channel(gmst, x)]
            if self.domain_conditioned:
                parts.append(self.domain_channel(domain, x))
            x0 = x = torch.cat(parts, dim=1)
        skips = []
        for block in self.enc:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            x = dec(torch.cat([up(x), skip], dim=1))
        if self.pixel is not None:
            x = self.pixel(torch.cat([x, x0], dim=1))
        raw = self.head(x).float()
        return F.softplus(raw) if increments else monotone_quantiles(raw, dim=1)

    @torch.no_grad()
    def fused(self) -> "QuantileUNet":
        """A copy for inference with every BatchNorm folded into the preceding convolution."""

        m = copy.deepcopy(self).eval()
        for block in [*m.enc, m.bottom, *m.dec]:
            layers = list(block)
            new = [_fuse_conv_bn(layers[0], layers[1]), layers[2], _fuse_conv_bn(layers[3], layers[4]), layers[5]]
            for i in range(len(block) - 1, -1, -1):
                del block[i]
            for layer in new:
                block.append(layer)
        return m


def monotone_quantiles(raw: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Non-negative, non-decreasing quantiles from unconstrained outputs along ``dim``:
    softplus base plus cumulative softplus increments."""
    return torch.cumsum(F.softplus(raw), dim=dim)


def pinball_loss(pred: torch.Tensor, target: torch.Tensor, levels: torch.Tensor,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean quantile (pinball) loss. ``pred`` (B, Q, H, W), ``target`` (B, H, W), ``levels``
    (Q,); only pixels where ``mask`` (B, H, W) is true (and the target is finite) count."""
    valid = torch.isfinite(target)
    if mask is not None:
        valid = valid & mask
    n = valid.sum()
    if n == 0:
        return pred.sum() * 0.0
    y = torch.where(valid, target, torch.zeros_like(target))[:, None]
    diff = y - pred
    tau = levels.to(pred)[None, :, None, None]
    loss = torch.maximum(tau * diff, (tau - 1) * diff).mean(dim=1)
    return (loss * valid).sum() / n

"""A DRAIN-like U-Net for quantile regression of surface rain rate on GMI swaths.

Input: a (B, 13, along, cross) tensor of brightness temperatures in K (NaN allowed: set to the
channel mean after normalisation; such pixels are masked in the output by the caller). The
network selects its configured channels (all 13, or DRAIN's 37/89 GHz set), normalises them
with statistics stored as buffers (so they travel in the checkpoint) and predicts Q quantiles
per pixel.

Quantiles never cross, by construction: the head outputs ``o_0 .. o_{Q-1}`` and the quantiles
are ``q_0 = softplus(o_0)``, ``q_k = q_{k-1} + softplus(o_k)`` -- a cumulative sum of positive
increments starting from a non-negative base (rain >= 0).

Optional extreme-value tail (config ``tail: {type: gpd, threshold_level: p_u}``, issue 15): the
head then outputs the quantiles up to the level ``p_u`` as above, plus two per-pixel outputs, a
GPD scale ``sigma > 0`` and shape ``xi`` (bounded by a scaled tanh); the levels above ``p_u`` are
the GPD quantiles of the exceedance over ``u = q(p_u)`` (:mod:`models.research.gpd`), so the tail
can extrapolate rather than saturate, and still never crosses (the GPD quantile grows with the
level for any ``sigma > 0``). ``sigma`` is the exponential scale of the body's last step,
``(q(p_u) - q(p_{u-1})) / log((1 - p_{u-1}) / (1 - p_u))``, times a learnt positive factor
``softplus(s) / log 2``: with ``s = 0`` and ``xi = 0`` the tail is exactly the exponential tail through
the last two body quantiles, the one :class:`models.quantiles.QuantileDistribution` puts beyond its
last level. A quantile-only state dict (e.g. the reference's) loads into such a network with the
body's rows of the head kept and the tail head started there (:func:`quantile_state_into_gpd`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from catalogs.schema import CHANNELS
from models.research.gpd import bounded_shape, exceedance_quantile_torch, log_ratio, shape_offset
import copy
import math

#: the smallest GPD scale (mm h-1): keeps sigma > 0 where softplus underflows in float32
GPD_SIGMA_FLOOR = 1e-6

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
                 domain: bool = False, levels: Sequence[float] | None = None,
                 gpd_threshold_level: float | None = None, gpd_shape_bounds: tuple[float, float] = (-0.2, 0.5),
                 input_transform: nn.Module | None = None):
        super().__init__()
        # optional climate-invariant inputs (config ``inputs:``, models.research.invariant): a module
        # with no parameters or buffers that maps the 13 Tb to 13 inputs before the normalisation
        if input_transform is not None and (list(input_transform.parameters()) or list(input_transform.buffers())):
            raise ValueError("input_transform must have no parameters or buffers (the state dict must not change)")
        self.input_transform = input_transform
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
        # the GPD tail (see the module docstring): the head's quantiles end at the threshold level
        self.gpd_index = None
        n_head = n_quantiles
        if gpd_threshold_level is not None:
            self._init_gpd(levels, float(gpd_threshold_level), gpd_shape_bounds)
            n_head = self.gpd_index + 1
        self.head = nn.Conv2d(head_in, n_head, 1)
        # start near "no rain": small increments, so the zero-inflated target is learnt quickly
        nn.init.constant_(self.head.bias, -4.0)
        self.tail_head = None
        if self.gpd_index is not None:
            self.tail_head = nn.Conv2d(head_in, 2, 1)  # (scale factor s, shape pre-activation)
            with torch.no_grad():
                self.tail_head.bias.copy_(torch.tensor([0.0, self.gpd_shape_offset]))
            self.register_load_state_dict_pre_hook(quantile_state_into_gpd)

    def _init_gpd(self, levels, threshold_level: float, bounds) -> None:
        if levels is None or len(levels) != self.n_quantiles:
            raise ValueError(f"a GPD tail needs the {self.n_quantiles} quantile levels, got {levels!r:.80}")
        lv = [float(x) for x in levels]
        hits = [i for i, x in enumerate(lv) if abs(x - threshold_level) < 1e-9]
        if not hits:
            raise ValueError(f"GPD threshold level {threshold_level} is not one of the quantile levels {lv}")
        k = hits[0]
        if k < 1 or k > len(lv) - 2:
            raise ValueError(f"GPD threshold level {threshold_level} needs a quantile level below it and one above")
        lo, hi = (float(b) for b in bounds)
        self.gpd_index = k
        self.gpd_threshold_level = lv[k]
        self.gpd_shape_bounds = (lo, hi)
        self.gpd_shape_offset = shape_offset(lo, hi, 0.0)  # the shape pre-activation giving xi = 0
        #: log((1 - p_{u-1}) / (1 - p_u)): the body's last step over this is its exponential scale
        self.gpd_step_log = math.log((1.0 - lv[k - 1]) / (1.0 - lv[k]))
        lr = torch.tensor(log_ratio(lv[k + 1:], lv[k]), dtype=torch.float32)
        self.register_buffer("gpd_log_ratio", lr.view(1, -1, 1, 1), persistent=False)

    @property
    def multiple(self) -> int:
        """Spatial sizes must be multiples of this (``2**depth``)."""
        return 2 ** self.depth

    @property
    def receptive_radius(self) -> int:
        """Pixels beyond which an input cannot influence an output (an upper bound): used to
        size tile overlaps so tiled inference equals a single pass."""
        d = self.depth
        extra = self.input_transform.radius if self.input_transform is not None else 0  # its window
        return 5 * (2 ** d - 1) + 2 * 2 ** d + 2 ** d + extra

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
        if self.input_transform is not None:
            tb = self.input_transform(tb)
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
        x = self.features(tb, gmst, domain)
        raw = self.head(x).float()
        if self.gpd_index is None:
            return F.softplus(raw) if increments else monotone_quantiles(raw, dim=1)
        inc = self._gpd_increments(raw, self.tail_head(x).float())
        return inc if increments else torch.cumsum(inc, dim=1)

    def _gpd_parameters(self, raw: torch.Tensor, traw: torch.Tensor):
        """(sigma, xi), each (B, 1, H, W), from the body head's outputs and the tail head's."""
        step = F.softplus(raw[:, self.gpd_index:self.gpd_index + 1])  # q(p_u) - q(p_{u-1})
        sigma = step / self.gpd_step_log * F.softplus(traw[:, :1]) / math.log(2.0) + GPD_SIGMA_FLOOR
        xi = bounded_shape(traw[:, 1:2], *self.gpd_shape_bounds)
        return sigma, xi

    def _gpd_increments(self, raw: torch.Tensor, traw: torch.Tensor) -> torch.Tensor:
        """(B, Q, H, W) increments: the body's ``softplus`` increments, then the steps between the
        GPD quantiles of the tail levels (non-negative: the GPD quantile grows with the level)."""
        sigma, xi = self._gpd_parameters(raw, traw)
        exc = exceedance_quantile_torch(sigma, xi, self.gpd_log_ratio)  # (B, K, H, W): q(p) - u
        steps = torch.diff(exc, dim=1, prepend=torch.zeros_like(exc[:, :1])).clamp_min(0.0)
        return torch.cat([F.softplus(raw), steps], dim=1)

    @torch.no_grad()
    def gpd_parameters(self, tb: torch.Tensor, gmst=None, domain=None) -> dict[str, torch.Tensor]:
        """The tail of a GPD-tailed network per pixel: ``u`` (the threshold quantile, mm h-1),
        ``sigma`` (mm h-1) and ``xi``, each (B, H, W)."""
        if self.gpd_index is None:
            raise ValueError("this U-Net has no GPD tail (config tail: {type: gpd, ...})")
        x = self.features(tb, gmst, domain)
        raw = self.head(x).float()
        sigma, xi = self._gpd_parameters(raw, self.tail_head(x).float())
        u = monotone_quantiles(raw, dim=1)[:, -1]
        return {"u": u, "sigma": sigma[:, 0], "xi": xi[:, 0]}

    def features(self, tb: torch.Tensor, gmst=None, domain=None) -> torch.Tensor:
        """The per-pixel features the quantile head reads (B, F, H, W)."""
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
        return x

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


def quantile_state_into_gpd(module: QuantileUNet, state: dict, prefix: str, *args) -> None:
    """Load hook of a GPD-tailed :class:`QuantileUNet`: a quantile-only state dict (no
    ``tail_head``, a head with one row per quantile level, e.g. the reference's) is changed in
    place to fit it -- the head keeps the rows of the levels up to the threshold (so the body's
    quantiles are the source's exactly), the tail head starts with zero weights and the biases of
    ``s = 0``, ``xi = 0``: the tail starts as the exponential tail through the last two body
    quantiles. Any other state dict is left to the strict load (which names what does not fit)."""
    w, b = f"{prefix}head.weight", f"{prefix}head.bias"
    tw, tb = f"{prefix}tail_head.weight", f"{prefix}tail_head.bias"
    if tw in state or tb in state or w not in state or b not in state:
        return
    if state[w].shape[0] != module.n_quantiles or state[b].shape[0] != module.n_quantiles:
        return
    k = module.gpd_index
    state[w], state[b] = state[w][:k + 1].clone(), state[b][:k + 1].clone()
    state[tw] = torch.zeros((2, *state[w].shape[1:]), dtype=state[w].dtype)
    state[tb] = torch.tensor([0.0, module.gpd_shape_offset], dtype=state[b].dtype)


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

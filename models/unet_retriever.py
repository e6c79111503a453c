"""The U-Net as a :class:`models.base.Retriever`: built from its card and safetensors weights,
BatchNorm folded into the convolutions and channels-last for inference."""

from __future__ import annotations

import numpy as np
import torch

from models.base import ModelError, Retriever
from models.config import parse_config
from models.inference import cpu_bf16_supported
from models.research.invariant import build_input_transform
from models.unet import QuantileUNet, resolve_channels


def build_unet(config: dict) -> QuantileUNet:
    net = config.get("network", {}) or {}
    levels = config["quantile_levels"]
    tail = parse_config(config).tail if config.get("tail") is not None else None  # an extreme-value tail
    return QuantileUNet(
        n_quantiles=len(levels),
        channels=resolve_channels(config.get("channels", "all")),
        base=int(net.get("base", 16)),
        depth=int(net.get("depth", 3)),
        max_width=int(net.get("max_width", 256)),
        head_hidden=int(net.get("head_hidden", 0)),
        gmst=bool((config.get("conditioning") or {}).get("gmst", False)),
        domain=bool((config.get("conditioning") or {}).get("domain", False)),
        levels=levels,
        gpd_threshold_level=tail.threshold_level if tail is not None else None,
        gpd_shape_bounds=(tail.xi_min, tail.xi_max) if tail is not None else (-0.2, 0.5),
        input_transform=build_input_transform(parse_config(config).inputs) if config.get("inputs") else None,
    )


class UNetRetriever(Retriever):
    kind = "unet"

    def __init__(self, card, tensors: dict[str, torch.Tensor]):
        self.card = card
        self.name = card.name
        self.sha256 = card.checkpoint_sha256
        self.levels = np.asarray(card.levels, np.float64)
        net = build_unet(card.config)
        if net.n_quantiles != self.levels.size:
            raise ModelError(f"model {card.name!r}: config has {net.n_quantiles} quantiles, card {self.levels.size}")
        try:
            net.load_state_dict(tensors, strict=True)
        except RuntimeError as e:
            raise ModelError(f"checkpoint of {card.name!r} does not fit its config: {str(e).splitlines()[0]}") from None
        self.net = net.eval()
        #: True for a model conditioned on the scene's GMST anomaly (``conditioning: {gmst: true}``):
        #: :meth:`predict_batch` then needs ``gmst`` (see :func:`models.conditioning.swath_gmst`)
        self.gmst_conditioned = net.gmst_conditioned
        self._fast = net.fused().eval()
        inf = card.config.get("inference", {}) or {}
        self.channels_last = bool(inf.get("channels_last", True))
        if self.channels_last:
            self._fast = self._fast.to(memory_format=torch.channels_last)
        self.inference_config = inf
        self.multiple = net.multiple
        self.overlap_margin = net.receptive_radius
        self.cpu_batch_tiles = int(inf.get("cpu_batch_tiles", 2))
        # bf16 autocast on CPU only where the card asks for it and the CPU does bf16 natively
        self.cpu_bf16 = bool(inf.get("cpu_bf16", False)) and cpu_bf16_supported()
        base = int((card.config.get("network") or {}).get("base", 16))
        self.bytes_per_pixel = 4 * 12 * base + 4 * 2 * self.levels.size  # rough activation memory
        self._device = torch.device("cpu")

    @property
    def device(self) -> torch.device:
        return self._device

    def to(self, device) -> "UNetRetriever":
        device = torch.device(device)
        if device != self._device:
            self._fast = self._fast.to(device)
            self.net = self.net.to(device)
            self._device = device
        return self

    def predict_batch(self, tb: torch.Tensor, gmst=None) -> torch.Tensor:
        """Quantiles of a batch; ``gmst`` (K, scalar or one per scene) is required by a
        GMST-conditioned model (never defaulted here) and ignored by the others."""
        if not self.gmst_conditioned:
            return self._fast(tb)
        if gmst is None:
            raise ModelError(f"model {self.name!r} is conditioned on the GMST anomaly: pass gmst (K), e.g. from "
                             "models.conditioning.swath_gmst(swath) or scene_gmst(scene set)")
        return self._fast(tb, gmst)

    def predict_batch_increments(self, tb: torch.Tensor, gmst=None) -> torch.Tensor:
        """Like :meth:`predict_batch` but the quantile increments (B, Q, H, W), whose cumulative
        sum along dim 1 is the quantiles: :func:`models.inference.predict_swath` sums them in
        the same pass that blends the tiles (channels-last output: each pixel's Q values are
        contiguous)."""
        if not self.gmst_conditioned:
            return self._fast(tb, increments=True)
        if gmst is None:
            raise ModelError(f"model {self.name!r} is conditioned on the GMST anomaly: pass gmst (K)")
        return self._fast(tb, gmst, increments=True)

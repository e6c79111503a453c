"""Climate-invariant inputs for the quantile U-Net (issue 15): each channel's Tb relative to a local
clear-sky background estimated from the Tb themselves.

Why. Beucler et al. (2024, Science Advances 10, eadj7250, "Climate-invariant machine learning")
show that a network trained in one climate generalises to another when its climate-dependent
inputs are *replaced* by physically transformed ones whose distribution does not move with the
climate (specific humidity -> relative humidity, temperature -> buoyancy). Here the swath carries
only Tb, and what moves with warming is mostly the clear-sky background: water vapour grows
≈ 7 %/K (NOTES; the simulator's vapour x1.07^K), the surface warms, and so the 18.7-37 GHz and
23.8 GHz background over ocean warms by several K (``simulate_orbit(..., warming_K=4)``; the
report of helper D measures it) -- a shift the reference reads partly as rain. The rain signal is
a *departure* from that background: emission by liquid raises the 10-37 GHz Tb over the radiometrically
cold ocean (Wilheit et al. 1977, J. Appl. Meteor. 16, 551-560), scattering by ice lowers the 89-183 GHz
Tb, by 100 K and more in deep cores (Spencer et al. 1989, JTECH 6, 254-273).

What. :class:`LocalAnomaly` maps a (B, 13, along, cross) Tb tensor (K) to 13 channels (K):

* emission channels (10.65 V/H, 18.7 V/H, 23.8 V, 36.64 V/H): ``Tb - opening(Tb)``, the white
  top-hat: the grey opening (erosion = window minimum, then dilation = window maximum, over a
  rectangle of ``window`` = (along, cross) pixels) is the highest lower envelope made of
  window-sized plateaus -- the clear-sky background under rain features narrower than the window
  (the "rolling ball" background of image processing: Sternberg 1983, Computer 16(1), 22-34;
  Serra 1982, *Image analysis and mathematical morphology*). The anomaly is >= 0: rain emission.
* scattering channels (89 V/H, 166 V/H, 183.31±3 V, 183.31±7 V): ``Tb - closing(Tb)`` (dilation
  then erosion: the lowest upper envelope), <= 0: ice scattering below the clear-sky background.
* optionally (``surface_pd``, on by default) the 10.65H anomaly is replaced by the 10.65 GHz
  polarisation difference as it is, written H - V (<= 0): the surface contrast (V - H ≈ 60-80 K
  over a specular ocean, a few K over land; Wilheit 1977) that tells the network which surface it
  looks through, at the frequency least touched by the atmosphere. It is kept because without it a
  land scene and an ocean scene look the same once their backgrounds are removed, and rain over
  land shows no emission. Written H - V it moves like the 10.65H Tb it replaces (up over land),
  so the reference's weights for that input start with the right sign.

The start when fine-tuning from the reference (``init_from``, :func:`set_input_normalisation`):
the inputs are normalised with the *reference's Tb scale* (its ``tb_std``) and the training mean of
the transformed inputs. Then ``(A - mean(A)) / s = (Tb - m) / s - (B - mean(B)) / s`` (Tb = B + A,
background B, anomaly A): the network sees the scene as if its background were the training
scenes' mean background, a 1 K anomaly weighs what a 1 K Tb change weighed in the reference, and
the reference's weights are a meaningful start that fine-tuning adapts (validation at epoch 0
records it).

The opening/closing commutes with an additive offset (``opening(f + c) = opening(f) + c``), so a
background shifted uniformly by a warmer, moister climate leaves the input unchanged exactly; a
smooth background change over the window is removed up to its curvature. What is lost: the
absolute level (the network cannot see the climate), the "wrong-direction" signal of each
channel (37 GHz scattering in deep cores, 89 GHz emission in light ocean rain: kept by the other
channels), and rain fields wider than the window in both directions (they lift the background).

Missing pixels (non-finite or outside :data:`catalogs.schema.TB_VALID_RANGE`) are ignored by
every window statistic, and so is everything outside the array: a window at an edge is truncated.
Padding with NaN (as :func:`models.unet.pad_cross` does) therefore changes nothing, and the
anomaly of a pixel depends only on the pixels within :attr:`LocalAnomaly.radius` scans along
track (and ``radius_cross`` across): a tile with that much overlap gives the whole scene's result.

The module has no parameters and no buffers: a state dict of a network without it (the
reference's) loads into one with it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from catalogs.schema import CHANNELS, TB_VALID_RANGE

#: channels whose rain signal is emission (Tb rises over the background): the opening is the background
EMISSION_CHANNELS = ("10.65V", "10.65H", "18.7V", "18.7H", "23.8V", "36.64V", "36.64H")
#: channels whose rain signal is ice scattering (Tb falls below the background): the closing is the background
SCATTERING_CHANNELS = ("89.0V", "89.0H", "166.0V", "166.0H", "183.31±3V", "183.31±7V")
TRANSFORMS = ("none", "local_anomaly")
#: the largest window side (pixels)
MAX_WINDOW = 255


def window_pair(window) -> tuple[int, int]:
    """``(along, cross)`` from an int (square) or a pair; each odd, 3..:data:`MAX_WINDOW`."""
    w = [window, window] if isinstance(window, (int, np.integer)) and not isinstance(window, bool) else window
    if not isinstance(w, (list, tuple)) or len(w) != 2:
        raise ValueError(f"window must be an odd integer or [along, cross] odd integers, got {window!r}")
    out = []
    for v in w:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 3 <= v <= MAX_WINDOW or v % 2 == 0:
            raise ValueError(f"window sides must be odd integers in 3..{MAX_WINDOW}, got {window!r}")
        out.append(int(v))
    return out[0], out[1]


def _max_filter(x: torch.Tensor, ka: int, kc: int) -> torch.Tensor:
    """Separable window maximum over (ka, kc), windows truncated at the edges (-inf = nothing)."""
    x = F.max_pool2d(x, (ka, 1), stride=1, padding=(ka // 2, 0))
    return F.max_pool2d(x, (1, kc), stride=1, padding=(0, kc // 2))


def _opening(x: torch.Tensor, valid: torch.Tensor, ka: int, kc: int) -> torch.Tensor:
    """Grey opening ignoring missing pixels: the window minimum over valid pixels, then the window
    maximum of those minima over valid pixels (so a missing pixel is the same as no pixel: padding
    changes nothing; every valid pixel's own minimum is finite)."""
    inf = torch.tensor(float("inf"), dtype=x.dtype, device=x.device)
    ero = -_max_filter(torch.where(valid, -x, -inf), ka, kc)
    return _max_filter(torch.where(valid, ero, -inf), ka, kc)


class LocalAnomaly(nn.Module):
    """Tb (B, 13, along, cross, K) -> Tb relative to the local clear-sky background (K); see the
    module docstring. ``window``: odd (along, cross) pixels, or one odd int for both."""

    def __init__(self, window=(11, 31), surface_pd: bool = True):
        super().__init__()
        self.window = window_pair(window)
        self.surface_pd = bool(surface_pd)
        emi = [CHANNELS.index(c) for c in EMISSION_CHANNELS]
        sca = [CHANNELS.index(c) for c in SCATTERING_CHANNELS]
        if sorted(emi + sca) != list(range(len(CHANNELS))):
            raise AssertionError("every GMI channel must be either emission or scattering")
        # +1 for emission (opening), -1 for scattering (closing = -opening(-x)); a plain list,
        # not a buffer, so the state dict stays the one of a network without the transform
        self._sign = [1.0 if i in emi else -1.0 for i in range(len(CHANNELS))]

    @property
    def radius(self) -> int:
        """Scans along track beyond which a Tb cannot change a pixel's anomaly (erosion + dilation)."""
        return 2 * (self.window[0] // 2)

    @property
    def radius_cross(self) -> int:
        return 2 * (self.window[1] // 2)

    def extra_repr(self) -> str:
        return f"window={self.window}, surface_pd={self.surface_pd}"

    def background(self, tb: torch.Tensor) -> torch.Tensor:
        """The clear-sky background (B, 13, along, cross) in K (NaN where the Tb is missing)."""
        if tb.dim() != 4 or tb.shape[1] != len(CHANNELS):
            raise ValueError(f"expected Tb (batch, {len(CHANNELS)} channels, along, cross), got {tuple(tb.shape)}")
        x = tb.float()
        valid = torch.isfinite(x) & (x >= TB_VALID_RANGE[0]) & (x <= TB_VALID_RANGE[1])
        s = torch.tensor(self._sign, dtype=x.dtype, device=x.device)[None, :, None, None]
        xs = torch.where(valid, x * s, torch.zeros_like(x))
        bg = _opening(xs, valid, *self.window) * s
        return torch.where(valid, bg, torch.full_like(bg, float("nan")))

    def forward(self, tb: torch.Tensor) -> torch.Tensor:
        x = tb.float()
        out = x - self.background(x)  # NaN where missing
        if self.surface_pd:
            v, h = CHANNELS.index("10.65V"), CHANNELS.index("10.65H")
            pd = x[:, h] - x[:, v]
            ok = torch.isfinite(out[:, v]) & torch.isfinite(out[:, h])
            out = out.clone()
            out[:, h] = torch.where(ok, pd, torch.full_like(pd, float("nan")))
        return out.to(tb.dtype)


def build_input_transform(spec) -> LocalAnomaly | None:
    """The transform of a config's ``inputs`` section (:class:`models.config.InputsConfig`, or
    None / ``transform: none``: no transform)."""
    if spec is None or spec.transform == "none":
        return None
    if spec.transform == "local_anomaly":
        return LocalAnomaly(spec.window, spec.surface_pd)
    raise ValueError(f"inputs.transform must be one of {', '.join(TRANSFORMS)}, got {spec.transform!r}")


@torch.no_grad()
def input_statistics(transform: nn.Module, tc: np.ndarray, channel_index, max_scenes: int = 64,
                     batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per input channel of the *transformed* Tb of up to
    ``max_scenes`` evenly spaced scenes of ``tc`` (scenes, along, cross, 13), valid pixels only:
    the network's input normalisation (``QuantileUNet.set_normalisation``)."""
    n = tc.shape[0]
    idx = np.unique(np.linspace(0, n - 1, min(n, max_scenes)).round().astype(int))
    ci = np.asarray(channel_index, dtype=int)
    s = np.zeros(ci.size)
    s2 = np.zeros(ci.size)
    k = np.zeros(ci.size)
    for i in range(0, idx.size, batch):
        x = torch.from_numpy(np.asarray(tc[idx[i:i + batch]], np.float32)).permute(0, 3, 1, 2)
        a = transform(x)[:, ci].double()
        ok = torch.isfinite(a)
        a = torch.where(ok, a, torch.zeros_like(a))
        s += a.sum((0, 2, 3)).numpy()
        s2 += (a * a).sum((0, 2, 3)).numpy()
        k += ok.sum((0, 2, 3)).numpy()
    if (k == 0).any():
        raise ValueError("input_statistics: a channel has no valid transformed pixel in the training scenes")
    mean = s / k
    return mean, np.sqrt(np.maximum(s2 / k - mean ** 2, 0.0))


@torch.no_grad()
def set_input_normalisation(net, tc: np.ndarray) -> None:
    """The input normalisation of a network with an input transform (:class:`models.unet.QuantileUNet`
    ``input_transform``): the mean of the transformed training inputs (:func:`input_statistics`)
    and the scale already in ``net.tb_std`` -- the Tb scale, the reference's when fine-tuning
    (see the module docstring, "the start")."""
    mean, _ = input_statistics(net.input_transform, tc, net.channel_index.cpu().numpy())
    net.set_normalisation(mean, net.tb_std.detach().clone())

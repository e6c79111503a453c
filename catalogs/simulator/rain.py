"""Spatially correlated weather on an orbit-following grid, and its transform to rain.

Each orbit has its own weather (rain evolves within the ≈ 90 min between orbits): a latent
Gaussian field Z on a regular grid that follows the ground track (rows along track, period =
one orbit circumference, so the field closes on itself; columns across track, 1 563 km wide,
spacing ≈ 4.9 km). Z has unit variance and an isotropic power spectrum, the sum of

* a mesoscale part (weight 0.95): P(k) ∝ (k² + k₁²)^-2.25, k₁ = 1/300 km, and
* a convective part (weight 0.05): P(k) ∝ (k² + k₂²)^-1.25 exp(-(k/k_c)²), k₂ = 1/60 km,
  k_c = 1/8 km (flatter: small intense cells),

times exp(-(2π k_y 6.5 km)²) along track (the 13.3 km along-track pixel interval, against
aliasing). After the transform to rain, 1-D spectra of the truth have slopes ≈ -2.5 (across
track, 15-200 km) and ≈ -2.3 (along track, 30-400 km), within the k^-2.5…-3.5 of NOTES.

A second, large-scale field (P ∝ exp(-(k L)²), L = 300 km) built from the *same* white noise
modulates water vapour, so that rain falls where the air is moist.

Storm regimes (what makes a retrieval ambiguous, as in the real world): two more unit-variance
fields of ≈ 100 km scale, from their own white noise, set how much ice and how much cloud liquid
come with a given rain rate (lognormal ratios, log-σ 0.5 and 0.35); and convective cores spread
rain-free ice around them (anvils, 60 % of the core ice smoothed over ≈ 15 km). A pixel's
brightness temperatures therefore do not fix its rain rate; its neighbourhood tells more.

Rain at a pixel (all-pixel quantile q = Φ(Z), climatological wet probability p):
dry if q ≤ 1 - p; otherwise u = (q - (1 - p)) / p is its rank among wet pixels and

    R = f(u; ΔT) · R_max tanh( m exp(σ Φ⁻¹(u)) / R_max ),     R_max = 300 mm/h,

a lognormal of median m and log-spread σ (zero-inflated, heavy-tailed) softly capped, times
the warming factor f of :func:`catalogs.simulator.climate.intensity_factor`. The wet pixels
with u > 1 - conv_frac are convective (the cores of the field), the others stratiform.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft as sfft
from scipy import ndimage, special

from catalogs.simulator import climate
from catalogs.simulator.geometry import ORBIT_CIRCUMFERENCE_KM

NY, NX = 8192, 320
DX_KM = ORBIT_CIRCUMFERENCE_KM / NY  # ≈ 4.886 km
R_MAX = 300.0
LARGE_SCALE_KM = 300.0
MESO_ROLLOFF_KM = 300.0
MESO_EXPONENT = 2.25
CONV_WEIGHT = 0.05
ALONG_SMOOTH_KM = 6.5
REGIME_SCALE_KM = 100.0
ICE_RATIO_SIGMA = 0.5  # log-σ of the ice / rain ratio of a storm regime
LIQUID_RATIO_SIGMA = 0.35  # log-σ of the cloud-liquid / rain ratio
ANVIL_FRACTION = 0.6  # rain-free ice spread around convective cores, as a fraction of the core ice
ANVIL_SPREAD_KM = 15.0  # Gaussian σ of that spread


def _k2():
    ky = sfft.fftfreq(NY, d=DX_KM).astype(np.float64)
    kx = sfft.rfftfreq(NX, d=DX_KM).astype(np.float64)
    return ky[:, None] ** 2 + kx[None, :] ** 2


def _normalised(psd: np.ndarray) -> np.ndarray:
    """Scale a PSD on the rfft half-plane so that the field it filters has unit variance."""
    w = np.full(psd.shape[1], 2.0)
    w[0] = 1.0
    if NX % 2 == 0:
        w[-1] = 1.0
    mean = np.sum(psd * w[None, :]) / (NY * NX)
    return psd / mean


@lru_cache(maxsize=1)
def filters() -> tuple[np.ndarray, np.ndarray]:
    """Amplitude filters (float32, rfft half-plane) of the rain field and the vapour field."""
    k2 = _k2()
    ky = sfft.fftfreq(NY, d=DX_KM)[:, None]
    k1, kk2, kc = 1 / MESO_ROLLOFF_KM, 1 / 60.0, 1 / 8.0
    meso = _normalised((k2 + k1 ** 2) ** -MESO_EXPONENT)
    conv = _normalised((k2 + kk2 ** 2) ** -1.25 * np.exp(-k2 / kc ** 2))
    # pixels are 13.3 km apart along track: average the field over that interval (anti-aliasing)
    along = np.exp(-((2 * np.pi * ky * ALONG_SMOOTH_KM) ** 2))
    rain = np.sqrt(_normalised(((1 - CONV_WEIGHT) * meso + CONV_WEIGHT * conv) * along)).astype(np.float32)
    large = np.sqrt(_normalised(np.exp(-k2 * LARGE_SCALE_KM ** 2) + 1e-30)).astype(np.float32)
    rain.flags.writeable = large.flags.writeable = False  # cached: shared by every call
    return rain, large


@lru_cache(maxsize=1)
def regime_filter() -> np.ndarray:
    """Amplitude filter of the storm-regime fields (P ∝ exp(-(k L)²), L = 100 km)."""
    f = np.sqrt(_normalised(np.exp(-_k2() * REGIME_SCALE_KM ** 2) + 1e-30)).astype(np.float32)
    f.flags.writeable = False
    return f


def regime_fields(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two independent unit-variance ≈ 100 km fields (NY, NX) float32: the ice and the
    cloud-liquid ratio of the storm regime. One FFT: the second field is the first shifted by
    half an orbit (20 000 km apart, ≫ the 100 km correlation length: independent)."""
    w = rng.standard_normal((NY, NX), dtype=np.float32)
    zi = sfft.irfft2(sfft.rfft2(w, workers=1) * regime_filter(), s=(NY, NX), workers=1).astype(np.float32, copy=False)
    return zi, np.roll(zi, NY // 2, axis=0)


def latent_fields(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two unit-variance Gaussian fields (NY, NX) float32: the rain field and a large-scale
    field made from the same white noise."""
    w = rng.standard_normal((NY, NX), dtype=np.float32)
    W = sfft.rfft2(w, workers=1)
    f_rain, f_large = filters()
    z = sfft.irfft2(W * f_rain, s=(NY, NX), workers=1)
    zl = sfft.irfft2(W * f_large, s=(NY, NX), workers=1)
    return z.astype(np.float32, copy=False), zl.astype(np.float32, copy=False)


def sample(field: np.ndarray, s_km: np.ndarray, c_km: np.ndarray) -> np.ndarray:
    """Nearest-cell value of a grid field at orbit-frame coordinates (km)."""
    i = np.rint(s_km / DX_KM).astype(np.int64) % NY
    j = np.rint(c_km / DX_KM).astype(np.int64) + NX // 2
    return field[i, j]


def rain_from_latent(z: np.ndarray, clim: dict, dT: float, *, warming_K: float = 0.0,
                     convective_extreme_pct_per_K: float | None = None):
    """Rain rate (mm/h, float32), convective mask and conditional rank u from latent values.

    ``dT``: the GMST anomaly of the rain's climate (scenario + counterfactual warming).
    ``convective_extreme_pct_per_K`` (a world mechanism, acting on ``warming_K`` only): the heaviest
    convective rain scales at this rate per K of warming instead of the base 7 %/K, i.e. convective
    pixels get the extra factor ((1 + c/100) / 1.07)^(warming_K h(u)), h the ramp of
    :func:`catalogs.simulator.climate.intensity_factor` (1 above the 95th wet percentile)."""
    p = clim["p_wet"]
    q = special.ndtr(z).astype(np.float32)
    u = (q - (1.0 - p)) / p
    wet = u > 0
    uw = np.clip(u, 1e-7, 1 - 1e-7)
    base = clim["median"] * np.exp(clim["sigma"] * special.ndtri(uw).astype(np.float32))
    base = R_MAX * np.tanh(base / R_MAX)
    f = climate.intensity_factor(uw, clim["sigma"], dT).astype(np.float32)
    conv = wet & (u > 1.0 - clim["conv_frac"])
    if convective_extreme_pct_per_K is not None and warming_K != 0.0:
        ratio = (1.0 + convective_extreme_pct_per_K / 100.0) / (1.0 + climate.SCALING_EXTREME_PCT_PER_K / 100.0)
        extra = np.where(conv, ratio ** (float(warming_K) * climate._ramp(uw)), 1.0)
        f = (f * extra).astype(np.float32)
    rain = np.where(wet, base * f, 0.0).astype(np.float32)
    return rain, conv, q


def atmosphere(z, zl, q, rain, conv, clim, land_frac, dT, zi=None, zc=None, spacing_km=None) -> dict:
    """Water vapour, cloud liquid and ice consistent with the rain field (kg m-2).

    ``zi``/``zc``: the storm-regime fields at the pixels (ice and cloud-liquid ratio; None = the
    mean regime); ``spacing_km`` (along, across): the pixel grid, for the anvils (None = no
    anvils)."""
    p = clim["p_wet"]
    wv = clim["wv"] * np.float32(climate.vapour_factor(dT)) * np.exp(0.12 * zl) * (1.0 + 0.1 * (rain > 0))
    p_cloud = np.minimum(0.15 + 3.5 * p, 0.9)
    v = np.clip((q - (1.0 - p_cloud)) / p_cloud, 0.0, 1.0)
    ratio_c = 1.0 if zc is None else np.exp(LIQUID_RATIO_SIGMA * zc - LIQUID_RATIO_SIGMA ** 2 / 2)
    ratio_i = 1.0 if zi is None else np.exp(ICE_RATIO_SIGMA * zi - ICE_RATIO_SIGMA ** 2 / 2)
    clw = 0.25 * v * v + np.where(rain > 0, (0.1 + 0.18 * rain ** 0.6) * ratio_c, 0.0)
    clw = np.minimum(clw, 3.0)
    core = np.where(rain > 0, 0.035 * rain ** 0.95 * (1.0 + 1.5 * conv) * (1.0 + 0.6 * land_frac) * ratio_i, 0.0)
    iwp = 0.02 * v + core
    if spacing_km is not None:
        sig = (ANVIL_SPREAD_KM / spacing_km[0], ANVIL_SPREAD_KM / spacing_km[1])
        iwp = iwp + ANVIL_FRACTION * ndimage.gaussian_filter(np.where(conv, core, 0.0).astype(np.float32), sig,
                                                             mode="nearest", truncate=3.0)
    iwp = np.minimum(iwp, 12.0)
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    return {"wv": f32(wv), "clw": f32(clw), "iwp": f32(iwp)}

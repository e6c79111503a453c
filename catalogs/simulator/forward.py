"""Forward model: geophysical state -> 13 GMI brightness temperatures (equations in
``docs/simulator.md``).

Per channel ν, with μ = cos(52.8°) the slant-path factor, zenith optical depths

    τ_abs = τ_dry(ν) + k_v(ν) V + k_c(ν) L + (1 - ω_r(ν)) τ_r,   τ_r = a_r(ν) R^b_r(ν) H_0
    τ_sca = β_i(ν) I + ω_r(ν) τ_r

(V water vapour, L cloud liquid, I ice water path in kg m-2, R rain rate in mm/h, H_0 the
freezing level height in km, a_r/b_r from ITU-R P.838 converted to Np/km), transmittance
Γ = exp(-τ_abs / μ), an isothermal atmosphere of effective temperature T_a(ν) = T_s - ΔT_a(ν),

    T_em = e T_s Γ + T_a (1 - Γ) + (1 - e) Γ [T_a (1 - Γ) + T_cos Γ]

and a scattering layer on top that replaces part of the upwelling radiance by the cold
radiance scattered into the beam, T_sc(ν):

    T_b = T_em t_s + T_sc (1 - t_s),    t_s = exp(-τ_sca / μ).

The ice that scatters sits above the freezing level: the slant line of sight of a footprint
crosses it ≈ (H_0 + 2 km) tan 52.8° (≈ 8-10 km) back toward the satellite (GMI looks forward,
so "back" is up-track), so the ice field is seen displaced along track (parallax) before the
radiative transfer. Then beam filling (Gaussian footprints of FWHM along × across track per channel, applied to the
Tb field on the swath grid) and Gaussian instrument noise of standard deviation NEDT(ν).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from catalogs.simulator import surface
from catalogs.simulator.geometry import EARTH_INCIDENCE_DEG

MU = np.float32(np.cos(np.radians(EARTH_INCIDENCE_DEG)))
T_COSMIC = 2.73

# channel order: 10.65V 10.65H 18.7V 18.7H 23.8V 36.64V 36.64H 89V 89H 166V 166H 183±3V 183±7V
FREQ_GHZ = np.array([10.65, 10.65, 18.7, 18.7, 23.8, 36.64, 36.64, 89.0, 89.0, 166.0, 166.0, 183.31, 183.31])
#: dry-air (O2) zenith optical depth
TAU_DRY = np.array([0.010, 0.010, 0.014, 0.014, 0.017, 0.037, 0.037, 0.045, 0.045, 0.065, 0.065, 0.10, 0.08], np.float32)
#: water-vapour mass absorption (per kg m-2), zenith
K_V = np.array([0.0004, 0.0004, 0.0017, 0.0017, 0.0055, 0.0021, 0.0021, 0.0065, 0.0065, 0.020, 0.020, 0.14, 0.05], np.float32)
#: cloud-liquid mass absorption (per kg m-2), zenith, near 0 °C
K_C = np.array([0.018, 0.018, 0.058, 0.058, 0.092, 0.21, 0.21, 0.92, 0.92, 1.9, 1.9, 2.0, 2.0], np.float32)
#: rain specific attenuation γ = a R^b (dB/km, ITU-R P.838-like), converted to Np/km below
RAIN_A_DB = np.array([0.0101, 0.0101, 0.060, 0.060, 0.100, 0.250, 0.250, 1.10, 1.10, 1.60, 1.60, 1.70, 1.70])
RAIN_B = np.array([1.26, 1.26, 1.09, 1.09, 1.04, 0.97, 0.97, 0.73, 0.73, 0.66, 0.66, 0.65, 0.65], np.float32)
RAIN_A = (RAIN_A_DB / 4.343).astype(np.float32)
#: single-scattering albedo of rain (fraction of rain extinction that scatters)
OMEGA_RAIN = np.array([0.0, 0.0, 0.01, 0.01, 0.015, 0.04, 0.04, 0.08, 0.08, 0.10, 0.10, 0.10, 0.10], np.float32)
#: ice scattering mass extinction (per kg m-2), zenith
BETA_ICE = np.array([0.0, 0.0, 0.003, 0.003, 0.006, 0.03, 0.03, 0.20, 0.20, 0.38, 0.38, 0.36, 0.38], np.float32)
#: effective temperature of the radiance scattered into the beam (K)
T_SCAT = np.array([120, 120, 110, 110, 110, 100, 100, 85, 85, 85, 85, 90, 90], np.float32)
#: T_s - T_a: how much colder the emitting atmosphere is than the surface (K)
DT_ATM = np.array([12, 12, 12, 12, 12, 13, 13, 14, 14, 18, 18, 45, 30], np.float32)
#: footprint FWHM (km), along track x across track (GMI: 32x19 km at 10 GHz ... 6x4 km at 183)
FOOTPRINT_KM = np.array([(32.1, 19.4), (32.1, 19.4), (18.1, 10.9), (18.1, 10.9), (16.0, 9.7),
                         (15.6, 8.6), (15.6, 8.6), (7.2, 4.4), (7.2, 4.4), (6.3, 4.1), (6.3, 4.1),
                         (5.8, 3.8), (5.8, 3.8)])
#: instrument noise (K), GMI NEDT specification
NEDT = np.array([0.96, 0.96, 0.84, 0.84, 1.05, 0.65, 0.65, 0.57, 0.57, 1.5, 1.5, 1.5, 1.5], np.float32)
N_CH = 13


def clear_and_cloudy_tb(k: int, state: dict, eps: np.ndarray, beta_scale: float = 1.0) -> np.ndarray:
    """Pencil-beam Tb (K) of channel ``k`` (2-D float32) from the geophysical ``state``."""
    ts = state["t_surf"]
    tau_r = RAIN_A[k] * state["rain_pow"][k] * state["freezing_km"]
    tau_abs = TAU_DRY[k] + K_V[k] * state["wv"] + K_C[k] * state["clw"] + (1.0 - OMEGA_RAIN[k]) * tau_r
    gam = np.exp(-tau_abs / MU)
    ta = ts - DT_ATM[k]
    up = ta * (1.0 - gam)
    tb = eps * ts * gam + up + (1.0 - eps) * gam * (up + np.float32(T_COSMIC) * gam)
    tau_s = np.float32(beta_scale) * BETA_ICE[k] * state["iwp"] + OMEGA_RAIN[k] * tau_r
    ts_ = np.exp(-tau_s / MU)
    return (tb * ts_ + T_SCAT[k] * (1.0 - ts_)).astype(np.float32)


ICE_LAYER_ABOVE_FREEZING_KM = 2.0


def parallax(field: np.ndarray, height_km: np.ndarray, along_km: float, first_scan: int = 0) -> np.ndarray:
    """The field as seen along the slant path: ``seen[i, j] = field[i - d, j]`` with
    ``d = height tan(incidence) / along_km`` pixels (linear interpolation, clamped at the first
    scan, so a segment's scans equal the full orbit's). ``first_scan``: the orbit scan of the
    field's first row; positions are computed from the orbit's scan numbers, so the float32
    interpolation weights of a scan do not depend on where its segment starts."""
    n = field.shape[0]
    d = np.asarray(height_km, np.float32) * np.float32(np.tan(np.radians(EARTH_INCIDENCE_DEG)) / along_km)
    a = int(first_scan)
    pos = np.clip(np.arange(a, a + n, dtype=np.float32)[:, None] - d, 0.0, a + n - 1)
    i0_abs = np.floor(pos)
    w = (pos - i0_abs).astype(np.float32)
    i0 = np.clip(i0_abs.astype(np.int64) - a, 0, n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    f0 = np.take_along_axis(field, i0, axis=0)
    f1 = np.take_along_axis(field, i1, axis=0)
    return (f0 * (1 - w) + f1 * w).astype(np.float32)


def footprint_sigma_pixels(along_km: float, across_km: float) -> np.ndarray:
    """Gaussian σ of each channel's footprint in pixels (along, across) on a grid of spacing
    ``along_km`` x ``across_km``."""
    return FOOTPRINT_KM / 2.3548 / np.array([along_km, across_km])


def beam_fill(tb: np.ndarray, sigma_px) -> np.ndarray:
    """Average a pencil-beam Tb field (n, m) over a Gaussian footprint (σ in pixels)."""
    out = ndimage.gaussian_filter1d(tb, sigma_px[0], axis=0, mode="nearest", truncate=3.0)
    return ndimage.gaussian_filter1d(out, sigma_px[1], axis=1, mode="nearest", truncate=3.0)


def brightness_temperatures(state: dict, spacing_km: tuple[float, float], noise: np.ndarray | None,
                            *, beta_scale: float = 1.0, tb_offset=None, first_scan: int = 0) -> np.ndarray:
    """All 13 channels: (n, m, 13) float32 Tb with beam filling and noise.

    ``state``: 2-D float32 fields ``t_surf`` (K), ``wv``, ``clw``, ``iwp`` (kg m-2), ``rain``
    (mm/h), ``freezing_km``, ``land_frac`` (0..1), ``ice``/``snow`` (bool), ``wind`` (m/s),
    ``soil_wet`` (0..1). ``noise``: (n, m, 13) standard normal draws or None (noise-free).
    ``beta_scale`` and ``tb_offset`` (13,) let the "simulated" source use a slightly different
    forward model. ``first_scan``: the orbit scan of the first row (for :func:`parallax`).
    """
    sig = footprint_sigma_pixels(*spacing_km)
    rain = np.maximum(state["rain"], 0.0)
    logr = np.log(np.maximum(rain, 1e-6, dtype=np.float32))
    state = dict(state)
    state["iwp"] = parallax(state["iwp"], state["freezing_km"] + ICE_LAYER_ABOVE_FREEZING_KM, spacing_km[0],
                            first_scan)
    state["rain_pow"] = {b: np.exp(np.float32(b) * logr) * (rain > 0) for b in np.unique(RAIN_B)}
    state["rain_pow"] = [state["rain_pow"][b] for b in RAIN_B]
    n, m = rain.shape
    out = np.empty((n, m, N_CH), np.float32)
    for k in range(N_CH):
        eps = surface.emissivity(k, state["land_frac"], state["ice"], state["snow"], state["wind"], state["soil_wet"])
        tb = beam_fill(clear_and_cloudy_tb(k, state, eps, beta_scale), sig[k])
        if tb_offset is not None:
            tb += np.float32(tb_offset[k])
        if noise is not None:
            tb += NEDT[k] * noise[..., k]
        out[..., k] = tb
    return out

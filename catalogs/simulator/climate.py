"""Climate of the synthetic world: warming scenario, climatology and the scaling of rain.

Warming scenario
----------------
``gmst_anomaly(time)`` is the global-mean surface temperature anomaly (K) relative to
1850-1900, piecewise linear through the knots in :data:`GMST_KNOTS`:

* the observed path, smoothed (no El Niño years): IPCC AR6 WG1 SPM A.1.2 gives 1.09 K for
  2011-2020 (our knots give 1.14); Forster et al. (2024, Indicators of Global Climate Change)
  give a recent rate of ≈ 0.26 K per decade (our knots: 0.24 K per decade 2000-2025);
* then SSP2-4.5 ("middle of the road"), AR6 WG1 Table SPM.1 best estimates: 1.5 K for
  2021-2040, 2.0 K for 2041-2060, 2.7 K for 2081-2100 (our knots: 1.50, 1.93, 2.61).

So the 2050s are ≈ 1.1 K warmer than the 2000s. Outside 1950-2100 the anomaly is held constant.

Scaling of rain and vapour with warming (per K of GMST anomaly ΔT)
-------------------------------------------------------------------
* mean rain rate ×1.02^ΔT              (CMIP6 hydrological sensitivity, Pendergrass 2020)
* high quantiles of rain rate ×1.07^ΔT (Clausius-Clapeyron; AR6 SPM.6 extremes)
* column water vapour ×1.07^ΔT               (Clausius-Clapeyron)
* surface temperature +ΔT everywhere (no polar amplification: keeps the truth simple).

Rain occurrence does not change with warming; the intensity of a wet pixel at conditional
quantile u (its rank among wet pixels of its regime) is multiplied by
``f(u) = f_lo + (f_hi - f_lo) h(u)``, with ``h`` a smooth ramp from 0 (u ≤ 0.7) to 1 (u ≥ 0.95),
``f_hi = 1.07^ΔT`` and ``f_lo`` solved so that the rain-weighted mean of f is exactly
``1.02^ΔT`` for the regime's lognormal (see :func:`intensity_factor`). So every quantile above
the 95th percentile of wet rain (hence the high quantiles of all pixels, since occurrence is
fixed) scales at 7 %/K and the mean at 2 %/K, while light rain gets lighter (≈ -3 to -7 %/K
at ΔT ≈ 1-2 K), as in CMIP models. The scalings are compound (exponential), so they hold between
any two climates: ratio = 1.07^(ΔT2 - ΔT1), whatever the base.
The climatology itself (occurrence, intensity, regime) is the pre-industrial one (ΔT = 0).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import special

SCALING_MEAN_PCT_PER_K = 2.0
SCALING_EXTREME_PCT_PER_K = 7.0
SCALING_VAPOUR_PCT_PER_K = 7.0

#: (year, K above 1850-1900) knots of the scenario; linear in between.
GMST_KNOTS = np.array([
    (1950.0, 0.30), (1970.0, 0.35), (1980.0, 0.50), (1990.0, 0.66), (2000.0, 0.84),
    (2010.0, 1.02), (2015.0, 1.14), (2020.0, 1.26), (2025.0, 1.38), (2030.0, 1.50),
    (2040.0, 1.72), (2050.0, 1.93), (2060.0, 2.12), (2070.0, 2.29), (2080.0, 2.44),
    (2090.0, 2.60), (2100.0, 2.75),
])

_SEC_PER_YEAR = 365.2425 * 86400.0


def decimal_year(time) -> np.ndarray:
    t = np.asarray(time, dtype="datetime64[ns]").astype(np.int64) / 1e9
    return 1970.0 + t / _SEC_PER_YEAR


def day_of_year(time) -> np.ndarray:
    y = decimal_year(time)
    return (y - np.floor(y)) * 365.2425


def gmst_anomaly(time) -> float | np.ndarray:
    """Global-mean surface temperature anomaly (K, relative to 1850-1900) at ``time``."""
    y = decimal_year(time)
    out = np.interp(y, GMST_KNOTS[:, 0], GMST_KNOTS[:, 1])
    return float(out) if np.ndim(out) == 0 else out


# ---------------------------------------------------------------- warming of rain intensity
H_RAMP = (0.7, 0.95)  # conditional wet quantiles where the scaling ramps from f_lo to f_hi


def _ramp(u):
    lo, hi = H_RAMP
    x = np.clip((np.asarray(u, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _rain_weighted_h(sigma: float) -> float:
    """H = E[G h(u)] / E[G] for the lognormal shape G(u) = exp(sigma * Phi^-1(u))."""
    z = np.linspace(-9.0, 9.0, 20001)
    w = np.exp(sigma * z - 0.5 * z * z)
    return float(np.sum(w * _ramp(special.ndtr(z))) / np.sum(w))


_SIGMA_GRID = np.linspace(0.4, 2.0, 81)
_H_GRID = np.array([_rain_weighted_h(s) for s in _SIGMA_GRID])


def intensity_factor(u, sigma, dT) -> np.ndarray:
    """Warming factor of a wet pixel at conditional quantile ``u`` of a lognormal regime of
    log-spread ``sigma``, for a GMST anomaly ``dT`` (K). Exact mean scaling per regime."""
    H = np.interp(sigma, _SIGMA_GRID, _H_GRID)
    f_hi = (1.0 + SCALING_EXTREME_PCT_PER_K / 100.0) ** dT
    f_mean = (1.0 + SCALING_MEAN_PCT_PER_K / 100.0) ** dT
    f_lo = (f_mean - f_hi * H) / (1.0 - H)
    return f_lo + (f_hi - f_lo) * _ramp(u)


def vapour_factor(dT) -> float:
    return (1.0 + SCALING_VAPOUR_PCT_PER_K / 100.0) ** dT


# ---------------------------------------------------------------- climatology (ΔT = 0)
def season_index(doy) -> np.ndarray:
    """+1 in mid January (boreal winter), -1 in mid July."""
    return np.cos(2 * np.pi * (np.asarray(doy) - 15.0) / 365.2425)


def _dlon(lon, lon0: float) -> np.ndarray:
    """Longitude difference ``lon - lon0`` wrapped to [-180, 180) degrees: a pattern centred at
    ``lon0`` is continuous across the antimeridian (``lon - 140`` alone put a 9.4 % jump of rain
    probability at 180°, fixed in raincheck-sim-5)."""
    d = np.asarray(lon, np.float32) - np.float32(lon0)  # unchanged bits where no wrap is needed
    return np.where(d >= 180.0, d - np.float32(360.0), np.where(d < -180.0, d + np.float32(360.0), d))


def climatology(lat, lon, doy, land, hour_utc=None) -> dict:
    """Pre-industrial rain climatology at pixels (float32 arrays, same shape as ``lat``).

    Returns ``p_wet`` (probability that a pixel rains), ``median`` (mm/h, median of wet rates),
    ``sigma`` (log-spread of wet rates), ``conv_frac`` (fraction of wet pixels that are
    convective), ``t_surf`` (K, surface/skin temperature at ΔT = 0), ``wv`` (kg m-2, column
    water vapour at ΔT = 0) and ``freezing_km`` (freezing-level height).

    Pattern: an ITCZ that follows the sun (further over land: monsoons), storm tracks near 50°
    (stronger in winter), dry subtropics (driest over the eastern ocean basins and over land),
    a moist Indo-Pacific warm pool, an afternoon maximum of convection over land.
    """
    lat = np.asarray(lat, dtype=np.float32)
    lon = np.asarray(lon, dtype=np.float32)
    land = np.asarray(land, dtype=np.float32)  # land fraction 0..1
    s = np.float32(season_index(doy))
    s = np.broadcast_to(s, lat.shape) if np.ndim(s) else s
    alat = np.abs(lat)
    rlon = np.radians(lon)

    itcz = (6.0 - 4.0 * s) * (1 - land) + (-12.0 * s) * land
    p_itcz = 0.10 * np.exp(-(((lat - itcz) / 10.0) ** 2))
    p_storm = 0.10 * (np.exp(-(((lat - 50.0) / 11.0) ** 2)) * (1.0 + 0.35 * s)
                      + np.exp(-(((lat + 52.0) / 11.0) ** 2)) * (1.0 - 0.15 * s))
    p = 0.03 + p_itcz + p_storm
    # dry subtropics, driest on the eastern side of ocean basins (cold upwelling)
    east_basin = np.exp(-((_dlon(lon, -110.0) / 30.0) ** 2)) + np.exp(-((_dlon(lon, -10.0) / 25.0) ** 2)) \
        + np.exp(-((_dlon(lon, 100.0) / 15.0) ** 2)) * (lat < 0)
    dry = 1.0 - (0.40 + 0.3 * np.minimum(east_basin, 1.0) * (1 - land) + 0.25 * land) \
        * np.exp(-(((alat - 24.0) / 8.0) ** 2))
    warm_pool = 1.0 + 0.35 * np.exp(-((_dlon(lon, 140.0) / 35.0) ** 2) - (lat / 15.0) ** 2)
    polar = np.where(alat > 60.0, np.exp(-((alat - 60.0) / 12.0)), 1.0)
    p = p * dry * warm_pool * polar
    if hour_utc is not None:
        lst = (np.asarray(hour_utc, np.float32) + lon / 15.0) % 24.0
        p = p * (1.0 + 0.35 * land * np.cos(2 * np.pi * (lst - 16.0) / 24.0))
    p = np.clip(p, 0.002, 0.5).astype(np.float32)

    # intensity: heavier in the tropics and over land convection; lighter at high latitude
    tropical = np.exp(-((lat / 22.0) ** 2))
    midlat = np.exp(-(((alat - 45.0) / 12.0) ** 2))
    median = 1.2 * (0.5 + 0.6 * tropical + 0.35 * midlat + 0.25 * land * tropical) * np.where(alat > 55, np.exp(-(alat - 55) / 20), 1)
    sigma = 0.95 + 0.25 * tropical + 0.1 * land
    conv_frac = np.clip(0.12 + 0.35 * tropical + 0.2 * land, 0.05, 0.8)

    # surface temperature (K) and water vapour, pre-industrial
    lat_eff = lat + 8.0 * s * (1 - land) * 0 + 5.0 * (-s)  # thermal equator follows the sun
    sst = 271.5 + 30.0 * np.cos(np.radians(np.clip(lat_eff, -90, 90))) ** 2.2
    sst = np.maximum(sst, 271.4)
    lst_amp = 18.0 * np.clip((alat - 15.0) / 50.0, 0, 1)  # continental seasonality
    t_land = 300.0 - 42.0 * np.sin(np.radians(alat)) ** 2 - lst_amp * np.sign(lat) * s
    t_land = t_land + 7.0 * np.exp(-((_dlon(lon, 10.0) / 25.0) ** 2) - ((lat - 52.0) / 10.0) ** 2)  # mild W Europe
    t_surf = (1 - land) * sst + land * t_land
    wv = 8.0 * np.exp(0.064 * (t_surf - 273.15)) * (1.0 - 0.35 * land * (1 - tropical))
    freezing_km = np.clip((t_surf - 273.15) / 6.0 + 0.3, 0.3, 5.0)
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    return {"p_wet": p, "median": f32(median), "sigma": f32(sigma), "conv_frac": f32(conv_frac),
            "t_surf": f32(t_surf), "wv": f32(wv), "freezing_km": f32(freezing_km)}


# ---------------------------------------------------------------- freezing level on a moist adiabat
#: surface relative humidity of the lifted parcel (tropical oceans: ≈ 75-80 %)
PARCEL_RH = 0.8
_G, _RD, _CP, _LV, _EPS = 9.81, 287.04, 1005.7, 2.501e6, 0.622


def _saturation_vapour_pressure(t):
    """Pa, over water (Bolton 1980)."""
    return 611.2 * np.exp(17.67 * (t - 273.15) / (t - 29.65))


@lru_cache(maxsize=1)
def _moist_adiabat_table() -> tuple[np.ndarray, np.ndarray]:
    """Height (km) of the 0 °C level of a parcel lifted from the surface (1013.25 hPa, relative
    humidity :data:`PARCEL_RH`): dry adiabat to the lifting condensation level, then the
    pseudo-adiabat dT/dz = -g (1 + L r / (R_d T)) / (c_p + L² r ε / (R_d T²)), integrated in 5 m
    steps for surface temperatures 274-315 K at once."""
    ts = np.arange(274.0, 315.01, 0.5)
    # dew point from the relative humidity (inverse of Bolton's formula), lifting condensation level
    e = PARCEL_RH * _saturation_vapour_pressure(ts)
    x = np.log(e / 611.2)
    td = (17.67 * 273.15 - 29.65 * x) / (17.67 - x)
    z_lcl = 125.0 * (ts - td)  # m (Espy)
    t, p, z = ts.copy(), np.full_like(ts, 101325.0), np.zeros_like(ts)
    height = np.full_like(ts, np.nan)
    dz = 5.0
    while np.isnan(height).any():
        moist = z >= z_lcl
        es = _saturation_vapour_pressure(t)
        r = _EPS * es / np.maximum(p - es, 1.0)
        gm = _G * (1 + _LV * r / (_RD * t)) / (_CP + _LV * _LV * r * _EPS / (_RD * t * t))
        lapse = np.where(moist, gm, _G / _CP)
        t_new = t - lapse * dz
        crossed = np.isnan(height) & (t_new <= 273.15)
        height[crossed] = (z[crossed] + dz * (t[crossed] - 273.15) / (t[crossed] - t_new[crossed])) / 1000.0
        p = p - p * _G / (_RD * t) * dz
        t, z = t_new, z + dz
    return ts, height


def moist_adiabat_freezing_km(t_surf) -> np.ndarray:
    """Height (km) of the 0 °C level above a surface at ``t_surf`` (K) on a moist adiabat
    (:func:`_moist_adiabat_table`, linear between 0.5 K steps; held at the ends of 274-315 K)."""
    ts, h = _moist_adiabat_table()
    return np.interp(np.asarray(t_surf, np.float64), ts, h)

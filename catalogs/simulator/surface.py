"""Surfaces of the synthetic world: land fraction, sea ice, snow, and their emissivities.

Land/ocean come from ``catalogs/assets/landfrac_0p1deg.npz`` (Natural Earth 1:50m land minus
lakes, rasterised offline by :mod:`catalogs.simulator.make_landmask`). The raster is smoothed
once (Gaussian, σ = 1 cell ≈ 11 km) so that a pixel's land fraction is a footprint average.

Sea ice and snow are climatological (documented limitations: no longitude structure beyond an
Atlantic-sector bulge, no change with warming):
* Arctic ice edge at 70° - 8° s_ice (s_ice = +1 in mid March, -1 in mid September), 8° further
  north between 30°W and 60°E, 6° further south in the Bering/Okhotsk and Hudson/Labrador
  sectors; Antarctic ice edge at -(63° + 5° s_ice) (largest in September).
* snow on land where the climatological surface temperature plus the warming is below 271 K
  (so snow cover retreats as the world warms).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

ASSET = Path(__file__).resolve().parents[1] / "assets" / "landfrac_0p1deg.npz"

OCEAN, LAND, COAST, SEA_ICE, SNOW = 0, 1, 2, 3, 4

# Emissivities at the GMI incidence (52.8°) for the 13 channels, in schema.CHANNELS order:
# 10.65V 10.65H 18.7V 18.7H 23.8V 36.64V 36.64H 89V 89H 166V 166H 183±3V 183±7V
E_OCEAN = np.array([0.555, 0.290, 0.590, 0.315, 0.610, 0.640, 0.350, 0.740, 0.480, 0.830, 0.640, 0.840, 0.840], np.float32)
#: d e / d(wind speed), per m/s, for ocean (foam and roughness raise H more than V)
E_OCEAN_WIND = np.array([0.0002, 0.0025, 0.0003, 0.0028, 0.0003, 0.0004, 0.0030, 0.0004, 0.0030, 0.0003, 0.0025, 0.0003, 0.0003], np.float32)
E_LAND = np.array([0.950, 0.890, 0.950, 0.900, 0.950, 0.945, 0.910, 0.935, 0.910, 0.930, 0.910, 0.930, 0.930], np.float32)
#: soil-moisture sensitivity of land emissivity (wet soil is less emissive, H more than V)
E_LAND_WET = np.array([0.06, 0.12, 0.05, 0.10, 0.045, 0.04, 0.08, 0.025, 0.05, 0.015, 0.03, 0.015, 0.015], np.float32)
E_SNOW = np.array([0.93, 0.85, 0.90, 0.82, 0.88, 0.82, 0.75, 0.72, 0.66, 0.70, 0.65, 0.72, 0.72], np.float32)
E_SEA_ICE = np.array([0.95, 0.88, 0.95, 0.89, 0.95, 0.93, 0.88, 0.87, 0.82, 0.82, 0.78, 0.82, 0.82], np.float32)


@lru_cache(maxsize=1)
def land_fraction_raster() -> tuple[np.ndarray, float]:
    """Smoothed land fraction (float32, 0..1) on the asset grid and its resolution (deg)."""
    with np.load(ASSET) as z:
        raw = z["land_percent"].astype(np.float32) / 100.0
        res = float(z["res_deg"])
    sm = np.clip(ndimage.gaussian_filter(raw, sigma=1.0, mode=("nearest", "wrap"), truncate=3.0), 0.0, 1.0)
    sm = sm.astype(np.float32)
    sm.flags.writeable = False  # cached: shared by every call
    return sm, res


def land_fraction(lat, lon) -> np.ndarray:
    """Land fraction (0..1) at points, nearest cell of the smoothed raster."""
    frac, res = land_fraction_raster()
    ny, nx = frac.shape
    i = np.clip(((90.0 - np.asarray(lat)) / res).astype(np.int64), 0, ny - 1)
    j = (((np.asarray(lon) + 180.0) / res).astype(np.int64)) % nx
    return frac[i, j]


def sea_ice(lat, lon, doy) -> np.ndarray:
    s_ice = np.cos(2 * np.pi * (np.asarray(doy) - 75.0) / 365.2425)
    lat = np.asarray(lat)
    lon = np.asarray(lon)
    atlantic = (lon > -30.0) & (lon < 60.0)  # Gulf Stream: ice-free further north
    cold_seas = ((lon > 140.0) | (lon < -160.0)) | ((lon > -95.0) & (lon < -55.0))  # Bering/Okhotsk, Hudson/Labrador
    north_edge = 70.0 - 8.0 * s_ice + 8.0 * atlantic - 6.0 * cold_seas
    south_edge = -(63.0 + 5.0 * s_ice)  # Antarctic: largest in September (s_ice = -1)
    return (lat > north_edge) | (lat < south_edge)


def classify(land_frac, ice, snow) -> np.ndarray:
    """CF surface_type flags: ocean, land, coast (10-90 % land), sea_ice, snow."""
    st = np.full(np.shape(land_frac), OCEAN, np.int8)
    st[land_frac >= 0.9] = LAND
    st[(land_frac > 0.1) & (land_frac < 0.9)] = COAST
    st[(land_frac <= 0.1) & ice] = SEA_ICE
    st[snow & (land_frac >= 0.5)] = SNOW
    return st


def emissivity(k: int, land_frac, ice, snow, wind, soil_wet) -> np.ndarray:
    """Emissivity of channel ``k`` (2-D float32): the footprint mix of water and land parts."""
    water = np.where(ice, E_SEA_ICE[k], E_OCEAN[k] + E_OCEAN_WIND[k] * (wind - 7.0))
    ground = np.where(snow, E_SNOW[k], E_LAND[k] - E_LAND_WET[k] * soil_wet)
    return (land_frac * ground + (1.0 - land_frac) * water).astype(np.float32)

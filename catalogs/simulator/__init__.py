"""The synthetic GMI observing system: one orbit of a warming world with known truth.

``simulate_orbit(orbit, world_seed, source)`` returns a canonical swath (``catalogs.schema``),
bit-for-bit identical on every call. See ``docs/simulator.md`` for the model and its equations.

Sources
-------
* ``"observed"``: the synthetic world along the warming scenario of
  :func:`catalogs.simulator.climate.gmst_anomaly`, seen by the nominal forward model.
* ``"simulated"``: "model runs" of warmer climates for hybrid training, pseudo-global-warming
  style: the same orbit and season, the GMST anomaly raised by ``climate_offset_K`` (+2 K on even
  orbits, +4 K on odd orbits unless given), independent weather, and a slightly different
  forward model (ice scattering ×1.2 and a systematic per-channel Tb offset
  :data:`SIMULATED_TB_OFFSET_K` of a few K).

Determinism: every random draw comes from ``np.random.default_rng([world_seed, orbit mod 2**32,
purpose])`` (orbit numbers before the 2014 epoch are negative; mod 2**32 keeps them distinct),
purposes offset by 100 for the simulated source. ``scan_start``/``n_scans`` give a scene inside the
orbit, identical to the same scans of the full orbit.

Counterfactual climates: ``warming_K`` simulates the same weather in a climate that much warmer
(K of GMST) than the orbit's own, by the rules of a world preset ``world``
(:mod:`catalogs.simulator.worlds`: ``today``, ``stationary``, ``published``, ...); every preset at
zero warming is today's output bit for bit.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from catalogs import schema
from catalogs.simulator import climate, forward, geometry, rain as rainmod, surface
from catalogs.simulator.climate import SCALING_EXTREME_PCT_PER_K, SCALING_MEAN_PCT_PER_K, gmst_anomaly
from catalogs.simulator.geometry import N_PIXELS, N_SCANS
from catalogs.simulator.worlds import TODAY, WORLDS, World, check_warming, get_world

__all__ = ["simulate_orbit", "simulate_truth", "geometry", "climate", "SOURCES", "REFERENCE_PIXELS", "PRODUCT_VERSION",
           "TRUTH_VERSION", "WORLDS", "World", "get_world"]

SOURCES = ("observed", "simulated")
PLATFORM = "SYN-GPM"
#: version of the simulated product: bump whenever ANY simulated data change (Tb, truth or reference).
#: Everything computed from the Tb (every model's retrieval) is tied to it.
PRODUCT_VERSION = "raincheck-sim-5"
#: version of the rain truth (``surface_precip_truth``) and the radar-like reference
#: (``surface_precip``) alone: the PRODUCT_VERSION in which they last changed. Bump it (to the new
#: PRODUCT_VERSION) only when the truth or the reference change; a change of the Tb alone (forward
#: model, instrument noise, ...) bumps PRODUCT_VERSION only. The climatology cube records it as the
#: identity of its truth/reference sources, so a Tb-only change does not invalidate them.
#: sim-3 → sim-4 changed the Tb only (truth and reference are bit-identical); sim-4 → sim-5 made the
#: climatology's longitude patterns continuous across the antimeridian (truth, reference and Tb change
#: where those patterns reach across 180°: the warm pool's rain probability by up to 9.4 %).
TRUTH_VERSION = "raincheck-sim-5"
#: the radar-like reference strip: 49 central pixels (≈ 245 km), like the DPR Ku swath
REFERENCE_PIXELS = slice(N_PIXELS // 2 - 24, N_PIXELS // 2 + 25)
REFERENCE_MIN_RATE = 0.2  # mm/h: minimum detectable rate of the reference
REFERENCE_ERROR_SIGMA = 0.15  # multiplicative lognormal error of the reference (log-space σ)
SIMULATED_OFFSETS_K = (2.0, 4.0)
SIMULATED_TB_OFFSET_K = np.array([2.0, 2.5, 1.5, 2.0, 1.0, -1.0, -1.5, -2.5, -3.0, -3.0, -3.0, -2.0, -2.0], np.float32)
SIMULATED_BETA_SCALE = 1.2
#: pixel spacing (along, across track) in km on the swath grid
SPACING_KM = (geometry.R_EARTH_KM * 2 * np.pi / N_SCANS, geometry.SCAN_RADIUS_KM * np.radians(140.0) / (N_PIXELS - 1))
_MARGIN_SCANS = 8  # computed beyond a segment so beam filling at its end equals the full orbit's

# purposes of the random streams
_LATENT, _INSTRUMENT, _REFERENCE, _SURFACE, _REGIME = 0, 1, 2, 3, 4


def _rng(world_seed: int, orbit: int, purpose: int) -> np.random.Generator:
    if world_seed < 0:
        raise ValueError(f"world_seed must be >= 0, got {world_seed}")
    return np.random.default_rng([int(world_seed), int(orbit) % 2**32, int(purpose)])


def _check(orbit: int, source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")
    lo, hi = geometry.ORBIT_RANGE
    if not lo <= int(orbit) <= hi:
        raise ValueError(f"orbit {orbit} outside the synthetic record {lo}..{hi} (1998-2060)")


def climate_offset(orbit: int, source: str, climate_offset_K: float | None = None) -> float:
    if source == "observed":
        if climate_offset_K not in (None, 0, 0.0):
            raise ValueError("climate_offset_K applies to the simulated source only")
        return 0.0
    if climate_offset_K is not None:
        return float(climate_offset_K)
    return SIMULATED_OFFSETS_K[int(orbit) % 2]


def orbit_gmst_anomaly(orbit: int, source: str = "observed", climate_offset_K: float | None = None, *,
                       offset_K: float | None = None) -> float:
    """The ``gmst_anomaly_K`` of ``orbit``: the scenario's GMST anomaly (K) at the orbit's middle
    time plus the source's climate offset (``offset_K``: an already resolved offset)."""
    t_mid = geometry.orbit_start_time(int(orbit)) + np.timedelta64(int(geometry.PERIOD_S * 5e8), "ns")
    off = climate_offset(orbit, source, climate_offset_K) if offset_K is None else float(offset_K)
    return float(gmst_anomaly(t_mid)) + off


def climate_at(geo: dict, climatology=None):
    """Day of year and UTC hour (per scan, as columns), land fraction and the climatology at the
    pixels of ``geo`` (:func:`geometry.swath_geometry`): everything the simulation reads from the
    climate before the weather. ``climatology``: another climatology function (e.g. an older
    version's, to test whether a segment's inputs changed)."""
    lat, lon, time = geo["lat"], geo["lon"], geo["time"]
    doy = climate.day_of_year(time)[:, None]
    hour = ((time - time.astype("datetime64[D]")) / np.timedelta64(1, "h"))[:, None]
    lf = surface.land_fraction(lat, lon)
    return doy, hour, lf, (climatology or climate.climatology)(lat, lon, doy, lf, hour_utc=hour)


def _state(orbit: int, world_seed: int, source: str, first: int, stop: int, offset_K: float,
           base_override: float | None = None, *, world: World = TODAY, warming_K: float = 0.0):
    """Geometry, surface and geophysical truth of scans ``first .. stop - 1``.

    The climate: ``base`` = the orbit's scenario GMST anomaly plus the source's offset (or
    ``base_override``); the rain's climate is ``base + warming_K``; the environment's (surface
    temperature, vapour, freezing level, snow) is the same if the world's environment warms, else
    ``base``. Returns ``geo, state, stype, dT_rain, dT_env``."""
    purpose0 = 0 if source == "observed" else 100
    geo = geometry.swath_geometry(orbit, stop - first, first_scan=first)
    lat, lon = geo["lat"], geo["lon"]
    base = orbit_gmst_anomaly(orbit, offset_K=offset_K) if base_override is None else float(base_override)
    dT = base + warming_K if warming_K != 0.0 else base
    dT_env = dT if world.environment_warms else base
    doy, hour, lf, clim = climate_at(geo)
    z_grid, zl_grid = rainmod.latent_fields(_rng(world_seed, orbit, purpose0 + _LATENT))
    z = rainmod.sample(z_grid, geo["s_km"], geo["c_km"])
    zl = rainmod.sample(zl_grid, geo["s_km"], geo["c_km"])
    rain, conv, q = rainmod.rain_from_latent(z, clim, dT, warming_K=warming_K,
                                             convective_extreme_pct_per_K=world.convective_extreme_pct_per_K)
    zi_grid, zc_grid = rainmod.regime_fields(_rng(world_seed, orbit, purpose0 + _REGIME))
    zi = rainmod.sample(zi_grid, geo["s_km"], geo["c_km"])
    zc = rainmod.sample(zc_grid, geo["s_km"], geo["c_km"])
    atm = rainmod.atmosphere(z, zl, q, rain, conv, clim, lf, dT_env, zi, zc, SPACING_KM)

    ice = surface.sea_ice(lat, lon, doy) & (lf < 0.5)
    snow = (clim["t_surf"] + np.float32(dT_env) < 271.0) & (lf >= 0.5)
    stype = surface.classify(lf, ice, snow)
    lst = (hour + lon / 15.0) % 24.0
    t_surf = clim["t_surf"] + np.float32(dT_env) + (lf * 8.0 * np.cos(2 * np.pi * (lst - 14.0) / 24.0)).astype(np.float32)
    t_surf = np.where(ice | snow, np.minimum(t_surf, 271.0), t_surf)
    wind = np.clip(7.0 + 3.0 * np.roll(zl, 37, axis=1) + 2.0 * conv, 0.0, 25.0)
    soil_wet = np.clip(0.3 + 0.2 * zl + 0.5 * (rain > 0), 0.0, 1.0)
    if world.freezing_level_rule == "lapse_rate" or warming_K == 0.0 or dT_env == base:
        freezing_km = clim["freezing_km"] + np.float32(dT_env / 6.0)
    elif world.freezing_level_rule == "moist_adiabat":
        # the scenario climate's freezing level, raised by the warming along a moist adiabat over a warm surface
        t0 = clim["t_surf"].astype(np.float64) + base
        rise = np.where(t0 >= 274.0, climate.moist_adiabat_freezing_km(t0 + warming_K) - climate.moist_adiabat_freezing_km(t0),
                        warming_K / 6.0)
        freezing_km = (clim["freezing_km"] + np.float32(base / 6.0) + rise.astype(np.float32)).astype(np.float32)
    else:
        raise ValueError(f"unknown freezing_level_rule {world.freezing_level_rule!r} of world {world.name!r}")
    state = {"t_surf": t_surf, "freezing_km": freezing_km, "land_frac": lf,
             "ice": ice, "snow": snow, "wind": wind.astype(np.float32), "soil_wet": soil_wet.astype(np.float32),
             "rain": rain, "conv": conv, "wet_rank": np.where(rain > 0, (q - (1.0 - clim["p_wet"])) / clim["p_wet"],
                                                          np.float32(np.nan)).astype(np.float32), **atm}
    return geo, state, stype, dT, dT_env


def _segment(scan_start, n_scans) -> tuple[int, int]:
    """The scans [first, stop) asked for, checked."""
    if isinstance(scan_start, bool) or not isinstance(scan_start, (int, np.integer)):
        raise ValueError(f"scan_start must be an integer scan index in 0..{N_SCANS - 1}, got {scan_start!r}")
    first = int(scan_start)
    if not 0 <= first < N_SCANS:
        raise ValueError(f"scan_start {first} outside the orbit's scans 0..{N_SCANS - 1}")
    n = N_SCANS - first if n_scans is None else int(min(max(int(n_scans), 1), N_SCANS - first))
    return first, first + n


def _resolve(world, warming_K) -> tuple[World, float]:
    return get_world(world), check_warming(warming_K)


def simulate_truth(orbit: int, world_seed: int = 0, source: str = "observed", *, n_scans: int | None = None,
                   scan_start: int = 0, warming_K: float = 0.0, world: str | World = "today",
                   climate_offset_K: float | None = None, gmst_anomaly_K: float | None = None) -> dict:
    """Only the truth of :func:`simulate_orbit` (no forward model, ≈ 2x faster): a dict of
    numpy arrays ``lat``, ``lon``, ``time``, ``rain`` (mm/h), ``conv`` (bool), ``wet_rank`` (the
    conditional rank u of a wet pixel among the wet pixels of its regime, 0..1; NaN where dry), ``wv``, ``clw``,
    ``iwp`` (kg m-2), ``t_surf`` (K), ``surface_type``, the scalars ``gmst_anomaly_K`` (the rain's
    climate), ``scene_gmst_anomaly_K`` (the environment's), ``warming_K`` and ``world``/``world_version``.
    Identical to the orbit's truth (same scans, same world and warming).

    ``gmst_anomaly_K`` (counterfactual): the same weather (same random draws) in a climate of
    this GMST anomaly instead of the scenario's (all of it: rain and environment), e.g. to isolate
    the forced change; ``warming_K`` then adds to it by the world's rules."""
    _check(orbit, source)
    w, warming = _resolve(world, warming_K)
    first, stop = _segment(scan_start, n_scans)
    a, b = max(0, first - _MARGIN_SCANS), min(N_SCANS, stop + _MARGIN_SCANS)
    off = climate_offset(orbit, source, climate_offset_K)
    geo, st, stype, dT, dT_env = _state(orbit, world_seed, source, a, b, off, gmst_anomaly_K, world=w, warming_K=warming)
    cut = slice(first - a, stop - a)
    return {"lat": geo["lat"][cut], "lon": geo["lon"][cut], "time": geo["time"][cut], "rain": st["rain"][cut],
            "conv": st["conv"][cut], "wet_rank": st["wet_rank"][cut], "wv": st["wv"][cut], "clw": st["clw"][cut], "iwp": st["iwp"][cut],
            "t_surf": st["t_surf"][cut], "surface_type": stype[cut], "gmst_anomaly_K": dT,
            "scene_gmst_anomaly_K": dT_env, "warming_K": warming, "world": w.name, "world_version": w.version}


def simulate_orbit(orbit: int, world_seed: int = 0, source: str = "observed", *, n_scans: int | None = None,
                   scan_start: int = 0, warming_K: float = 0.0, world: str | World = "today",
                   climate_offset_K: float | None = None) -> xr.Dataset:
    """One synthetic orbit (or its scans ``scan_start .. scan_start + n_scans - 1``) as a canonical swath.

    Variables: ``Tc`` (13 channels, K), ``surface_precip`` (reference on the central 49-pixel
    strip, NaN elsewhere), ``surface_precip_truth``, ``water_vapour`` (truth, kg m-2),
    ``surface_type``, ``quality_flag``; coords lat/lon/time. Attributes carry the truth:
    ``world_seed``, ``gmst_anomaly_K`` (the rain's climate: scenario + warming),
    ``scene_gmst_anomaly_K`` (the climate the Tb were simulated in), ``world``, ``world_version``,
    ``warming_K``, ``scaling_mean_pct_per_K``, ``scaling_extreme_pct_per_K`` and, for the simulated
    source, ``climate_offset_K`` and ``tb_offset_K``.

    ``warming_K`` (K of GMST, in [-3, 8]): the same weather in a climate this much warmer than the
    orbit's own, by the rules of the world preset ``world`` (:mod:`catalogs.simulator.worlds`).
    A segment's scans equal the same scans of the full orbit (margins are computed on both sides).
    """
    _check(orbit, source)
    w, warming = _resolve(world, warming_K)
    first, stop = _segment(scan_start, n_scans)
    n = stop - first
    a, b = max(0, first - _MARGIN_SCANS), min(N_SCANS, stop + _MARGIN_SCANS)
    off = climate_offset(orbit, source, climate_offset_K)
    geo, st, stype, dT, dT_env = _state(orbit, world_seed, source, a, b, off, world=w, warming_K=warming)
    purpose0 = 0 if source == "observed" else 100
    cut = slice(first - a, stop - a)

    # the random draws of scans 0 .. b-1 (a stream's prefix does not depend on its length), then the segment's
    noise = _rng(world_seed, orbit, purpose0 + _INSTRUMENT).standard_normal((b, N_PIXELS, forward.N_CH), dtype=np.float32)[a:]
    sim = source == "simulated"
    tc = forward.brightness_temperatures(st, SPACING_KM, noise, beta_scale=SIMULATED_BETA_SCALE if sim else 1.0,
                                         tb_offset=SIMULATED_TB_OFFSET_K if sim else None, first_scan=a)[cut]
    truth = st["rain"][cut]
    err = _rng(world_seed, orbit, purpose0 + _REFERENCE).standard_normal((b, N_PIXELS), dtype=np.float32)[first:stop]
    ref = truth * np.exp(np.float32(REFERENCE_ERROR_SIGMA) * err - np.float32(REFERENCE_ERROR_SIGMA ** 2 / 2))
    ref = np.where(ref < REFERENCE_MIN_RATE, np.float32(0.0), ref)
    ref_full = np.full_like(truth, np.nan)
    ref_full[:, REFERENCE_PIXELS] = ref[:, REFERENCE_PIXELS]

    attrs = {
        "world_seed": int(world_seed),
        "gmst_anomaly_K": float(dT),
        "scene_gmst_anomaly_K": float(dT_env),
        "warming_K": float(warming),
        "world": w.name,
        "world_version": w.version,
        "scaling_mean_pct_per_K": float(SCALING_MEAN_PCT_PER_K),
        "scaling_extreme_pct_per_K": float(SCALING_EXTREME_PCT_PER_K),
        "scaling_vapour_pct_per_K": float(climate.SCALING_VAPOUR_PCT_PER_K),
        "reference_min_rate_mm_h": REFERENCE_MIN_RATE,
        "reference_pixels": f"{REFERENCE_PIXELS.start}..{REFERENCE_PIXELS.stop - 1}",
        "simulator": "catalogs.simulator (docs/simulator.md)",
    }
    if first or n < N_SCANS:
        attrs["scan_start"] = int(first)
    if sim:
        attrs["climate_offset_K"] = float(off)
        attrs["tb_offset_K"] = SIMULATED_TB_OFFSET_K.astype(np.float64)
        attrs["ice_scattering_scale"] = SIMULATED_BETA_SCALE
    ds = schema.make_swath(
        tc=tc, lat=geo["lat"][cut], lon=geo["lon"][cut], time=geo["time"][cut], surface_type=stype[cut],
        orbit_number=int(orbit), source=f"synthetic-{source}", surface_precip=ref_full,
        surface_precip_truth=truth, platform=PLATFORM, product_version=PRODUCT_VERSION, attrs=attrs)
    ds["water_vapour"] = (("along_track", "cross_track"), st["wv"][cut], {
        "units": "kg m-2", "long_name": "total column water vapour (truth)",
        "standard_name": "atmosphere_mass_content_of_water_vapor"})
    return ds

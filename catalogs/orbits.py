"""The orbit index: which orbits crossed a region during a period.

Synthetic orbits come from the simulator's orbit geometry (exact ground tracks, widened to the
swath); real orbits from granule file names (times) and, for a region, the granules' own
geolocation. A region is a lat/lon box (``(lon0, lat0, lon1, lat1)``, ``lon0 > lon1`` crossing the
antimeridian) or any ``mask(lat, lon) -> bool`` function (e.g. an AR6 region from
:mod:`evaluation.regions`, resolved by the caller: this layer does not import evaluation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import numpy as np
import pandas as pd

EARTH_RADIUS_KM = 6371.0
MaskFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: Track points per orbit and across-swath samples used to test whether an orbit saw a region.
TRACK_POINTS = 180
ACROSS_SAMPLES = 5
#: Longest period answered at once (the synthetic record has ~5,600 orbits a year).
MAX_ORBITS = 400_000


def bbox_mask(bbox: tuple[float, float, float, float]) -> MaskFn:
    """Mask function of a lon/lat box; ``lon0 > lon1`` means the box crosses the antimeridian."""
    lon0, lat0, lon1, lat1 = (float(v) for v in bbox)
    if not (-90 <= lat0 < lat1 <= 90):
        raise ValueError(f"invalid box latitudes {lat0}..{lat1}: need -90 <= lat0 < lat1 <= 90")
    for v in (lon0, lon1):
        if not -180 <= v <= 360:
            raise ValueError(f"invalid box longitude {v}: need -180..360")
    lon0 = (lon0 + 180) % 360 - 180
    lon1 = (lon1 + 180) % 360 - 180 if lon1 != 180 else 180.0

    def mask(lat, lon):
        lon = (np.asarray(lon) + 180) % 360 - 180
        inlat = (lat >= lat0) & (lat <= lat1)
        if lon0 <= lon1:
            return inlat & (lon >= lon0) & (lon <= lon1)
        return inlat & ((lon >= lon0) | (lon <= lon1))

    return mask


def _to_xyz(lat, lon):
    la, lo = np.radians(lat), np.radians(lon)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def _to_latlon(xyz):
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    return np.degrees(np.arcsin(np.clip(z, -1, 1))), np.degrees(np.arctan2(y, x))


def swath_points(lat: np.ndarray, lon: np.ndarray, half_width_km: float, n_across: int = ACROSS_SAMPLES):
    """Widen ground tracks (..., n) to points across the swath (..., n, n_across) on the sphere."""
    p = _to_xyz(lat, lon)
    v = np.gradient(p, axis=-2)
    across = np.cross(p, v)
    across /= np.linalg.norm(across, axis=-1, keepdims=True) + 1e-12
    a = half_width_km / EARTH_RADIUS_KM * np.linspace(-1, 1, n_across)
    pts = np.cos(a)[:, None] * p[..., None, :] + np.sin(a)[:, None] * across[..., None, :]
    return _to_latlon(pts)


def synthetic_orbits(
    start, end, *, bbox: Optional[tuple] = None, mask: Optional[MaskFn] = None,
    region_name: str | None = None,
) -> pd.DataFrame:
    """Synthetic orbits whose swath touched the region between ``start`` and ``end``.

    Returns one row per orbit: ``orbit``, ``start_time``, ``end_time``, ``coverage`` (fraction of
    the sampled swath points inside the region; 1 for a global query).
    """
    from catalogs.simulator import geometry as geo

    start, end = pd.Timestamp(start), pd.Timestamp(end)
    if pd.isna(start) or pd.isna(end):
        raise ValueError("start and end of the period are required")
    if end <= start:
        raise ValueError(f"empty period: end {end} is not after start {start}")
    if bbox is not None and mask is not None:
        raise ValueError("give a box or a mask, not both")
    if bbox is not None:
        mask = bbox_mask(bbox)
    lo, hi = geo.ORBIT_RANGE
    o0 = int(geo.orbit_at_time(np.datetime64(start.to_datetime64(), "ns")))
    o1 = int(geo.orbit_at_time(np.datetime64(end.to_datetime64(), "ns")))
    o0, o1 = max(o0, lo), min(o1, hi)
    if o1 < o0:
        raise ValueError(f"the period {start.date()}..{end.date()} is outside the synthetic record")
    if o1 - o0 + 1 > MAX_ORBITS:
        raise ValueError(f"period too long: {o1 - o0 + 1} orbits (at most {MAX_ORBITS}); shorten it")
    rows = []
    for c0 in range(o0, o1 + 1, 4000):
        orbits = np.arange(c0, min(c0 + 4000, o1 + 1))
        t0 = np.asarray([geo.orbit_start_time(o) for o in orbits]).astype("datetime64[ns]")
        t1 = t0 + np.timedelta64(int(geo.PERIOD_S * 1e9), "ns")
        if mask is None:
            cov = np.ones(len(orbits))
        else:
            lat, lon, _ = geo.subsatellite_track(orbits, TRACK_POINTS)
            plat, plon = swath_points(lat, lon, geo.swath_half_width_km)
            cov = np.asarray(mask(plat, plon)).reshape(len(orbits), -1).mean(axis=1)
        keep = (cov > 0) & (t1 > start.to_datetime64()) & (t0 < end.to_datetime64())
        rows.append(pd.DataFrame({"orbit": orbits[keep], "start_time": t0[keep],
                                  "end_time": t1[keep], "coverage": cov[keep]}))
    df = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["orbit", "start_time", "end_time", "coverage"])
    df.attrs.update(source="synthetic", region=region_name or (str(bbox) if bbox else "global"),
                    start=str(start), end=str(end))
    return df


def granule_orbits(table: pd.DataFrame, start, end, *, mask: Optional[MaskFn] = None,
                   open_latlon: Optional[Callable[[str], tuple]] = None) -> pd.DataFrame:
    """Real orbits from a granule table (:func:`catalogs.gpm.scan_granules`) in a period.

    With a region ``mask``, each candidate granule's geolocation is read with ``open_latlon(path)
    -> (lat, lon)`` (file names carry no geometry) and kept if any pixel falls inside.
    """
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    if end <= start:
        raise ValueError(f"empty period: end {end} is not after start {start}")
    sel = table[(table["end"] > start) & (table["start"] < end)].copy()
    if mask is not None:
        if open_latlon is None:
            raise ValueError("a region query on real granules needs open_latlon")
        hits = []
        for path in sel["path"]:
            lat, lon = open_latlon(path)
            hits.append(float(np.mean(mask(np.asarray(lat), np.asarray(lon)))))
        sel["coverage"] = hits
        sel = sel[sel["coverage"] > 0]
    return sel.reset_index(drop=True)


def orbits_near_box(orbits, bbox: tuple[float, float, float, float], *, n_scans: int | None = None,
                    step_s: float = 20.0) -> np.ndarray:
    """The synthetic ``orbits`` (of the first ``n_scans`` scans of each, all by default) whose
    swath may touch a lon/lat box (``lon0 > lon1`` crosses the antimeridian); conservative: an
    orbit left out has no pixel in the box (every footprint lies within the scan radius of the
    nadir point of its scan; nadir is sampled every ``step_s`` seconds, and an orbit is kept when
    a sampled nadir point may lie within the scan radius + half a step + 100 km of the box, tested
    in latitude and against the box's edge meridians). Cheap: no swath is simulated."""
    from catalogs.simulator import geometry as geo

    orbits = np.atleast_1d(np.asarray(orbits, dtype=np.int64))
    if orbits.size == 0:
        return orbits
    lon0, lat0, lon1, lat1 = (float(v) for v in bbox)
    n = geo.N_SCANS if n_scans is None else int(min(n_scans, geo.N_SCANS))
    span = n * geo.SCAN_PERIOD_S  # seconds of the orbit the swath covers
    n_pts = int(np.ceil(geo.PERIOD_S / step_s)) + 1
    step = geo.PERIOD_S / (n_pts - 1)
    keep_pts = int(np.ceil(span / step)) + 1
    ground_speed = 2 * np.pi * EARTH_RADIUS_KM / geo.PERIOD_S  # km/s of the nadir point
    reach_km = geo.SCAN_RADIUS_KM + step * ground_speed / 2 + 100.0
    d = reach_km / EARTH_RADIUS_KM  # radians
    pad = np.degrees(d)
    la0, la1 = max(lat0 - pad, -90.0), min(lat1 + pad, 90.0)
    width = (lon1 - lon0) % 360.0
    full_lon = lon1 - lon0 >= 360
    out = []
    for c0 in range(0, orbits.size, 2000):
        chunk = orbits[c0:c0 + 2000]
        lat, lon, _ = geo.subsatellite_track(chunk, n_pts)
        lat, lon = lat[:, :keep_pts], lon[:, :keep_pts]
        # a point within d of the box is within d of it in latitude, and within d of the nearest
        # edge meridian: cos(lat) sin(dlon) <= sin(d)
        hit = (lat >= la0) & (lat <= la1)
        if not full_lon:
            east = (lon - lon0) % 360.0  # degrees east of the box's west edge
            off = np.where(east <= width, 0.0, np.minimum(east - width, 360.0 - east))
            s = np.sin(d) / np.maximum(np.cos(np.radians(lat)), 1e-9)
            reach = np.where(s >= 1.0, 180.0, np.degrees(np.arcsin(np.minimum(s, 1.0))))
            hit &= off <= reach
        out.append(chunk[hit.any(axis=1)])
    return np.concatenate(out)

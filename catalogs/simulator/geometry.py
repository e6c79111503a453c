"""Orbit and scan geometry of the synthetic GPM/GMI observing system.

Model (documented in ``docs/simulator.md``):

* Spherical Earth (radius ``R_EARTH_KM``), circular orbit at ``ALTITUDE_KM`` ≈ 407 km and
  ``INCLINATION_DEG`` = 65°, nominal period ``PERIOD_S`` = 92.6 min (5556 s).
* Orbit numbers count periods from ``EPOCH`` = 2014-03-04T00:00 UTC (GPM launch day):
  orbit ``n`` starts at ``EPOCH + n * PERIOD_S``. Orbits before the epoch have negative numbers;
  ``ORBIT_RANGE`` covers 1998-01-01 to 2061-01-01. Each orbit starts at the southernmost point
  of the ground track (argument of latitude -90°), like PPS granules.
* The orbital plane precesses (J2 nodal regression, ≈ -3.4° per day); the Earth rotates under it
  (Greenwich mean sidereal angle), so the ground tracks walk westwards ≈ 24° per orbit.
* Conical scan: each scan is an arc of ``N_PIXELS`` = 221 footprints spread uniformly in azimuth
  over ±70° around the forward direction, at ground radius ``SCAN_RADIUS_KM`` from the
  sub-satellite point, so the swath is 2 * 470.9 * sin 70° ≈ 885 km wide. Pixel 0 is on the left
  of the flight direction. ``N_SCANS`` = 2924 scans per orbit, one every ≈ 1.9 s.

All functions are vectorised numpy; nothing here draws random numbers.
"""

from __future__ import annotations

import numpy as np

R_EARTH_KM = 6371.0
R_EQUATOR_KM = 6378.137
ALTITUDE_KM = 407.0
INCLINATION_DEG = 65.0
PERIOD_S = 5556.0  # 92.6 min; Kepler with a = 6778-6785 km gives 5554-5562 s
EPOCH = np.datetime64("2014-03-04T00:00:00", "ns")
N_SCANS = 2924  # scans per orbit
SCAN_PERIOD_S = PERIOD_S / N_SCANS  # ≈ 1.900 s
N_PIXELS = 221
SCAN_HALF_ANGLE_DEG = 70.0  # 140° active sector
SWATH_WIDTH_KM = 885.0
SWATH_HALF_WIDTH_KM = SWATH_WIDTH_KM / 2
#: Half width of the swath (km) across the ground track: widen a sub-satellite track by this.
swath_half_width_km = SWATH_HALF_WIDTH_KM
SCAN_RADIUS_KM = SWATH_HALF_WIDTH_KM / np.sin(np.radians(SCAN_HALF_ANGLE_DEG))  # ≈ 470.9 km
#: Footprints lie ahead of the sub-satellite point by 161 km (swath edges) to 471 km (centre).
SCAN_LOOKAHEAD_KM = SCAN_RADIUS_KM
EARTH_INCIDENCE_DEG = 52.8
ORBIT_CIRCUMFERENCE_KM = 2 * np.pi * R_EARTH_KM

_PERIOD_NS = int(round(PERIOD_S * 1e9))
_MU = 398600.4418  # km3 s-2
_J2 = 1.08262668e-3
_OMEGA_EARTH = 7.2921150e-5  # rad/s, sidereal
_N = 2 * np.pi / PERIOD_S
_A = R_EQUATOR_KM + ALTITUDE_KM
_INC = np.radians(INCLINATION_DEG)
#: nodal precession (rad/s), J2 secular rate for a circular orbit: -3/2 J2 (Re/a)^2 n cos i
NODAL_RATE = -1.5 * _J2 * (R_EQUATOR_KM / _A) ** 2 * _N * np.cos(_INC)
_RAAN0 = np.radians(0.0)  # right ascension of the ascending node at EPOCH (arbitrary)
_J2000 = np.datetime64("2000-01-01T12:00:00", "ns")
_EPOCH_FROM_J2000_S = (EPOCH - _J2000) / np.timedelta64(1, "s")
_GMST0 = np.radians(280.46061837)  # Greenwich mean sidereal angle at J2000
_U0 = -np.pi / 2  # argument of latitude at orbit start (southernmost point)


def _first_orbit_at(t: str) -> int:
    return int(np.floor((np.datetime64(t, "ns") - EPOCH) / np.timedelta64(_PERIOD_NS, "ns")))


#: First and last orbit numbers of the synthetic record (inclusive): 1998-01-01 .. 2060-12-31.
ORBIT_RANGE = (_first_orbit_at("1998-01-01"), _first_orbit_at("2061-01-01") - 1)


def orbit_start_time(orbit) -> np.datetime64 | np.ndarray:
    """UTC start time (datetime64[ns]) of ``orbit`` (int or int array), exact to the nanosecond."""
    o = np.asarray(orbit, dtype=np.int64)
    t = EPOCH + o * np.timedelta64(_PERIOD_NS, "ns")
    return t if t.ndim else t[()]


def orbit_at_time(t) -> int | np.ndarray:
    """Number of the orbit in progress at time ``t`` (datetime64 or ISO string; arrays OK)."""
    t = np.asarray(t, dtype="datetime64[ns]")
    o = np.floor_divide((t - EPOCH).astype(np.int64), _PERIOD_NS)
    return int(o) if o.ndim == 0 else o


def seconds_since_epoch(t) -> np.ndarray:
    return (np.asarray(t, dtype="datetime64[ns]") - EPOCH).astype(np.int64) / 1e9


def _frame(orbit, tau):
    """Inertial unit vectors of the satellite position P and flight direction A, plus the
    Greenwich sidereal angle, for orbits ``orbit`` at ``tau`` seconds after their start.
    Shapes broadcast between ``orbit`` and ``tau``."""
    orbit = np.asarray(orbit, dtype=np.float64)
    tau = np.asarray(tau, dtype=np.float64)
    t = orbit * PERIOD_S + tau  # seconds since EPOCH (float64: < 1 µs error over the record)
    u = _U0 + _N * tau
    raan = _RAAN0 + NODAL_RATE * t
    gst = _GMST0 + _OMEGA_EARTH * (t + _EPOCH_FROM_J2000_S)
    cu, su = np.cos(u), np.sin(u)
    cO, sO = np.cos(raan), np.sin(raan)
    ci, si = np.cos(_INC), np.sin(_INC)
    P = np.stack(np.broadcast_arrays(cO * cu - sO * su * ci, sO * cu + cO * su * ci, su * si), axis=-1)
    A = np.stack(np.broadcast_arrays(-cO * su - sO * cu * ci, -sO * su + cO * cu * ci, cu * si), axis=-1)
    return P, A, gst


def _to_latlon(X, gst):
    lat = np.degrees(np.arcsin(np.clip(X[..., 2], -1.0, 1.0)))
    lon = np.degrees(np.arctan2(X[..., 1], X[..., 0]) - gst)
    lon = (lon + 180.0) % 360.0 - 180.0
    return lat, lon


def subsatellite_track(orbits, n_points: int):
    """Sub-satellite (nadir) ground track of many orbits at once.

    ``orbits``: int array (n_orbits,); returns ``lat, lon`` (float64, degrees, lon in [-180, 180))
    and ``time`` (datetime64[ns]) arrays of shape (n_orbits, n_points), the points evenly spaced
    in time from the orbit start to the next orbit's start (both ends included).
    Footprints of the conical scan lie ``SCAN_LOOKAHEAD_KM`` ahead (at most) of nadir and within
    ``swath_half_width_km`` across it.
    """
    orbits = np.atleast_1d(np.asarray(orbits, dtype=np.int64))
    frac = np.linspace(0.0, 1.0, int(n_points))
    tau = frac * PERIOD_S
    # closed form of _frame + _to_latlon for nadir (faster: no 3-vectors)
    t = orbits[:, None].astype(np.float64) * PERIOD_S + tau[None, :]
    u = _U0 + _N * tau[None, :]
    su, cu = np.sin(u), np.cos(u)
    lat = np.degrees(np.arcsin(su * np.sin(_INC)))
    # longitude in the orbital-node frame, then add the node's longitude
    lam = np.arctan2(su * np.cos(_INC), cu)
    lon = np.degrees(lam + _RAAN0 + NODAL_RATE * t - _GMST0 - _OMEGA_EARTH * (t + _EPOCH_FROM_J2000_S))
    lon = (lon + 180.0) % 360.0 - 180.0
    lat = np.broadcast_to(lat, lon.shape).copy()
    time = orbit_start_time(orbits)[:, None] + np.round(tau * 1e9).astype("timedelta64[ns]")[None, :]
    return lat, lon, time


def scan_azimuths() -> np.ndarray:
    """Azimuth of each pixel relative to the flight direction (rad), positive to the right."""
    return np.radians(np.linspace(-SCAN_HALF_ANGLE_DEG, SCAN_HALF_ANGLE_DEG, N_PIXELS))


def swath_geometry(orbit: int, n_scans: int | None = None, first_scan: int = 0):
    """Pixel geolocation of (``n_scans`` scans from scan ``first_scan`` of) one orbit; a scan's values
    do not depend on the segment it is computed in.

    Returns a dict with ``lat``, ``lon`` (n_scans, 221) float64, ``time`` (n_scans,)
    datetime64[ns], and the orbit-frame coordinates used by the climate generator:
    ``s_km`` (along-track ground distance from the orbit start, km) and ``c_km`` (cross-track
    distance, km, positive to the right), both (n_scans, 221).
    """
    first = int(first_scan)
    if not 0 <= first < N_SCANS:
        raise ValueError(f"first_scan {first_scan} outside 0..{N_SCANS - 1}")
    n = N_SCANS - first if n_scans is None else int(min(n_scans, N_SCANS - first))
    k = np.arange(first, first + n)
    tau = k * SCAN_PERIOD_S
    P, A, gst = _frame(orbit, tau)  # (n, 3)
    C = np.cross(P, A)  # left of the flight direction
    beta = scan_azimuths()
    delta = SCAN_RADIUS_KM / R_EARTH_KM
    cb, sb = np.cos(beta), np.sin(beta)
    D = cb[None, :, None] * A[:, None, :] - sb[None, :, None] * C[:, None, :]
    X = np.cos(delta) * P[:, None, :] + np.sin(delta) * D
    lat, lon = _to_latlon(X, gst[:, None])
    time = orbit_start_time(orbit) + np.round(tau * 1e9).astype("timedelta64[ns]")
    s_km = (R_EARTH_KM * _N * tau)[:, None] + SCAN_RADIUS_KM * cb[None, :]
    c_km = np.broadcast_to(SCAN_RADIUS_KM * sb[None, :], s_km.shape)
    return {"lat": lat, "lon": lon, "time": time, "s_km": s_km, "c_km": c_km}


def great_circle_km(lat1, lon1, lat2, lon2):
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dl = np.radians(np.asarray(lon2) - np.asarray(lon1))
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * R_EARTH_KM * np.arcsin(np.sqrt(np.clip(h, 0, 1)))

"""Synthetic orbits written as V07 PPS granules: 1C-GMI, 2B-CMB (DPR+GMI combined) and 2A-GMI (GPROF).

What for: the real-data path (reading, the orbit index, collocation, training and evaluation on an
archive, the app's *real* mode) must be exercised at full size, and no real archive is reachable
here. So the synthetic observing system writes its orbits in the official layout and file names;
:mod:`catalogs.gpm` (through gpm-api) reads them exactly as it reads PPS files.

Layout
------
Groups, variable names, HDF5 types, ``DimensionNames`` and attributes (``_FillValue``,
``CodeMissingValue``, ``Units``, ``LongName``), and the file-level metadata (``FileHeader``,
``FileInfo``, ...) come from real granules (``assets/pps_layout.json``, made by
:mod:`catalogs.make_pps_layout` from the PPS cuts in the test fixtures and checked against them in
``tests/test_pps.py``). Only the variables raincheck reads, their geolocation, time and quality
flags are written (a 2B-CMB file has no 88-bin profiles); ``FileHeader`` says so through
``NumberOfSwaths`` and the ``AlgorithmVersion`` carries ``raincheck-synthetic``.

Geometry and content (the known truth)
--------------------------------------
* **1C-GMI, S1** (9 channels 10-89 GHz): the synthetic swath's S1 channels and geolocation as they
  are. **S2** (4 channels 166-183 GHz): the GMI high-frequency feedhorn looks ahead of the
  low-frequency one (in the real orbit 79, S2 scan *i* lies about 4 scans, ≈ 55 km, from S1 scan
  *i*); here S2 scan *i* is written at the location of S1 scan *i* + :data:`S2_SCAN_OFFSET` with
  that scan's S2 Tb, so nearest-neighbour regridding (:func:`catalogs.gpm.open_1c_gmi`) recovers
  the swath's Tb exactly, and the last scans of S1 have no S2 partner, as in real granules.
* **2B-CMB, KuGMI**: the DPR Ku swath, 49 cross-track rays 5 km apart (245 km) at nadir of the
  satellite, one scan every :data:`DPR_SCAN_PERIOD_S` (7925 scans per orbit, as PPS's
  ``NumberScansGranule``). GMI looks ≈ 470 km ahead of the satellite along the track, so the DPR sees
  a GMI footprint ≈ 67 s later. ``estimSurfPrecipTotRate`` of a footprint is the synthetic radar
  reference (``surface_precip``: truth with the reference's detection threshold and error) of the
  nearest GMI pixel of the swath within :data:`CMB_SOURCE_MAX_KM`; fill where there is none (the
  first ≈ 67 s of the granule look at ground GMI saw in the previous orbit). The Earth turns ≈ 0.3°
  in those 67 s, so the DPR swath wanders a few GMI pixels off the simulator's fixed 49-pixel
  reference strip; beyond the strip the same reference model is applied to the truth with its own
  draws (:func:`_full_width_reference`). Surface class from that pixel's surface type.
* **2A-GMI (GPROF)**: written from a retrieval dataset (any model's output on the swath; the
  archive maker uses the Bayesian database retrieval ``bayes-baseline``, the GPROF-like baseline):
  ``surfacePrecipitation`` = its mean, tertiles = its quantiles interpolated to 1/3 and 2/3,
  ``probabilityOfPrecip`` = 100 * PoP, ``surfaceTypeIndex`` from the swath's surface type.

Files are written atomically (temporary sibling, then rename) into the directory tree gpm-api
uses for a local archive: ``<root>/GPM/RS/V07/<PMW|CMB>/<product>/<YYYY>/<MM>/<DD>/<file>``.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from catalogs import schema
from catalogs.simulator import geometry as geo

__all__ = [
    "PRODUCTS",
    "granule_name",
    "archive_path",
    "write_1c_gmi",
    "write_2b_cmb",
    "write_2a_gprof",
    "cmb_geometry",
    "make_archive",
    "archive_orbits",
]

LAYOUT_PATH = Path(__file__).parent / "assets" / "pps_layout.json"

#: product -> (level, sensor field, algorithm field, gpm-api category, gpm-api product name)
PRODUCTS = {
    "1C-GMI": ("1C", "GMI", "XCAL2016-C", "PMW", "1C-GMI"),
    "2B-CMB": ("2B", "DPRGMI", "CORRA2022", "CMB", "2B-GPM-CORRA"),
    "2A-GMI": ("2A", "GMI", "GPROF2021v1", "PMW", "2A-GMI"),
}
VERSION = "V07A"

S2_SCAN_OFFSET = 4
#: DPR: scans per orbit (PPS ``NumberScansGranule`` of a 2B-CMB granule), rays, ray spacing.
DPR_SCANS_PER_ORBIT = 7925
DPR_SCAN_PERIOD_S = geo.PERIOD_S / DPR_SCANS_PER_ORBIT  # ≈ 0.701 s, ≈ 4.9 km along track
DPR_RAYS = 49
DPR_RAY_SPACING_KM = 5.0
#: A CMB footprint takes the reference of the nearest GMI pixel within this distance (km): half
#: the GMI along-track scan spacing (13 km) plus margin.
CMB_SOURCE_MAX_KM = 7.5
FILL = -9999.9

_S1 = list(range(9))  # schema channel order: the 9 S1 channels first, then the 4 S2 channels
_S2 = list(range(9, 13))


@functools.lru_cache(maxsize=1)
def layout() -> dict:
    """The shipped PPS layout (see the module doc)."""
    return json.loads(LAYOUT_PATH.read_text())


# -------------------------------------------------------------------------------------------
# names and paths
# -------------------------------------------------------------------------------------------
def _utc(t) -> datetime:
    return datetime.fromtimestamp(int(np.datetime64(t, "ms").astype(np.int64)) / 1000, tz=timezone.utc).replace(tzinfo=None)


def granule_name(product: str, orbit: int, start, end) -> str:
    """The PPS file name of ``product`` for ``orbit`` between ``start`` and ``end`` (UTC)."""
    if product not in PRODUCTS:
        raise ValueError(f"unknown PPS product {product!r} (known: {sorted(PRODUCTS)})")
    if not 0 <= int(orbit) <= 999999:
        raise ValueError(f"orbit {orbit}: PPS granule numbers run from 0 to 999999 (the synthetic record "
                         "before the GPM launch, 2014-03-04, has negative orbit numbers and no PPS granules)")
    level, sensor, algo, _, _ = PRODUCTS[product]
    s, e = _utc(start), _utc(end)
    return (f"{level}.GPM.{sensor}.{algo}.{s:%Y%m%d}-S{s:%H%M%S}-E{e:%H%M%S}.{int(orbit):06d}.{VERSION}.HDF5")


def archive_path(root: str | Path, product: str, orbit: int, start, end) -> Path:
    """Where gpm-api's local archive layout puts this granule under ``root``."""
    _, _, _, category, gpm_name = PRODUCTS[product]
    s = _utc(start)
    return (Path(root) / "GPM" / "RS" / "V07" / category / gpm_name / f"{s:%Y}" / f"{s:%m}" / f"{s:%d}"
            / granule_name(product, orbit, start, end))


# -------------------------------------------------------------------------------------------
# HDF5 writing from the layout
# -------------------------------------------------------------------------------------------
def _attr_value(spec: dict):
    t, v = spec["type"], spec["value"]
    if t == "bytes":
        return np.bytes_(v.encode())
    if t == "str":
        return v
    return np.asarray(v, dtype=t)


def _header(product: str, template: str, orbit: int, start, end, filename: str, n_swaths: int,
            missing: int, empty: bool) -> str:
    s, e = _utc(start), _utc(end)
    algo = PRODUCTS[product][2]
    values = {
        "FileName": filename, "StartGranuleDateTime": f"{s:%Y-%m-%dT%H:%M:%S}.000Z",
        "StopGranuleDateTime": f"{e:%Y-%m-%dT%H:%M:%S}.000Z", "GranuleNumber": f"{int(orbit):06d}",
        "GenerationDateTime": f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%S}.000Z",
        "NumberOfSwaths": str(n_swaths), "EmptyGranule": "EMPTY" if empty else "NOT_EMPTY",
        "MissingData": str(int(missing)), "AlgorithmVersion": f"{algo} raincheck-synthetic",
    }
    lines = []
    for line in template.split(";\n"):
        if "=" in line:
            k = line.split("=", 1)[0]
            line = f"{k}={values.get(k, line.split('=', 1)[1])}"
        if line:
            lines.append(line)
    return ";\n".join(lines) + ";\n"


def _swath_header(template: str, n_scans: int, n_pixels: int) -> str:
    out = []
    for line in template.split(";\n"):
        if line.startswith("NumberScansGranule="):
            line = f"NumberScansGranule={n_scans}"
        elif line.startswith("NumberPixels="):
            line = f"NumberPixels={n_pixels}"
        if line:
            out.append(line)
    return ";\n".join(out) + ";\n"


def _scan_time(times) -> dict[str, np.ndarray]:
    t = np.asarray(times, dtype="datetime64[ms]")
    ok = ~np.isnat(t)
    tt = np.where(ok, t, np.datetime64("2000-01-01", "ms"))
    d = pd.DatetimeIndex(tt)
    out = {
        "ScanTime/Year": d.year.values, "ScanTime/Month": d.month.values, "ScanTime/DayOfMonth": d.day.values,
        "ScanTime/Hour": d.hour.values, "ScanTime/Minute": d.minute.values, "ScanTime/Second": d.second.values,
        "ScanTime/MilliSecond": (d.microsecond // 1000).values, "ScanTime/DayOfYear": d.day_of_year.values,
        "ScanTime/SecondOfDay": (d.hour * 3600 + d.minute * 60 + d.second + d.microsecond / 1e6).values,
    }
    return {k: np.where(ok, v, -9999) for k, v in out.items()}


def _write(path: Path, product: str, groups: dict[str, dict[str, np.ndarray]], *, orbit: int, start, end,
           missing: int = 0, empty: bool = False) -> Path:
    """Write ``groups`` ({scan mode: {variable path: array}}) in the layout of ``product``,
    atomically; a variable of the layout not given is written all fill."""
    import h5py

    spec = layout()[product]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as h:
            for k, a in spec["file_attrs"].items():
                v = a["value"]
                if k == "FileHeader":
                    v = _header(product, v, orbit, start, end, path.name, len(groups), missing, empty)
                h.attrs[k] = np.bytes_(v.encode())
            for mode, values in groups.items():
                gspec = spec["groups"][mode]
                g = h.create_group(mode)
                n_scans, n_pix = values["Latitude"].shape
                for k, a in gspec["attrs"].items():
                    v = a["value"]
                    if k.endswith("SwathHeader"):
                        v = _swath_header(v, n_scans, n_pix)
                    g.attrs[k] = np.bytes_(v.encode())
                for name, vs in gspec["variables"].items():
                    dims = vs["dims"]
                    shape = tuple(n_scans if d.startswith("nscan") else n_pix if d.startswith(("npixel", "nray"))
                                  else vs["sizes"][d] for d in dims)
                    fill = vs["attrs"].get("_FillValue", {}).get("value", 0)
                    arr = values.get(name)
                    if arr is None:
                        arr = np.full(shape, fill, dtype=vs["dtype"])
                    else:
                        arr = np.asarray(arr)
                        if arr.shape != shape:
                            raise ValueError(f"{product} {mode}/{name}: shape {arr.shape}, layout wants {shape} {dims}")
                        if np.issubdtype(arr.dtype, np.floating):
                            arr = np.where(np.isfinite(arr), arr, fill)
                        arr = arr.astype(vs["dtype"])
                    chunks = (min(shape[0], 256), *shape[1:]) if len(shape) > 1 else None
                    d = g.create_dataset(name, data=arr, chunks=chunks, fillvalue=np.asarray(fill, vs["dtype"]))
                    for k, a in vs["attrs"].items():
                        d.attrs[k] = _attr_value(a)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# -------------------------------------------------------------------------------------------
# satellite state along the track
# -------------------------------------------------------------------------------------------
def _orbit_tau(orbit: int, times) -> np.ndarray:
    return (np.asarray(times, "datetime64[ns]") - geo.orbit_start_time(orbit)) / np.timedelta64(1, "s")


def _subsatellite(orbit: int, tau: np.ndarray):
    """Unit position, along-track and left vectors of the satellite at ``tau`` s into ``orbit``,
    and the sub-satellite lat/lon."""
    P, A, gst = geo._frame(orbit, tau)
    lat, lon = geo._to_latlon(P, gst)
    return P, A, np.cross(P, A), gst, lat, lon


def _sc_status(orbit: int, times, n_scans: int) -> dict[str, np.ndarray]:
    tau = _orbit_tau(orbit, times)
    _, _, _, _, lat, lon = _subsatellite(orbit, tau)
    return {
        "SCstatus/SClatitude": lat, "SCstatus/SClongitude": lon,
        "SCstatus/SCaltitude": np.full(n_scans, geo.ALTITUDE_KM), "SCstatus/SCorientation": np.zeros(n_scans),
        "SCstatus/FractionalGranuleNumber": orbit + tau / geo.PERIOD_S,
    }


def _sun_local_time(lon, times) -> np.ndarray:
    t = np.asarray(times, "datetime64[ns]")
    hours = (t - t.astype("datetime64[D]")) / np.timedelta64(1, "h")
    return ((hours[:, None] + np.asarray(lon) / 15.0) % 24).astype(np.float32)


def _swath_times(swath: xr.Dataset) -> tuple[np.datetime64, np.datetime64]:
    t = swath["time"].values.astype("datetime64[ns]")
    return t[0], t[-1]


# -------------------------------------------------------------------------------------------
# products
# -------------------------------------------------------------------------------------------
def write_1c_gmi(swath: xr.Dataset, path: str | Path | None = None, *, root: str | Path | None = None) -> Path:
    """Write a synthetic swath as a 1C-GMI granule (S1 + S2, see the module doc) at ``path``, or
    under ``root`` in gpm-api's layout. Returns the path."""
    schema.validate(swath)
    orbit = int(swath.attrs["orbit_number"])
    t0, t1 = _swath_times(swath)
    path = Path(path) if path is not None else archive_path(root, "1C-GMI", orbit, t0, t1)
    tc = swath["Tc"].transpose("along_track", "cross_track", "pmw_frequency").values.astype(np.float32)
    lat = swath["lat"].values.astype(np.float32)
    lon = swath["lon"].values.astype(np.float32)
    times = swath["time"].values
    n, m = lat.shape
    k = S2_SCAN_OFFSET
    lat2 = np.full_like(lat, np.nan)
    lon2 = np.full_like(lon, np.nan)
    tc2 = np.full((n, m, 4), np.nan, np.float32)
    lat2[: n - k], lon2[: n - k], tc2[: n - k] = lat[k:], lon[k:], tc[k:, :, _S2]
    groups = {}
    for mode, la, lo, t, nch in (("S1", lat, lon, tc[..., _S1], 9), ("S2", lat2, lon2, tc2, 4)):
        quality = np.where(np.isfinite(t).all(-1), 0, -99).astype(np.int8)
        groups[mode] = {
            "Latitude": la, "Longitude": lo, "Tc": t, "Quality": quality,
            "incidenceAngle": np.full((n, m, 1), geo.EARTH_INCIDENCE_DEG, np.float32),
            "incidenceAngleIndex": np.ones((n, nch), np.int8),
            "sunLocalTime": _sun_local_time(lo, times), **_scan_time(times), **_sc_status(orbit, times, n),
        }
    missing = int((~np.isfinite(tc).all(-1)).sum())
    return _write(path, "1C-GMI", groups, orbit=orbit, start=t0, end=t1, missing=missing)


def cmb_geometry(orbit: int, start, end) -> dict:
    """Footprints of the DPR Ku swath (49 rays, nadir cross-track) for the scans of ``orbit``
    between ``start`` and ``end``: ``lat``, ``lon`` (n_scans, 49), ``time`` (n_scans,)."""
    t_orbit = geo.orbit_start_time(orbit)
    tau0 = (np.datetime64(start, "ns") - t_orbit) / np.timedelta64(1, "s")
    tau1 = (np.datetime64(end, "ns") - t_orbit) / np.timedelta64(1, "s")
    k = np.arange(int(np.ceil(tau0 / DPR_SCAN_PERIOD_S - 1e-9)), int(np.floor(tau1 / DPR_SCAN_PERIOD_S + 1e-9)) + 1)
    tau = k * DPR_SCAN_PERIOD_S
    P, A, C, gst, _, _ = _subsatellite(orbit, tau)
    offsets = (np.arange(DPR_RAYS) - (DPR_RAYS - 1) / 2) * DPR_RAY_SPACING_KM  # km, positive to the right
    d = offsets / geo.R_EARTH_KM
    X = np.cos(d)[None, :, None] * P[:, None, :] - np.sin(d)[None, :, None] * C[:, None, :]
    lat, lon = geo._to_latlon(X, gst[:, None])
    time = t_orbit + np.round(tau * 1e9).astype("timedelta64[ns]")
    return {"lat": lat, "lon": lon, "time": time}


#: schema surface flag -> (2B-CMB Input/surfaceType raw code, Input/snowIceCover)
_CMB_SURFACE = {0: (0, 0), 1: (100, 1), 2: (200, 1), 3: (0, 3), 4: (100, 2)}
#: schema surface flag -> GPROF surfaceTypeIndex (ocean, land: low vegetation, coast: mixed coast,
#: sea ice, snow: moderate snow) — :data:`catalogs.gpm.GPROF_SURFACE_MAP` maps them back.
_GPROF_SURFACE = {0: 1, 1: 5, 2: 14, 3: 2, 4: 10}


def _nearest(lat_from, lon_from, lat_to, lon_to, max_km):
    from catalogs.gpm import nearest_s2_on_s1

    return nearest_s2_on_s1(lat_to, lon_to, lat_from, lon_from, max_km)


def _full_width_reference(swath: xr.Dataset, orbit: int) -> np.ndarray:
    """The radar reference on every pixel: the simulator's ``surface_precip`` on its strip; beyond
    it (the DPR swath wanders a few GMI pixels off the fixed 49-pixel strip: the Earth turns ≈ 0.3°
    in the 67 s between the GMI and DPR looks), the same reference model applied to the truth
    (multiplicative lognormal error σ = ``REFERENCE_ERROR_SIGMA``, mean-preserving, rates under
    ``REFERENCE_MIN_RATE`` read as 0) with its own independent draws."""
    from catalogs.simulator import REFERENCE_ERROR_SIGMA as sigma
    from catalogs.simulator import REFERENCE_MIN_RATE

    ref = swath["surface_precip"].values.astype(np.float64)
    if "surface_precip_truth" not in swath:
        return ref
    truth = swath["surface_precip_truth"].values.astype(np.float64)
    seed = int(swath.attrs.get("world_seed", 0))
    first = int(np.rint(_orbit_tau(orbit, swath["time"].values[:1])[0] / geo.SCAN_PERIOD_S))
    err = np.random.default_rng([seed, orbit, 16, first]).standard_normal(truth.shape)
    other = truth * np.exp(sigma * err - sigma ** 2 / 2)
    other = np.where(other < REFERENCE_MIN_RATE, 0.0, other)
    return np.where(np.isfinite(ref), ref, other)


def write_2b_cmb(swath: xr.Dataset, path: str | Path | None = None, *, root: str | Path | None = None) -> Path:
    """Write the synthetic radar reference of a swath as a 2B-CMB granule (KuGMI, see the module
    doc) at ``path`` or under ``root``. Returns the path."""
    schema.validate(swath)
    if "surface_precip" not in swath:
        raise ValueError("write_2b_cmb: the swath has no surface_precip (the synthetic radar reference)")
    orbit = int(swath.attrs["orbit_number"])
    t0, t1 = _swath_times(swath)
    g = cmb_geometry(orbit, t0, t1)
    lat, lon = g["lat"], g["lon"]
    ref = _full_width_reference(swath, orbit)
    idx, _ = _nearest(swath["lat"].values, swath["lon"].values, lat, lon, CMB_SOURCE_MAX_KM)
    has = idx >= 0
    rain = np.full(lat.shape, np.nan, np.float32)
    rain[has] = ref.ravel()[idx[has]]
    flags = np.where(has, swath["surface_type"].values.astype(np.int64).ravel()[np.maximum(idx, 0)], -1)
    surf = np.full(lat.shape, -9999, np.int32)
    snow = np.full(lat.shape, -9999, np.int32)
    for flag, (code, si) in _CMB_SURFACE.items():
        m = flags == flag
        surf[m], snow[m] = code, si
    n = lat.shape[0]
    tau = _orbit_tau(orbit, g["time"])
    _, _, _, _, sclat, sclon = _subsatellite(orbit, tau)
    values = {
        "Latitude": lat.astype(np.float32), "Longitude": lon.astype(np.float32),
        "estimSurfPrecipTotRate": rain, "estimSurfPrecipLiqRate": rain, "nearSurfPrecipTotRate": rain,
        "Input/surfaceType": surf, "Input/snowIceCover": snow,
        "Input/precipitationFlag": np.where(has, (rain > 0).astype(np.int32), -9999),
        "Input/localZenithAngle": np.broadcast_to(np.abs((np.arange(DPR_RAYS) - 24) * 0.71), lat.shape).astype(np.float32),
        "sunLocalTime": _sun_local_time(lon, g["time"]),
        "navigation/scLat": sclat, "navigation/scLon": sclon,
        "navigation/timeMidScan": (g["time"] - np.datetime64("1970-01-01", "ns")) / np.timedelta64(1, "s"),
        "scanStatus/FractionalGranuleNumber": orbit + tau / geo.PERIOD_S,
        "scanStatus/dataQuality": np.zeros(n, np.int8), **_scan_time(g["time"]),
    }
    path = Path(path) if path is not None else archive_path(root, "2B-CMB", orbit, t0, t1)
    return _write(path, "2B-CMB", {"KuGMI": values}, orbit=orbit, start=t0, end=t1, missing=int((~has).sum()))


def _quantile_at(ds: xr.Dataset, level: float) -> np.ndarray:
    q = ds[schema.QUANTILE].values
    v = ds["precip_quantiles"].transpose(schema.ALONG, schema.CROSS, schema.QUANTILE).values
    j = int(np.clip(np.searchsorted(q, level), 1, len(q) - 1))
    w = (level - q[j - 1]) / (q[j] - q[j - 1])
    return (1 - w) * v[..., j - 1] + w * v[..., j]


def write_2a_gprof(retrieval: xr.Dataset, swath: xr.Dataset, path: str | Path | None = None, *,
                   root: str | Path | None = None) -> Path:
    """Write a retrieval of ``swath`` as a 2A-GMI (GPROF) granule (see the module doc)."""
    schema.validate(swath)
    schema.validate(retrieval, kind="retrieval")
    orbit = int(swath.attrs["orbit_number"])
    t0, t1 = _swath_times(swath)
    lat, lon = swath["lat"].values, swath["lon"].values
    times = swath["time"].values
    n = lat.shape[0]
    mean = retrieval["precip_mean"].values.astype(np.float32)
    ok = np.isfinite(mean)
    st = swath["surface_type"].values
    sti = np.full(lat.shape, -99, np.int8)
    for flag, code in _GPROF_SURFACE.items():
        sti[st == flag] = code
    pop = np.where(ok, np.round(100 * retrieval["pop"].values.astype(np.float64)), -99)
    values = {
        "Latitude": lat.astype(np.float32), "Longitude": lon.astype(np.float32),
        "surfacePrecipitation": mean, "mostLikelyPrecipitation": retrieval["precip_median"].values.astype(np.float32),
        "precip1stTertial": _quantile_at(retrieval, 1 / 3).astype(np.float32),
        "precip2ndTertial": _quantile_at(retrieval, 2 / 3).astype(np.float32),
        "probabilityOfPrecip": np.nan_to_num(pop, nan=-99).astype(np.int8), "surfaceTypeIndex": sti,
        "pixelStatus": np.where(ok, 0, 1).astype(np.int8), "qualityFlag": np.where(ok, 0, 3).astype(np.int8),
        "L1CqualityFlag": np.where(ok, 0, -99).astype(np.int8), "sunLocalTime": _sun_local_time(lon, times),
        **_scan_time(times), **_sc_status(orbit, times, n),
    }
    path = Path(path) if path is not None else archive_path(root, "2A-GMI", orbit, t0, t1)
    return _write(path, "2A-GMI", {"S1": values}, orbit=orbit, start=t0, end=t1, missing=int((~ok).sum()))


# -------------------------------------------------------------------------------------------
# a synthetic archive
# -------------------------------------------------------------------------------------------
def archive_orbits(start: str, end: str, n: int, seed: int = 0) -> list[int]:
    """``n`` orbits spread evenly over [start, end] (one per stratum, random inside it; deterministic)."""
    a = int(geo.orbit_at_time(np.datetime64(str(start))))
    b = int(geo.orbit_at_time(np.datetime64(str(end))))
    if b < a:
        raise ValueError(f"period {start}..{end}: the end is before the start")
    if a < 0:
        raise ValueError(f"period {start}..{end} starts before GPM's launch (2014-03-04): no PPS granules")
    n = int(n)
    if n < 1:
        raise ValueError(f"orbits: need at least 1, got {n}")
    rng = np.random.default_rng([seed, 16])
    edges = np.linspace(a, b + 1, n + 1)
    return sorted({int(rng.integers(int(lo), max(int(lo) + 1, int(hi)))) for lo, hi in zip(edges[:-1], edges[1:])})


def make_archive(root: str | Path, orbits: list[int], *, world_seed: int = 0, world: str | None = None,
                 n_scans: int | None = None, gprof: Callable[[xr.Dataset], xr.Dataset] | None = None,
                 progress: Callable | None = None, cancel=None) -> list[Path]:
    """Simulate ``orbits`` and write each as 1C-GMI + 2B-CMB (+ 2A-GMI if ``gprof``, a function
    swath -> retrieval) under ``root`` in gpm-api's layout. A granule already there is kept
    (re-running skips it). Returns the paths, in order."""
    from catalogs.simulator import simulate_orbit

    paths = []
    for i, orbit in enumerate(orbits):
        if cancel is not None and cancel.is_set():
            raise InterruptedError("making the archive was cancelled")
        kw = {"world": world} if world else {}
        sw = None
        t0 = t1 = None
        for product in ("1C-GMI", "2B-CMB", "2A-GMI"):
            if product == "2A-GMI" and gprof is None:
                continue
            if sw is None:
                sw = simulate_orbit(int(orbit), world_seed=world_seed, n_scans=n_scans, **kw)
                t0, t1 = _swath_times(sw)
            p = archive_path(root, product, int(orbit), t0, t1)
            if not p.exists():
                if product == "1C-GMI":
                    write_1c_gmi(sw, p)
                elif product == "2B-CMB":
                    write_2b_cmb(sw, p)
                else:
                    write_2a_gprof(gprof(sw), sw, p)
            paths.append(p)
        if progress:
            progress(i + 1, len(orbits), f"orbit {orbit}")
    return paths

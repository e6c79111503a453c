"""Real GPM V07 granules from NASA PPS, read through gpm-api, in the canonical schema.

Products and what they become
-----------------------------
``1C-GMI``   observed brightness temperatures -> swath (:func:`open_1c_gmi`): the 9 S1 and 4 S2
             channels on the S1 grid, no ``surface_precip``.
``2B-CMB``   DPR+GMI combined (CORRA) -> reference swath on its own KuGMI grid
             (:func:`open_2b_cmb`): ``surface_precip`` and the 13 simulated Tb as ``Tc``.
``2A-DPR``   radar-only -> reference swath on the FS grid (:func:`open_2a_dpr`), ``Tc`` all NaN.
``2A-GMI``   GPROF, the operational retrieval -> *retrieval* output (:func:`open_2a_gprof`), a
             baseline "model" with a two-level quantile dim.

Errors
------
Anything that is not a readable GPM granule raises :class:`GranuleError` naming the file and the
problem (bad name, not HDF5, truncated, corrupt, missing scan-mode group, unexpected layout);
a readable granule with nothing valid in it raises :class:`NoValidData` (a ``GranuleError``), so a
caller shows a message instead of a blank map.

Decisions (also in each function's docstring)
---------------------------------------------
* S2 -> S1: nearest neighbour in lat/lon (great-circle distance on a sphere, via a k-d tree on
  unit vectors, so the antimeridian and poles need no special case); an S1 pixel whose nearest S2
  pixel is farther than ``max_s2_distance_km`` (default 15 km, about one along-track scan spacing
  of 13 km plus margin) gets NaN in the four S2 channels. Nearest, not bilinear: it keeps observed
  values (no smoothing of sharp scattering signals) and needs no S2 scan topology.
* Surface type: see :func:`map_cmb_surface`, :func:`map_gprof_surface`.
* GPROF quantiles: see :func:`open_2a_gprof`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import struct
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from catalogs import schema

__all__ = [
    "GranuleError",
    "NoValidData",
    "GranuleInfo",
    "parse_granule_name",
    "scan_granules",
    "open_granule",
    "open_1c_gmi",
    "open_2b_cmb",
    "open_2a_gprof",
    "open_2a_dpr",
    "open_latlon",
    "map_cmb_surface",
    "map_gprof_surface",
    "nearest_s2_on_s1",
    "SUPPORTED_PRODUCTS",
]

EARTH_RADIUS_KM = 6371.0


class GranuleError(ValueError):
    """A file is not a readable GPM granule (bad name, not HDF5, truncated, corrupt, missing group)."""


class NoValidData(GranuleError):
    """A readable granule holds no valid data for what was asked (all fill values)."""


# --------------------------------------------------------------------------------------------
# File names
# --------------------------------------------------------------------------------------------

#: PPS convention: ``<level>.<satellite>.<sensor>.<algorithm>.<YYYYMMDD>-S<hhmmss>-E<hhmmss>.
#: <orbit>.<version>.<ext>``, e.g. ``2A.GPM.DPR.V9-20211125.20140308-S220950-E234217.000144.V07A.HDF5``.
#: Level may carry a suffix (``1C-R`` near-real-time); L3 products put a 4-digit day-minute
#: sequence where orbits go.
_NAME_RE = re.compile(
    r"^(?P<level>[0-3][A-Z])(?P<suffix>-[A-Z0-9]+)?"
    r"\.(?P<satellite>[A-Za-z0-9]+)"
    r"\.(?P<sensor>[A-Za-z0-9]+)"
    r"\.(?P<algorithm>[A-Za-z0-9_-]+)"
    r"\.(?P<date>\d{8})-S(?P<start>\d{6})-E(?P<end>\d{6})"
    r"\.(?P<orbit>\d{4,6})"
    r"\.(?P<version>V\d{2}[A-Z]?)"
    r"\.(?P<ext>HDF5|hdf5|H5|h5)$"
)

#: PPS sensor field -> short product sensor name (2B DPRGMI is the "CMB" product).
_SENSOR_ALIAS = {"DPRGMI": "CMB"}

#: Products :func:`open_granule` converts, and the scan mode each is read from.
SUPPORTED_PRODUCTS = {"1C-GMI": "S1", "2A-GMI": "S1", "2A-DPR": "FS", "2B-CMB": "KuGMI"}


@dataclass(frozen=True)
class GranuleInfo:
    """What a PPS file name says about a granule."""

    product: str  # e.g. "1C-GMI", "2A-GMI", "2A-DPR", "2B-CMB"
    level: str  # "1C", "2A", "2B" (near-real-time suffix kept: "1C-R")
    satellite: str  # "GPM"
    sensor: str  # "GMI", "DPR", "DPRGMI"
    algorithm: str  # "XCAL2016-C", "GPROF2021v1", "V9-20211125", "CORRA2022"
    start: datetime  # UTC, naive
    end: datetime  # UTC, naive; the day after ``start`` when the granule crosses midnight
    orbit: int
    version: str  # "V07A"
    filename: str
    path: Path


def parse_granule_name(path: str | Path) -> GranuleInfo:
    """Parse an official PPS granule file name; raise :class:`GranuleError` if it is not one."""
    p = Path(path)
    m = _NAME_RE.match(p.name)
    if m is None:
        raise GranuleError(
            f"{p.name!r} is not a GPM granule file name (expected the PPS convention "
            "'<level>.<satellite>.<sensor>.<algorithm>.<YYYYMMDD>-S<hhmmss>-E<hhmmss>.<orbit>.<version>.HDF5', "
            "e.g. '1C.GPM.GMI.XCAL2016-C.20140304-S175932-E193159.000079.V07A.HDF5')"
        )
    g = m.groupdict()
    try:
        day = datetime.strptime(g["date"], "%Y%m%d")
        start = datetime.combine(day.date(), datetime.strptime(g["start"], "%H%M%S").time())
        end = datetime.combine(day.date(), datetime.strptime(g["end"], "%H%M%S").time())
    except ValueError as e:
        raise GranuleError(f"{p.name!r}: invalid date or time in the file name ({e})") from None
    if end < start:  # granule crosses midnight
        end += timedelta(days=1)
    level = g["level"] + (g["suffix"] or "")
    product = f"{g['level']}-{_SENSOR_ALIAS.get(g['sensor'], g['sensor'])}"
    return GranuleInfo(
        product=product, level=level, satellite=g["satellite"], sensor=g["sensor"],
        algorithm=g["algorithm"], start=start, end=end, orbit=int(g["orbit"]),
        version=g["version"], filename=p.name, path=p,
    )


_SCAN_COLUMNS = ["product", "orbit", "start", "end", "version", "algorithm", "satellite", "path"]


def scan_granules(folder: str | Path, recursive: bool = True) -> pd.DataFrame:
    """List the GPM granules under ``folder`` from their file names only (no file is opened).

    Returns a DataFrame with columns ``product, orbit, start, end, version, algorithm, satellite,
    path`` sorted by start time then product; files whose names are not granules are skipped
    (their count is in ``df.attrs["skipped"]``). Raises :class:`FileNotFoundError` if ``folder``
    is not a directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a directory: {folder}")
    files = folder.rglob("*") if recursive else folder.iterdir()
    rows, skipped = [], 0
    for f in files:
        if not f.is_file():
            continue
        try:
            info = parse_granule_name(f)
        except GranuleError:
            skipped += 1
            continue
        rows.append({
            "product": info.product, "orbit": info.orbit,
            "start": pd.Timestamp(info.start), "end": pd.Timestamp(info.end),
            "version": info.version, "algorithm": info.algorithm,
            "satellite": info.satellite, "path": str(f),
        })
    df = pd.DataFrame(rows, columns=_SCAN_COLUMNS)
    if len(df):
        df = df.sort_values(["start", "product", "path"], kind="stable").reset_index(drop=True)
    else:
        df = df.astype({"orbit": "int64", "start": "datetime64[ns]", "end": "datetime64[ns]"})
    df.attrs["skipped"] = skipped
    return df


# --------------------------------------------------------------------------------------------
# Checking and opening files
# --------------------------------------------------------------------------------------------

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _hdf5_check(path: Path) -> None:
    """Cheap structural checks with clear messages: exists, HDF5 signature, not truncated.

    The HDF5 superblock records the end-of-file address; a file shorter than that was cut off
    (an interrupted download is the usual cause).
    """
    name = path.name
    if not path.exists():
        raise GranuleError(f"{name}: file not found ({path})")
    if not path.is_file():
        raise GranuleError(f"{name}: not a regular file ({path})")
    size = path.stat().st_size
    if size == 0:
        raise GranuleError(f"{name}: file is empty (0 bytes)")
    with open(path, "rb") as fh:
        base = None
        for off in (0, 512, 1024, 2048, 4096, 8192):  # signature may follow a user block
            fh.seek(off)
            if fh.read(8) == _HDF5_SIGNATURE:
                base = off
                break
        if base is None:
            fh.seek(0)
            head = fh.read(16)
            raise GranuleError(
                f"{name}: not an HDF5 file (no HDF5 signature; the file starts with {head!r}, "
                f"{size} bytes)"
            )
        fh.seek(base + 8)
        sb = fh.read(96)
    eof = _superblock_eof(sb)
    if eof is not None and base + eof > size:
        raise GranuleError(
            f"{name}: truncated HDF5 file: {size} bytes on disk but its superblock says "
            f"{base + eof} bytes (incomplete download? fetch the granule again)"
        )


def _superblock_eof(sb: bytes) -> int | None:
    """End-of-file address from the bytes after the signature, or None if not understood."""
    if len(sb) < 8:
        return None
    version = sb[0]
    try:
        if version in (0, 1):
            size_off = sb[5]
            # version, freespace v, root symtab v, reserved, shared hdr v, size_off, size_len,
            # reserved, leaf K (2), internal K (2), flags (4) [+ indexed K (2) + reserved (2) in v1]
            pos = 16 + (4 if version == 1 else 0)
            fmt = {4: "<I", 8: "<Q"}.get(size_off)
            if fmt is None:
                return None
            # base address, free-space address, end-of-file address
            pos += 2 * size_off
            return struct.unpack_from(fmt, sb, pos)[0]
        if version in (2, 3):
            size_off = sb[1]
            fmt = {4: "<I", 8: "<Q"}.get(size_off)
            if fmt is None:
                return None
            # version, size_off, size_len, flags, base address, extension address, EOF address
            return struct.unpack_from(fmt, sb, 4 + 2 * size_off)[0]
    except struct.error:
        return None
    return None


def _groups(path: Path) -> list[str] | None:
    """Top-level groups of an HDF5 file (through netCDF4), or None if it cannot be listed."""
    try:
        import netCDF4

        with netCDF4.Dataset(path, "r") as nc:
            return list(nc.groups)
    except Exception:
        return None


def _variables_in(path: Path, scan_mode: str, info: GranuleInfo) -> set[str]:
    """Names of the variables under the scan-mode group (all subgroups), via netCDF4."""
    import netCDF4

    try:
        nc = netCDF4.Dataset(path, "r")
    except Exception as e:  # noqa: BLE001
        raise GranuleError(f"{path.name}: corrupt or unreadable HDF5 file ({type(e).__name__}: {e})") from None
    try:
        if scan_mode not in nc.groups:
            raise GranuleError(
                f"{path.name}: missing scan-mode group {scan_mode!r} needed for {info.product} "
                f"(groups in the file: {list(nc.groups)})"
            )
        names: set[str] = set()
        stack = [nc.groups[scan_mode]]
        while stack:
            g = stack.pop()
            names.update(g.variables)
            stack.extend(g.groups.values())
        return names
    finally:
        nc.close()


def _open_scan_mode(path: Path, info: GranuleInfo, scan_mode: str, variables: list[str] | None = None) -> xr.Dataset:
    """Open one scan mode through gpm-api, loaded in memory; any failure -> GranuleError.

    Pass ``variables``: a whole scan mode of a radar granule (3-D range profiles) is gigabytes.
    """
    _hdf5_check(path)
    import gpm

    if variables is not None:
        # gpm-api refuses names a granule lacks (e.g. V06 vs V07 names): ask only for those present
        present = _variables_in(path, scan_mode, info)
        variables = [v for v in variables if v in present]
    out = io.StringIO()
    try:
        # gpm-api prints "Skipping scan mode ..." and warns about time precision; keep both quiet
        # and turn failures into one clear message. (redirect_stdout swaps sys.stdout process-wide
        # for the duration of the read: another thread's prints meanwhile land in the buffer.)
        with warnings.catch_warnings(), contextlib.redirect_stdout(out):
            warnings.simplefilter("ignore")
            ds = gpm.open_granule_dataset(str(path), scan_mode=scan_mode, variables=variables, chunks=None)
            ds = ds.load()
            ds.close()
    except Exception as e:  # noqa: BLE001 - re-raised as GranuleError with a diagnosis
        msg = str(e)
        if "EMPTY granule" in msg:
            raise NoValidData(f"{path.name}: PPS flags this granule as EMPTY (no data in it)") from None
        groups = _groups(path)
        if groups is not None and scan_mode not in groups:
            raise GranuleError(
                f"{path.name}: missing scan-mode group {scan_mode!r} needed for {info.product} "
                f"(groups in the file: {groups})"
            ) from None
        if groups is None:
            raise GranuleError(f"{path.name}: corrupt or unreadable HDF5 file ({type(e).__name__}: {msg})") from None
        detail = out.getvalue().strip().splitlines()
        extra = f"; {detail[-1]}" if detail else ""
        raise GranuleError(
            f"{path.name}: cannot read scan mode {scan_mode!r} of this {info.product} granule "
            f"({type(e).__name__}: {msg}{extra})"
        ) from None
    return ds


def _require(ds: xr.Dataset, names: list[str], path: Path, what: str) -> None:
    missing = [n for n in names if n not in ds.variables]
    if missing:
        raise GranuleError(f"{path.name}: {what} lacks variable(s) {missing} (found {sorted(ds.data_vars)[:20]}...)")


def _2d(ds: xr.Dataset, name: str) -> np.ndarray:
    """(along_track, cross_track) float array of a variable, fill already NaN."""
    return ds[name].transpose("along_track", "cross_track").values.astype(np.float64)


def _geo(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lat = _2d(ds, "lat")
    lon = _2d(ds, "lon")
    bad = ~((np.abs(lat) <= 90) & (np.abs(lon) <= 180))
    lat[bad] = np.nan
    lon[bad] = np.nan
    lon = np.where(lon == 180.0, -180.0, lon)  # schema: lon in [-180, 180)
    time = ds["time"].values.astype("datetime64[ns]")
    return lat, lon, time


#: gpm-api channel labels -> schema channel labels.
_GPM_CHANNEL_LABELS = {
    "10V": "10.65V", "10H": "10.65H", "19V": "18.7V", "19H": "18.7H", "23V": "23.8V",
    "37V": "36.64V", "37H": "36.64H", "89V": "89.0V", "89H": "89.0H",
    "165V": "166.0V", "165H": "166.0H", "183V3": "183.31±3V", "183V7": "183.31±7V",
}


def _tc_channels(ds: xr.Dataset, name: str, path: Path) -> tuple[np.ndarray, list[int]]:
    """(along, cross, n) Tb of ``name`` and the schema channel index of each of its channels."""
    da = ds[name].transpose("along_track", "cross_track", "pmw_frequency")
    labels = [str(v) for v in da["pmw_frequency"].values]
    try:
        idx = [schema.CHANNELS.index(_GPM_CHANNEL_LABELS[lab]) for lab in labels]
    except KeyError as e:
        raise GranuleError(f"{path.name}: unexpected channel {e.args[0]!r} in {name} (channels {labels})") from None
    tc = da.values.astype(np.float32)
    tc[tc < 0] = np.nan  # any fill gpm-api left undecoded
    return tc, idx


def _xyz(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    la, lo = np.deg2rad(lat), np.deg2rad(lon)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def nearest_s2_on_s1(lat1, lon1, lat2, lon2, max_distance_km: float = 15.0):
    """For each S1 pixel, the flat index of the nearest S2 pixel (great circle), or -1 if it is
    farther than ``max_distance_km``; also returns the distance to that pixel (km; NaN where there
    is none within ``max_distance_km`` or the S1 pixel or every S2 pixel lacks geolocation). The
    k-d tree search stops at ``max_distance_km``, so pixels far from every S2 pixel cost little."""
    from scipy.spatial import cKDTree

    ok2 = np.isfinite(lat2) & np.isfinite(lon2)
    ok1 = np.isfinite(lat1) & np.isfinite(lon1)
    index = np.full(lat1.shape, -1, dtype=np.int64)
    dist = np.full(lat1.shape, np.nan)
    if not ok2.any() or not ok1.any():
        return index, dist
    flat2 = np.flatnonzero(ok2.ravel())
    tree = cKDTree(_xyz(lat2.ravel()[flat2], lon2.ravel()[flat2]))
    bound = 2 * np.sin(min(max_distance_km / EARTH_RADIUS_KM, np.pi) / 2) * (1 + 1e-9)
    chord, j = tree.query(_xyz(lat1[ok1], lon1[ok1]), distance_upper_bound=bound)
    found = np.isfinite(chord)
    km = np.full(chord.shape, np.nan)
    km[found] = 2 * EARTH_RADIUS_KM * np.arcsin(np.clip(chord[found] / 2, 0, 1))
    near = found & (km <= max_distance_km)
    idx1 = np.where(near, flat2[np.minimum(j, len(flat2) - 1)], -1)
    index[ok1] = idx1
    dist[ok1] = np.where(near, km, np.nan)
    return index, dist


# --------------------------------------------------------------------------------------------
# Surface types
# --------------------------------------------------------------------------------------------

#: Flag written where a product gives no surface type (the schema's "unknown").
SURFACE_UNKNOWN_PLACEHOLDER = schema.SURFACE_UNKNOWN


def map_cmb_surface(surface: np.ndarray, snow_ice: np.ndarray | None) -> tuple[np.ndarray, int]:
    """2B-CMB / 2A-DPR surface flags -> schema flags; returns (flags, number of unknown pixels).

    ``surface`` is the DPR land/sea class (``Input/surfaceType`` in 2B-CMB, ``PRE/landSurfaceType``
    decoded by gpm-api in 2A-DPR): 0 ocean, 1 land, 2 coast, 3 inland water (raw PPS codes 0, 100,
    200, 300 are accepted too). ``snow_ice`` is ``snowIceCover``: 0 open water, 1 snow-free land,
    2 snow-covered land, 3 sea ice. Mapping: ocean -> 0 ocean, land -> 1 land, coast -> 2 coast,
    inland water -> 1 land (small water bodies inside land, as GPROF treats "standing water");
    then snowIceCover 3 -> 3 sea ice and 2 -> 4 snow override the class. Missing (NaN/negative)
    -> unknown (-1), counted.
    """
    s = np.asarray(surface, dtype=np.float64)
    s = np.where(s >= 100, np.floor(s / 100), s)
    out = np.full(s.shape, SURFACE_UNKNOWN_PLACEHOLDER, dtype=np.int8)
    known = np.isfinite(s) & (s >= 0) & (s <= 3)
    table = np.array([0, 1, 2, 1], dtype=np.int8)
    out[known] = table[s[known].astype(int)]
    if snow_ice is not None:
        si = np.asarray(snow_ice, dtype=np.float64)
        out[si == 3] = 3
        out[si == 2] = 4
        known |= np.isin(si, (2, 3))
    return out, int((~known).sum())


#: GPROF ``surfaceTypeIndex`` (1..18) -> schema flag.
GPROF_SURFACE_MAP = {
    1: 0,  # ocean
    2: 3,  # sea ice
    3: 1, 4: 1, 5: 1, 6: 1, 7: 1,  # high/medium/low/sparse vegetation, desert
    8: 4, 9: 4, 10: 4, 11: 4,  # elevated / high / moderate / light snow cover
    12: 1,  # standing water (inland, within land)
    13: 2, 14: 2, 15: 2,  # ocean/water coast, mixed coast, land coast
    16: 3,  # sea-ice edge
    17: 1,  # mountain rain
    18: 4,  # mountain snow
}


def map_gprof_surface(index: np.ndarray) -> tuple[np.ndarray, int]:
    """GPROF ``surfaceTypeIndex`` -> schema flags (:data:`GPROF_SURFACE_MAP`); (flags, n unknown)."""
    s = np.asarray(index, dtype=np.float64)
    out = np.full(s.shape, SURFACE_UNKNOWN_PLACEHOLDER, dtype=np.int8)
    known = np.zeros(s.shape, bool)
    for k, v in GPROF_SURFACE_MAP.items():
        m = s == k
        out[m] = v
        known |= m
    return out, int((~known).sum())


# --------------------------------------------------------------------------------------------
# Products
# --------------------------------------------------------------------------------------------


def _info(path: str | Path, expect: str) -> tuple[Path, GranuleInfo]:
    p = Path(path)
    info = parse_granule_name(p)
    if info.product != expect:
        raise GranuleError(f"{p.name}: is a {info.product} granule, not {expect}")
    _check_header(p, info)
    return p, info


def _header_fields(path: Path) -> dict[str, str]:
    """``key=value`` pairs of the file's PPS ``FileHeader`` attribute ({} if it has none)."""
    import h5py

    try:
        with h5py.File(path, "r") as h:
            raw = h.attrs.get("FileHeader")
    except Exception:  # noqa: BLE001 - unreadable files are diagnosed by _hdf5_check / the reader
        return {}
    if raw is None:
        return {}
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | np.bytes_) else str(raw)
    return dict(line.strip().split("=", 1) for line in text.split(";") if "=" in line)


def _check_header(path: Path, info: GranuleInfo) -> None:
    """The file name and the file's own ``FileHeader`` must agree on the orbit (``GranuleNumber``):
    a granule renamed to another orbit's name would otherwise be paired with the wrong orbit."""
    if not path.is_file():
        return
    number = _header_fields(path).get("GranuleNumber", "").strip()
    if number.isdigit() and int(number) != info.orbit:
        raise GranuleError(f"{path.name}: the file name says orbit {info.orbit} but its FileHeader says "
                           f"GranuleNumber={number}: a granule of another orbit, renamed?")


def _common_attrs(info: GranuleInfo, scan_mode: str) -> dict:
    return {
        "product": info.product, "algorithm": info.algorithm, "scan_mode": scan_mode,
        "granule": info.filename, "granule_start": info.start.isoformat(),
        "granule_end": info.end.isoformat(),
    }


def open_1c_gmi(path: str | Path, *, max_s2_distance_km: float = 15.0, surface_from: str | Path | None = "auto",
                allow_empty: bool = False) -> xr.Dataset:
    """1C-GMI -> canonical swath with all 13 channels on the S1 grid (no ``surface_precip``).

    S1 channels (9) are taken as they are; each S1 pixel takes the four S2 channels of the S2
    pixel nearest to it in lat/lon (great-circle), or NaN if that pixel is farther than
    ``max_s2_distance_km`` (the S2 feedhorn looks tens of km away from S1 at the same scan index,
    about 55 km, four scans, in orbit 79; the first/last scans of a granule have no S2 partner).
    S1 pixels are ~6 km apart across and ~13 km along track, so a covered pixel's partner is
    within ~7 km. Fill (-9999.9) -> NaN.

    1C carries no surface type. ``surface_from="auto"`` takes it from the 2A-GMI (GPROF) granule
    of the same orbit in the same folder if there is one (same S1 grid, checked), a path uses
    that file, ``None`` skips it; without one, ``surface_type`` is unknown (-1) and the
    attribute ``surface_type_source`` says it is unknown.

    Raises :class:`NoValidData` ("no valid brightness temperatures in this granule: <name>") when
    no Tb is valid, unless ``allow_empty``.
    """
    p, info = _info(path, "1C-GMI")
    s1 = _open_scan_mode(p, info, "S1", variables=["Tc"])
    s2 = _open_scan_mode(p, info, "S2", variables=["Tc"])
    _require(s1, ["Tc", "lat", "lon", "time"], p, "scan mode S1")
    _require(s2, ["Tc", "lat", "lon"], p, "scan mode S2")
    lat, lon, time = _geo(s1)
    lat2, lon2, _ = _geo(s2)
    tc1, idx1 = _tc_channels(s1, "Tc", p)
    tc2, idx2 = _tc_channels(s2, "Tc", p)

    tc = np.full(lat.shape + (schema.N_CHANNELS,), np.nan, dtype=np.float32)
    tc[..., idx1] = tc1
    nn, dist = nearest_s2_on_s1(lat, lon, lat2, lon2, max_s2_distance_km)
    has = nn >= 0
    tc2_flat = tc2.reshape(-1, tc2.shape[-1])
    merged = np.full(lat.shape + (tc2.shape[-1],), np.nan, dtype=np.float32)
    merged[has] = tc2_flat[nn[has]]
    tc[..., idx2] = merged

    lo, hi = schema.TB_VALID_RANGE
    if not (np.isfinite(tc) & (tc >= lo) & (tc <= hi)).any() and not allow_empty:
        raise NoValidData(f"no valid brightness temperatures in this granule: {p.name}")

    surface, surface_src = _surface_for_1c(p, info, lat, lon, surface_from)
    attrs = _common_attrs(info, "S1+S2")
    attrs.update({
        "s2_regridding": f"S2 nearest neighbour (great-circle) onto S1 pixels, max {max_s2_distance_km} km",
        "s2_pixels_without_partner": int((~has).sum()),
        "surface_type_source": surface_src,
    })
    return schema.make_swath(
        tc=tc, lat=lat, lon=lon, time=time, surface_type=surface, orbit_number=info.orbit,
        source=f"PPS {info.product} {info.algorithm}", product_version=info.version, attrs=attrs,
    )


def _surface_for_1c(path: Path, info: GranuleInfo, lat, lon, surface_from) -> tuple[np.ndarray, str]:
    placeholder = np.full(lat.shape, SURFACE_UNKNOWN_PLACEHOLDER, np.int8)
    companion = None
    if surface_from == "auto":
        cands = sorted(path.parent.glob(f"2A*.{info.satellite}.GMI.*.{info.orbit:06d}.*"))
        for c in cands:
            try:
                if parse_granule_name(c).product == "2A-GMI":
                    companion = c
                    break
            except GranuleError:
                continue
    elif surface_from is not None:
        companion = Path(surface_from)
    if companion is None:
        return placeholder, ("unknown: 1C-GMI has no surface type and no 2A-GMI granule of this orbit "
                             f"was given; surface_type is the placeholder {SURFACE_UNKNOWN_PLACEHOLDER}")
    try:
        cinfo = parse_granule_name(companion)
        if cinfo.product != "2A-GMI":
            raise GranuleError(f"{companion.name}: is a {cinfo.product} granule, not 2A-GMI")
        ds = _open_scan_mode(companion, cinfo, "S1", variables=["surfaceTypeIndex"])
        _require(ds, ["surfaceTypeIndex", "lat", "lon"], companion, "scan mode S1")
        clat, clon, _ = _geo(ds)
        if clat.shape != lat.shape or np.nanmax(np.abs(clat - lat), initial=0) > 0.01 or np.nanmax(
                np.abs(((clon - lon) + 180) % 360 - 180), initial=0) > 0.01:
            raise GranuleError(f"{companion.name}: its S1 grid does not match {path.name}; cannot take its surface type")
    except GranuleError as e:
        if surface_from != "auto":
            raise
        # found by name only: a bad neighbour must not stop the 1C from opening
        return placeholder, (f"unknown: the 2A-GMI granule next to it could not be used ({e}); "
                             f"surface_type is the placeholder {SURFACE_UNKNOWN_PLACEHOLDER}")
    flags, unknown = map_gprof_surface(_2d(ds, "surfaceTypeIndex"))
    return flags, f"GPROF surfaceTypeIndex from {companion.name} ({unknown} pixels unknown -> unknown (-1))"


#: 2B-CMB surface precipitation, in order of preference (V07 name, V06 name, near-surface).
_CMB_RAIN_VARS = ("estimSurfPrecipTotRate", "surfPrecipTotRate", "nearSurfPrecipTotRate")


def open_2b_cmb(path: str | Path, *, allow_empty: bool = False) -> xr.Dataset:
    """2B-CMB (DPR+GMI CORRA, scan mode KuGMI) -> reference swath on its own grid.

    ``surface_precip`` (mm h-1) is ``estimSurfPrecipTotRate`` (total precipitation estimated at the
    surface, through the clutter zone; V07 name), falling back to ``surfPrecipTotRate`` (V06) and
    then ``nearSurfPrecipTotRate``; the one used is in the ``surface_precip_variable`` attribute.
    Fill and negative values -> NaN. ``Tc`` is the 13-channel ``simulatedBrightTemp`` (Tb the
    combined algorithm simulates from its solution, not observed ones; NaN where not simulated) or
    all NaN if absent (``Tc_source`` says which). ``surface_type`` from ``Input/surfaceType`` and
    ``Input/snowIceCover`` (:func:`map_cmb_surface`). Raises :class:`NoValidData` if no surface
    precipitation is valid, unless ``allow_empty``.
    """
    p, info = _info(path, "2B-CMB")
    ds = _open_scan_mode(p, info, "KuGMI", variables=[*_CMB_RAIN_VARS, "simulatedBrightTemp", "surfaceType", "snowIceCover"])
    _require(ds, ["lat", "lon", "time"], p, "scan mode KuGMI")
    var = next((v for v in _CMB_RAIN_VARS if v in ds), None)
    if var is None:
        raise GranuleError(f"{p.name}: no surface precipitation variable (estimSurfPrecipTotRate, "
                           "surfPrecipTotRate or nearSurfPrecipTotRate) in scan mode KuGMI")
    lat, lon, time = _geo(ds)
    rain = _2d(ds, var)
    negative = int((rain < 0).sum())
    rain[rain < 0] = np.nan
    if not np.isfinite(rain).any() and not allow_empty:
        raise NoValidData(f"no valid surface precipitation in this granule: {p.name}")
    tc = np.full(lat.shape + (schema.N_CHANNELS,), np.nan, np.float32)
    if "simulatedBrightTemp" in ds:
        sim, idx = _tc_channels(ds, "simulatedBrightTemp", p)
        tc[..., idx] = sim
        tc_source = "simulatedBrightTemp: Tb simulated by the combined algorithm (not observed)"
    else:
        tc_source = "none: no simulatedBrightTemp in this granule, Tc is all NaN"
    surf = _2d(ds, "surfaceType") if "surfaceType" in ds else np.full(lat.shape, np.nan)
    snow = _2d(ds, "snowIceCover") if "snowIceCover" in ds else None
    flags, unknown = map_cmb_surface(surf, snow)
    attrs = _common_attrs(info, "KuGMI")
    attrs.update({
        "sensor": "DPRGMI", "surface_precip_variable": var, "surface_precip_negative_to_nan": negative,
        "Tc_source": tc_source, "surface_type_source": f"Input/surfaceType + snowIceCover ({unknown} unknown -> -1)",
        "title": f"GPM 2B-CMB reference swath, orbit {info.orbit}",
    })
    return schema.make_swath(
        tc=tc, lat=lat, lon=lon, time=time, surface_type=flags, orbit_number=info.orbit,
        source=f"PPS {info.product} {info.algorithm}", surface_precip=rain,
        product_version=info.version, attrs=attrs,
    )


def open_2a_dpr(path: str | Path, *, allow_empty: bool = False) -> xr.Dataset:
    """2A-DPR (scan mode FS) -> reference swath: ``surface_precip`` = ``precipRateNearSurface``.

    A radar has no brightness temperatures: the dataset is a canonical swath whose ``Tc`` is all
    NaN (so ``quality_flag`` has the tb_missing bit everywhere) with the global attribute
    ``reference_only = 1``; it validates as a swath and is meant to be used as a reference, never
    as retrieval input. ``surface_type`` from ``landSurfaceType`` + ``snowIceCover``
    (:func:`map_cmb_surface`). Raises :class:`NoValidData` if no precipitation is valid, unless
    ``allow_empty``.
    """
    p, info = _info(path, "2A-DPR")
    ds = _open_scan_mode(p, info, "FS", variables=["precipRateNearSurface", "landSurfaceType", "snowIceCover"])
    _require(ds, ["precipRateNearSurface", "lat", "lon", "time"], p, "scan mode FS")
    lat, lon, time = _geo(ds)
    rain = _2d(ds, "precipRateNearSurface")
    negative = int((rain < 0).sum())
    rain[rain < 0] = np.nan
    if not np.isfinite(rain).any() and not allow_empty:
        raise NoValidData(f"no valid surface precipitation in this granule: {p.name}")
    surf = _2d(ds, "landSurfaceType") if "landSurfaceType" in ds else np.full(lat.shape, np.nan)
    snow = _2d(ds, "snowIceCover") if "snowIceCover" in ds else None
    flags, unknown = map_cmb_surface(surf, snow)
    tc = np.full(lat.shape + (schema.N_CHANNELS,), np.nan, np.float32)
    attrs = _common_attrs(info, "FS")
    attrs.update({
        "sensor": "DPR", "reference_only": 1, "surface_precip_variable": "precipRateNearSurface",
        "surface_precip_negative_to_nan": negative,
        "Tc_source": "none: radar product, Tc is all NaN",
        "surface_type_source": f"landSurfaceType + snowIceCover ({unknown} unknown -> -1)",
        "title": f"GPM 2A-DPR reference swath, orbit {info.orbit}",
    })
    return schema.make_swath(
        tc=tc, lat=lat, lon=lon, time=time, surface_type=flags, orbit_number=info.orbit,
        source=f"PPS {info.product} {info.algorithm}", surface_precip=rain,
        product_version=info.version, attrs=attrs,
    )


#: Quantile levels GPROF gives: its 1st and 2nd tertiles.
GPROF_QUANTILES = (1.0 / 3.0, 2.0 / 3.0)


def open_2a_gprof(path: str | Path, *, allow_empty: bool = False) -> xr.Dataset:
    """2A-GMI GPROF (scan mode S1) -> retrieval output (``kind="retrieval"``): a baseline model.

    GPROF publishes no quantiles, only a posterior mean and two tertiles; the approximation is:

    * ``precip_quantiles`` at levels 1/3 and 2/3 = ``precip1stTertial``, ``precip2ndTertial``
      (sorted per pixel if they cross; the count is in ``quantiles_sorted``);
    * ``precip_mean`` = ``surfacePrecipitation`` (GPROF's Bayesian posterior mean);
    * ``precip_median`` = midpoint of the two tertiles (linear interpolation of the CDF between
      them, the same piecewise-linear CDF the quantile distribution uses);
    * ``pop`` = ``probabilityOfPrecip`` / 100 (GPROF's own rain/no-rain definition, not exactly
      the schema's > 0.1 mm h-1);
    * ``p_heavy`` is NaN: not derivable from two tertiles (``p_heavy_source`` says so).

    ``model`` is ``"GPROF"`` + algorithm (e.g. ``GPROF2021v1``); with no checkpoint,
    ``model_sha256`` is the sha256 of "<product> <algorithm> <version>". ``surface_type`` from
    ``surfaceTypeIndex`` (:func:`map_gprof_surface`). Raises :class:`NoValidData` if
    ``surfacePrecipitation`` has no valid value, unless ``allow_empty``.
    """
    p, info = _info(path, "2A-GMI")
    ds = _open_scan_mode(p, info, "S1", variables=[
        "surfacePrecipitation", "precip1stTertial", "precip2ndTertial", "probabilityOfPrecip",
        "surfaceTypeIndex", "pixelStatus"])
    _require(ds, ["surfacePrecipitation", "lat", "lon", "time"], p, "scan mode S1")
    lat, lon, time = _geo(ds)

    def rate(name):
        if name not in ds:
            return np.full(lat.shape, np.nan)
        v = _2d(ds, name)
        v[v < 0] = np.nan
        return v

    mean = rate("surfacePrecipitation")
    if not np.isfinite(mean).any() and not allow_empty:
        status = ""
        if "pixelStatus" in ds:
            vals, counts = np.unique(_2d(ds, "pixelStatus"), return_counts=True)
            status = f" (pixelStatus counts: {dict(zip(vals.tolist(), counts.tolist()))})"
        raise NoValidData(f"no valid GPROF surface precipitation in this granule: {p.name}{status}")
    t1, t2 = rate("precip1stTertial"), rate("precip2ndTertial")
    q = np.stack([t1, t2], axis=-1)
    crossed = int((np.isfinite(q).all(-1) & (t1 > t2)).sum())
    q = np.sort(q, axis=-1)  # NaN sort last; a pixel with one NaN tertile keeps it NaN-last
    median = 0.5 * (q[..., 0] + q[..., 1])  # NaN unless both tertiles are valid
    if "probabilityOfPrecip" in ds:
        pop = _2d(ds, "probabilityOfPrecip") / 100.0
        pop[(pop < 0) | (pop > 1)] = np.nan
    else:
        pop = np.full(lat.shape, np.nan)
    flags, unknown = (map_gprof_surface(_2d(ds, "surfaceTypeIndex")) if "surfaceTypeIndex" in ds
                      else (np.full(lat.shape, 0, np.int8), lat.size))

    A, C = schema.ALONG, schema.CROSS
    rain_attrs = {"units": schema.RAIN_UNITS, "standard_name": "lwe_precipitation_rate"}
    data_vars = {
        "precip_quantiles": ((A, C, schema.QUANTILE), q.astype(np.float32),
                             {**rain_attrs, "long_name": "GPROF precipitation tertiles"}),
        "precip_mean": ((A, C), mean.astype(np.float32), {**rain_attrs, "long_name": "GPROF surfacePrecipitation (posterior mean)"}),
        "precip_median": ((A, C), median.astype(np.float32), {**rain_attrs, "long_name": "midpoint of the GPROF tertiles (approximate median)"}),
        "pop": ((A, C), pop.astype(np.float32), {"units": "1", "long_name": "GPROF probabilityOfPrecip / 100"}),
        "p_heavy": ((A, C), np.full(lat.shape, np.nan, np.float32), {"units": "1", "long_name": schema.RETRIEVAL_PRODUCTS["p_heavy"][1]}),
        "surface_type": ((A, C), flags, {"long_name": "surface type", "flag_values": np.array(list(schema.SURFACE_TYPES), np.int8),
                                         "flag_meanings": " ".join(schema.SURFACE_TYPES.values())}),
    }
    coords = {
        "lat": ((A, C), lat.astype(np.float32), {"units": "degrees_north", "standard_name": "latitude"}),
        "lon": ((A, C), lon.astype(np.float32), {"units": "degrees_east", "standard_name": "longitude"}),
        "time": ((A,), time, {"standard_name": "time"}),
        schema.QUANTILE: ((schema.QUANTILE,), np.array(GPROF_QUANTILES), {"long_name": "quantile level"}),
    }
    model = f"GPROF{info.algorithm[5:]}" if info.algorithm.upper().startswith("GPROF") else f"GPROF-{info.algorithm}"
    attrs = {
        "Conventions": "CF-1.10", "title": f"GPM GPROF retrieval, orbit {info.orbit}",
        "orbit_number": info.orbit, "sensor": "GMI", "platform": info.satellite,
        "source": f"PPS {info.product} {info.algorithm}", "product_version": info.version,
        "model": model,
        "model_sha256": hashlib.sha256(f"{info.product} {info.algorithm} {info.version}".encode()).hexdigest(),
        **_common_attrs(info, "S1"),
        "quantile_approximation": "levels 1/3 and 2/3 from precip1stTertial/precip2ndTertial; median = their midpoint",
        "quantiles_sorted": crossed,
        "p_heavy_source": "not available from GPROF (NaN)",
        "surface_type_source": f"surfaceTypeIndex ({unknown} unknown -> -1)",
    }
    out = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    return schema.validate(out, kind="retrieval")


def open_latlon(path: str | Path, scan_mode: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Geolocation only, fast: ``(lat, lon)`` arrays (along_track, cross_track), fill -> NaN.

    For the orbit index, which must look at many granules: reads the two arrays of the product's
    scan mode (:data:`SUPPORTED_PRODUCTS`; else ``scan_mode`` or the first group that has
    ``Latitude``) straight through netCDF4 instead of building the whole gpm-api dataset.
    Errors as for :func:`open_granule`.
    """
    p = Path(path)
    info = parse_granule_name(p)
    _hdf5_check(p)
    import netCDF4

    try:
        nc = netCDF4.Dataset(p, "r")
    except Exception as e:  # noqa: BLE001
        raise GranuleError(f"{p.name}: corrupt or unreadable HDF5 file ({type(e).__name__}: {e})") from None
    try:
        mode = scan_mode or SUPPORTED_PRODUCTS.get(info.product) or next(
            (g for g in nc.groups if "Latitude" in nc.groups[g].variables), None)
        if mode is None or mode not in nc.groups:
            raise GranuleError(f"{p.name}: missing scan-mode group {mode!r} with geolocation "
                               f"(groups in the file: {list(nc.groups)})")
        grp = nc.groups[mode]
        if "Latitude" not in grp.variables or "Longitude" not in grp.variables:
            raise GranuleError(f"{p.name}: scan mode {mode!r} has no Latitude/Longitude")
        grp.set_auto_mask(False)
        lat = np.asarray(grp.variables["Latitude"][:], dtype=np.float64)
        lon = np.asarray(grp.variables["Longitude"][:], dtype=np.float64)
    except GranuleError:
        raise
    except Exception as e:  # noqa: BLE001
        raise GranuleError(f"{p.name}: cannot read geolocation ({type(e).__name__}: {e})") from None
    finally:
        nc.close()
    bad = ~((np.abs(lat) <= 90) & (np.abs(lon) <= 180))
    lat[bad] = np.nan
    lon[bad] = np.nan
    return lat, lon


_OPENERS = {"1C-GMI": open_1c_gmi, "2A-GMI": open_2a_gprof, "2A-DPR": open_2a_dpr, "2B-CMB": open_2b_cmb}


def open_granule(path: str | Path, **kw) -> xr.Dataset:
    """Open a GPM granule in the canonical schema, choosing the reader from the file name.

    1C-GMI -> :func:`open_1c_gmi`, 2B-CMB -> :func:`open_2b_cmb`, 2A-DPR -> :func:`open_2a_dpr`
    (swaths); 2A-GMI -> :func:`open_2a_gprof` (retrieval). ``kw`` goes to the reader.
    """
    info = parse_granule_name(path)
    opener = _OPENERS.get(info.product)
    if opener is None:
        raise GranuleError(f"{info.filename}: product {info.product} is not supported "
                           f"(supported: {sorted(_OPENERS)})")
    return opener(path, **kw)

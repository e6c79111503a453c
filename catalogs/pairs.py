"""GMI × CMB pairs: the 2B-CMB surface precipitation collocated on the 1C-GMI pixels it covers.

These pairs are what DRAIN and GPROF are trained on: observed brightness temperatures (1C-GMI) with
the combined radar-radiometer surface precipitation (2B-CMB, ``estimSurfPrecipTotRate``) as the
reference, on the GMI grid.

Collocation (:func:`collocate_cmb`)
-----------------------------------
* Each GMI (S1) pixel takes the CMB value of the footprint whose centre is nearest to the pixel
  centre (great-circle distance, k-d tree on unit vectors: no antimeridian or pole special case),
  if that footprint is within ``max_distance_km`` (default :data:`MAX_DISTANCE_KM` = 5 km, the DPR
  footprint spacing: a pixel inside the Ku swath is never farther than half a diagonal, ≈ 3.5 km,
  from a footprint centre; a pixel beyond the swath edge by more than one spacing gets nothing).
  Nearest, not an antenna-pattern average: it keeps the radar's own values and needs no GMI beam
  model; the GMI footprint (≈ 11 × 18 km at 37 GHz) is larger than a DPR footprint (5 km), so the
  pairs carry the radar's finer-scale variability (documented in docs/user-guide.md).
* The time difference CMB − GMI of each pair is recorded (``cmb_time_difference``, s): GMI looks
  ≈ 470 km ahead of the satellite, so the DPR sees the same ground ≈ 67 s later. Pairs further apart
  in time than ``max_time_difference_s`` (default 300 s) are dropped: the rain has moved.
* GMI pixels with no pair have NaN ``surface_precip`` (as outside the synthetic reference strip).
* The pair distance is kept as ``cmb_distance`` (km).

:func:`open_pair` opens a 1C-GMI granule with the 2B-CMB granule of the same orbit (found next to
it or in gpm-api's archive tree) and checks that they belong together: same orbit, overlapping
times, and at least one pair. :func:`archive_index` lists an archive by orbit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from catalogs import gpm, schema
from catalogs.gpm import GranuleError, NoValidData

__all__ = ["MAX_DISTANCE_KM", "MAX_TIME_DIFFERENCE_S", "collocate_cmb", "find_companion", "open_pair",
           "archive_index", "ArchiveError"]

MAX_DISTANCE_KM = 5.0
MAX_TIME_DIFFERENCE_S = 300.0


class ArchiveError(GranuleError):
    """An archive, or a pair of granules in it, cannot be used as asked (names the files)."""


def collocate_cmb(gmi: xr.Dataset, cmb: xr.Dataset, *, max_distance_km: float = MAX_DISTANCE_KM,
                  max_time_difference_s: float = MAX_TIME_DIFFERENCE_S) -> xr.Dataset:
    """The GMI swath ``gmi`` with ``surface_precip`` = the CMB swath's ``surface_precip`` at the
    nearest footprint (see the module doc), plus ``cmb_distance`` (km) and ``cmb_time_difference``
    (s, CMB − GMI). Raises :class:`ArchiveError` if the two are of different orbits or no pixel
    pairs within the limits."""
    go, co = int(gmi.attrs.get("orbit_number", -1)), int(cmb.attrs.get("orbit_number", -1))
    gname, cname = gmi.attrs.get("granule", "the GMI swath"), cmb.attrs.get("granule", "the CMB swath")
    if go != co:
        raise ArchiveError(f"{cname} is a CMB granule of orbit {co}, not of orbit {go} ({gname})")
    lat, lon = gmi["lat"].values.astype(np.float64), gmi["lon"].values.astype(np.float64)
    clat, clon = cmb["lat"].values.astype(np.float64), cmb["lon"].values.astype(np.float64)
    idx, dist = gpm.nearest_s2_on_s1(lat, lon, clat, clon, max_distance_km)
    has = idx >= 0
    ctime = cmb["time"].values.astype("datetime64[ns]")
    gtime = gmi["time"].values.astype("datetime64[ns]")
    n_c = clat.shape[1]
    dt = np.full(lat.shape, np.nan)
    scan = np.where(has, idx // n_c, 0)
    dt_all = (ctime[scan] - gtime[:, None]) / np.timedelta64(1, "s")
    dt[has] = dt_all[has]
    too_late = has & (np.abs(dt) > max_time_difference_s)
    if has.any() and too_late[has].all():
        raise ArchiveError(
            f"{cname} and {gname}: every footprint pair is more than {max_time_difference_s:g} s apart "
            f"(median {np.nanmedian(np.abs(dt)):.0f} s): mismatched times")
    has &= ~too_late
    if not has.any():
        raise ArchiveError(f"{cname} covers no pixel of {gname} within {max_distance_km:g} km: "
                           "the granules do not overlap")
    rain = np.full(lat.shape, np.nan, np.float32)
    rain[has] = cmb["surface_precip"].values.ravel()[idx[has]]
    out = gmi.copy()
    A, C = schema.ALONG, schema.CROSS
    out["surface_precip"] = ((A, C), rain, {
        "units": schema.RAIN_UNITS, "standard_name": "lwe_precipitation_rate",
        "long_name": "2B-CMB surface precipitation at the nearest DPR footprint (reference)",
        "source": f"{cname} {cmb.attrs.get('surface_precip_variable', 'surface_precip')}"})
    out["cmb_distance"] = ((A, C), np.where(has, dist, np.nan).astype(np.float32), {
        "units": "km", "long_name": "distance from the GMI pixel centre to the collocated CMB footprint centre"})
    out["cmb_time_difference"] = ((A, C), np.where(has, dt, np.nan).astype(np.float32), {
        "units": "s", "long_name": "time of the CMB footprint minus time of the GMI scan"})
    st = out["surface_type"].values.copy()
    unknown = (st == schema.SURFACE_UNKNOWN) & has
    st[unknown] = cmb["surface_type"].values.ravel()[idx[unknown]]
    out["surface_type"] = out["surface_type"].copy(data=st)
    out.attrs.update({
        "reference": f"2B-CMB {cname}", "reference_collocation":
            f"nearest CMB footprint centre within {max_distance_km:g} km and {max_time_difference_s:g} s",
        "reference_pixels_collocated": int(has.sum()),
        "reference_pairs_dropped_time": int(too_late.sum()),
        "reference_median_time_difference_s": float(np.nanmedian(dt[has])),
    })
    return schema.validate(out)


def find_companion(path: str | Path, product: str, roots=None) -> Path | None:
    """The granule of ``product`` for the same orbit as ``path``: in the same folder, or at the
    place gpm-api's archive tree puts it (``.../GPM/RS/V07/<category>/<product>/YYYY/MM/DD``).
    With ``roots`` (folders), only a granule that resolves inside one of them is taken: a server
    never reads a file outside its configured roots, even one found next to a permitted file."""
    from catalogs.config import PathOutsideRoots, confine
    from catalogs.pps import PRODUCTS

    p = Path(path)
    info = gpm.parse_granule_name(p)
    level, sensor = product.split("-")[0], PRODUCTS[product][1] if product in PRODUCTS else product.split("-")[1]
    pattern = f"{level}*.{info.satellite}.{sensor}.*.{info.orbit:06d}.*"
    folders = [p.parent]
    parts = p.parent.parts
    if len(parts) >= 5 and product in PRODUCTS:
        _, _, _, category, gpm_name = PRODUCTS[product]
        base = Path(*parts[:-5])
        for day in {info.start.date(), info.end.date()}:
            folders.append(base / category / gpm_name / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}")
    for folder in folders:
        for c in sorted(folder.glob(pattern)):
            try:
                if gpm.parse_granule_name(c).product != product:
                    continue
                return confine(c, roots) if roots is not None else c
            except (GranuleError, PathOutsideRoots):
                continue
    return None


def open_pair(path_1c: str | Path, cmb: str | Path | None = "auto", *, max_distance_km: float = MAX_DISTANCE_KM,
              max_time_difference_s: float = MAX_TIME_DIFFERENCE_S, allow_empty: bool = False,
              roots=None) -> xr.Dataset:
    """Open a 1C-GMI granule with its 2B-CMB reference collocated (:func:`collocate_cmb`).

    ``cmb="auto"`` finds the CMB granule of the same orbit (:func:`find_companion`) and refuses
    to go on without one; ``"if-found"`` collocates it when there is one and otherwise opens the
    1C alone (no ``surface_precip``); a path uses that file; ``None`` opens the 1C alone.
    ``roots``: companions found automatically must lie inside these folders (:func:`find_companion`). The 2A-GMI granule of the orbit, if found the same way,
    gives the surface type. Errors (:class:`~catalogs.gpm.GranuleError`) name the files."""
    p1 = Path(path_1c)
    info = gpm.parse_granule_name(p1)
    if info.product != "1C-GMI":
        raise ArchiveError(f"{p1.name}: is a {info.product} granule; a pair starts from a 1C-GMI granule")
    gprof = find_companion(p1, "2A-GMI", roots)
    gmi = gpm.open_1c_gmi(p1, surface_from=gprof if gprof is not None else None, allow_empty=allow_empty)
    if cmb is None:
        return gmi
    pc = find_companion(p1, "2B-CMB", roots) if cmb in ("auto", "if-found") else Path(cmb)
    if pc is None and cmb == "if-found":
        return gmi
    if pc is None:
        raise ArchiveError(f"{p1.name}: no 2B-CMB granule of orbit {info.orbit} next to it or in the archive tree")
    cinfo = gpm.parse_granule_name(pc)
    if cinfo.product != "2B-CMB":
        raise ArchiveError(f"{pc.name}: is a {cinfo.product} granule, not 2B-CMB")
    if cinfo.orbit != info.orbit:
        raise ArchiveError(f"{pc.name} is a CMB granule of orbit {cinfo.orbit}, not of orbit {info.orbit} ({p1.name})")
    if cinfo.end < info.start or cinfo.start > info.end:
        raise ArchiveError(f"{pc.name} ({cinfo.start:%Y-%m-%d %H:%M}..{cinfo.end:%H:%M}) and {p1.name} "
                           f"({info.start:%Y-%m-%d %H:%M}..{info.end:%H:%M}) do not overlap in time: mismatched times")
    try:
        ref = gpm.open_2b_cmb(pc)
    except NoValidData as e:
        raise NoValidData(f"{e} (the reference of {p1.name})") from None
    return collocate_cmb(gmi, ref, max_distance_km=max_distance_km, max_time_difference_s=max_time_difference_s)


_INDEX_COLUMNS = ["orbit", "start", "end", "1C-GMI", "2B-CMB", "2A-GMI"]


def archive_index(root: str | Path, start=None, end=None) -> pd.DataFrame:
    """One row per orbit of the archive under ``root`` (file names only, nothing opened):
    ``orbit, start, end`` (of the 1C-GMI granule) and the paths of its ``1C-GMI``, ``2B-CMB``
    and ``2A-GMI`` granules ('' where missing), restricted to granules starting in [start, end)."""
    table = gpm.scan_granules(root)
    rows = {}
    for r in table.itertuples(index=False):
        if r.product not in ("1C-GMI", "2B-CMB", "2A-GMI"):
            continue
        row = rows.setdefault(int(r.orbit), {"orbit": int(r.orbit), "start": pd.NaT, "end": pd.NaT,
                                             "1C-GMI": "", "2B-CMB": "", "2A-GMI": ""})
        if row[r.product]:
            raise ArchiveError(f"orbit {r.orbit} has two {r.product} granules: {Path(row[r.product]).name} "
                               f"and {Path(r.path).name}")
        row[r.product] = r.path
        if r.product == "1C-GMI" or pd.isna(row["start"]):
            row["start"], row["end"] = r.start, r.end
    df = pd.DataFrame(sorted(rows.values(), key=lambda d: d["orbit"]), columns=_INDEX_COLUMNS)
    if start is not None:
        df = df[df["start"] >= pd.Timestamp(start)]
    if end is not None:
        df = df[df["start"] < pd.Timestamp(end)]
    return df.reset_index(drop=True)

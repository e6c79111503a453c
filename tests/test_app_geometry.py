"""Map geometry: antimeridian-safe coordinates, full-resolution rasterising, coastlines offline."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from app import coastlines
from app.geometry import SwathGeometry, _row_bounds, rasterize, swath_geometry, unwrap_longitudes
from tests.app_helpers import orbit_like_swath


@pytest.fixture(scope="module")
def crossing():
    ds = orbit_like_swath(lon0=150.0)
    lon = ds["lon"].values
    assert lon.max() > 175 and lon.min() < -175, "the test swath must cross the antimeridian"
    return ds


def _far_painted(geom, agg, limit):
    """Painted screen pixels further than ``limit`` (map units) from every swath pixel centre."""
    tree = cKDTree(np.column_stack([geom.x[geom.drawable], geom.y[geom.drawable]]))
    yy, xx = np.meshgrid(agg.y.values, agg.x.values, indexing="ij")
    painted = np.isfinite(agg.values)
    d, _ = tree.query(np.column_stack([xx[painted], yy[painted]]))
    return int((d > limit).sum()), int(painted.sum())


def test_unwrapped_longitudes_are_continuous(crossing):
    x = unwrap_longitudes(crossing["lon"].values)
    assert np.abs(np.diff(x, axis=0)).max() < 2
    assert np.abs(np.diff(x, axis=1)).max() < 2
    assert -180 <= x[0, x.shape[1] // 2] < 180
    # same places: equal modulo 360
    np.testing.assert_allclose(((x - crossing["lon"].values) + 180) % 360 - 180, 0, atol=1e-3)


def test_unwrap_keeps_nan_rows():
    lon = np.array([[170.0, 175.0, 179.0], [np.nan, np.nan, np.nan], [178.0, -178.0, -174.0]])
    x = unwrap_longitudes(lon)
    assert np.isnan(x[1]).all()
    np.testing.assert_allclose(x[2], [178, 182, 186])


@pytest.mark.parametrize("quads", [True, False])
@pytest.mark.parametrize("projection,limit", [("PlateCarree", 1.0), ("Robinson", 120e3), ("Mollweide", 120e3)])
def test_crossing_orbit_draws_without_smearing(crossing, projection, limit, quads):
    geom = swath_geometry(crossing["lat"].values, crossing["lon"].values, projection)
    x0, x1, y0, y1 = geom.extent
    if quads:
        geom.spacing = (np.inf, np.inf)  # force the quad path at any zoom
        w, h = 600, 300
    else:  # a canvas coarse enough for the points path
        w = int(min(600, 0.7 * (x1 - x0) / geom.spacing[0]))
        h = int(min(300, 0.7 * (y1 - y0) / geom.spacing[1]))
    agg = rasterize(geom, np.ones(geom.shape), width=w, height=h)
    far, painted = _far_painted(geom, agg, limit)
    assert painted > 300
    assert far == 0, f"{far} of {painted} painted pixels lie away from the swath (smearing)"


def test_points_and_quads_agree_on_a_whole_orbit_view(crossing):
    geom = swath_geometry(crossing["lat"].values, crossing["lon"].values)
    v = crossing["surface_precip_truth"].values
    x0, x1, y0, y1 = geom.extent
    w, h = int(0.7 * (x1 - x0) / geom.spacing[0]), int(0.7 * (y1 - y0) / geom.spacing[1])
    pts = rasterize(geom, v, width=w, height=h).values
    geom.spacing = (np.inf, np.inf)
    quads = rasterize(geom, v, width=w, height=h).values
    both = np.isfinite(pts) & np.isfinite(quads)
    assert both.sum() > 0.9 * np.isfinite(quads).sum()
    assert abs(np.nanmean(pts) - np.nanmean(quads)) < 0.05 * np.nanmean(quads)


def test_naive_longitudes_would_smear(crossing):
    """The check above can fail: with raw -180..180 longitudes the crossing quads smear."""
    lat, lon = crossing["lat"].values.astype(float), crossing["lon"].values.astype(float)
    naive = SwathGeometry("PlateCarree", lon, lat, np.ones(lon.shape, bool), _row_bounds(lon, lat, np.ones(lon.shape, bool)),
                          spacing=(np.inf, np.inf))
    agg = rasterize(naive, np.ones(lon.shape), width=600, height=300)
    far, _ = _far_painted(naive, agg, 1.0)
    assert far > 100


def test_zoom_only_uses_scans_in_view_and_matches_full(crossing):
    geom = swath_geometry(crossing["lat"].values, crossing["lon"].values)
    v = crossing["surface_precip_truth"].values
    i, j = 300, 30
    x, y = geom.x[i, j], geom.y[i, j]
    xr_, yr_ = (x - 3, x + 3), (y - 2, y + 2)
    runs = geom.rows_in_view(xr_, yr_)
    assert runs and sum(r.stop - r.start for r in runs) < geom.shape[0] / 4
    zoom = rasterize(geom, v, xr_, yr_, width=200, height=150)
    # the same window cut from an aggregation over all scans is identical
    from app.geometry import SwathGeometry as G

    whole = G(geom.projection, geom.x, geom.y, geom.drawable, np.tile([[-1e9, 1e9, -1e9, 1e9]], (geom.shape[0], 1)),
              spacing=geom.spacing)
    ref = rasterize(whole, v, xr_, yr_, width=200, height=150)
    np.testing.assert_allclose(zoom.values, ref.values, equal_nan=True)
    assert np.isfinite(zoom.values).mean() > 0.5


def test_view_outside_swath_is_empty(crossing):
    geom = swath_geometry(crossing["lat"].values, crossing["lon"].values)
    agg = rasterize(geom, np.ones(geom.shape), (1000, 1010), (0, 10), width=50, height=50)
    assert geom.rows_in_view((1000, 1010), (0, 10)) == []
    assert np.isnan(agg.values).all()


def test_nearest_pixel(crossing):
    geom = swath_geometry(crossing["lat"].values, crossing["lon"].values)
    assert geom.nearest_pixel(geom.x[123, 45] + 0.01, geom.y[123, 45]) == (123, 45)
    assert geom.nearest_pixel(geom.x[123, 45] + 60, geom.y[123, 45] + 60) is None


def test_coastlines_offline_and_tiled():
    folder = coastlines.configure_cartopy()
    import cartopy

    assert cartopy.config["pre_existing_data_dir"] == str(folder)
    xy = coastlines.coastline_xy("110m", "PlateCarree", (0.0, 360.0))
    finite = xy[np.isfinite(xy[:, 0])]
    assert finite[:, 0].min() < -170 and finite[:, 0].max() > 530
    proj = coastlines.coastline_xy("110m", "Robinson")
    ok = proj[np.isfinite(proj[:, 0])]
    assert np.abs(ok[:, 0]).max() < 1.8e7  # metres, inside the Robinson map
    # no line segment jumps across the map (cut at the projection's edge)
    seg = np.abs(np.diff(proj[:, 0]))
    assert np.nanmax(seg) < 5e6
    clipped = coastlines.clip(xy, (0, 20), (40, 60))
    assert 0 < np.isfinite(clipped[:, 0]).sum() < np.isfinite(xy[:, 0]).sum()
    assert coastlines.scale_for((0, 10)) == "50m" and coastlines.scale_for((0, 200)) == "110m"

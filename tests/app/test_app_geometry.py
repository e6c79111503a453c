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


# --------------------------------------------------------------------------- drawn box -> bbox spec
def _project(projection, lon, lat):
    import cartopy.crs as ccrs

    from app.geometry import get_projection

    return get_projection(projection).transform_point(lon, lat, ccrs.PlateCarree())


@pytest.mark.parametrize("x0,x1,spec", [
    (10.0, 20.0, "bbox:10,-5,20,5"),
    (170.0, 190.0, "bbox:170,-5,-170,5"),  # unwrapped past +180: crosses the antimeridian
    (530.0, 550.0, "bbox:170,-5,-170,5"),  # one turn further along the unwrapped axis
    (-190.0, -170.0, "bbox:170,-5,-170,5"),
    (-400.0, -350.0, "bbox:-40,-5,10,5"),
    (160.0, 180.0, "bbox:160,-5,180,5"),  # ends exactly on the antimeridian: no crossing
    (-100.0, 300.0, "bbox:-180,-5,180,5"),  # wider than the globe
    (10.0, 369.999, "bbox:-180,-5,180,5"),  # all the way round, give or take rounding
    (10.004, 20.006, "bbox:10,-5,20.01,5"),  # rounded outwards to 0.01°
])
def test_plate_carree_box_to_bbox(x0, x1, spec):
    from app.geometry import map_box_to_bbox
    from evaluation.regions import get_region

    assert map_box_to_bbox(x0, -5.0, x1, 5.0) == spec
    assert map_box_to_bbox(x1, 5.0, x0, -5.0) == spec  # corners in any order
    assert get_region(spec).spec == spec  # a valid, canonical region spec


def test_plate_carree_box_clamps_latitudes():
    from app.geometry import map_box_to_bbox

    assert map_box_to_bbox(0, -120, 10, 95) == "bbox:0,-90,10,90"
    with pytest.raises(ValueError, match="beyond the poles"):
        map_box_to_bbox(0, 91, 10, 120)


@pytest.mark.parametrize("projection", ["PlateCarree", "Robinson", "Mollweide", "EqualEarth"])
def test_degenerate_or_off_globe_boxes_are_clear_errors(projection):
    from app.geometry import map_box_to_bbox

    with pytest.raises(ValueError, match="no width or no height"):
        map_box_to_bbox(1.0, 0.0, 1.0, 5.0, projection)
    with pytest.raises(ValueError, match="no width or no height"):
        map_box_to_bbox(0.0, 2.0, 5.0, 2.0, projection)
    with pytest.raises(ValueError, match="no valid corners"):
        map_box_to_bbox(float("nan"), 0.0, 5.0, 2.0, projection)
    if projection != "PlateCarree":  # the corner outside the ellipse / the pole line
        with pytest.raises(ValueError, match="off the globe"):
            map_box_to_bbox(-3e7, -3e7, -2.9e7, -2.9e7, projection)


@pytest.mark.parametrize("projection", ["Robinson", "Mollweide", "EqualEarth"])
def test_projected_box_to_bbox(projection):
    """A rectangle in projected metres becomes the lon/lat box that holds it."""
    from app.geometry import map_box_to_bbox
    from evaluation.regions import get_region

    # a rectangle spanned by two points on the equator strip: the box holds both corners
    (ax, ay), (bx, by) = _project(projection, -20, -10), _project(projection, 30, 15)
    r = get_region(map_box_to_bbox(ax, ay, bx, by, projection))
    lon0, lat0, lon1, lat1 = r.params
    assert lat0 == pytest.approx(-10, abs=0.011) and lat1 == pytest.approx(15, abs=0.011)
    assert -21.5 < lon0 <= -20 and 30 <= lon1 < 31  # meridians converge: a little wider than the corners
    # every point of the rectangle lies in the box
    xs, ys = np.meshgrid(np.linspace(ax, bx, 30), np.linspace(ay, by, 30))
    import cartopy.crs as ccrs

    from app.geometry import get_projection

    ll = ccrs.PlateCarree().transform_points(get_projection(projection), xs.ravel(), ys.ravel())
    assert r.mask(ll[:, 1], ll[:, 0]).all()
    # the whole map is the globe; a quarter of it ends on the antimeridian and the pole
    assert map_box_to_bbox(-3e7, -3e7, 3e7, 3e7, projection) == "bbox:-180,-90,180,90"
    assert map_box_to_bbox(0, 0, 3e7, 3e7, projection) == "bbox:0,0,180,90"
    # a box at the map's east edge stops at +180 (these maps are centred on 0°: never crossing)
    (ax, ay), (bx, by) = _project(projection, 170, -10), _project(projection, 179.99, 10)
    lon0, lat0, lon1, lat1 = get_region(map_box_to_bbox(ax, ay, bx + 1e6, by, projection)).params
    assert 165 < lon0 < 170 and lon1 == 180 and (lat0, lat1) == (-10, 10)


@pytest.mark.parametrize("projection", ["PlateCarree", "Robinson", "Mollweide", "EqualEarth"])
def test_bbox_outline_round_trips(projection):
    """The outline drawn for a box region converts back to the same box (antimeridian too)."""
    from app.geometry import PLATE_CARREE_COPIES, bbox_outline, map_box_to_bbox

    for box in ((10, -5, 20, 5), (170, -5, -170, 5)):
        paths = bbox_outline(box, projection)
        if projection == "PlateCarree":
            assert len(paths) == len(PLATE_CARREE_COPIES)
            p = paths[1]  # the copy at offset 0
            assert p[:, 0].max() - p[:, 0].min() == pytest.approx((box[2] - box[0]) % 360)
            spec = map_box_to_bbox(p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max())
            assert spec == "bbox:" + ",".join(f"{v:g}" for v in box)
        else:
            assert len(paths) == (1 if box[0] < box[2] else 2)  # cut at the map's edge
            assert all(np.isfinite(p).all() for p in paths)


# --------------------------------------------------------------------------- graticule
#: The projections' definitions, written out here so the check does not reuse the app's code path.
PROJ_STRINGS = {"Robinson": "+proj=robin +a=6378137 +lon_0=0 +no_defs",
                "Mollweide": "+proj=moll +a=6378137 +lon_0=0 +no_defs",
                "EqualEarth": "+proj=eqearth +ellps=WGS84 +lon_0=0 +no_defs"}


def _degrees(text: str) -> float:
    """'120°W' -> -120, '60°N' -> 60, '0°' -> 0, '180°' -> 180 (read from the label's text)."""
    num, _, hemi = text.partition("°")
    return float(num) * (-1 if hemi in ("W", "S") else 1)


def _to_lonlat(projection, x, y):
    import pyproj

    t = pyproj.Transformer.from_crs(pyproj.CRS.from_proj4(PROJ_STRINGS[projection]), "EPSG:4326", always_xy=True)
    return t.transform(np.asarray(x, float), np.asarray(y, float))


def _same_lon(a, b, tol=1e-6):
    return np.abs((np.asarray(a) - b + 180.0) % 360.0 - 180.0) < tol


@pytest.mark.parametrize("projection", ["Robinson", "Mollweide", "EqualEarth"])
def test_projected_graticule_round_trips_to_its_labels(projection):
    """Every graticule line and label of a whole-globe projected map lies where its degrees say
    (inverse projection by pyproj from the projection's own definition)."""
    from app.geometry import get_projection, graticule

    crs = get_projection(projection)
    g = graticule(projection, crs.x_limits, crs.y_limits)
    assert (g.lon_step, g.lat_step) == (60.0, 30.0)
    assert g.kinds.count("meridian") >= 6 and g.kinds.count("parallel") == 5
    for line, kind, value in zip(g.lines, g.kinds, g.values):
        lon, lat = _to_lonlat(projection, line[:, 0] * (1 - 1e-9), line[:, 1])  # a hair inside the border
        assert np.isfinite(lon).all() and np.isfinite(lat).all()
        if kind == "meridian":
            inner = np.abs(lat) < 89.0  # at the poles longitude is undefined
            assert _same_lon(lon[inner], value, 1e-6).all()
        else:
            np.testing.assert_allclose(lat, value, atol=1e-6)
    meridians = {_degrees(lab.text) for lab in g.labels if lab.kind == "meridian"}
    parallels = {_degrees(lab.text) for lab in g.labels if lab.kind == "parallel"}
    assert meridians == {-120.0, -60.0, 0.0, 60.0, 120.0}  # ±180°: the border, where parallels are labelled
    assert parallels == {-60.0, -30.0, 0.0, 30.0, 60.0}
    for lab in g.labels:
        lon, lat = _to_lonlat(projection, lab.x * (1 - 1e-9), lab.y)  # a hair inside the border
        if lab.kind == "meridian":
            assert _same_lon(lon, _degrees(lab.text), 1e-6)
            assert lat == pytest.approx(-30.0)  # a whole globe: along 30°S, not at the crowded pole
        else:
            assert lat == pytest.approx(_degrees(lab.text), abs=1e-6)
            assert _same_lon(lon, -180.0, 1e-6)  # at the globe's left border


def test_zoomed_graticule_adapts_and_labels_the_edges():
    """A zoomed Robinson view gets finer lines, each labelled on the view's left or bottom edge
    with the degrees found there by the inverse projection."""
    import pyproj

    from app.geometry import graticule

    fwd = pyproj.Transformer.from_crs("EPSG:4326", pyproj.CRS.from_proj4(PROJ_STRINGS["Robinson"]), always_xy=True)
    (x0, x1), (y0, y1) = zip(fwd.transform(-20.0, 10.0), fwd.transform(15.0, 40.0))
    g = graticule("Robinson", (x0, x1), (y0, y1))
    assert g.lon_step <= 10 and g.lat_step <= 10
    assert {lab.edge for lab in g.labels} == {"bottom", "left"}
    for lab in g.labels:
        lon, lat = _to_lonlat("Robinson", lab.x, lab.y)
        if lab.kind == "meridian":
            assert lab.y == pytest.approx(y0) and _same_lon(lon, _degrees(lab.text))
        else:
            assert lab.x == pytest.approx(x0) and lat == pytest.approx(_degrees(lab.text), abs=1e-6)
    for line in g.lines:  # cut to the view
        assert (line[:, 0] >= x0 - 1e-3).all() and (line[:, 0] <= x1 + 1e-3).all()
        assert (line[:, 1] >= y0 - 1e-3).all() and (line[:, 1] <= y1 + 1e-3).all()


def test_graticule_is_antimeridian_safe():
    """No graticule line jumps across the map; on the unwrapped PlateCarree map meridians repeat
    every 360° with their wrapped longitude as label."""
    from app.geometry import get_projection, graticule

    for projection in ("Robinson", "Mollweide", "EqualEarth"):
        crs = get_projection(projection)
        width = crs.x_limits[1] - crs.x_limits[0]
        g = graticule(projection, crs.x_limits, crs.y_limits, lon_step=15, lat_step=15)
        assert max(np.abs(np.diff(line[:, 0])).max() for line in g.lines) < 0.05 * width
    g = graticule("PlateCarree", (150.0, 400.0), (-70.0, 70.0), lon_step=30, lat_step=30)
    labels = {lab.x: lab.text for lab in g.labels if lab.kind == "meridian"}
    assert labels == {150.0: "150°E", 180.0: "180°", 210.0: "150°W", 240.0: "120°W", 270.0: "90°W",
                      300.0: "60°W", 330.0: "30°W", 360.0: "0°", 390.0: "30°E"}
    assert all(lab.edge == "bottom" for lab in g.labels if lab.kind == "meridian")
    assert all(lab.edge == "left" and lab.x == 150.0 for lab in g.labels if lab.kind == "parallel")
    assert graticule("Robinson", (3e7, 4e7), (3e7, 4e7)).lines == []  # off the globe: nothing


def test_degree_labels():
    from app.geometry import format_lat, format_lon

    assert [format_lon(v) for v in (0, 60, -120, 180, -180, 200, 540, 2.5)] == \
        ["0°", "60°E", "120°W", "180°", "180°", "160°W", "180°", "2.5°E"]
    assert [format_lat(v) for v in (0, 30, -60, -0.0)] == ["0°", "30°N", "60°S", "0°"]

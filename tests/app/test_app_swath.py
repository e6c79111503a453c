"""The swath-map component and the data access behind it (no browser)."""

from __future__ import annotations

import numpy as np
import pytest

from app import data
from app.state import Selection
from app.swath import SwathMap, load, swath_layers
from tests.app_helpers import write_retrieval


@pytest.fixture
def app_env(data_root):
    data._swaths.clear()
    data._outputs.clear()
    data._geoms.clear()
    return data_root


def _alerts(sm):
    return [(a.alert_type, a.object) for a in sm._alerts.objects]


def test_map_of_a_simulated_orbit(app_env):
    sel = Selection(orbit=20000)
    sm = SwathMap(selection=sel)
    assert sm.swath is not None and int(sm.swath.attrs["orbit_number"]) == 20000
    assert [lay.key for lay in sm.layers.layers] == ["tb", "reference", "truth"]
    assert sm._maps.object is not None and len(sm._maps.object) == 3
    assert _alerts(sm) == []
    # the Tb panel shows the chosen channel, in K
    tb = sm.layers.layers[0]
    np.testing.assert_array_equal(tb.values, sm.swath["Tc"].sel(pmw_frequency="89.0V").values.astype(float))
    assert tb.unit == "K" and "K" in tb.clabel
    sel.channel = "18.7H"
    assert sm.layers.layers[0].title == "Tb 18.7H"
    # orbit 20000 crosses the antimeridian: map x is continuous
    assert np.abs(np.diff(sm.geom.x, axis=0)).max() < 2


def test_rendered_maps_paint_the_swath(app_env):
    import holoviews as hv

    hv.extension("bokeh", logo=False)
    sm = SwathMap(selection=Selection(orbit=20000, layers=["Tb"]))
    dm = sm._maps.object
    img = dm.DynamicMap.I[()] if hasattr(dm, "DynamicMap") else dm[()]
    el = img.Image.I if hasattr(img, "Image") else img
    vals = el.dimension_values(2, flat=False)
    assert np.isfinite(vals).mean() > 0.05
    assert el.vdims[0].unit == "K"


@pytest.mark.parametrize("orbit,message", [(10**7, "does not exist"), (-10**7, "does not exist")])
def test_bad_orbit_gives_a_message(app_env, orbit, message):
    sm = SwathMap(selection=Selection(orbit=orbit))
    alerts = _alerts(sm)
    assert len(alerts) == 1 and alerts[0][0] == "danger" and message in alerts[0][1]
    assert sm._maps.object is None


def test_real_source_without_granule_gives_a_message(app_env):
    sm = SwathMap(selection=Selection(source="real"))
    assert "choose a real granule" in _alerts(sm)[0][1]


def test_granule_outside_roots_gives_a_message(app_env):
    sm = SwathMap(selection=Selection(source="real", granule="/etc/passwd"))
    kind, text = _alerts(sm)[0]
    assert kind == "danger" and "outside the configured data roots" in text


def test_model_without_output_says_press_run(app_env):
    sm = SwathMap(selection=Selection(orbit=20000, models=["bayes-baseline"]))
    texts = [t for _, t in _alerts(sm)]
    assert any("no output for orbit 20000 yet" in t and "Run" in t for t in texts)
    assert sm._maps.object is not None  # the other layers still show


def test_model_products_and_clicked_pixel(app_env):
    sel = Selection(orbit=20000, layers=["reference"], models=["unit-model"])
    ds, _, _ = load(sel)
    write_retrieval(ds, model="unit-model")
    data._outputs.clear()
    sm = SwathMap(selection=sel)
    keys = [lay.key for lay in sm.layers.layers]
    assert keys == ["reference", "unit-model:precip_mean"]
    out = sm.layers.outputs["unit-model"]
    np.testing.assert_array_equal(sm.layers.layers[1].values, out["precip_mean"].values.astype(float))
    for product, unit in (("pop", "1"), ("p_heavy", "1"), ("precip_median", "mm h-1")):
        sel.product = product
        assert sm.layers.layers[1].unit == unit and sm.layers.layers[1].key.endswith(product)
    sel.param.update(product="quantile", quantile_level=0.5)
    lay = sm.layers.layers[1]
    assert lay.key == "unit-model:q0.50"
    np.testing.assert_array_equal(lay.values, out["precip_quantiles"].sel(quantile=0.5, method="nearest").values.astype(float))
    sel.product = "ood_score"
    assert any("does not provide OOD" in t for _, t in _alerts(sm))
    # click on the middle of the swath: the pixel's distribution against the reference
    i, j = 1200, 110
    sm._on_tap(x=sm.geom.x[i, j], y=sm.geom.y[i, j])
    assert sm.pixel == (i, j)
    assert "unit-model" in sm._pixel_info.object and "reference" in sm._pixel_info.object
    plot = sm._pixel_plot.object
    assert sm._pixel_box.objects == [sm._pixel_plot] and plot is not None and any("unit-model" in str(el.label) for el in plot)


def test_swath_layers_reports_missing_truth(app_env, tiny_swath):
    ds = tiny_swath.drop_vars("surface_precip_truth")
    sl = swath_layers(ds, Selection(layers=["truth", "Tb"]))
    assert [lay.key for lay in sl.layers] == ["tb"]
    assert any("no truth" in n for n in sl.notes)


def test_all_fill_tb_is_a_clear_error(app_env, tiny_swath, monkeypatch):
    bad = tiny_swath.copy()
    bad["Tc"] = bad["Tc"] * np.nan
    monkeypatch.setattr(data, "_swaths", data.Memo(4))
    data._swaths.get((data.catalog_label(None), "swath", 7, 0), lambda: bad)
    with pytest.raises(data.DataError, match="no valid brightness temperature"):
        data.load_swath(None, orbit=7, world=0)


def test_real_granules_in_the_map(app_env, monkeypatch):
    """A real 2B-CMB cut (simulated Tb + combined precipitation) maps; the all-fill 1C-GMI cut
    gives a clear message (shared PPS fixtures, read through RAINCHECK_READ_ROOTS)."""
    from tests.conftest import GPM_FIXTURES

    monkeypatch.setenv("RAINCHECK_READ_ROOTS", str(GPM_FIXTURES))
    cmb = next(GPM_FIXTURES.glob("2B.GPM.DPRGMI.*.HDF5"))
    sm = SwathMap(selection=Selection(source="real", granule=str(cmb)))
    assert [lay.key for lay in sm.layers.layers] == ["tb", "reference"]
    assert any("no truth" in t for _, t in _alerts(sm))
    assert sm._maps.object is not None
    c1 = next(GPM_FIXTURES.glob("1C.GPM.GMI.*.HDF5"))
    sm = SwathMap(selection=Selection(source="real", granule=str(c1)))
    kind, text = _alerts(sm)[0]
    assert kind == "danger" and "no valid brightness temperature" in text and sm._maps.object is None


def test_drawn_box_becomes_the_region(app_env):
    """The box-select stream of a map sets the region (sidebar, URL and views follow); the
    outline is drawn on the maps; bad boxes give messages and leave the region alone."""
    from urllib.parse import parse_qs

    from panel.io.location import Location

    from app.main import Sidebar
    from app.state import sync_url
    from app.swath import region_outline

    sel = Selection(orbit=20000, layers=["Tb", "reference"])
    loc = Location()
    assert sync_url(sel, loc) == []
    sm = SwathMap(selection=sel)
    bar = Sidebar(selection=sel, swath_map=sm)
    assert len(sm._boxes) == 2  # one box-select stream per map
    # a box over the middle of the swath (orbit 20000 crosses the antimeridian: unwrapped x)
    i, j = 1200, 110
    x, y = float(sm.geom.x[i, j]), float(sm.geom.y[i, j])
    sm._boxes[1].event(bounds=(x - 3, y - 2, x + 3, y + 2))
    lon0 = ((x - 3 + 180) % 360) - 180
    assert sel.region.startswith("bbox:") and sel.region.split(",")[0] == f"bbox:{np.floor(lon0 * 100) / 100 + 0:g}"
    assert bar.region.value == sel.region  # the sidebar shows it
    assert parse_qs(loc.search.lstrip("?"))["region"] == [sel.region]  # so does the link
    assert "drawn box" in sm.box_message and "No pixel" not in sm.box_message
    assert [a.alert_type for a in sm._box_info.objects] == ["info"]
    # its outline is on every map (the copy that holds the drawn box among them)
    paths = region_outline(sel.region, "PlateCarree")
    assert any(abs(p[:, 0].min() - (x - 3)) < 0.02 for p in paths)
    for panel in sm._maps.object:
        outline = panel[()].Path.II  # over the image and the coastlines
        assert len(outline.data) == len(paths)

    # across the antimeridian, one turn along the unwrapped axis
    sm.use_box(530.0, -5.0, 550.0, 5.0)
    assert sel.region == "bbox:170,-5,-170,5" and bar.region.value == sel.region

    # the sidebar's "use the map view" goes the same way
    sm.view_range = {"x_range": (350.0, 375.0), "y_range": (-20.0, 20.0)}
    assert bar.box_from_map() == "bbox:-10,-20,15,20" == sel.region and "the map view" in sm.box_message

    # a box with no swath pixel still sets the region, with a warning
    far = sm.geom.extent[1] + 50
    sm._boxes[0].event(bounds=(far, -60, far + 10, -50))
    assert sel.region.startswith("bbox:") and "No pixel of this swath" in sm.box_message
    region = sel.region
    # degenerate: a message, the region unchanged, never an exception
    sm._boxes[0].event(bounds=(x, y - 2, x, y + 2))
    assert sel.region == region and "no width" in sm.box_message
    assert [a.alert_type for a in sm._box_info.objects] == ["warning"]
    # another region from the sidebar: the note goes, the outline goes
    bar.region.value = "global"
    assert sel.region == "global" and sm.box_message == "" and sm._box_info.objects == []
    assert all(len(panel[()].Path.II.data) == 0 for panel in sm._maps.object)


@pytest.mark.parametrize("projection", ["Robinson", "Mollweide", "EqualEarth"])
def test_drawn_box_on_a_projected_map(app_env, projection):
    import cartopy.crs as ccrs

    from app.geometry import get_projection
    from evaluation.regions import get_region

    sel = Selection(orbit=20000, layers=["Tb"], projection=projection)
    sm = SwathMap(selection=sel)
    crs = get_projection(projection)
    (ax, ay), (bx, by) = (crs.transform_point(lon, lat, ccrs.PlateCarree()) for lon, lat in ((-20, -10), (30, 15)))
    sm._boxes[0].event(bounds=(ax, ay, bx, by))
    lon0, lat0, lon1, lat1 = get_region(sel.region).params
    assert (lat0, lat1) == (-10, 15) and -21.5 < lon0 <= -20 and 30 <= lon1 < 31
    # off the globe: a message, no change
    before = sel.region
    sm._boxes[0].event(bounds=(-3e7, -3e7, -2.9e7, -2.9e7))
    assert sel.region == before and "off the globe" in sm.box_message


def _bokeh_plots(sm):
    import holoviews as hv
    from bokeh.models import Plot

    hv.extension("bokeh", logo=False)
    return list(hv.renderer("bokeh").get_plot(sm._maps.object).state.select({"type": Plot}))


@pytest.mark.parametrize("projection", ["Robinson", "Mollweide", "EqualEarth"])
def test_projected_maps_show_a_degree_graticule_not_metres(app_env, projection):
    """No metre tick labels on a projected map: its axes are bare and a graticule with degree
    labels sits on the map, where those degrees are (inverse projection)."""
    import re

    import cartopy.crs as ccrs
    from bokeh.models import MultiLine, Text

    from app.geometry import get_projection

    sm = SwathMap(selection=Selection(orbit=20000, layers=["Tb", "truth"], projection=projection))
    plots = _bokeh_plots(sm)
    assert len(plots) == 2
    crs = get_projection(projection)
    for p in plots:
        for ax in p.xaxis + p.yaxis:
            assert not ax.visible or (ax.major_label_text_font_size == "0pt"
                                      and ax.axis_label_text_font_size == "0pt")
        assert not any(g.visible and g.grid_line_color for g in p.grid)  # no grid at metre ticks
        texts = [r for r in p.renderers if isinstance(r.glyph, Text)]
        labels = [(x, y, t) for r in texts for x, y, t in zip(*(r.data_source.data[k] for k in ("x", "y", "text")))]
        assert len(labels) >= 6
        for x, y, t in labels:
            m = re.fullmatch(r"(\d+(?:\.\d+)?)°([NSEW]?)", t)
            assert m, t
            lon, lat = ccrs.PlateCarree().transform_point(x * (1 - 1e-9), y, crs)  # a hair inside the border
            deg = float(m[1]) * (-1 if m[2] in "WS" and m[2] else 1)
            if m[2] in ("N", "S") or (t == "0°" and abs(lat) < 1e-6):  # parallels
                assert lat == pytest.approx(deg, abs=1e-6)
            else:  # meridians ("180°" is either edge of the globe)
                assert min(abs((lon - d + 180) % 360 - 180) for d in {deg, -deg}) < 1e-5, (t, lon)
        lines = [r for r in p.renderers if isinstance(r.glyph, MultiLine) and len(r.data_source.data["xs"]) >= 6]
        assert lines, "no graticule lines"


def test_plate_carree_map_has_degree_axes(app_env):
    from bokeh.models import CustomJSTickFormatter

    plots = _bokeh_plots(SwathMap(selection=Selection(orbit=20000, layers=["Tb"])))
    (p,) = plots
    assert isinstance(p.xaxis[0].formatter, CustomJSTickFormatter) and "°" in p.xaxis[0].formatter.code
    assert isinstance(p.yaxis[0].formatter, CustomJSTickFormatter) and "°" in p.yaxis[0].formatter.code
    assert p.xaxis[0].axis_label == "Longitude" and p.yaxis[0].axis_label == "Latitude"
    assert p.xaxis[0].major_label_text_font_size != "0pt"


def test_projected_map_hover_reads_degrees(app_env):
    """The hover of a projected map gives longitude/latitude, and they are the screen pixel's
    (inverse projection by pyproj from Robinson's definition), not metres."""
    import holoviews as hv
    import pyproj

    hv.extension("bokeh", logo=False)
    sm = SwathMap(selection=Selection(orbit=20000, layers=["Tb"], projection="Robinson"))
    panel = sm._maps.object[0] if isinstance(sm._maps.object, hv.Layout) else sm._maps.object
    el = panel[()].Image.I
    assert [d.name for d in el.vdims] == ["value", "lon", "lat"]
    xs, ys = el.dimension_values(0, expanded=False), el.dimension_values(1, expanded=False)
    lon, lat = el.dimension_values("lon", flat=False), el.dimension_values("lat", flat=False)
    to_ll = pyproj.Transformer.from_crs(pyproj.CRS.from_proj4("+proj=robin +a=6378137 +lon_0=0"), "EPSG:4326",
                                        always_xy=True)
    xx, yy = np.meshgrid(xs, ys)
    want_lon, want_lat = to_ll.transform(xx, yy)
    on = np.isfinite(lon)
    assert on.mean() > 0.5  # most of the whole-orbit view is on the globe
    np.testing.assert_allclose(lon[on], want_lon[on], atol=1e-3)
    np.testing.assert_allclose(lat[on], want_lat[on], atol=1e-3)
    (p,) = _bokeh_plots(sm)
    from bokeh.models import HoverTool

    (tips,) = [t.tooltips for t in p.select({"type": HoverTool})]
    assert [name for name, _ in tips] == ["Tb 89.0V (K)", "Longitude (°E)", "Latitude (°N)"]

"""The swath map: Tb of any channel, reference strip, truth and each model's product, side by side.

- full resolution through datashader (every swath pixel a quad, re-rasterised on pan/zoom,
  only the scans in view), see :mod:`app.geometry`;
- offline coastlines; a projection choice; antimeridian-safe;
- degrees, never metres: PlateCarree axes read °E/°N; projected maps (Robinson, Mollweide, Equal
  Earth) hide their metre axes and draw a degree graticule (:func:`app.geometry.graticule`)
  labelled at the view's edges, re-cut on every pan/zoom; their hover gives lon/lat;
- linked maps (pan/zoom one, all follow); hover shows the value with its unit;
- clicking a pixel shows each model's predicted distribution against reference and truth;
- a box drawn with the box-select tool becomes the selection's region (``bbox:`` spec, see
  :func:`app.geometry.map_box_to_bbox`); a box region's outline is drawn on every map.

The layers are described by :func:`swath_layers` (pure: a list of :class:`Layer`), shared by
this interactive view and by :mod:`app.export`.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field

import numpy as np
import panel as pn
import param

from app import data
from app.figures import FONTS, ExportParts, ensure_backends, rasterize_meshes_hook
from app.state import PRODUCT_LABELS, Selection
from app.geometry import rasterize, get_projection, format_lat, format_lon, graticule, bbox_outline, map_box_to_bbox
from app.coastlines import clip, coastline_xy, scale_for
import re
from app.pixel import pixel_plot, pixel_summary

log = logging.getLogger(__name__)

RAIN_CLIM = (0.1, 50.0)
RAIN_CMAP = "turbo"
TB_CMAP = "viridis"
PROB_CMAP = "YlGnBu"
MAP_HEIGHT = 330


@dataclass
class Layer:
    """One map panel: a field on the swath grid and how to colour it."""

    key: str
    title: str
    values: np.ndarray  # (along_track, cross_track)
    label: str  # colour-bar label (quantity)
    unit: str
    cmap: str
    clim: tuple[float, float]
    log: bool = False
    model: str | None = None
    attrs: dict = field(default_factory=dict)

    @property
    def clabel(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit and self.unit != "1" else self.label


@dataclass
class SwathLayers:
    layers: list[Layer]
    notes: list[str]  # things that could not be shown, and models run outside their training domain (warnings)
    outputs: dict  # model -> retrieval dataset (for the pixel distribution)
    granule: "data.RealGranule | None" = None  # the real granule the models ran on (source "real")


def _rain_layer(key, title, values, model=None) -> Layer:
    return Layer(key, title, np.asarray(values, np.float64), "Surface precipitation", "mm h-1",
                 RAIN_CMAP, RAIN_CLIM, log=True, model=model)


def swath_layers(ds, selection: Selection, catalog_path: str | None = None) -> SwathLayers:
    """The layers the selection asks for on swath ``ds`` (model outputs read from the store)."""
    layers, notes, outputs = [], [], {}
    orbit = int(ds.attrs.get("orbit_number", selection.orbit))
    if "Tb" in selection.layers:
        tb = np.asarray(ds["Tc"].sel(pmw_frequency=selection.channel).values, np.float64)
        finite = tb[np.isfinite(tb)]
        if finite.size:
            lo, hi = np.percentile(finite, [1, 99])
            clim = (float(np.floor(lo)), float(np.ceil(hi if hi > lo else lo + 1)))
            layers.append(Layer("tb", f"Tb {selection.channel}", tb, f"Tb {selection.channel}", "K",
                                TB_CMAP, clim))
        else:
            notes.append(f"channel {selection.channel} has no valid brightness temperature on this orbit")
    if "reference" in selection.layers:
        if "surface_precip" in ds and np.isfinite(ds["surface_precip"].values).any():
            title = ("Reference (2B-CMB collocated)" if str(ds.attrs.get("reference", "")).startswith("2B-CMB")
                     else "Reference (radar strip)")
            layers.append(_rain_layer("reference", title, ds["surface_precip"].values))
        else:
            notes.append("no reference precipitation on this swath")
    if "truth" in selection.layers:
        if "surface_precip_truth" in ds:
            layers.append(_rain_layer("truth", "Truth (synthetic)", ds["surface_precip_truth"].values))
        else:
            notes.append("no truth on this swath (truth exists for synthetic orbits only)")
    shape = ds["lat"].shape
    granule = None
    models = list(selection.models)
    if selection.source == "real" and models:
        try:
            granule = data.real_granule(selection.granule)
        except data.DataError as e:  # e.g. a 2B-CMB: shown, but no model runs on its simulated Tb
            notes.append(f"no model output on this granule: {e}")
            models = []
    for model in models:
        note = data.domain_note(model, granule.product) if granule is not None else None
        try:
            if granule is not None:
                out = data.load_granule_output(model, granule)
            else:
                out = data.load_output(catalog_path, model, orbit, selection.world)
        except data.MissingModelOutput as e:
            notes += [note] if note else []
            notes.append(str(e) if granule is not None else
                         f"model {model} has no output for orbit {orbit} yet: press Run to compute it")
            continue
        except data.DataError as e:
            notes += [note] if note else []
            notes.append(str(e))
            continue
        if note:
            notes.append(note + ood_summary(out))
        if out["lat"].shape != shape:
            notes.append(f"output of {model} is on a {out['lat'].shape} grid, the swath is {shape}: not shown")
            continue
        outputs[model] = out
        p = selection.product
        if p == "quantile":
            pq = out["precip_quantiles"].sel(quantile=selection.quantile_level, method="nearest")
            level = float(pq["quantile"])
            layers.append(_rain_layer(f"{model}:q{level:.2f}", f"{model}: quantile {level:.2f}", pq.values, model))
        elif p in ("precip_mean", "precip_median"):
            layers.append(_rain_layer(f"{model}:{p}", f"{model}: {PRODUCT_LABELS[p]}", out[p].values, model))
        elif p in out:
            v = np.asarray(out[p].values, np.float64)
            if p == "ood_score":  # calibrated in [0, 1] (> 0.95: further out than 95 % of training-like pixels)
                layers.append(Layer(f"{model}:{p}", f"{model}: OOD score", v, "OOD score", "1", "inferno",
                                    (0.0, 1.0), model=model))
            else:
                layers.append(Layer(f"{model}:{p}", f"{model}: {PRODUCT_LABELS[p]}", v, PRODUCT_LABELS[p], "1",
                                    PROB_CMAP, (0.0, 1.0), model=model))
        else:
            why = out.attrs.get("ood_score_missing") if p == "ood_score" else None
            notes.append(f"model {model} does not provide {PRODUCT_LABELS.get(p, p)}" + (f" ({why})" if why else ""))
    return SwathLayers(layers, notes, outputs, granule)


def ood_summary(out) -> str:
    """`` (OOD score above 0.95 on N % of its pixels)`` for a retrieval with an ``ood_score`` layer."""
    if "ood_score" not in out:
        return ""
    v = np.asarray(out["ood_score"].values, np.float64)
    v = v[np.isfinite(v)]
    return f" (OOD score above 0.95 on {100 * np.mean(v > 0.95):.0f} % of its pixels)" if v.size else ""


def axis_dims(projection: str):
    import holoviews as hv

    if projection == "PlateCarree":
        return (hv.Dimension("x", label="Longitude (unwrapped)", unit="°E"),
                hv.Dimension("y", label="Latitude", unit="°N"))
    return (hv.Dimension("x", label=f"{projection} x", unit="m"), hv.Dimension("y", label=f"{projection} y", unit="m"))


def value_dim(layer: Layer):
    import holoviews as hv

    return hv.Dimension("value", label=layer.label, unit=None if layer.unit == "1" else layer.unit)


def image_for(geom, layer: Layer, x_range=None, y_range=None, width=600, height=MAP_HEIGHT):
    """A rasterised hv.Image of ``layer`` over the view (used by the maps and the benchmark)."""
    import holoviews as hv


    agg = rasterize(geom, layer.values, x_range, y_range, width=width, height=height)
    xd, yd = axis_dims(geom.projection)
    x0, x1 = x_range if x_range is not None else (float(agg.x[0]), float(agg.x[-1]))
    y0, y1 = y_range if y_range is not None else (float(agg.y[0]), float(agg.y[-1]))
    if x_range is None:
        dx, dy = float(agg.x[1] - agg.x[0]), float(agg.y[1] - agg.y[0])
        x0, x1, y0, y1 = x0 - dx / 2, x1 + dx / 2, y0 - dy / 2, y1 + dy / 2
    if geom.projection == "PlateCarree":
        return hv.Image(agg.values[::-1], bounds=(x0, y0, x1, y1), kdims=[xd, yd], vdims=[value_dim(layer)])
    # projected: the hover reads longitude/latitude (not metres) from two more value planes
    lon, lat = _pixel_lonlat(geom.projection, tuple(agg.x.values), tuple(agg.y.values))
    return hv.Image((agg.x.values, agg.y.values, agg.values, lon, lat), kdims=[xd, yd],
                    vdims=[value_dim(layer), *LONLAT_DIMS])


#: Value planes of a projected map's image giving the hover its degrees.
LONLAT_DIMS = ("lon", "lat")


@functools.lru_cache(maxsize=8)
def _pixel_lonlat(projection: str, xs: tuple, ys: tuple):
    """Longitude/latitude (degrees, NaN off the globe) of every screen-pixel centre (y, x);
    cached: all panels of a view share one grid."""
    import cartopy.crs as ccrs


    crs = get_projection(projection)
    xx, yy = np.meshgrid(np.asarray(xs), np.asarray(ys))
    ll = ccrs.PlateCarree().transform_points(crs, xx, yy)
    lon, lat = ll[..., 0], ll[..., 1]
    with np.errstate(invalid="ignore"):
        off = ~(np.isfinite(lon) & np.isfinite(lat)) | (np.abs(lon) > 180) | (np.abs(lat) > 90)
    lon, lat = np.where(off, np.nan, np.round(lon, 3)), np.where(off, np.nan, np.round(lat, 3))
    lon.setflags(write=False)
    lat.setflags(write=False)
    return lon, lat


def coast_path(projection: str, x_range=None, y_range=None):
    import holoviews as hv


    xy = clip(coastline_xy(scale_for(x_range, projection), projection, (-360.0, 0.0, 360.0, 720.0)
                           if projection == "PlateCarree" else (0.0,)), x_range, y_range)
    xd, yd = axis_dims(projection)
    return hv.Path([xy], kdims=[xd, yd]).opts(color="#222222", line_width=0.7, apply_ranges=False,
                                               backend="bokeh")


GRATICULE_COLOR = "#555555"

#: Bokeh tick formatters (JavaScript) for the PlateCarree map's degree axes: the unwrapped
#: longitude 200 reads "160°W" (same text as :func:`app.geometry.format_lon` / ``format_lat``).
_LON_JS = """
const v = Math.round(((((tick + 180) % 360) + 360) % 360 - 180) * 1e6) / 1e6;
if (v == 0) return "0°";
if (Math.abs(v) == 180) return "180°";
return Math.abs(v) + "°" + (v > 0 ? "E" : "W");
"""
_LAT_JS = """
const v = Math.round(tick * 1e6) / 1e6;
return v == 0 ? "0°" : Math.abs(v) + "°" + (v > 0 ? "N" : "S");
"""


def map_axis_opts(projection: str, backend: str = "bokeh") -> dict:
    """Axis options of a map: degree axes (°E/°N) on PlateCarree; on projected maps no metre
    ticks at all (the graticule's labels say where things are, see :func:`graticule_overlay`)."""
    if projection == "PlateCarree":
        if backend == "bokeh":
            from bokeh.models import AdaptiveTicker, CustomJSTickFormatter

            # degree steps: 10, 15, 30, 60… (not 20, 50, 100)
            return dict(xformatter=CustomJSTickFormatter(code=_LON_JS),
                        yformatter=CustomJSTickFormatter(code=_LAT_JS),
                        xticks=AdaptiveTicker(mantissas=[1, 1.5, 3, 6], base=10, min_interval=0.01),
                        yticks=AdaptiveTicker(mantissas=[1, 1.5, 3, 6], base=10, min_interval=0.01),
                        xlabel="Longitude", ylabel="Latitude")
        from matplotlib.ticker import FuncFormatter


        return dict(xformatter=FuncFormatter(lambda v, pos: format_lon(v)),
                    yformatter=FuncFormatter(lambda v, pos: format_lat(v)),
                    xlabel="Longitude", ylabel="Latitude")
    if backend == "bokeh":
        return dict(xaxis="bare", yaxis="bare", show_grid=False)
    return dict(xlabel="", ylabel="")


def _graticule(projection: str, x_range, y_range, label_gap: float):
    """:func:`app.geometry.graticule` of a view, shared by the linked panels (one computation)."""
    return _graticule_cached(projection, tuple(map(float, x_range)), tuple(map(float, y_range)), float(label_gap))


@functools.lru_cache(maxsize=32)
def _graticule_cached(projection, x_range, y_range, label_gap):
    return graticule(projection, x_range, y_range, label_gap=label_gap)


def _offset_text(dx: int, dy: int):
    """bokeh hook: shift a Labels element's text by (dx, dy) screen pixels (y down)."""
    def hook(plot, element):
        glyph = plot.handles.get("glyph")
        if glyph is not None:
            glyph.update(x_offset=dx, y_offset=dy)
    return hook


def graticule_overlay(projection: str, x_range, y_range, backend: str = "bokeh", edge_ticks: bool = False,
                      label_gap: float = 0.09):
    """The degree graticule of a projected map over the view: meridians and parallels (hv.Path,
    group "Graticule") with their degree labels (hv.Labels), projected as the map is.

    ``edge_ticks`` (matplotlib export): labels that lie on the view's left/bottom edge become the
    axes' tick labels instead (outside the frame, as on a printed map); the rest stay text.
    PlateCarree maps have degree axes instead: an empty overlay."""
    import holoviews as hv

    xd, yd = axis_dims(projection)
    g = None
    if projection != "PlateCarree" and x_range is not None and y_range is not None:
        g = _graticule(projection, x_range, y_range, label_gap)
    lines = g.lines if g is not None else []
    labels = g.labels if g is not None else []
    if edge_ticks:
        labels = [lab for lab in labels if lab.edge is None]
    path = hv.Path(lines, kdims=[xd, yd], group="Graticule")
    (x0, x1), (y0, y1) = (sorted(x_range), sorted(y_range)) if g is not None else ((0, 1), (0, 1))
    # the bottom-left corner: the lowest parallel's label would sit on the row of meridian labels
    if any(lab.kind == "meridian" and lab.edge == "bottom" for lab in labels):
        labels = [lab for lab in labels if not (lab.kind == "parallel" and lab.y < y0 + 0.07 * (y1 - y0))]
    # keep the text off the line's end: a few screen pixels (bokeh) or a hair of the view (matplotlib)
    dx, dy = (0.0, 0.0) if backend == "bokeh" else (0.006 * (x1 - x0), 0.012 * (y1 - y0))
    mer = hv.Labels([(lab.x, lab.y + dy, lab.text) for lab in labels if lab.kind == "meridian"],
                    kdims=[xd, yd], vdims="text", group="Graticule", label="meridians")
    par = hv.Labels([(lab.x + dx, lab.y, lab.text) for lab in labels if lab.kind == "parallel"],
                    kdims=[xd, yd], vdims="text", group="Graticule", label="parallels")
    if backend == "bokeh":
        text = dict(text_color="#222222", text_font_size="8pt", background_fill_color="white",
                    background_fill_alpha=0.6, apply_ranges=False)
        path = path.opts(backend="bokeh", color=GRATICULE_COLOR, line_width=0.6, line_dash="dotted",
                         alpha=0.8, apply_ranges=False)
        mer = mer.opts(backend="bokeh", text_align="center", text_baseline="bottom",
                       hooks=[_offset_text(0, -3)], **text)
        par = par.opts(backend="bokeh", text_align="left", text_baseline="middle",
                       hooks=[_offset_text(4, 0)], **text)
    else:
        path = path.opts(backend="matplotlib", color=GRATICULE_COLOR, linewidth=0.35, linestyle=":",
                         apply_ranges=False)
        mer = mer.opts(backend="matplotlib", horizontalalignment="center", verticalalignment="bottom",
                       size=5, color="#222222", apply_ranges=False)
        par = par.opts(backend="matplotlib", horizontalalignment="left", verticalalignment="center",
                       size=5, color="#222222", apply_ranges=False)
    return path * mer * par


#: Least gap between meridian labels in exported figures, as a share of the map's width: a
#: "120°W" tick label at 8 pt is about a fifth of a panel's map (3.6 in panel less colour bar).
EXPORT_LABEL_GAP = 0.2


def graticule_ticks(projection: str, x_range, y_range, label_gap: float = EXPORT_LABEL_GAP) -> dict:
    """matplotlib tick options: the graticule's edge labels on the axes of a projected map (no
    metre ticks: empty lists where no line meets an edge); graticule steps on PlateCarree."""
    g = _graticule(projection, x_range, y_range, label_gap)
    if projection == "PlateCarree":  # degree axes: every line's label, wherever it is
        xt = [(lab.x, lab.text) for lab in g.labels if lab.kind == "meridian"]
        yt = [(lab.y, lab.text) for lab in g.labels if lab.kind == "parallel"]
    else:
        xt, yt = g.ticks("bottom"), g.ticks("left")
    x0, x1 = sorted(x_range)
    xt = [(v, t) for v, t in xt if v <= x1 - 0.03 * (x1 - x0)]  # one on the right edge hits the colour bar
    out = {k: v for k, v in (("xticks", xt), ("yticks", yt)) if v}
    if not (xt and yt):  # no line meets that edge (a view wider than the globe): no ticks there
        # (HoloViews fails on an empty tick list and refuses a NullLocator: a hook clears them)
        out["hooks"] = [_clear_ticks(x=not xt, y=not yt)]
    return out


def _clear_ticks(x: bool, y: bool):
    """matplotlib hook: no ticks on the x and/or y axis."""
    def hook(plot, element):
        ax = plot.handles.get("axis")
        if ax is not None:
            if x:
                ax.set_xticks([])
            if y:
                ax.set_yticks([])
    return hook


def swath_key(selection: Selection, catalog_path=None) -> tuple:
    s = selection
    return (data.catalog_label(catalog_path),
            ("granule", s.granule) if s.source == "real" else ("orbit", int(s.orbit), int(s.world)))


def load(selection: Selection, catalog_path=None):
    """(swath, geometry, layers) of the selection; :class:`app.data.DataError` on a bad one."""
    s = selection
    if s.source == "real":
        if not s.granule:
            raise data.DataError("choose a real granule (source: real) or switch to synthetic orbits")
        ds = data.load_swath(catalog_path, granule=s.granule)
    else:
        lo, hi = data.orbit_range()
        if not lo <= int(s.orbit) <= hi:
            raise data.DataError(f"orbit {s.orbit} does not exist in the synthetic record (orbits {lo} to {hi})")
        ds = data.load_swath(catalog_path, orbit=s.orbit, world=s.world)
    geom = data.swath_geometry(swath_key(s, catalog_path), ds["lat"].values, ds["lon"].values, s.projection)
    return ds, geom, swath_layers(ds, s, catalog_path)


def export_parts(selection: Selection, catalog_path=None, view_range=None):
    """The swath view for :mod:`app.export`: rasterised-mesh QuadMeshes (matplotlib) of every
    layer over the current view, coastlines, and the fields as a netCDF-ready Dataset."""
    import holoviews as hv
    import xarray as xr

    ensure_backends()
    ds, geom, sl = load(selection, catalog_path)
    if not sl.layers:
        raise data.DataError("nothing to export: " + ("; ".join(sl.notes) or "pick at least one layer"))
    if view_range:
        xr_, yr_ = tuple(view_range["x_range"]), tuple(view_range["y_range"])
    else:
        x0, x1, y0, y1 = geom.extent
        xr_, yr_ = (x0, x1), (y0, y1)
    runs = geom.rows_in_view(xr_, yr_)
    if not runs:
        raise data.DataError("the exported view holds no swath pixel: zoom back onto the swath")
    rows = slice(min(r.start for r in runs), max(r.stop for r in runs))
    xd, yd = axis_dims(geom.projection)
    X, Y = geom.x[rows], geom.y[rows]
    aspect = float(np.clip((xr_[1] - xr_[0]) / max(yr_[1] - yr_[0], 1e-9), 1.0, 2.5))
    # degrees on the axes: °E/°N ticks (PlateCarree) or the graticule's edge labels (projected)
    axes = {**map_axis_opts(geom.projection, "matplotlib"), **graticule_ticks(geom.projection, xr_, yr_)}
    tick_hooks = axes.pop("hooks", [])
    panels = []
    for layer in sl.layers:
        v = np.where(geom.drawable[rows], layer.values[rows], np.nan)
        if layer.log:
            v = np.where(v < layer.clim[0], layer.clim[0] * 0.999, v)  # zero rain shows as the lowest colour
        qm = hv.QuadMesh((X, Y, v), kdims=[xd, yd], vdims=[value_dim(layer)]).opts(
            backend="matplotlib", cmap=layer.cmap, clim=layer.clim, logz=layer.log, colorbar=True,
            clabel=layer.clabel, hooks=[rasterize_meshes_hook], title=layer.title, fontsize=FONTS,
            clipping_colors={"min": "#d9d9d9", "NaN": "none"} if layer.log else {"NaN": "none"},
            xlim=xr_, ylim=yr_, aspect=aspect, **axes)
        coast = coast_path(geom.projection, xr_, yr_).opts(backend="matplotlib", color="#222222", linewidth=0.4)
        overlay = qm * coast
        if geom.projection != "PlateCarree":
            overlay = overlay * graticule_overlay(geom.projection, xr_, yr_, "matplotlib", edge_ticks=True,
                                                   label_gap=EXPORT_LABEL_GAP)
        panels.append(overlay.opts(backend="matplotlib", xlim=xr_, ylim=yr_, hooks=tick_hooks, **axes))
    ncols = 2 if len(panels) > 1 else 1
    nrows = -(-len(panels) // ncols)
    layout = hv.Layout(panels).cols(ncols).opts(backend="matplotlib", sublabel_format="({alpha})",
                                                fig_inches=(3.6 * ncols, 2.2 * nrows), hspace=0.9, vspace=0.5)
    out = xr.Dataset(coords={"lat": (("along_track", "cross_track"), ds["lat"].values[rows]),
                             "lon": (("along_track", "cross_track"), ds["lon"].values[rows])})
    if "time" in ds.coords:
        out = out.assign_coords(time=("along_track", ds["time"].values[rows]))
    for layer in sl.layers:
        name = safe_var(layer.key)
        out[name] = (("along_track", "cross_track"), np.asarray(layer.values[rows], np.float32),
                     {"long_name": layer.title, "units": layer.unit})
    out.attrs.update(title=f"raincheck swath export, {ds.attrs.get('title', '')}",
                     orbit_number=int(ds.attrs.get("orbit_number", -1)), source=str(ds.attrs.get("source", "")),
                     first_scan=int(rows.start), Conventions="CF-1.10")
    entry = "granule" if selection.source == "real" else "swath"
    prov = {"entry": entry, "orbits": [int(ds.attrs.get("orbit_number", -1))],
            "granule": selection.granule or None, "scans": [int(rows.start), int(rows.stop)],
            "projection": geom.projection, "map_range": {"x": list(xr_), "y": list(yr_)},
            "model_outputs": {m: {"model_sha256": o.attrs.get("model_sha256"), "device": o.attrs.get("device")}
                              for m, o in sl.outputs.items()},
            "notes": sl.notes}
    if sl.granule is not None:  # the outputs' key: the file's content, not its path
        prov["granule_sha256"] = sl.granule.content
        prov["training_domain"] = {m: data.training_domain(m) for m in sl.outputs}
    return ExportParts(layout, out, prov, fig_inches=(3.6 * ncols, 2.2 * nrows))


def region_outline(region: str, projection: str) -> list:
    """Paths (map coordinates) outlining ``region`` when it is a box; [] for any other region."""

    if not isinstance(region, str) or not region.strip().lower().startswith("bbox:"):
        return []
    try:
        from evaluation.regions import get_region

        return bbox_outline(get_region(region).params, projection)
    except Exception as e:  # a bad spec is reported by the views; the map just draws no outline
        log.debug("no outline for region %r: %s", region, e)
        return []


def safe_var(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", key).strip("_")


class SwathMap(pn.viewable.Viewer):
    """Linked side-by-side swath maps for the current selection, plus the clicked pixel."""

    selection = param.ClassSelector(class_=Selection)
    catalog_path = param.String(default=None, allow_None=True)
    pixel = param.Tuple(default=None, allow_None=True, length=2, doc="(along, cross) of the clicked pixel")
    view_range = param.Dict(default=None, allow_None=True, doc="current x_range/y_range of the maps")
    box_message = param.String(default="", doc="what became of the last box drawn on the map")
    refresh = param.Event(doc="reload data (e.g. a model output just landed)")

    _WATCH = ("source", "world", "orbit", "granule", "models", "layers", "channel", "product",
              "quantile_level", "projection")

    def __init__(self, **params):
        super().__init__(**params)
        self._alerts = pn.Column(sizing_mode="stretch_width")
        self._maps = pn.pane.HoloViews(None, sizing_mode="stretch_width", linked_axes=True)
        self._pixel_box = pn.Column(sizing_mode="stretch_width")  # the clicked pixel's plot (fresh pane per click)
        self._pixel_plot = None
        self._pixel_info = pn.pane.Markdown("Click a pixel on a map to see its predicted distribution.",
                                            sizing_mode="stretch_width")
        self._box_info = pn.Column(sizing_mode="stretch_width")  # the last drawn box's message
        self._layout = pn.Column(self._alerts, self._box_info, self._maps,
                                 pn.Row(self._pixel_box, self._pixel_info, sizing_mode="stretch_width"),
                                 sizing_mode="stretch_width")
        self.swath = None
        self.geom = None
        self.layers: SwathLayers | None = None
        self._boxes = []  # BoundsXY stream of each map
        self._outline = None  # stream driving the region outline on every map
        self._drawn = None  # the spec of the last box drawn here
        self.selection.param.watch(self._on_selection, list(self._WATCH))
        self.selection.param.watch(self._on_region, "region")
        self.param.watch(lambda e: self.update(), "refresh")
        self.update()

    def __panel__(self):
        return self._layout

    # -- data --------------------------------------------------------------------------
    def load(self):
        """Read the swath and the layers; raise :class:`app.data.DataError` on a bad selection."""
        return load(self.selection, self.catalog_path)

    def _on_selection(self, *events):
        names = {e.name for e in events}
        if names & {"source", "world", "orbit", "granule", "projection"}:
            self.pixel = None
            self.view_range = None
        self.update()

    def _alert(self, text, kind="warning"):
        return pn.pane.Alert(data.for_page(text), alert_type=kind, sizing_mode="stretch_width", margin=(2, 5))

    def update(self):
        self._alerts.objects = []
        try:
            self.swath, self.geom, self.layers = self.load()
        except data.DataError as e:
            self.swath = self.geom = self.layers = None
            self._maps.object = None
            self._alerts.objects = [self._alert(str(e), "danger")]
            self._show_pixel()
            return
        except Exception as e:  # never a traceback in the UI
            log.exception("swath map failed")
            self.swath = self.geom = self.layers = None
            self._maps.object = None
            self._alerts.objects = [self._alert(f"could not draw the swath map: {type(e).__name__}: {e}", "danger")]
            return
        self._alerts.objects = [self._alert(n) for n in self.layers.notes]
        if not self.layers.layers:
            self._maps.object = None
            self._alerts.append(self._alert("nothing to show: pick at least one layer or a model with output", "info"))
            return
        self._maps.object = self._build()
        self._show_pixel()

    # -- plots -------------------------------------------------------------------------
    def _build(self):
        import holoviews as hv
        import holoviews.plotting.bokeh  # noqa: F401  (registers the backend's options)

        geom, proj = self.geom, self.selection.projection
        x0, x1, y0, y1 = geom.extent
        start = self.view_range or {"x_range": (x0, x1), "y_range": (y0, y1)}
        panels = []
        self._taps = []
        self._boxes = []
        xd, yd = axis_dims(proj)
        self._outline = hv.streams.Stream.define("RegionOutline", region=self.selection.region)()

        def outline(region):
            return hv.Path(region_outline(region, proj), kdims=[xd, yd]).opts(
                backend="bokeh", color="#ff1493", line_width=2, line_dash="dashed", apply_ranges=False)
        for layer in self.layers.layers:
            style = dict(cmap=layer.cmap, clim=layer.clim, cnorm="log" if layer.log else "linear",
                         colorbar=True, clabel=layer.clabel, tools=["hover", "tap", "box_select"],
                         clipping_colors=({"min": "#d9d9d9", "NaN": "transparent"} if layer.log
                                          else {"NaN": "transparent"}),
                         responsive=True, height=MAP_HEIGHT, title=layer.title, framewise=False,
                         active_tools=["wheel_zoom"], show_grid=True, xlim=start["x_range"],
                         ylim=start["y_range"])
            style.update(map_axis_opts(proj))
            if proj != "PlateCarree":  # the hover in degrees, not metres
                style["hover_tooltips"] = [(layer.clabel, "@image"), ("Longitude (°E)", "@{lon}{0.00}"),
                                           ("Latitude (°N)", "@{lat}{0.00}")]

            def cb(x_range, y_range, width, height, scale=1.0, layer=layer, style=style):
                xr_ = x_range or start["x_range"]
                yr_ = y_range or start["y_range"]
                w = int(width or 600)
                h = int(height or MAP_HEIGHT)
                return image_for(geom, layer, xr_, yr_, width=w, height=h).opts(backend="bokeh", **style)

            rng = hv.streams.RangeXY(x_range=start["x_range"], y_range=start["y_range"])
            size = hv.streams.PlotSize()
            img = hv.DynamicMap(cb, streams=[rng, size])
            coast = hv.DynamicMap(lambda x_range, y_range: coast_path(proj, x_range, y_range),
                                  streams=[hv.streams.RangeXY()])
            tap = hv.streams.Tap(source=img, x=None, y=None)
            tap.add_subscriber(self._on_tap)
            rng.add_subscriber(self._on_range)
            box = hv.streams.BoundsXY(source=img, bounds=None)
            box.add_subscriber(self._on_box)
            self._taps.append(tap)
            self._boxes.append(box)
            box_outline = hv.DynamicMap(outline, streams=[self._outline])
            overlay = img * coast * box_outline
            if proj != "PlateCarree":  # degree graticule instead of metre ticks
                overlay = overlay * hv.DynamicMap(
                    lambda x_range, y_range: graticule_overlay(proj, x_range or start["x_range"],
                                                               y_range or start["y_range"]),
                    streams=[hv.streams.RangeXY()])
            panels.append(overlay.opts(title=layer.title, backend="bokeh", **map_axis_opts(proj)))
        return hv.Layout(panels).cols(2 if len(panels) > 1 else 1).opts(shared_axes=True, backend="bokeh")

    def _on_range(self, x_range=None, y_range=None, **kw):
        if x_range is not None and y_range is not None:
            self.view_range = {"x_range": tuple(x_range), "y_range": tuple(y_range)}

    def _on_tap(self, x=None, y=None, **kw):
        if x is None or y is None or self.geom is None:
            return
        self.pixel = self.geom.nearest_pixel(float(x), float(y))
        self._show_pixel()

    # -- drawn box -> region ------------------------------------------------------------
    def _on_box(self, bounds=None, **kw):
        if bounds is not None:
            self.use_box(*bounds)

    def use_box(self, x0, y0, x1, y1, what: str = "the drawn box") -> str | None:
        """Make the map rectangle (x0, y0)-(x1, y1) the selection's region; returns its spec, or
        None (with a message) when the rectangle cannot be a region."""

        try:
            spec = map_box_to_bbox(x0, y0, x1, y1, self.selection.projection)
        except ValueError as e:
            self._box_note(f"{e} (the region stays {self.selection.region})", "warning")
            return None
        self._drawn = spec
        self.selection.region = spec
        if self.geom is not None and not self._pixels_in(x0, y0, x1, y1):
            self._box_note(f"Region: {what} `{spec}`. No pixel of this swath lies in it; the evaluation "
                           "views use it all the same.", "warning")
        else:
            self._box_note(f"Region: {what} `{spec}` (the evaluation views use it).", "info")
        return spec

    def _pixels_in(self, x0, y0, x1, y1) -> int:
        g = self.geom
        (x0, x1), (y0, y1) = sorted((x0, x1)), sorted((y0, y1))
        n = 0
        for rows in g.rows_in_view((x0, x1), (y0, y1)):
            x, y = g.x[rows], g.y[rows]
            n += int((g.drawable[rows] & (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)).sum())
        return n

    def _box_note(self, text, kind):
        self.box_message = text
        self._box_info.objects = [self._alert(text, kind)] if text else []

    def _on_region(self, e):
        if e.new != self._drawn and self.box_message:
            self._box_note("", "info")  # the region came from elsewhere: the note is stale
        if self._outline is not None:
            self._outline.event(region=e.new)

    # -- clicked pixel -----------------------------------------------------------------
    def _show_pixel(self):
        if self.pixel is None or self.swath is None:
            self._pixel_plot = None
            self._pixel_box.objects = []
            self._pixel_info.object = ("Click a pixel on a map to see its predicted distribution."
                                       if self.swath is not None else "")
            return

        i, j = self.pixel
        summary = pixel_summary(self.swath, self.layers.outputs, i, j)
        self._pixel_info.object = summary["markdown"]
        # a new pane each time: toggling a HoloViews pane's visibility trips Panel 1.9
        self._pixel_plot = pn.pane.HoloViews(pixel_plot(summary), sizing_mode="stretch_width", height=280,
                                             css_classes=["rc-pixel-plot"])
        self._pixel_box.objects = [self._pixel_plot]

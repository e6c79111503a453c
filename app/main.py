"""The raincheck Panel app: a template with a sidebar of controls and one tab per view.

``create_app(catalog_path=None)`` builds one session's app (the server calls it per session).
Every control edits one :class:`app.state.Selection`, mirrored in the URL; the views watch it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import panel as pn
import param

from app import data
from app.state import (LAYERS, PRODUCT_LABELS, PRODUCTS, VIEW_LABELS, VIEWS,
                       Selection, sync_url)
from catalogs.userinput import show
from catalogs.simulator.geometry import ORBIT_RANGE, orbit_start_time
from app.export import ExportControl
from app.jobs import RunControl
from app.swath import SwathMap
from app.views import make_views
from app.views.common import archive_session

log = logging.getLogger(__name__)

ACCENT = "#1f5f8b"
CSS = """
.rc-note { font-size: 12px; color: #555; }
"""


def _region_options() -> dict:
    try:
        from evaluation.regions import list_regions

        return {f"{r['name']}": r["spec"] for r in list_regions()}
    except Exception as e:  # evaluation not importable: global only, with the reason logged
        log.warning("region list unavailable: %s", e)
        return {"Global": "global"}


def _year_bounds() -> tuple[int, int]:
    """First and last year of the synthetic record (the period sliders' range)."""
    import pandas as pd

    return (pd.Timestamp(orbit_start_time(ORBIT_RANGE[0])).year,
            pd.Timestamp(orbit_start_time(ORBIT_RANGE[1])).year)


def _two_way(widget, selection, name, to_widget=lambda v: v, to_param=lambda v: v):
    """Keep ``widget.value`` and ``selection.<name>`` in step both ways."""
    widget.value = to_widget(getattr(selection, name))

    def w2p(e):
        try:
            setattr(selection, name, to_param(e.new))
        except (ValueError, TypeError) as err:
            pn.state.notifications and pn.state.notifications.error(data.for_html(err))

    widget.param.watch(w2p, "value")
    selection.param.watch(lambda e: setattr(widget, "value", to_widget(e.new)), name)
    return widget


class _RegionPeriodPicker(pn.viewable.Viewer):
    """What crossed the sidebar's region between two dates, to pick from: the From/To dates (bound
    to the selection's ``pick_start``/``pick_end``), a Find button, a message and a list. A
    subclass says what it lists (:meth:`_index`, :meth:`_option`) and what a pick does."""

    selection = param.ClassSelector(class_=Selection)
    catalog_path = param.String(default=None, allow_None=True)
    find_label = "Find"
    found_label = "Found"

    def __init__(self, **params):
        super().__init__(**params)
        s = self.selection
        self.start = _two_way(pn.widgets.TextInput(label="From (date)", sizing_mode="stretch_width"), s, "pick_start")
        self.end = _two_way(pn.widgets.TextInput(label="To (date)", sizing_mode="stretch_width"), s, "pick_end")
        self.find = pn.widgets.Button(label=self.find_label, sizing_mode="stretch_width")
        self.found = pn.widgets.Select(label=self.found_label, options={}, sizing_mode="stretch_width", visible=False)
        self.message = pn.pane.Alert("", alert_type="warning", visible=False, sizing_mode="stretch_width")
        self.find.on_click(lambda e: self.search())
        self.found.param.watch(self._picked, "value")

    def __panel__(self):
        return pn.Column(pn.Row(self.start, self.end), self.find, self.message, self.found,
                         sizing_mode="stretch_width")

    def _say(self, text: str, kind: str) -> None:
        self.message.object, self.message.alert_type, self.message.visible = data.for_page(text), kind, True

    def _index(self):
        raise NotImplementedError

    def _nothing(self, df) -> str:
        raise NotImplementedError

    def _option(self, row) -> tuple[str, object]:
        raise NotImplementedError

    def _listed(self, df, opts: dict) -> None:
        """After the list is filled (a subclass may pick or warn)."""

    def search(self):
        self.message.visible = False
        try:
            df = self._index()
        except data.DataError as e:
            self.found.visible = False
            self._say(str(e), "danger")
            return None
        if not len(df):
            self.found.visible = False
            self._say(self._nothing(df), "warning")
            return df
        opts = dict(self._option(r) for r in df.head(500).itertuples())
        self.found.options = opts
        self.found.label = f"{self.found_label} ({len(df)}{', first 500 listed' if len(df) > 500 else ''})"
        self.found.visible = True
        self._listed(df, opts)
        return df


class OrbitPicker(_RegionPeriodPicker):
    """Pick an orbit by number, or list the orbits that crossed the region during a period."""

    find_label = "Find orbits crossing the region"
    found_label = "Orbits found"

    def __init__(self, **params):
        super().__init__(**params)
        s = self.selection
        lo, hi = data.orbit_range()
        self.orbit = pn.widgets.IntInput(label=f"Orbit number ({lo}–{hi})", value=s.orbit, step=1,
                                         sizing_mode="stretch_width")
        self.orbit.param.watch(lambda e: setattr(s, "orbit", int(e.new)), "value")
        s.param.watch(lambda e: setattr(self.orbit, "value", int(e.new)), "orbit")

    def __panel__(self):
        return pn.Column(self.orbit, pn.Row(self.start, self.end), self.find, self.message, self.found,
                         sizing_mode="stretch_width")

    def _index(self):
        s = self.selection
        return data.orbit_index(self.catalog_path, s.pick_start, s.pick_end, s.region)

    def _nothing(self, df) -> str:
        s = self.selection
        return f"no orbit crossed {s.region} between {s.pick_start} and {s.pick_end}"

    def _option(self, r):
        return f"{r.orbit}  {str(r.start_time)[:16]}  ({100 * r.coverage:.0f} %)", int(r.orbit)

    def _picked(self, e):
        if e.new is not None:
            self.selection.orbit = int(e.new)


class GranulePicker(_RegionPeriodPicker):
    """Real mode: pick a 1C-GMI granule of the archive (the catalogue's ``granule_dir``, else the
    read roots) that crossed the region during the period (:func:`app.data.granule_index`); the
    pick becomes the selection's granule path, as if typed."""

    find_label = "Find 1C-GMI granules crossing the region"
    found_label = "Granules found"

    def _index(self):
        s = self.selection
        return data.granule_index(self.catalog_path, s.pick_start, s.pick_end, s.region)

    def _nothing(self, df) -> str:
        s = self.selection
        skipped = df.attrs.get("skipped") or []
        return (f"no 1C-GMI granule crossed {s.region} between {s.pick_start} and {s.pick_end}"
                + (f" ({len(skipped)} unreadable granule(s) skipped: {skipped[0]})" if skipped else ""))

    def _option(self, r):
        # labels carry the file name and time only (never the server folder)
        return f"{r.orbit}  {str(r.start)[:16]}  ({100 * r.coverage:.0f} %)  {Path(r.path).name}", str(r.path)

    def _listed(self, df, opts: dict) -> None:
        skipped = df.attrs.get("skipped") or []
        if skipped:
            self._say(f"{len(skipped)} unreadable granule(s) skipped: {'; '.join(skipped[:3])}", "warning")
        first = next(iter(opts.values()))  # shown first in the list: the one on the map
        self.found.value = first
        self.selection.granule = first

    def _picked(self, e):
        if e.new:
            self.selection.granule = str(e.new)


class Sidebar(pn.viewable.Viewer):
    """All controls; each writes to the shared :class:`Selection`."""

    selection = param.ClassSelector(class_=Selection)
    catalog_path = param.String(default=None, allow_None=True)

    def __init__(self, run_control=None, swath_map=None, exporter=None, **params):
        super().__init__(**params)
        s = self.selection
        self.swath_map = swath_map
        self.source = pn.widgets.RadioButtonGroup.from_param(s.param.source, color="light",
                                                             sizing_mode="stretch_width")
        self.world = pn.widgets.IntInput.from_param(s.param.world, label="World seed", sizing_mode="stretch_width")
        self.granule = pn.widgets.TextInput.from_param(s.param.granule, label="Granule path (under a data root)",
                                                       sizing_mode="stretch_width")
        self.picker = OrbitPicker(selection=s, catalog_path=self.catalog_path)
        self.granule_picker = GranulePicker(selection=s, catalog_path=self.catalog_path)
        models = data.list_models()
        self.model_note = pn.pane.Alert("", alert_type="warning", visible=False, sizing_mode="stretch_width")
        unknown = [m for m in s.models if m not in models]
        if unknown:
            self.model_note.object = data.for_page(f"unknown model(s) in the link: {', '.join(map(show, unknown[:5]))}"
                                                   f"{f' and {len(unknown) - 5} more' if len(unknown) > 5 else ''}; "
                                                   f"available: {', '.join(models) or 'none'}")
            self.model_note.visible = True
            s.models = [m for m in s.models if m in models]
        self.models = _two_way(pn.widgets.MultiChoice(label="Models", options=models, sizing_mode="stretch_width"),
                               s, "models", to_widget=lambda v: [m for m in v if m in models], to_param=list)
        self.product = _two_way(pn.widgets.Select(label="Product", options={PRODUCT_LABELS[p]: p for p in PRODUCTS},
                                                   sizing_mode="stretch_width"), s, "product")
        self.quantile = pn.widgets.FloatSlider.from_param(s.param.quantile_level, label="Quantile level", step=0.01,
                                                          sizing_mode="stretch_width")
        self.layers = _two_way(pn.widgets.CheckButtonGroup(label="Layers", options=list(LAYERS), color="light",
                                                           sizing_mode="stretch_width"), s, "layers", to_param=list)
        self.channel = pn.widgets.Select.from_param(s.param.channel, label="Tb channel", sizing_mode="stretch_width")
        self.projection = pn.widgets.Select.from_param(s.param.projection, label="Projection",
                                                       sizing_mode="stretch_width")
        self._regions = _region_options()
        self.region = pn.widgets.Select(label="Region", options=self._with_region(s.region), value=s.region,
                                        sizing_mode="stretch_width")
        self.region.param.watch(lambda e: setattr(s, "region", e.new), "value")
        s.param.watch(self._region_changed, "region")
        self.box = pn.widgets.Button(label="Use the map view as a box region", sizing_mode="stretch_width")
        self.box.on_click(lambda e: self.box_from_map())
        y0, y1 = _year_bounds()
        y0, y1 = min(y0, s.start_year), max(y1, s.end_year)  # an archive cube's years may lie outside
        self.years = pn.widgets.IntRangeSlider(label="Period (years)", start=y0, end=y1, value=(s.start_year, s.end_year),
                                               sizing_mode="stretch_width")
        self.years.param.watch(lambda e: s.param.update(start_year=e.new[0], end_year=e.new[1]), "value")
        s.param.watch(lambda e: setattr(self.years, "value", (s.start_year, s.end_year)), ["start_year", "end_year"])
        self.season = pn.widgets.RadioButtonGroup.from_param(s.param.season, color="light",
                                                             sizing_mode="stretch_width")
        self.pixels = pn.widgets.RadioButtonGroup(options={"reference strip": "strip", "all pixels": "all"},
                                                  value=s.pixels, color="light", sizing_mode="stretch_width")
        self.pixels.link(s, value="pixels", bidirectional=True)
        self.threshold = pn.widgets.FloatInput.from_param(s.param.threshold, label="Threshold (mm h-1)",
                                                          sizing_mode="stretch_width")
        self.run_control = run_control
        self.exporter = exporter

    def _with_region(self, region: str) -> dict:
        """The region list: the named regions, and ``region`` if it is none of them (a box).
        Only the current one: a value a link set and the app then refused (a control
        character, say) leaves the list with it."""
        opts = dict(self._regions)
        if region not in opts.values():
            opts[region] = region
        return opts

    def _region_changed(self, e):
        # the selection's region now, not the event's: a refused value is put back inside the
        # same change, and its event may come after the one that put it back
        region = self.selection.region
        opts = self._with_region(region)
        if opts != self.region.options:
            self.region.options = opts
        self.region.value = region

    def box_from_map(self):
        """Set the region to the box currently shown on the swath map (a box drawn with the map's
        box-select tool sets it directly, see :meth:`app.swath.SwathMap.use_box`)."""
        sm = self.swath_map
        if sm is None or not sm.view_range:
            if pn.state.notifications:
                pn.state.notifications.warning("zoom the swath map to the box first, or draw the box on the map")
            return None
        (x0, x1), (y0, y1) = sm.view_range["x_range"], sm.view_range["y_range"]
        return sm.use_box(x0, y0, x1, y1, what="the map view")

    def __panel__(self):
        s = self.selection

        def section(title, *objs, collapsed=False):
            return pn.Card(*objs, title=title, collapsed=collapsed, sizing_mode="stretch_width",
                           header_background="#eef3f7", margin=(4, 0))

        real = pn.Column(self.granule, self.granule_picker, visible=s.source == "real", sizing_mode="stretch_width")
        synth = pn.Column(self.world, self.picker, visible=s.source == "synthetic", sizing_mode="stretch_width")

        def toggle(e):
            real.visible = e.new == "real"
            synth.visible = e.new == "synthetic"

        s.param.watch(toggle, "source")
        cat = pn.pane.Markdown(f"<span class='rc-note'>Catalogue: {data.for_page(data.catalog_name(self.catalog_path))}"
                               "</span>", sizing_mode="stretch_width")
        parts = [
            section("Data", cat, self.source, synth, real),
            section("Models", self.models, self.model_note, self.product, self.quantile,
                    *( [self.run_control] if self.run_control is not None else [])),
            section("Map", self.layers, self.channel, self.projection),
            section("Region, period, season", self.region, self.box, self.years, self.season, self.pixels,
                    self.threshold),
        ]
        if self.exporter is not None:
            parts.append(section("Export for papers", self.exporter))
        return pn.Column(*parts, sizing_mode="stretch_width")


def create_app(catalog_path: str | None = None, selection: Selection | None = None, cube_path: str | None = None):
    """One session's app (a Panel template)."""

    import holoviews as hv

    pn.extension("tabulator", notifications=True, raw_css=[CSS])
    if hv.Store.current_backend != "bokeh" or "bokeh" not in hv.Store.renderers:
        hv.extension("bokeh", logo=False)
    selection = selection or Selection()
    link = (pn.state.location.search if pn.state.location is not None else "") or ""  # as sent, before the sync
    link_problems = sync_url(selection, notify=lambda m: pn.state.notifications
                             and pn.state.notifications.warning(data.for_html(m), duration=8000))
    archive_session(selection, cube_path, link)
    swath_map = SwathMap(selection=selection, catalog_path=catalog_path)
    run_control = RunControl(selection)
    run_control.param.watch(lambda e: swath_map.param.trigger("refresh"), "landed")
    views = {"swath": swath_map, **make_views(selection, catalog_path, cube_path)}
    # each view is put on the page when first shown and then kept there (hidden while another
    # is shown): going back to a view is a switch in the browser, not a rebuild of its figures
    order = [v for v in VIEWS if v in views]
    holders = {v: pn.Column(sizing_mode="stretch_width") for v in order}

    def show(v):
        if not holders[v].objects:
            holders[v].objects = [views[v]]

    tabs = pn.Tabs(*[(VIEW_LABELS[v], holders[v]) for v in order], dynamic=False, sizing_mode="stretch_width")
    tabs.active = order.index(selection.view) if selection.view in order else 0
    show(order[tabs.active])
    tabs.param.watch(lambda e: (show(order[e.new]), setattr(selection, "view", order[e.new])), "active")
    selection.param.watch(lambda e: setattr(tabs, "active", order.index(e.new)) if e.new in order else None, "view")
    exporter = ExportControl(selection=selection, catalog_path=catalog_path, cube_path=cube_path, views=views)
    sidebar = Sidebar(selection=selection, catalog_path=catalog_path, run_control=run_control,
                      swath_map=swath_map, exporter=exporter)
    # Bootstrap: its resources are served locally (the Fast templates fetch Google fonts)
    template = pn.template.BootstrapTemplate(
        title="raincheck — satellite rain retrievals against reference, truth and IPCC",
        sidebar=[sidebar], main=[*[pn.pane.Alert(data.for_page(p), alert_type="warning", css_classes=["rc-link-problem"])
                                   for p in link_problems], tabs],
        header_background=ACCENT, sidebar_width=370)
    pn.state.onload(run_control.start_polling)
    template._rc = {"selection": selection, "views": views, "tabs": tabs, "sidebar": sidebar,
                    "run_control": run_control, "exporter": exporter}
    return template

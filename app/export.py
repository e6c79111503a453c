"""Export for papers: every view as PDF, SVG or PNG at 300 dpi, the data behind it, provenance.

Figures are drawn with the *matplotlib* backend of HoloViews (no browser): publication fonts,
labelled colour bars with units, no UI chrome; swath meshes are rasterised inside vector files
(``set_rasterized``) so a full orbit stays a few MB. Next to the figure go the data behind it
(netCDF for swaths, CSV for curves and tables) and a JSON provenance manifest: catalogue and
entry, orbit(s), models with checkpoint hashes, region, period, season, software versions and
the SHA-256 of every file written.

Each view module provides ``export_parts(selection, catalog_path, **kw) -> ExportParts``; what
views and exporter share (fonts, :class:`ExportParts`, backends, safe names) is in
:mod:`app.figures`, below both, so the views never import this module.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import panel as pn
import param

from app import swath
from app.data import DataError, catalog_label, for_page, public_message
from app.figures import (FONTS, ExportParts, ensure_backends, model_provenance, rasterize_meshes_hook, safe_name,
                         show_meshes)
from app.state import FORMATS, VIEW_LABELS, VIEWS, Selection
from app.views import EXPORTERS
from catalogs.config import get_roots
import importlib.metadata as md
import platform
import tempfile

__all__ = ["DPI", "FONTS", "FORMATS", "ExportControl", "ExportError", "ExportParts", "ExportResult", "base_name",
           "ensure_backends", "export_view", "exporters", "model_provenance", "rasterize_meshes_hook", "render",
           "safe_name", "show_meshes", "software_versions"]

log = logging.getLogger(__name__)

DPI = 300
_LOCK = threading.Lock()  # matplotlib's pyplot state is not thread safe


class ExportError(RuntimeError):
    """The view cannot be exported for this selection (message for the user)."""


@dataclass
class ExportResult:
    figure: Path
    data: Path
    manifest: Path

    @property
    def paths(self) -> list[Path]:
        return [self.figure, self.data, self.manifest]


def base_name(view: str, selection: Selection) -> str:
    parts = ["raincheck", view]
    if view == "swath":
        parts.append(f"granule-{Path(selection.granule).stem}" if selection.source == "real" and selection.granule
                     else f"orbit{selection.orbit}")
        if selection.models:
            parts.append("+".join(selection.models))
    elif view == "compare":
        pass  # the comparison's own held-out sets: the region, period, season and models do not apply
    elif view == "warming":  # the experiment's own scenes: its world, group, population and level
        parts += [selection.warm_world, selection.warm_group, selection.warm_pop, f"{selection.warm_level:g}K"]
        if selection.models:
            parts.append("+".join(selection.models))
    else:
        parts += [selection.region, f"{selection.start_year}-{selection.end_year}", selection.season]
        if selection.models:
            parts.append("+".join(selection.models))
    return safe_name("_".join(str(p) for p in parts))


def software_versions() -> dict:
    out = {"python": platform.python_version()}
    for dist in ("raincheck", "numpy", "pandas", "xarray", "holoviews", "matplotlib", "panel", "bokeh",
                 "datashader", "cartopy", "intake", "torch", "scipy", "zarr"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def exporters() -> dict:
    return {"swath": swath.export_parts, **EXPORTERS}


def render(parts: ExportParts):
    """A matplotlib Figure of the parts' element (HoloViews matplotlib backend)."""
    import holoviews as hv

    ensure_backends()
    fig = show_meshes(hv.render(parts.element, backend="matplotlib"))
    fig.set_size_inches(*parts.fig_inches)
    return fig


def export_view(view: str, selection: Selection, fmt: str, out_dir: str | Path, *,
                catalog_path: str | None = None, cube_path: str | None = None, public: bool = False,
                **kw) -> ExportResult:
    """Write the figure (``fmt`` in pdf/svg/png, 300 dpi), its data and a provenance manifest
    for ``view`` under ``out_dir``; return their paths. ``public``: the export is for a web user
    (the app's Export button), so the manifest names paths relative to the data roots only."""
    fmt = fmt.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if view not in VIEWS:
        raise ExportError(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")
    table = exporters()
    if view not in table:
        raise ExportError(f"the {VIEW_LABELS[view]} view cannot be exported yet")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if view != "swath":
        kw["cube_path"] = cube_path
    try:
        parts = table[view](selection, catalog_path, **kw)
    except DataError as e:
        raise ExportError(str(e)) from e
    name = base_name(view, selection)
    fig_path = out_dir / f"{name}.{fmt}"
    with _LOCK:
        import matplotlib.pyplot as plt

        fig = render(parts)
        try:
            fig.savefig(fig_path, dpi=DPI, format=fmt, bbox_inches="tight",
                        metadata={"Creator": "raincheck"} if fmt in ("pdf", "svg", "png") else None)
        finally:
            plt.close(fig)
    data_path = _write_data(parts.data, out_dir / name)
    manifest = {
        "raincheck_export": 1,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "view": view,
        "title": VIEW_LABELS[view],
        "catalog": _catalog_label(catalog_path),
        "selection": selection.describe(),
        "region": selection.region if view != "swath" else None,
        "period": [selection.start_year, selection.end_year] if view != "swath" else None,
        "season": selection.season if view != "swath" else None,
        "models": model_provenance(selection.models),
        **parts.provenance,
        "software": software_versions(),
        "files": {p.name: {"sha256": _sha256(p), "bytes": p.stat().st_size} for p in (fig_path, data_path)},
        "figure": {"format": fmt, "dpi": DPI},
    }
    if public:
        manifest = _without_server_paths(manifest)
    man_path = out_dir / f"{name}.manifest.json"
    man_path.write_text(json.dumps(manifest, indent=2, default=str))
    return ExportResult(fig_path, data_path, man_path)


def _catalog_label(catalog_path):
    return catalog_label(catalog_path)


def _without_server_paths(obj):
    """``obj`` (a manifest) with every server path in its strings replaced by the neutral labels
    web users see (:func:`app.data.public_message`): a download from the app names the catalogue,
    cube and files relative to the data roots, never the server's folders."""
    if isinstance(obj, dict):
        return {k: _without_server_paths(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_without_server_paths(v) for v in obj]
    if isinstance(obj, (str, Path)):
        return public_message(str(obj))
    return obj


def _write_data(obj, stem: Path) -> Path:
    import pandas as pd
    import xarray as xr

    if isinstance(obj, xr.Dataset):
        path = stem.with_suffix(".nc")
        ds = obj.copy()
        for v in list(ds.variables):
            if ds[v].dtype == object:
                ds[v] = ds[v].astype(str)
        for k, v in list(ds.attrs.items()):
            if isinstance(v, (dict, list, tuple)) or v is None:
                ds.attrs[k] = json.dumps(v, default=str)
        ds.to_netcdf(path, engine="h5netcdf")
        return path
    if isinstance(obj, pd.DataFrame):
        path = stem.with_suffix(".csv")
        obj.to_csv(path, index=False)
        return path
    raise ExportError(f"cannot write the data of type {type(obj).__name__}")


class ExportControl(pn.viewable.Viewer):
    """Sidebar section: export the current view (figure + data + manifest) and download them."""

    selection = param.ClassSelector(class_=Selection)
    catalog_path = param.String(default=None, allow_None=True)
    cube_path = param.String(default=None, allow_None=True)
    fmt = param.Selector(default="pdf", objects=list(FORMATS))

    def __init__(self, views=None, out_root: str | Path | None = None, **params):
        super().__init__(**params)
        self.views = views or {}
        self._out_root = out_root
        self.button = pn.widgets.Button(label="Export current view", color="primary",
                                        sizing_mode="stretch_width", css_classes=["rc-export"])
        self.button.on_click(lambda e: self.export())
        self.format = pn.widgets.RadioButtonGroup(options={f.upper(): f for f in FORMATS}, value=self.fmt,
                                                  color="light", sizing_mode="stretch_width")
        self.format.link(self, value="fmt", bidirectional=True)
        self.status = pn.pane.Alert("", visible=False, sizing_mode="stretch_width")
        self.links = pn.Column(sizing_mode="stretch_width")
        self.result: ExportResult | None = None

    def __panel__(self):
        return pn.Column(self.format, self.button, self.status, self.links, sizing_mode="stretch_width")

    def out_dir(self) -> Path:
        if self._out_root is not None:
            root = Path(self._out_root)
        else:
            root = get_roots().sub("exports")

        root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="export-", dir=root))

    def export(self) -> ExportResult | None:
        view = self.selection.view
        kw = {}
        comp = self.views.get(view)
        if view == "swath" and comp is not None and getattr(comp, "view_range", None):
            kw["view_range"] = comp.view_range
        self.button.loading = True
        try:
            res = export_view(view, self.selection, self.fmt, self.out_dir(), catalog_path=self.catalog_path,
                              cube_path=self.cube_path, public=True, **kw)
        except ExportError as e:
            self.status.object, self.status.alert_type, self.status.visible = for_page(e), "danger", True
            self.links.objects = []
            return None
        except Exception as e:  # never a traceback in the UI
            log.exception("export failed")
            self.status.object = for_page(f"export failed: {type(e).__name__}: {e}")
            self.status.alert_type, self.status.visible = "danger", True
            self.links.objects = []
            return None
        finally:
            self.button.loading = False
        self.result = res
        size = res.figure.stat().st_size / 1e6
        self.status.object = f"{VIEW_LABELS[view]} exported ({res.figure.suffix[1:].upper()}, {size:.1f} MB)"
        self.status.alert_type, self.status.visible = "success", True
        labels = {res.figure: "Figure", res.data: "Data", res.manifest: "Provenance"}
        self.links.objects = [pn.widgets.FileDownload(file=str(p), filename=p.name, label=f"{labels[p]}: {p.name}",
                                                      color="light", sizing_mode="stretch_width",
                                                      css_classes=[f"rc-dl-{labels[p].lower()}"])
                              for p in res.paths]
        return res

"""What the views and the exporter share to draw a figure for a paper: the fonts, the parts a view
hands over (:class:`ExportParts`), HoloViews' two backends, the mesh rasterising hook, safe file
names and the models' provenance.

It sits below the views, the swath view and :mod:`app.export` (which collects every view's
``export_parts``), so imports run one way: ``app.export -> app.views/app.swath -> app.figures``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from app import data

FONTS = {"title": 10, "labels": 9, "xticks": 8, "yticks": 8, "legend": 8, "cticks": 8, "clabel": 9}


@dataclass
class ExportParts:
    """What a view hands to the exporter."""

    element: object  # a HoloViews object, styled for matplotlib
    data: object  # xarray.Dataset (-> netCDF) or pandas.DataFrame (-> CSV)
    provenance: dict = field(default_factory=dict)  # entry, orbits, models, ...
    fig_inches: tuple[float, float] = (7.2, 4.5)


def safe_name(text: str, max_len: int = 120) -> str:
    """A file-name-safe version of ``text`` (letters, digits, '.', '_', '-'; no leading dot)."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-.")
    s = re.sub(r"-{2,}", "-", s)
    return (s or "export")[:max_len]


def model_provenance(models) -> list[dict]:
    out = []
    for m in models:
        try:
            card = data.model_card(m)
        except data.DataError as e:
            out.append({"name": m, "error": str(e)})
            continue
        out.append({"name": m, "checkpoint_sha256": card.get("checkpoint_sha256"), "kind": card.get("kind"),
                    "training": card.get("training", {})})
    return out


def rasterize_meshes_hook(plot, element):
    """matplotlib hook: draw QuadMesh artists as an embedded image inside vector files, and keep
    them out of the draws HoloViews makes while it lays the figure out (the whole figure once
    per colorbar and twice to fix the aspect: each of those drew every full-orbit mesh made so
    far). :func:`show_meshes` shows them again, for the one draw that is saved."""
    artist = plot.handles.get("artist")
    if artist is not None:
        artist.set_rasterized(True)
        fig = plot.handles.get("fig")
        if fig is not None:
            artist.set_visible(False)
            fig.__dict__.setdefault("_raincheck_hidden_meshes", []).append(artist)


def show_meshes(fig):
    """Show the meshes :func:`rasterize_meshes_hook` hid while the figure was laid out; returns
    ``fig``. Call it on every figure rendered from elements with that hook, before saving."""
    for artist in fig.__dict__.pop("_raincheck_hidden_meshes", []):
        artist.set_visible(True)
    return fig


def ensure_backends() -> None:
    """Register HoloViews' bokeh (the app) and matplotlib (export) backends without switching
    the current one (styles are set per backend)."""
    import holoviews as hv

    before = hv.Store.current_backend
    import holoviews.plotting.bokeh  # noqa: F401
    import holoviews.plotting.mpl  # noqa: F401

    if hv.Store.current_backend != before:  # importing a backend may make it current
        hv.Store.set_current_backend(before if before in hv.Store.renderers else "bokeh")

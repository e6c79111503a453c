"""The evaluation views (distributions, extremes, trends, scores, the model comparison), one module each.

Which views exist, in which order, with which labels and modules is said once, in
:data:`app.state.VIEW_SPECS`; from it ``make_views(selection, catalog_path, cube_path)`` builds
the components of one session and ``EXPORTERS`` maps a view name to its
``export_parts(selection, catalog_path, **kw)`` for :mod:`app.export`.
"""

from __future__ import annotations

import importlib

from app.state import VIEW_SPECS

# (the modules of the views, imported once here: the registry names them as strings so that
# app.state stays free of Panel)
_MODULES = {v.name: importlib.import_module(v.module) for v in VIEW_SPECS if v.module.startswith("app.views.")}

EXPORTERS: dict = {v.name: getattr(_MODULES[v.name], v.exporter) for v in VIEW_SPECS if v.name in _MODULES}


def make_views(selection, catalog_path=None, cube_path=None) -> dict:
    """The evaluation views' components of one session, by view name, in tab order (the swath
    map, built with its controls by :mod:`app.main`, is not among them)."""
    kw = {"selection": selection, "catalog_path": catalog_path, "cube_path": cube_path}
    return {v.name: getattr(_MODULES[v.name], v.factory)(**kw)
            for v in VIEW_SPECS if v.name in _MODULES and v.factory}

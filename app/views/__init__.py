"""The evaluation views (distributions, extremes, trends, scores), one module each.

``make_views(selection, catalog_path)`` builds the components of one session;
``EXPORTERS`` maps a view name to its ``export_parts(selection, catalog_path)`` for app.export.
"""

from __future__ import annotations

EXPORTERS: dict = {}


def make_views(selection, catalog_path=None) -> dict:
    return {}

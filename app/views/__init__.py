"""The evaluation views (distributions, extremes, trends, scores, the model comparison), one module each.

``make_views(selection, catalog_path, cube_path)`` builds the components of one session;
``EXPORTERS`` maps a view name to its ``export_parts(selection, catalog_path, **kw)`` for
:mod:`app.export`.
"""

from __future__ import annotations

from app.views import compare, distributions, extremes, scores, trends

EXPORTERS: dict = {
    "distributions": distributions.export_parts,
    "extremes": extremes.export_parts,
    "trends": trends.export_parts,
    "scores": scores.export_parts,
    "compare": compare.export_parts,
}


def make_views(selection, catalog_path=None, cube_path=None) -> dict:
    kw = {"selection": selection, "catalog_path": catalog_path, "cube_path": cube_path}
    return {"distributions": distributions.DistributionsView(**kw), "extremes": extremes.ExtremesView(**kw),
            "trends": trends.TrendsView(**kw), "scores": scores.ScoresView(**kw),
            "compare": compare.make_view(**kw)}

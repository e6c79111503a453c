"""Scores: the model comparison table (sortable, with units) from the cube's additive skill
statistics (``evaluation.report.evaluate``), downloadable as CSV."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from app import data
from app.figures import ExportParts, ensure_backends, safe_name
from app.views import common as C
from app.views.answers import ScoresAnswer
from app.views.distributions import provenance
from evaluation.results import Scores

AGAINST = {"vs_reference": "reference (strip)", "vs_truth": "truth (all pixels)"}


def score_table(skill: dict) -> pd.DataFrame:
    """One row per (model, baseline): the scores with their units in the column names.
    ``skill``: {model: {vs_reference | vs_truth: Scores}} (``EvaluationReport.skill``; the
    report's dicts are read as :class:`evaluation.results.Scores` too)."""
    rows = []
    for model, byref in skill.items():
        for key, k in byref.items():
            k = Scores.from_dict(k)
            if k.error is not None or not k.n:
                continue
            row = {"model": model, "against": AGAINST.get(key, key), "pixels": k.n,
                   "bias (%)": k.bias_pct, "MAE (mm h-1)": k.mae, "RMSE (mm h-1)": k.rmse,
                   "correlation": k.corr, "SMAPE (%)": k.smape_pct}
            for t in ("0.1", "10"):
                for s in ("pod", "far", "hss"):
                    row[f"{s.upper()} ≥{t} mm h-1"] = k.category(t, s)
            row["CRPS (mm h-1)"] = k.crps
            row["90 % interval coverage"] = k.coverage_at("0.9")
            row["effective resolution (km)"] = k.effective_resolution_km
            rows.append(row)
    df = pd.DataFrame(rows)
    return df.dropna(axis=1, how="all") if len(df) else df


def compute(selection, cube_path=None) -> ScoresAnswer:
    cube, box = C.cube_for(selection, cube_path)
    q = C.query(selection)
    models, notes = C.models_in(cube, selection, box)
    ev = C.report(cube, models, q, extremes=False)
    df = score_table(ev.skill)
    if not len(df):
        raise data.DataError(f"no data for {q.region} in {q.period}: no pixels of the models or the "
                             "reference in this selection")
    for model, byref in ev.skill.items():
        for key, k in byref.items():
            if k.error is not None:
                notes.append(f"{model} {AGAINST.get(key, key)}: {k.error}")
            for n in (k.get("notes") or []):
                if n not in notes:
                    notes.append(n)
    return ScoresAnswer(notes=notes, table=df, query=q, models=models, cube=str(cube.path), strip=True, box=box)


def export_parts(selection, catalog_path=None, cube_path=None, **kw):
    """A publication table figure (matplotlib Table element) and the CSV."""
    import holoviews as hv

    ensure_backends()
    res = compute(selection, cube_path)
    q = res.query
    df = res.table
    shown = df[[c for c in ("model", "against", "bias (%)", "MAE (mm h-1)", "RMSE (mm h-1)", "correlation",
                            "POD ≥0.1 mm h-1", "FAR ≥0.1 mm h-1", "HSS ≥10 mm h-1", "CRPS (mm h-1)") if c in df]]
    fmt = shown.copy()
    for c in fmt.columns[2:]:
        fmt[c] = [f"{v:.3g}" if isinstance(v, (int, float, np.floating)) and np.isfinite(v) else "—" for v in fmt[c]]
    fmt.columns = [c.replace(" (", "\n(").replace(" ≥", "\n≥") for c in fmt.columns]  # two-line headers
    size = (11, 0.9 + 0.45 * (len(df) + 1))
    table = hv.Table(fmt).opts(backend="matplotlib", fig_inches=size, aspect=size[0] / size[1], max_font_size=9,
                               max_value_len=24, title=f"Scores, {q.region}, {q.period}, "
                               f"{q.season or 'all seasons'}", fontsize={"title": 11})
    return ExportParts(table, df, provenance(res, "scores"), fig_inches=size)


class ScoresView(C.EvaluationView):
    name_ = "scores"

    def compute(self):
        return compute(self.selection, self.cube_path)

    def csv(self) -> io.StringIO:
        df = self.result.table if self.result else pd.DataFrame()
        return io.StringIO(df.to_csv(index=False))

    def render(self, res):
        import panel as pn

        df = res.table
        table = pn.widgets.Tabulator(df, disabled=True, show_index=False, sizing_mode="stretch_width",
                                     layout="fit_data_table", css_classes=["rc-scores"],
                                     formatters=C.float_formatters(df))
        q = res.query
        name = f"raincheck_scores_{q.region}_{q.period}_{q.season or 'annual'}.csv"
        dl = pn.widgets.FileDownload(callback=self.csv, filename=safe_name(name), label="Download the table as CSV",
                                     color="light", css_classes=["rc-scores-csv"], width=260)
        return [pn.pane.Markdown(f"**{data.escape_text(q.region)}**, {q.period}, {q.season or 'all seasons'}: "
                                 "models against "
                                 "the reference on the strip and against the truth on all pixels "
                                 "(click a column to sort)"), table, dl]

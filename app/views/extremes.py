"""Extremes: exceedance curves, GPD return levels with confidence bands and the tail index per
source — from ``evaluation.report.evaluate`` and ``evaluation.extremes`` on the cube."""

from __future__ import annotations

import numpy as np
import pandas as pd

from app.figures import FONTS, ExportParts, ensure_backends
from app.views import common as C
from app.views.answers import ExtremesAnswer
from app.views.distributions import _colour, provenance, source_histograms
from evaluation import extremes as E


def compute(selection, cube_path=None, n_boot: int = C.N_BOOT) -> ExtremesAnswer:
    sh = source_histograms(selection, cube_path)
    notes = sh.notes
    strip = selection.pixels == "strip"
    ev = C.report(sh.cube, sh.models, sh.query, extremes=True, n_boot=n_boot)
    rows, tail = [], []
    for s in sh.sources:
        h = sh.hists[s]
        if not h.n:
            notes.append(f"no pixels for {C.source_label(s)} in this selection")
            continue
        x, surv = E.exceedance_curve(h.counts)
        for xi, p in zip(x[1:], surv[1:]):
            if p > 0 and np.isfinite(xi):
                rows.append({"curve": "exceedance", "source": s, "rate_mm_h": xi, "value": p})
        ex = ev.extremes_of(s)
        if not ex:
            continue
        rl = ex.return_levels
        if not any(v is not None and np.isfinite(v) for v in rl.level):
            notes.append(f"{C.source_label(s)}: too few rain rates above {ex.threshold:g} mm h-1 in this selection "
                         "for a GPD fit (no return levels)")
        for T, lv, lo, hi in zip(rl.return_period_pixels, rl.level, rl.ci_lower, rl.ci_upper):
            if lv is None or not np.isfinite(lv):
                continue
            rows.append({"curve": "return_level", "source": s, "return_period_pixels": T, "value": lv,
                         "ci_lower": lo, "ci_upper": hi})
        g = ex.gpd
        ci_lo, ci_hi = g.ci_xi or [None, None]
        tail.append({"source": C.source_label(s), "GPD ξ (tail index)": g.xi, "ξ CI low": ci_lo, "ξ CI high": ci_hi,
                     "σ (mm h-1)": g.sigma, "exceedances > 10 mm h-1": g.n_exceed,
                     "Hill index (binned)": ex.hill_binned, "CI level": g.confidence})
    return ExtremesAnswer(notes=notes, curves=pd.DataFrame(rows), table=pd.DataFrame(tail), baseline=sh.baseline,
                          strip=strip, query=sh.query, models=sh.models, cube=str(sh.cube.path), n_boot=n_boot,
                          box=sh.box)


def elements(res: ExtremesAnswer, backend: str = "bokeh"):
    import holoviews as hv

    ensure_backends()

    df = res.curves
    exc, rls = [], []
    srcs = list(dict.fromkeys(df["source"])) if len(df) else []
    for i, s in enumerate(srcs):
        col = _colour(s, i)
        lab = C.source_label(s)
        d = df[(df.source == s) & (df.curve == "exceedance")]
        exc.append(hv.Curve((d.rate_mm_h, d.value), hv.Dimension("rate", label="Rain rate x", unit="mm h-1"),
                            hv.Dimension("p", label="P(rate ≥ x)"), label=lab).opts(backend=backend, color=col))
        d = df[(df.source == s) & (df.curve == "return_level")]
        if len(d):
            T = hv.Dimension("T", label="Return period (pixel observations)")
            L = hv.Dimension("level", label="Return level", unit="mm h-1")
            band = hv.Area((d.return_period_pixels, d.ci_lower, d.ci_upper), T, [L, "hi"], label=f"{lab} CI")
            band = band.opts(backend=backend, alpha=0.15, **({"color": col, "line_alpha": 0} if backend == "bokeh"
                                                             else {"facecolor": col, "edgecolor": "none"}))
            line = hv.Curve((d.return_period_pixels, d.value), T, L, label=lab).opts(backend=backend, color=col)
            pts = hv.Scatter((d.return_period_pixels, d.value), T, L).opts(backend=backend, color=col)
            rls += [band, line, pts]
    common = {"logx": True, "show_grid": True}
    if backend == "bokeh":
        common.update(responsive=True, height=360, legend_position="bottom_left", tools=["hover"])
    a = hv.Overlay(exc or [hv.Curve([])]).opts(backend=backend, title="Exceedance curves", logy=True, **common)
    # no fit (too few exceedances, e.g. in a small box): an empty panel on linear axes (matplotlib
    # cannot log-scale an empty axis)
    b = hv.Overlay(rls or [hv.Curve([])]).opts(backend=backend, title="Return levels (GPD, bootstrap CI)",
                                               **(common if rls else {**common, "logx": False}))
    if backend == "bokeh":  # return levels rise with the period: the top left is free (as in the export)
        b.opts(backend="bokeh", legend_position="top_left")
    return a, b


def export_parts(selection, catalog_path=None, cube_path=None, **kw):
    import holoviews as hv

    ensure_backends()
    res = compute(selection, cube_path, n_boot=C.EXPORT_N_BOOT)
    a, b = elements(res, backend="matplotlib")
    for el in (a, b):
        el.opts(backend="matplotlib", fontsize=FONTS, legend_position="best", aspect=1.3)
    b.opts(backend="matplotlib", legend_position="top_left")
    lay = hv.Layout([a, b]).opts(backend="matplotlib", sublabel_format="({alpha})", hspace=0.3)
    tail = res.table.assign(curve="tail_index")
    return ExportParts(lay, pd.concat([res.curves, tail], ignore_index=True),
                       provenance(res, "extremes") | {"n_boot": res.n_boot}, fig_inches=(9, 3.6))


class ExtremesView(C.EvaluationView):
    name_ = "extremes"
    _WATCH = C.EvaluationView._WATCH + ("pixels",)

    def compute(self):
        return compute(self.selection, self.cube_path)

    def render(self, res):
        import panel as pn

        a, b = elements(res)
        table = pn.widgets.Tabulator(res.table, disabled=True, show_index=False, sizing_mode="stretch_width",
                                     layout="fit_data_table", formatters=C.float_formatters(res.table))
        q = res.query
        return [pn.pane.Markdown(f"**{C.data.escape_text(q.region)}**, {q.period}, {q.season or 'all seasons'} — "
                                 f"{'reference strip' if res.strip else 'all pixels'}; GPD above 10 mm h-1, "
                                 f"{res.n_boot} bootstrap resamples (exports use {C.EXPORT_N_BOOT})"),
                pn.Row(pn.pane.HoloViews(a, sizing_mode="stretch_width"),
                       pn.pane.HoloViews(b, sizing_mode="stretch_width"), sizing_mode="stretch_width"),
                pn.pane.Markdown("**Tail index per source**"), table]

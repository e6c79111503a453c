"""Distributions: PDF (log axes), CDF and Q-Q of each model against the reference or the truth,
for the chosen region, period and season — answered from the climatology cube."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pandas as pd

from app import data
from app.figures import FONTS, ExportParts, ensure_backends, model_provenance
from app.views import common as C
from app.views.answers import DistributionsAnswer
from evaluation.results import BoxPlan, CubeQuery, Histogram
from evaluation import distributions as D


def sources_for(models: list[str], strip: bool) -> tuple[str, list[str]]:
    """(baseline, sources to draw): on the strip the reference is the baseline; on all pixels
    the truth (the reference exists on the strip only)."""
    from evaluation import cube as CB

    if strip:
        return CB.REFERENCE, [CB.REFERENCE, CB.TRUTH_STRIP] + [f"{m}{CB.STRIP}" for m in models]
    return CB.TRUTH, [CB.TRUTH] + list(models)


@dataclass(frozen=True, eq=False)
class SourceHistograms:
    """What the distributions and extremes views start from: the cube answering the selection,
    the query, the models it holds (with notes about the others), the baseline source, the
    sources to draw, their histograms and the box plan (a box answered from its box cube)."""

    cube: object
    query: CubeQuery
    models: list[str]
    notes: list[str]
    baseline: str
    sources: list[str]
    hists: dict[str, Histogram]
    box: BoxPlan | None


def source_histograms(selection, cube_path=None) -> SourceHistograms:
    """The cube, query, models (with notes), baseline source, sources, their histograms and the
    box plan (a box answered from its box cube; else None) for the selection; a clear DataError
    when the selection holds no pixels."""
    cube, box = C.cube_for(selection, cube_path)
    q = C.query(selection)
    models, notes = C.models_in(cube, selection, box)
    base, sources = sources_for(models, selection.pixels == "strip")
    sources = [s for s in sources if s in cube.sources]
    hists = {s: C.histogram(cube, s, q) for s in sources}
    if not any(h.n for h in hists.values()):
        raise data.DataError(f"no data for {q.region} in {q.period}"
                             f"{' ' + q.season if q.season else ''}: widen the period or change the region")
    return SourceHistograms(cube, q, models, notes, base, sources, hists, box)


def compute(selection, cube_path=None) -> DistributionsAnswer:
    sh = source_histograms(selection, cube_path)
    notes = sh.notes
    strip = selection.pixels == "strip"
    ev = C.report(sh.cube, sh.models, sh.query, extremes=False)
    e = D.EDGES
    rows = []
    centres = np.sqrt(e[1:-2] * e[2:-1])
    for s, h in sh.hists.items():
        if not h.n:
            notes.append(f"no pixels for {C.source_label(s)} in this selection")
            continue
        pdf = D.pdf(h.counts, per="log10")[1:-1]
        cdf = D.cdf(h.counts)
        for x, p, c in zip(centres, pdf, cdf[1:-1]):
            rows.append({"curve": "pdf", "source": s, "rate_mm_h": x, "value": p})
        for x, c in zip(e[1:-1], cdf[:-1]):
            rows.append({"curve": "cdf", "source": s, "rate_mm_h": x, "value": c})
    against = "reference" if strip else "truth"
    summaries = ev.summaries(strip)
    table = []
    for s in sh.sources:
        if s not in summaries:
            continue
        sm = summaries[s]
        comp = ev.comparison_of(s.split("@")[0], against)
        table.append({"source": C.source_label(s), "pixels": sm.n, "mean (mm h-1)": sm.mean,
                      "wet fraction": sm.wet_fraction, "q99 (mm h-1)": sm.q99, "q99.9 (mm h-1)": sm.q999,
                      f"W1 vs {sh.baseline.replace('_', ' ')} (mm h-1)": comp.wasserstein1_mm_h if comp else None,
                      "Perkins score": comp.perkins_score if comp else None})
        if comp is not None and comp.qq:
            qq = comp.qq
            for lv, a, b in zip(qq.levels, qq.model, qq.reference if strip else qq.truth):
                rows.append({"curve": "qq", "source": s, "level": lv, "rate_mm_h": b, "value": a})
    return DistributionsAnswer(notes=notes, curves=pd.DataFrame(rows), table=pd.DataFrame(table),
                               baseline=sh.baseline, strip=strip, query=sh.query, models=sh.models,
                               cube=str(sh.cube.path), box=sh.box)


def _colour(source: str, i: int) -> str:
    from evaluation import cube as CB

    fixed = {CB.REFERENCE: "#000000", CB.TRUTH: "#b2182b", CB.TRUTH_STRIP: "#b2182b"}
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf"]
    return fixed.get(source, palette[i % len(palette)])


def elements(result: DistributionsAnswer, backend: str = "bokeh"):
    """(pdf, cdf, qq) HoloViews overlays."""
    import holoviews as hv

    ensure_backends()

    df = result.curves
    rate = hv.Dimension("rate", label="Rain rate", unit="mm h-1")
    base_label = C.source_label(result.baseline)
    pdfs, cdfs, qqs = [], [], []
    srcs = list(dict.fromkeys(df["source"])) if len(df) else []
    for i, s in enumerate(srcs):
        col = _colour(s, i)
        dash = "dashed" if s.startswith("truth") and result.strip else "solid"
        lab = C.source_label(s)
        d = df[(df.source == s) & (df.curve == "pdf")]
        d = d[np.isfinite(d.value) & (d.value > 0)]
        style = {"color": col}
        style.update({"line_dash": dash} if backend == "bokeh" else {"linestyle": "--" if dash == "dashed" else "-"})
        pdfs.append(hv.Curve((d.rate_mm_h, d.value), rate, hv.Dimension("pdf", label="PDF (per log10 mm h-1)"),
                             label=lab).opts(backend=backend, **style))
        d = df[(df.source == s) & (df.curve == "cdf")]
        cdfs.append(hv.Curve((d.rate_mm_h, d.value), rate, hv.Dimension("cdf", label="P(rate < x)"),
                             label=lab).opts(backend=backend, **style))
        d = df[(df.source == s) & (df.curve == "qq")]
        if len(d):
            qqs.append(hv.Scatter((d.rate_mm_h, d.value), hv.Dimension("base", label=f"{base_label} quantile",
                                                                       unit="mm h-1"),
                                  hv.Dimension("model", label="model quantile", unit="mm h-1"), label=lab)
                       .opts(backend=backend, color=col, **({"size": 7} if backend == "bokeh" else {"s": 18})))
    qd = df[df.curve == "qq"] if len(df) else df
    hi = float(np.nanmax(np.r_[qd.rate_mm_h, qd.value, 1.0])) if len(qd) else 10.0
    one = hv.Curve(([0.1, hi * 1.2], [0.1, hi * 1.2]),
                   hv.Dimension("base", label=f"{base_label} quantile", unit="mm h-1"),
                   hv.Dimension("model", label="model quantile", unit="mm h-1"), label="1:1").opts(
        backend=backend, color="#888888", **({"line_dash": "dotted"} if backend == "bokeh" else {"linestyle": ":"}))
    common = {"logx": True, "show_grid": True}
    if backend == "bokeh":
        common.update(responsive=True, height=340, legend_position="bottom_left", tools=["hover"])
    pdf = hv.Overlay(pdfs or [hv.Curve([])]).opts(backend=backend, title="PDF", logy=True, **common)
    cdf = hv.Overlay(cdfs or [hv.Curve([])]).opts(backend=backend, title="CDF", **common)
    qq = hv.Overlay([one] + qqs).opts(backend=backend, title=f"Q-Q against the {base_label}", logy=True, **common)
    return pdf, cdf, qq


def export_parts(selection, catalog_path=None, cube_path=None, **kw):
    import holoviews as hv

    ensure_backends()
    res = compute(selection, cube_path)
    pdf, cdf, qq = elements(res, backend="matplotlib")
    lay = hv.Layout([pdf, cdf, qq]).opts(backend="matplotlib", sublabel_format="({alpha})", fig_inches=(10, 3.4),
                                         hspace=0.35)
    for el in (pdf, cdf, qq):
        el.opts(backend="matplotlib", fontsize=FONTS, legend_position="best", aspect=1.1)
    return ExportParts(lay, res.curves.assign(baseline=res.baseline), provenance(res, "distributions"),
                       fig_inches=(10, 3.4))


def _answer(res):
    """A view's answer read by attribute: a typed answer as it is; a dict (a view whose answer
    is not typed yet) as a namespace with the defaults provenance needs (strip, box)."""
    return SimpleNamespace(**{"strip": True, "box": None, **res}) if isinstance(res, dict) else res


def provenance(res, view: str) -> dict:
    """The manifest of an export of a cube-based view (its answer typed, or a dict)."""
    r = _answer(res)
    q = r.query.to_dict() if isinstance(r.query, CubeQuery) else r.query
    return {"entry": "climatology cube", "cube": r.cube, "orbits": "see the cube ledger",
            "query": q, "pixels": "reference strip" if r.strip else "all pixels",
            "models_in_cube": r.models, "notes": r.notes, "models": cube_model_provenance(r),
            "statistics": f"evaluation.report / evaluation.distributions ({view})", **C.box_provenance(r.box)}


def cube_model_provenance(res) -> list[dict]:
    """The models behind a cube-based view with the checkpoint the cube's numbers come from (its
    ledger's identity), not whatever is registered now; the registered one alongside."""
    r = _answer(res)
    try:
        cube = C.open_cube(r.cube)
    except data.DataError:
        return model_provenance(r.models)
    out = []
    for d in model_provenance(r.models):
        ident = cube.identity(d["name"])
        registered = d.get("checkpoint_sha256")
        used = (ident or {}).get("checkpoint_sha256")
        d["checkpoint_sha256"] = registered if registered and used and registered.startswith(used) else used
        d["registered_checkpoint_sha256"] = registered
        d["identity_in_cube"] = ident
        if ident is None:
            d["note"] = "the cube does not record which checkpoint its numbers come from (built before identities " \
                        "were recorded)"
        elif used and registered and not registered.startswith(used):
            d["note"] = (f"the cube's numbers come from checkpoint {used}, not the registered one: rebuild with "
                         f"'raincheck climatology build --sources {d['name']} ... --replace-stale'")
        out.append(d)
    return out


class DistributionsView(C.EvaluationView):
    name_ = "distributions"
    _WATCH = C.EvaluationView._WATCH + ("pixels",)

    def compute(self):
        return compute(self.selection, self.cube_path)

    def render(self, res):
        import panel as pn

        pdf, cdf, qq = elements(res)
        table = pn.widgets.Tabulator(res.table, disabled=True, show_index=False, sizing_mode="stretch_width",
                                     formatters=C.float_formatters(res.table), layout="fit_data_table")
        q = res.query
        head = pn.pane.Markdown(f"**{data.escape_text(q.region)}**, {q.period}, {q.season or 'all seasons'} — "
                                f"{'reference strip' if res.strip else 'all pixels'}; baseline: "
                                f"{C.source_label(res.baseline)}")
        return [head, pn.Row(pn.pane.HoloViews(pdf, sizing_mode="stretch_width"),
                             pn.pane.HoloViews(cdf, sizing_mode="stretch_width"),
                             pn.pane.HoloViews(qq, sizing_mode="stretch_width"), sizing_mode="stretch_width"),
                table]

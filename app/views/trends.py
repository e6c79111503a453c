"""Trends: annual or seasonal series per model with reference and truth, Sen slopes with
confidence intervals against the IPCC AR6 envelope (a band), and the verdict table —
from ``evaluation.report.trends`` on the cube."""

from __future__ import annotations

import numpy as np
import pandas as pd

from app import data
from app.figures import FONTS, ExportParts, ensure_backends
from app.views import common as C
from app.views import warming as WV
from app.views.distributions import _colour, provenance


def stat_name(selection) -> str:
    return f"exceed:{selection.threshold:g}" if selection.trend_stat == "exceed" else selection.trend_stat


def stats_for(selection) -> tuple[str, ...]:
    return ("mean", "wet_fraction", "q99", "q999", f"exceed:{selection.threshold:g}")


STAT_LABELS = {"mean": "mean rain rate", "wet_fraction": "wet fraction (≥ 0.1 mm h-1)", "q99": "99th percentile",
               "q999": "99.9th percentile"}


def stat_label(stat: str) -> str:
    if stat.startswith("exceed:"):
        return f"P(rate ≥ {stat.split(':')[1]} mm h-1)"
    return STAT_LABELS.get(stat, stat)


def compute(selection, cube_path=None) -> dict:
    from evaluation import cube as CB

    cube, box = C.cube_for(selection, cube_path)
    q = C.query(selection)
    models, notes = C.models_in(cube, selection, box)
    strip = selection.pixels == "strip"
    sources = ([CB.REFERENCE, CB.TRUTH] if strip else [CB.TRUTH]) + models
    sources = [s for s in sources if s in cube.sources]
    if not strip:
        notes.append("all pixels: the reference exists on the strip only, so it is not shown")
    stats = stats_for(selection)
    reports = {s: C.trends(cube, s, q, freq=selection.trend_freq, stats=stats, strip=strip) for s in sources}
    series, table = [], []
    for s, rep in reports.items():
        src = rep["source"]
        for ser in rep["series"]:
            for t, v, n, g in zip(ser["time"], ser["value"], ser["n_pixels"], ser["gmst_K"]):
                series.append({"source": src, "stat": ser["stat"], "units": ser["units"], "time": t, "value": v,
                               "n_pixels": n, "gmst_K": g})
            tr, ip = ser["trend"], ser["ipcc"]
            env = ip.get("envelope") or {}
            table.append({"source": C.source_label(src), "source_id": src, "statistic": stat_label(ser["stat"]),
                          "stat": ser["stat"], "n": tr["n"],
                          "Sen slope (%/decade)": tr["pct_per_decade"],
                          "CI low (%/decade)": (tr["ci_pct_per_decade"] or [None, None])[0],
                          "CI high (%/decade)": (tr["ci_pct_per_decade"] or [None, None])[1],
                          "slope (%/K)": tr["pct_per_K"], "CI low (%/K)": (tr["ci_pct_per_K"] or [None, None])[0],
                          "CI high (%/K)": (tr["ci_pct_per_K"] or [None, None])[1],
                          "IPCC low (%/K)": env.get("lo_pct_per_K"), "IPCC high (%/K)": env.get("hi_pct_per_K"),
                          "Mann-Kendall p": tr["mann_kendall"]["p"], "verdict": ip["verdict"],
                          "reason": ip.get("reason", ""), "envelope source": env.get("source", "")})
    sdf, tdf = pd.DataFrame(series), pd.DataFrame(table)
    if not len(sdf) or sdf["value"].notna().sum() == 0:
        raise data.DataError(f"no data for {q['region']} in {q['period']}: widen the period or change the region")
    gm = next(iter(reports.values()))["gmst"]
    if gm.get("warning"):
        notes.append(gm["warning"])
    forced = None
    # the synthetic world's known forced response belongs next to a synthetic record, not an
    # archive's (PPS granules: real, or synthetic ones that stand for real data)
    if selection.source == "synthetic" and not C.is_archive_cube(cube):
        forced = WV.known_forced_response(stat_name(selection), q["region"])
        if forced.get("problem"):
            notes.append(forced["problem"])
    return {"notes": notes, "series": sdf, "table": tdf, "stat": stat_name(selection), "strip": strip, "query": q,
            "models": models, "cube": str(cube.path), "box": box, "freq": selection.trend_freq, "gmst": gm,
            "off_axis": off_axis(tdf, stat_name(selection)), "forced": forced}


FORCED_LABEL = "known forced response"


def forced_text(res: dict) -> str:
    """The world's known forced response next to the record's truth trend (synthetic mode)."""
    f = res.get("forced")
    if not f:
        return ""
    if f["value"] is None:
        return f" Known forced response: none to show ({f['why']})."
    ci = f" [{f['lo']:+.1f}, {f['hi']:+.1f}]" if f.get("lo") is not None else ""
    t = res["table"]
    truth = t[(t.stat == res["stat"]) & t.source_id.isin(["truth", "truth_strip"])]
    rec = ""
    if len(truth) and np.isfinite(float(truth["slope (%/K)"].iloc[0])):
        r = truth.iloc[0]
        rec = (f"; the record's truth trend is {float(r['slope (%/K)']):+.1f} [{float(r['CI low (%/K)']):+.1f}, "
               f"{float(r['CI high (%/K)']):+.1f}] %/K: what lies between the two is weather-sampling noise of the "
               "record, not forced change")
    return (f" Known forced response of the synthetic world ({f['world']}, version {f['world_version']}): "
            f"{f['value']:+.1f}{ci} %/K ({f['how']}){rec}.")


def off_axis(tdf: pd.DataFrame, stat: str, limit: float = 60.0) -> list[str]:
    """Sources whose slope estimate lies beyond the slope plot's ±limit %/K axis."""
    d = tdf[tdf.stat == stat]
    v = d["slope (%/K)"].astype(float)
    return list(d.source[np.isfinite(v) & (np.abs(v) > limit)])


def elements(res: dict, backend: str = "bokeh"):
    import holoviews as hv

    ensure_backends()

    stat = res["stat"]
    sdf = res["series"]
    sdf = sdf[sdf.stat == stat]
    unit = sdf["units"].iloc[0] if len(sdf) else ""
    lines = []
    for i, s in enumerate(dict.fromkeys(sdf.source)):
        d = sdf[sdf.source == s]
        t = pd.DatetimeIndex(pd.to_datetime(d.time))
        t = (t.year + (t.day_of_year - 1) / 365.25).values  # decimal years: clean axes in every backend
        col = _colour(s, i)
        y = hv.Dimension("value", label=stat_label(stat), unit=None if unit == "1" else unit)
        xt = hv.Dimension("time", label="Year")
        lines.append(hv.Curve((t, d.value), xt, y, label=C.source_label(s)).opts(backend=backend, color=col))
        lines.append(hv.Scatter((t, d.value), xt, y).opts(backend=backend, color=col))
    tdf = res["table"]
    tdf = tdf[tdf.stat == stat]
    cats = list(tdf.source)
    x = hv.Dimension("source", label="Source")
    yd = hv.Dimension("slope", label="Trend (% per K of warming)")
    est = tdf["slope (%/K)"].astype(float).values
    lo = tdf["CI low (%/K)"].astype(float).values
    hi = tdf["CI high (%/K)"].astype(float).values
    items = []
    env_lo, env_hi = tdf["IPCC low (%/K)"].dropna(), tdf["IPCC high (%/K)"].dropna()
    if len(env_lo) and len(env_hi):
        items.append(hv.HSpan(float(env_lo.iloc[0]), float(env_hi.iloc[0]), label="IPCC AR6 envelope").opts(
            backend=backend, alpha=0.3, **({"color": "#74add1"} if backend == "bokeh" else {"facecolor": "#74add1"})))
    items.append(hv.HLine(0).opts(backend=backend, color="#555555",
                                  **({"line_dash": "dotted"} if backend == "bokeh" else {"linestyle": ":"})))
    ok = np.isfinite(est)
    if ok.any():
        cat_ok = [c for c, k in zip(cats, ok) if k]
        items.append(hv.ErrorBars((cat_ok, est[ok], (est - lo)[ok], (hi - est)[ok]), x, [yd, "neg", "pos"])
                     .opts(backend=backend, color="#222222"))
        items.append(hv.Scatter((cat_ok, est[ok]), x, yd, label="Sen slope, 95 % CI").opts(
            backend=backend, color="#d7301f", **({"size": 9} if backend == "bokeh" else {"s": 30})))
    forced = res.get("forced") or {}
    fv = forced.get("value")
    if fv is not None:  # the world's known forced response, as one more column of the slope chart
        items.append(hv.Scatter(([FORCED_LABEL], [fv]), x, yd, label=f"{FORCED_LABEL} ({forced['world']} world)")
                     .opts(backend=backend, color="#1b7837", marker="diamond" if backend == "bokeh" else "D",
                           **({"size": 12} if backend == "bokeh" else {"s": 50})))
        if forced.get("lo") is not None:
            items.append(hv.ErrorBars(([FORCED_LABEL], [fv], [fv - forced["lo"]], [forced["hi"] - fv]), x,
                                      [yd, "neg", "pos"]).opts(backend=backend, color="#1b7837"))
    finite = np.r_[est[ok], [float(env_lo.iloc[0]) if len(env_lo) else 0, float(env_hi.iloc[0]) if len(env_hi) else 0],
                   [fv] if fv is not None else []]
    ylim = (max(min(-5.0, float(np.nanmin(finite)) - 5), -60.0), min(max(15.0, float(np.nanmax(finite)) + 5), 60.0))
    common = {"show_grid": True}
    slope_opts = {}
    if backend == "bokeh":
        common.update(responsive=True, height=360, tools=["hover"])
        # the source names side by side ran into each other from three or four columns on
        labels = list(cats) + ([FORCED_LABEL] if fv is not None else [])
        if sum(len(str(c)) for c in labels) > 45:
            slope_opts["xrotation"] = 25
    series = hv.Overlay(lines or [hv.Curve([])]).opts(
        backend=backend, title=f"{stat_label(stat)}: {'annual' if res['freq'] == 'year' else 'seasonal'} series",
        legend_position="top_left", **common)
    slopes = hv.Overlay(items).opts(backend=backend, title="Trend per K of warming vs IPCC AR6", ylim=ylim, xlabel="",
                                    ylabel="Trend (% per K of warming)",
                                    legend_position="top_left", **common, **slope_opts)
    return series, slopes


def verdict_table(res: dict) -> pd.DataFrame:
    cols = ["source", "statistic", "Sen slope (%/decade)", "CI low (%/decade)", "CI high (%/decade)", "slope (%/K)",
            "CI low (%/K)", "CI high (%/K)", "IPCC low (%/K)", "IPCC high (%/K)", "Mann-Kendall p", "verdict"]
    return res["table"][cols]


def export_parts(selection, catalog_path=None, cube_path=None, **kw):
    import holoviews as hv

    ensure_backends()
    res = compute(selection, cube_path)
    a, b = elements(res, backend="matplotlib")
    for el in (a, b):
        el.opts(backend="matplotlib", fontsize=FONTS, aspect=1.4)
    b.opts(backend="matplotlib", xrotation=30)
    lay = hv.Layout([a, b]).opts(backend="matplotlib", sublabel_format="({alpha})", hspace=0.3)
    parts = [res["series"].assign(kind="series"), res["table"].assign(kind="trend")]
    f = res.get("forced") or {}
    if f.get("value") is not None:
        parts.append(pd.DataFrame([{"kind": "forced", "source": FORCED_LABEL, "source_id": f"{f['world']}-world",
                                    "stat": res["stat"], "statistic": stat_label(res["stat"]), "slope (%/K)": f["value"],
                                    "CI low (%/K)": f.get("lo"), "CI high (%/K)": f.get("hi"), "reason": f["how"]}]))
    data_out = pd.concat(parts, ignore_index=True)
    return ExportParts(lay, data_out, provenance(res, "trends") | {"gmst": res["gmst"], "freq": res["freq"],
                                                                   "known_forced_response": f or None},
                       fig_inches=(10, 3.8))


class TrendsView(C.EvaluationView):
    name_ = "trends"
    _WATCH = C.EvaluationView._WATCH + ("pixels", "trend_stat", "trend_freq", "threshold", "source")

    def __init__(self, **params):
        import panel as pn

        super().__init__(**params)
        s = self.selection
        self.controls = pn.Row(
            pn.widgets.RadioButtonGroup.from_param(s.param.trend_stat, color="light"),
            pn.widgets.RadioButtonGroup.from_param(s.param.trend_freq, color="light"),
            sizing_mode="stretch_width")
        self._layout.insert(0, self.controls)

    def answer_stamp(self):
        return WV.results_stamp()  # the known forced response comes from the stored warming results

    def compute(self):
        return compute(self.selection, self.cube_path)

    def render(self, res):
        import panel as pn

        a, b = elements(res)
        t = verdict_table(res)
        table = pn.widgets.Tabulator(t, disabled=True, show_index=False, sizing_mode="stretch_width",
                                     layout="fit_data_table", groupby=["statistic"],
                                     css_classes=["rc-verdicts"], formatters=C.float_formatters(t))
        off = (f" Off the slope axis (see the table): {', '.join(res['off_axis'])}." if res["off_axis"] else "")
        return [pn.pane.Markdown(f"**{data.escape_text(res['query']['region'])}**, {res['query']['period']}, "
                                 f"{res['query']['season'] or 'all seasons'} — "
                                 f"{'reference strip' if res['strip'] else 'all pixels'}; GMST: {res['gmst'].get('label')}.{off}"
                                 f"{data.escape_text(forced_text(res))}", css_classes=["rc-trends-summary"]),
                pn.Row(pn.pane.HoloViews(a, sizing_mode="stretch_width"),
                       pn.pane.HoloViews(b, sizing_mode="stretch_width"), sizing_mode="stretch_width"),
                pn.pane.Markdown("**Verdicts** (consistent / inconsistent / not detectable)"), table]

"""The model comparison view: every model on the same held-out sets (the in-distribution test
year and the future warmer decades) -- overall and tail scores, the extreme-trend error (%/K)
against the truth, the issue-7 goal, OOD detection and the in/out split.

It shows the last comparison stored under ``<data_root>/comparison/compare.json`` (written by
``raincheck compare``, or by the "Run comparison" button here, which runs
:func:`evaluation.compare.compare` as a ``"compare"`` job of the app's job system
(:mod:`app.comparejobs`: in a worker process, with progress and Cancel; a second session asking
for the same comparison joins the running one and sees its result). Numbers are never re-derived
here; the held-out sets are fixed by the comparison, so the sidebar's region, period and season
do not apply. The extreme-trend errors of the comparison are of an *unpaired* design (a test year
against future decades: different weather), labelled as such: their intervals contain zero.

"Forced response (paired counterfactual climates)": for the world preset picked (the link's
``preset``, shared with the Warming response view), the present-climate CRPS of the comparison next
to each model's error of the forced response (model − truth, %/K) at every warming level of the
stored ``raincheck warming run`` results, with the paired scene-bootstrap interval and the verdict,
the p99.9 error at +4 K in every preset, and a figure of the error against the warming level per
statistic (:mod:`evaluation.warming.table` builds every row; nothing is computed here).

``export_parts`` draws the publication figure (CRPS per split, extreme-trend errors with their 90 %
intervals, the goal chart; then the forced-response errors of the picked preset, one panel per
statistic) and hands over the score, trend and forced-response rows as CSV.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import panel as pn
import param

from app import data
from app.comparejobs import ComparisonJob, ComparisonJobs, get_comparison_jobs
from app.figures import FONTS, ExportParts, ensure_backends
from app.jobs import JobRow, Polling
from app.state import WARMING_WORLDS, Selection
from app.views import warming as WV
from evaluation import compare as _EC
from evaluation.compare import GOAL_CRPS_COST, GOAL_TREND_GAIN
from evaluation.warming import table as FT
from models.errors import ModelError
from evaluation.compare import default_result_path, load_result as _load, save_result as _save, unclean, goal_check
import hashlib
import json

log = logging.getLogger(__name__)

SPLITS = {"test": "test year", "ood": "future decades"}
#: The issue-7 goal in percent, from its one definition (``evaluation.compare.goal_check``).
GOAL_TREND_PCT = -100.0 * GOAL_TREND_GAIN
GOAL_CRPS_PCT = 100.0 * GOAL_CRPS_COST


def result_path() -> Path:
    return default_result_path()


def load_result(path: Path | None = None) -> dict | None:
    return _load(path)


def save_result(res: dict, path: Path | None = None) -> Path:
    return _save(res, path)


def no_result_message() -> str:
    return (f"No model comparison yet: run `raincheck compare` (it stores the result in {result_path()}) "
            "or press *Run comparison* in the Model comparison view.")


def stored_result(path: Path | None = None) -> dict:
    """The stored comparison with JSON nulls back to NaN; :class:`app.data.DataError` (a message
    for the user) when there is none or it is not a ``raincheck.compare/1`` result."""

    res = load_result(path)
    if res is None:
        raise data.DataError(no_result_message())
    return checked(unclean(res), path or result_path())


def checked(res: dict, where="the comparison") -> dict:
    """``res`` if it has what the view draws, else :class:`app.data.DataError`."""
    try:
        ok = (isinstance(res.get("models"), dict) and res["models"] and res["reference"] in res["models"]
              and all(s in m for m in res["models"].values() for s in ("test", "ood", "trend"))
              and list(res["thresholds_mm_h"]) and {"test", "ood"} <= set(res["periods"]))
    except (AttributeError, KeyError, TypeError):
        ok = False
    if not ok:
        raise data.DataError(f"{where} is not a complete raincheck.compare/1 result "
                             f"(schema {res.get('schema') if isinstance(res, dict) else None!r}); "
                             "run `raincheck compare` again")
    return res


def score_frame(res: dict):
    """One row per (model, split): the overall and tail scores (a pandas DataFrame)."""
    rows = []
    th = list(res["thresholds_mm_h"])
    for name, m in res["models"].items():
        for split in ("test", "ood"):
            s = m[split]
            row = {"model": name, "split": SPLITS[split],
                   "CRPS": s["crps"], "QS": s["qs"], "MSE": s["mse"], "corr": s["corr"]}
            for k in th:
                row[f"twCRPS {k}"] = s[f"twcrps@{k}"]
                row[f"SEDI {k}"] = s[f"sedi@{k}"]
                row[f"FB {k}"] = s[f"fbias@{k}"]
            rows.append(row)
    return pd.DataFrame(rows)


def trend_frame(res: dict):
    """One row per model: extreme trends (%/K) of model and truth, errors (90 % interval) and the goal."""
    rows = []
    for name, m in res["models"].items():
        t = m["trend"]
        row = {"model": name}
        for k in res["thresholds_mm_h"]:
            row[f"{k} model %/K"] = t[k]["model_pct_per_K"]
            row[f"{k} truth %/K"] = t[k]["truth_pct_per_K"]
            row[f"{k} error"] = t[k]["error_pct_per_K"]
            ci = t[k].get("error_ci90") or [None, None]
            row[f"{k} error CI90 low"], row[f"{k} error CI90 high"] = ci[0], ci[1]
        row["trend error"] = t["trend_error"]
        g = (res.get("goal") or {}).get("models", {}).get(name)
        red = None if g is None else g.get("trend_error_reduction")
        row["error change"] = None if red is None else -red
        row["CRPS change"] = None if g is None else g["crps_change"]
        row["goal met"] = None if g is None else g["met"]
        rows.append(row)
    return pd.DataFrame(rows)


def goal_frame(res: dict) -> pd.DataFrame:
    """One row per model: trend-error and test-CRPS change against the reference (%), goal met.
    The reference is the origin (0, 0)."""

    goal = (res.get("goal") or {}).get("models") or goal_check(res)["models"]
    rows = [{"model": res["reference"], "trend error change (%)": 0.0, "test CRPS change (%)": 0.0,
             "goal met": None, "reference": True}]
    for name, g in goal.items():
        rows.append({"model": name, "trend error change (%)": -100 * float(g["trend_error_reduction"]),
                     "test CRPS change (%)": 100 * float(g["crps_change"]), "goal met": bool(g["met"]),
                     "reference": False})
    return pd.DataFrame(rows)


def table_data(res: dict) -> pd.DataFrame:
    """The score and trend tables as one CSV-ready frame (``table`` says which a row is from)."""
    sf = score_frame(res).assign(table="scores")
    tf = trend_frame(res).assign(table="trends", split="test year -> future decades")
    out = pd.concat([sf, tf], ignore_index=True)
    return out[["table", "model", "split"] + [c for c in out.columns if c not in ("table", "model", "split")]]


def _f(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _years(period: str) -> str:
    """'2055-01-01..2059-12-31' -> '2055–2059' (a single year once)."""
    a, _, b = str(period).partition("..")
    return a[:4] if not b or a[:4] == b[:4] else f"{a[:4]}–{b[:4]}"


def _dash(backend: str, style: str = "dashed") -> dict:
    if backend == "bokeh":
        return {"line_dash": style, "line_width": 1}
    return {"linestyle": {"dashed": "--", "dotted": ":"}[style], "linewidth": 1}


def elements(res: dict, backend: str = "bokeh"):
    """(CRPS by split, extreme-trend errors, goal chart) HoloViews overlays."""
    ensure_backends()
    names = list(res["models"])
    common = {"show_grid": True}
    bk = backend == "bokeh"
    titles = (("CRPS, test year vs future", "Unpaired extreme-trend error, 90 % CI",
               f"Goal ({GOAL_TREND_PCT:+.0f} % error, {GOAL_CRPS_PCT:+.0f} % CRPS)".replace("-", "−")) if bk else
              ("CRPS, test year vs future decades", "Unpaired extreme-trend error, test year → future (90 % CI)",
               f"Goal: trend error ≤ −{-GOAL_TREND_PCT:.0f} %, CRPS ≤ +{GOAL_CRPS_PCT:.0f} %"))
    if bk:
        common.update(responsive=True, height=320, tools=["hover"])
    axis = {"xticks": [(i, n) for i, n in enumerate(names)], "xlim": (-0.6, len(names) - 0.4)}
    return (_crps_panel(res, names, backend, titles[0], axis, common),
            _trend_panel(res, names, backend, titles[1], axis, common),
            _goal_panel(res, backend, titles[2], common))


def _crps_panel(res: dict, names: list, backend: str, title: str, axis: dict, common: dict):
    """(a) CRPS per model, test year vs future decades (lollipops side by side)."""
    import holoviews as hv

    bk = backend == "bokeh"
    per = res["periods"]
    xd = hv.Dimension("x", label="Model")
    cd = hv.Dimension("CRPS", label="CRPS", unit="mm h-1")
    citems = []
    for off, split, col in ((-0.15, "test", "#4575b4"), (0.15, "ood", "#d73027")):
        x = np.arange(len(names)) + off
        y = np.array([_f(res["models"][n][split]["crps"]) for n in names])
        ok = np.isfinite(y)
        if not ok.any():
            continue
        label = f"{SPLITS[split]} {_years(per[split]['period'])} (GMST {per[split]['gmst_K']:+.2f} K)"
        citems.append(hv.Spikes((x[ok], y[ok]), xd, cd).opts(
            backend=backend, color=col, **({"line_width": 3} if backend == "bokeh" else {"linewidth": 3})))
        citems.append(hv.Scatter((x[ok], y[ok]), xd, cd, label=label).opts(
            backend=backend, color=col, **({"size": 8} if backend == "bokeh" else {"s": 25})))
    vals = np.array([_f(res["models"][n][sp]["crps"]) for n in names for sp in SPLITS])
    top = float(vals[np.isfinite(vals)].max()) if np.isfinite(vals).any() else 0.0
    crps = hv.Overlay(citems or [hv.Scatter([], xd, cd)]).opts(
        backend=backend, title=title, **axis, xrotation=30,
        ylim=(0, (1.6 if bk else 1.35) * top if top > 0 else 1.0),
        xlabel="", ylabel="CRPS (mm h-1)", legend_position="top_left", **common)
    return crps


def _trend_panel(res: dict, names: list, backend: str, title: str, axis: dict, common: dict):
    """(b) extreme-trend error (model - truth, %/K) per percentile with the 90 % bootstrap interval."""
    import holoviews as hv

    xd = hv.Dimension("x", label="Model")
    th = list(res["thresholds_mm_h"])
    colours = ["#1b7837", "#762a83", "#e08214", "#2166ac"]
    width = 0.5
    offs = np.linspace(-width / 2, width / 2, len(th)) if len(th) > 1 else np.zeros(1)
    yd = hv.Dimension("error", label="Extreme-trend error (model − truth)", unit="%/K")
    items = [hv.HLine(0).opts(backend=backend, color="#555555", **_dash(backend, "dotted"))]
    for j, k in enumerate(th):
        x, y, lo, hi = [], [], [], []
        for i, n in enumerate(names):
            t = res["models"][n]["trend"][k]
            e = _f(t["error_pct_per_K"])
            if not np.isfinite(e):
                continue
            ci = t.get("error_ci90") or [np.nan, np.nan]
            x.append(i + offs[j])
            y.append(e)
            lo.append(e - _f(ci[0]) if np.isfinite(_f(ci[0])) else 0.0)
            hi.append(_f(ci[1]) - e if np.isfinite(_f(ci[1])) else 0.0)
        if not x:
            continue
        col = colours[j % len(colours)]
        label = f"{k} ({_f(res['thresholds_mm_h'][k]):.1f} mm h-1)"
        items.append(hv.ErrorBars((x, y, lo, hi), xd, [yd, "neg", "pos"]).opts(
            backend=backend, color=col, **({} if backend == "bokeh" else {"edgecolor": col, "capsize": 2})))
        items.append(hv.Scatter((x, y), xd, yd, label=label).opts(
            backend=backend, color=col, **({"size": 8} if backend == "bokeh" else {"s": 25})))
    trend = hv.Overlay(items).opts(
        backend=backend, title=title,
        **axis, xrotation=30, xlabel="", ylabel="Extreme-trend error, model − truth (%/K)",
        legend_position="top_left", **common)
    return trend


def _goal_panel(res: dict, backend: str, title: str, common: dict):
    """(c) the goal: trend-error change vs test-CRPS change against the reference."""
    import holoviews as hv

    bk = backend == "bokeh"
    ref = res["reference"]
    gf = goal_frame(res)
    ok = np.isfinite(gf["trend error change (%)"]) & np.isfinite(gf["test CRPS change (%)"])
    gf = gf[ok]
    gx = hv.Dimension("test CRPS change (%)", label=f"Test-year CRPS change vs {ref}", unit="%")
    gy = hv.Dimension("trend error change (%)", label=f"Extreme-trend error change vs {ref}", unit="%")
    xs = np.r_[gf[gx.name].values, GOAL_CRPS_PCT, 0.0]
    ys = np.r_[gf[gy.name].values, GOAL_TREND_PCT, 0.0]
    pad_x = max(2.0, 0.15 * float(np.ptp(xs)))
    pad_y = max(5.0, 0.15 * float(np.ptp(ys)))
    gxlim = (float(xs.min()) - pad_x, float(xs.max()) + pad_x)
    gylim = (float(ys.min()) - pad_y, float(ys.max()) + pad_y)
    # matplotlib cannot put a Rectangles collection in a legend: the region is named by its edges
    region = hv.Rectangles([(gxlim[0], gylim[0], GOAL_CRPS_PCT, GOAL_TREND_PCT)],
                           **({"label": "goal region"} if backend == "bokeh" else {})).opts(
        backend=backend, color="#a6dba0", alpha=0.35, **({"line_alpha": 0} if bk else {"linewidth": 0}))
    gitems = [region, hv.Text(gxlim[0] + 0.03 * (gxlim[1] - gxlim[0]), gylim[0] + 0.03 * (gylim[1] - gylim[0]),
                              "goal region", fontsize=8, halign="left", valign="bottom").opts(
                  backend=backend, color="#1b7837"),
              hv.HLine(GOAL_TREND_PCT).opts(backend=backend, color="#1b7837", **_dash(backend)),
              hv.VLine(GOAL_CRPS_PCT).opts(backend=backend, color="#b2182b", **_dash(backend))]
    for kind, sub, col, marker in (("reference", gf[gf["reference"]], "#000000", "s"),
                                   ("goal met", gf[gf["goal met"] == True], "#1b7837", "o"),  # noqa: E712
                                   ("goal not met", gf[gf["goal met"] == False], "#d73027", "o")):  # noqa: E712
        if len(sub):
            gitems.append(hv.Scatter(sub, gx, [gy, "model"], label=kind).opts(
                backend=backend, color=col, marker=marker if backend == "matplotlib" else
                {"s": "square", "o": "circle"}[marker], **({"size": 9} if backend == "bokeh" else {"s": 30})))
    if len(gf):
        gitems.append(hv.Labels(gf, [gx, gy], "model").opts(
            backend=backend, **({"text_font_size": "8pt", "xoffset": 0.02 * (gxlim[1] - gxlim[0]),
                                 "yoffset": 0.03 * (gylim[1] - gylim[0]), "text_align": "left", "text_color": "#222222"}
                                if backend == "bokeh" else
                                {"size": 7, "color": "#222222", "xoffset": 0.02 * (gxlim[1] - gxlim[0]),
                                 "yoffset": 0.03 * (gylim[1] - gylim[0]), "horizontalalignment": "left"})))
    goal = hv.Overlay(gitems).opts(
        backend=backend, title=title,
        xlim=gxlim, ylim=gylim, xlabel=f"Test-year CRPS change vs {ref} (%)",
        ylabel=f"Extreme-trend error change vs {ref} (%)", legend_position="top_left", **common)
    return goal


# ------------------------------------------------------------------ forced response (paired design)
FORCED_TITLE = "Forced response (paired counterfactual climates)"
#: the statistics of the forced-response table and figure (one panel each)
FORCED_STATS = FT.DEFAULT_STATS
FORCED_LABELS = {"mean": "mean rain rate", "p99": "p99 (all pixels)", "p99.9": "p99.9 (all pixels)"}


def unpaired_note(res: dict) -> str:
    """What the comparison's extreme-trend errors are (an unpaired design) and how many of their
    90 % intervals contain zero."""
    n = inside = 0
    for m in res["models"].values():
        for k in res["thresholds_mm_h"]:
            ci = (m["trend"].get(k) or {}).get("error_ci90") or [np.nan, np.nan]
            lo, hi = _f(ci[0]), _f(ci[1])
            if np.isfinite(lo) and np.isfinite(hi):
                n += 1
                inside += int(lo <= 0.0 <= hi)
    if inside == n:
        share = (f"All {n} of their 90 % intervals contain zero: at this sample size they cannot tell the models "
                 "apart.")
    else:
        share = f"{inside} of their {n} 90 % intervals contain zero."
    return (f"**Unpaired design** (`raincheck compare`): extreme-trend errors between the test year and the future "
            f"decades, different weather in each. {share} The paired forced response below measures the same "
            "question on the same weather.")


def forced_compute(world: str, comparison: dict | None, results: dict | None = None) -> dict:
    """The forced-response rows of every stored result beside the comparison's CRPS
    (:func:`evaluation.warming.table.forced_table`), the picked world's rows side by side and the
    headline; :class:`app.data.DataError` (a message) when there is no result for ``world``."""
    results = WV.stored_results() if results is None else results
    if world not in results:
        raise data.DataError(WV.no_result_message(world, sorted(results)))
    table = FT.forced_table(results, comparison, stats=FORCED_STATS)
    wt = table[table["world"] == world]
    meta = WV._meta(results[world])
    drawn = [m for m in dict.fromkeys(wt["model"]) if wt.loc[wt["model"] == m, "error"].notna().any()]
    notes = list(dict.fromkeys(n for n in wt["note"] if n))
    notes += WV._stale_checkpoints(meta["models"], [m for m in drawn if m in meta["models"]])
    return {"world": world, "meta": meta, "table": table, "world_table": wt, "models": drawn,
            "levels": FT.level_table(table, world), "headline": FT.headline(table), "notes": notes,
            "reference": None if comparison is None else comparison.get("reference")}


def _interval_text(e, lo, hi) -> str:
    if not np.isfinite(_f(e)):
        return "—"
    ci = f" [{_f(lo):+.2f}, {_f(hi):+.2f}]" if np.isfinite(_f(lo)) and np.isfinite(_f(hi)) else " [undefined]"
    return f"{_f(e):+.2f}{ci}"


def forced_display(fres: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two tables as shown: the picked world (per model and statistic: CRPS, CRPS ratio, the
    error with its interval and the verdict at each level) and the headline across worlds."""
    lt = fres["levels"]
    levels = sorted({float(c.split(" ")[0][1:]) for c in lt.columns if c.endswith(" K error")})
    ci = WV._ci(fres["meta"])
    shown = pd.DataFrame({"model": lt["model"], "statistic": lt["statistic"], "CRPS test year": lt["crps_test"],
                          "CRPS / reference": lt["crps_ratio"]})
    for L in levels:
        k = f"+{L:g} K"
        shown[f"{k} error (%/K) [{ci}]"] = [_interval_text(e, lo, hi) for e, lo, hi in
                                            zip(lt[f"{k} error"], lt[f"{k} lo"], lt[f"{k} hi"])]
        shown[f"{k} verdict"] = lt[f"{k} verdict"]
    shown["note"] = lt["note"]
    h = fres["headline"]
    worlds = [c[:-len(" error")] for c in h.columns if c.endswith(" error") and not c.endswith(" error_lo")]
    head = pd.DataFrame({"model": h["model"], "CRPS test year": h["crps_test"], "CRPS / reference": h["crps_ratio"]})
    for w in worlds:
        head[f"{w}: p99.9 error +{FT.HEADLINE_LEVEL_K:g} K"] = [
            _interval_text(e, lo, hi) + (f" {v}" if isinstance(v, str) else "")
            for e, lo, hi, v in zip(h[f"{w} error"], h[f"{w} error_lo"], h[f"{w} error_hi"], h[f"{w} verdict"])]
    return shown, head


def forced_elements(fres: dict, backend: str = "bokeh") -> list:
    """One panel per statistic: each model's error of the forced response (model − truth, %/K)
    against the warming level, with its paired interval as a bar, and the zero line."""
    import holoviews as hv

    ensure_backends()
    bk = backend == "bokeh"
    wt = fres["world_table"]
    models = fres["models"]
    col = WV._colours(models)
    levels = sorted(float(x) for x in wt["warming_K"].unique())
    xw = hv.Dimension("warming_K", label="Warming above the training climate", unit="K")
    ye = hv.Dimension("error", label="Error of the forced response, model − truth", unit="%/K")
    half = min(0.4, 0.05 * len(models))
    offs = np.linspace(-half, half, len(models)) if len(models) > 1 else np.zeros(1)
    ci = WV._ci(fres["meta"])
    out = []
    for j, stat in enumerate(FORCED_STATS):
        d0 = wt[wt["statistic"] == stat]
        items = [hv.HLine(0).opts(backend=backend, color="#555555", **_dash(backend))]
        vals = [0.0]
        for off, m in zip(offs, models):
            d = d0[d0["model"] == m].sort_values("warming_K")
            x = d["warming_K"].astype(float).values + off
            y, lo, hi = (d[c].astype(float).values for c in ("error", "error_lo", "error_hi"))
            ok = np.isfinite(y)
            if not ok.any():
                continue
            band = ok & np.isfinite(lo) & np.isfinite(hi)
            c = col[m]
            if band.any():  # the percentile interval as drawn from lo to hi (it need not hold the estimate)
                items.append(hv.Segments((x[band], lo[band], x[band], hi[band]), [xw, ye, "x1", "y1"]).opts(
                    backend=backend, color=c, **({"line_width": 1.5} if bk else {"linewidth": 1.5})))
            items.append(hv.Scatter((x[ok], y[ok]), xw, ye, label=m).opts(
                backend=backend, color=c, **({"size": 7} if bk else {"s": 22})))
            vals += list(y[ok]) + list(lo[band]) + list(hi[band])
        v = np.asarray(vals, float)
        pad = 0.08 * max(float(np.ptp(v)), 0.5)
        # one legend: matplotlib right of the last panel; bokeh inside the first, above the data (room made on
        # top of every panel alike, so that the three stay aligned; a side legend would squeeze one panel)
        legend = j == (0 if bk else len(FORCED_STATS) - 1)
        top = float(v.max()) + pad + (0.12 * ((len(models) + 1) // 2) * max(float(np.ptp(v)), 0.5) if bk else 0.0)
        ttl = f"{FORCED_LABELS.get(stat, stat)}, {fres['world']}" + ("" if bk else f" ({ci} interval)")
        opts = {"title": ttl, "xticks": [(L, f"+{L:g}") for L in levels],
                "xlim": (min(levels) - 0.7, max(levels) + 0.7) if levels else (0, 1),
                "ylim": (float(v.min()) - pad, top), "xlabel": "Warming above the training climate (K)",
                "ylabel": "Error, model − truth (%/K)", "show_grid": True, "show_legend": legend,
                "legend_position": "top_left" if bk else "right"}
        if bk:
            opts.update(responsive=True, height=380, tools=["hover"], legend_cols=2,
                        legend_opts={"label_text_font_size": "8pt", "spacing": 0, "padding": 2})
        out.append(hv.Overlay(items).opts(backend=backend, **opts))
    return out


def forced_caption(fres: dict) -> str:
    m = fres["meta"]
    lv = ", ".join(f"+{v:g}" for v in m["levels"])
    ref = fres.get("reference") or "the comparison's reference"
    return (f"World preset {m['world']} (version {m['world_version']}): the same {m['n_scenes']} held-out scenes "
            f"(the same weather) simulated in the training climate and at {lv} K above it; every model retrieves "
            f"the same Tb ({m['product'] or 'its product'}). Error = the model's forced response minus the truth's "
            f"(compound %/K), bars and brackets: {WV._ci(m)} intervals from {m['n_boot']} paired scene-bootstrap "
            f"replicates; verdicts over-/under-states when the interval excludes 0, tracks when it lies within "
            f"±{WV._g(m['tolerance'])} %/K, else undetermined. CRPS: test year of the model comparison (present "
            f"climate, mm h-1), ratio to {ref}. Result: `{m['command']}` ({m['created']}).")


def forced_provenance(fres: dict, results: dict) -> dict:
    worlds = sorted(set(fres["table"]["world"]))
    return {"drawn_world": fres["world"], "group": "global", "statistics": list(FORCED_STATS),
            "panels": [f"({chr(ord('d') + i)}) {s}" for i, s in enumerate(FORCED_STATS)],
            "csv_rows": int(len(fres["table"])), "csv_table": "forced response",
            "results": {w: {k: WV._meta(results[w])[k] for k in ("world_version", "product", "command", "created",
                                                                   "n_scenes", "n_boot", "ci", "levels", "models")}
                        for w in worlds},
            "crps": "test year of the model comparison", "crps_reference": fres.get("reference"),
            "design": "paired counterfactual scenes (same weather, climate +warming); paired scene bootstrap",
            "notes": fres["notes"], "caption": forced_caption(fres),
            "statistics_source": "evaluation.warming.table (raincheck warming run)"}


def export_parts(selection, catalog_path=None, cube_path=None, **kw):
    """The publication figure of the stored comparison (CRPS per split, extreme-trend errors,
    the goal chart) and the score and trend tables as CSV. :class:`app.data.DataError` (shown
    to the user) when no comparison has been run."""

    import holoviews as hv


    ensure_backends()
    path = Path(kw.get("result_path") or result_path())
    if not kw.get("result_path") and not path.is_file() and _EC.PACKAGED_RESULT.is_file():
        path = _EC.PACKAGED_RESULT  # what the view shows before any `raincheck compare` here (load_result)
    try:
        raw = path.read_bytes()  # hashed and parsed once: the manifest's hash is of what is drawn
    except OSError:
        raise data.DataError(no_result_message()) from None
    try:
        res = json.loads(raw)
    except ValueError as e:
        raise data.DataError(f"the stored comparison {path} is not valid JSON ({e}); "
                             "run `raincheck compare` again") from e
    res = checked(unclean(res), path)
    a, b, c = elements(res, backend="matplotlib")
    panels = [a, b, c]
    prov = provenance(res, path, hashlib.sha256(raw).hexdigest())
    table = table_data(res)
    world = getattr(selection, "warm_world", None) or WARMING_WORLDS[0]
    try:  # the forced response of the selection's world preset (its link key `preset`)
        results = kw.get("results")
        results = WV.stored_results() if results is None else results
        fres = forced_compute(world, res, results)
    except data.DataError as e:
        prov["forced_response"] = {"drawn_world": world, "missing": str(e)}
    else:
        panels += forced_elements(fres, backend="matplotlib")
        table = pd.concat([table, fres["table"].assign(table="forced response", split="paired: training climate -> "
                                                       "+warming_K")], ignore_index=True)
        prov["forced_response"] = forced_provenance(fres, results)
    for el in panels:
        el.opts(backend="matplotlib", fontsize=FONTS, aspect=1.15)
    lay = hv.Layout(panels).opts(backend="matplotlib", sublabel_format="({alpha})", hspace=0.35, vspace=0.45)
    if len(panels) > 3:
        lay = lay.cols(3)
    return ExportParts(lay, table, prov, fig_inches=(13, 4.2 if len(panels) == 3 else 8.4))


def provenance(res: dict, path, sha256: str | None) -> dict:
    goal = res.get("goal") or {}
    return {"entry": "model comparison", "comparison": {
                "path": str(path), "sha256": sha256, "schema": res.get("schema"), "config": res.get("config"),
                "reference": res["reference"], "thresholds_mm_h": res["thresholds_mm_h"],
                "draws_per_pixel": res.get("draws_per_pixel"), "criterion": goal.get("criterion"),
                "met_by": goal.get("met_by", [])},
            # the held-out sets are the comparison's, not the sidebar's region / period / season
            "region": "reference strip of the held-out scenes", "season": None,
            "period": {k: res["periods"][k]["period"] for k in ("test", "ood")},
            "models": [{"name": n, "checkpoint_sha256": m.get("sha256"), "kind": m.get("kind")}
                       for n, m in res["models"].items()],
            "statistics": "evaluation.compare (raincheck compare)"}


class CompareView(Polling, pn.viewable.Viewer):
    """Tables and charts of the stored comparison, with a button to (re)run it as a job.

    With a ``selection`` it loads lazily: when its tab is shown, and again when the stored result
    changed on disk since (e.g. after ``raincheck compare`` in a terminal). Run starts (or joins)
    the comparison of the picked models (``comparisons``, default the server-wide
    :func:`app.comparejobs.get_comparison_jobs`); the view polls the job (progress, Cancel) and
    shows its result when it lands. A comparison another session started shows here too."""

    name_ = "compare"
    selection = param.ClassSelector(class_=Selection, default=None, allow_None=True)
    catalog_path = param.String(default=None, allow_None=True)
    cube_path = param.String(default=None, allow_None=True)
    models = param.List(default=[], item_type=str)
    running = param.Boolean(default=False, doc="a comparison this view shows is queued or running")
    poll_ms = param.Integer(default=500)

    def __init__(self, comparisons: ComparisonJobs | None = None, settings: dict | None = None, **params):
        super().__init__(**params)
        self._comparisons = comparisons
        self.settings = dict(settings or {})  # the comparison's settings (app.comparejobs.DEFAULTS otherwise)
        names = data.list_models()  # (memoised; [] without a registry: the stored result is still shown)
        self.picker = pn.widgets.MultiChoice(label="Models", options=names, value=names, sizing_mode="stretch_width")
        self.row = JobRow("Run comparison", self.run, self.cancel, width=160, css="rc-compare-run",
                          cancel_css=("rc-compare-cancel",), text_css=("rc-compare-progress",))
        self.button = self.row.button
        self.status = pn.pane.Markdown("", css_classes=["rc-note"])
        self.body = pn.Column(sizing_mode="stretch_width")
        # the forced response: the world preset is the selection's (the link's `preset`)
        if self.selection is not None:
            self.world = pn.widgets.Select.from_param(self.selection.param.warm_world, label="World preset",
                                                      width=200, css_classes=["rc-compare-world"])
        else:
            self.world = pn.widgets.Select(label="World preset", options=list(WARMING_WORLDS),
                                           value=WARMING_WORLDS[0], width=200, css_classes=["rc-compare-world"])
        self.forced_body = pn.Column(sizing_mode="stretch_width")
        self.forced = pn.Column(pn.pane.Markdown(f"### {FORCED_TITLE}"), self.world, self.forced_body,
                                sizing_mode="stretch_width", css_classes=["rc-compare-forced"])
        self.forced_result: dict | None = None
        self._forced_stamp = object()
        self.result: dict | None = None
        self.job: ComparisonJob | None = None
        self._handled: ComparisonJob | None = None  # the finished job whose outcome is shown
        self._cb = None
        self._stamp = object()  # never equal to a file stamp: the first show loads
        if self.selection is None:
            self.world.param.watch(lambda e: self.refresh_forced(), "value")
            self.refresh()
        else:
            self.selection.param.watch(lambda e: self._show() if e.new == self.name_ else None, "view")
            self.selection.param.watch(lambda e: self._show() if self.selection.view == self.name_ else None,
                                       "warm_world")
            if self.selection.view == self.name_:
                self._show()

    def __panel__(self):
        return pn.Column(pn.Row(self.picker, self.row), self.status, self.body, self.forced,
                         sizing_mode="stretch_width", min_height=200)

    @property
    def comparisons(self) -> ComparisonJobs:
        """The job system's comparisons (the server-wide ones unless given; resolved on first use)."""
        if self._comparisons is None:
            self._comparisons = get_comparison_jobs()
        return self._comparisons

    @staticmethod
    def _file_stamp():
        try:
            st = result_path().stat()
            return (st.st_mtime_ns, st.st_size)
        except OSError:
            return None

    def _show(self):
        self.poll()  # also picks up a comparison another session is running
        stamp = self._file_stamp()
        if stamp != self._stamp:
            self.refresh()
        elif self._forced_key() != self._forced_stamp:
            self.refresh_forced()

    def _forced_key(self):
        return (self.world.value, WV.results_stamp(), self._stamp)

    def refresh_forced(self) -> None:
        """Show the forced response of the picked world preset beside the comparison's CRPS (the
        comparison shown, or none); a message, never a traceback."""
        self._forced_stamp = self._forced_key()
        try:
            fres = forced_compute(self.world.value, self.result)
            self.forced_body.objects = self.render_forced(fres)
            self.forced_result = fres
        except data.DataError as e:
            self.forced_result = None
            self.forced_body.objects = [pn.pane.Alert(data.for_page(e), alert_type="info",
                                                      sizing_mode="stretch_width")]
        except Exception as e:  # never a traceback in the UI
            log.exception("compare view: forced response failed")
            self.forced_result = None
            self.forced_body.objects = [pn.pane.Alert(
                data.for_page(f"the forced-response table failed: {type(e).__name__}: {e}"), alert_type="danger",
                sizing_mode="stretch_width")]

    def render_forced(self, fres: dict) -> list:
        shown, head = forced_display(fres)
        colour = WV.VERDICT_COLOURS

        def paint(v):
            for k, c in colour.items():
                if isinstance(v, str) and (v == k or v.endswith(f" {k}")):
                    return f"background-color: {c}"
            return ""

        fmt = {"type": "money", "precision": 4}
        table = pn.widgets.Tabulator(shown, disabled=True, show_index=False, sizing_mode="stretch_width",
                                     layout="fit_data_table", groupby=["model"], css_classes=["rc-compare-forced-table"],
                                     formatters={"CRPS test year": fmt, "CRPS / reference": {"type": "money",
                                                                                            "precision": 3}})
        table.style.map(paint, subset=[c for c in shown.columns if c.endswith("verdict")])
        htable = pn.widgets.Tabulator(head, disabled=True, show_index=False, sizing_mode="stretch_width",
                                      layout="fit_data_table", css_classes=["rc-compare-forced-headline"],
                                      formatters={"CRPS test year": fmt, "CRPS / reference": {"type": "money",
                                                                                             "precision": 3}})
        htable.style.map(paint, subset=[c for c in head.columns if ": p99.9" in c])
        m = fres["meta"]
        parts = [pn.pane.Markdown(data.escape_text(forced_caption(fres)), css_classes=["rc-compare-forced-caption"],
                                  sizing_mode="stretch_width")]
        if fres["notes"]:
            parts.append(pn.pane.Markdown(data.escape_text("Notes: " + "; ".join(fres["notes"]) + "."),
                                          css_classes=["rc-note"], sizing_mode="stretch_width"))
        parts += [table,
                  pn.Row(*[pn.pane.HoloViews(el, sizing_mode="stretch_width") for el in forced_elements(fres)],
                         sizing_mode="stretch_width"),
                  pn.pane.Markdown(f"**p99.9 error at +{FT.HEADLINE_LEVEL_K:g} K in every world preset** "
                                   f"(model − truth, %/K, [{WV._ci(m)} interval], verdict)"),
                  htable]
        return parts

    def refresh(self, res: dict | None = None) -> None:
        """Show ``res`` (default: the stored comparison); a message, never a traceback."""
        self._stamp = self._file_stamp()
        try:
            if res is None:
                res = stored_result()
            else:
                res = checked(unclean(res))
            self.body.objects = self.render(res)
            self.result = res
        except data.DataError as e:
            self.result = None
            kind = "info" if load_result() is None else "danger"
            self.body.objects = [pn.pane.Alert(data.for_page(e), alert_type=kind, sizing_mode="stretch_width")]
        except Exception as e:  # never a traceback in the UI
            log.exception("compare view failed")
            self.result = None
            self.body.objects = [pn.pane.Alert(data.for_page(f"the comparison view failed: {type(e).__name__}: {e}"),
                                               alert_type="danger", sizing_mode="stretch_width")]
        self.refresh_forced()  # with or without a comparison (then without its CRPS)

    def render(self, res: dict) -> list:
        a, b, c = elements(res)
        goal = res.get("goal", {})
        met = ", ".join(goal.get("met_by", [])) or "no model"
        per = res["periods"]
        th = ", ".join(f"{k} {_f(v):.2f}" for k, v in res["thresholds_mm_h"].items())
        fmt = {"type": "money", "precision": 4}
        sf, tf = score_frame(res), trend_frame(res)
        parts = [
            pn.pane.Markdown(f"Held-out sets of `{res['config']}` (the same pixels for every model; the sidebar's "
                             f"region, period and season do not apply): test year {per['test']['period']} "
                             f"({per['test']['gmst_K']:.2f} K), future decades {per['ood']['period']} "
                             f"({per['ood']['gmst_K']:.2f} K); thresholds from the training period: {th} mm h-1. "
                             f"Reference: `{res['reference']}`. Goal ({goal.get('criterion', '')}): **{met}**.",
                             css_classes=["rc-compare-summary"], sizing_mode="stretch_width"),
            pn.widgets.Tabulator(sf, disabled=True, show_index=False, sizing_mode="stretch_width",
                                 layout="fit_data_table", css_classes=["rc-compare-scores"],
                                 formatters={k: fmt for k in sf.columns[2:]}),
            pn.pane.Markdown(unpaired_note(res), css_classes=["rc-compare-unpaired"], sizing_mode="stretch_width"),
            pn.widgets.Tabulator(tf, disabled=True, show_index=False, sizing_mode="stretch_width",
                                 layout="fit_data_table", css_classes=["rc-compare-trends"],
                                 formatters={k: {"type": "money", "precision": 3 if "change" in k else 2}
                                             for k in tf.columns[1:-1]}),
            pn.Row(pn.pane.HoloViews(a, sizing_mode="stretch_width"), pn.pane.HoloViews(b, sizing_mode="stretch_width"),
                   pn.pane.HoloViews(c, sizing_mode="stretch_width"), sizing_mode="stretch_width"),
        ]
        if isinstance(res.get("ood_detection"), dict):
            od = res["ood_detection"]
            rows = [{"shift": k, **v} for k, v in od.items() if isinstance(v, dict)]
            parts += [pn.pane.Markdown(f"OOD detector `{od.get('detector')}`; in distribution: "
                                       f"{od.get('in_distribution')}"),
                      pn.widgets.Tabulator(pd.DataFrame(rows), disabled=True, show_index=False)]
        return parts

    def run(self) -> ComparisonJob | None:
        """Start (or join) the comparison of the picked models; a message for a model that
        cannot be compared (not registered)."""
        names = list(self.picker.value)
        try:
            job = self.comparisons.submit(names, **self.settings)
        except (ModelError, ValueError) as e:
            self.status.object = data.for_page(f"cannot run the comparison: {e}")
            return None
        self.job = job
        self.status.object = ""
        self.poll()
        return job

    def cancel(self) -> None:
        """Cancel the comparison shown (for every session that shares it)."""
        if self.job is not None:
            self.comparisons.cancel(self.job)
        self.poll()

    def poll(self) -> None:
        """Copy the job's state into the controls; when it finishes, show its outcome once."""
        job = self.job
        if job is None or not job.active:
            active = self.comparisons.active()  # e.g. one another session started
            if active:
                job = self.job = active[-1]
        self.row.show(job)
        self.running = job is not None and job.active
        if job is None:
            return
        if job.active:
            self._start_polling()
            return
        self._stop_polling()
        if job is self._handled:
            return
        self._handled = job
        if job.status == "done":
            self.refresh(load_result(Path(job.result)) if job.result else None)
            self.status.object = data.for_page(f"{job.label}: stored in {job.result}")
        elif job.status == "failed":
            self.status.object = data.for_page(f"comparison failed: {job.error}")
        else:
            self.status.object = data.for_page(f"{job.label}: {job.cancelled_text()}")


def make_view(selection=None, catalog_path=None, cube_path=None) -> CompareView:
    """The comparison view of one session (for ``app.views.make_views``)."""
    return CompareView(selection=selection, catalog_path=catalog_path, cube_path=cube_path)

"""Warming response: each model's forced response to warming against the truth's, measured on
paired counterfactual scenes (the same weather simulated at +1, +2, +4 K above the training
climate in one world preset), from the stored results of ``raincheck warming run``
(:func:`evaluation.warming.load_results`).

Three panels: (a) the response curve (%/K against the quantile level, on a ``1 − q`` log axis
so that q99.9 and q99.99 are readable) of the truth and each model with their 90 % bands, the
Clausius–Clapeyron 7 %/K line and the AR6 SPM.6 rate of the 10-year daily land extreme (a
different statistic, labelled as such); (b) the response of one statistic against the warming
level with intervals, or each model's error (model − truth) and its growth with warming; (c) the verdict matrix (model × statistic at the chosen level: tracks /
under-states / over-states / undetermined, from the paired interval of the error). Numbers are
never re-derived here: every value drawn is a row of ``ForcedResponse.frame()``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from app import data
from app.figures import FONTS, ExportParts, ensure_backends
from app.state import WARMING_GROUPS, warming_stat_key
from app.views import common as C
from evaluation.ipcc import EXTREME_INTENSITY, SPM6_10YR_LAND
from evaluation.warming import VERDICTS

#: the columns every result frame has (``ForcedResponse.frame()``)
FRAME_COLUMNS = ("world", "group", "statistic", "population", "level_q", "warming_K", "source", "response", "lo",
                 "hi", "error", "error_lo", "error_hi", "verdict")
TRUTH = "truth"
#: verdict colours (ColorBrewer RdYlBu / greens; grey for undetermined)
VERDICT_COLOURS = {"tracks": "#a6d96a", "under-states": "#74add1", "over-states": "#f46d43",
                   "undetermined": "#e0e0e0"}
TRUTH_COLOUR = "#111111"
#: twelve distinguishable colours (ColorBrewer Dark2 + four of Paired and tab10): every shipped model its own
MODEL_COLOURS = ("#d95f02", "#7570b3", "#1b9e77", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#386cb0",
                 "#e31a1c", "#17becf", "#6a3d9a", "#bcbd22")
#: the Clausius–Clapeyron rate (%/K) drawn as a line: evaluation.ipcc's one definition
CC_PCT_PER_K = float(EXTREME_INTENSITY.central)
STAT_LABELS = {"mean": "mean rain rate", "wet_fraction": "wet fraction"}


def spm6_pct_per_K() -> pd.DataFrame:
    """AR6 SPM.6 (10-year 1-day precipitation over land, median intensity change against
    1850–1900, from :data:`evaluation.ipcc.SPM6_10YR_LAND`) as compound %/K: at +L K an
    intensity change of c % is ``100 ((1 + c/100)^(1/L) − 1)`` per K (+6.7 % at +1 K → 6.7 %/K;
    +30.2 % at +4 K → 6.82 %/K). A daily land statistic, not the instantaneous pixel quantiles
    of the experiment: drawn for orientation only."""
    rows = [{"warming_K": float(w), "intensity_change_pct": float(c),
             "response": 100.0 * ((1.0 + c / 100.0) ** (1.0 / w) - 1.0)}
            for w, (_, c) in sorted(SPM6_10YR_LAND.items())]
    return pd.DataFrame(rows)


SPM6_LABEL = "AR6 SPM.6: 10-yr 1-day land extreme (daily, not this statistic)"


# ------------------------------------------------------------------------------ results
_loaded = data.Memo(4)


def _stamp(folder: Path) -> tuple:
    """(name, mtime, size) of every result file in ``folder``."""
    if not folder.is_dir():
        return ()
    return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in sorted(folder.glob("*.json")))


def result_folders() -> tuple[Path, Path]:
    """Where results are read: the shipped ones and the user store (``raincheck warming run``),
    whose result of a world replaces the shipped one (:func:`evaluation.warming.load_results`)."""
    from evaluation.warming import response, run

    return response.SHIPPED_DIR, run.store_root() / "results"


def results_stamp() -> tuple:
    """The stored results' identity: a new run, or a result replaced, shows at the next answer."""
    return tuple(_stamp(f) for f in result_folders())


def stored_results() -> dict:
    """``{world preset: ForcedResponse}`` of every stored result (memoised until a file changes)."""
    from evaluation.warming import load_results

    def load():
        try:
            return load_results(user=True)
        except (OSError, ValueError) as e:
            raise data.DataError(f"a stored warming-response result cannot be read: {e}") from e

    return _loaded.get(results_stamp(), load)


def run_command(world: str) -> str:
    return f"raincheck warming run --world {world} --models all --levels 1,2,4"


def no_result_message(world: str, have=()) -> str:
    if have:
        return (f"No warming-response result for the world preset `{world}` (results exist for "
                f"{', '.join(f'`{w}`' for w in have)}): compute it with `{run_command(world)}`.")
    return f"No warming-response result yet: compute one with `{run_command(world)}`."


stat_key = warming_stat_key


def stat_label(key: str) -> str:
    if key.startswith("exceed:"):
        return f"P(rate ≥ {key.split(':', 1)[1]} mm h-1)"
    return STAT_LABELS.get(key, key)


def _x_of_level(q) -> np.ndarray:
    """The curve's abscissa: −log10(1 − q) (q50 → 0.3, q99 → 2, q99.99 → 4)."""
    return -np.log10(1.0 - np.asarray(q, dtype=float))


def _with_keys(df: pd.DataFrame) -> pd.DataFrame:
    thr = df["threshold_mm_h"] if "threshold_mm_h" in df else pd.Series(np.nan, index=df.index)
    keys = [stat_key(s, q, t) for s, q, t in zip(df["statistic"], df["level_q"], thr)]
    return df.assign(stat=keys)


def _meta(fr) -> dict:
    """What the caption and the manifest say about a result (its ``meta``)."""
    m = fr.meta
    world = m.get("world") or {}
    return {"world": fr.world, "world_version": world.get("version"), "world_title": world.get("title"),
            "mechanisms": [mm.get("name") for mm in world.get("mechanisms") or []],
            "models": {n: (i or {}).get("checkpoint_sha256") for n, i in (m.get("models") or {}).items()},
            "product": m.get("product"), "scenes": m.get("scenes") or {}, "n_scenes": m.get("n_scenes"),
            "levels": [float(x) for x in m.get("levels_K") or []], "n_boot": m.get("n_boot"), "ci": m.get("ci"),
            "tolerance": m.get("tolerance_pct_per_K"), "training_climate_K": m.get("training_climate_K"),
            "injected": m.get("injected_truth_pct_per_K"), "command": m.get("command"),
            "created": m.get("created"), "product_version": m.get("product_version")}


def compute(selection, results: dict | None = None) -> dict:
    """The rows the view draws for ``selection`` (world preset, group, population, warming
    level, statistic, models), from the stored results; :class:`app.data.DataError` (a message
    for the user) when there is no result for the preset or the selection holds no rows."""
    results = stored_results() if results is None else results
    world = selection.warm_world
    if world not in results:
        raise data.DataError(no_result_message(world, sorted(results)))
    fr = results[world]
    df = fr.frame()
    missing = [c for c in FRAME_COLUMNS if c not in df.columns]
    if missing:
        raise data.DataError(f"the stored warming-response result for `{world}` lacks the columns "
                             f"{', '.join(missing)}: compute it again with `{run_command(world)}`")
    df = _with_keys(df)
    meta = _meta(fr)
    notes: list[str] = []

    groups = list(dict.fromkeys(df["group"]))
    if selection.warm_group not in groups:
        raise data.DataError(f"the `{world}` result has no group `{selection.warm_group}` "
                             f"(it has {', '.join(groups)})")
    df = df[df["group"] == selection.warm_group]

    have = [s for s in dict.fromkeys(df["source"]) if s != TRUTH]
    wanted = list(selection.models)
    models = [m for m in wanted if m in have]
    for m in wanted:
        if m not in have:
            notes.append(f"model {m} is not in the `{world}` warming-response result (it holds {', '.join(have)}); "
                         f"add it with `raincheck warming run --world {world} --models {m}`")
    if not models:
        models = have
        if wanted:
            notes.append("none of the selected models is in this result: showing all of its models")
    notes += _stale_checkpoints(meta["models"], models)

    levels = sorted(float(x) for x in df["warming_K"].dropna().unique())
    if not levels:
        raise data.DataError(f"the `{world}` result holds no warming level")
    level = min(levels, key=lambda v: abs(v - float(selection.warm_level)))
    if not math.isclose(level, float(selection.warm_level)):
        notes.append(f"the result has no +{selection.warm_level:g} K level: showing +{level:g} K "
                     f"(levels: {', '.join(f'+{v:g}' for v in levels)} K)")

    pop = selection.warm_pop
    sources = [TRUTH] + models
    at = df[df["source"].isin(sources)]
    curve = at[(at["statistic"] == "quantile") & (at["population"] == pop) & (at["warming_K"] == level)]
    curve = curve.sort_values("level_q")
    undefined = curve[~np.isfinite(curve["response"].astype(float))]
    if len(undefined):
        keys = ", ".join(dict.fromkeys(undefined["stat"]))
        notes.append(f"no response at {keys} of {pop} pixels (the statistic is 0, i.e. dry, or undefined in the "
                     "base climate): not drawn")
        curve = curve[np.isfinite(curve["response"].astype(float))]
    if not len(curve):
        raise data.DataError(f"the `{world}` result has no quantile curve for {pop} pixels over "
                             f"{selection.warm_group} at +{level:g} K")

    key = selection.warm_stat
    stat_rows = at[at["stat"] == key]
    if not len(stat_rows):
        keys = list(dict.fromkeys(df["stat"]))
        raise data.DataError(f"the `{world}` result has no statistic {key} (it has {', '.join(keys)})")
    if (stat_rows["population"] == pop).any():
        stat_rows = stat_rows[stat_rows["population"] == pop]
    else:
        p0 = stat_rows["population"].iloc[0]
        notes.append(f"{stat_label(key)} is computed over {p0} pixels only: panel (b) shows it for {p0} pixels")
        stat_rows = stat_rows[stat_rows["population"] == p0]
    by_level = stat_rows.sort_values(["source", "warming_K"])
    growth = _growth(fr, selection.warm_group, key, str(by_level["population"].iloc[0]), models)

    table = at[(at["warming_K"] == level) & (at["source"] != TRUTH)]
    table = table[(table["population"] == pop) | (table["statistic"] != "quantile")]
    table = table.drop_duplicates(["source", "stat", "population"])
    return {"notes": notes, "world": world, "meta": meta, "group": selection.warm_group, "population": pop,
            "level": level, "levels": levels, "stat": key, "models": models, "curve": curve, "by_level": by_level,
            "table": table, "command": meta["command"], "axis": selection.warm_axis,
            "growth": growth}


def _growth(fr, group: str, key: str, pop: str, models: list[str]) -> pd.DataFrame:
    """Each model's error growth (error at the largest level minus at the smallest, paired
    interval) of statistic ``key`` (``ForcedResponse.growth_frame()``)."""
    g = fr.growth_frame()
    thr = g["threshold_mm_h"] if "threshold_mm_h" in g else pd.Series(np.nan, index=g.index)
    g = g.assign(stat=[stat_key(s, q, t) for s, q, t in zip(g["statistic"], g["level_q"], thr)])
    g = g[(g["group"] == group) & (g["stat"] == key) & (g["population"] == pop) & g["source"].isin(models)]
    return g.set_index("source").reindex([m for m in models if m in set(g["source"])]).reset_index()


def growth_text(res: dict) -> str:
    """'Error growth from +1 to +4 K' of the statistic of panel (b), per model with its interval."""
    g = res["growth"]
    if not len(g):
        return ""
    parts = []
    for _, r in g.iterrows():
        ci = (f" [{r['lo']:+.2f}, {r['hi']:+.2f}]" if np.isfinite(r["lo"]) and np.isfinite(r["hi"]) else
              " (interval undefined)")
        parts.append(f"{r['source']} {r['growth']:+.2f}{ci}")
    r0 = g.iloc[0]
    return (f"Error growth of {stat_label(res['stat'])} from +{r0['from_K']:g} to +{r0['to_K']:g} K "
            f"(error at +{r0['to_K']:g} K minus error at +{r0['from_K']:g} K, %/K, {_ci(res['meta'])} paired interval): "
            + "; ".join(parts) + ".")


_checkpoints = data.Memo(4)


def registered_checkpoints() -> dict[str, str]:
    """{model: checkpoint sha256} of the registered models, read once per version of the cards."""
    from models.registry import list_models

    return _checkpoints.get(data._cards_stamp(),
                            lambda: {c.name: str(c.checkpoint_sha256 or "") for c in list_models()})


def _stale_checkpoints(used: dict, models: list[str]) -> list[str]:
    """Notes for models whose registered checkpoint is not the one the result was computed with."""
    out = []
    registered = registered_checkpoints()
    for m in models:
        was = used.get(m)
        if m not in registered:
            out.append(f"model {m} of the result is not registered here: its numbers come from checkpoint "
                       f"{str(was)[:12]}")
            continue
        now = registered[m]
        if now and was and not now.startswith(str(was)) and not str(was).startswith(now):
            out.append(f"model {m} was retrained since this result (result: {str(was)[:12]}, registered: "
                       f"{now[:12]}): run `raincheck warming run` again for its current response")
    return out


#: the Trends view's statistics as the warming result's (population: all pixels)
TREND_STAT_KEYS = {"mean": "mean", "wet_fraction": "wet_fraction", "q99": "q99", "q999": "q99.9"}
#: ... and as the world's injected scaling (catalogs.simulator.worlds.World.injected_pct_per_K)
INJECTED_KEYS = {"mean": "mean", "q999": "p99.9"}
#: the world of the synthetic record (the climatology cube's orbits)
RECORD_WORLD = "today"


def known_forced_response(trend_stat: str, group: str, results: dict | None = None,
                          world: str = RECORD_WORLD) -> dict:
    """The synthetic world's known forced response of a Trends statistic (``mean``,
    ``wet_fraction``, ``q99``, ``q999``, ``exceed:<t>``) over ``group``, per K of warming: the
    truth's response measured on paired scenes at the smallest level of the stored result (the
    record spans about that much warming), with its interval; without a result, the world's
    injected scaling where it sets one exactly. ``{"value": None, "why": ...}`` when neither
    exists."""
    from catalogs.simulator.worlds import get_world

    key = (f"exceed:{float(trend_stat.split(':', 1)[1]):g}" if trend_stat.startswith("exceed:")
           else TREND_STAT_KEYS.get(trend_stat))
    w = get_world(world)
    out = {"stat": trend_stat, "world": world, "world_version": w.version, "value": None, "lo": None, "hi": None}
    if group not in WARMING_GROUPS:
        return out | {"why": f"the known forced response is measured for {', '.join(WARMING_GROUPS)}, "
                             f"not for {group}"}
    try:
        results = stored_results() if results is None else results
    except data.DataError as e:
        results = {}
        out["problem"] = str(e)
    fr = results.get(world)
    if fr is not None and key is not None:
        df = _with_keys(fr.frame())
        d = df[(df["source"] == TRUTH) & (df["group"] == group) & (df["stat"] == key) & (df["population"] == "all")]
        d = d[np.isfinite(d["response"].astype(float))]
        if len(d):
            r = d.sort_values("warming_K").iloc[0]
            meta = _meta(fr)
            return out | {"value": float(r["response"]), "lo": float(r["lo"]), "hi": float(r["hi"]),
                          "warming_K": float(r["warming_K"]), "world_version": meta["world_version"],
                          "how": (f"truth's forced response on {meta['n_scenes']} paired scenes at +{r['warming_K']:g} K "
                                  f"({_ci(meta)} interval, {meta['n_boot']} scene-bootstrap replicates)")}
    inj = w.injected_pct_per_K(INJECTED_KEYS[trend_stat]) if trend_stat in INJECTED_KEYS else None
    if inj is not None:
        return out | {"value": float(inj), "how": "the scaling the world injects into the truth (exact by design)"}
    return out | {"why": (f"no stored warming-response result of the {world} world for this statistic: "
                          f"compute it with `{run_command(world)}`")}


# ------------------------------------------------------------------------------ figures
def _colours(models) -> dict:
    out = {TRUTH: TRUTH_COLOUR}
    for i, m in enumerate(models):
        out[m] = MODEL_COLOURS[i % len(MODEL_COLOURS)]
    return out


def _dash(backend: str, style: str = "dashed", width: float = 1.2) -> dict:
    if backend == "bokeh":
        return {"line_dash": style, "line_width": width}
    return {"linestyle": {"dashed": "--", "dotted": ":", "dashdot": "-."}[style], "linewidth": width}


def _lw(backend: str, w: float) -> dict:
    return {"line_width": w} if backend == "bokeh" else {"linewidth": w}


def _size(backend: str, s: float) -> dict:
    return {"size": s} if backend == "bokeh" else {"s": s * s / 2}


def _label(source: str) -> str:
    return "truth (paired scenes)" if source == TRUTH else source


#: quantile levels whose tick is labelled on the curve's axis (the others get a bare tick)
LABELLED_Q = (0.5, 0.9, 0.99, 0.999, 0.9999)


def _legend(n: int, backend: str) -> dict:
    """Legend options for ``n`` entries: every entry shown (HoloViews hides legends of overlays with
    more than 25 elements), in two columns past five, top left (room is made above the data)."""
    return {"legend_limit": 200, "legend_position": "top_left", **({"legend_cols": 2} if n > 5 else {})}


def _head(n: int, backend: str) -> float:
    """Room on top of an axis for a legend of ``n`` entries inside it (see :func:`_legend`)."""
    if n == 0:
        return 0.1
    rows = n if n <= 5 else (n + 1) // 2
    return (0.5 + 0.2 * rows) if backend == "bokeh" else (0.25 + 0.09 * rows)


def _ylim(values, floor=(-1.0, 9.0), head=0.45) -> tuple[float, float]:
    """Axis range of ``values`` with room on top for the legend."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    lo, hi = (min(floor[0], v.min()), max(floor[1], v.max())) if v.size else floor
    return lo - 0.05 * (hi - lo), hi + head * (hi - lo)


def elements(res: dict, backend: str = "bokeh"):
    """(a) response curve, (b) response against warming level, (c) verdict matrix (HoloViews)."""
    import holoviews as hv

    ensure_backends()
    common = {"show_grid": True}
    if backend == "bokeh":
        common.update(responsive=True, height=380, tools=["hover"])
    pct = hv.Dimension("response", label="Forced response", unit="%/K")
    col = _colours(res["models"])
    spm = spm6_pct_per_K()
    return (_curve_panel(res, backend, col, pct, spm, common), _level_panel(res, backend, col, pct, spm, common),
            verdict_matrix(res, backend))


def _curve_panel(res: dict, backend: str, col: dict, pct, spm: pd.DataFrame, common: dict):
    """(a) the response curve against the quantile level, truth and models with their bands, the CC
    line and the AR6 SPM.6 point of the level."""
    import holoviews as hv

    bk = backend == "bokeh"
    xq = hv.Dimension("x", label="Quantile level")
    curve = res["curve"]
    levels_q = sorted(float(q) for q in curve["level_q"].dropna().unique())
    xt = [(float(_x_of_level(q)), f"q{round(100 * q, 4):g}"
           if i == 0 or any(math.isclose(q, k) for k in LABELLED_Q) else "") for i, q in enumerate(levels_q)]
    x_hi = float(_x_of_level(max(levels_q)))
    items = [hv.HLine(CC_PCT_PER_K).opts(backend=backend, color="#555555", **_dash(backend)),
             hv.HLine(0).opts(backend=backend, color="#999999", **_dash(backend, "dotted", 1))]
    for src in [TRUTH] + res["models"]:
        d = curve[curve["source"] == src]
        if not len(d):
            continue
        x = _x_of_level(d["level_q"])
        c = col[src]
        band = hv.Area((x, d["lo"].astype(float), d["hi"].astype(float)), xq, [pct, "hi"])
        items.append(band.opts(backend=backend, alpha=0.25 if src == TRUTH else 0.15,
                               **({"color": c, "line_alpha": 0} if bk else {"facecolor": c, "linewidth": 0})))
        items.append(hv.Curve((x, d["response"].astype(float)), xq, pct, label=_label(src)).opts(
            backend=backend, color=c, **_lw(backend, 2.4 if src == TRUTH else 1.5)))
        items.append(hv.Scatter((x, d["response"].astype(float)), xq, pct).opts(
            backend=backend, color=c, **_size(backend, 5)))
    at = spm[np.isclose(spm["warming_K"], res["level"])]
    x_spm = x_hi + 0.6
    if len(at):  # SPM.6 has the level: one marker past the curve, its own tick, labelled as a daily statistic
        items.append(hv.Scatter(([x_spm], [float(at["response"].iloc[0])]), xq, pct,
                                label=f"AR6 SPM.6, +{res['level']:g} K: 10-yr 1-day land (daily)").opts(
            backend=backend, color="#6a3d9a", marker="diamond" if bk else "D", **_size(backend, 9)))
        xt = xt + [(x_spm, "AR6\n1-day")]
    right = (x_spm if len(at) else x_hi) + 0.35
    items.append(hv.Text(right - 0.05, CC_PCT_PER_K, f"CC {CC_PCT_PER_K:g} %/K", fontsize=8,
                         halign="right", valign="bottom").opts(backend=backend, color="#555555"))
    ya = _ylim(list(curve["response"]) + list(curve["lo"]) + list(curve["hi"]) + list(at["response"]),
               head=_head(len(res["models"]) + 2, backend))
    ttl = f"(a) Response at +{res['level']:g} K, {res['population']} pixels, {res['group']}"
    a = hv.Overlay(items).opts(backend=backend, title=ttl if bk else ttl[4:], xticks=xt,
                               xlim=(min(x for x, _ in xt) - 0.2, right), ylim=ya,
                               xlabel="Quantile level (1 − q on a log axis)", ylabel="Forced response (%/K)",
                               **_legend(len(res["models"]) + 2, backend), **common)
    return a


def _level_panel(res: dict, backend: str, col: dict, pct, spm: pd.DataFrame, common: dict):
    """(b) the chosen statistic against the warming level (sources side by side around each level):
    the response of the truth and each model, or each model's error (model − truth)."""
    import holoviews as hv

    bk = backend == "bokeh"
    xw = hv.Dimension("warming_K", label="Warming above the training climate", unit="K")
    bl = res["by_level"]
    err = res.get("axis") == "error"
    cols = ("error", "error_lo", "error_hi") if err else ("response", "lo", "hi")
    srcs = [s for s in ([] if err else [TRUTH]) + res["models"] if (bl["source"] == s).any()]
    half = min(0.35, 0.05 * len(srcs))
    offs = np.linspace(-half, half, len(srcs)) if len(srcs) > 1 else np.zeros(1)
    bitems = [hv.HLine(0).opts(backend=backend, color="#555555" if err else "#999999",
                               **_dash(backend, "dashed" if err else "dotted", 1))]
    extreme = res["stat"].startswith("q") and float(res["stat"][1:]) >= 99 and not err
    if extreme:  # CC and SPM.6 are expectations for extremes only
        bitems.append(hv.HLine(CC_PCT_PER_K).opts(backend=backend, color="#555555", **_dash(backend)))
        bitems.append(hv.Scatter((spm["warming_K"], spm["response"]), xw, pct, label=SPM6_LABEL).opts(
            backend=backend, color="#6a3d9a", marker="diamond" if bk else "D", **_size(backend, 8)))
    for off, src in zip(offs, srcs):
        d = bl[bl["source"] == src].sort_values("warming_K")
        x = d["warming_K"].astype(float).values + off
        y = d[cols[0]].astype(float).values
        lo, hi = d[cols[1]].astype(float).values, d[cols[2]].astype(float).values
        ok = np.isfinite(lo) & np.isfinite(hi)
        c = col[src]
        if ok.any():  # the interval as drawn from lo to hi (a percentile interval need not hold the estimate)
            bitems.append(hv.Segments((x[ok], lo[ok], x[ok], hi[ok]), [xw, pct, "x1", "y1"]).opts(
                backend=backend, color=c, **_lw(backend, 1.5)))
        bitems.append(hv.Curve((x, y), xw, pct).opts(backend=backend, color=c, alpha=0.5, **_lw(backend, 1)))
        bitems.append(hv.Scatter((x, y), xw, pct, label=_label(src)).opts(
            backend=backend, color=c, **_size(backend, 7)))
    lv = res["levels"]
    shown = bl[bl["source"].isin(srcs)]
    yb = _ylim([v for c in cols for v in shown[c]] + (list(spm["response"]) if extreme else []),
               floor=(-1.0, 1.0), head=_head(0 if len(res["models"]) > 4 else len(srcs) + int(extreme), backend))
    ttl = (f"(b) {'Error of the response' if err else 'Response'}: {stat_label(res['stat'])}, {res['group']}")
    b = hv.Overlay(bitems).opts(backend=backend, title=ttl if bk else ttl[4:], ylim=yb,
                                xticks=[(v, f"+{v:g}") for v in lv], xlim=(min(lv) - 0.6, max(lv) + 0.6),
                                xlabel="Warming above the training climate (K)",
                                ylabel="Error, model − truth (%/K)" if err else "Forced response (%/K)",
                                **_legend(len(srcs) + int(extreme), backend), **common)
    if len(res["models"]) > 4:  # (b)'s sources are (a)'s, in the same colours: one legend for both
        b.opts(backend=backend, show_legend=False)
    return b


def matrix_frame(res: dict) -> pd.DataFrame:
    """The verdict matrix's cells: model × statistic at the chosen level (error, interval, verdict)."""
    t = res["table"]
    order = _stat_order(t["stat"])
    rows = []
    for m in res["models"]:
        for k in order:
            d = t[(t["source"] == m) & (t["stat"] == k)]
            if not len(d):
                continue
            r = d.iloc[0]
            rows.append({"model": m, "stat": k, "error": float(r["error"]), "error_lo": float(r["error_lo"]),
                         "error_hi": float(r["error_hi"]), "verdict": str(r["verdict"] or "undetermined")})
    return pd.DataFrame(rows, columns=["model", "stat", "error", "error_lo", "error_hi", "verdict"])


def _stat_order(keys) -> list[str]:
    """Statistics in reading order: mean, wet fraction, the quantiles up, then exceedances up."""
    def rank(k):
        if k == "mean":
            return (0, 0.0)
        if k == "wet_fraction":
            return (1, 0.0)
        if k.startswith("q"):
            return (2, float(k[1:]))
        if k.startswith("exceed:"):
            return (3, float(k.split(":", 1)[1]))
        return (4, 0.0)

    return sorted(dict.fromkeys(keys), key=rank)


def verdict_matrix(res: dict, backend: str = "bokeh"):
    """(c): one cell per model × statistic, coloured by the verdict, with the error (%/K)."""
    import holoviews as hv

    bk = backend == "bokeh"
    mf = matrix_frame(res)
    stats = _stat_order(mf["stat"]) if len(mf) else []
    models = res["models"]
    items = []
    for v in VERDICTS:
        d = mf[mf["verdict"] == v]
        rects = [(stats.index(s) - 0.48, len(models) - 1 - models.index(m) - 0.45,
                  stats.index(s) + 0.48, len(models) - 1 - models.index(m) + 0.45) for m, s in zip(d["model"], d["stat"])]
        if not rects:  # (no empty legend entry)
            continue
        el = hv.Rectangles(rects, **({"label": v} if bk else {}))
        items.append(el.opts(backend=backend, color=VERDICT_COLOURS[v], **({"line_alpha": 0} if bk else {"linewidth": 0})))
    txt = [(stats.index(s), len(models) - 1 - models.index(m), f"{e:+.1f}")
           for m, s, e in zip(mf["model"], mf["stat"], mf["error"]) if np.isfinite(e)]
    if txt:
        items.append(hv.Labels(txt, ["x", "y"], "text").opts(
            backend=backend, **({"text_font_size": "7pt", "text_color": "#222222"} if bk else
                                {"size": 6, "color": "#222222"})))
    ttl = f"(c) Verdict at +{res['level']:g} K (error, model − truth, %/K)"
    c = hv.Overlay(items).opts(
        backend=backend, title=ttl if bk else f"{ttl[4:]}\ngreen tracks · blue under · red over · grey undetermined",
        xticks=[(i, s) for i, s in enumerate(stats)], yticks=[(len(models) - 1 - i, m) for i, m in enumerate(models)],
        xlim=(-0.6, max(len(stats), 1) - 0.4), ylim=(-0.6, max(len(models), 1) - 0.4), xrotation=60,
        xlabel="", ylabel="", show_grid=False,
        **({"responsive": True, "height": 120 + 28 * len(models), "tools": ["hover"], "legend_position": "right"}
           if bk else {}))
    return c


def caption(res: dict) -> str:
    """What the figure is: the design, N scenes, B replicates, the interval, world and checkpoints."""
    m = res["meta"]
    ck = "; ".join(f"{n} {str(s)[:12]}" for n, s in m["models"].items() if n in res["models"])
    lv = ", ".join(f"+{v:g}" for v in m["levels"])
    sc = m["scenes"]
    n_scans = f" of {sc['n_scans']} scans" if sc.get("n_scans") else ""
    base = (f"the training climate ({m['training_climate_K']:+.2f} K GMST)"
            if isinstance(m["training_climate_K"], (int, float)) else "the training climate")
    mech = f", mechanisms: {', '.join(m['mechanisms'])}" if m["mechanisms"] else ", no extra mechanism"
    return (f"Paired counterfactual design: the same {m['n_scenes']} scenes{n_scans} (the same weather) simulated "
            f"in {base} and at {lv} K above it, world preset {m['world']} (version {m['world_version']}{mech}); "
            f"every model retrieves the same Tb ({m['product'] or 'its product'}). Responses in %/K (compound), "
            f"bands and bars: {_ci(m)} intervals from {m['n_boot']} paired scene-bootstrap replicates (the scene is "
            f"the unit; model and truth resampled together). Verdicts from the interval of the error (model − truth): "
            f"over-/under-states when it excludes 0, tracks when it lies within ±{_g(m['tolerance'])} %/K, else "
            f"undetermined. The dashed line is the Clausius–Clapeyron "
            f"rate {CC_PCT_PER_K:g} %/K ({EXTREME_INTENSITY.source}). The AR6 SPM.6 points are the median change "
            f"of the 10-year 1-day precipitation event over land per K above 1850–1900: a daily land statistic, not "
            f"the instantaneous pixel quantiles measured here, shown for orientation only. Checkpoints: {ck}.")


def _ci(m: dict) -> str:
    return f"{_g(m['ci'])} %"


def _g(x) -> str:
    return "?" if x is None else f"{float(x):g}"


def table_data(res: dict) -> pd.DataFrame:
    """The plotted rows as one CSV-ready frame (``panel`` says which panel a row is drawn in)."""
    parts = [res["curve"].assign(panel="a: response curve"), res["by_level"].assign(panel="b: against warming level"),
             res["table"].assign(panel="c: verdict matrix")]
    if len(res["growth"]):
        parts.append(res["growth"].assign(panel="b: error growth"))
    out = pd.concat(parts, ignore_index=True)
    first = ["panel", "world", "group", "population", "stat", "statistic", "level_q", "warming_K", "source"]
    return out[first + [c for c in out.columns if c not in first]]


def provenance(res: dict) -> dict:
    m = res["meta"]
    return {"entry": "warming-response result", "world": {"name": m["world"], "version": m["world_version"],
                                                          "mechanisms": m["mechanisms"]},
            "design": "paired counterfactual scenes (same weather, climate +warming); paired scene bootstrap",
            "scenes": m["scenes"], "n_scenes": m["n_scenes"], "levels_K": m["levels"], "n_boot": m["n_boot"],
            "interval": f"{_ci(m)} (percentile)", "tolerance_pct_per_K": m["tolerance"],
            "training_climate_K": m["training_climate_K"], "product": m["product"],
            "product_version": m["product_version"], "created": m["created"], "injected_truth_pct_per_K": m["injected"],
            "group": res["group"], "population": res["population"],
            "warming_K": res["level"], "statistic": res["stat"],
            "models": [{"name": n, "checkpoint_sha256": m["models"].get(n)} for n in res["models"]],
            "command": res["command"], "notes": res["notes"],
            # the warming experiment's own scenes, not the sidebar's region / period / season
            "region": res["group"], "period": None, "season": None,
            "statistics": "evaluation.warming (raincheck warming run)"}


def export_parts(selection, catalog_path=None, cube_path=None, **kw):
    """The publication figure (response curve, response against warming, verdict matrix) and the
    plotted rows as CSV; :class:`app.data.DataError` when there is no result for the preset."""
    import holoviews as hv

    ensure_backends()
    res = compute(selection, kw.get("results"))
    a, b, c = elements(res, backend="matplotlib")
    for el in (a, b):
        el.opts(backend="matplotlib", fontsize=FONTS, aspect=1.25)
    c.opts(backend="matplotlib", fontsize=FONTS, aspect=1.25, sublabel_position=(-0.62, 0.95))
    lay = hv.Layout([a, b, c]).opts(backend="matplotlib", sublabel_format="({alpha})", hspace=0.6)
    return ExportParts(lay, table_data(res), provenance(res) | {"caption": caption(res), "error_growth": growth_text(res)},
                       fig_inches=(16, 5.2))


class WarmingView(C.EvaluationView):
    """The "Warming response" tab: controls for the preset, group, population, level and
    statistic (mirrored in the URL), the three panels, the caption and the verdict table."""

    name_ = "warming"
    _WATCH = ("warm_world", "warm_group", "warm_pop", "warm_level", "warm_stat", "warm_axis", "models")

    def __init__(self, **params):
        import panel as pn

        self.level = pn.widgets.Select(label="Warming (K)", options={"+2 K": 2.0}, value=2.0, width=110)
        self._syncing = False
        super().__init__(**params)
        s = self.selection
        if self.result is None:
            self._show_level(s.warm_level, [s.warm_level])
        self.level.param.watch(self._level_picked, "value")
        self.population = pn.widgets.RadioButtonGroup(options={"all pixels": "all", "wet pixels": "wet"},
                                                      value=s.warm_pop, color="light", width=190, margin=(25, 10, 5, 10))
        self.population.param.watch(lambda e: setattr(s, "warm_pop", e.new), "value")
        self.axis = pn.widgets.RadioButtonGroup(options={"response": "response", "error (model − truth)": "error"},
                                                value=s.warm_axis, color="light", width=250, margin=(25, 10, 5, 10))
        self.axis.param.watch(lambda e: setattr(s, "warm_axis", e.new), "value")
        s.param.watch(lambda e: setattr(self.axis, "value", e.new), "warm_axis")
        s.param.watch(lambda e: setattr(self.population, "value", e.new), "warm_pop")
        self.controls = pn.Row(
            pn.widgets.Select.from_param(s.param.warm_world, label="World preset", width=170),
            pn.widgets.Select.from_param(s.param.warm_group, label="Region / surface", width=150),
            self.population,
            self.level,
            pn.widgets.Select.from_param(s.param.warm_stat, label="Statistic in (b)", width=150),
            self.axis,
            sizing_mode="stretch_width", css_classes=["rc-warming-controls"])
        self._layout.insert(0, self.controls)

    def _show_level(self, level, levels) -> None:
        """The level picker offers the result's levels (the link may ask for another: the nearest is shown)."""
        self._syncing = True
        try:
            opts = {f"+{float(v):g} K": float(v) for v in sorted(set(float(x) for x in levels) | {float(level)})}
            self.level.options = opts
            self.level.value = float(level)
        finally:
            self._syncing = False

    def _level_picked(self, event) -> None:
        if not self._syncing and event.new is not None:
            self.selection.warm_level = float(event.new)

    def answer_stamp(self):
        return results_stamp()

    def compute(self):
        return compute(self.selection)

    def render(self, res):
        import panel as pn

        self._show_level(res["level"], res["levels"])
        a, b, c = elements(res)
        mf = matrix_frame(res)
        ci = _ci(res["meta"])
        lo, hi = f"{ci} low", f"{ci} high"
        shown = mf.assign(**{"error (%/K)": mf["error"], lo: mf["error_lo"], hi: mf["error_hi"]})
        shown = shown[["model", "stat", "error (%/K)", lo, hi, "verdict"]]
        table = pn.widgets.Tabulator(shown, disabled=True, show_index=False, sizing_mode="stretch_width",
                                     layout="fit_data_table", groupby=["model"], css_classes=["rc-warming-verdicts"],
                                     formatters={k: {"type": "money", "precision": 2}
                                                 for k in ("error (%/K)", lo, hi)})
        table.style.map(lambda v: f"background-color: {VERDICT_COLOURS.get(v, '')}", subset=["verdict"])
        m = res["meta"]
        return [pn.pane.Markdown(f"**Warming response**, world `{data.escape_text(str(m['world']))}` "
                                 f"(version {data.escape_text(str(m['world_version']))}), {res['group']}, "
                                 f"{res['population']} pixels, +{res['level']:g} K.",
                                 css_classes=["rc-warming-summary"], sizing_mode="stretch_width"),
                pn.Row(pn.pane.HoloViews(a, sizing_mode="stretch_width"),
                       pn.pane.HoloViews(b, sizing_mode="stretch_width"), sizing_mode="stretch_width"),
                pn.pane.Markdown(data.escape_text(growth_text(res)), css_classes=["rc-warming-growth"],
                                 sizing_mode="stretch_width"),
                pn.pane.HoloViews(c, sizing_mode="stretch_width"),
                pn.pane.Markdown(data.escape_text(caption(res)), css_classes=["rc-warming-caption"],
                                 sizing_mode="stretch_width"),
                pn.pane.Markdown("**Verdicts** (tracks / under-states / over-states / undetermined, "
                                 f"from the {ci} interval of the error, model − truth)"), table]


def make_view(selection=None, catalog_path=None, cube_path=None) -> WarmingView:
    return WarmingView(selection=selection, catalog_path=catalog_path, cube_path=cube_path)

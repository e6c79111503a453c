"""The evaluation and trend reports, as JSON-ready dicts, answered from a climatology cube.

The CLI (``raincheck evaluate`` / ``raincheck trends``) prints exactly these dicts; the app calls
the same functions. The schemas are documented in ``docs/evaluation.md`` and versioned by the
``schema`` field ("raincheck.evaluate/1", "raincheck.trends/1"): fields are only ever added.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from evaluation import cube as CB
from evaluation import distributions as D
from evaluation import extremes as E
from evaluation import ipcc
from evaluation import regions as RG
from evaluation import trends as T

EVALUATE_SCHEMA = "raincheck.evaluate/1"
TRENDS_SCHEMA = "raincheck.trends/1"
EXCEEDANCE_THRESHOLDS = (1.0, 10.0, 20.0, 50.0)
GPD_THRESHOLD = 10.0  # mm h-1, a bin edge
RETURN_PERIODS_OBS = (1e5, 1e6, 1e7)
STAT_UNITS = {"mean": "mm h-1", "wet_fraction": "1", "q99": "mm h-1", "q999": "mm h-1"}
DEFAULT_STATS = ("mean", "wet_fraction", "q99", "q999", "exceed:10")
WORLD_SOURCE = ("the synthetic world's designed scaling (catalogs.simulator.climate.intensity_factor on its "
                "climatology, evaluation.ipcc.world_scaling_pct_per_K): the rule, not a measurement")


def clean(x):
    """JSON-safe: NaN/inf → None, numpy → python."""
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return [clean(v) for v in x.tolist()]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, np.datetime64):
        return str(x)[:10]
    if isinstance(x, Path):
        return str(x)
    return x


def _selection(cube, region, period, season, surface):
    r = RG.get_region(region)
    return {"region": r.spec, "region_name": r.name, "period": period, "season": season, "surface": surface,
            "region_set": RG.reference_region_set()}


def distribution_summary(h: dict) -> dict:
    c = h["counts"]
    s = D.summary_from_hist(c, h["total"])
    n = h["n"]
    s["std"] = math.sqrt(max(h["total_sq"] / n - s["mean"] ** 2, 0)) if n else float("nan")
    s["exceedance"] = {f"{t:g}": float(E.exceedance_probability(c, D.EDGES, t)) if n else float("nan")
                       for t in EXCEEDANCE_THRESHOLDS}
    s["pdf_fraction"] = D.pdf(c, per="fraction")
    return s


def extremes_summary(h: dict, *, n_boot: int = 50, seed: int = 0) -> dict:
    c = h["counts"]
    out = {"threshold": GPD_THRESHOLD, "hill_binned": E.hill_binned(c, GPD_THRESHOLD)}
    b = E.bootstrap_gpd(counts=c, threshold=GPD_THRESHOLD, return_periods=RETURN_PERIODS_OBS, n_boot=n_boot, seed=seed)
    out["gpd"] = {"xi": b["fit"]["xi"], "sigma": b["fit"]["sigma"], "n_exceed": b["fit"]["n_exceed"],
                  "rate": b["fit"]["rate"], "ci_xi": b["ci"]["xi"], "ci_sigma": b["ci"]["sigma"],
                  "confidence": b["confidence"]}
    out["return_levels"] = {"return_period_pixels": list(RETURN_PERIODS_OBS), "level": b["return_levels"],
                            "ci_lower": b["ci"]["return_levels"][0], "ci_upper": b["ci"]["return_levels"][1]}
    return out


def evaluate(cube: CB.Cube, models=None, region="global", *, period=None, season=None, surface=None,
             extremes: bool = True, n_boot: int = 50) -> dict:
    """Distributions, extremes and skill of ``models`` (default: all in the cube), the
    reference and the truth over a region/period/season/surface. See docs/evaluation.md."""
    models = list(models) if models else cube.models
    for m in models:
        if m not in cube.sources:
            raise KeyError(f"model {m!r} is not in the cube (has {', '.join(cube.models) or 'no models'}); "
                           f"add it with 'raincheck climatology build --sources {m}'")
    sel = dict(period=period, season=season, surface=surface)
    out = {"schema": EVALUATE_SCHEMA, "cube": cube.describe(), "selection": _selection(cube, region, period, season, surface),
           "bins": {"edges_mm_h": D.EDGES, "wet_threshold_mm_h": D.WET_THRESHOLD}}
    strip_sources = [s for s in (CB.REFERENCE, CB.TRUTH_STRIP) if s in cube.sources] + [f"{m}{CB.STRIP}" for m in models]
    all_sources = [s for s in (CB.TRUTH,) if s in cube.sources] + models
    hists = {s: cube.histogram(s, region, **sel) for s in dict.fromkeys(strip_sources + all_sources)}
    out["distributions"] = {
        "strip": {s: distribution_summary(hists[s]) for s in strip_sources},
        "all_pixels": {s: distribution_summary(hists[s]) for s in all_sources},
    }
    comp = {}
    for m in models:
        comp[m] = {}
        for base, a, b in (("reference", f"{m}{CB.STRIP}", CB.REFERENCE), ("truth", m, CB.TRUTH)):
            if b not in hists or hists[a]["n"] == 0 or hists[b]["n"] == 0:
                continue
            lv, qa, qb = D.qq(hists[a]["counts"], hists[b]["counts"], histograms=True)
            comp[m][f"vs_{base}"] = {"wasserstein1_mm_h": D.wasserstein1_hist(hists[a]["counts"], hists[b]["counts"]),
                                     "perkins_score": D.perkins_score(hists[a]["counts"], hists[b]["counts"]),
                                     "qq": {"levels": lv, "model": qa, base: qb}}
    out["comparison"] = comp
    if extremes:
        out["extremes"] = {s: extremes_summary(hists[s], n_boot=n_boot) for s in hists if hists[s]["n"]}
    skill = {}
    for m in models + ([CB.REFERENCE] if CB.REFERENCE in cube.sources else []):
        skill[m] = {}
        for against in ((CB.TRUTH,) if m == CB.REFERENCE else (CB.REFERENCE, CB.TRUTH)):
            try:
                skill[m][f"vs_{against}"] = cube.skill(m, against, region, **sel)
            except (KeyError, CB.RegionNotInCube) as exc:
                skill[m][f"vs_{against}"] = {"error": str(exc)}
    out["skill"] = skill
    return clean(out)


def _gmst_series(df, gmst):
    """Mean GMST anomaly over the months sampled in each period."""
    vals, label = [], None
    for months in df["month_times"]:
        t = np.asarray(months, dtype="datetime64[ns]") + np.timedelta64(14, "D")
        g, label = T.gmst_for(t, gmst)
        vals.append(float(np.mean(g)))
    if label is None:
        _, label = T.gmst_for(np.array(["2000-01-01"], dtype="datetime64[ns]"), gmst)
    return np.array(vals), label


def tail_slope(counts, threshold) -> float:
    """d ln P(X ≥ x) / d ln x at ``threshold`` from the histogram (bin edges either side)."""
    e = D.EDGES
    k = int(np.searchsorted(e, threshold))
    k = min(max(k, 1), e.size - 3)
    x, s = E.exceedance_curve(counts)
    a, b = s[k - 1], s[k + 1]
    if a <= 0 or b <= 0:
        return float("nan")
    return float((np.log(b) - np.log(a)) / (np.log(e[k + 1]) - np.log(e[k - 1])))


def default_gmst_for(cube: CB.Cube) -> str:
    cfg = (cube.ledger or {}).get("config") or {}
    return "synthetic" if cfg.get("loader", "simulator") == "simulator" else "default"


def trends(cube: CB.Cube, source: str, region="global", *, period=None, season=None, surface=None,
           freq: str = "year", stats=DEFAULT_STATS, gmst=None, method: str = "hamed_rao",
           confidence: float = 0.95, strip: bool = False) -> dict:
    """Trend report: per statistic the series, Sen slope in %/decade and %/K with CIs
    (autocorrelation-aware MK), the IPCC envelope and the verdict (:data:`evaluation.ipcc.VERDICTS`);
    for the synthetic world also the world's designed scaling of the statistic
    (``ipcc.world_pct_per_K``, :func:`evaluation.ipcc.world_scaling_pct_per_K`)."""
    src = source
    if strip:
        src = CB.TRUTH_STRIP if source == CB.TRUTH else (source if source == CB.REFERENCE else f"{source}{CB.STRIP}")
    if src not in cube.sources:
        raise KeyError(f"source {src!r} is not in the cube (has {', '.join(cube.sources)})")
    gmst = default_gmst_for(cube) if gmst is None else gmst  # (a user's pandas Series has no truth value)
    h = cube.histogram(src, region, period=period, season=season, surface=surface)
    out = {"schema": TRENDS_SCHEMA, "cube": cube.describe(), "source": src,
           "selection": _selection(cube, region, period, season, surface) | {"freq": freq},
           "method": {"mann_kendall": method, "slope": "Sen (Theil-Sen), CI from the modified Var(S)",
                      "confidence": confidence,
                      "relative": "100*(exp(b)-1) of the slope b of ln(series) (linear/mean when the series has zeros)"},
           "series": []}
    gm_label = None
    # the world's designed scaling is a global rule: given for the global series of the synthetic world
    synthetic = isinstance(gmst, str) and gmst == "synthetic" and RG.get_region(region).kind == "global"
    for stat in stats:
        df = cube.series(src, region, stat, freq=freq, period=period, season=season, surface=surface)
        g, gm_label = _gmst_series(df, gmst) if len(df) else (np.array([]), gm_label)
        tr = T.trend(df["time"].values, df["value"].values, gmst=g if len(df) else None, method=method,
                     confidence=confidence, deseason=(freq == "month"))
        slope = tail_slope(h["counts"], float(stat.split(":")[1])) if stat.startswith("exceed:") else None
        env = ipcc.envelope_for(stat, RG.get_region(region).spec if RG.get_region(region).kind != "global" else "global",
                                tail_slope=slope)
        v = ipcc.verdict(tr["pct_per_K"], tr["ci_pct_per_K"], env, confidence=confidence)
        out["series"].append({
            "stat": stat, "units": STAT_UNITS.get(stat, "1"),
            "time": [str(t)[:10] for t in df["time"].values], "value": df["value"].values,
            "n_pixels": df["n"].values, "gmst_K": g,
            "trend": {k: tr[k] for k in ("n", "method", "mean", "slope_per_decade", "ci_per_decade", "pct_per_decade",
                                         "ci_pct_per_decade", "pct_per_K", "ci_pct_per_K", "var_inflation")}
            | {"mann_kendall": {k: tr["mk"][k] for k in ("test", "trend", "p", "z", "tau")}}
            | ({"note": tr["note"]} if "note" in tr else {}),
            "ipcc": v | ({"tail_slope": slope} if slope is not None else {})
            | ({"world_pct_per_K": ipcc.world_scaling_pct_per_K(stat),
                "world_source": WORLD_SOURCE} if synthetic else {}),
        })
    out["gmst"] = {"source": gmst if isinstance(gmst, str) else "user", "label": gm_label}
    if out["gmst"]["source"] == "default":
        out["gmst"]["warning"] = ipcc.DEFAULT_GMST_LABEL
    return clean(out)

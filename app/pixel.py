"""One clicked pixel: each model's predicted distribution against the reference and the truth.

The distribution maths is :class:`models.quantiles.QuantileDistribution`'s; this module only
gathers the numbers at one pixel and draws them.
"""

from __future__ import annotations

import numpy as np


def _val(ds, name, i, j):
    if name not in ds:
        return None
    v = float(ds[name].values[i, j])
    return v if np.isfinite(v) else None


def pixel_summary(swath, outputs: dict, i: int, j: int) -> dict:
    """Values at pixel (along ``i``, cross ``j``): position, reference, truth and, per model, the
    quantiles and the CDF on a rain-rate grid (from QuantileDistribution)."""
    from models.quantiles import QuantileDistribution

    lat = float(swath["lat"].values[i, j])
    lon = float(swath["lon"].values[i, j])
    t = str(np.datetime_as_string(swath["time"].values[i], unit="s")) if "time" in swath else ""
    ref = _val(swath, "surface_precip", i, j)
    truth = _val(swath, "surface_precip_truth", i, j)
    models = {}
    for name, out in outputs.items():
        q = np.asarray(out["precip_quantiles"].values[i, j], np.float64)
        levels = np.asarray(out["quantile"].values, np.float64)
        if not np.isfinite(q).all():
            models[name] = None
            continue
        d = QuantileDistribution(q, levels)
        models[name] = {"levels": levels, "values": q, "mean": float(d.mean()), "median": float(d.median()),
                        "pop": float(d.pop()), "p_heavy": float(d.p_heavy()), "dist": d}
    top = [m["values"][-1] for m in models.values() if m] + [v for v in (ref, truth) if v is not None] + [1.0]
    grid = np.linspace(0.0, 1.2 * max(top), 300)
    for m in models.values():
        if m:
            m["grid"] = grid
            m["cdf"] = np.asarray(m["dist"].cdf(grid), np.float64)
    rows = [f"**Pixel** scan {i}, pixel {j} — {lat:.2f}°N, {lon:.2f}°E, {t} UTC", "",
            "| | rate (mm h-1) | PoP | P(>10 mm h-1) |", "|---|---|---|---|",
            f"| reference (black dashed) | {'—' if ref is None else f'{ref:.2f}'} | | |",
            f"| truth (red dotted) | {'—' if truth is None else f'{truth:.2f}'} | | |"]
    for name, m in models.items():
        if m is None:
            rows.append(f"| {name} | no valid retrieval here | | |")
        else:
            rows.append(f"| {name} mean / median | {m['mean']:.2f} / {m['median']:.2f} | {m['pop']:.2f} | {m['p_heavy']:.3f} |")
    if not outputs:
        rows += ["", "_No model output shown: select a model with output (or press Run) to see its "
                 "predicted distribution here._"]
    return {"i": i, "j": j, "lat": lat, "lon": lon, "time": t, "reference": ref, "truth": truth,
            "models": models, "markdown": "\n".join(rows)}


def pixel_plot(summary: dict):
    """CDF of each model's predicted distribution, with the reference and truth as vertical lines."""
    import holoviews as hv

    x = hv.Dimension("rate", label="Surface precipitation", unit="mm h-1")
    y = hv.Dimension("cdf", label="P(rate ≤ x)", range=(0, 1))
    items = []
    for name, m in summary["models"].items():
        if m:
            items.append(hv.Curve((m["grid"], m["cdf"]), x, y, label=f"{name} (CDF)"))
            items.append(hv.Scatter((m["values"], m["levels"]), x, y, label=f"{name} quantiles").opts(size=3, backend="bokeh"))
    if summary["reference"] is not None:
        items.append(hv.VLine(summary["reference"], label="reference").opts(color="black", line_dash="dashed", backend="bokeh"))
    if summary["truth"] is not None:
        items.append(hv.VLine(summary["truth"], label="truth").opts(color="crimson", line_dash="dotted", backend="bokeh"))
    if not items:
        items = [hv.Curve([], x, y)]
    title = f"Pixel ({summary['i']}, {summary['j']}) at {summary['lat']:.2f}°N {summary['lon']:.2f}°E"
    return hv.Overlay(items).opts(title=title, responsive=True, height=260, legend_position="bottom_right", backend="bokeh",
                                  show_legend=True)

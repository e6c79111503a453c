"""Benchmarks of the app's views (run: ``python -m benchmarks.bench_app``).

1. Swath map, server side, from cache (the orbit already read): a full-orbit map (three layers:
   Tb, reference, truth, each rasterised from every swath pixel as a quad at 900×450, plus the
   coastlines) and a zoom re-rasterise (one layer, a 12°×8° view). Goals: ≤ 1 s and ≤ 150 ms.
   Baseline, in the same run on the same orbit: a static matplotlib/cartopy ``pcolormesh`` of one
   layer on a PlateCarree GeoAxes with coastlines, drawn to an Agg canvas (and the same zoomed
   with ``set_extent``). Goal: ≥ 10× faster (one layer against one layer).
2. Evaluation views from the climatology cube: time for each of distributions, extremes,
   trends, scores to answer a new selection (goal ≤ 1 s). Uses the demo cube when built, else
   builds a small cube (truth, reference; 300-scan orbits, 2012–2021) in a temporary folder.

Prints a table or JSON (``--json``). CPU is shared on the development machines: timings take
the best of several repeats.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

ORBIT = 20000  # crosses the antimeridian
W, H = 900, 450


def _best(f, repeats=5):
    f()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return min(ts), float(np.median(ts))


def bench_swath(repeats=5) -> dict:
    import holoviews as hv

    from app import data
    from app.export import ensure_backends
    from app.geometry import swath_geometry, warm_up
    from app.state import Selection
    from app.swath import coast_path, image_for, swath_layers

    ensure_backends()
    warm_up()
    ds = data.load_swath(None, orbit=ORBIT)  # the cache the app keeps
    sel = Selection(orbit=ORBIT)
    t0 = time.perf_counter()
    geom = swath_geometry(ds["lat"].values, ds["lon"].values)
    t_geom = time.perf_counter() - t0
    layers = swath_layers(ds, sel).layers

    def full():
        for lay in layers:
            hv.Overlay([image_for(geom, lay, None, None, W, H), coast_path("PlateCarree")])

    truth = [lay for lay in layers if lay.key == "truth"][0]
    i, j = ds.sizes["along_track"] // 3, ds.sizes["cross_track"] // 2
    cx, cy = geom.x[i, j], geom.y[i, j]
    zx, zy = (cx - 6, cx + 6), (cy - 4, cy + 4)

    def zoom():
        hv.Overlay([image_for(geom, truth, zx, zy, W, H), coast_path("PlateCarree", zx, zy)])

    def one_layer():
        image_for(geom, truth, None, None, W, H)

    full_best, full_med = _best(full, repeats)
    zoom_best, zoom_med = _best(zoom, repeats)
    one_best, _ = _best(one_layer, repeats)
    base_full, base_zoom = _baseline(ds, truth.values, (zx, zy), repeats=max(2, repeats // 2))
    return {
        "orbit": ORBIT, "pixels": int(geom.x.size), "canvas": [W, H],
        "geometry_s": t_geom,
        "full_orbit_map_3_layers_s": full_best, "full_orbit_map_3_layers_median_s": full_med,
        "full_orbit_one_layer_s": one_best,
        "zoom_rerasterise_s": zoom_best, "zoom_rerasterise_median_s": zoom_med,
        "baseline_pcolormesh_full_s": base_full, "baseline_pcolormesh_zoom_s": base_zoom,
        "speedup_full": base_full / one_best, "speedup_zoom": base_zoom / zoom_best,
        "goals": {"full_orbit_map_s": 1.0, "zoom_s": 0.150, "speedup": 10.0},
    }


def _baseline(ds, values, zoom, repeats=2):
    """Static matplotlib/cartopy pcolormesh of one layer of the same orbit (offline coastlines)."""
    import matplotlib

    matplotlib.use("Agg")
    import cartopy.crs as ccrs
    import matplotlib.pyplot as plt

    from app.coastlines import configure_cartopy

    configure_cartopy()
    lat, lon = ds["lat"].values, ds["lon"].values

    def draw(extent=None):
        fig = plt.figure(figsize=(W / 100, H / 100), dpi=100)
        ax = fig.add_subplot(1, 1, 1, projection=ccrs.PlateCarree())
        ax.pcolormesh(lon, lat, np.ma.masked_invalid(values), transform=ccrs.PlateCarree(), shading="auto",
                      norm=matplotlib.colors.LogNorm(0.1, 50), cmap="turbo")
        ax.coastlines("110m", linewidth=0.5)
        if extent is not None:
            (x0, x1), (y0, y1) = extent
            ax.set_extent([x0, x1, y0, y1], crs=ccrs.PlateCarree())
        else:
            ax.set_global()
        fig.canvas.draw()
        plt.close(fig)

    full, _ = _best(lambda: draw(), repeats)
    (x0, x1), (y0, y1) = zoom
    wrap = ((x0 + 180) % 360 - 180, (x1 + 180) % 360 - 180)
    z, _ = _best(lambda: draw((wrap, (y0, y1))), repeats)
    return full, z


def bench_views(cube_path=None) -> dict:
    from catalogs.store import is_complete
    from evaluation import cube as CB

    from app.state import Selection
    from app.views import distributions, extremes, scores, trends

    tmp = None
    if cube_path is None:
        demo = CB.demo_cube_path()
        if is_complete(demo):
            cube_path = str(demo)
        else:
            tmp = tempfile.TemporaryDirectory()
            cube_path = str(Path(tmp.name) / "bench.zarr")
            orbits = CB.record_orbits(years=(2012, 2021), months=(1, 7), per_month=1)
            CB.build_cube(orbits, ["truth", "reference"], cube_path, scheduler="inline", n_scans=300)
    c = CB.open_cube(cube_path)
    y0, y1 = str(c.times.min())[:4], str(c.times.max())[:4]
    models = list(c.models)
    distributions.compute(Selection(models=models, start_year=int(y0), end_year=int(y1)), cube_path)  # open, warm
    out = {"cube": cube_path, "models": models, "goal_s": 1.0}
    seasons = ("DJF", "JJA", "annual", "JJA")  # the small fallback cube samples January and July
    for k, (name, mod) in enumerate((("distributions", distributions), ("extremes", extremes),
                                     ("trends", trends), ("scores", scores))):
        sel = Selection(models=models, region="ocean", season=seasons[k], start_year=int(y0), end_year=int(y1))
        t0 = time.perf_counter()
        try:
            mod.compute(sel, cube_path)
            ok = True
        except Exception as e:  # a selection without data still answers (with a message)
            ok = f"{type(e).__name__}: {e}"
        out[f"{name}_s"] = time.perf_counter() - t0
        out[f"{name}_ok"] = ok
    if tmp is not None:
        tmp.cleanup()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cube", default=None, help="climatology cube for the view timings")
    args = ap.parse_args(argv)
    res = {"swath": bench_swath(args.repeats), "views": bench_views(args.cube)}
    if args.json:
        print(json.dumps(res, indent=2))
        return res
    s, v = res["swath"], res["views"]
    print(f"swath map, orbit {s['orbit']} ({s['pixels']:,} pixels, canvas {W}x{H}), from cache:")
    print(f"  full-orbit map, 3 layers + coasts  {s['full_orbit_map_3_layers_s'] * 1e3:8.1f} ms   (goal <= 1000 ms)")
    print(f"  full-orbit, one layer              {s['full_orbit_one_layer_s'] * 1e3:8.1f} ms")
    print(f"  zoom re-rasterise (12x8 deg)       {s['zoom_rerasterise_s'] * 1e3:8.1f} ms   (goal <= 150 ms)")
    print(f"  matplotlib/cartopy pcolormesh      {s['baseline_pcolormesh_full_s'] * 1e3:8.1f} ms full, "
          f"{s['baseline_pcolormesh_zoom_s'] * 1e3:.1f} ms zoomed")
    print(f"  speed-up vs pcolormesh             {s['speedup_full']:8.1f}x full, {s['speedup_zoom']:.1f}x zoom (goal >= 10x)")
    print(f"evaluation views from the cube ({v['cube']}):")
    for name in ("distributions", "extremes", "trends", "scores"):
        flag = "" if v[f"{name}_ok"] is True else f"  [{v[f'{name}_ok']}]"
        print(f"  {name:14s} {v[f'{name}_s'] * 1e3:8.1f} ms   (goal <= 1000 ms){flag}")
    return res


if __name__ == "__main__":
    main()

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


# -- load: concurrent browser sessions against a served app ------------------------------
from tests.app_helpers import RENDERED_JS, VIEW_MARKS  # noqa: E402  (what a user waits for, as the browser tests)

SWITCHES = ["distributions", "extremes", "trends", "scores", "swath"] * 2
LOAD_GOALS = {"first_paint_s": 5.0, "switch_p95_s": 1.5, "run_to_map_s": 3.0}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(root: Path, env_extra: dict, log_path: Path):
    """``raincheck serve`` in a subprocess on a free port, data root ``root``; returns (proc, url)."""
    import os
    import subprocess
    import sys
    import urllib.request

    port = _free_port()
    env = {**os.environ, "RAINCHECK_DATA_ROOT": str(root), **env_extra}
    exe = Path(sys.executable).with_name("raincheck")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "app.cli"]
    proc = subprocess.Popen([*cmd, "serve", "--port", str(port)], env=env, stdout=log_path.open("w"),
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    t0 = time.time()
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=2).read()
            return proc, url
        except OSError:
            if proc.poll() is not None or time.time() - t0 > 120:
                proc.kill()
                raise RuntimeError(f"raincheck serve did not start (see {log_path})")
            time.sleep(0.3)


async def _wait_view(page, view: str, timeout_ms: int = 180_000) -> None:
    """Until the user sees ``view`` answered: the URL names it, its text is on screen and its
    figures are drawn."""
    mark, canvas = VIEW_MARKS[view]
    await page.wait_for_function(f"() => new URLSearchParams(location.search).get('view') === '{view}'"
                                 + (" || !location.search.includes('view=')" if view == "swath" else ""),
                                 timeout=timeout_ms)
    await page.get_by_text(mark).first.wait_for(state="visible", timeout=timeout_ms)
    await page.wait_for_function(RENDERED_JS, arg=canvas, timeout=timeout_ms, polling=50)


async def _session(browser, url: str, out: dict, external: list) -> None:
    from app.state import VIEW_LABELS
    from tests.app_helpers import external_request

    ctx = await browser.new_context(viewport={"width": 1400, "height": 950})
    page = await ctx.new_page()
    page.on("request", lambda r: external.append(r.url) if external_request(r.url) else None)
    page.on("pageerror", lambda e: out["errors"].append(str(e)))
    t0 = time.perf_counter()
    await page.goto(url + "/", timeout=180_000)
    await _wait_view(page, "swath")
    out["first_paint"].append(time.perf_counter() - t0)
    for v in SWITCHES:
        t0 = time.perf_counter()
        await page.get_by_text(VIEW_LABELS[v], exact=True).first.click()
        await _wait_view(page, v)
        out["switch"].append(time.perf_counter() - t0)
    await ctx.close()


async def _run_to_map(browser, url: str, orbit: int, model: str) -> float:
    """One session on an orbit without output: press Run, until the model's map is drawn."""
    import re

    ctx = await browser.new_context(viewport={"width": 1400, "height": 950})
    page = await ctx.new_page()
    await page.goto(f"{url}/?orbit={orbit}&models={model}", timeout=180_000)
    await _wait_view(page, "swath")
    await page.get_by_text(re.compile(f"no output for orbit {orbit} yet")).first.wait_for()
    t0 = time.perf_counter()
    await page.get_by_role("button", name=f"Run {model}").click()
    await page.get_by_text(re.compile(f"{model} · orbit {orbit}: computed")).first.wait_for(timeout=300_000)
    await page.get_by_text(re.compile(f"no output for orbit {orbit} yet")).first.wait_for(state="detached",
                                                                                          timeout=300_000)
    await page.wait_for_function(RENDERED_JS, arg=True, timeout=300_000, polling=50)
    dt = time.perf_counter() - t0
    await ctx.close()
    return dt


#: server environments of the load part: the baseline turns the shared view cache and the warm
#: inference worker off (what the app did before them), "raincheck" is the app as served
LOAD_CONFIGS = (("baseline", {"RAINCHECK_VIEW_CACHE": "0", "RAINCHECK_WARM_WORKER": "0"}), ("raincheck", {}))


def bench_load(sessions: int = 8, model: str = "unet-reference", orbits=(20301, 20302), settle_s: float = 20.0,
               configs=LOAD_CONFIGS) -> dict:
    """``sessions`` concurrent Chromium sessions (one browser, a context each) against ``raincheck
    serve`` (a subprocess, fresh data root, the demo cube): time from opening the page until the
    swath map is drawn (first paint), and each of 10 view switches until the view's figures
    are drawn; then, in one more session, Run → the model's map drawn, twice (two orbits).
    Run once per config (environment of the server): the baseline turns the shared view cache
    and the warm inference worker off."""
    import asyncio

    from playwright.async_api import async_playwright

    chromium = __import__("os").environ.get("RAINCHECK_CHROMIUM", "/usr/bin/chromium")
    args = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]
    res = {"sessions": sessions, "switches_per_session": len(SWITCHES), "goals": LOAD_GOALS}
    for name, env in configs:
        with tempfile.TemporaryDirectory() as tmp:
            proc, url = _start_server(Path(tmp), env, Path(tmp) / "serve.log")
            try:
                time.sleep(settle_s)  # the server's warm-up (and warm worker) as a user would meet it

                async def go():
                    out = {"first_paint": [], "switch": [], "errors": []}
                    external: list = []
                    async with async_playwright() as p:
                        browser = await p.chromium.launch(executable_path=chromium, args=args)
                        t0 = time.perf_counter()
                        await asyncio.gather(*[_session(browser, url, out, external) for _ in range(sessions)])
                        out["wall"] = time.perf_counter() - t0
                        print(f"  {name}: first paint {np.round(sorted(out['first_paint']), 1).tolist()} s, view "
                              f"switch median {np.median(out['switch']):.2f} s, p95 "
                              f"{np.percentile(out['switch'], 95):.2f} s", flush=True)
                        out["run_to_map"] = [await _run_to_map(browser, url, o, model) for o in orbits]
                        await browser.close()
                    out["external_requests"] = sorted(set(external))
                    return out

                out = asyncio.run(go())
            finally:
                proc.terminate()
                try:
                    proc.wait(10)
                except Exception:
                    proc.kill()
        fp, sw = np.array(out["first_paint"]), np.array(out["switch"])
        res[name] = {"first_paint_median_s": float(np.median(fp)), "first_paint_max_s": float(fp.max()),
                     "switch_median_s": float(np.median(sw)), "switch_p95_s": float(np.percentile(sw, 95)),
                     "switch_max_s": float(sw.max()), "wall_s": out["wall"],
                     "run_to_map_s": out["run_to_map"], "page_errors": len(out["errors"]),
                     "external_requests": out["external_requests"]}
    return res


def print_load(res: dict) -> None:
    import os

    names = [k for k in res if isinstance(res[k], dict) and "switch_median_s" in res[k]]
    print(f"load: {res['sessions']} concurrent Chromium sessions, {res['switches_per_session']} view switches each "
          f"(until the view's figures are drawn); {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    g = res["goals"]
    rows = [("first paint, median", "first_paint_median_s", None), ("first paint, max", "first_paint_max_s",
                                                                    g["first_paint_s"]),
            ("view switch, median", "switch_median_s", None), ("view switch, p95", "switch_p95_s", g["switch_p95_s"]),
            ("view switch, max", "switch_max_s", None), ("all sessions, wall", "wall_s", None)]
    print("  " + " " * 22 + "".join(f"{n:>12s}" for n in names) + "      goal")
    for label, key, goal in rows:
        print(f"  {label:22s}" + "".join(f"{res[n][key]:11.2f}s" for n in names)
              + (f"   <= {goal:.1f} s" if goal else ""))
    print(f"  {'Run -> map (2 orbits)':22s}" + "".join(
        f"{'/'.join(f'{t:.1f}' for t in res[n]['run_to_map_s']):>11s}s" for n in names)
          + f"   <= {g['run_to_map_s']:.1f} s (warm worker: the second)")
    print(f"  {'page errors':22s}" + "".join(f"{res[n]['page_errors']:12d}" for n in names))
    print(f"  {'external requests':22s}" + "".join(f"{len(res[n]['external_requests']):12d}" for n in names))
    for n in names:
        for u in res[n]["external_requests"][:10]:
            print(f"    {n}: {u}")
    if len(names) == 2:
        a, b = (res[n] for n in names)
        print(f"  speed-up: view switch p95 {a['switch_p95_s'] / b['switch_p95_s']:.1f}x, first paint "
              f"{a['first_paint_max_s'] / b['first_paint_max_s']:.1f}x, Run -> map "
              f"{a['run_to_map_s'][0] / b['run_to_map_s'][0]:.1f}x")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cube", default=None, help="climatology cube for the view timings")
    ap.add_argument("--parts", default="swath,views,load",
                    help="which parts to run (comma-separated: swath, views, load)")
    ap.add_argument("--sessions", type=int, default=8, help="concurrent browser sessions of the load part")
    ap.add_argument("--configs", default="baseline,raincheck",
                    help="load part: server configurations to run (baseline: shared view cache and warm "
                         "worker off; raincheck: as served)")
    args = ap.parse_args(argv)
    parts = set(args.parts.split(","))
    res = {}
    if "swath" in parts:
        res["swath"] = bench_swath(args.repeats)
    if "views" in parts:
        res["views"] = bench_views(args.cube)
    if "load" in parts:
        configs = dict(LOAD_CONFIGS)
        res["load"] = bench_load(args.sessions, configs=[(c, configs[c]) for c in args.configs.split(",")])
    if args.json:
        print(json.dumps(res, indent=2))
        return res
    if "swath" in res:
        _print_swath(res["swath"])
    if "views" in res:
        _print_views(res["views"])
    if "load" in res:
        print_load(res["load"])
    return res


def _print_swath(s):
    print(f"swath map, orbit {s['orbit']} ({s['pixels']:,} pixels, canvas {W}x{H}), from cache:")
    print(f"  full-orbit map, 3 layers + coasts  {s['full_orbit_map_3_layers_s'] * 1e3:8.1f} ms   (goal <= 1000 ms)")
    print(f"  full-orbit, one layer              {s['full_orbit_one_layer_s'] * 1e3:8.1f} ms")
    print(f"  zoom re-rasterise (12x8 deg)       {s['zoom_rerasterise_s'] * 1e3:8.1f} ms   (goal <= 150 ms)")
    print(f"  matplotlib/cartopy pcolormesh      {s['baseline_pcolormesh_full_s'] * 1e3:8.1f} ms full, "
          f"{s['baseline_pcolormesh_zoom_s'] * 1e3:.1f} ms zoomed")
    print(f"  speed-up vs pcolormesh             {s['speedup_full']:8.1f}x full, {s['speedup_zoom']:.1f}x zoom (goal >= 10x)")


def _print_views(v):
    print(f"evaluation views from the cube ({v['cube']}):")
    for name in ("distributions", "extremes", "trends", "scores"):
        flag = "" if v[f"{name}_ok"] is True else f"  [{v[f'{name}_ok']}]"
        print(f"  {name:14s} {v[f'{name}_s'] * 1e3:8.1f} ms   (goal <= 1000 ms){flag}")


if __name__ == "__main__":
    main()

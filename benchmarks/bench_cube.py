"""Benchmarks of the climatology cube (run: ``python -m benchmarks.bench_cube``).

1. Per-orbit aggregation throughput (pixels per second): the full aggregation of one orbit's
   truth field -- AR6 region lookup, 10° latitude band, month and surface grouping, binning,
   counts + Σ + Σ² -- against, in the same run and on the same pixels, a bare
   ``np.histogram`` with 37 uniform bins (the ≈ 144 M px/s reference figure of the issue) and
   ``np.histogram`` with the cube's 37 log edges; plus the numpy fallback path.
   Goal: ≥ 50 % of the bare np.histogram.
2. Build scaling: the same orbits built with a dask LocalCluster of 1 and of 2 workers (tasks
   include simulating the orbit); parallel efficiency = t1 / (2 t2). Goal: ≥ 80 %.

Prints a JSON summary (``--json``) or a table. CPU is shared on the development machines:
timings take the best of several repeats.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def _best(f, repeats=7):
    f()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts)


def _best_interleaved(fs: dict, repeats=25) -> dict:
    """Best time of each function, measured in alternation so that load from other users of a
    shared machine hits all of them alike."""
    for f in fs.values():
        f()
    best = {k: float("inf") for k in fs}
    for _ in range(repeats):
        for k, f in fs.items():
            t = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t)
    return best


def bench_aggregation(repeats=25) -> dict:
    from catalogs.simulator import geometry, simulate_truth
    from evaluation import cube as CB
    from evaluation import distributions as D

    o = int(geometry.orbit_at_time(np.datetime64("2030-06-15")))
    tr = simulate_truth(o)
    x, lat, lon, st, tm = tr["rain"], tr["lat"], tr["lon"], tr["surface_type"], tr["time"]
    n_reg = len(CB.region_labels())
    months, midx = np.unique(tm.astype("datetime64[M]"), return_inverse=True)
    n = x.size
    edges = np.concatenate([D.EDGES[:-1], [1e9]])
    t = _best_interleaved({
        "cube": lambda: CB.aggregate_orbit(x, lat, lon, st, midx, months.size, n_reg),
        "uniform": lambda: np.histogram(x, 37, (0.0, 300.0)),
        "edges": lambda: np.histogram(x, edges),
    }, repeats)
    res = {
        "pixels": int(n),
        "wet_fraction": float(np.mean(x >= 0.1)),
        "numba": CB.HAVE_NUMBA,
        "cube_aggregation_px_s": n / t["cube"],
        "cube_aggregation_numpy_px_s": n / _best(
            lambda: CB.aggregate_orbit(x, lat, lon, st, midx, months.size, n_reg, use_numba=False), 3),
        "np_histogram_uniform37_px_s": n / t["uniform"],
        "np_histogram_log_edges_px_s": n / t["edges"],
    }
    loop = _numpy_loop(x, lat, lon, st, midx)
    res["plain_numpy_loop_px_s"] = n / loop
    res["ratio_vs_np_histogram_uniform"] = res["cube_aggregation_px_s"] / res["np_histogram_uniform37_px_s"]
    res["ratio_vs_np_histogram_log_edges"] = res["cube_aggregation_px_s"] / res["np_histogram_log_edges_px_s"]
    return res


def _numpy_loop(x, lat, lon, st, midx):
    """The plain baseline: a Python loop over (region, surface) groups with np.histogram each."""
    from evaluation import distributions as D
    from evaluation import regions as RG

    edges = np.concatenate([D.EDGES[:-1], [1e9]])
    t = time.perf_counter()
    ids = RG.ar6_lookup(lat, lon)
    band = np.clip(((lat + 90) // 10).astype(int), 0, 17)
    for layer in (ids, band):
        key = layer.astype(np.int64) * 8 + st
        for k in np.unique(key):
            sel = key == k
            np.histogram(x[sel], edges)
            x[sel].sum()
    return time.perf_counter() - t


def bench_scaling(n_orbits=16, n_scans=None) -> dict:
    from evaluation import cube as CB

    orbits = CB.record_orbits(years=(2020, 2021), per_month=n_orbits // 8)[:n_orbits]
    out = {"orbits": len(orbits), "n_scans": n_scans}
    with tempfile.TemporaryDirectory() as d:
        for w in (1, 2):
            from distributed import Client, LocalCluster

            cluster = LocalCluster(n_workers=w, threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(cluster)
            client.run(lambda: __import__("evaluation.cube") and None)  # warm imports / numba cache
            CB.build_cube(orbits[:w], ["truth", "reference"], Path(d) / f"warm{w}.zarr", scheduler=client, n_scans=200)
            t = time.perf_counter()
            CB.build_cube(orbits, ["truth", "reference"], Path(d) / f"w{w}.zarr", scheduler=client, n_scans=n_scans)
            out[f"seconds_{w}_worker"] = time.perf_counter() - t
            client.close()
            cluster.close()
    out["speedup"] = out["seconds_1_worker"] / out["seconds_2_worker"]
    out["parallel_efficiency"] = out["speedup"] / 2
    out["orbits_per_s_2_workers"] = len(orbits) / out["seconds_2_worker"]
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--orbits", type=int, default=16)
    ap.add_argument("--skip-scaling", action="store_true")
    a = ap.parse_args(argv)
    res = {"aggregation": bench_aggregation()}
    if not a.skip_scaling:
        res["scaling"] = bench_scaling(a.orbits)
    if a.json:
        print(json.dumps(res, indent=1))
        return
    ag = res["aggregation"]
    print(f"per-orbit aggregation ({ag['pixels']} px, numba={ag['numba']}):")
    for k in ("cube_aggregation_px_s", "cube_aggregation_numpy_px_s", "plain_numpy_loop_px_s",
              "np_histogram_uniform37_px_s", "np_histogram_log_edges_px_s"):
        print(f"  {k:34s} {ag[k] / 1e6:8.1f} M px/s")
    print(f"  ratio vs np.histogram (uniform bins)   {ag['ratio_vs_np_histogram_uniform']:.2f}  (goal >= 0.5)")
    print(f"  ratio vs np.histogram (cube log edges) {ag['ratio_vs_np_histogram_log_edges']:.2f}")
    if "scaling" in res:
        sc = res["scaling"]
        print(f"build of {sc['orbits']} whole orbits: 1 worker {sc['seconds_1_worker']:.1f} s, "
              f"2 workers {sc['seconds_2_worker']:.1f} s, efficiency {sc['parallel_efficiency']:.0%} (goal >= 80 %)")


if __name__ == "__main__":
    main()

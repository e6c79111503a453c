"""Full-orbit inference: the optimised path against a naive baseline, in the same run.

    python -m benchmarks.bench_inference [--model unet-reference] [--orbit 30000] [--repeats 5]

Naive baseline: plain PyTorch eager fp32 on the same tiles as the optimised path (the tile plan
of :func:`models.inference.tile_plan`, one tile at a time): the network as trained (BatchNorm
layers unfused, NCHW memory layout), ``torch.no_grad``, blending in (Q, along, cross) order;
"with derived products" adds the products by :class:`models.quantiles.QuantileDistribution`
(float64 numpy, the reference definitions) and the same xarray assembly.

Optimised: :func:`models.inference.predict_quantiles` (network only) and
:func:`models.inference.predict_swath` (with derived products and assembly) in fp32: BatchNorm
folded into the convolutions, channels-last input built without layout copies, the monotone
head's cumulative sum done in the compiled pass that blends the tiles, the four products in one
compiled pass per pixel, no float64 or layout copies of the quantiles. bf16 autocast (the card's
CPU default where the CPU has native bf16) is printed separately: it does not meet the 1e-4
equality, so it does not count towards the goal.

Each figure is the median of ``repeats`` runs, naive and optimised interleaved so that load from
other jobs hits both alike (wall times on a shared machine are still noisy: the load average is
printed). Goal (issue 12): optimised >= 3x naive on 2 CPU threads with outputs equal to 1e-4;
on a GPU <= 20 ms per orbit (measured only where CUDA is available).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from models.inference import (_pad_to, cpu_bf16_supported, device_name, invalid_tb_mask, make_retrieval,
                              predict_quantiles, predict_swath, tile_plan, tile_weights)
from models.quantiles import QuantileDistribution
from models.registry import load_model

GOAL_RATIO = 3.0
GOAL_GPU_S = 0.020
TOLERANCE = 1e-4  # mm/h on the quantiles and the mean/median; absolute on the probabilities


@torch.no_grad()
def naive_quantiles(retriever, swath, tile_scans: int | None = None) -> np.ndarray:
    """Quantiles (A, C, Q) with the unfused fp32 eager network, NCHW, one tile at a time, on the
    tiles of :func:`models.inference.tile_plan`."""
    net = retriever.net.eval()
    kw = {}
    if getattr(retriever, "gmst_conditioned", False):
        from models.conditioning import swath_gmst

        kw["gmst"] = swath_gmst(swath)[0]
    tc = swath["Tc"].transpose("along_track", "cross_track", "pmw_frequency").values.astype(np.float32)
    bad = invalid_tb_mask(tc)
    tc[bad] = np.nan
    a, c = tc.shape[:2]
    m = retriever.multiple
    rows, cols = _pad_to(a, m), _pad_to(c, m)
    x = torch.full((13, rows, cols), float("nan"))
    x[:, :a, :c] = torch.from_numpy(np.moveaxis(tc, -1, 0))
    tile, ov, starts = tile_plan(retriever, rows, tile_scans)
    margin = retriever.overlap_margin
    acc = torch.zeros((len(retriever.levels), rows, cols))
    wsum = torch.zeros((rows, 1))
    for s in starts:
        y = net(x[None, :, s:s + tile], **kw)[0]
        w = torch.from_numpy(tile_weights(tile, s == 0, s + tile >= rows, margin, ov))
        acc[:, s:s + tile] += y * w[None, :, None]
        wsum[s:s + tile, 0] += w
    q = np.moveaxis((acc / wsum[None]).numpy()[:, :a, :c], 0, -1)
    q[bad] = np.nan
    return q


def naive_retrieval(retriever, swath, tile_scans: int | None = None):
    """The naive quantiles plus the products by :class:`QuantileDistribution`, assembled."""
    q = naive_quantiles(retriever, swath, tile_scans)
    d = QuantileDistribution(q, retriever.levels)
    prods = {"precip_mean": d.mean(), "precip_median": d.median(), "pop": d.pop(), "p_heavy": d.p_heavy()}
    prods = {k: v.astype(np.float32) for k, v in prods.items()}
    return make_retrieval(swath, q, retriever, prods)


CPU_S: list[float] = []  # process CPU time of each _timed call, in order


def _timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    CPU_S.append(time.process_time() - c)
    return time.perf_counter() - t, out


def max_difference(ds_a, ds_b) -> float:
    """Largest absolute difference over the quantiles and the four products (NaN where both are)."""
    worst = 0.0
    for v in ("precip_quantiles", "precip_mean", "precip_median", "pop", "p_heavy"):
        a, b = ds_a[v].values, ds_b[v].values
        if not np.array_equal(np.isnan(a), np.isnan(b)):
            return float("inf")
        worst = max(worst, float(np.nanmax(np.abs(a - b), initial=0.0)))
    return worst


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="unet-reference")
    ap.add_argument("--orbit", type=int, default=30000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from catalogs.simulator import simulate_orbit

    swath = simulate_orbit(args.orbit)
    r = load_model(args.model)
    n_par = sum(p.numel() for p in r.net.parameters())
    rows = _pad_to(swath.sizes["along_track"], r.multiple)
    tile, ov, starts = tile_plan(r, rows)
    print(f"model {r.name} ({n_par / 1e6:.2f} M parameters, sha256 {r.sha256[:12]}), orbit {args.orbit}: "
          f"{swath.sizes['along_track']} scans x {swath.sizes['cross_track']} pixels x 13 channels; "
          f"{len(starts)} tile(s) of {tile} scans (overlap {ov})")
    cpu = torch.device("cpu")
    r.to(cpu)
    print(f"device: {device_name(cpu)}; median of {args.repeats} interleaved runs each")
    # warm-up: allocator, oneDNN primitive caches, numba kernels (compiled or loaded from cache)
    part = swath.isel(along_track=slice(0, 600))
    predict_swath(r, part, device=cpu, validate=False, precision="fp32")
    naive_retrieval(r, part)
    runs = {
        "naive quantiles": lambda: naive_quantiles(r, swath),
        "optimised quantiles": lambda: predict_quantiles(r, swath, device=cpu, validate=False, precision="fp32")[0],
        "naive with products": lambda: naive_retrieval(r, swath),
        "optimised with products": lambda: predict_swath(r, swath, device=cpu, validate=False, precision="fp32"),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    cpus: dict[str, list[float]] = {k: [] for k in runs}
    outs: dict = {}
    loads = []
    for _ in range(args.repeats):
        for k, fn in runs.items():
            dt, outs[k] = _timed(fn)
            times[k].append(dt)
            cpus[k].append(CPU_S[-1])
        loads.append(os.getloadavg()[0])
    med = {k: float(np.median(v)) for k, v in times.items()}
    cmed = {k: float(np.median(v)) for k, v in cpus.items()}
    dq = float(np.nanmax(np.abs(outs["optimised quantiles"] - outs["naive quantiles"])))
    dall = max_difference(outs["optimised with products"], outs["naive with products"])
    for label, k in (("naive     quantiles only   (eager fp32, BatchNorm unfused, NCHW, same tiles)", "naive quantiles"),
                     ("optimised quantiles only   (fused, channels-last, compiled blend + cumsum)", "optimised quantiles"),
                     ("naive     with products    (+ QuantileDistribution float64, xarray)", "naive with products"),
                     ("optimised with products    (+ one compiled pass for the products, xarray)",
                      "optimised with products")):
        v = times[k]
        print(f"{label}: {med[k]:6.3f} s/orbit (min {min(v):.3f}, max {max(v):.3f}; CPU time {cmed[k]:.3f} s)")
    for what, n, o, d in (("quantiles only", "naive quantiles", "optimised quantiles", dq),
                          ("with products", "naive with products", "optimised with products", dall)):
        ratio = med[n] / med[o]
        print(f"speed-up {what:15s}: {ratio:5.2f}x (goal >= {GOAL_RATIO:.0f}x: {'met' if ratio >= GOAL_RATIO else 'NOT met'}); "
              f"max |difference| {d:.1e} (goal <= {TOLERANCE:.0e}: {'met' if d <= TOLERANCE else 'NOT met'}); "
              f"CPU-time ratio {cmed[n] / cmed[o]:.2f}x")
    print(f"load average {min(loads):.1f}..{max(loads):.1f} during the runs on {os.cpu_count()} cores "
          f"(others' jobs inflate wall times; the ratios are steadier, and with --threads 1 the CPU-time "
          f"ratio hardly depends on the load)")
    if cpu_bf16_supported():
        t16 = float(np.median([_timed(lambda: predict_swath(r, swath, device=cpu, validate=False,
                                                             precision="bf16"))[0] for _ in range(args.repeats)]))
        ds16 = predict_swath(r, swath, device=cpu, validate=False, precision="bf16")
        d16 = max_difference(ds16, outs["optimised with products"])
        print(f"bf16 autocast on this CPU (native bf16{'; the card default here' if r.cpu_bf16 else ''}): "
              f"{t16:6.3f} s/orbit with products ({med['naive with products'] / t16:.2f}x naive), "
              f"max |difference| to fp32 {d16:.1e}: not within {TOLERANCE:.0e}, so not counted")
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        r.to(gpu)
        predict_swath(r, part, device=gpu, validate=False)
        torch.cuda.synchronize()
        tg = []
        for _ in range(max(args.repeats, 5)):
            dt, dsg = _timed(lambda: predict_swath(r, swath, device=gpu, validate=False))
            tg.append(dt)
        tq = [_timed(lambda: predict_quantiles(r, swath, device=gpu, validate=False, precision="fp32"))[0]
              for _ in range(max(args.repeats, 5))]
        t_gpu = float(np.median(tg))
        dg = max_difference(dsg, outs["optimised with products"])
        print(f"GPU {device_name(gpu)}: {t_gpu * 1e3:.1f} ms/orbit with products, default precision "
              f"(goal <= {GOAL_GPU_S * 1e3:.0f} ms: {'met' if t_gpu <= GOAL_GPU_S else 'NOT met'}; max |difference| to "
              f"CPU fp32 {dg:.1e}); fp32 quantiles only {np.median(tq) * 1e3:.1f} ms/orbit")
    else:
        print("no GPU figure: no CUDA device in this process")


if __name__ == "__main__":
    main()

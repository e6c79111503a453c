"""Full-orbit inference: the optimised path against a naive baseline, in the same run.

    python -m benchmarks.bench_inference [--model unet-reference] [--orbit 30000] [--repeats 3]

Naive baseline: the same network, fp32, BatchNorm layers unfused, NCHW memory layout, one tile of
256 scans at a time (no batching), ``torch.no_grad``. Optimised: :func:`models.inference.predict_swath`
(BatchNorm folded into the convolutions, channels-last, ``torch.inference_mode``, long tiles
batched; bf16 autocast on GPU, and on CPUs with native bf16 when the model card enables it) —
measured both in fp32 and in bf16. Both blend overlapping tiles the same way; the benchmark
checks that they agree. Prints seconds per orbit (best of ``repeats``), the ratio and the device.
Goal on 2 CPU cores: <= 1.5 s per orbit for the shipped reference model.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from models.inference import (_pad_to, cpu_bf16_supported, device_name, invalid_tb_mask, plan_tiles,
                              predict_swath, tile_weights)
from models.registry import load_model


@torch.no_grad()
def naive_quantiles(retriever, swath, tile_scans: int = 256) -> np.ndarray:
    """Quantiles (A, C, Q) with the unfused fp32 network, one tile at a time."""
    net = retriever.net.eval()
    tc = swath["Tc"].transpose("along_track", "cross_track", "pmw_frequency").values.astype(np.float32)
    bad = invalid_tb_mask(tc)
    tc[bad] = np.nan
    a, c = tc.shape[:2]
    m = retriever.multiple
    rows, cols = _pad_to(a, m), _pad_to(c, m)
    x = torch.full((13, rows, cols), float("nan"))
    x[:, :a, :c] = torch.from_numpy(np.moveaxis(tc, -1, 0))
    margin = retriever.overlap_margin
    ov = 2 * margin + 32
    tile = max(_pad_to(tile_scans, m), _pad_to(2 * ov + m, m))
    tile = min(tile, rows)
    acc = torch.zeros((len(retriever.levels), rows, cols))
    wsum = torch.zeros((rows, 1))
    for s in plan_tiles(rows, tile, ov, m):
        y = net(x[None, :, s:s + tile])[0]
        w = torch.from_numpy(tile_weights(tile, s == 0, s + tile >= rows, margin, ov))
        acc[:, s:s + tile] += y * w[None, :, None]
        wsum[s:s + tile, 0] += w
    q = np.moveaxis((acc / wsum[None]).numpy()[:, :a, :c], 0, -1)
    q[bad] = np.nan
    return q


CPU_TIMES: dict[int, float] = {}


def _best(fn, repeats: int) -> tuple[float, object]:
    """Best wall time of ``repeats`` runs; the process CPU time of that run is kept in
    ``CPU_TIMES`` (a load-independent figure when the machine is shared)."""
    best, out, cpu = float("inf"), None, 0.0
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        dt, dc = time.perf_counter() - t, time.process_time() - c
        if dt < best:
            best, cpu = dt, dc
    CPU_TIMES[id(out)] = cpu
    _best.last_cpu = cpu
    return best, out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="unet-reference")
    ap.add_argument("--orbit", type=int, default=30000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from catalogs.simulator import simulate_orbit

    swath = simulate_orbit(args.orbit)
    r = load_model(args.model)
    n_par = sum(p.numel() for p in r.net.parameters())
    print(f"model {r.name} ({n_par / 1e6:.2f} M parameters, sha256 {r.sha256[:12]}), orbit {args.orbit}: "
          f"{swath.sizes['along_track']} scans x {swath.sizes['cross_track']} pixels x 13 channels")
    cpu = torch.device("cpu")
    r.to(cpu)
    print(f"device: {device_name(cpu)}")
    # warm-up (allocator, oneDNN primitive caches)
    predict_swath(r, swath.isel(along_track=slice(0, 600)), device=cpu)
    naive_quantiles(r, swath.isel(along_track=slice(0, 600)))
    t_naive, q_naive = _best(lambda: naive_quantiles(r, swath), args.repeats)
    c_naive = _best.last_cpu
    print(f"naive     (fp32, BatchNorm unfused, NCHW, 256-scan tiles one at a time): {t_naive:6.2f} s/orbit "
          f"(CPU time {c_naive:.2f} s)")
    t_fp32, ds32 = _best(lambda: predict_swath(r, swath, device=cpu, validate=False, precision="fp32"), args.repeats)
    c_fp32 = _best.last_cpu
    d32 = np.nanmax(np.abs(ds32.precip_quantiles.values - q_naive))
    print(f"optimised fp32 (fused, channels-last, whole-orbit tiles, incl. derived products): {t_fp32:6.2f} s/orbit "
          f"(CPU time {c_fp32:.2f} s; max |difference| to naive {d32:.1e} mm/h)")
    t_fast = t_fp32
    if cpu_bf16_supported():
        t_bf16, ds16 = _best(lambda: predict_swath(r, swath, device=cpu, validate=False, precision="bf16"), args.repeats)
        c_bf16 = _best.last_cpu
        mean32, mean16 = ds32.precip_mean.values, ds16.precip_mean.values
        rel = np.nanmax(np.abs(mean16 - mean32)) / max(np.nanmax(mean32), 1e-6)
        print(f"optimised bf16 autocast (CPU has native bf16): {t_bf16:6.2f} s/orbit "
              f"(CPU time {c_bf16:.2f} s; max |mean difference| {rel:.1e} of the orbit's max mean)")
        if getattr(r, "cpu_bf16", False):
            t_fast = t_bf16
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (others' jobs inflate wall times)")
    print(f"default path of {r.name}: {t_fast:.2f} s/orbit; speed-up over naive {t_naive / t_fast:.2f}x; "
          f"goal <= 1.5 s/orbit: {'met' if t_fast <= 1.5 else 'NOT met'}")
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        r.to(gpu)
        predict_swath(r, swath.isel(along_track=slice(0, 600)), device=gpu)
        torch.cuda.synchronize()
        t_gpu, dsg = _best(lambda: predict_swath(r, swath, device=gpu, validate=False), args.repeats)
        dg = np.nanmax(np.abs(dsg.precip_mean.values - ds32.precip_mean.values))
        print(f"optimised on {device_name(gpu)}: {t_gpu:6.3f} s/orbit (max |mean difference| vs CPU fp32 {dg:.2e} mm/h)")


if __name__ == "__main__":
    main()

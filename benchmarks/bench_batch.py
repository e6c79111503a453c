"""Batch inference throughput across a dask LocalCluster: 1 vs 2 single-threaded workers.

    python -m benchmarks.bench_batch [--model unet-reference] [--orbits 6]

Each run writes into a fresh temporary data root (no cache hits). Prints orbits/s for 1 and 2
workers and the parallel efficiency (throughput(2) / (2 x throughput(1))).
"""

from __future__ import annotations

import argparse
import os
import tempfile


def run(model: str, n_orbits: int, workers: int, first: int) -> float:
    from models.batch import infer_orbits

    with tempfile.TemporaryDirectory() as root:
        os.environ["RAINCHECK_DATA_ROOT"] = root
        res = infer_orbits(model, range(first, first + n_orbits), scheduler=None, n_workers=workers,
                           device="cpu", threads_per_task=1)
        assert len(res.computed) == n_orbits, res.failed
        return n_orbits / res.seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="unet-reference")
    ap.add_argument("--orbits", type=int, default=6)
    a = ap.parse_args()
    print(f"batch inference, model {a.model}, {a.orbits} full orbits per run, cluster start-up included")
    t1 = run(a.model, a.orbits, 1, 30000)
    t2 = run(a.model, a.orbits, 2, 30100)
    print(f"1 worker : {t1:.3f} orbits/s")
    print(f"2 workers: {t2:.3f} orbits/s")
    print(f"speed-up {t2 / t1:.2f}x, parallel efficiency {t2 / (2 * t1):.0%} (goal >= 80 %)")


if __name__ == "__main__":
    main()

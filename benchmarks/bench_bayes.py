"""The Bayesian database retrieval (``bayes-baseline``) on one full synthetic orbit.

    python -m benchmarks.bench_bayes [--orbit 30000] [--repeats 3]

Its cost per orbit is the k-d tree search for the k nearest database entries and the weighted
posterior quantiles of their rain. Baseline, in the same process on the same neighbours: the
quantiles computed on the whole orbit at once (``block_rows`` = every pixel: the code before the
blocks, whose (pixels x k) temporaries made every numpy step memory-bound). Optimised: blocks of
:data:`models.bayes.BLOCK_ROWS` rows that stay in cache, and the count of entries below each level
from one cumulative histogram instead of one pass per level. The outputs must be identical
(bit for bit). Each figure is the median of ``repeats`` runs, baseline and optimised interleaved.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orbit", type=int, default=30000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from catalogs.simulator import simulate_orbit
    from models.bayes import BLOCK_ROWS, project, weighted_quantiles
    from models.registry import load_model

    r = load_model("bayes-baseline")
    tc = simulate_orbit(args.orbit)["Tc"].transpose("along_track", "cross_track", "pmw_frequency").values
    tb = tc.reshape(-1, tc.shape[-1]).astype(np.float32)
    tb = tb[np.isfinite(tb).all(1)]
    print(f"orbit {args.orbit}: {tb.shape[0]} pixels, database {r.db_rain.size} entries, k={r.k}, "
          f"{r.levels.size} levels, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}")

    t = time.perf_counter()
    d, idx = r.tree.query(project(tb, r.pca), k=r.k, workers=torch.get_num_threads())
    t_tree = time.perf_counter() - t
    d2 = d.astype(np.float64) ** 2
    w = np.exp(-(d2 - d2[:, :1]) / (2 * r.sigma ** 2))
    vals = r.db_rain[idx]

    base, opt = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        a = weighted_quantiles(vals, w, r.levels, block_rows=vals.shape[0])
        base.append(time.perf_counter() - t)
        t = time.perf_counter()
        b = weighted_quantiles(vals, w, r.levels)
        opt.append(time.perf_counter() - t)
    same = np.array_equal(a, b)
    t = time.perf_counter()
    r.quantiles(tb)
    t_all = time.perf_counter() - t
    print(f"k-d tree search (k={r.k}):                  {t_tree:6.2f} s")
    print(f"posterior quantiles, whole orbit at once:  {np.median(base):6.2f} s   (baseline)")
    print(f"posterior quantiles, {BLOCK_ROWS}-row blocks:      {np.median(opt):6.2f} s   "
          f"ratio {np.median(base) / np.median(opt):.1f}x, identical: {same}")
    print(f"BayesRetriever.quantiles, whole orbit:     {t_all:6.2f} s")
    if not same:
        raise SystemExit("the blocked quantiles differ from the baseline")


if __name__ == "__main__":
    main()

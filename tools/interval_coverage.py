"""Coverage of the forced-response error intervals, measured by sub-sampling stored scenes.

The N scenes of a stored forced-response run stand in for the population: the model's error on all
N is taken as the true value, and M sets of n < N scenes (drawn without replacement) each get a 90 %
interval from the paired scene bootstrap of :mod:`evaluation.warming.response` (the same weights,
pooling and statistics), three ways: the percentile interval the package reports, BCa (bias
z0 from the replicates, acceleration from the scene jackknife) and the basic interval. The script
prints how often each covers the N-scene value, their median widths, and the mean and spread of the
n-scene estimates (their bias against the N-scene value). Drawing n of N without replacement shrinks
the spread by about sqrt((N - n) / (N - 1)), so a correct interval over-covers a little here.

Needs the scene summaries in the store (``raincheck warming run ... --scenes N`` first), e.g.

    python tools/interval_coverage.py --world today --model unet-reference --scenes 200 --subset 60
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from catalogs.simulator import get_world  # noqa: E402
from evaluation.warming import run as R  # noqa: E402
from evaluation.warming.response import _pool, boot_weights, compound_pct_per_K, stat_specs, statistics  # noqa: E402

LEVELS = (1.0, 2.0, 4.0)


def load(world: str, model: str, n_scenes: int, n_scans: int, product: str, level: float, seed: int = 0) -> dict:
    """Truth and model summaries at the base climate and ``level``, from the store."""
    idents = {"truth": {"checkpoint_sha256": "", "product": "surface_precip_truth"}, **R.model_identities([model], product)}
    s = R.load_summaries(R.plan_scenes(n_scenes, n_scans, seed), get_world(world), 0, R.training_climate_K(), LEVELS,
                         idents, R.store_root())
    k = 1 + LEVELS.index(level)
    return {src: [clim[0], clim[k]] for src, clim in s.items()}


def stat_index(stat: str) -> int:
    specs = stat_specs()
    if stat == "mean":
        return next(i for i, sp in enumerate(specs) if sp["statistic"] == "mean")
    q = float(stat.lstrip("pq")) / 100.0
    return next(i for i, sp in enumerate(specs) if sp["statistic"] == "quantile" and sp["population"] == "all"
                and abs(sp["level_q"] - q) < 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", default="today")
    ap.add_argument("--model", default="unet-reference")
    ap.add_argument("--scenes", type=int, default=200, help="N: the stored scenes (the population)")
    ap.add_argument("--subset", type=int, default=60, help="n: scenes per simulated experiment")
    ap.add_argument("--repeats", type=int, default=200, help="M: simulated experiments")
    ap.add_argument("--scan-length", type=int, default=150)
    ap.add_argument("--product", default="precip_mean")
    ap.add_argument("--stat", default="p99.9", help="p99.9, p99, ... or mean")
    ap.add_argument("--level", type=float, default=4.0)
    ap.add_argument("--boot", type=int, default=1000)
    a = ap.parse_args()
    S = load(a.world, a.model, a.scenes, a.scan_length, a.product, a.level)
    j = stat_index(a.stat)

    def err(W):
        r = {s: compound_pct_per_K(statistics(*_pool(S[s][0], 0, W))[:, j], statistics(*_pool(S[s][1], 0, W))[:, j], a.level)
             for s in S}
        return r[a.model] - r["truth"]

    N, n, B = a.scenes, a.subset, a.boot
    theta = err(np.ones((1, N)))[0]
    rng = np.random.default_rng(1)
    cover = {"percentile": 0, "BCa": 0, "basic": 0}
    widths = {k: [] for k in cover}
    est = []
    for m in range(a.repeats):
        idx = rng.choice(N, n, replace=False)
        W = np.zeros((1 + B + n, N))
        W[:1 + B, idx] = boot_weights(n, B, m)
        W[1 + B:, idx] = np.ones((n, n)) - np.eye(n)  # the jackknife, for BCa's acceleration
        e = err(W)
        t0, reps, jack = e[0], e[1:1 + B], e[1 + B:]
        est.append(t0)
        lo, hi = np.percentile(reps, [5, 95])
        z0 = norm.ppf(np.clip(np.mean(reps < t0) + 0.5 * np.mean(reps == t0), 1e-6, 1 - 1e-6))
        d = jack.mean() - jack
        acc = (d ** 3).sum() / (6 * ((d ** 2).sum()) ** 1.5)
        al = [norm.cdf(z0 + (z0 + z) / (1 - acc * (z0 + z))) for z in (norm.ppf(0.05), norm.ppf(0.95))]
        blo, bhi = np.percentile(reps, [100 * al[0], 100 * al[1]])
        for k, (lo_k, hi_k) in {"percentile": (lo, hi), "BCa": (blo, bhi), "basic": (2 * t0 - hi, 2 * t0 - lo)}.items():
            cover[k] += bool(lo_k <= theta <= hi_k)
            widths[k].append(hi_k - lo_k)
    est = np.asarray(est)
    print(f"{a.world} {a.model} {a.product} {a.stat} error at +{a.level:g} K, {a.scan_length}-scan scenes: "
          f"{theta:+.3f} %/K on all {N}; on {n}: mean {est.mean():+.3f} (bias {est.mean() - theta:+.3f}), sd {est.std():.3f}")
    for k in cover:
        print(f"  {k:10s} 90 % interval covers {cover[k] / a.repeats:.2f} of {a.repeats}, median width {np.median(widths[k]):.2f}")


if __name__ == "__main__":
    main()

"""Reading one full PPS granule pair (1C-GMI + 2B-CMB) and collocating it, on one core.

    python -m benchmarks.bench_pps [--repeat 5]

Goal (issue 16): one full orbit (1C-GMI 2924 scans x 221 pixels, S1 + S2; 2B-CMB 7925 scans x 49 rays)
read into the canonical swath with the CMB reference collocated in <= 3 s on one core.
Baseline, in the same process on the same files: gpm-api's bare read (``gpm.open_granule_dataset`` of
S1, S2 and KuGMI with the same variables, loaded, nothing converted or collocated), so the ratio
says what raincheck adds on top of the reader it builds on. Also: the collocation alone, and a
brute-force nearest search on a sample of pixels (to show what the k-d tree saves).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_v] = "1"  # one core (set before numpy is imported)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

GOAL_S = 3.0


def _bare(p1, pc) -> None:
    import gpm

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        for path, mode, var in ((p1, "S1", ["Tc"]), (p1, "S2", ["Tc"]), (pc, "KuGMI", ["estimSurfPrecipTotRate"])):
            gpm.open_granule_dataset(str(path), scan_mode=mode, variables=var, chunks=None).load()


def _median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    from catalogs import gpm, pairs, pps
    from catalogs.simulator import geometry as geo
    from catalogs.simulator import simulate_orbit

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--orbit", type=int, default=20000)
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as root:
        sw = simulate_orbit(args.orbit)
        t0 = time.perf_counter()
        p1 = pps.write_1c_gmi(sw, root=root)
        pc = pps.write_2b_cmb(sw, root=root)
        t_write = time.perf_counter() - t0
        size = (os.path.getsize(p1) + os.path.getsize(pc)) / 1e6
        pairs.open_pair(p1)  # warm-up: imports, HDF5 library, page cache
        _bare(p1, pc)
        t_pair = _median_time(lambda: pairs.open_pair(p1), args.repeat)
        t_bare = _median_time(lambda: _bare(p1, pc), args.repeat)
        gmi, cmb = gpm.open_1c_gmi(p1, surface_from=None), gpm.open_2b_cmb(pc)
        t_col = _median_time(lambda: pairs.collocate_cmb(gmi, cmb), args.repeat)
        # brute force on a sample: all CMB footprints for each of 200 GMI pixels
        clat, clon = cmb["lat"].values.ravel(), cmb["lon"].values.ravel()
        rng = np.random.default_rng(0)
        sample = [(int(rng.integers(0, geo.N_SCANS)), int(rng.integers(0, 221))) for _ in range(200)]
        t0 = time.perf_counter()
        for i, j in sample:
            np.nanargmin(geo.great_circle_km(gmi["lat"].values[i, j], gmi["lon"].values[i, j], clat, clon))
        t_brute = (time.perf_counter() - t0) / len(sample) * gmi["lat"].size

    print(f"one orbit: 1C-GMI {geo.N_SCANS} x 221 (S1 + S2) + 2B-CMB {cmb.sizes['along_track']} x 49; "
          f"{size:.0f} MB on disk; written in {t_write:.2f} s")
    print(f"  read + convert + collocate (catalogs.pairs.open_pair): {t_pair:.2f} s   goal <= {GOAL_S:.0f} s: "
          f"{'met' if t_pair <= GOAL_S else 'NOT met'}")
    print(f"  baseline, gpm-api bare read of the same variables:      {t_bare:.2f} s   ratio {t_pair / t_bare:.1f}x")
    print(f"  collocation alone (k-d tree, bounded search):           {t_col:.2f} s")
    print(f"  brute-force nearest search, extrapolated to all pixels: {t_brute:.0f} s   "
          f"(k-d tree {t_brute / t_col:.0f}x faster)")


if __name__ == "__main__":
    main()

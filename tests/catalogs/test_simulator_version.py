"""The simulator's version strings follow its output.

The climatology cube and the model cards identify simulated data by the hand-bumped
``catalogs.simulator.PRODUCT_VERSION`` (Tb, truth and reference) and ``TRUTH_VERSION`` (truth and
reference alone), while the training cache hashes the simulator's code. A change of output
without a bump would let one cube mix two simulators. These tests simulate a fixed set of orbit
cuts and compare a fingerprint of the output with the one recorded for the current version in
``catalogs/simulator/output_fingerprints.json``.

The fingerprint of each array (per channel for ``Tc``): the fraction of NaN and of zero values,
mean, std, min, max, the 1/50/99 % quantiles, and four fixed projections
``Σ w_k(i) x_i / ||w_k||`` with quasi-random weights ``w_k(i) = cos(2π frac(i α_k))`` (a change
of a few pixels moves them although it hardly moves the mean). Numbers are compared with a
stated tolerance per quantity (:data:`TOLERANCE`, in the variable's units: 1e-3 K for Tb,
1e-4 mm h-1 for rain rates; three times that for the projections), so float noise across numpy
builds or CPUs (the float32 arithmetic of the forward model: 1e-4 K noise on every Tb passes,
tested) does not trip it, while a change of the simulator does: a whole channel moving by
1e-3 K, or one pixel by ≈ 2 K. The geometry is computed in float64: a jitter of it that moves
pixels across cells of the land mask would trip it, as it should (their surface class changes). Counts of surface
types and quality flags may move by 1e-4 of the pixels (a pixel at a classification threshold).

After a deliberate change of the simulator's output: bump ``PRODUCT_VERSION`` (and
``TRUTH_VERSION`` to the same string if the truth or the reference changed) in
``catalogs/simulator/__init__.py``, then record the new fingerprints with
``python tests/catalogs/test_simulator_version.py --record`` (it only adds entries for versions not yet
recorded; it never overwrites the record of an existing version).
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script (--record)
    sys.path.insert(0, str(ROOT))

RECORD = ROOT / "catalogs" / "simulator" / "output_fingerprints.json"
#: the fixed cuts: (orbit, source, n_scans); world seed 0 (the cube's). 800 scans from the orbit
#: start reach from 69°S to 67°N: ocean, land, coast, sea ice and snow, light rain to ≈ 60 mm/h
#: convection, Tb from ≈ 80 K (ice scattering) up. Orbit 2000 is July 2014, 150000 July 2040
#: (≈ 1 K warmer), and orbit 10867 of the simulated source (a +4 K "model run"). Orbit 2013 crosses
#: the antimeridian in the tropics within its first 800 scans, where the warm pool reaches across 180°
#: (the sim-5 seam fix; the other cuts do not see it).
CASES = ((2000, "observed", 800), (150000, "observed", 800), (10867, "simulated", 800), (2013, "observed", 800))
WORLD_SEED = 0
#: per-value tolerance of each variable, in its units
TOLERANCE = {"Tc": 1e-3, "surface_precip_truth": 1e-4, "surface_precip": 1e-4, "water_vapour": 1e-3,
             "lat": 1e-5, "lon": 1e-5}
#: the variables whose change needs a TRUTH_VERSION bump (the cube's truth and reference: the
#: rates, and where (region, surface, month) they are counted)
TRUTH_VARS = ("surface_precip_truth", "surface_precip", "lat", "lon", "surface_type", "time", "gmst_anomaly_K")
STATS = ("nan_frac", "zero_frac", "mean", "std", "min", "max", "q01", "q50", "q99", "proj0", "proj1", "proj2", "proj3")
_ALPHA = tuple(math.sqrt(p) % 1.0 for p in (2, 3, 5, 7))
COUNT_TOLERANCE = 1e-4  # of the pixels, for surface-type and quality-flag counts


def _array_fingerprint(x: np.ndarray) -> list[float]:
    x = np.asarray(x, dtype=np.float64).ravel()
    ok = np.isfinite(x)
    v = x[ok]
    n = max(x.size, 1)
    if v.size:
        q01, q50, q99 = np.quantile(v, [0.01, 0.5, 0.99])
        stats = [float(v.mean()), float(v.std()), float(v.min()), float(v.max()), float(q01), float(q50), float(q99)]
    else:
        stats = [0.0] * 7
    x0 = np.where(ok, x, 0.0)
    i = np.arange(1, x.size + 1, dtype=np.float64)
    proj = []
    for a in _ALPHA:
        w = np.cos(2 * np.pi * np.mod(i * a, 1.0))
        proj.append(float(w @ x0 / np.sqrt(w @ w)))
    return [float(1 - ok.sum() / n), float(np.sum(v == 0) / n), *stats, *proj]


def _tolerances(name: str) -> list[float]:
    tau = TOLERANCE[name.split("[")[0]]
    return [1e-9, COUNT_TOLERANCE] + [tau] * 7 + [3 * tau] * 4


def fingerprint(orbit: int, source: str, n_scans: int) -> dict:
    """The fingerprint of one cut: {field: numbers or string}."""
    from catalogs.simulator import simulate_orbit

    ds = simulate_orbit(orbit, world_seed=WORLD_SEED, source=source, n_scans=n_scans)
    out: dict = {}
    for label in ds["pmw_frequency"].values:
        out[f"Tc[{label}]"] = _array_fingerprint(ds["Tc"].sel(pmw_frequency=label).values)
    for v in ("surface_precip_truth", "surface_precip", "water_vapour", "lat", "lon"):
        out[v] = _array_fingerprint(ds[v].values)
    for v in ("surface_type", "quality_flag"):
        vals, counts = np.unique(ds[v].values, return_counts=True)
        out[v] = {str(int(a)): int(c) for a, c in zip(vals, counts)}
    t = ds["time"].values
    out["time"] = [str(t[0]), str(t[-1]), int(t.size)]
    for a in ("gmst_anomaly_K", "climate_offset_K", "scaling_mean_pct_per_K", "scaling_extreme_pct_per_K",
              "scaling_vapour_pct_per_K", "reference_min_rate_mm_h", "ice_scattering_scale"):
        if a in ds.attrs:
            out[a] = float(ds.attrs[a])
    if "tb_offset_K" in ds.attrs:
        out["tb_offset_K"] = [float(x) for x in np.atleast_1d(ds.attrs["tb_offset_K"])]
    return out


def case_key(orbit: int, source: str, n_scans: int) -> str:
    return f"orbit={orbit} source={source} n_scans={n_scans} world_seed={WORLD_SEED}"


def truth_part(fp: dict) -> dict:
    return {k: v for k, v in fp.items() if k in TRUTH_VARS}


def differences(recorded: dict, now: dict) -> list[str]:
    """What differs beyond the tolerances, one line each."""
    out = []
    for k in sorted(set(recorded) | set(now)):
        a, b = recorded.get(k), now.get(k)
        if a is None or b is None:
            out.append(f"{k}: {'new' if a is None else 'gone'}")
        elif k in ("surface_type", "quality_flag"):
            n = sum(b.values())
            for c in sorted(set(a) | set(b)):
                if abs(a.get(c, 0) - b.get(c, 0)) > COUNT_TOLERANCE * n:
                    out.append(f"{k}={c}: {b.get(c, 0)} pixels, recorded {a.get(c, 0)}")
        elif k == "time":
            if a != b:
                out.append(f"time: {b}, recorded {a}")
        elif isinstance(a, list) and k.split("[")[0] in TOLERANCE:
            for name, x, y, tol in zip(STATS, a, b, _tolerances(k)):
                if not abs(x - y) <= tol:
                    out.append(f"{k} {name}: {y:.6g}, recorded {x:.6g} (tolerance {tol:g})")
        else:
            xa, xb = np.atleast_1d(np.asarray(a, float)), np.atleast_1d(np.asarray(b, float))
            if xa.shape != xb.shape or not np.allclose(xa, xb, rtol=1e-9, atol=1e-12):
                out.append(f"{k}: {b}, recorded {a}")
    return out


def _round(fp: dict) -> dict:
    """Numbers kept to a hundredth of their tolerance (a small, readable record)."""
    out = {}
    for k, v in fp.items():
        if isinstance(v, list) and k.split("[")[0] in TOLERANCE:
            out[k] = [round(x, max(0, -math.floor(math.log10(t / 100)))) for x, t in zip(v, _tolerances(k))]
        else:
            out[k] = v
    return out


def current() -> dict:
    return {case_key(*c): _round(fingerprint(*c)) for c in CASES}


def load_record() -> dict:
    return json.loads(RECORD.read_text()) if RECORD.exists() else {"product": {}, "truth": {}}


def _bump_message(kind: str, version: str, lines: list[str]) -> str:
    const = "PRODUCT_VERSION" if kind == "product" else "TRUTH_VERSION"
    extra = ("" if kind == "product" else
             " (a change of the truth or the reference: set TRUTH_VERSION to the new PRODUCT_VERSION and bump that too)")
    return (f"the simulator's output changed but {const} is still {version!r}{extra}. Bump {const} in "
            f"catalogs/simulator/__init__.py, then record the new fingerprint: python tests/catalogs/test_simulator_version.py "
            f"--record. What changed (first {min(len(lines), 12)} of {len(lines)}):\n  " + "\n  ".join(lines[:12]))


# ------------------------------------------------------------------ the tests
@pytest.fixture(scope="module")
def now():
    return current()


def test_product_output_matches_the_fingerprint_recorded_for_product_version(now):
    from catalogs.simulator import PRODUCT_VERSION

    rec = load_record()["product"].get(PRODUCT_VERSION)
    assert rec is not None, (f"no output fingerprint recorded for PRODUCT_VERSION {PRODUCT_VERSION!r}: run python "
                             f"tests/catalogs/test_simulator_version.py --record")
    lines = [f"[{c}] {d}" for c in now for d in differences(rec.get(c, {}), now[c])]
    assert not lines, _bump_message("product", PRODUCT_VERSION, lines)


def test_truth_and_reference_match_the_fingerprint_recorded_for_truth_version(now):
    from catalogs.simulator import TRUTH_VERSION

    rec = load_record()["truth"].get(TRUTH_VERSION)
    assert rec is not None, (f"no truth fingerprint recorded for TRUTH_VERSION {TRUTH_VERSION!r}: run python "
                             f"tests/catalogs/test_simulator_version.py --record")
    observed = {c: truth_part(fp) for c, fp in now.items() if "source=observed" in c}
    lines = [f"[{c}] {d}" for c in observed for d in differences(rec.get(c, {}), observed[c])]
    assert not lines, _bump_message("truth", TRUTH_VERSION, lines)


def test_fingerprint_sees_a_change_of_one_pixel_and_ignores_float_noise():
    """The comparison is neither blind nor brittle: a 3 K change of one Tb pixel of 176 800, or a
    2e-3 K change of a whole channel, is a difference; noise at 1/10 of the tolerance is not."""
    rng = np.random.default_rng(0)
    tb = 200 + 60 * rng.random((800, 221))
    base = {"Tc[89.0V]": _array_fingerprint(tb)}
    noisy = tb + rng.uniform(-1e-4, 1e-4, tb.shape)
    assert differences(base, {"Tc[89.0V]": _array_fingerprint(noisy)}) == []
    one = tb.copy()
    one[400, 110] += 3.0
    assert differences(base, {"Tc[89.0V]": _array_fingerprint(one)})
    assert differences(base, {"Tc[89.0V]": _array_fingerprint(tb + 2e-3)})


def record() -> int:
    """Add the fingerprints of the current versions to the record (never overwrite one)."""
    from catalogs.simulator import PRODUCT_VERSION, TRUTH_VERSION

    rec = load_record()
    now = current()
    observed = {c: truth_part(fp) for c, fp in now.items() if "source=observed" in c}
    status = 0
    for kind, version, fp in (("product", PRODUCT_VERSION, now), ("truth", TRUTH_VERSION, observed)):
        have = rec.setdefault(kind, {}).get(version)
        if have is None:
            rec[kind][version] = fp
            print(f"recorded the {kind} fingerprint of {version}")
            continue
        lines = [f"[{c}] {d}" for c in fp for d in differences(have.get(c, {}), fp[c])]
        if lines:
            print(_bump_message(kind, version, lines), file=sys.stderr)
            status = 1
        else:
            print(f"{kind} {version}: the recorded fingerprint matches")
    if status == 0:
        rec["about"] = ("fingerprints of catalogs.simulator's output on fixed orbit cuts, per PRODUCT_VERSION "
                        "(every output) and TRUTH_VERSION (truth, reference, geometry, surface types); written and "
                        "checked by tests/catalogs/test_simulator_version.py")
        text = json.dumps(rec, indent=1, sort_keys=True)
        text = re.sub(r"\[[^\[\]{}]*\]", lambda m: " ".join(m.group(0).split()), text)  # a list on one line
        RECORD.write_text(text + "\n")
    return status


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python tests/catalogs/test_simulator_version.py --record")
    sys.exit(record())

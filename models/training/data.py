"""The cached scene sets of training and scoring: orbits of a split drawn over its period,
simulated (``catalogs.simulator``), cut into scenes and stored once as zarr under
``<data_root>/training/<key>/<split>.zarr`` (atomic, with a completion marker); the key hashes the
data section and the simulator's version and code, so models trained on the same data share it."""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import xarray as xr

from catalogs.config import get_roots
from catalogs.store import is_complete, open_dataset, write_dataset
from models.base import ModelError
from models.config import data_config, split_scene_scans
from models.training.common import Progress, TrainingCancelled
from catalogs.simulator.geometry import orbit_at_time
from catalogs.simulator import simulate_orbit

SPLITS = ("train", "validation", "test", "ood")


# -- orbits and scenes ----------------------------------------------------------------------
def _orbit_range(start: str, end: str) -> tuple[int, int]:
    a = int(orbit_at_time(np.datetime64(str(start))))
    b = int(orbit_at_time(np.datetime64(str(end))))
    return a, b


def split_orbits(data_cfg: dict, split: str) -> list[int]:
    """The orbits drawn for ``split``: ``orbits`` numbers drawn without replacement, evenly
    spread over the split's period (one per stratum, random inside it; deterministic)."""
    spec = data_cfg[split]
    a, b = _orbit_range(spec["start"], spec["end"])
    n = int(spec["orbits"])
    rng = np.random.default_rng([data_config(data_cfg).seed, SPLITS.index(split)])
    edges = np.linspace(a, b + 1, n + 1)
    return [int(rng.integers(int(lo), max(int(lo) + 1, int(hi)))) for lo, hi in zip(edges[:-1], edges[1:])]


@functools.lru_cache(maxsize=1)
def simulator_fingerprint() -> dict:
    """The simulator's product version, a hash of its source files and the git commit, taken
    once per process (the code a process runs is the code it imported first), so all sets of a
    run share one key even if someone edits the simulator meanwhile."""
    try:
        from catalogs import simulator
        from catalogs.simulator import PRODUCT_VERSION as version

        folder = Path(simulator.__file__).parent
        h = hashlib.sha256()
        for f in sorted(folder.glob("*.py")):
            h.update(f.name.encode() + f.read_bytes())
        code = h.hexdigest()[:16]
    except Exception:  # pragma: no cover - simulator missing
        return {"version": "unknown", "code_sha256": "unknown", "git": "unknown"}
    git = "unknown"
    try:
        root = folder.parents[1]
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", str(folder)],
                               capture_output=True, text=True, timeout=10)
        if rev.returncode == 0:
            git = rev.stdout.strip() + (" (simulator modified)" if dirty.stdout.strip() else "")
    except Exception:  # pragma: no cover - git missing
        pass
    return {"version": version, "code_sha256": code, "git": git}


def data_key(data_cfg: dict) -> str:
    """Cache key of a scene set: the data config plus the simulator's version *and source code*
    (a simulator change without a version bump still invalidates the cache)."""
    fp = simulator_fingerprint()
    blob = json.dumps({"data": data_cfg, "simulator": fp["version"], "simulator_code": fp["code_sha256"], "format": 1},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _simulate(orbit: int, data_cfg: dict, n_scans: int | None) -> xr.Dataset:
    d = data_config(data_cfg)
    kw = {}
    if d.climate_offset_K is not None:
        kw["climate_offset_K"] = float(d.climate_offset_K)
    if d.warming_K is not None:
        kw["warming_K"] = float(d.warming_K)
    if d.world is not None:
        kw["world"] = d.world
    return simulate_orbit(int(orbit), world_seed=d.world_seed, source=d.source, n_scans=n_scans, **kw)


def build_training_set(
    config: dict,
    split: str = "train",
    *,
    swath_fn: Callable[[int, int | None], xr.Dataset] | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """Build (once) and return the cached scene set of ``split`` for ``config``'s data section.

    ``swath_fn(orbit, n_scans)`` returns a canonical swath; default: the simulator."""
    data_cfg = config["data"]
    if split not in data_cfg:
        raise ModelError(f"config has no data split {split!r}")
    spec = data_cfg[split]
    path = get_roots().data_root / "training" / data_key(data_cfg) / f"{split}.zarr"
    if is_complete(path):
        if progress:
            progress(1, 1, f"{split} set cached at {path}")
        return path
    orbits = split_orbits(data_cfg, split)
    d = data_config(data_cfg)
    scene = split_scene_scans(d, split)
    per_orbit = getattr(d, split).scenes_per_orbit
    n_orbit_scans = d.orbit_scans  # usable scans of an orbit
    tcs, refs, sts, meta = [], [], [], []
    for i, orbit in enumerate(orbits):
        if cancel is not None and cancel.is_set():
            raise TrainingCancelled("building the training set was cancelled")
        rng = np.random.default_rng([d.seed, 7, orbit])
        slots = max(1, n_orbit_scans // scene)
        picks = np.sort(rng.choice(slots, size=min(per_orbit, slots), replace=False))
        starts = [int(p * scene + rng.integers(0, max(1, n_orbit_scans // slots - scene + 1))) for p in picks]
        need = max(starts) + scene
        sw = (swath_fn or (lambda o, n: _simulate(o, data_cfg, n)))(orbit, need)
        if sw.sizes["along_track"] < need:
            starts = [s for s in starts if s + scene <= sw.sizes["along_track"]] or [0]
        tc = sw["Tc"].transpose("along_track", "cross_track", "pmw_frequency").values
        ref = sw["surface_precip"].values if "surface_precip" in sw else np.full(tc.shape[:2], np.nan, np.float32)
        st = sw["surface_type"].values
        for s in starts:
            if s + scene > tc.shape[0]:
                continue
            tcs.append(tc[s:s + scene].astype(np.float16))
            refs.append(ref[s:s + scene].astype(np.float32))
            sts.append(st[s:s + scene].astype(np.int8))
            meta.append((orbit, s))
        if progress:
            progress(i + 1, len(orbits), f"simulating {split} orbits")
    if not tcs:
        raise ModelError(f"no scenes for split {split!r}")
    ds = xr.Dataset(
        {
            "Tc": (("scene", "along_track", "cross_track", "pmw_frequency"), np.stack(tcs), {"units": "K"}),
            "surface_precip": (("scene", "along_track", "cross_track"), np.stack(refs), {"units": "mm h-1"}),
            "surface_type": (("scene", "along_track", "cross_track"), np.stack(sts)),
            "orbit": (("scene",), np.array([m[0] for m in meta], np.int64)),
            "start_scan": (("scene",), np.array([m[1] for m in meta], np.int64)),
        },
        attrs={"split": split, "period": f"{spec['start']}..{spec['end']}", "orbits": len(orbits),
               "data_config": json.dumps(data_cfg, sort_keys=True, default=str)},
    ).chunk({"scene": 16})
    write_dataset(ds, path, meta={"split": split, "scenes": len(meta), "key": data_key(data_cfg)})
    return path


def load_scenes(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, A, C, 13) float16 Tb and (N, A, C) float32 reference of a cached scene set."""
    ds = open_dataset(path)
    return ds["Tc"].values, ds["surface_precip"].values

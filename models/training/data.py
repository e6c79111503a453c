"""The cached scene sets of training and scoring: orbits of a split drawn over its period,
simulated (``catalogs.simulator``), cut into scenes and stored once as zarr under
``<data_root>/training/<key>/<split>.zarr`` (atomic, with a completion marker); the key hashes the
data section and the simulator's version and code, so models trained on the same data share it.

On a PPS archive (``data.archive``, :func:`archive_root`) the orbits of a split are those of the
archive's index (:func:`catalogs.pairs.archive_index`) whose 1C-GMI granule starts in the split's
period and months (:func:`archive_split_orbits`), each opened as a 1C-GMI x 2B-CMB pair
(:func:`catalogs.pairs.open_pair`: the CMB surface precipitation on the GMI pixels it covers, NaN
elsewhere); scenes are cut inside the longest run of scans that have the reference. The cache key
then hashes the identity (name, size, modification time) of every granule the splits can draw from
and the reader's code, instead of the simulator's (:func:`archive_fingerprint`): a changed archive
builds new sets. The held-out splits may share no orbit with the training split (checked)."""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from catalogs import gpm, pairs
from catalogs.catalog import CatalogError, open_catalog, reader as catalog_reader
from catalogs.config import PathOutsideRoots, get_roots
from catalogs.gpm import GranuleError
from catalogs.store import is_complete, open_dataset, write_dataset
from models.base import ModelError
from models.config import data_config, split_months, split_scene_scans
from models.inference import invalid_tb_mask
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


# -- archives ---------------------------------------------------------------------------------
def archive_root(data_cfg: dict) -> Path:
    """The folder of the archive a data section names (``data.archive.granule_dir``, or the
    folder of entry ``entry`` of the catalogue ``catalog``), confined to the configured roots."""
    a = data_config(data_cfg).archive
    if a is None:
        raise ModelError("the data section names no archive (data.archive)")
    roots = get_roots()
    field_ = "data.archive.granule_dir" if a.granule_dir else "data.archive.catalog"
    try:
        if a.granule_dir:
            folder = roots.confine(a.granule_dir)
        else:
            cat = open_catalog(roots.confine(a.catalog))
            kwargs = getattr(catalog_reader(cat, a.entry), "kwargs", None) or {}
            name = kwargs.get("granule_dir") or kwargs.get("folder")
            if not isinstance(name, str) or not name.strip() or "{" in name:
                raise ModelError(f"{field_}: entry {a.entry!r} of catalogue {a.catalog} names no granule folder "
                                 f"(got {name!r:.60}); set the catalogue's granule_dir")
            field_ = f"{field_} (entry {a.entry!r})"
            folder = roots.confine(name)
    except PathOutsideRoots as e:
        raise ModelError(f"{field_}: {e}") from None
    except (CatalogError, ValueError) as e:
        raise ModelError(f"{field_}: {e}") from None
    if not folder.is_dir():
        raise ModelError(f"{field_}: {folder} is not a folder")
    return folder


def _index(data_cfg: dict) -> tuple[Path, pd.DataFrame]:
    root = archive_root(data_cfg)
    try:
        return root, pairs.archive_index(root)
    except GranuleError as e:
        raise ModelError(f"archive {root}: {e}") from None


def _candidates(index: pd.DataFrame, data_cfg: dict, split: str) -> pd.DataFrame:
    """The orbits of ``index`` with a 1C-GMI granule starting in the split's period (both days
    included) and months."""
    spec = getattr(data_config(data_cfg), split)
    t0 = pd.Timestamp(str(spec.start)[:10])
    t1 = pd.Timestamp(str(spec.end)[:10]) + pd.Timedelta(days=1)
    rows = index[(index["1C-GMI"] != "") & (index["start"] >= t0) & (index["start"] < t1)]
    return rows[rows["start"].dt.month.isin(split_months(spec))].reset_index(drop=True)


def _describe(data_cfg: dict, split: str) -> str:
    spec = getattr(data_config(data_cfg), split)
    months = split_months(spec)
    return f"{spec.start}..{spec.end}" + ("" if len(months) == 12 else f", months {months}")


def check_disjoint(data_cfg: dict, index: pd.DataFrame | None = None) -> None:
    """Refuse a data section whose held-out splits (validation, test, ood) can draw an orbit the
    training split can draw (held-out months must not leak into training)."""
    if index is None:
        _, index = _index(data_cfg)
    train = _candidates(index, data_cfg, "train")
    for split in SPLITS[1:]:
        if data_cfg.get(split) is None:
            continue
        both = train[train["orbit"].isin(_candidates(index, data_cfg, split)["orbit"])]
        if len(both):
            first = both.iloc[0]
            raise ModelError(
                f"data.{split} ({_describe(data_cfg, split)}) and data.train ({_describe(data_cfg, 'train')}) share "
                f"{len(both)} archive orbit(s), e.g. orbit {first['orbit']} ({Path(first['1C-GMI']).name}): exclude "
                f"the held-out months from train (data.train.exclude_months) or give disjoint periods")


def archive_split_orbits(data_cfg: dict, split: str, index: pd.DataFrame | None = None,
                         root: Path | None = None) -> pd.DataFrame:
    """The archive orbits of ``split`` (rows of :func:`catalogs.pairs.archive_index`): all the
    candidates (:func:`_candidates`) if there are at most ``orbits``, else ``orbits`` of them
    spread over the list (one per stratum, random inside it; deterministic). Refuses a split
    with no 1C-GMI granule and a drawn orbit without its 2B-CMB granule, naming the files."""
    if index is None:
        root, index = _index(data_cfg)
    spec = getattr(data_config(data_cfg), split)
    rows = _candidates(index, data_cfg, split)
    where = f"archive {root}" if root is not None else "the archive"
    if rows.empty:
        raise ModelError(f"{where}: no 1C-GMI granule for data.{split} ({_describe(data_cfg, split)})")
    n = int(spec.orbits)
    if len(rows) > n:
        rng = np.random.default_rng([data_config(data_cfg).seed, SPLITS.index(split), 16])
        edges = np.linspace(0, len(rows), n + 1).astype(int)
        rows = rows.iloc[[int(rng.integers(lo, max(lo + 1, hi))) for lo, hi in zip(edges[:-1], edges[1:])]]
    lacking = rows[rows["2B-CMB"] == ""]
    if len(lacking):
        names = ", ".join(Path(p).name for p in lacking["1C-GMI"][:5])
        raise ModelError(f"{where}: no 2B-CMB granule (the reference) for {len(lacking)} 1C-GMI granule(s) of "
                         f"data.{split}: {names}")
    return rows.reset_index(drop=True)


def check_archive(data_cfg: dict) -> None:
    """Check an archive data section before anything is built: the folder, every split's
    orbits (a 1C-GMI granule in its period, a 2B-CMB granule for each drawn orbit) and no orbit
    shared between the training and a held-out split; a :class:`ModelError` naming the files."""
    root, index = _index(data_cfg)
    check_disjoint(data_cfg, index)
    for split in SPLITS:
        if data_cfg.get(split) is not None:
            archive_split_orbits(data_cfg, split, index, root)


#: the modules whose code makes an archive scene set (reading, regridding, collocation)
_READER_MODULES = (gpm, pairs)


@functools.lru_cache(maxsize=1)
def _reader_code() -> str:
    h = hashlib.sha256()
    for m in _READER_MODULES:
        h.update(Path(m.__file__).read_bytes())
    return h.hexdigest()[:16]


def archive_fingerprint(data_cfg: dict) -> dict:
    """What identifies the data of an archive section: its folder, the name, size and
    modification time of every granule (1C-GMI, 2B-CMB, 2A-GMI) of the orbits the splits can draw
    from, and the reader's code."""
    root, index = _index(data_cfg)
    orbits = set()
    for split in SPLITS:
        if data_cfg.get(split) is not None:
            orbits.update(_candidates(index, data_cfg, split)["orbit"].tolist())
    files = []
    for rec in index[index["orbit"].isin(orbits)].to_dict("records"):
        for p in (rec["1C-GMI"], rec["2B-CMB"], rec["2A-GMI"]):
            if p:
                st = Path(p).stat()
                files.append((Path(p).relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    h = hashlib.sha256(json.dumps(sorted(files)).encode()).hexdigest()[:16]
    return {"root": str(root), "granules": len(files), "granules_sha256": h, "reader_code": _reader_code()}


def data_key(data_cfg: dict) -> str:
    """Cache key of a scene set: the data config plus the simulator's version *and source code*
    (a simulator change without a version bump still invalidates the cache); on an archive the
    data config plus :func:`archive_fingerprint`."""
    if data_cfg.get("archive") is not None:
        blob = json.dumps({"data": data_cfg, "archive": archive_fingerprint(data_cfg), "format": 1},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
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


def _starts(rng: np.random.Generator, n_scans: int, scene: int, per_orbit: int) -> list[int]:
    """Starts of ``per_orbit`` scenes of ``scene`` scans among ``n_scans``: distinct slots, a
    random offset inside each (deterministic for ``rng``)."""
    slots = max(1, n_scans // scene)
    picks = np.sort(rng.choice(slots, size=min(per_orbit, slots), replace=False))
    return [int(p * scene + rng.integers(0, max(1, n_scans // slots - scene + 1))) for p in picks]


def reference_span(ref: np.ndarray) -> tuple[int, int]:
    """[lo, hi): the longest run of scans (rows of ``ref``) with a finite reference somewhere."""
    has = np.isfinite(ref).any(axis=1).astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], has, [0]])))
    if edges.size == 0:
        return 0, 0
    runs = edges.reshape(-1, 2)
    k = int(np.argmax(runs[:, 1] - runs[:, 0]))
    return int(runs[k, 0]), int(runs[k, 1])


def _open_archive_orbit(row: dict) -> xr.Dataset:
    return pairs.open_pair(row["1C-GMI"], row["2B-CMB"])


def _orbit_scenes(orbit: int, fn, d, scene: int, per_orbit: int, archive: bool):
    """One orbit's Tb (A, C, 13), reference (A, C), surface type and the first scans of its
    scenes (``_starts``, seeded by the orbit); on an archive, scenes lie inside the longest run of
    scans with the reference, and an orbit whose run is shorter than a scene gives the reason
    (a str) instead."""
    rng = np.random.default_rng([d.seed, 7, orbit])
    if archive:
        sw = fn(orbit, None)
        tc = sw["Tc"].transpose("along_track", "cross_track", "pmw_frequency").values
        ref = sw["surface_precip"].values.astype(np.float32).copy()
        ref[invalid_tb_mask(tc)] = np.nan
        lo, hi = reference_span(ref)
        if hi - lo < scene:
            return f"{hi - lo} scans with the reference"
        starts = [lo + s for s in _starts(rng, hi - lo, scene, per_orbit)]
    else:
        starts = _starts(rng, d.orbit_scans, scene, per_orbit)  # within the usable scans of an orbit
        need = max(starts) + scene
        sw = fn(orbit, need)
        if sw.sizes["along_track"] < need:
            starts = [s for s in starts if s + scene <= sw.sizes["along_track"]] or [0]
        tc = sw["Tc"].transpose("along_track", "cross_track", "pmw_frequency").values
        ref = sw["surface_precip"].values if "surface_precip" in sw else np.full(tc.shape[:2], np.nan, np.float32)
    return tc, ref, sw["surface_type"].values, starts


def build_training_set(
    config: dict,
    split: str = "train",
    *,
    swath_fn: Callable[[int, int | None], xr.Dataset] | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """Build (once) and return the cached scene set of ``split`` for ``config``'s data section.

    ``swath_fn(orbit, n_scans)`` returns a canonical swath; default: the simulator, or on an
    archive the orbit's 1C-GMI x 2B-CMB pair (``n_scans`` None: the whole granule). On an
    archive, scenes lie inside the longest run of scans with the reference, and the reference is
    NaN on pixels without valid Tb (nothing to learn from or to score)."""
    data_cfg = config["data"]
    if split not in data_cfg:
        raise ModelError(f"config has no data split {split!r}")
    spec = data_cfg[split]
    d = data_config(data_cfg)
    archive = d.archive is not None
    rows = None
    if archive:
        root, index = _index(data_cfg)
        check_disjoint(data_cfg, index)
        rows = archive_split_orbits(data_cfg, split, index, root)
    path = get_roots().data_root / "training" / data_key(data_cfg) / f"{split}.zarr"
    if is_complete(path):
        if progress:
            progress(1, 1, f"{split} set cached at {path}")
        return path
    scene = split_scene_scans(d, split)
    per_orbit = getattr(d, split).scenes_per_orbit
    if archive:
        orbits = [int(o) for o in rows["orbit"]]
        by_orbit = {int(r["orbit"]): r for r in rows.to_dict("records")}
        read = swath_fn or (lambda o, n: _open_archive_orbit(by_orbit[o]))

        def fn(o, n):
            try:
                return read(o, n)
            except (GranuleError, OSError) as e:
                raise ModelError(f"archive {root}, orbit {o} of data.{split}: {e}") from None
    else:
        orbits = split_orbits(data_cfg, split)
        fn = swath_fn or (lambda o, n: _simulate(o, data_cfg, n))
    tcs, refs, sts, meta, short = [], [], [], [], []
    for i, orbit in enumerate(orbits):
        if cancel is not None and cancel.is_set():
            raise TrainingCancelled("building the training set was cancelled")
        cut = _orbit_scenes(orbit, fn, d, scene, per_orbit, archive)
        if isinstance(cut, str):  # an archive orbit with too short a run of the reference
            name = Path(by_orbit[orbit]["1C-GMI"]).name if orbit in by_orbit else f"orbit {orbit}"
            short.append(f"{name} ({cut})")
            continue
        tc, ref, st, starts = cut
        for s in starts:
            if s + scene > tc.shape[0]:
                continue
            tcs.append(tc[s:s + scene].astype(np.float16))
            refs.append(ref[s:s + scene].astype(np.float32))
            sts.append(st[s:s + scene].astype(np.int8))
            meta.append((orbit, s))
        if progress:
            progress(i + 1, len(orbits), f"{'reading' if archive else 'simulating'} {split} orbits")
    if not tcs:
        if archive:
            raise ModelError(f"archive {root}: no scene of {scene} scans with the {d.reference} reference in "
                             f"data.{split}: " + "; ".join(short[:5]))
        raise ModelError(f"no scenes for split {split!r}")
    attrs = {"split": split, "period": f"{spec['start']}..{spec['end']}", "orbits": len(orbits),
             "data_config": json.dumps(data_cfg, sort_keys=True, default=str)}
    if archive:
        attrs.update({"source": f"archive {root}", "reference": d.reference,
                      "months": json.dumps(split_months(getattr(d, split))),
                      "granules": json.dumps({str(o): Path(by_orbit[o]["1C-GMI"]).name
                                              for o in orbits if o in by_orbit}),
                      "orbits_without_scene": len(short)})
    ds = xr.Dataset(
        {
            "Tc": (("scene", "along_track", "cross_track", "pmw_frequency"), np.stack(tcs), {"units": "K"}),
            "surface_precip": (("scene", "along_track", "cross_track"), np.stack(refs), {"units": "mm h-1"}),
            "surface_type": (("scene", "along_track", "cross_track"), np.stack(sts)),
            "orbit": (("scene",), np.array([m[0] for m in meta], np.int64)),
            "start_scan": (("scene",), np.array([m[1] for m in meta], np.int64)),
        },
        attrs=attrs,
    ).chunk({"scene": 16})
    write_dataset(ds, path, meta={"split": split, "scenes": len(meta), "key": data_key(data_cfg)})
    return path


def load_scenes(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, A, C, 13) float16 Tb and (N, A, C) float32 reference of a cached scene set."""
    ds = open_dataset(path)
    return ds["Tc"].values, ds["surface_precip"].values

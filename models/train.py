"""Training: cached scene sets from the simulator, the U-Net trainer and the Bayesian database.

Data
----
:func:`build_training_set` draws orbits of a split's period (train 2015-2019, validation 2020,
held-out test 2021, out-of-distribution e.g. 2055 in the shipped configs), simulates them
(``catalogs.simulator``), cuts scenes of ``scene_scans`` scans by the full 221-pixel width and
stores them once as a zarr under ``<data_root>/training/<key>/<split>.zarr`` (atomic, with a
completion marker); later runs reuse it. The key hashes the data section of the config, so
models trained on the same data share the cache.

U-Net
-----
The loop is :mod:`models.training` (one for every U-Net config; the research configs plug in
their loss, batch source and conditioning). The network sees the whole swath; the pinball loss counts only pixels where the reference
exists (the central radar strip), as in DRAIN. Seeds are fixed; the best validation epoch is
kept; after each epoch the full state (weights, optimiser, epoch, best score) is written in
safetensors under ``<out>/.train-state/`` so an interrupted run resumes where it stopped.
At the end the model is scored on the held-out year (and OOD years) with climatology -- and
any registered models named in ``compare_with`` -- on the same pixels, into the model card.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from catalogs.config import get_roots
from catalogs.store import is_complete, open_dataset, write_dataset
from models.base import ModelError, Retriever
from models.config import data_config, load_config, parse_config, resolve_inherit, split_scene_scans
from models.quantiles import QuantileDistribution
from models.registry import ModelCard, load_checkpoint, load_model, save_model, user_models_dir
from models.scoring import climatology_quantiles, score
from models.training.common import Progress, TrainingCancelled, log, optimizer_step, pad_cross, set_seed  # noqa: F401
from models.training.loop import build_net, train_unet
from models.training.state import load_state, save_checkpoint, save_state, state_dir

SPLITS = ("train", "validation", "test", "ood")


# -- orbits and scenes ----------------------------------------------------------------------
def _orbit_range(start: str, end: str) -> tuple[int, int]:
    from catalogs.simulator.geometry import orbit_at_time

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
        import subprocess

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
    from catalogs.simulator import simulate_orbit

    d = data_config(data_cfg)
    return simulate_orbit(int(orbit), world_seed=d.world_seed, source=d.source, n_scans=n_scans)


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


# -- helpers (moved to models.training; the old private names stay for existing imports) ----
_pad_cross = pad_cross
_set_seed = set_seed
_log = log
_state_dir, _save_state, _load_state = state_dir, save_state, load_state


def predict_scenes(retriever: Retriever, tc: np.ndarray, batch: int = 4, strip_only: np.ndarray | None = None,
                   gmst: np.ndarray | None = None) -> np.ndarray:
    """Quantiles (N, A, C, Q) for scenes ``tc`` (N, A, C, 13). Per-pixel models may be given a
    boolean column mask ``strip_only`` (C,) to skip columns nobody scores. ``gmst`` (N,): the
    scenes' GMST anomaly (K), passed to GMST-conditioned models (which require it)."""
    cond = bool(getattr(retriever, "gmst_conditioned", False))
    if cond and gmst is None:
        raise ModelError(f"model {retriever.name!r} is conditioned on the GMST anomaly: predict_scenes needs gmst "
                         "(one value per scene, e.g. models.conditioning.scene_gmst(path))")
    n, a, c, _ = tc.shape
    out = np.full((n, a, c, len(retriever.levels)), np.nan, np.float32)
    cols = np.arange(c) if (strip_only is None or retriever.overlap_margin) else np.flatnonzero(strip_only)
    with torch.inference_mode():
        for i in range(0, n, batch):
            x = torch.from_numpy(np.asarray(tc[i:i + batch][:, :, cols], np.float32)).permute(0, 3, 1, 2)
            from models.inference import invalid_tb_mask

            bad = invalid_tb_mask(np.asarray(tc[i:i + batch][:, :, cols], np.float32))
            x = _pad_cross(x, retriever.multiple)
            kw = {"gmst": np.asarray(gmst, np.float64)[i:i + batch]} if cond else {}
            y = retriever.predict_batch(x, **kw)[:, :, :a, :len(cols)].permute(0, 2, 3, 1).numpy()
            y = np.where(bad[..., None], np.nan, y)
            out[i:i + batch][:, :, cols] = y
    return out


def default_out(config: dict) -> Path:
    return user_models_dir() / config["name"]


# -- evaluation on held-out splits ---------------------------------------------------------------
def heldout_scores(config: dict, retrievers: dict[str, Retriever], train_ref: np.ndarray,
                   progress: Progress | None = None) -> dict:
    """Scores on the strip pixels of the held-out splits (``test``, ``ood``) for each retriever
    and for climatology (the training period's unconditional distribution)."""
    data_cfg = config["data"]
    levels = np.asarray(config["quantile_levels"], np.float64)
    clim = climatology_quantiles(train_ref, levels)
    results = {}
    for split in ("test", "ood"):
        if split not in data_cfg:
            continue
        path = build_training_set(config, split, progress=progress)
        tc, ref = load_scenes(path)
        strip = np.isfinite(ref)
        cols = strip.any(axis=(0, 1))
        spec = data_cfg[split]
        label = f"{split}_{str(spec['start'])[:4]}" + (f"-{str(spec['end'])[:4]}" if str(spec['end'])[:4] != str(spec['start'])[:4] else "")
        res = {"period": f"{spec['start']}..{spec['end']}", "orbits": int(spec["orbits"]),
               "pixels": int(strip.sum()),
               "checkpoints": {n: (r.sha256 or "")[:12] for n, r in retrievers.items()}}
        gmst = None
        if any(getattr(r, "gmst_conditioned", False) for r in retrievers.values()):
            from models.conditioning import scene_gmst

            gmst = scene_gmst(path)
        for name, r in retrievers.items():
            _log(progress, 0, 1, f"scoring {name} on {split}")
            q = predict_scenes(r, tc, strip_only=cols, gmst=gmst)
            res[name] = score(QuantileDistribution(q[strip], r.levels), ref[strip])
        res["climatology"] = score(QuantileDistribution(np.broadcast_to(clim, (int(strip.sum()), levels.size)), levels), ref[strip])
        results[label] = res
    return results


def _round(x):
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    if isinstance(x, float):
        return float(f"{x:.5g}")
    return x


# -- training entry point ----------------------------------------------------------------------
def train(config: dict | str | os.PathLike, progress: Progress | None = None,
          cancel: threading.Event | None = None, out: str | os.PathLike | None = None,
          command: str | None = None) -> ModelCard:
    """Train the model described by ``config`` (dict, YAML path or shipped config name), write
    ``model.safetensors`` + ``card.yaml`` into ``out`` (default ``<data_root>/models/<name>``)
    and return its card."""
    if not isinstance(config, dict):
        config = load_config(config)
    else:
        config = resolve_inherit(config)
    typed = parse_config(config)
    if typed.research:
        from models.research.trainer import train_research  # the research configs (issue 7)

        return train_research(config, progress=progress, cancel=cancel, out=out, command=command)
    torch.set_num_threads(typed.training.threads)
    out = Path(out) if out is not None else default_out(config)
    if command is None:
        command = " ".join(["raincheck", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("raincheck") else "models.train.train()"
    t0 = time.perf_counter()
    sets = {}
    for split in ("train", "validation"):
        sets[split] = build_training_set(config, split, progress=progress, cancel=cancel)
    if config["kind"] == "unet":
        card, retriever = _train_unet(config, sets, out, progress, cancel)
    elif config["kind"] == "bayes":
        card, retriever = _train_bayes(config, sets, out, progress)
    else:
        raise ModelError(f"unknown model kind {config['kind']!r} (expected 'unet' or 'bayes')")
    # held-out scores: this model, registered comparison models, climatology
    _, train_ref = load_scenes(sets["train"])
    retrievers = {config["name"]: retriever}
    for other in typed.compare_with or []:
        try:
            retrievers[other] = load_model(other)
        except ModelError as e:
            card.notes += f" compare_with {other!r} skipped: {e}."
    metrics = heldout_scores(config, retrievers, train_ref[np.isfinite(train_ref)], progress)
    card.metrics = _round(metrics)
    card.training["command"] = command
    card.training["wall_seconds"] = round(time.perf_counter() - t0, 1)
    card.training["device"] = "cpu"
    card.training["torch"] = torch.__version__
    card.save(out)
    return card


def _card(config: dict, out: Path, sets: dict, kind: str) -> ModelCard:
    data_cfg = config["data"]
    periods = {s: f"{data_cfg[s]['start']}..{data_cfg[s]['end']}" for s in SPLITS if s in data_cfg}
    return ModelCard(
        name=config["name"], kind=kind, config=config, checkpoint_sha256="",
        levels=[float(v) for v in config["quantile_levels"]],
        training={"source": f"catalogs.simulator source={data_config(data_cfg).source} "
                            f"world_seed={data_config(data_cfg).world_seed}",
                  "periods": periods,
                  "orbits": {s: int(data_cfg[s]["orbits"]) for s in SPLITS if s in data_cfg},
                  "data_key": data_key(data_cfg),
                  "simulator": simulator_fingerprint()},
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        path=str(out),
    )


# -- U-Net -------------------------------------------------------------------------------------
def _train_unet(config: dict, sets: dict, out: Path, progress, cancel):
    """The reference U-Net: :func:`models.training.train_unet` with its default plug-ins (pinball
    loss, every training scene once per epoch)."""
    from models.unet_retriever import UNetRetriever

    tc_tr, ref_tr = load_scenes(sets["train"])
    tc_va, ref_va = load_scenes(sets["validation"])
    net, _ = build_net(config, tc_tr)
    best_sd, info = train_unet(config, net, (tc_tr, ref_tr), (tc_va, ref_va), out, progress=progress, cancel=cancel)
    info.pop("loss")
    card = _card(config, out, sets, "unet")
    card.parameters = int(sum(p.numel() for p in net.parameters()))
    card.training.update(info)
    card = save_checkpoint(out, best_sd, card)
    return card, UNetRetriever(card, best_sd)


# -- Bayesian database -------------------------------------------------------------------------
def _strip_pixels(tc: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(ref)
    tb = tc[ok].astype(np.float32)
    r = ref[ok]
    good = np.isfinite(tb).all(1)
    return tb[good], r[good]


def _train_bayes(config: dict, sets: dict, out: Path, progress):
    from models.bayes import BayesRetriever, bayes_tensors, fit_pca

    typed = parse_config(config)
    bcfg = typed.bayes
    seed = typed.training.seed
    rng = np.random.default_rng(seed)
    tb, rain = _strip_pixels(*load_scenes(sets["train"]))
    n_db = min(bcfg.database_size, rain.size)
    pick = rng.choice(rain.size, n_db, replace=False)
    db_tb, db_rain = tb[pick], rain[pick]
    pca = fit_pca(db_tb.astype(np.float64), bcfg.components)
    card = _card(config, out, sets, "bayes")
    sigmas = [float(s) for s in bcfg.sigmas]
    tensors = bayes_tensors(db_tb, db_rain, pca, sigmas[0])
    card.checkpoint_sha256 = "0" * 64
    r = BayesRetriever(card, tensors)
    vtb, vrain = _strip_pixels(*load_scenes(sets["validation"]))
    nv = min(bcfg.validation_pixels, vrain.size)
    vp = rng.choice(vrain.size, nv, replace=False)
    crps = {}
    for i, s in enumerate(sigmas):
        q = r.quantiles(vtb[vp], sigma=s)
        crps[s] = float(np.nanmean(QuantileDistribution(q, r.levels).crps(vrain[vp])))
        _log(progress, i + 1, len(sigmas), f"sigma {s}: validation CRPS {crps[s]:.4f}")
    sigma = min(crps, key=crps.get)
    card.parameters = int(db_tb.size + db_rain.size)
    card.training.update({"database_size": int(n_db), "sigma": sigma,
                          "validation_crps_by_sigma": {str(k): v for k, v in crps.items()},
                          "train_pixels_available": int(rain.size)})
    tensors = bayes_tensors(db_tb, db_rain, pca, sigma)
    card = save_model(out, tensors, card)
    return card, BayesRetriever(card, load_checkpoint(card.weights_path))

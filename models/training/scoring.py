"""Scoring on the held-out splits (``test``, ``ood``) and the model card of a training run."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import torch

from catalogs.store import open_dataset
from models.base import ModelError, Retriever
from models.conditioning import scene_gmst
from models.quantiles import QuantileDistribution
from models.registry import ModelCard, user_models_dir
from models.scoring import climatology_quantiles, score
from models.config import data_config
from models.inference import invalid_tb_mask
from models.training.common import Progress, log as _log, pad_cross as _pad_cross
from models.training.data import (SPLITS, archive_root, archive_split_orbits, build_training_set, data_key,
                                  load_scenes, simulator_fingerprint)
from models.config import training_data


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
        if data_cfg.get("archive") is not None:  # the orbits found, the reference they are scored against
            res["orbits"] = int(open_dataset(path).attrs["orbits"])
            res["reference"] = data_config(data_cfg).reference
        gmst = None
        if any(getattr(r, "gmst_conditioned", False) for r in retrievers.values()):
            gmst = scene_gmst(path)
        for name, r in retrievers.items():
            _log(progress, 0, 1, f"scoring {name} on {split}")
            q = predict_scenes(r, tc, strip_only=cols, gmst=gmst)
            res[name] = score(QuantileDistribution(q[strip], r.levels), ref[strip])
        res["climatology"] = score(QuantileDistribution(np.broadcast_to(clim, (int(strip.sum()), levels.size)), levels), ref[strip])
        results[label] = res
    return results


def round_metrics(x):
    """Metrics rounded to 5 significant digits (for the model card)."""
    if isinstance(x, dict):
        return {k: round_metrics(v) for k, v in x.items()}
    if isinstance(x, float):
        return float(f"{x:.5g}")
    return x


def make_card(config: dict, out: Path, sets: dict, kind: str) -> ModelCard:
    """The card of a model trained on ``sets`` (provenance filled; weights and skill to come)."""
    data_cfg = config["data"]
    periods = {s: f"{data_cfg[s]['start']}..{data_cfg[s]['end']}" for s in SPLITS if s in data_cfg}
    trained_on = training_data_of(data_cfg)
    if trained_on["kind"] == "archive":
        source = f"archive {trained_on['archive_folder']} (1C-GMI x {trained_on['reference']})"
        orbits, provenance = trained_on["orbits"], {}
    else:
        source = f"catalogs.simulator source={data_config(data_cfg).source} world_seed={data_config(data_cfg).world_seed}"
        orbits, provenance = {s: int(data_cfg[s]["orbits"]) for s in SPLITS if s in data_cfg}, {
            "simulator": simulator_fingerprint()}
    return ModelCard(
        name=config["name"], kind=kind, config=config, checkpoint_sha256="",
        levels=[float(v) for v in config["quantile_levels"]],
        training={"source": source, "periods": periods, "orbits": orbits, "data_key": data_key(data_cfg),
                  **provenance},
        training_data=trained_on,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        path=str(out),
    )


def training_data_of(data_cfg: dict) -> dict:
    """The card's ``training_data`` (:func:`models.config.training_data`); on an archive with the
    folder it resolved to and the number of orbits each split drew (``orbits``; what the config
    asked for in ``orbits_requested``)."""
    out = training_data(data_cfg)
    if out["kind"] == "archive":
        out["archive_folder"] = str(archive_root(data_cfg))
        out["orbits_requested"] = out["orbits"]
        out["orbits"] = {s: len(archive_split_orbits(data_cfg, s)) for s in out["orbits_requested"]}
    return out

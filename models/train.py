"""Training: cached scene sets from the simulator, the U-Net trainer and the Bayesian database.

Data
----
:func:`build_training_set` (:mod:`models.training.data`) draws orbits of a split's period (train 2015-2019, validation 2020,
held-out test 2021, out-of-distribution e.g. 2055 in the shipped configs), simulates them
(``catalogs.simulator``), cuts scenes of ``scene_scans`` scans by the full 221-pixel width and
stores them once as a zarr under ``<data_root>/training/<key>/<split>.zarr`` (atomic, with a
completion marker); later runs reuse it. The key hashes the data section of the config, so
models trained on the same data share the cache.

On a PPS archive (``data.archive`` in the config, e.g. ``archive-tiny``) the orbits are the
archive's 1C-GMI granules of each split's period and months, paired with their 2B-CMB reference
(:mod:`models.training.data`); the archive is checked and every split built before training, so
a bad granule stops the run before anything is written. The model card's ``training_data`` says
what a model was trained on (:func:`models.registry.training_domain`: synthetic or archive).

U-Net
-----
The loop is :mod:`models.training` (one for every U-Net config; the research configs plug in
their loss, batch source and conditioning). The network sees the whole swath; the pinball loss
counts only pixels where the reference exists (the central radar strip), as in DRAIN. Seeds are fixed; the best validation epoch is
kept; after each epoch the full state (weights, optimiser, epoch, best score) is written in
safetensors under ``<out>/.train-state/`` so an interrupted run resumes where it stopped.
At the end the model is scored on the held-out year (and OOD years) with climatology -- and
any registered models named in ``compare_with`` -- on the same pixels, into the model card.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from models.base import ModelError
from models.bayes import BayesRetriever, bayes_tensors, fit_pca
from models.config import load_config, parse_config, resolve_inherit
from models.quantiles import QuantileDistribution
from models.registry import ModelCard, load_checkpoint, load_model, save_model
from models.research.trainer import train_research
from models.training.common import Progress, TrainingCancelled, log, optimizer_step, pad_cross, set_seed  # noqa: F401
from models.training.data import (SPLITS, build_training_set, check_archive, data_key, load_scenes,  # noqa: F401
                                  simulator_fingerprint, split_orbits)
from models.training.loop import build_net, train_unet
from models.training.scoring import default_out, heldout_scores, make_card, predict_scenes, round_metrics  # noqa: F401
from models.training.state import load_state, save_checkpoint, save_state, state_dir
from models.unet_retriever import UNetRetriever

# the scene sets, scoring and card moved to models.training (the names stay importable from here)
_pad_cross = pad_cross
_set_seed = set_seed
_log = log
_state_dir, _save_state, _load_state = state_dir, save_state, load_state
_round = round_metrics
_card = make_card


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
    if config["data"].get("archive") is not None:
        if typed.hybrid is not None or typed.kind == "flow":
            raise ModelError(f"{config.get('name')}: {'hybrid' if typed.hybrid is not None else 'flow'} training on a "
                             "PPS archive is not supported (it pairs the data with the synthetic world's simulated "
                             "source / a base model trained on it); train a U-Net (optionally with a research loss or "
                             "tail) on the archive")
        # an archive is checked before anything is built or trained, for research configs too
        check_archive(config["data"])
    if typed.research:
        return train_research(config, progress=progress, cancel=cancel, out=out, command=command)
    torch.set_num_threads(typed.training.threads)
    out = Path(out) if out is not None else default_out(config)
    if command is None:
        command = " ".join(["raincheck", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("raincheck") else "models.train.train()"
    t0 = time.perf_counter()
    sets = {}
    splits = ["train", "validation"]
    if config["data"].get("archive") is not None:
        # its held-out sets are built before training (the archive was checked above): a bad
        # granule anywhere stops the run before a model is written
        splits += [s for s in ("test", "ood") if config["data"].get(s) is not None]
    for split in splits:
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


# -- U-Net -------------------------------------------------------------------------------------
def _train_unet(config: dict, sets: dict, out: Path, progress, cancel):
    """The reference U-Net: :func:`models.training.train_unet` with its default plug-ins (pinball
    loss, every training scene once per epoch)."""
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

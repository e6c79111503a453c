"""Training of the research models, built on :mod:`models.train` (same cached scene sets and
held-out scores) and, for the U-Nets, on the one training loop :func:`models.training.train_unet`
(crop, flips, best-validation checkpoint, resumable state) with the research plug-ins
(:mod:`models.training.plugins`: the loss, mixed observed + simulated batches, ΔT conditioning).

Extra config keys for ``kind: unet``::

    init_from: unet-reference     # fine-tune: start from a registered model's weights (same network)
    loss: {type: tail_pinball|twcrps|density|pinball, ...}   (models.losses.ResearchLoss)
    hybrid: {...}                 # models.research.hybrid: mixed observed + simulated batches
    conditioning: {gmst: true, domain: true}   # models.conditioning: ΔT (and a simulated-domain flag)
                                  # as input channels; with hybrid, the present-climate simulated
                                  # calibration scenes join the simulated pool

``kind: flow`` (models.research.flow)::

    base_model: unet-reference    # the frozen U-Net whose residual is learnt (weights copied in)
    flow: {base: 16, depth: 2, patch: 2}
    sampling: {members: 10, steps: 8, seed: 0}
    ood: {max_pixels: 200000, shrinkage: 0.05}   # Mahalanobis detector on the base's features

``inherit: unet-reference`` takes ``channels``, ``quantile_levels``, ``network`` and ``data`` from
that config (:func:`resolve_config`): the same scenes, held-out sets and network as the reference.

Entry point :func:`train_research` (CLI: ``python -m models.research.trainer CONFIG --out DIR``).
Validation selects the epoch (on the model's own training objective); the test/OOD splits are only
scored at the end (never used for choices).
"""

from __future__ import annotations

import math
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from models.base import ModelError
from models.conditioning import DEFAULT_GMST_SERIES, scene_gmst
from models.config import INHERITED, load_config, parse_config, resolve_inherit  # noqa: F401 (INHERITED: public name)
from models.inference import invalid_tb_mask
from models.quantiles import QuantileDistribution
from models.registry import ModelCard, get_card, load_checkpoint, load_model
from models.research import hybrid as hyb
from models.research.flow import (FlowRetriever, base_conditioning, build_flow, cfm_loss, euler_sample, member_levels,
                                  rain_from_residual, residual_target)
from models.research.ood import MahalanobisOOD
from models.scoring import climatology_quantiles, score
from models.training.data import build_training_set, load_scenes
from models.training.scoring import default_out, heldout_scores, make_card as _card, predict_scenes
from models.training.scoring import round_metrics as _round
from models.training.common import TrainingCancelled, log as _log, optimizer_step, pad_cross as _pad_cross
from models.training.common import set_seed as _set_seed
from models.training.loop import build_net, train_unet
from models.training.plugins import MixedScenes, ResearchLossPlugin
from models.training.state import save_checkpoint  # noqa: F401 (public name, tests and scripts)
from models.unet_retriever import UNetRetriever
import argparse


def _init_weights(net, config: dict) -> dict:
    """Load ``init_from`` weights into ``net``; returns provenance for the card."""
    name = parse_config(config).init_from
    if not name:
        return {}
    card = get_card(name)
    if card.kind != "unet":
        raise ModelError(f"init_from {name!r} is a {card.kind} model; a unet is needed")
    for key in ("network", "channels", "quantile_levels"):
        if card.config.get(key) != config.get(key):
            raise ModelError(f"init_from {name!r}: its {key} differs from this config's")
    state = load_checkpoint(card.weights_path, expected_sha256=card.checkpoint_sha256)
    if getattr(net, "gmst_conditioned", False) and "gmst_mean" not in state:
        net.load_unconditioned(state)  # the ΔT input weights start at zero: the start equals the source
    else:
        net.load_state_dict(state)
    return {"init_from": name, "init_sha256": card.checkpoint_sha256}


def _train_unet_research(config, sets, out: Path, progress, cancel):
    """A research U-Net: :func:`models.training.train_unet` with the research plug-ins (the
    ``loss:``, a subset of scenes per epoch with simulated scenes mixed in (``hybrid:``), the
    GMST/domain conditioning (``conditioning:``); fine-tuning from ``init_from``)."""
    typed = parse_config(config)
    tcfg = typed.training
    tc_tr, ref_tr = load_scenes(sets["train"])
    tc_va, ref_va = load_scenes(sets["validation"])
    net, provenance = build_net(config, tc_tr, init=lambda n: _init_weights(n, config))
    loss_fn = ResearchLossPlugin(config.get("loss"), config["quantile_levels"], train_ref=ref_tr)
    # hybrid: simulated scenes (bias-corrected) mixed into every batch
    h = typed.hybrid
    tc_sim = ref_sim = None
    sim_map = None  # draw index -> simulated scene (None: identity)
    hyb_info = {}
    if h:
        hs = hyb.build_hybrid_sets(config, progress=progress, cancel=cancel)
        tc_sim, ref_sim = hyb.load_simulated(hs["simulated"], hs["tb_offset"])
        hyb_info = {"ratio": h.ratio, "domain_weight": h.domain_weight,
                    "bias_correction": hs["tb_offset"] is not None,
                    "tb_offset_estimate_K": None if hs["tb_offset"] is None else [round(float(v), 3) for v in hs["tb_offset"]],
                    "simulated_scenes": int(tc_sim.shape[0]), "simulated": dict(config["hybrid"]["simulated"])}
        if h.paired is not None:
            hyb_info["paired"] = {"world": h.paired.world, "warmings_K": [float(w) for w in h.paired.warmings],
                                  "source": h.paired.source,
                                  "design": "the same orbits, scene positions and weather at each warming"}
    # climate conditioning: every scene's GMST anomaly (K); the simulated pool also gets the
    # bias-corrected present-climate calibration scenes, so "simulated" and "warm" are not confounded
    g_tr = g_va = g_sim = None
    cond_info = {}
    if getattr(net, "gmst_conditioned", False):
        g_tr, g_va = scene_gmst(sets["train"]), scene_gmst(sets["validation"])
        if h:
            g_sim = hyb.simulated_gmst(hs["simulated"])
            if hs.get("calibration_simulated") is not None:
                tc_cal, ref_cal = hyb.load_simulated(hs["calibration_simulated"], hs["tb_offset"])
                g_cal = scene_gmst(hs["calibration_simulated"])
                n_warm = tc_sim.shape[0]
                tc_sim = np.concatenate([tc_sim, tc_cal.astype(tc_sim.dtype)])
                ref_sim = np.concatenate([ref_sim, ref_cal])
                g_sim = np.concatenate([g_sim, g_cal])
                hyb_info["simulated_scenes"] = int(tc_sim.shape[0])
                hyb_info["present_climate_simulated_scenes"] = int(tc_cal.shape[0])
                # hybrid.present_share: fraction of the simulated draws from the present-climate
                # scenes (repeated as needed), so that the simulated domain is seen at every ΔT
                share = h.present_share
                if share is not None and tc_cal.shape[0]:
                    share = float(share)
                    if not 0 < share < 1:
                        raise ModelError("hybrid.present_share must be in (0, 1)")
                    reps = max(1, int(round(share / (1 - share) * n_warm / tc_cal.shape[0])))
                    sim_map = np.concatenate([np.arange(n_warm)] + [n_warm + np.arange(tc_cal.shape[0])] * reps)
                    hyb_info["present_share"] = round(reps * tc_cal.shape[0] / sim_map.size, 3)
        pool = np.concatenate([g_tr] + ([g_sim] if g_sim is not None else []))
        g_mean, g_std = float(pool.mean()), float(pool.std())
        net.set_gmst_normalisation(g_mean, g_std)

        def rng_of(g):
            return [round(float(g.min()), 3), round(float(g.max()), 3)] if g is not None and g.size else None

        cond_info = {"gmst": True, "domain": bool(getattr(net, "domain_conditioned", False)), "gmst_mean_K": round(g_mean, 4), "gmst_std_K": round(max(g_std, 1e-3), 4),
                     "gmst_range_K": {"observed_train": rng_of(g_tr), "validation": rng_of(g_va),
                                      "simulated": rng_of(g_sim)},
                     "input": "one constant input channel (normalised ΔT) into the first convolution and the "
                              "per-pixel head" + (", plus a domain flag channel (1 = simulated scene, 0 = observed; "
                              "0 at inference)" if getattr(net, "domain_conditioned", False) else "")
                              + "; zero-initialised when fine-tuning from an unconditioned model",
                     "inference_gmst": "swath attribute gmst_anomaly_K; without it: " + DEFAULT_GMST_SERIES}
    source = MixedScenes(tc_tr, ref_tr, tcfg.batch_size, tcfg.seed, tcfg.crop_cross or 0, tcfg.flip,
                         scenes_per_epoch=tcfg.max_scenes_per_epoch, sim_tc=tc_sim, sim_ref=ref_sim, sim_map=sim_map,
                         ratio=h.ratio if h else 0.0, domain_weight=h.domain_weight if h else 1.0,
                         obs_gmst=g_tr, sim_gmst=g_sim, domain=bool(getattr(net, "domain_conditioned", False)))
    best_sd, info = train_unet(config, net, (tc_tr, ref_tr), (tc_va, ref_va), out, source=source, loss=loss_fn,
                               val_gmst=g_va, progress=progress, cancel=cancel)
    card = _card(config, out, sets, "unet")
    card.parameters = int(sum(p.numel() for p in net.parameters()))
    card.training.update({**info, **provenance})
    if cond_info:
        card.training["conditioning"] = cond_info
    if hyb_info:
        card.training["hybrid"] = hyb_info
        card.training["source"] += f" + simulated (ratio {hyb_info['ratio']}, domain weight {hyb_info['domain_weight']})"
    card = save_checkpoint(out, best_sd, card)
    return card, UNetRetriever(card, best_sd)


# --------------------------------------------------------------------------- flow
def _strip_window(ref: np.ndarray, width: int) -> tuple[int, int]:
    cols = np.flatnonzero(np.isfinite(ref[: min(64, ref.shape[0])]).any(axis=(0, 1)))
    if cols.size < width:
        width = cols.size - cols.size % 4
    return int(cols[0]), int(cols[0]) + width


@torch.no_grad()
def _flow_inputs(base_r, tc: np.ndarray, ref: np.ndarray, c0: int, c1: int, batch: int = 4, progress=None, msg=""):
    """Conditioning (N, 17, A, W) float16 and base means (N, A, W) on the strip window."""
    n, a = tc.shape[:2]
    conds = np.zeros((n, 17, a, c1 - c0), np.float16)
    means = np.zeros((n, a, c1 - c0), np.float32)
    for i in range(0, n, batch):
        x = _pad_cross(torch.from_numpy(np.asarray(tc[i:i + batch], np.float32)).permute(0, 3, 1, 2), base_r.multiple)
        cond, mean = base_conditioning(base_r.net, base_r.levels, x, base_r._fast)
        conds[i:i + batch] = cond[:, :, :a, c0:c1].numpy().astype(np.float16)
        means[i:i + batch] = mean[:, :a, c0:c1].numpy()
        _log(progress, i + batch, n, msg)
    return conds, means, ref[:, :, c0:c1]


def _train_flow(config, sets, out: Path, progress, cancel):
    """Train the flow on the base U-Net's conditioning (:func:`_flow_data`, :func:`_fit_flow`), fit
    its OOD detector and save it (:func:`_save_flow`)."""
    typed = parse_config(config)
    _set_seed(typed.training.seed)
    d = _flow_data(config, typed, sets, progress)
    net = build_flow(config)
    fit = _fit_flow(net, typed.training, d, progress, cancel)
    return _save_flow(config, typed, out, sets, d, net, fit, progress)


def _flow_data(config, typed, sets, progress) -> dict:
    """The base U-Net, the training and validation scenes, the flow's conditioning, base mean and
    target on the reference strip's window, and the residual scale."""
    tcfg = typed.training
    seed = tcfg.seed
    base_name = config["base_model"]
    base_r = load_model(base_name)
    if base_r.kind != "unet":
        raise ModelError(f"base_model {base_name!r} must be a unet")
    tc_tr, ref_tr = load_scenes(sets["train"])
    tc_va, ref_va = load_scenes(sets["validation"])
    n_tr = tc_tr.shape[0] if tcfg.max_train_scenes is None else min(tcfg.max_train_scenes, tc_tr.shape[0])
    pick = np.sort(np.random.default_rng([seed, 3]).permutation(tc_tr.shape[0])[:n_tr])
    c0, c1 = _strip_window(ref_tr, tcfg.window_cross)
    cond_tr, mean_tr, y_tr = _flow_inputs(base_r, tc_tr[pick], ref_tr[pick], c0, c1, progress=progress, msg="base on train")
    n_va = tc_va.shape[0] if tcfg.max_validation_scenes is None else min(tcfg.max_validation_scenes, tc_va.shape[0])
    cond_va, mean_va, y_va = _flow_inputs(base_r, tc_va[:n_va], ref_va[:n_va], c0, c1, progress=progress, msg="base on validation")
    res = (np.log1p(np.clip(y_tr, 0, None)) - np.log1p(mean_tr))[np.isfinite(y_tr)]
    return {"base_name": base_name, "base_r": base_r, "tc_tr": tc_tr, "tc_va": tc_va, "n_tr": n_tr, "n_va": n_va,
            "c0": c0, "c1": c1, "train": (cond_tr, mean_tr, y_tr), "validation": (cond_va, mean_va, y_va),
            "scale": float(np.std(res)) or 1.0}


def _fit_flow(net, tcfg, d: dict, progress, cancel) -> dict:
    """Conditional flow matching with AdamW and a one-cycle schedule; the validation loss after each
    epoch keeps the best weights. Returns best_sd, best, best_epoch, history, stopped."""
    seed, epochs, bs, lr = tcfg.seed, tcfg.epochs, tcfg.batch_size, tcfg.lr
    n_tr, scale = d["n_tr"], d["scale"]
    cond_tr, mean_tr, y_tr = d["train"]
    cond_va, mean_va, y_va = d["validation"]
    steps_per_epoch = math.ceil(n_tr / bs)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=tcfg.weight_decay)
    # the flow warms up over 10 % of the steps (training.pct_start is the U-Net's)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.1)
    mult = net.multiple
    a_max = y_tr.shape[1]
    crop_a = min(tcfg.crop_along, a_max) // mult * mult

    def tensors(cond, mean, y, idx, a0, length, flip):
        c = torch.from_numpy(cond[idx][:, :, a0:a0 + length].astype(np.float32))
        m = torch.from_numpy(mean[idx][:, a0:a0 + length])
        r = torch.from_numpy(np.asarray(y[idx][:, a0:a0 + length], np.float32))
        if flip:
            c, m, r = c.flip(-2), m.flip(-2), r.flip(-2)
        valid = torch.isfinite(r)
        x1 = torch.nan_to_num(residual_target(torch.nan_to_num(r, nan=0.0), m, scale))[:, None]
        return c, x1, valid

    def validate():
        g = torch.Generator().manual_seed(1234)
        net.eval()
        tot, n = 0.0, 0
        with torch.no_grad():
            length = y_va.shape[1] // mult * mult
            for i in range(0, y_va.shape[0], 8):
                idx = np.arange(i, min(i + 8, y_va.shape[0]))
                c, x1, valid = tensors(cond_va, mean_va, y_va, idx, 0, length, False)
                k = int(valid.sum())
                tot += float(cfm_loss(net, x1, net.cond_features(c), valid, g)) * k
                n += k
        return tot / max(n, 1)

    best, best_epoch, history = float("inf"), -1, []
    max_seconds = tcfg.max_minutes * 60
    t0 = time.perf_counter()
    stopped = False
    g = torch.Generator().manual_seed(seed)
    best_sd = None
    for epoch in range(epochs):
        net.train()
        order = np.random.default_rng([seed, epoch]).permutation(n_tr)
        run = 0.0
        for b in range(steps_per_epoch):
            if cancel is not None and cancel.is_set():
                raise TrainingCancelled(f"training cancelled in epoch {epoch + 1}")
            brng = np.random.default_rng([seed, epoch, b])
            idx = np.sort(order[b * bs:(b + 1) * bs])
            a0 = int(brng.integers(0, a_max - crop_a + 1))
            c, x1, valid = tensors(cond_tr, mean_tr, y_tr, idx, a0, crop_a, brng.random() < 0.5)
            loss = cfm_loss(net, x1, net.cond_features(c), valid, g)
            run += optimizer_step(net, opt, sched, loss)
            _log(progress, epoch * steps_per_epoch + b + 1, epochs * steps_per_epoch, f"flow epoch {epoch + 1} loss {run / (b + 1):.4f}")
            if time.perf_counter() - t0 > max_seconds:
                stopped = True
                break
        v = validate()
        history.append({"epoch": epoch + 1, "steps": b + 1, "seconds": round(time.perf_counter() - t0, 1),
                        "train_loss": run / max(1, b + 1), "val_cfm": v})
        if v < best:
            best, best_epoch = v, epoch + 1
            best_sd = {k: t.detach().clone() for k, t in net.state_dict().items()}
        if stopped:
            break
    return {"best_sd": best_sd, "best": best, "best_epoch": best_epoch, "history": history, "stopped": stopped}


def _save_flow(config, typed, out: Path, sets, d: dict, net, fit: dict, progress):
    """Fit the OOD detector on the base U-Net's encoder features (training scenes; calibrated on
    validation), then write the checkpoint (base + best flow weights + detector) and its card."""
    seed, base_name, base_r = typed.training.seed, d["base_name"], d["base_r"]
    tc_tr, tc_va = d["tc_tr"], d["tc_va"]
    ocfg = typed.ood
    n_fit = min(ocfg.fit_scenes, tc_tr.shape[0])
    fit_idx = np.sort(np.random.default_rng([seed, 9]).permutation(tc_tr.shape[0])[:n_fit])
    _log(progress, 0, 1, "fitting the OOD detector")
    det = MahalanobisOOD.fit(base_r.net, np.asarray(tc_tr[fit_idx], np.float32), np.asarray(tc_va, np.float32),
                             max_pixels=ocfg.max_pixels, shrinkage=ocfg.shrinkage,
                             seed=seed)
    bcard = get_card(base_name)
    tensors_out = {f"base.{k}": v for k, v in base_r.net.state_dict().items()}
    tensors_out.update({f"flow.{k}": v for k, v in fit["best_sd"].items()})
    tensors_out.update(det.tensors())
    tensors_out["residual_scale"] = torch.tensor([d["scale"]], dtype=torch.float64)
    members = typed.sampling.members
    config = dict(config)
    config["base_config"] = {k: bcard.config[k] for k in ("name", "kind", "channels", "quantile_levels", "network") if k in bcard.config}
    config["quantile_levels"] = member_levels(members)
    card = _card(config, out, sets, "flow")
    card.parameters = int(sum(p.numel() for p in net.parameters()))
    card.training.update({"epochs": typed.training.epochs, "best_epoch": fit["best_epoch"], "best_val_cfm": fit["best"],
                          "history": fit["history"], "stopped_early_for_time": fit["stopped"],
                          "train_scenes": int(d["n_tr"]), "validation_scenes": int(d["n_va"]),
                          "strip_window_cols": [d["c0"], d["c1"]], "residual_scale": d["scale"], "base_model": base_name,
                          "base_sha256": bcard.checkpoint_sha256, "ood_fit_scenes": int(n_fit),
                          "ood_calibration": "validation split (in-distribution year)"})
    card = save_checkpoint(out, tensors_out, card)
    return card, FlowRetriever(card, load_checkpoint(card.weights_path))


# --------------------------------------------------------------------------- entry point
def resolve_config(config) -> dict:
    """The config with ``inherit: NAME`` resolved (:func:`models.config.resolve_inherit`): ``channels``,
    ``quantile_levels``, ``network``, ``inference`` and ``data`` come from config NAME unless set (a flow
    model takes only ``channels`` and ``data``). So research models share the reference's held-out sets
    and cached scenes."""
    if not isinstance(config, dict):
        return load_config(config)
    return resolve_inherit(config)


def train_research(config, progress=None, cancel: threading.Event | None = None, out=None,
                   command: str | None = None, score_splits: bool = True) -> ModelCard:
    """Train a research model (``kind: unet`` with research keys, or ``kind: flow``); write
    ``model.safetensors`` + ``card.yaml`` to ``out``; score on the held-out splits."""
    config = resolve_config(config)
    typed = parse_config(config)
    torch.set_num_threads(typed.training.threads)
    out = Path(out) if out is not None else default_out(config)
    t0 = time.perf_counter()
    sets = {s: build_training_set(config, s, progress=progress, cancel=cancel) for s in ("train", "validation")}
    if config["kind"] == "unet":
        card, retriever = _train_unet_research(config, sets, out, progress, cancel)
    elif config["kind"] == "flow":
        card, retriever = _train_flow(config, sets, out, progress, cancel)
    else:
        raise ModelError(f"research trainer: unknown kind {config['kind']!r}")
    if score_splits and typed.training.score:
        _, train_ref = load_scenes(sets["train"])
        retrievers = {config["name"]: retriever}
        for other in typed.compare_with or []:
            try:
                retrievers[other] = load_model(other)
            except ModelError as e:
                card.notes += f" compare_with {other!r} skipped: {e}."
        if config["kind"] == "flow":
            card.metrics = _round(flow_heldout_scores(config, retriever, retrievers, train_ref, progress))
        else:
            card.metrics = _round(heldout_scores(config, retrievers, train_ref[np.isfinite(train_ref)], progress))
    card.training["command"] = command or ("python -m models.research.trainer " + " ".join(sys.argv[1:]))
    card.training["wall_seconds"] = round(time.perf_counter() - t0, 1)
    card.training["device"] = "cpu"
    card.training["torch"] = torch.__version__
    card.save(out)
    return card


def predict_strip(retriever, tc: np.ndarray, cols: np.ndarray, batch: int = 2,
                  member_fields: list | None = None, gmst: np.ndarray | None = None) -> np.ndarray:
    """Quantiles (N, A, C, Q) on scenes ``tc`` with the columns ``cols`` (bool, C) scored. Flow
    models run their base on the full width and the (costly) flow on a window around the strip;
    other models use :func:`models.train.predict_scenes`. For flow models, ``member_fields`` (a
    list) receives the first ensemble member as a field (N, A, C) (NaN off the strip)."""
    if getattr(retriever, "kind", "") != "flow":
        return predict_scenes(retriever, tc, strip_only=cols, gmst=gmst)
    n, a, c, _ = tc.shape
    out = np.full((n, a, c, len(retriever.levels)), np.nan, np.float32)
    idx = np.flatnonzero(cols)
    m = retriever.flow.multiple
    pad = 8
    w0 = max(0, int(idx[0]) - pad)
    w1 = w0 + int(math.ceil((int(idx[-1]) + 1 + pad - w0) / m) * m)
    g = torch.Generator().manual_seed(retriever.seed)
    with torch.inference_mode():
        for i in range(0, n, batch):
            part = np.asarray(tc[i:i + batch], np.float32)
            bad = invalid_tb_mask(part)
            x = _pad_cross(torch.from_numpy(part).permute(0, 3, 1, 2), retriever.multiple)
            w1c = min(w1, x.shape[-1])
            cond, mean = base_conditioning(retriever.base, retriever.base_levels, x, retriever._fast)
            cond = cond[:, :, :, w0:w1c]
            r = euler_sample(retriever.flow, retriever.flow.cond_features(cond), retriever.members, retriever.steps, g)
            y = rain_from_residual(r, mean[:, None, :, w0:w1c], retriever.scale)
            if member_fields is not None:
                f = np.full((y.shape[0], a, c), np.nan, np.float32)
                f[:, :, w0:min(w1c, c)] = y[:, 0, :a, : min(w1c, c) - w0].numpy()
                f[:, :, ~cols] = np.nan
                member_fields.append(f)
            y = torch.sort(y, dim=1).values.permute(0, 2, 3, 1).numpy()[:, :a]
            blk = out[i:i + batch]
            blk[:, :, w0:min(w1c, c)] = y[:, :, : min(w1c, c) - w0]
            blk[bad] = np.nan
            out[i:i + batch] = blk
    keep = np.zeros(c, bool)
    keep[idx] = True
    out[:, :, ~keep] = np.nan
    return out


def flow_heldout_scores(config, flow_r, retrievers, train_ref, progress=None) -> dict:
    """Like :func:`models.train.heldout_scores` but predicting only the strip (see
    :func:`predict_strip`)."""
    data_cfg = config["data"]
    out = {}
    for split in ("test", "ood"):
        if split not in data_cfg:
            continue
        tc, ref = load_scenes(build_training_set(config, split, progress=progress))
        strip = np.isfinite(ref)
        cols = strip.any(axis=(0, 1))
        spec = data_cfg[split]
        s, e = str(spec["start"])[:4], str(spec["end"])[:4]
        label = f"{split}_{s}" + (f"-{e}" if e != s else "")
        res = {"period": f"{spec['start']}..{spec['end']}", "orbits": int(spec["orbits"]), "pixels": int(strip.sum())}
        for name, r in retrievers.items():
            _log(progress, 0, 1, f"scoring {name} on {split}")
            q = predict_strip(r, tc, cols)
            ok = strip & np.isfinite(q).all(-1)
            res[name] = score(QuantileDistribution(q[ok], r.levels), ref[ok])
        lv = np.asarray((retrievers.get(config.get("base_model")) or flow_r).levels)
        clim = climatology_quantiles(train_ref[np.isfinite(train_ref)], lv)
        res["climatology"] = score(QuantileDistribution(np.broadcast_to(clim, (int(strip.sum()), lv.size)), lv), ref[strip])
        out[label] = res
    return out


def main(argv=None) -> None:  # pragma: no cover - CLI

    p = argparse.ArgumentParser(description="Train a research model from its config.")
    p.add_argument("config")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    last = [0.0]

    def prog(done, total, msg):
        if time.time() - last[0] > 10 or done == total:
            last[0] = time.time()
            print(f"{time.strftime('%H:%M:%S')} {done}/{total} {msg}", flush=True)

    cmd = "python -m models.research.trainer " + a.config + (f" --out {a.out}" if a.out else "")
    card = train_research(a.config, progress=prog, out=a.out, command=cmd)
    print(f"trained {card.name} ({card.kind}) -> {card.path} sha256 {card.checkpoint_sha256[:12]}")
    for split, res in card.metrics.items():
        for name, m in res.items():
            if isinstance(m, dict):
                print(f"{split:16s} {name:18s} CRPS {m['crps']:.4f} MSE {m['mse']:.4f} r {m['correlation']:.3f} bias {m['bias_pct']:+.1f}%")


if __name__ == "__main__":  # pragma: no cover
    main()

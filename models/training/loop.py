"""The U-Net training loop (one for the reference and the research configs).

:func:`build_net` makes the network (seeded; ``init_from`` weights or the training Tb's
normalisation); :func:`train_unet` trains it: AdamW with a OneCycle schedule, the batch source's
batches (padded with NaN to the network's multiple, channels-last), the loss plug-in on the strip
pixels, validation after every epoch (the loss and the pinball loss; the best loss is kept), the
full state saved after every epoch for resuming, a stop after the step that passes
``max_minutes``, cancellation between steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from models.base import ModelError
from models.config import parse_config
from models.registry import load_checkpoint
from models.research.invariant import set_input_normalisation
from models.training.common import TrainingCancelled, log, optimizer_step, pad_cross, set_seed
from models.training.data import data_key
from models.training.plugins import PinballLoss, ShuffledScenes
from models.training.state import load_state, save_best, save_state, state_dir
from models.unet import pinball_loss
from models.unet_retriever import build_unet


def build_net(config: dict, tc_train: np.ndarray, init: Callable | None = None):
    """The seeded network of ``config`` and the provenance of its start: ``init(net)`` (e.g. the
    ``init_from`` weights; returns provenance or ``{}``) or, without it, fresh weights with the
    input normalisation of the training Tb (valid pixels; stored in the checkpoint)."""
    set_seed(parse_config(config).training.seed)
    net = build_unet(config)
    provenance = init(net) if init is not None else {}
    if not provenance:
        t = tc_train
        flat = t.reshape(-1, t.shape[-1])[:: max(1, t.shape[0] * t.shape[1] * t.shape[2] // 2_000_000)]
        flat = flat[np.isfinite(flat.astype(np.float32)).all(1)].astype(np.float64)
        ci = net.channel_index.numpy()
        net.set_normalisation(flat[:, ci].mean(0), flat[:, ci].std(0))
    if net.input_transform is not None:  # transformed inputs (also from init_from): centred, Tb scale kept
        set_input_normalisation(net, tc_train)
    return net, provenance


@torch.no_grad()
def validate(net, loss_fn, tc, ref, levels, mult: int, bs: int = 8, gmst=None) -> dict:
    """Mean loss and mean pinball loss over the validation strip pixels."""
    net.eval()
    tot, totp, n = 0.0, 0.0, 0
    for i in range(0, tc.shape[0], bs):
        x = pad_cross(torch.from_numpy(tc[i:i + bs].astype(np.float32)).permute(0, 3, 1, 2), mult)
        y = pad_cross(torch.from_numpy(ref[i:i + bs]), mult)
        k = int(torch.isfinite(y).sum())
        if k:
            p = net(x, None if gmst is None else gmst[i:i + bs])
            pin = float(pinball_loss(p, y, levels))
            tot += (pin if isinstance(loss_fn, PinballLoss) else float(loss_fn(p, y))) * k
            totp += pin * k
            n += k
    return {"loss": tot / max(n, 1), "pinball": totp / max(n, 1)}


def train_unet(config: dict, net, train: tuple, validation: tuple, out: Path, *, source=None, loss=None,
               val_gmst=None, progress=None, cancel=None) -> tuple[dict, dict]:
    """Train ``net`` on ``train`` = (Tb, reference) scenes, validating on ``validation``;
    returns the best epoch's weights and what the model card records of the training.

    ``source``: the batch source (default :class:`ShuffledScenes` over ``train``); ``loss``: the
    loss (default :class:`PinballLoss`); ``val_gmst``: the validation scenes' ΔT (conditioned
    networks). Settings from ``config['training']`` (:class:`models.config.TrainingConfig`)."""
    tcfg = parse_config(config).training
    tc_tr, ref_tr = train
    tc_va, ref_va = validation
    levels = torch.tensor(config["quantile_levels"], dtype=torch.float32)
    loss = loss if loss is not None else PinballLoss(config["quantile_levels"])
    if source is None:
        source = ShuffledScenes(tc_tr, ref_tr, tcfg.batch_size, tcfg.seed, tcfg.crop_cross or 0, tcfg.flip)
    epochs, steps_per_epoch = tcfg.epochs, source.steps_per_epoch
    total = epochs * steps_per_epoch
    opt = torch.optim.AdamW(net.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=tcfg.lr, total_steps=total, pct_start=tcfg.pct_start)
    best, best_epoch, best_pinball, start_epoch, history = float("inf"), -1, float("inf"), 0, []
    key = data_key(config["data"]) if isinstance(config.get("data"), dict) else None
    resumed = load_state(out, net, opt, sched, key) if tcfg.resume else None
    if resumed:
        start_epoch = resumed["epoch"] + 1
        best, best_epoch, history = resumed["best"], resumed["best_epoch"], resumed["history"]
        best_pinball = next((h.get("val_pinball", h["val_loss"]) for h in history if h["epoch"] == best_epoch), best)
        log(progress, start_epoch * steps_per_epoch, total, f"resumed after epoch {resumed['epoch'] + 1}")
    mult = net.multiple
    if start_epoch == 0 and tcfg.validate_init:
        v0 = validate(net, loss, tc_va, ref_va, levels, mult, gmst=val_gmst)
        history.append({"epoch": 0, "val_loss": v0["loss"], "val_pinball": v0["pinball"]})
    net = net.to(memory_format=torch.channels_last)  # measured faster on CPU
    max_seconds = tcfg.max_minutes * 60
    t0 = time.perf_counter()
    stopped_early = False
    for epoch in range(start_epoch, epochs):
        net.train()
        run, b = 0.0, -1
        batches = source.epoch(epoch)
        for b in range(steps_per_epoch):
            if cancel is not None and cancel.is_set():
                raise TrainingCancelled(f"training cancelled in epoch {epoch + 1}; resume continues after epoch {epoch}")
            batch = next(batches)
            x = pad_cross(batch.x, mult).contiguous(memory_format=torch.channels_last)
            y = pad_cross(batch.y, mult)
            w = None if batch.weight is None else batch.weight[:, None, None].expand_as(y)
            if batch.domain is not None:
                pred = net(x, batch.gmst, batch.domain)
            elif batch.gmst is not None:
                pred = net(x, batch.gmst)
            else:
                pred = net(x)
            run += optimizer_step(net, opt, sched, loss(pred, y, weight=w))
            log(progress, epoch * steps_per_epoch + b + 1, total, f"epoch {epoch + 1}/{epochs} loss {run / (b + 1):.4f}")
            if time.perf_counter() - t0 > max_seconds:
                stopped_early = True
                break
        v = validate(net, loss, tc_va, ref_va, levels, mult, gmst=val_gmst)
        history.append({"epoch": epoch + 1, "steps": b + 1, "seconds": round(time.perf_counter() - t0, 1),
                        "train_loss": run / max(1, b + 1), "val_loss": v["loss"], "val_pinball": v["pinball"]})
        if v["loss"] < best:
            best, best_epoch, best_pinball = v["loss"], epoch + 1, v["pinball"]
            save_best(out, net)
        save_state(out, net, opt, sched, epoch, best, best_epoch, history, key)
        log(progress, (epoch + 1) * steps_per_epoch, total,
            f"epoch {epoch + 1}: val loss {v['loss']:.4f} pinball {v['pinball']:.4f} (best {best:.4f} @ {best_epoch})")
        if stopped_early:
            break
    if best_epoch < 0:
        raise ModelError("no epoch finished; nothing to save")
    best_sd = load_checkpoint(state_dir(out) / "best.safetensors")
    info = {"epochs": epochs, "best_epoch": best_epoch, "best_val_loss": best, "best_val_pinball": best_pinball,
            "history": history, "stopped_early_for_time": stopped_early, "train_scenes": int(tc_tr.shape[0]),
            "scenes_per_epoch": int(source.scenes_per_epoch), "validation_scenes": int(tc_va.shape[0]),
            "loss": loss.describe()}
    return best_sd, info

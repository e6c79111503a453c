"""Shared pieces of the trainers: NaN padding, the optimiser step, seeds, progress."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from models.errors import InferenceCancelled
from models.unet import pad_cross

__all__ = ["Progress", "TrainingCancelled", "log", "optimizer_step", "pad_cross", "set_seed"]

Progress = Callable[[int, int, str], None]


class TrainingCancelled(InferenceCancelled):
    """Training stopped by the cancel flag; the last finished epoch is saved for resuming."""


def optimizer_step(net, opt, sched, loss) -> float:
    """One optimiser step (gradients clipped at norm 5, schedule advanced); returns the loss."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
    opt.step()
    sched.step()
    return float(loss.detach())


def set_seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def log(progress: Progress | None, done: int, total: int, msg: str) -> None:
    if progress:
        progress(done, total, msg)

"""The resumable training state (``<out>/.train-state/``) and the checkpoint writer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from models.base import ModelError
from models.registry import WEIGHTS, ModelCard, load_checkpoint, save_model, sha256_file


def state_dir(out: Path) -> Path:
    return out / ".train-state"


def save_state(out: Path, net, opt, sched, epoch: int, best: float, best_epoch: int, history: list,
               data_key: str | None = None) -> None:
    """Weights, optimiser, schedule, epoch, best score and RNG after an epoch (atomic), and the
    key of the scene sets trained on (``data_key``: a resume on other data starts afresh)."""
    from safetensors.torch import save_file

    d = state_dir(out)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    osd = opt.state_dict()
    for pid, st in osd["state"].items():
        for k, v in st.items():
            tensors[f"opt.{pid}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    tmp = d / ".last.safetensors.tmp"
    save_file(tensors, str(tmp))
    info = {"epoch": epoch, "best": best, "best_epoch": best_epoch, "history": history,
            "param_groups": osd["param_groups"], "sched": sched.state_dict(),
            "torch_rng": torch.get_rng_state().tolist(), "data_key": data_key}
    itmp = d / ".last.json.tmp"
    itmp.write_text(json.dumps(info, default=float))
    os.replace(tmp, d / "last.safetensors")
    os.replace(itmp, d / "last.json")


def load_state(out: Path, net, opt, sched, data_key: str | None = None) -> dict | None:
    """Restore the state saved by :func:`save_state` (None if there is none, or if it was saved
    while training on scene sets other than ``data_key``'s: e.g. the same config pointed at
    another archive)."""
    d = state_dir(out)
    if not (d / "last.json").is_file() or not (d / "last.safetensors").is_file():
        return None
    info = json.loads((d / "last.json").read_text())
    if data_key is not None and info.get("data_key") not in (None, data_key):
        return None
    tensors = load_checkpoint(d / "last.safetensors")
    net.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})
    sched.load_state_dict(info["sched"])
    torch.set_rng_state(torch.tensor(info["torch_rng"], dtype=torch.uint8))
    return info


def save_best(out: Path, net) -> None:
    from safetensors.torch import save_file

    state_dir(out).mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
              str(state_dir(out) / "best.safetensors"))


def save_checkpoint(folder, tensors: dict, card: ModelCard) -> ModelCard:
    """:func:`models.registry.save_model`, then make sure the registry's pickle sniffing (first
    byte 0x80 or "PK") cannot mistake the safetensors file for a pickle: the first bytes of a
    safetensors file are its header length, which can happen to start with those bytes; if so,
    re-write it with a metadata entry of another length (tensors unchanged)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    card = save_model(folder, tensors, card)

    def bad(path) -> bool:
        with open(path, "rb") as f:
            h = f.read(2)
        return h[:1] == b"\x80" or h[:2] == b"PK"

    if not bad(folder / WEIGHTS):
        return card
    for k in range(1, 16):
        tmp = folder / f".{WEIGHTS}.pad.tmp"
        save_file({n: t.detach().cpu().contiguous() for n, t in tensors.items()}, str(tmp),
                  metadata={"raincheck_pad": "0" * k})
        if not bad(tmp):
            os.replace(tmp, folder / WEIGHTS)
            card.checkpoint_sha256 = sha256_file(folder / WEIGHTS)
            card.save(folder)
            return card
    raise ModelError("could not write a safetensors file the registry accepts")

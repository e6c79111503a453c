"""The registry of retrieval models and their model cards.

A model lives in a folder ``<name>/`` holding ``model.safetensors`` (weights or database) and
``card.yaml`` (the :class:`ModelCard`). Folders are looked up in the user's data root
(``<data_root>/models/<name>``, where ``raincheck train`` writes by default) and then among the
checkpoints shipped with the package (``models/checkpoints/<name>``): a model trained by the
user under a shipped name takes precedence. Shipped: ``unet-reference`` (the DRAIN-like U-Net)
and ``bayes-baseline`` (the GPROF-like Bayesian database retrieval).

Loading is safe: only safetensors files are read (a pickle checkpoint is refused, nothing is
unpickled), and the file's sha256 must match the card's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from catalogs.config import get_roots
from catalogs.outputs import check_name
from models.base import ModelError, Retriever
from models.bayes import BayesRetriever
from models.config import (CONFIG_DIR, KINDS, MAX_PARAMETERS, SIZE_LIMITS, check_config_sizes,  # noqa: F401
                           check_levels, training_data, unet_parameters)
from models.config import load_config as _load_config
from models.inference import choose_device
from models.research.flow import FlowRetriever
from models.unet_retriever import UNetRetriever

log = logging.getLogger(__name__)
#: libyaml's safe loader when PyYAML has it (cards carry hundreds of result rows: ≈ 10x faster), else the pure one
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

SHIPPED_DIR = Path(__file__).resolve().parent / "checkpoints"
WEIGHTS = "model.safetensors"
CARD = "card.yaml"


@dataclass
class ModelCard:
    """What is known about a model: identity, configuration, provenance and skill."""

    name: str
    kind: str  # "unet" or "bayes"
    config: dict
    checkpoint_sha256: str
    levels: list[float]
    training: dict = field(default_factory=dict)  # source, world_seed, periods, command, ...
    #: what the model was trained on (models.config.training_data): kind synthetic | archive, ...
    training_data: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # held-out scores, per model and reference
    parameters: int = 0
    created: str = ""
    notes: str = ""
    path: str = ""  # folder the card was read from (not written)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("path")
        if not d["training_data"]:  # a card written before the field: left as it was
            d.pop("training_data")
        return d

    @classmethod
    def from_dict(cls, d: dict, path: str = "") -> "ModelCard":
        names = {f.name for f in dataclasses.fields(cls)}
        where = str(Path(path) / CARD) if path else "?"
        missing = {"name", "kind", "config", "checkpoint_sha256", "levels"} - set(d)
        if missing:
            raise ModelError(f"model card {where} lacks the field(s) {', '.join(sorted(missing))}")
        check_card_fields(d, where)
        return cls(**{k: v for k, v in d.items() if k in names and k != "path"}, path=str(path))

    def save(self, folder: str | os.PathLike) -> Path:
        p = Path(folder) / CARD
        tmp = p.with_name(f".{CARD}.tmp")
        tmp.write_text(yaml.safe_dump(_plain(self.to_dict()), sort_keys=False, allow_unicode=True))
        os.replace(tmp, p)
        return p

    @property
    def weights_path(self) -> Path:
        return Path(self.path) / WEIGHTS


def check_card_fields(d: dict, where: str) -> None:
    """Types and sizes of a card's fields; a :class:`ModelError` naming the file and the field."""
    if not isinstance(d.get("name"), str) or not d["name"]:
        raise ModelError(f"model card {where}: field name must be a non-empty string, got {d.get('name')!r:.60}")
    if d.get("kind") not in KINDS:
        raise ModelError(f"model card {where}: field kind must be one of {', '.join(KINDS)}, got {d.get('kind')!r:.60}")
    sha = d.get("checkpoint_sha256")
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", sha):
        raise ModelError(f"model card {where}: field checkpoint_sha256 must be 64 hex digits, got {sha!r:.80}")
    check_levels(d.get("levels"), "levels", f"model card {where}")
    for key in ("training", "metrics", "training_data"):
        if d.get(key) is not None and not isinstance(d[key], dict):
            raise ModelError(f"model card {where}: field {key} must be a mapping, got {d[key]!r:.60}")
    check_config_sizes(d.get("config"), f"model card {where}")


def card_training_data(card: ModelCard) -> dict:
    """What the model of ``card`` was trained on: its ``training_data``, or for a card written
    before that field, the description derived from its config's data section
    (:func:`models.config.training_data`; every such model was trained on the synthetic world)."""
    if card.training_data:
        return card.training_data
    data = (card.config or {}).get("data") if isinstance(card.config, dict) else None
    if isinstance(data, dict):
        try:
            return training_data(data)
        except ModelError:
            pass
    return {"kind": "synthetic"}


def training_domain(card: ModelCard) -> str:
    """``"archive"`` for a model trained on a PPS archive (observed Tb), ``"synthetic"`` for one
    trained on the synthetic world (simulated Tb)."""
    return "archive" if card_training_data(card).get("kind") == "archive" else "synthetic"


def _plain(x):
    """Convert numpy scalars/arrays and tuples to plain YAML-safe Python."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, (Path, str)):
        return str(x)
    return x


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def user_models_dir() -> Path:
    return get_roots().data_root / "models"


def _search_dirs() -> list[Path]:
    return [user_models_dir(), SHIPPED_DIR]


_WARNED: set = set()


def _folder(name: str) -> Path:
    try:
        check_name(name)
    except ValueError as e:
        raise ModelError(str(e)) from None
    for d in _search_dirs():
        if (d / name / CARD).is_file():
            if d != SHIPPED_DIR and (SHIPPED_DIR / name / CARD).is_file() and (d / name) not in _WARNED:
                _WARNED.add(d / name)
                log.warning("model %r: the user's model in %s is used, not the shipped model of the same name "
                            "(rename or remove the folder to use the shipped one)", name, d / name)
            return d / name
    raise ModelError(f"unknown model {name!r}; known models: {', '.join(c.name for c in list_models()) or 'none'}")


def shadowing(name: str) -> bool:
    """True when a user model folder takes the name of a shipped model."""
    return (user_models_dir() / name / CARD).is_file() and (SHIPPED_DIR / name / CARD).is_file()


def read_card(folder: str | os.PathLike) -> ModelCard:
    folder = Path(folder)
    try:
        d = yaml.load((folder / CARD).read_text(), Loader=_YAML_LOADER)
    except (OSError, yaml.YAMLError) as e:
        raise ModelError(f"cannot read model card {folder / CARD}: {e}") from None
    if not isinstance(d, dict):
        raise ModelError(f"model card {folder / CARD} is not a mapping")
    return ModelCard.from_dict(d, path=str(folder))


def list_models(problems: dict | None = None) -> list[ModelCard]:
    """Cards of every available model (user-trained first shadows shipped of the same name).

    A folder whose card cannot be read is left out, with a warning, and so is a shipped model
    of the same name (loading that name reads the broken card: the list must not promise the
    shipped one); ``problems``, if given, receives {name: message} for each."""
    seen: dict[str, ModelCard] = {}
    broken: dict[str, str] = {}
    for d in _search_dirs():
        if not d.is_dir():
            continue
        for sub in sorted(d.iterdir()):
            if (sub / CARD).is_file() and sub.name not in seen and sub.name not in broken:
                try:
                    seen[sub.name] = read_card(sub)
                except ModelError as e:
                    broken[sub.name] = str(e)
                    if problems is None and (sub / CARD) not in _WARNED:
                        _WARNED.add(sub / CARD)
                        log.warning("model %r is unusable: %s", sub.name, e)
    if problems is not None:
        problems.update(broken)
    return [seen[k] for k in sorted(seen)]


def get_card(name: str) -> ModelCard:
    return read_card(_folder(name))


_PICKLE_HINT = "pickle checkpoints are refused (they can run arbitrary code); convert to safetensors"


def load_checkpoint(path: str | os.PathLike, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors checkpoint. Refuses anything else (pickle / torch.save zips)
    and, if ``expected_sha256`` is given, a file whose hash differs (a corrupt checkpoint)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} not found")
    with open(path, "rb") as f:
        head = f.read(9)
    size = path.stat().st_size
    n = int.from_bytes(head[:8], "little") if len(head) >= 8 else 0
    is_safetensors = len(head) == 9 and 0 < n <= size - 8 and head[8:9] == b"{"
    if not is_safetensors and (head[:2] == b"PK" or (head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05")):
        raise ModelError(f"checkpoint {path} is a pickle / torch.save file: {_PICKLE_HINT}")
    if expected_sha256 is not None:
        got = sha256_file(path)
        if got != expected_sha256:
            raise ModelError(f"checkpoint {path} is corrupt: sha256 {got[:12]}… does not match the "
                             f"model card's {str(expected_sha256)[:12]}…")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"checkpoint {path} is corrupt or not a safetensors file ({e}); {_PICKLE_HINT}") from None
    check_finite(tensors, path)
    return tensors


def check_finite(tensors: dict[str, torch.Tensor], path) -> None:
    """Refuse a checkpoint with a NaN or infinite value (it would write all-NaN retrievals)."""
    for k, t in tensors.items():
        if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
            n = int((~torch.isfinite(t)).sum())
            raise ModelError(f"checkpoint {path} holds {n} non-finite value(s) (NaN or inf) in tensor {k!r}: "
                             "the model is broken; retrain it or restore its weights")


def save_model(folder: str | os.PathLike, tensors: dict[str, torch.Tensor], card: ModelCard) -> ModelCard:
    """Write ``model.safetensors`` then ``card.yaml`` (with the file's sha256) into ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{WEIGHTS}.tmp"
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, folder / WEIGHTS)
    card.checkpoint_sha256 = sha256_file(folder / WEIGHTS)
    card.path = str(folder)
    card.save(folder)
    return card


def retriever_from(card: ModelCard, tensors: dict[str, torch.Tensor]) -> Retriever:
    if card.kind == "unet":
        return UNetRetriever(card, tensors)
    if card.kind == "bayes":
        return BayesRetriever(card, tensors)
    if card.kind == "flow":
        return FlowRetriever(card, tensors)
    raise ModelError(f"model {card.name!r} has unknown kind {card.kind!r} (expected 'unet', 'bayes' or 'flow')")


def load_model(name: str, device: str | torch.device | None = None) -> Retriever:
    """Load a registered model by name (safetensors only, hash checked) as a :class:`Retriever`."""
    card = get_card(name)
    tensors = load_checkpoint(card.weights_path, expected_sha256=card.checkpoint_sha256)
    r = retriever_from(card, tensors)
    if device is not None:
        r = r.to(choose_device(str(device)))
    return r


def load_config(path_or_name: str | os.PathLike) -> dict:
    """A model/training config from a YAML path or the name of a shipped config, with ``inherit``
    resolved and every key checked (:func:`models.config.load_config`)."""
    return _load_config(path_or_name)

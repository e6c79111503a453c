"""Where model outputs live: keyed by model name, checkpoint hash and orbit.

``<data_root>/outputs/<model>-<sha12>/<source>/orbit-<NNNNNN>.zarr`` — a complete store (see
:mod:`catalogs.store`) is a cache hit; the catalogue's ``model_output`` entry reads these.
A real granule's output also carries the granule file's content hash
(``orbit-<NNNNNN>-<content16>.zarr``): two different files with the same name or orbit number
never share a result.

A model's outputs are found by its exact identity, name *and* checkpoint hash: the folder name
is exactly ``<model>-<12 hex digits>`` (never a prefix match, so ``unet`` does not find
``unet-reference`` and ``unet-reference`` does not find ``unet-reference-v2``).
"""

from __future__ import annotations

import re
from pathlib import Path

from catalogs.config import get_roots

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HEX = re.compile(r"[0-9a-f]{12,64}")
_DIR = re.compile(r"^(?P<model>[A-Za-z0-9][A-Za-z0-9_.-]*)-(?P<sha>[0-9a-f]{12})$")


def check_name(name: str, what: str = "model") -> str:
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise ValueError(f"invalid {what} name {name!r}: use letters, digits, '-', '_' and '.' (max 64)")
    return name


def check_sha256(sha256: str, what: str = "checkpoint hash") -> str:
    """A lower-case hex sha256 (or a prefix of at least 12 digits), else a clear ValueError."""
    s = sha256.strip().lower() if isinstance(sha256, str) else sha256
    if not isinstance(s, str) or not _HEX.fullmatch(s):
        raise ValueError(f"invalid {what} {sha256!r}: give 12 to 64 hexadecimal digits of its sha256")
    return s


def outputs_root() -> Path:
    return get_roots().data_root / "outputs"


def output_dir(model: str, sha256: str) -> Path:
    check_name(model)
    return outputs_root() / f"{model}-{check_sha256(sha256)[:12]}"


def output_path(model: str, sha256: str, orbit: int, source: str = "synthetic",
                content: str | None = None) -> Path:
    """The store of ``model`` (checkpoint ``sha256``) on ``orbit`` of ``source``; ``content``: the
    sha256 of the input file (a real granule), so that only the same file's result is reused."""
    check_name(source, "source")
    orbit = int(orbit)
    tail = "" if content is None else f"-{check_sha256(content, 'content hash')[:16]}"
    return output_dir(model, sha256) / source / f"orbit-{orbit:06d}{tail}.zarr"


def stored_checkpoints(model: str) -> list[str]:
    """The 12-digit checkpoint hashes that have an output folder under exactly the name ``model``."""
    check_name(model)
    root = outputs_root()
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = _DIR.match(p.name)
        if m and m["model"] == model and p.is_dir():
            out.append(m["sha"])
    return sorted(out)


def stored_models() -> list[str]:
    """Names of the models with an output folder in the data root."""
    root = outputs_root()
    if not root.is_dir():
        return []
    return sorted({m["model"] for p in root.iterdir() if (m := _DIR.match(p.name)) and p.is_dir()})

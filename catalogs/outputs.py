"""Where model outputs live: keyed by model name, checkpoint hash and orbit.

``<data_root>/outputs/<model>-<sha12>/<source>/orbit-<NNNNNN>.zarr`` — a complete store (see
:mod:`catalogs.store`) is a cache hit; the catalogue's ``model_output`` entry reads these.
"""

from __future__ import annotations

import re
from pathlib import Path

from catalogs.config import get_roots

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_name(name: str, what: str = "model") -> str:
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise ValueError(f"invalid {what} name {name!r}: use letters, digits, '-', '_' and '.' (max 64)")
    return name


def output_dir(model: str, sha256: str) -> Path:
    check_name(model)
    if not re.fullmatch(r"[0-9a-f]{12,64}", sha256 or ""):
        raise ValueError(f"invalid checkpoint hash {sha256!r}")
    return get_roots().data_root / "outputs" / f"{model}-{sha256[:12]}"


def output_path(model: str, sha256: str, orbit: int, source: str = "synthetic") -> Path:
    check_name(source, "source")
    orbit = int(orbit)
    return output_dir(model, sha256) / source / f"orbit-{orbit:06d}.zarr"

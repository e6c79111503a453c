"""Data roots, configured in one place.

raincheck writes only under its *data root* and reads only under the data root, the packaged
read-only assets and the extra read roots a user configured (e.g. a PPS archive). A path from a
user, a catalogue parameter or a URL is always passed through :func:`confine` first.

Configuration, first match wins:
- ``RAINCHECK_DATA_ROOT``: where raincheck writes (default: the user cache dir, ``raincheck``).
- ``RAINCHECK_READ_ROOTS``: extra read-only roots, separated by ``os.pathsep``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

PACKAGE_ASSETS = Path(__file__).resolve().parent / "assets"


class PathOutsideRoots(PermissionError):
    """A path resolves outside every configured data root."""


@dataclass(frozen=True)
class Roots:
    data_root: Path
    read_roots: tuple[Path, ...] = field(default_factory=tuple)

    @property
    def all_read_roots(self) -> tuple[Path, ...]:
        return (self.data_root, PACKAGE_ASSETS, *self.read_roots)

    def confine(self, path: str | os.PathLike, *, write: bool = False) -> Path:
        return confine(path, (self.data_root,) if write else self.all_read_roots)

    def sub(self, *parts: str) -> Path:
        """A folder under the data root (created)."""
        p = self.data_root.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p


def get_roots() -> Roots:
    """The roots in force now (read from the environment at each call, so tests can set it)."""
    data = os.environ.get("RAINCHECK_DATA_ROOT") or platformdirs.user_cache_dir("raincheck")
    data_root = Path(data).expanduser().resolve()
    extra = tuple(
        Path(p).expanduser().resolve()
        for p in os.environ.get("RAINCHECK_READ_ROOTS", "").split(os.pathsep)
        if p.strip()
    )
    data_root.mkdir(parents=True, exist_ok=True)
    return Roots(data_root=data_root, read_roots=extra)


def confine(path: str | os.PathLike, roots) -> Path:
    """Resolve ``path`` (symlinks and ``..`` included) and return it if it lies under one of
    ``roots``; relative paths are taken relative to the first root. Raise
    :class:`PathOutsideRoots` otherwise."""
    if path is None or str(path).strip() == "":
        raise PathOutsideRoots("empty path")
    if "\x00" in str(path):
        raise PathOutsideRoots(f"path {str(path)!r} contains a NUL byte")
    roots = [Path(r).resolve() for r in roots]
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = roots[0] / p
    resolved = p.resolve()
    for r in roots:
        if resolved == r or resolved.is_relative_to(r):
            return resolved
    raise PathOutsideRoots(
        f"path {str(path)!r} resolves to {str(resolved)!r}, outside the configured data roots "
        f"({', '.join(str(r) for r in roots)}); set RAINCHECK_READ_ROOTS to read elsewhere"
    )

"""Atomic stores: write to a temporary sibling, mark complete, then rename.

A store (zarr folder or netCDF file) is valid only if its completion marker is present, so a
crash mid-write never leaves something that later reads as valid. Re-running a job skips
complete stores.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import xarray as xr

MARKER = ".raincheck-complete.json"


class IncompleteStore(FileNotFoundError):
    """The store does not exist or was never completed (e.g. a crash mid-write)."""


def marker_path(path: Path) -> Path:
    path = Path(path)
    return path / MARKER if path.suffix == ".zarr" else path.with_name(path.name + MARKER)


def is_complete(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.exists() and marker_path(path).exists()


def read_marker(path: str | os.PathLike) -> dict:
    if not is_complete(path):
        raise IncompleteStore(f"store {str(path)!r} is missing or incomplete")
    return json.loads(marker_path(Path(path)).read_text())


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], None], meta: dict | None = None) -> Path:
    """Call ``writer(tmp_path)`` to produce a file or folder, then move it to ``path`` and mark
    it complete. An existing store at ``path`` is replaced only once the new one is whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        writer(tmp)
        info = json.dumps(meta or {}, default=str, sort_keys=True)
        if path.suffix == ".zarr":
            (tmp / MARKER).write_text(info)
        old = None
        if path.exists():
            old = _tmp_sibling(path)
            os.replace(path, old)
            marker_path(path).unlink(missing_ok=True)
        os.replace(tmp, path)
        if path.suffix != ".zarr":
            mtmp = _tmp_sibling(marker_path(path))
            mtmp.write_text(info)
            os.replace(mtmp, marker_path(path))
        if old is not None:
            _remove(old)
    except BaseException:
        _remove(tmp)
        raise
    return path


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists():
        p.unlink(missing_ok=True)


def write_dataset(ds: xr.Dataset, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write ``ds`` atomically as zarr (``.zarr``) or netCDF (``.nc``), by suffix."""
    path = Path(path)
    if path.suffix == ".zarr":
        def writer(tmp: Path) -> None:
            ds.to_zarr(tmp, mode="w", consolidated=True, zarr_format=2)
    elif path.suffix in (".nc", ".nc4"):
        def writer(tmp: Path) -> None:
            ds.to_netcdf(tmp, engine="h5netcdf", invalid_netcdf=True)
    else:
        raise ValueError(f"unsupported output {str(path)!r}: use a .zarr or .nc suffix")
    return atomic_write(path, writer, meta)


def open_dataset(path: str | os.PathLike, **kw) -> xr.Dataset:
    """Open a complete store; raise :class:`IncompleteStore` for a missing or half-written one."""
    path = Path(path)
    if not is_complete(path):
        raise IncompleteStore(f"store {str(path)!r} is missing or incomplete (no completion marker)")
    if path.suffix == ".zarr":
        return xr.open_zarr(path, consolidated=True, **kw)
    return xr.open_dataset(path, engine="h5netcdf", **kw)


_FILE_SHA: dict[tuple, str] = {}
_FILE_SHA_LOCK = threading.Lock()


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's content (streamed), memoised by (real path, size, mtime_ns): the
    content identity of an input, cheap to ask again while the file is unchanged."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    with _FILE_SHA_LOCK:
        got = _FILE_SHA.get(key)
    if got is not None:
        return got
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with _FILE_SHA_LOCK:
        if len(_FILE_SHA) > 4096:
            _FILE_SHA.clear()
        _FILE_SHA[key] = digest
    return digest


def cleanup_stale(folder: str | os.PathLike) -> int:
    """Remove temporary siblings left by crashed writers; return how many were removed."""
    n = 0
    for p in Path(folder).glob(".*.tmp-*"):
        _remove(p)
        n += 1
    return n

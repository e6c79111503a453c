"""Atomic stores: write to a temporary sibling, mark complete, then rename.

A store (zarr folder or netCDF file) is valid only if its completion marker is present, so a
crash mid-write never leaves something that later reads as valid. Re-running a job skips
complete stores.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import xarray as xr

MARKER = ".raincheck-complete.json"

log = logging.getLogger(__name__)


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


#: a temporary file whose writer cannot be checked (another host, or a name without a pid) is
#: stale once this old; one whose writer's pid is alive only after LIVE_MAX_AGE_S (pid reuse)
STALE_AGE_S = 6 * 3600
LIVE_MAX_AGE_S = 7 * 24 * 3600
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_TMP = re.compile(r"^\.(?P<target>.+)\.tmp-(?:(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-)?[0-9a-f]{8,12}"
                  r"(?:\.[A-Za-z0-9]+)?$")


def temp_name(name: str, suffix: str = "") -> str:
    """The name of a temporary sibling of ``name``: it records this host and process id, so a
    later run can tell a temp left by a killed writer (removed) from a live writer's (kept)."""
    return f".{name}.tmp-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:12]}{suffix}"


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(temp_name(path.name))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child not yet reaped is a zombie: its writing is over
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _newest_mtime(p: Path) -> float:
    newest = p.lstat().st_mtime
    if p.is_dir() and not p.is_symlink():
        for root, dirs, files in os.walk(p):
            for n in dirs + files:
                try:
                    newest = max(newest, os.lstat(os.path.join(root, n)).st_mtime)
                except OSError:
                    pass
    return newest


def is_stale_temp(p: str | os.PathLike, *, now: float | None = None, max_age: float = STALE_AGE_S) -> bool:
    """Whether ``p`` is a temporary file or folder of an atomic write whose writer is gone: its
    process (recorded in the name) is no longer alive on this host, or, when that cannot be
    checked, it was last written more than ``max_age`` seconds ago. Never true for a temp that
    this process or another live process on this host is writing (unless older than a week)."""
    p = Path(p)
    m = _TMP.match(p.name)
    if not m:
        return False
    try:
        age = (time.time() if now is None else now) - _newest_mtime(p)
    except OSError:
        return False
    if m["pid"] and m["host"] == _HOST:
        pid = int(m["pid"])
        if pid == os.getpid():
            return False
        if not _pid_alive(pid):
            return True
        return age > LIVE_MAX_AGE_S
    return age > max_age


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], None], meta: dict | None = None) -> Path:
    """Call ``writer(tmp_path)`` to produce a file or folder, then move it to ``path`` and mark
    it complete. An existing store at ``path`` is replaced only once the new one is whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cleanup_stale(path.parent)  # what killed writers left here (a live writer's temp is kept)
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


def cleanup_stale(folder: str | os.PathLike, *, max_age: float = STALE_AGE_S) -> int:
    """Remove the temporary files left in ``folder`` by writers that are gone (killed, crashed;
    see :func:`is_stale_temp`); a live writer's temp is kept. Returns how many were removed."""
    n = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    def newest(p: Path) -> float:
        try:
            return _newest_mtime(p)
        except OSError:
            return 0.0

    for p in sorted(folder.glob(".*.tmp-*"), key=newest, reverse=True):
        if not is_stale_temp(p, max_age=max_age):
            continue
        target = folder / _TMP.match(p.name)["target"]
        try:
            if target.suffix == ".zarr" and p.is_dir() and (p / MARKER).is_file() and not target.exists():
                # killed between moving the old store aside and putting the new one in place: both
                # are whole (marked); the newest becomes the store again instead of being lost
                log.warning("restoring %s from %s, left whole by a writer that was killed", target, p.name)
                os.replace(p, target)
                continue
        except OSError:  # another process restored or removed it first
            continue
        log.info("removing %s, a temporary file left by a writer that is gone", p)
        _remove(p)
        n += 1
    return n

"""Batch inference over many orbits, in this process or across a dask cluster.

Each orbit is one task calling :func:`models.run.run_inference`, which writes its output
store atomically and treats a complete store as a cache hit. So a batch that is killed keeps
every finished orbit, a rerun computes only what is missing, and two workers (or two users)
asking for the same orbit never leave a half-written store behind.

``scheduler``: ``"inline"`` (this process), ``None`` (a ``LocalCluster`` of ``n_workers``
single-threaded processes), a scheduler address (``tcp://host:8786``, e.g. a dask-jobqueue
SLURM cluster — see docs/scale.md) or a ``distributed.Client``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from models.errors import InferenceCancelled
from models.registry import get_card
from models.run import run_inference
from catalogs.runtime import dask_client

Progress = Callable[[int, int, str], None]


@dataclass
class BatchResult:
    """What a batch did: orbits computed, cache hits, failures (orbit -> message), seconds."""

    computed: list[int] = field(default_factory=list)
    cached: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def n_done(self) -> int:
        return len(self.computed) + len(self.cached)


def _task(model: str, orbit: int, source: str, world_seed: int, device: str, threads: int | None) -> dict:
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    info: dict = {}
    run_inference(model, int(orbit), source=source, world_seed=world_seed, device=device, info=info)
    return {"orbit": int(orbit), "cache_hit": bool(info.get("cache_hit")), "device": info.get("device")}


def infer_orbits(
    model: str,
    orbits: Iterable[int],
    *,
    source: str = "synthetic",
    world_seed: int = 0,
    device: str = "auto",
    scheduler=None,
    n_workers: int = 2,
    threads_per_task: int | None = 1,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    keep_going: bool = True,
) -> BatchResult:
    """Run ``model`` on each orbit (deduplicated, in order); return a :class:`BatchResult`.

    A failing orbit is recorded in ``failed`` (``keep_going``) or re-raised. ``cancel`` stops
    scheduling new orbits; finished ones are kept (their stores are complete)."""
    get_card(model)  # unknown model: a clear error before any cluster starts
    todo = list(dict.fromkeys(int(o) for o in orbits))
    res = BatchResult()
    total = len(todo)
    t0 = time.perf_counter()
    if progress:
        progress(0, total, f"{model}: {total} orbit(s)")

    def record(orbit: int, out: dict | None, err: BaseException | None) -> None:
        if err is not None:
            if not keep_going:
                raise err
            res.failed[orbit] = f"{type(err).__name__}: {err}"
        elif out["cache_hit"]:
            res.cached.append(orbit)
        else:
            res.computed.append(orbit)
        if progress:
            progress(res.n_done + len(res.failed), total, f"orbit {orbit}")

    if scheduler == "inline":
        for orbit in todo:
            if cancel is not None and cancel.is_set():
                raise InferenceCancelled(f"cancelled after {res.n_done} of {total} orbits; rerun to resume")
            try:
                out, err = _task(model, orbit, source, world_seed, device, None), None
            except InferenceCancelled:
                raise
            except Exception as e:  # noqa: BLE001 - recorded per orbit
                out, err = None, e
            record(orbit, out, err)
        res.seconds = time.perf_counter() - t0
        return res

    from distributed import as_completed


    with dask_client(scheduler, n_workers) as client:
        futs = {client.submit(_task, model, o, source, world_seed, device, threads_per_task,
                              key=f"infer-{model}-{source}-{world_seed}-{o}", pure=False): o for o in todo}
        for fut in as_completed(list(futs)):
            orbit = futs[fut]
            try:
                out, err = fut.result(), None
            except Exception as e:  # noqa: BLE001 - recorded per orbit
                out, err = None, e
            record(orbit, out, err)
            if cancel is not None and cancel.is_set():
                for f in futs:
                    f.cancel()
                raise InferenceCancelled(f"cancelled after {res.n_done} of {total} orbits; rerun to resume")
    res.seconds = time.perf_counter() - t0
    return res

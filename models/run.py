"""An orbit through a registered model into the output store.

:func:`run_inference` loads the model (:func:`models.registry.load_model`), the orbit
(:func:`load_swath`), runs :func:`models.inference.predict_swath` and writes the output keyed by
model checkpoint hash and orbit (:func:`catalogs.outputs.output_path`) atomically; a complete
store is a cache hit. It sits above the registry (the tiling engine in :mod:`models.inference`
sits below the model classes), so imports run one way.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

import xarray as xr

from catalogs.outputs import output_path
from catalogs.store import file_sha256, is_complete, write_dataset
from models.errors import InferenceCancelled, ModelError
from models.inference import Progress, choose_device, device_name, predict_swath
from models.registry import get_card, load_model
from catalogs.simulator import simulate_orbit


def load_swath(orbit: int, source: str = "synthetic", world_seed: int = 0) -> xr.Dataset:
    """The canonical swath of ``orbit`` from ``source`` (``synthetic``: the simulator)."""
    if source == "synthetic":
        return simulate_orbit(int(orbit), world_seed=int(world_seed), source="observed")
    raise ModelError(f"unknown source {source!r} for inference; supported: 'synthetic'")


def store_source(source: str, world_seed: int = 0) -> str:
    """The folder name of a source in the output store (world seed included when not 0)."""
    return source if int(world_seed) == 0 else f"{source}-w{int(world_seed)}"


def run_inference(
    model_name: str,
    orbit: int,
    source: str = "synthetic",
    world_seed: int = 0,
    device: str = "auto",
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    *,
    swath: xr.Dataset | Callable[[], xr.Dataset] | None = None,
    info: dict | None = None,
    granule: str | Path | None = None,
    extra: Callable | None = None,
) -> Path:
    """Retrieve ``orbit`` with the registered model ``model_name`` and return the path of the
    complete output store. A complete store for the same checkpoint hash and orbit is a cache
    hit (nothing recomputed). ``swath`` may be given instead of loading the orbit (or a function
    returning it, called only when there is something to compute). ``extra(swath, ds, device=,
    progress=, cancel=)``, if given, returns the retrieval with more layers before it is written
    (a real granule's ``ood_score``: :mod:`models.granule_run`). ``info``, if
    given, is filled with ``cache_hit``, ``device`` and ``seconds``. ``granule``: the file ``swath``
    was read from; its content hash (sha256) is part of the cache key, so two different files with
    the same name or orbit number never share a result, and the same file anywhere does."""
    t0 = time.perf_counter()
    info = info if info is not None else {}
    retriever = load_model(model_name)
    content = file_sha256(granule) if granule is not None else None
    path = output_path(retriever.name, retriever.sha256, int(orbit), store_source(source, world_seed), content)
    if is_complete(path):
        info.update(cache_hit=True, device=None, seconds=time.perf_counter() - t0, path=str(path))
        if progress:
            progress(1, 1, "cache hit")
        return path
    dev = choose_device(device)
    info["device"] = device_name(dev)
    if progress:
        progress(0, 1, f"loading orbit {orbit} ({source})")
    if swath is None:
        swath = load_swath(orbit, source, world_seed)
    elif callable(swath):
        swath = swath()
    if cancel is not None and cancel.is_set():
        raise InferenceCancelled("inference cancelled")
    ds = predict_swath(retriever, swath, device=dev, progress=progress, cancel=cancel)
    if extra is not None:
        ds = extra(swath, ds, device=dev, progress=progress, cancel=cancel)
    if cancel is not None and cancel.is_set():
        raise InferenceCancelled("inference cancelled")
    ds.attrs["world_seed"] = int(world_seed)
    ds.attrs["device"] = info["device"]
    write_dataset(ds, path, meta={"model": retriever.name, "model_sha256": retriever.sha256,
                                  "orbit": int(orbit), "source": source, "world_seed": int(world_seed),
                                  **({"input_sha256": content} if content else {})})
    info.update(cache_hit=False, seconds=time.perf_counter() - t0, path=str(path))
    return path


class CheckpointChanged(ModelError):
    """The model's checkpoint on disk is not the one a long job started with."""


_LOADED: dict = {}


def loaded_model(name: str, sha: str, *, device: str = "cpu", torch_threads: int | None = None):
    """The retriever of model ``name`` at checkpoint ``sha`` (full sha256), loaded once per process
    for the long jobs that run many scenes or orbits in one worker (cube builds, the forced
    response). A retrained model (another sha) is never served from the cache: loading it evicts
    the old one. Raises :class:`CheckpointChanged` if the checkpoint loaded is not ``sha``."""
    key = (name, sha)
    if key not in _LOADED:
        if torch_threads:
            import torch

            torch.set_num_threads(int(torch_threads))
        for k in [k for k in _LOADED if k[0] == name]:
            del _LOADED[k]
        r = load_model(name, device=device)
        got = str(getattr(getattr(r, "card", None), "checkpoint_sha256", sha) or sha)
        if got != sha:
            raise CheckpointChanged(f"model {name!r} changed while loading it (checkpoint {got[:12]}, expected "
                                    f"{sha[:12]})")
        _LOADED[key] = r
    return _LOADED[key]


def predict_current(name: str, want: str | None, swath: xr.Dataset, *, job: str = "the job", device: str = "cpu",
                    torch_threads: int | None = None) -> xr.Dataset:
    """The retrieval of ``swath`` by model ``name`` as registered now (:func:`loaded_model`, not validated),
    for a long ``job`` that started with its checkpoint ``want`` (a sha256 or a prefix of it; None: any).
    Raises :class:`CheckpointChanged` naming both checkpoints if the model was retrained since."""
    sha = str(get_card(name).checkpoint_sha256)
    if want and not sha.startswith(want):
        raise CheckpointChanged(f"model {name!r} changed during {job} (checkpoint {sha[:12]}, {job} started with "
                                f"{want[:12]})")
    r = loaded_model(name, sha, device=device, torch_threads=torch_threads)
    return predict_swath(r, swath, validate=False)

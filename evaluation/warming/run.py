"""The forced-response experiment: paired counterfactual scenes, per-scene summaries (resumable
store), and the bootstrap of :mod:`evaluation.warming.response`.

Design (docs/evaluation.md, "Forced response"): N scenes, one per orbit, orbits drawn (seeded)
from the test period of the reference training config (2021, held out from training), a random
``scan_start`` per scene, ``n_scans`` scans. ΔT_train is the mean scenario GMST anomaly over the
training period of the same config. For the base (L = 0) and each warming level L (K above the
training climate) a scene is simulated with ``warming_K = ΔT_train + L − ΔT_scene`` under the world
preset: the same weather in the climate ΔT_train + L. Every model retrieves on the same Tb; the
truth is ``surface_precip_truth``. A GMST-conditioned model is told the climate of the scene it
sees (ΔT_train + L), as it would be told in operation.

Store: ``<data root>/warming/scenes/<world>@<world version>/<PRODUCT_VERSION>/ws<world seed>/
o<orbit>-s<scan_start>-n<n_scans>/w<warming_K>/<source>.npz``, one file per source: ``truth.npz``
(keyed by the world version and PRODUCT_VERSION in the path) or ``<model>@<checkpoint sha256[:16]>
@<product>.npz``. Each file is written atomically with a completion marker; a rerun computes only
what is missing. Nothing but these summaries is kept (never a scene's pixels).
"""

from __future__ import annotations

import json
import logging
import threading
import time as _time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from catalogs.store import atomic_write, is_complete
from evaluation.warming.response import ForcedResponse, compute_response
from evaluation.warming.summary import GROUPS, group_masks, summarise

log = logging.getLogger(__name__)

MAX_LEVEL_K = 6.0
DEFAULT_LEVELS = (1.0, 2.0, 4.0)
DEFAULT_CONFIG = "unet-reference"
#: the retrieval products a run can judge: the posterior mean (default) or draws from the predictive
#: distribution (:data:`SAMPLE_DRAWS` per pixel, common random numbers across climates and models)
PRODUCTS = ("precip_mean", "precip_median", "precip_sample")
SAMPLE_PRODUCT = "precip_sample"
SAMPLE_DRAWS = 4
_FIELDS = ("n", "sum", "wet", "exceed", "hist")


class WarmingCancelled(RuntimeError):
    """The run was cancelled; finished scene summaries stay and a rerun resumes."""


class ModelRunFailed(RuntimeError):
    """A model failed on a scene (its name and the scene are in the message)."""


# --------------------------------------------------------------------------- design
def check_levels(levels) -> list[float]:
    """Warming levels (K above the training climate) as floats, each in (0, MAX_LEVEL_K], sorted
    and distinct; a ValueError naming the bad value otherwise."""
    if isinstance(levels, str):
        parts = [p.strip() for p in levels.split(",") if p.strip()]
    else:
        parts = list(levels)
    if not parts:
        raise ValueError("give at least one warming level (K above the training climate), e.g. 1,2,4")
    out = []
    for p in parts:
        try:
            x = float(p)
        except (TypeError, ValueError):
            raise ValueError(f"warming level {p!r} is not a number of kelvin") from None
        if not np.isfinite(x) or not 0.0 < x <= MAX_LEVEL_K:
            raise ValueError(f"warming level {p!r} K is outside (0, {MAX_LEVEL_K:g}] K above the training climate")
        out.append(x)
    if len(set(out)) != len(out):
        raise ValueError(f"warming levels repeat: {parts}")
    return sorted(out)


def _period(config: str, split: str) -> tuple[str, str]:
    from models.registry import load_config

    cfg = load_config(config)
    d = cfg["data"][split] if isinstance(cfg, dict) else getattr(cfg.data, split)
    get = d.get if isinstance(d, dict) else (lambda k: getattr(d, k))
    return str(get("start")), str(get("end"))


def training_climate_K(config: str = DEFAULT_CONFIG) -> float:
    """Mean scenario GMST anomaly (K) over the training period of ``config`` (hourly samples)."""
    from catalogs.simulator.climate import gmst_anomaly

    a, b = _period(config, "train")
    t0 = np.datetime64(a, "h")
    t1 = np.datetime64(b, "D") + np.timedelta64(1, "D")
    t = np.arange(t0, t1.astype("datetime64[h]"), np.timedelta64(1, "h")).astype("datetime64[ns]")
    return float(np.mean(np.asarray(gmst_anomaly(t), np.float64)))


def plan_scenes(n_scenes: int = 120, n_scans: int = 300, seed: int = 0, config: str = DEFAULT_CONFIG) -> list[dict]:
    """``n_scenes`` scenes ``{orbit, scan_start, n_scans, scene_gmst_K}``: distinct orbits of the
    test period of ``config`` (held out from training) in a seeded random order, each with a random
    scan start drawn from the orbit number and ``seed``. Nested: the first k scenes of a larger set
    are the set of k scenes, so a run can be extended (or cut) and reuse its stored scenes."""
    from catalogs.simulator import orbit_gmst_anomaly
    from catalogs.simulator.geometry import N_SCANS, orbit_at_time

    if int(n_scenes) < 2:
        raise ValueError(f"n_scenes must be at least 2 (the scene bootstrap), got {n_scenes}")
    if not 1 <= int(n_scans) <= N_SCANS:
        raise ValueError(f"n_scans must be in 1..{N_SCANS}, got {n_scans}")
    a, b = _period(config, "test")
    o0 = int(orbit_at_time(np.datetime64(a, "D"))) + 1
    o1 = int(orbit_at_time(np.datetime64(b, "D") + np.timedelta64(1, "D"))) - 1
    if o1 - o0 + 1 < n_scenes:
        raise ValueError(f"the test period {a}..{b} has only {o1 - o0 + 1} orbits, fewer than {n_scenes} scenes")
    orbits = np.random.default_rng([int(seed), 2021]).permutation(np.arange(o0, o1 + 1))[:int(n_scenes)]
    out = []
    for o in orbits:
        start = int(np.random.default_rng([int(seed), int(o), 7]).integers(0, N_SCANS - int(n_scans) + 1))
        out.append({"orbit": int(o), "scan_start": start, "n_scans": int(n_scans),
                    "scene_gmst_K": float(orbit_gmst_anomaly(int(o)))})
    return out


def climates(scene: dict, dT_train: float, levels: Sequence[float]) -> list[float]:
    """``warming_K`` of the scene's base (L = 0) and each level: ΔT_train + L − ΔT_scene."""
    return [float(dT_train + L - scene["scene_gmst_K"]) for L in (0.0, *levels)]


# --------------------------------------------------------------------------- store
def store_root(root: str | Path | None = None) -> Path:
    from catalogs.config import get_roots

    return Path(root) if root is not None else get_roots().data_root / "warming"


def _scene_dir(base: Path, world, seed: int, scene: dict, warming_K: float) -> Path:
    from catalogs.simulator import PRODUCT_VERSION

    return (base / "scenes" / f"{world.name}@{world.version}" / PRODUCT_VERSION / f"ws{int(seed)}"
            / f"o{scene['orbit']}-s{scene['scan_start']}-n{scene['n_scans']}" / f"w{warming_K:+.6f}")


def _source_file(source: str, identity: dict) -> str:
    if source == "truth":
        return "truth.npz"
    return f"{source}@{identity['checkpoint_sha256'][:16]}@{identity['product']}.npz"


def _write_summary(path: Path, summ: dict, meta: dict) -> None:
    def writer(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **summ, meta=np.array(json.dumps(meta)))

    atomic_write(path, writer, meta=meta)


def read_summary(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in _FIELDS}


def _usable(path: Path) -> bool:
    if not (path.exists() and is_complete(path)):
        return False
    try:
        read_summary(path)
    except Exception as e:  # damaged (a crash, a full disk): recompute it
        log.warning("discarding damaged scene summary %s (%s: %s)", path, type(e).__name__, e)
        path.unlink(missing_ok=True)
        return False
    return True


def load_summaries(scenes: Sequence[dict], world, world_seed: int, dT_train: float, levels: Sequence[float],
                   identities: dict, root: str | Path) -> dict:
    """The stored summaries of ``scenes`` for every source in ``identities`` ({source: identity}):
    ``{source: [climate 0 (base), level 1, ...]}``, each a dict of the fields stacked over the scenes
    (the input of :func:`evaluation.warming.response.compute_response`). A missing summary raises."""
    summaries = {s: [] for s in identities}
    for k in range(len(levels) + 1):
        per = {s: {f: [] for f in _FIELDS} for s in identities}
        for sc in scenes:
            d = _scene_dir(Path(root), world, world_seed, sc, climates(sc, dT_train, levels)[k])
            for s, ident in identities.items():
                z = read_summary(d / _source_file(s, ident))
                for f in _FIELDS:
                    per[s][f].append(z[f].astype(np.int32) if f == "hist" else z[f])
        for s in identities:
            summaries[s].append({f: np.stack(v) for f, v in per[s].items()})
    return summaries


# --------------------------------------------------------------------------- one scene
def _model_output(name: str, swath, cfg: dict) -> np.ndarray:
    fn = (cfg.get("model_fns") or {}).get(name)
    if fn is not None:
        return np.asarray(fn(swath), np.float32)
    from models.run import CheckpointChanged, predict_current

    try:
        ret = predict_current(name, cfg["identities"][name]["checkpoint_sha256"], swath, job="the run",
                              device=cfg.get("device", "cpu"), torch_threads=cfg.get("torch_threads"))
    except CheckpointChanged as e:
        raise ModelRunFailed(f"{e}; rerun") from None
    product = cfg.get("product", "precip_mean")
    if product == SAMPLE_PRODUCT:
        return predictive_samples(ret, cfg["uniforms"])
    return np.asarray(ret[product].values, np.float32)


def scene_uniforms(scene: dict, shape: tuple[int, int], draws: int = SAMPLE_DRAWS) -> np.ndarray:
    """The uniforms (draws, along, cross) of the sample product for one scene: seeded by the scene
    (orbit, scan start, length) only, so every climate and every model of the scene uses the same
    numbers (common random numbers: a pixel's draw moves only if its predictive distribution moves)."""
    rng = np.random.default_rng([int(scene["orbit"]), int(scene["scan_start"]), int(scene["n_scans"]), 0x5A4D])
    return np.clip(rng.random((int(draws), *shape)), 1e-9, 1 - 1e-9)


def predictive_samples(ret, uniforms: np.ndarray) -> np.ndarray:
    """Draws from each pixel's predictive distribution (the retrieval's ``precip_quantiles``, piecewise
    linear between the levels with the exponential upper tail of :class:`models.quantiles.QuantileDistribution`)
    at the given uniforms ``(draws, along, cross)``; NaN where the retrieval is NaN. Negative values
    (a quantile crossing zero) are set to 0."""
    from catalogs import schema
    from models.quantiles import QuantileDistribution

    q = ret["precip_quantiles"].transpose("along_track", "cross_track", schema.QUANTILE)
    dist = QuantileDistribution(np.asarray(q.values, np.float64), np.asarray(q[schema.QUANTILE].values, np.float64))
    u = np.asarray(uniforms, np.float64)
    if u.shape[1:] != dist.batch_shape:
        raise ValueError(f"uniforms of shape {u.shape[1:]} for a retrieval of shape {dist.batch_shape}")
    x = dist.inverse_cdf(u)
    bad = ~np.isfinite(q.values).all(axis=-1)
    return np.where(bad[None], np.nan, np.maximum(x, 0.0)).astype(np.float32)


def _simulate(scene: dict, warming_K: float, cfg: dict):
    fn = cfg.get("simulate")
    if fn is None:
        from catalogs.simulator import simulate_orbit as fn
    ds = fn(int(scene["orbit"]), world_seed=int(cfg["world_seed"]), source="observed", n_scans=int(scene["n_scans"]),
            scan_start=int(scene["scan_start"]), warming_K=float(warming_K), world=cfg["world"])
    # a GMST-conditioned model is told the climate of the scene it sees, as in operation
    ds.attrs["gmst_anomaly_K"] = float(scene["scene_gmst_K"] + warming_K)
    return ds


def scene_task(scene: dict, warmings: Sequence[float], sources: Sequence[str], cfg: dict) -> dict:
    """Compute and store the missing summaries of one scene at each climate (``warmings``).
    Returns ``{"orbit", "computed", "seconds"}``. A model that fails raises
    :class:`ModelRunFailed` naming it; summaries already written stay (cache)."""
    from catalogs.simulator import get_world

    t0 = _time.perf_counter()
    world = get_world(cfg["world"])
    base = Path(cfg["root"])
    computed = 0
    for wk in warmings:
        d = _scene_dir(base, world, cfg["world_seed"], scene, wk)
        todo = [s for s in sources if not _usable(d / _source_file(s, cfg["identities"][s]))]
        if not todo:
            continue
        ds = _simulate(scene, wk, cfg)
        masks = group_masks(ds["lat"].values, ds["surface_type"].values)
        if cfg.get("product") == SAMPLE_PRODUCT:
            cfg = {**cfg, "uniforms": scene_uniforms(scene, masks["global"].shape)}
        for s in todo:
            ident = cfg["identities"][s]
            if s == "truth":
                values = ds["surface_precip_truth"].values
            else:
                try:
                    values = _model_output(s, ds, cfg)
                except ModelRunFailed:
                    raise
                except Exception as e:
                    raise ModelRunFailed(f"model {s!r} failed on orbit {scene['orbit']} (scans {scene['scan_start']}+"
                                         f"{scene['n_scans']}, warming_K {wk:+.3f}): {type(e).__name__}: {e}") from e
            summ = summarise(values, masks)
            meta = {"source": s, "identity": ident, "scene": scene, "warming_K": wk,
                    "gmst_anomaly_K": float(ds.attrs["gmst_anomaly_K"]), "world": world.name,
                    "world_version": world.version}
            _write_summary(d / _source_file(s, ident), summ, meta)
            computed += 1
    return {"orbit": int(scene["orbit"]), "computed": computed, "seconds": _time.perf_counter() - t0}


# --------------------------------------------------------------------------- the run
def model_identities(models: Sequence[str], product: str = "precip_mean") -> dict:
    from models.registry import get_card

    return {m: {"checkpoint_sha256": str(get_card(m).checkpoint_sha256), "product": product} for m in models}


def run_forced_response(
    models: Sequence[str],
    levels: Sequence[float] = DEFAULT_LEVELS,
    world: str = "today",
    *,
    n_scenes: int = 120,
    n_scans: int = 300,
    seed: int = 0,
    world_seed: int = 0,
    n_boot: int = 1000,
    ci: float = 90.0,
    tolerance: float = 1.0,
    config: str = DEFAULT_CONFIG,
    product: str = "precip_mean",
    scheduler=None,
    n_workers: int = 2,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: threading.Event | None = None,
    command: str = "",
    root: str | Path | None = None,
    model_fns: dict | None = None,
    identities: dict | None = None,
    simulate: Callable | None = None,
    torch_threads: int | None = 1,
) -> ForcedResponse:
    """Run (or resume) the experiment and return the :class:`ForcedResponse`.

    ``scheduler``: None → a dask LocalCluster of ``n_workers`` processes; an address or a
    ``distributed.Client``; ``"inline"`` → in this process. ``model_fns`` ({name: fn(swath) ->
    rain array}, with ``identities`` {name: {checkpoint_sha256, product}}) and ``simulate`` replace
    the registered models and the simulator (tests)."""
    from catalogs.simulator import PRODUCT_VERSION, TRUTH_VERSION, get_world

    w = get_world(world)
    levels = check_levels(levels)
    if product not in PRODUCTS:
        raise ValueError(f"unknown product {product!r}: one of {', '.join(PRODUCTS)}")
    models = list(dict.fromkeys(models))
    idents = {"truth": {"checkpoint_sha256": "", "product": "surface_precip_truth", "world_version": w.version,
                        "product_version": PRODUCT_VERSION}}
    idents.update(identities if identities is not None else model_identities(
        [m for m in models if m not in (model_fns or {})], product))
    missing = [m for m in models if m not in idents]
    if missing:
        raise ValueError(f"no identity (checkpoint sha256) for {missing}")
    dT_train = training_climate_K(config)
    scenes = plan_scenes(n_scenes, n_scans, seed, config)
    sources = ["truth", *models]
    cfg = {"world": w.name, "world_seed": int(world_seed), "root": str(store_root(root)), "identities": idents,
           "model_fns": model_fns or {}, "simulate": simulate, "product": product, "torch_threads": torch_threads}
    todo = [sc for sc in scenes if any(not _usable(_scene_dir(Path(cfg["root"]), w, world_seed, sc, wk)
                                                   / _source_file(s, idents[s]))
                                       for wk in climates(sc, dT_train, levels) for s in sources)]
    total = len(scenes)
    if progress:
        progress(total - len(todo), total, f"{len(todo)} scene(s) to compute, {total - len(todo)} stored")
    _run_tasks(todo, dT_train, levels, sources, cfg, scheduler, n_workers, progress, cancel, total)
    summaries = load_summaries(scenes, w, world_seed, dT_train, levels, {s: idents[s] for s in sources}, cfg["root"])
    if progress:
        progress(total, total, "bootstrap")
    meta = {
        "command": command,
        "world": w.describe(),
        "product_version": PRODUCT_VERSION,
        "truth_version": TRUTH_VERSION,
        "models": {m: idents[m] for m in models},
        "scenes": {"config": config, "period": list(_period(config, "test")), "seed": int(seed),
                   "world_seed": int(world_seed), "n_scans": int(n_scans),
                   "orbits": [sc["orbit"] for sc in scenes], "scan_starts": [sc["scan_start"] for sc in scenes],
                   "scene_gmst_K": [round(sc["scene_gmst_K"], 6) for sc in scenes]},
        "training_climate_K": dT_train,
        "training_period": list(_period(config, "train")),
        "product": product,
        **({"sample_draws": SAMPLE_DRAWS, "sample_rule": "inverse CDF of precip_quantiles at uniforms seeded by the "
            "scene (same for every climate and model)"} if product == SAMPLE_PRODUCT else {}),
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "injected_truth_pct_per_K": w.describe().get("injected_pct_per_K"),
    }
    return compute_response(summaries, levels, n_boot=n_boot, seed=seed, ci=ci, tolerance=tolerance,
                            groups=tuple(GROUPS), meta=meta)


def _run_tasks(todo, dT_train, levels, sources, cfg, scheduler, n_workers, progress, cancel, total):
    if not todo:
        return
    done0 = total - len(todo)
    if scheduler == "inline":
        for n, sc in enumerate(todo):
            if cancel is not None and cancel.is_set():
                raise WarmingCancelled(f"cancelled after {done0 + n} of {total} scenes; rerun to resume")
            scene_task(sc, climates(sc, dT_train, levels), sources, cfg)
            if progress:
                progress(done0 + n + 1, total, f"orbit {sc['orbit']}")
        return
    from distributed import as_completed

    from catalogs.runtime import dask_client

    with dask_client(scheduler, n_workers) as client:
        futs = [client.submit(scene_task, sc, climates(sc, dT_train, levels), sources, cfg,
                              key=f"warming-scene-{sc['orbit']}-{uuid.uuid4().hex[:6]}", pure=False) for sc in todo]
        done = done0
        try:
            for fut in as_completed(futs):
                fut.result()  # re-raise a task's error (ModelRunFailed names the model)
                done += 1
                if progress:
                    progress(done, total, "scenes")
                if cancel is not None and cancel.is_set():
                    raise WarmingCancelled(f"cancelled after {done} of {total} scenes; rerun to resume")
        except BaseException:
            for f in futs:
                f.cancel()
            raise

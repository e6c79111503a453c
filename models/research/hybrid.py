"""Hybrid training: the observed-like source mixed with the "simulated" source of warmer
climates (catalogs.simulator ``source="simulated"``: +2 K / +4 K, ice scattering x1.2 and a
systematic per-channel Tb offset).

Config section (all keys shown)::

    hybrid:
      ratio: 0.25            # fraction of every batch drawn from the simulated set
      domain_weight: 0.5     # loss weight of simulated scenes (observed scenes weigh 1)
      bias_correction: true  # subtract the estimated per-channel Tb offset from simulated Tb
      simulated: {start: 2015-01-01, end: 2019-12-31, orbits: 120, scenes_per_orbit: 4, scene_scans: 128}
      calibration: {start: 2015-01-01, end: 2019-12-31, orbits: 30, scenes_per_orbit: 2, scene_scans: 128}
      present_share: 0.5     # (climate-conditioned models only) share of simulated draws from the
                             # present-climate calibration scenes, which then join the simulated pool

Domain handling (bias correction): the simulator's forward model differs from the observing
system by an unknown per-channel offset. As one would with a climate model, we run the simulated
source *in the present climate* (``climate_offset_K = 0``) on the same orbits and scene positions
as observed calibration scenes and take the per-channel difference of the medians (medians:
dominated by clear sky, so the rain-only ice-scattering difference barely enters). The estimate
is subtracted from the simulated warm-climate Tb before training and recorded in the model card.
"""

from __future__ import annotations

import copy

import numpy as np

from models.conditioning import scene_gmst
from models.config import data_config, parse_config
from models.errors import ModelError
from models.training.data import build_training_set, load_scenes
from models.training.plugins import mixed_batches  # noqa: F401 (moved; public name)


def _with_split(config: dict, spec: dict, **data_over) -> dict:
    cfg = copy.deepcopy(config)
    data = {k: v for k, v in cfg["data"].items() if k not in ("train", "validation", "test", "ood")}
    data.update(data_over)
    data["train"] = dict(spec)
    cfg["data"] = data
    return cfg


def simulated_config(config: dict) -> dict:
    """The config whose ``train`` split is the simulated warm-climate scene set."""
    h = config["hybrid"]
    return _with_split(config, h["simulated"], source="simulated", seed=data_config(config["data"]).seed + 1000)


def paired_configs(config: dict) -> list[tuple[float, dict]]:
    """``hybrid.paired``: one config per warming level (K above each scene's own climate) whose
    ``train`` split is the simulated set at that level: the same orbits, scene positions (same seed
    and split spec) and weather, under the world preset ``paired.world``. Checked: the preset exists,
    the levels are distinct and in the simulator's range."""
    from catalogs.simulator import get_world
    from catalogs.simulator.worlds import WARMING_RANGE_K

    lo, hi = WARMING_RANGE_K
    pc = parse_config(config).hybrid.paired
    try:
        world = get_world(pc.world).name
    except (KeyError, ValueError) as e:
        raise ModelError(f"hybrid.paired.world: {e}") from None
    levels = []
    for w in pc.warmings:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not lo <= float(w) <= hi:
            raise ModelError(f"hybrid.paired.warmings: {w!r} is not a warming in [{lo:g}, {hi:g}] K")
        levels.append(float(w))
    if len(levels) < 2 or len(set(levels)) != len(levels):
        raise ModelError(f"hybrid.paired.warmings must be at least two distinct levels, got {pc.warmings}")
    if pc.source not in ("simulated", "observed"):
        raise ModelError(f"hybrid.paired.source must be 'simulated' or 'observed', got {pc.source!r}")
    seed = data_config(config["data"]).seed + 1000
    return [(w, _with_split(config, config["hybrid"]["simulated"], source=pc.source, seed=seed,
                            climate_offset_K=0.0, warming_K=w, world=world)) for w in levels]


def calibration_configs(config: dict) -> tuple[dict, dict]:
    """Configs of the paired observed / simulated-present-climate calibration scene sets (same
    orbits and scene positions: same seed and split spec)."""
    h = config["hybrid"]
    seed = data_config(config["data"]).seed + 2000
    obs = _with_split(config, h["calibration"], source="observed", seed=seed)
    sim = _with_split(config, h["calibration"], source="simulated", seed=seed, climate_offset_K=0.0)
    return obs, sim


def estimate_tb_offset(obs_tc: np.ndarray, sim_tc: np.ndarray) -> np.ndarray:
    """Per-channel offset (13,) = median(simulated) - median(observed) over valid pixels."""
    a = np.asarray(obs_tc, np.float32).reshape(-1, obs_tc.shape[-1])
    b = np.asarray(sim_tc, np.float32).reshape(-1, sim_tc.shape[-1])
    return np.array([np.nanmedian(b[:, c]) - np.nanmedian(a[:, c]) for c in range(a.shape[1])], np.float64)


def build_hybrid_sets(config: dict, progress=None, cancel=None) -> dict:
    """Build (cached) the simulated set and, if bias correction is on, the calibration pair.
    Returns dict ``simulated`` (path), ``tb_offset`` (13,) or None and ``calibration_simulated``
    (path of the present-climate simulated calibration scenes, or None)."""
    h = parse_config(config).hybrid
    if h.paired is not None:
        sim = [build_training_set(c, "train", progress=progress, cancel=cancel) for _, c in paired_configs(config)]
    else:
        sim = build_training_set(simulated_config(config), "train", progress=progress, cancel=cancel)
    out = {"simulated": sim, "tb_offset": None, "calibration_simulated": None}
    if h.bias_correction:
        obs_cfg, sim_cfg = calibration_configs(config)
        p_obs = build_training_set(obs_cfg, "train", progress=progress, cancel=cancel)
        # the data section's climate_offset_K = 0 reaches the simulator (models.training.data._simulate)
        p_sim = build_training_set(sim_cfg, "train", progress=progress, cancel=cancel)
        out["tb_offset"] = estimate_tb_offset(load_scenes(p_obs)[0], load_scenes(p_sim)[0])
        out["calibration_simulated"] = p_sim  # present-climate simulated scenes (climate_offset_K = 0)
    return out


def load_simulated(path, tb_offset) -> tuple[np.ndarray, np.ndarray]:
    """Simulated scenes (Tb bias-corrected when ``tb_offset`` is given) and their reference; ``path``
    may be a list of scene sets (paired levels), concatenated in order."""
    if isinstance(path, (list, tuple)):
        parts = [load_scenes(p) for p in path]
        tc, ref = np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts])
    else:
        tc, ref = load_scenes(path)
    tc = tc.astype(np.float32)
    if tb_offset is not None:
        tc = tc - np.asarray(tb_offset, np.float32)
    return tc, ref


def simulated_gmst(path) -> np.ndarray:
    """The scenes' GMST anomaly ΔT (K) of a simulated set or of a list of them (paired levels)."""
    if isinstance(path, (list, tuple)):
        return np.concatenate([scene_gmst(p) for p in path])
    return scene_gmst(path)

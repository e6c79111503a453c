"""Hybrid training: the mixing ratio in every batch, Tb bias correction, derived configs."""

from __future__ import annotations

import numpy as np
import pytest

from models.research.hybrid import (calibration_configs, estimate_tb_offset, mixed_batches, simulated_config)


@pytest.mark.parametrize("ratio,bs", [(0.25, 8), (0.5, 4), (0.0, 8)])
def test_mixing_ratio_respected_in_every_batch(ratio, bs):
    batches = mixed_batches(n_obs=50, n_sim=7, batch_size=bs, ratio=ratio, epoch=2, seed=1)
    k_sim = round(ratio * bs)
    full = [b for b in batches if len(b) == bs]
    assert len(full) >= len(batches) - 1
    for b in batches:
        assert sum(s for s, _ in b) == k_sim
    obs = [i for b in batches for s, i in b if s == 0]
    assert sorted(obs) == list(range(50))  # every observed scene exactly once per epoch
    assert all(0 <= i < 7 for b in batches for s, i in b if s == 1)
    assert batches == mixed_batches(50, 7, bs, ratio, 2, 1)  # deterministic
    with pytest.raises(ValueError):
        mixed_batches(5, 5, 4, 1.0, 0)


def test_tb_offset_estimate_recovers_a_known_offset():
    rng = np.random.default_rng(0)
    obs = 200 + rng.normal(0, 10, (6, 16, 16, 13)).astype(np.float32)
    off = np.linspace(-3, 3, 13)
    sim = rng.permutation(obs.reshape(-1, 13)).reshape(obs.shape) + off.astype(np.float32)
    sim[:, :1, :2, 7] -= 80  # a few scattering pixels barely move the median
    est = estimate_tb_offset(obs, sim)
    assert np.allclose(est, off, atol=0.3)


def test_derived_configs_share_orbits_and_differ_in_source():
    from models.research.trainer import resolve_config

    cfg = resolve_config("unet-hybrid")
    sim = simulated_config(cfg)
    assert sim["data"]["source"] == "simulated" and "test" not in sim["data"]
    obs_c, sim_c = calibration_configs(cfg)
    from models.train import data_key, split_orbits

    assert split_orbits(obs_c["data"], "train") == split_orbits(sim_c["data"], "train")
    assert sim_c["data"]["climate_offset_K"] == 0.0 and obs_c["data"]["source"] == "observed"
    assert data_key(obs_c["data"]) != data_key(sim_c["data"])
    assert 0 < cfg["hybrid"]["ratio"] < 1


# --------------------------------------------------------------------------- paired counterfactual simulations
def _paired_cfg(warmings=(0, 4), world="published", orbits=2, source="simulated"):
    from models.registry import load_config

    cfg = load_config("tiny")
    cfg.update(name="tiny-paired", hybrid={
        "ratio": 0.5, "domain_weight": 0.7, "bias_correction": True,
        "paired": {"world": world, "warmings": list(warmings), "source": source},
        "simulated": {"start": "2015-01-01", "end": "2019-12-31", "orbits": orbits, "scenes_per_orbit": 1,
                      "scene_scans": 32},
        "calibration": {"start": "2015-01-01", "end": "2019-12-31", "orbits": 2, "scenes_per_orbit": 1,
                        "scene_scans": 32}})
    return cfg


def test_paired_configs_share_orbits_and_positions_and_differ_in_climate():
    from models.research.hybrid import paired_configs
    from models.train import data_key, split_orbits

    pcs = paired_configs(_paired_cfg((0, 2, 4)))
    assert [w for w, _ in pcs] == [0.0, 2.0, 4.0]
    datas = [c["data"] for _, c in pcs]
    assert all(d["source"] == "simulated" and d["world"] == "published" and d["climate_offset_K"] == 0.0 for d in datas)
    assert [d["warming_K"] for d in datas] == [0.0, 2.0, 4.0]
    assert len({d["seed"] for d in datas}) == 1  # the seed picks the scene positions: the same in every level
    assert split_orbits(datas[0], "train") == split_orbits(datas[2], "train")
    assert len({data_key(d) for d in datas}) == 3  # three cached sets


@pytest.mark.parametrize("warmings, world, msg", [
    ((0, 12), "published", "12 is not a warming in"),
    ((2, 2), "published", "at least two distinct levels"),
    ((0,), "published", "at least two distinct levels"),
    ((0, 4), "tomorrow", "hybrid.paired.world"),
])
def test_paired_configs_refuse_bad_levels_and_worlds(warmings, world, msg):
    from models.base import ModelError
    from models.research.hybrid import paired_configs

    with pytest.raises(ModelError, match=msg):
        paired_configs(_paired_cfg(warmings, world))
    with pytest.raises(ModelError, match="hybrid.paired.source must be 'simulated' or 'observed', got 'radar'"):
        paired_configs(_paired_cfg((0, 4), source="radar"))
    assert {c["data"]["source"] for _, c in paired_configs(_paired_cfg((0, 4), source="observed"))} == {"observed"}


def test_paired_sets_are_the_same_weather_in_two_climates(data_root):
    """The built sets hold the same scenes: the same rain pattern (the reference's wet pixels coincide), the
    ΔT of each scene differs by the warming, and the warm scene rains more in total."""
    from models.research.hybrid import build_hybrid_sets, load_simulated, simulated_gmst

    hs = build_hybrid_sets(_paired_cfg((0, 4)))
    assert isinstance(hs["simulated"], list) and len(hs["simulated"]) == 2
    tc, ref = load_simulated(hs["simulated"], hs["tb_offset"])
    g = simulated_gmst(hs["simulated"])
    n = tc.shape[0] // 2
    assert tc.shape[0] == 2 * n and n == 2
    assert np.allclose(g[n:] - g[:n], 4.0, atol=1e-6)
    cold, warm = ref[:n], ref[n:]
    wet_c, wet_w = np.nan_to_num(cold) > 0.1, np.nan_to_num(warm) > 0.1
    both = np.isfinite(cold) & np.isfinite(warm)
    assert both.sum() > 1000
    agree = (wet_c == wet_w)[both].mean()
    assert agree > 0.9, agree
    # the environment warmed: more vapour, a warmer 23.8V GHz (water-vapour line) on the same pixels
    assert np.nanmean(tc[n:, ..., 4] - tc[:n, ..., 4]) > 0.2
    assert hs["tb_offset"] is not None and hs["tb_offset"].shape == (13,)


@pytest.mark.slow
def test_a_paired_hybrid_trains_and_records_its_design(data_root):
    from models.registry import load_model
    from models.research.trainer import train_research
    from models.train import train

    train("tiny", command="pytest")
    cfg = _paired_cfg((0, 4))
    cfg.update(init_from="tiny", conditioning={"gmst": True, "domain": True},
               training=dict(cfg["training"], epochs=1, threads=1, validate_init=True))
    card = train_research(cfg, command="pytest")
    h = card.training["hybrid"]
    assert h["paired"]["world"] == "published" and h["paired"]["warmings_K"] == [0.0, 4.0]
    assert h["simulated_scenes"] == 2 * 2 + 2  # two levels of two scenes, plus the present-climate calibration pair
    lo, hi = card.training["conditioning"]["gmst_range_K"]["simulated"]
    assert lo < 1.5 and 4.9 < hi < 5.6  # +0 K and +4 K above the 2015-2019 scenes' own ~1.2 K
    assert load_model("tiny-paired").gmst_conditioned

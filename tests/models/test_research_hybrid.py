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

"""The training loop's batch sources (models.training.plugins): what a batch holds."""

from __future__ import annotations

import numpy as np
import pytest

from models.base import ModelError
from models.training.plugins import MixedScenes, ShuffledScenes, crop_bounds


def _scenes(n, a=8, c=40, strip=(14, 26)):
    tc = np.arange(n, dtype=np.float32)[:, None, None, None] + np.zeros((n, a, c, 13), np.float32)
    ref = np.full((n, a, c), np.nan, np.float32)
    ref[:, :, strip[0]:strip[1]] = 1.0
    return tc, ref


def test_shuffled_scenes_cover_every_scene_once_with_the_strip_in_every_crop():
    tc, ref = _scenes(7)
    src = ShuffledScenes(tc, ref, batch_size=3, seed=0, crop=16, flip=True)
    assert src.steps_per_epoch == 3
    seen = []
    for batch in src.epoch(0):
        assert batch.x.shape[1:] == (13, 8, 16) and batch.weight is None
        assert np.isfinite(batch.y.numpy()).sum(axis=-1).min() == 12  # the whole strip inside the window
        seen += batch.x[:, 0, 0, 0].int().tolist()
    assert sorted(seen) == list(range(7))
    assert [b.x[:, 0, 0, 0].tolist() for b in src.epoch(1)] != [b.x[:, 0, 0, 0].tolist() for b in src.epoch(0)]


def test_mixed_scenes_draw_the_ratio_from_the_simulated_scenes_with_their_weight():
    tc, ref = _scenes(8)
    sim_tc = tc + 100
    src = MixedScenes(tc, ref, batch_size=4, seed=0, scenes_per_epoch=6, sim_tc=sim_tc, sim_ref=ref, ratio=0.5,
                      domain_weight=0.3, obs_gmst=np.zeros(8), sim_gmst=np.full(8, 2.0), domain=True)
    obs = []
    for batch in src.epoch(0):
        ids = batch.x[:, 0, 0, 0].numpy()
        assert (ids >= 100).sum() == 2  # half of every batch simulated
        np.testing.assert_allclose(batch.weight.numpy(), np.where(ids >= 100, 0.3, 1.0), rtol=1e-6)
        np.testing.assert_array_equal(batch.domain.numpy(), (ids >= 100).astype(float))
        np.testing.assert_array_equal(batch.gmst.numpy(), np.where(ids >= 100, 2.0, 0.0))
        obs += ids[ids < 100].astype(int).tolist()
    assert len(obs) == len(set(obs)) == 6 and src.scenes_per_epoch == 6


def test_crop_narrower_than_the_strip_is_refused_naming_both():
    _, ref = _scenes(2)
    with pytest.raises(ModelError, match=r"crop_cross=8 is narrower than the reference strip \(12 pixels\)"):
        crop_bounds(ref, 8, 40)
    assert crop_bounds(ref, 0, 40) == (0, 0, 0)

"""OOD scores: detection metrics by hand, Mahalanobis ranking of obviously shifted inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.research.ood import MahalanobisOOD, auroc, encoder_features, fpr_at_tpr
from models.unet import QuantileUNet


def test_auroc_and_fpr_by_hand():
    assert auroc([0, 1], [2, 3]) == 1.0
    assert auroc([2, 3], [0, 1]) == 0.0
    assert auroc([1, 1], [1, 1]) == 0.5
    assert auroc([0, 2], [1, 3]) == pytest.approx(0.75)  # pairs (0<1, 0<3, 2>1, 2<3)
    # 95 % of positives flagged at threshold = 5th percentile of positives
    pos = np.arange(100, 200)
    neg = np.arange(0, 110)
    assert fpr_at_tpr(neg, pos) == pytest.approx(np.mean(neg >= 105))


def _scenes(rng, n, shift=0.0):
    base = np.array([180, 110, 190, 130, 230, 200, 140, 260, 220, 250, 240, 250, 255], np.float32)
    x = base + rng.normal(0, 4, (n, 32, 32, 13)).astype(np.float32)
    x[:, 10:20, 10:20, 7:9] -= rng.uniform(0, 60, (n, 1, 1, 1)).astype(np.float32)  # a "storm"
    return x + shift


def test_mahalanobis_ranks_shifted_inputs_above_in_distribution():
    torch.manual_seed(0)
    net = QuantileUNet(4, base=4, depth=2, max_width=16).eval()
    rng = np.random.default_rng(0)
    train, calib, test = _scenes(rng, 12), _scenes(rng, 6), _scenes(rng, 6)
    flat = train.reshape(-1, 13)
    net.set_normalisation(flat.mean(0), flat.std(0))
    det = MahalanobisOOD.fit(net, train, calib, max_pixels=5000, window=16)
    def scores(x):
        t = torch.from_numpy(x).permute(0, 3, 1, 2)
        return det.pixel_scores(net, t).numpy()
    s_in, s_out = scores(test), scores(test + 30.0)
    assert 0.3 < s_in.mean() < 0.7  # calibrated: roughly uniform in distribution
    assert auroc(s_in, s_out) > 0.95
    assert np.median(s_out) > 0.95
    # scene scores rank too
    ld_in = det.raw_scores(net, torch.from_numpy(test).permute(0, 3, 1, 2)).numpy()
    ld_out = det.raw_scores(net, torch.from_numpy(test + 30.0).permute(0, 3, 1, 2)).numpy()
    assert min(det.scene_score(l) for l in ld_out) > max(det.scene_score(l) for l in ld_in)
    # missing Tb -> NaN score; round trip through tensors
    bad = torch.from_numpy(test[:1].copy()).permute(0, 3, 1, 2).contiguous()
    bad[0, 3, 5, 5] = float("nan")
    assert np.isnan(det.pixel_scores(net, bad).numpy()[0, 5, 5])
    det2 = MahalanobisOOD.from_tensors(det.tensors())
    t = torch.from_numpy(test).permute(0, 3, 1, 2)
    assert np.allclose(det2.pixel_scores(net, t).numpy(), det.pixel_scores(net, t).numpy())


def test_encoder_features_shape():
    net = QuantileUNet(4, base=4, depth=2, max_width=16).eval()
    f = encoder_features(net, 200 + torch.randn(2, 13, 16, 24))
    assert f.shape == (2, 13 + 4 + 16, 16, 24)

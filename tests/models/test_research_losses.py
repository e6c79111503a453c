"""Tail-sensitive losses against hand-computed values, numerical integration and the core code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.losses import (DensityWeighter, ResearchLoss, tail_level_weights, tail_weighted_pinball, twcrps_loss,
                           twcrps_numpy)
from models.quantiles import QuantileDistribution
from models.unet import pinball_loss


def _t(a):
    return torch.tensor(np.asarray(a, np.float64))


def test_tail_weighted_pinball_hand_computed():
    # levels 0.5, 0.9; quantiles 1, 3; y = 2. rho_0.5(1) = 0.5, rho_0.9(-1) = 0.1
    lw = tail_level_weights([0.5, 0.9], tail_from=0.9, gain=4.0)
    assert np.allclose(lw, [1 / 3, 5 / 3])
    pred = _t([1.0, 3.0]).view(1, 2, 1, 1)
    y = _t([2.0]).view(1, 1, 1)
    got = tail_weighted_pinball(pred, y, _t([0.5, 0.9]), _t(lw))
    assert float(got) == pytest.approx((0.5 / 3 + 0.1 * 5 / 3) / 2, rel=1e-12)


def test_tail_pinball_with_unit_weights_is_the_reference_pinball():
    g = torch.Generator().manual_seed(0)
    pred = torch.cumsum(torch.rand((2, 5, 4, 6), generator=g), 1)
    y = torch.rand((2, 4, 6), generator=g) * 3
    y[0, 0] = float("nan")
    lv = torch.tensor([0.1, 0.3, 0.5, 0.9, 0.99])
    a = tail_weighted_pinball(pred, y, lv, torch.ones(5))
    assert float(a) == pytest.approx(float(pinball_loss(pred, y, lv)), rel=1e-6)


def test_twcrps_hand_computed():
    # X ~ 0.5 U(0, 2) + 0.5 delta_2 (levels 0.5, 0.75 at 2, 2 -> point mass, no tail), t = 1
    lv, v = [0.5, 0.75], [2.0, 2.0]
    # y = 3: int_1^2 (z/4)^2 dz + int_2^3 1 dz = 7/48 + 1
    assert twcrps_numpy(v, lv, 3.0, 1.0) == pytest.approx(1 + 7 / 48, rel=1e-12)
    # y = 0.5: int_1^2 (z/4 - 1)^2 dz = 19/48
    assert twcrps_numpy(v, lv, 0.5, 1.0) == pytest.approx(19 / 48, rel=1e-12)
    t = twcrps_loss(_t(v).view(1, 2, 1, 1), _t([3.0]).view(1, 1, 1), _t(lv), [1.0])
    assert float(t) == pytest.approx(1 + 7 / 48, rel=1e-12)


def _random_case(seed=0, n=40):
    rng = np.random.default_rng(seed)
    lv = np.array([0.05, 0.2, 0.5, 0.8, 0.95, 0.99])
    v = np.sort(rng.gamma(1, 3, (n, lv.size)), -1)
    v[:5, :2] = 0.0
    y = rng.gamma(0.5, 6, n)
    y[:8] = 0.0
    return lv, v, y


def test_twcrps_zero_threshold_is_crps():
    lv, v, y = _random_case()
    assert np.allclose(twcrps_numpy(v, lv, y, 0.0), QuantileDistribution(v, lv).crps(y), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("t", [0.5, 3.0, 10.0, 40.0])
def test_twcrps_against_numerical_integration(t):
    lv, v, y = _random_case(1, 8)
    z = np.linspace(0, 600, 600_001)
    for i in range(v.shape[0]):
        F = QuantileDistribution(v[i], lv).cdf(z)
        sel = z >= t
        num = np.trapezoid(((F - (z >= y[i])) ** 2)[sel], z[sel])
        assert twcrps_numpy(v[i], lv, y[i], t) == pytest.approx(num, abs=2e-5)


def test_twcrps_torch_matches_numpy_and_has_gradients():
    lv, v, y = _random_case(2)
    pred = _t(v.T).view(1, lv.size, v.shape[0], 1).requires_grad_(True)
    loss = twcrps_loss(pred, _t(y).view(1, -1, 1), _t(lv), [0.0, 5.0], [1.0, 2.0])
    ref = np.mean(twcrps_numpy(v, lv, y, 0.0) + 2 * twcrps_numpy(v, lv, y, 5.0))
    assert float(loss) == pytest.approx(ref, rel=1e-10)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_twcrps_missing_gives_nan_and_rejects_negative_threshold():
    lv, v, y = _random_case(3, 4)
    v[0, 2] = np.nan
    out = twcrps_numpy(v, lv, y, 1.0)
    assert np.isnan(out[0]) and np.isfinite(out[1:]).all()
    with pytest.raises(ValueError):
        twcrps_numpy(v, lv, y, -1.0)


def test_density_weights_hand_computed():
    # 8 dry pixels, 2 at 5 mm/h: p = (0.8, 0.2); beta = 1 -> raw (1.25, 5), mean raw 2 -> (0.625, 2.5)
    ref = np.array([0.0] * 8 + [5.0, 5.0])
    w = DensityWeighter.fit(ref, beta=1.0, max_weight=20.0)
    got = w(np.array([0.0, 5.0, np.nan]))
    assert np.allclose(got, [0.625, 2.5, 0.0])
    assert np.mean(w(ref)) == pytest.approx(1.0)
    # unseen bins get weight 0; the cap applies
    assert w(np.array([100.0]))[0] == 0.0
    assert DensityWeighter.fit(ref, beta=1.0, max_weight=2.0)(np.array([5.0]))[0] == 2.0
    tw = w.torch_weights(torch.tensor([0.0, 5.0, float("nan")]))
    assert np.allclose(tw.numpy(), [0.625, 2.5, 0.0])


def test_density_loss_is_weighted_pinball():
    ref = np.array([0.0] * 8 + [5.0, 5.0])
    loss = ResearchLoss({"type": "density", "beta": 1.0}, [0.5], train_ref=ref)
    pred = torch.tensor([1.0, 1.0]).view(1, 1, 1, 2)
    y = torch.tensor([0.0, 5.0]).view(1, 1, 2)
    # pinball at 0.5: |0-1|/2 = 0.5 (w 0.625), |5-1|/2 = 2 (w 2.5)
    assert float(loss(pred, y)) == pytest.approx((0.625 * 0.5 + 2.5 * 2) / (0.625 + 2.5))
    with pytest.raises(ValueError):
        ResearchLoss({"type": "nope"}, [0.5])

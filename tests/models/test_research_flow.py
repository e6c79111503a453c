"""Residual flow matching: sampler shapes, determinism under a seed, step limit, learning a
simple conditional distribution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.research.flow import (MAX_STEPS, FlowNet, _quantile_mean, cfm_loss, euler_sample, member_levels,
                                  rain_from_residual, residual_target)
from models.quantiles import QuantileDistribution


def _net(seed=0, **kw):
    torch.manual_seed(seed)
    net = FlowNet(base=4, depth=1, **kw).eval()
    for p in net.head.parameters():  # non-zero head so the velocity depends on the input
        torch.nn.init.normal_(p, std=0.1)
    return net


@pytest.mark.parametrize("patch", [1, 2])
def test_sampler_shapes_and_determinism(patch):
    net = _net(patch=patch)
    cond = torch.randn(2, 17, 16, 24)
    cf = net.cond_features(cond)
    a = euler_sample(net, cf, members=5, steps=4, generator=torch.Generator().manual_seed(3))
    b = euler_sample(net, cf, members=5, steps=4, generator=torch.Generator().manual_seed(3))
    c = euler_sample(net, cf, members=5, steps=4, generator=torch.Generator().manual_seed(4))
    assert a.shape == (2, 5, 16, 24)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.isfinite(a).all()


def test_steps_limited_to_ten():
    net = _net()
    cf = net.cond_features(torch.randn(1, 17, 8, 8))
    euler_sample(net, cf, 2, MAX_STEPS)
    for bad in (0, MAX_STEPS + 1, 50):
        with pytest.raises(ValueError):
            euler_sample(net, cf, 2, bad)


def test_members_are_batched_not_copies():
    net = _net()
    cf = net.cond_features(torch.randn(1, 17, 8, 8))
    m = euler_sample(net, cf, 4, 3, torch.Generator().manual_seed(0))
    assert not torch.allclose(m[0, 0], m[0, 1])


def test_residual_transform_round_trip_and_member_levels():
    mean = torch.tensor([0.0, 1.0, 10.0])
    y = torch.tensor([0.0, 3.0, 2.0])
    assert torch.allclose(rain_from_residual(residual_target(y, mean, 0.7), mean, 0.7), y, atol=1e-5)
    assert member_levels(4) == [0.125, 0.375, 0.625, 0.875]


def test_quantile_mean_matches_quantile_distribution():
    rng = np.random.default_rng(0)
    lv = np.array([0.1, 0.5, 0.9, 0.99])
    v = np.sort(rng.gamma(1, 2, (6, 4)), -1)
    q = torch.tensor(v.T[None, :, :, None], dtype=torch.float64)
    got = _quantile_mean(q, lv)[0, :, 0].numpy()
    assert np.allclose(got, QuantileDistribution(v, lv).mean(), rtol=1e-10)


@pytest.mark.slow
def test_flow_matching_learns_a_conditional_shift():
    """x_1 = 2 * c + N(0, 0.1^2): after training, samples follow the condition."""
    torch.manual_seed(0)
    net = FlowNet(n_cond=1, base=8, depth=1, patch=1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        c = torch.randn(16, 1, 1, 1).expand(16, 1, 4, 4).contiguous()
        x1 = 2 * c + 0.1 * torch.randn(16, 1, 4, 4, generator=g)
        loss = cfm_loss(net, x1, net.cond_features(c), torch.ones(16, 4, 4, dtype=torch.bool), g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    c = torch.tensor([-1.0, 0.0, 1.0]).view(3, 1, 1, 1).expand(3, 1, 4, 4).contiguous()
    s = euler_sample(net, net.cond_features(c), 8, 8, torch.Generator().manual_seed(1))
    means = s.mean(dim=(1, 2, 3))
    assert torch.allclose(means, torch.tensor([-2.0, 0.0, 2.0]), atol=0.35)

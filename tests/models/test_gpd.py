"""The GPD extreme-value tail of the quantile U-Net (issue 15): the GPD quantiles against scipy,
the xi -> 0 limit, monotone levels, the start from a quantile-only checkpoint, a checkpoint round
trip through the registry, the config checks and a few training steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from models.base import ModelError
from models.config import parse_config
from models.registry import ModelCard, load_model
from models.research.gpd import (bounded_shape, exceedance_quantile, exceedance_quantile_torch, gpd_quantiles,
                                 log_ratio, shape_offset)
from models.training.state import save_checkpoint
from models.unet import pinball_loss
from models.unet_retriever import build_unet

LEVELS = [0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99, 0.995, 0.999]
TAIL = {"type": "gpd", "threshold_level": 0.95, "xi_min": -0.2, "xi_max": 0.5}


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: these networks are tiny, and on a loaded 2-core machine a second thread
    only waits (measured 30 ms vs 1.1 s per training step)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _config(tail=TAIL, name="tiny-gpd"):
    cfg = {"name": name, "kind": "unet", "channels": "all", "quantile_levels": list(LEVELS),
           "network": {"base": 4, "depth": 2, "max_width": 16, "head_hidden": 8},
           "inference": {"tile_scans": 64, "cpu_batch_tiles": 1, "channels_last": True}}
    if tail is not None:
        cfg["tail"] = dict(tail)
    return cfg


def _tb(seed=0, b=2, h=16, w=24):
    g = torch.Generator().manual_seed(seed)
    return 150.0 + 100.0 * torch.rand((b, 13, h, w), generator=g)


# --------------------------------------------------------------------------- the GPD math
@pytest.mark.parametrize("xi", [-0.19, -0.05, 0.02, 0.1, 0.3, 0.49])
def test_gpd_quantiles_match_scipy(xi):
    """u + GPD exceedance quantile == scipy's genpareto at the conditional level (p - p_u)/(1 - p_u)."""
    pu = 0.97
    levels = np.array([0.975, 0.98, 0.99, 0.995, 0.999, 0.9999])
    u = np.array([0.0, 3.5, 12.0])
    sigma = np.array([0.2, 1.7, 6.0])
    got = gpd_quantiles(u, sigma, np.full(3, xi), levels, pu)
    want = stats.genpareto.ppf((levels[None] - pu) / (1 - pu), xi, loc=u[:, None], scale=sigma[:, None])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    # torch (float64) gives the same numbers
    t = exceedance_quantile_torch(torch.tensor(sigma[:, None]), torch.full((3, 1), xi, dtype=torch.float64),
                                  torch.tensor(log_ratio(levels, pu))[None])
    np.testing.assert_allclose(u[:, None] + t.numpy(), want, rtol=1e-10, atol=1e-12)


def test_gpd_xi_to_zero_is_the_exponential():
    pu = 0.99
    levels = np.array([0.993, 0.995, 0.999, 0.99999])
    want = stats.expon.ppf((levels - pu) / (1 - pu), scale=2.5)
    for xi in (0.0, 1e-5, -1e-5, 5e-5):  # the series branch
        np.testing.assert_allclose(gpd_quantiles(0.0, 2.5, xi, levels, pu), want, rtol=3e-4)
    np.testing.assert_allclose(gpd_quantiles(0.0, 2.5, 0.0, levels, pu), want, rtol=1e-12)
    # the two branches meet at |xi| = XI_SMALL: continuous, with a finite gradient through xi = 0
    lr = torch.tensor(log_ratio(levels, pu))
    for xi0 in (1e-4 - 1e-9, 1e-4 + 1e-9):
        a = exceedance_quantile_torch(torch.tensor(2.5, dtype=torch.float64), torch.tensor(xi0, dtype=torch.float64), lr)
        b = stats.genpareto.ppf((levels - pu) / (1 - pu), xi0, scale=2.5)
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-9)
    xi = torch.zeros((), dtype=torch.float64, requires_grad=True)
    exceedance_quantile_torch(torch.tensor(2.5, dtype=torch.float64), xi, lr).sum().backward()
    # d/dxi of sigma (r^xi - 1)/xi at 0 is sigma log(r)^2 / 2
    np.testing.assert_allclose(float(xi.grad), float((2.5 * lr ** 2 / 2).sum()), rtol=1e-9)


def test_bounded_shape_and_offset():
    raw = torch.linspace(-30, 30, 101, dtype=torch.float64)
    xi = bounded_shape(raw, -0.2, 0.5)
    assert float(xi.min()) >= -0.2 and float(xi.max()) <= 0.5 and (torch.diff(xi) >= 0).all()
    assert abs(float(bounded_shape(torch.tensor(shape_offset(-0.2, 0.5), dtype=torch.float64), -0.2, 0.5))) < 1e-12
    with pytest.raises(ValueError, match="strictly inside"):
        shape_offset(0.1, 0.5)
    with pytest.raises(ValueError, match="above the threshold"):
        log_ratio([0.9, 0.99], 0.95)
    np.testing.assert_allclose(exceedance_quantile(1.0, 0.5, np.log(4.0)), (4.0 ** 0.5 - 1) / 0.5)


# --------------------------------------------------------------------------- the network
def test_gpd_network_levels_never_cross_and_tail_is_gpd():
    net = build_unet(_config()).eval()
    k = LEVELS.index(TAIL["threshold_level"])
    assert net.head.out_channels == k + 1 and net.tail_head.out_channels == 2 and net.n_quantiles == len(LEVELS)
    with torch.no_grad():  # push the tail outputs to extremes of scale and shape
        net.tail_head.bias.copy_(torch.tensor([3.0, -6.0]))
        net.tail_head.weight.mul_(20.0)
    x = _tb()
    with torch.no_grad():
        q = net(x)
        inc = net(x, increments=True)
        par = net.gpd_parameters(x)
    assert q.shape == (2, len(LEVELS), 16, 24) and torch.isfinite(q).all()
    assert (inc >= 0).all() and (torch.diff(q, dim=1) >= 0).all() and (q >= 0).all()
    torch.testing.assert_close(torch.cumsum(inc, 1), q)
    xi = par["xi"]
    assert float(xi.min()) >= -0.2 - 1e-6 and float(xi.max()) <= 0.5 + 1e-6 and (par["sigma"] > 0).all()
    # the tail levels are the GPD quantiles of the pixel's (u, sigma, xi), against scipy
    torch.testing.assert_close(q[:, k], par["u"])
    want = stats.genpareto.ppf((np.array(LEVELS[k + 1:]) - LEVELS[k]) / (1 - LEVELS[k]),
                               xi.numpy()[..., None].astype(np.float64), loc=par["u"].numpy()[..., None],
                               scale=par["sigma"].numpy()[..., None].astype(np.float64))
    np.testing.assert_allclose(q[:, k + 1:].permute(0, 2, 3, 1).numpy(), want, rtol=2e-4, atol=1e-5)


def test_quantile_only_state_starts_the_gpd_tail_at_the_exponential_through_the_body():
    torch.manual_seed(1)
    plain = build_unet(_config(tail=None)).eval()
    with torch.no_grad():
        plain.head.bias.copy_(torch.linspace(-1.0, 0.5, len(LEVELS)))
    gpd = build_unet(_config()).eval()
    gpd.load_state_dict(plain.state_dict())
    x = _tb(3)
    with torch.no_grad():
        a, b = plain(x), gpd(x)
    k = LEVELS.index(TAIL["threshold_level"])
    torch.testing.assert_close(b[:, :k + 1], a[:, :k + 1], rtol=0, atol=0)  # the body is the source's
    # the tail: exponential (xi = 0) with the scale implied by the last two body quantiles
    s = (a[:, k] - a[:, k - 1]).double() / np.log((1 - LEVELS[k - 1]) / (1 - LEVELS[k]))
    for j, p in enumerate(LEVELS[k + 1:], start=k + 1):
        want = a[:, k].double() + s * np.log((1 - LEVELS[k]) / (1 - p))
        torch.testing.assert_close(b[:, j].double(), want, rtol=1e-5, atol=1e-5)
    # a state dict of another shape is still refused by the strict load
    bad = dict(plain.state_dict())
    bad["head.weight"] = bad["head.weight"][:-1]
    bad["head.bias"] = bad["head.bias"][:-1]
    with pytest.raises(RuntimeError, match="head"):
        build_unet(_config()).load_state_dict(bad)


def test_gpd_checkpoint_round_trip_gives_identical_outputs(data_root):
    from models.registry import user_models_dir

    cfg = _config(name="tiny-gpd-rt")
    torch.manual_seed(2)
    net = build_unet(cfg)
    with torch.no_grad():
        net.tail_head.bias.copy_(torch.tensor([0.7, 0.4]))
        net.tail_head.weight.normal_(0, 0.3)
    net.eval()
    card = ModelCard(name=cfg["name"], kind="unet", config=cfg, checkpoint_sha256="", levels=list(LEVELS))
    save_checkpoint(user_models_dir() / cfg["name"], net.state_dict(), card)
    r = load_model(cfg["name"])
    x = _tb(5, h=32, w=32)
    with torch.no_grad():
        want = net(x)
        got = r.net(x)
        fast = r.predict_batch(x)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(fast, want, rtol=1e-4, atol=1e-4)  # BatchNorm folded for inference
    assert (torch.diff(fast, dim=1) >= 0).all()


@pytest.mark.parametrize("tail, field", [
    ({"type": "gev"}, "tail.type"),
    ({"threshold_level": 0.97}, "tail.threshold_level"),
    ({"threshold_level": 0.999}, "tail.threshold_level"),
    ({"threshold_level": 0.01}, "tail.threshold_level"),
    ({"xi_min": 0.1}, "tail.xi_min"),
    ({"xi_max": 1.0}, "tail.xi_max"),
    ({"xi_max": "big"}, "tail.xi_max"),
    ({"thresold_level": 0.99}, "tail.thresold_level"),
])
def test_bad_tail_config_is_refused_naming_the_field(tail, field):
    with pytest.raises(ModelError, match=field.replace(".", r"\.")):
        parse_config(_config(tail=tail), "config test")


def test_tail_only_for_unet_and_checked_after_inherit():
    with pytest.raises(ModelError, match="tail is for kind unet"):
        parse_config(dict(_config(), kind="flow"))
    # before inherit resolves the levels only the values are checked; after it, the level too
    parse_config({"name": "x", "kind": "unet", "tail": {"threshold_level": 0.97}})
    assert parse_config(_config()).tail.threshold_level == 0.95


def test_a_few_training_steps_reduce_the_pinball_loss():
    """Heavy-tailed synthetic rain whose scale follows the 89 GHz depression: 40 Adam steps on the
    GPD-tailed network lower the pinball loss over all levels (the tail through the GPD)."""
    torch.manual_seed(0)
    net = build_unet(_config())
    x = _tb(11, b=4, h=16, w=16)
    scale = 0.5 + 4.0 * (250.0 - x[:, 11]) / 100.0  # 89 GHz V: colder -> heavier rain
    y = 3.0 * scale * torch.distributions.Pareto(1.0, 4.0).sample((4, 16, 16)).sub(1.0)  # GPD shape 0.25
    levels = torch.tensor(LEVELS)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    tail0 = [p.detach().clone() for p in net.tail_head.parameters()]
    net.train()
    losses = []
    for _ in range(40):
        loss = pinball_loss(net(x), y, levels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:3])
    # the tail head learns (its gradient flows through the GPD quantiles)
    assert all(torch.isfinite(p.grad).all() and not torch.equal(p.detach(), p0)
               for p, p0 in zip(net.tail_head.parameters(), tail0))

"""The quantile distribution: CDF, quantiles, moments, probabilities, CRPS and samples agree."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from models.quantiles import QuantileDistribution, derived_products

LEVELS = np.array([0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999])


def random_quantiles(rng, shape, n=LEVELS.size, zero_frac=0.3):
    inc = rng.gamma(0.7, 1.5, shape + (n,))
    inc[..., 0] *= rng.random(shape) > zero_frac  # some start at exactly zero (point mass)
    inc[rng.random(shape + (n,)) < 0.15] = 0.0     # some ties (jumps in the CDF)
    return np.cumsum(inc, axis=-1)


def numeric_crps(d: QuantileDistribution, y: float, idx=()):
    """Trapezoid integral of (F - H)^2, split at 0 and at y so jumps fall on grid edges."""
    one = QuantileDistribution(d.values[idx], d.levels)
    top = one.values[-1] + 60 * (one.tail_scale() + 1)
    edges = sorted({min(y, 0.0), 0.0, max(y, 0.0), max(top, y + 1)})
    total = 0.0
    for a, b in zip(edges[:-1], edges[1:]):
        x = np.linspace(a, b, 400001)
        mid = 0.5 * (a + b)  # H is constant on each piece: 1 iff the piece lies above y
        h = 1.0 if mid >= y else 0.0
        f = one.cdf(x)
        f[0] = one.cdf(a) if a >= 0 else 0.0  # right-continuous at a
        total += np.trapezoid((f - h) ** 2, x)
    return total


def test_cdf_passes_through_knots_and_inverts_quantile():
    rng = np.random.default_rng(1)
    v = random_quantiles(rng, (50,), zero_frac=0.0)
    v += (np.arange(LEVELS.size) + 1) * 1e-3  # strictly increasing: the CDF is invertible
    d = QuantileDistribution(v, LEVELS)
    f = d.cdf(v.T).T  # F(x_k) for each row
    np.testing.assert_allclose(f, np.broadcast_to(LEVELS, f.shape), atol=1e-9)
    np.testing.assert_allclose(d.quantile(LEVELS), v, atol=1e-9)
    p = np.array([0.001, 0.03, 0.5, 0.97, 0.9995, 0.99999])
    qs = d.quantile(p)
    np.testing.assert_allclose(d.cdf(qs.T).T, np.broadcast_to(p, qs.shape), atol=1e-9)


def test_tails():
    d = QuantileDistribution(np.array([1.0, 2.0, 3.0]), [0.2, 0.5, 0.9])
    assert d.cdf(-0.5) == 0.0
    assert d.cdf(0.5) == pytest.approx(0.1)  # linear from (0, 0) to (1, 0.2)
    s = 1.0 / np.log(0.5 / 0.1)
    assert d.tail_scale() == pytest.approx(s)
    assert d.prob_greater(5.0) == pytest.approx(0.1 * np.exp(-2.0 / s))
    # mass at zero when the first quantiles are zero
    dz = QuantileDistribution(np.array([0.0, 0.0, 0.5, 2.0]), [0.3, 0.6, 0.8, 0.95])
    assert dz.cdf(0.0) == pytest.approx(0.6)
    assert dz.cdf(-1e-9) == 0.0
    assert dz.median() == 0.0
    assert dz.pop() == pytest.approx(1 - (0.6 + 0.2 * 0.1 / 0.5))
    # all zero: no rain at all, certainly
    d0 = QuantileDistribution(np.zeros(4), [0.3, 0.6, 0.8, 0.95])
    assert d0.mean() == 0 and d0.pop() == 0 and d0.p_heavy() == 0 and d0.crps(0.0) == 0
    assert d0.crps(2.0) == pytest.approx(2.0)


def test_mean_matches_samples_and_numerical_integral():
    rng = np.random.default_rng(2)
    v = random_quantiles(rng, (6,))
    d = QuantileDistribution(v, LEVELS)
    s = d.sample(200_000, rng)
    assert s.shape == (200_000, 6)
    assert np.all(s >= 0)
    np.testing.assert_allclose(s.mean(0), d.mean(), rtol=0.03, atol=0.02)
    # E[R] = integral of (1 - F) over [0, inf)
    for i in range(6):
        x = np.linspace(0, v[i, -1] + 60 * (d.tail_scale()[i] + 1), 200001)
        surv = 1 - d.cdf(np.broadcast_to(x[:, None], (x.size, 6)))[:, i]
        assert np.trapezoid(surv, x) == pytest.approx(d.mean()[i], rel=1e-4, abs=1e-4)
    # empirical probabilities of the samples match the CDF-derived ones
    np.testing.assert_allclose((s > 0.1).mean(0), d.pop(), atol=0.01)
    np.testing.assert_allclose((s > 10).mean(0), d.p_heavy(), atol=0.01)
    np.testing.assert_allclose(np.median(s, 0), d.median(), rtol=0.03, atol=0.02)


@pytest.mark.parametrize("y", [0.0, 0.05, 0.7, 3.0, 12.0, 80.0])
def test_crps_matches_numerical_integration(y):
    rng = np.random.default_rng(3)
    v = random_quantiles(rng, (4,))
    d = QuantileDistribution(v, LEVELS)
    c = d.crps(y)
    for i in range(4):
        assert c[i] == pytest.approx(numeric_crps(d, y, (i,)), rel=1e-4, abs=1e-5)


def test_crps_energy_form_and_negative_obs():
    rng = np.random.default_rng(4)
    v = random_quantiles(rng, (), zero_frac=0.0)
    d = QuantileDistribution(v, LEVELS)
    x = d.sample(400_000, rng)
    for y in (0.3, 4.0):
        energy = np.abs(x - y).mean() - 0.5 * np.abs(x[::2] - x[1::2]).mean()
        assert d.crps(y) == pytest.approx(energy, rel=0.03)
    assert d.crps(-1.0) == pytest.approx(numeric_crps(d, -1.0), rel=1e-4)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), y=st.floats(0, 50))
def test_properties_random(seed, y):
    rng = np.random.default_rng(seed)
    v = random_quantiles(rng, (3,))
    d = QuantileDistribution(v, LEVELS)
    x = np.linspace(-1, 100, 300)
    f = d.cdf(np.broadcast_to(x[:, None], (300, 3)))
    assert np.all(np.diff(f, axis=0) >= -1e-12) and np.all((f >= 0) & (f <= 1))
    assert np.all(d.crps(y) >= 0)
    assert np.all(d.mean() >= d.values[:, 0] * 0)  # non-negative
    assert np.all((d.pop() >= 0) & (d.pop() <= 1) & (d.p_heavy() <= d.pop() + 1e-12))
    q = d.quantile(np.linspace(0.001, 0.999, 50))
    assert np.all(np.diff(q, axis=-1) >= -1e-9)


def test_missing_quantiles_give_nan_and_crossing_is_refused():
    v = np.array([[0.0, 1.0, 2.0], [np.nan, 1.0, 2.0]])
    d = QuantileDistribution(v, [0.1, 0.5, 0.9])
    for arr in (d.mean(), d.median(), d.pop(), d.p_heavy(), d.crps(1.0), d.cdf(1.0)):
        assert np.isfinite(arr[0]) and np.isnan(arr[1])
    assert np.isnan(d.sample(3, 0)[:, 1]).all()
    with pytest.raises(ValueError, match="cross"):
        QuantileDistribution(np.array([1.0, 0.5, 2.0]), [0.1, 0.5, 0.9])
    with pytest.raises(ValueError, match="levels"):
        QuantileDistribution(np.array([1.0, 2.0]), [0.5, 0.4])
    with pytest.raises(ValueError, match="last axis"):
        QuantileDistribution(np.zeros((2, 4)), [0.1, 0.5, 0.9])


def test_derived_products_and_from_dataset():
    rng = np.random.default_rng(5)
    v = random_quantiles(rng, (7, 5)).astype(np.float32)
    v[2, 3, 4] = np.nan
    prods = derived_products(v, LEVELS)
    d = QuantileDistribution(v, LEVELS)
    np.testing.assert_allclose(prods["precip_mean"], d.mean(), rtol=1e-6)
    np.testing.assert_allclose(prods["precip_median"], d.median(), rtol=1e-6)
    np.testing.assert_allclose(prods["pop"], d.pop(), rtol=1e-6)
    np.testing.assert_allclose(prods["p_heavy"], d.p_heavy(), rtol=1e-6, atol=1e-7)
    assert np.isnan(prods["precip_mean"][2, 3]) and np.isfinite(prods["precip_mean"]).sum() == 34
    ds = xr.Dataset({"precip_quantiles": (("along_track", "cross_track", "quantile"), v)},
                    coords={"quantile": LEVELS})
    d2 = QuantileDistribution.from_dataset(ds)
    np.testing.assert_allclose(d2.mean(), d.mean())


def test_derived_products_quantile_axis_and_crossing():
    import torch

    rng = np.random.default_rng(6)
    v = random_quantiles(rng, (4, 3)).astype(np.float32)
    a = derived_products(v, LEVELS)
    b = derived_products(torch.from_numpy(np.moveaxis(v, -1, 0).copy()), LEVELS, axis=0)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6)
    v[1, 1, 3] = v[1, 1, 2] - 0.5
    with pytest.raises(ValueError, match="cross"):
        derived_products(v, LEVELS)

"""Generalised Pareto (GPD) tail for quantile retrievals (issue 15: an extreme-value tail).

Peaks over threshold (Pickands 1975; Coles 2001, *An Introduction to Statistical Modeling of
Extreme Values*, ch. 4): above a high threshold ``u`` the exceedance ``Y - u`` of a wide class
of distributions is approximately GPD with scale ``sigma > 0`` and shape ``xi``,
``P(Y - u > z | Y > u) = (1 + xi z / sigma)^(-1/xi)`` (``exp(-z / sigma)`` for ``xi = 0``). With
``u`` the quantile at level ``p_u``, the quantile at ``p > p_u`` is

    q(p) = u + sigma / xi * (((1 - p) / (1 - p_u))^(-xi) - 1)       (xi -> 0: u + sigma log r)

with ``r = (1 - p_u) / (1 - p)``. It increases with ``p`` for any ``sigma > 0`` (so the tail
quantiles never cross), is unbounded for ``xi >= 0`` and bounded by ``u - sigma / xi`` for
``xi < 0``. Rain is heavy-tailed: GEV fits to the annual daily maxima of 15 137 gauge records
give a shape of about 0.1 (Papalexiou & Koutsoyiannis 2013, Water Resour. Res. 49, 187-201;
the exceedances over a high threshold share the GEV's shape). The head bounds ``xi`` to a range
like [-0.2, 0.5] with a scaled tanh (:func:`bounded_shape`).

The same formulas in torch (the network's head, differentiable) and numpy (evaluation, tests).
Both handle the ``xi -> 0`` limit with a series below :data:`XI_SMALL`, so the gradient is smooth
through ``xi = 0``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: below this |xi| the quantile uses the series sigma * L * (1 + xi L / 2 + xi^2 L^2 / 6), L = log r
#: (relative error < xi^3 L^3 / 24 < 1e-9 for L <= log 1000)
XI_SMALL = 1e-4


def log_ratio(levels, threshold_level: float) -> np.ndarray:
    """``log((1 - p_u) / (1 - p))`` for the levels ``p`` above ``threshold_level`` (float64)."""
    p = np.asarray(levels, np.float64)
    pu = float(threshold_level)
    if not 0 < pu < 1 or np.any(p <= pu) or np.any(p >= 1):
        raise ValueError(f"GPD levels must lie in ({pu}, 1) above the threshold level {pu} in (0, 1), got {p.tolist()}")
    return np.log((1.0 - pu) / (1.0 - p))


def exceedance_quantile_torch(sigma: torch.Tensor, xi: torch.Tensor, log_r: torch.Tensor) -> torch.Tensor:
    """``q(p) - u`` (mm h-1) of a GPD exceedance: ``sigma / xi * (r^xi - 1)`` with ``log_r`` =
    ``log r``. ``sigma``, ``xi`` broadcast against ``log_r`` (e.g. (B, 1, H, W) against
    (1, K, 1, 1)); the ``xi -> 0`` limit ``sigma log r`` is taken smoothly."""
    small = xi.abs() < XI_SMALL
    xi_safe = torch.where(small, torch.full_like(xi, XI_SMALL), xi)
    general = torch.expm1(xi_safe * log_r) / xi_safe
    series = log_r * (1.0 + xi * log_r / 2.0 + (xi * log_r) ** 2 / 6.0)
    return sigma * torch.where(small, series, general)


def exceedance_quantile(sigma, xi, log_r) -> np.ndarray:
    """numpy (float64) :func:`exceedance_quantile_torch`."""
    sigma, xi, log_r = (np.asarray(a, np.float64) for a in (sigma, xi, log_r))
    small = np.abs(xi) < XI_SMALL
    xi_safe = np.where(small, XI_SMALL, xi)
    general = np.expm1(xi_safe * log_r) / xi_safe
    series = log_r * (1.0 + xi * log_r / 2.0 + (xi * log_r) ** 2 / 6.0)
    return sigma * np.where(small, series, general)


def gpd_quantiles(u, sigma, xi, levels, threshold_level: float) -> np.ndarray:
    """Quantiles (..., K) at ``levels`` (K, all above ``threshold_level``) of the distribution whose
    ``threshold_level`` quantile is ``u`` and whose exceedances are GPD(``sigma``, ``xi``)."""
    lr = log_ratio(levels, threshold_level)
    u, sigma, xi = (np.asarray(a, np.float64)[..., None] for a in (u, sigma, xi))
    return u + exceedance_quantile(sigma, xi, lr)


def shape_offset(xi_min: float, xi_max: float, xi0: float = 0.0) -> float:
    """The pre-activation ``c`` with :func:`bounded_shape` ``(c) = xi0`` (``xi_min < xi0 < xi_max``)."""
    if not xi_min < xi0 < xi_max:
        raise ValueError(f"shape {xi0} must lie strictly inside ({xi_min}, {xi_max})")
    return math.atanh(2.0 * (xi0 - xi_min) / (xi_max - xi_min) - 1.0)


def bounded_shape(raw: torch.Tensor, xi_min: float, xi_max: float) -> torch.Tensor:
    """Shape ``xi`` in (``xi_min``, ``xi_max``) from an unconstrained output (a scaled tanh)."""
    return xi_min + (xi_max - xi_min) * 0.5 * (torch.tanh(raw) + 1.0)


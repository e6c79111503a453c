"""A distribution of surface rain rate described by predicted quantiles.

Everything a scientist derives from a quantile-regression retrieval lives here, once: the CDF,
quantiles at any level, posterior mean, median, probability of exceeding a threshold (PoP at
0.1 mm h-1, heavy rain at 10 mm h-1), the CRPS against an observation and random samples.
Evaluation and the app use this class; nobody re-derives these.

The distribution
----------------
``values`` (..., Q) are non-decreasing rain rates (mm h-1, >= 0) at ``levels`` (Q,), strictly
increasing in (0, 1). With knots ``x_0 <= ... <= x_{Q-1}`` at ``tau_0 < ... < tau_{Q-1}``:

- **Interior** (``x_0 <= x <= x_{Q-1}``): the CDF is piecewise linear through the knots, so
  the probability ``tau_k - tau_{k-1}`` is spread uniformly over ``[x_{k-1}, x_k]``; equal
  neighbouring values make the CDF jump there (a point mass).
- **Lower tail**: rain is never negative: ``F(x) = 0`` for ``x < 0``. Between 0 and ``x_0`` the
  CDF is linear from ``(0, 0)`` to ``(x_0, tau_0)``; if ``x_0 == 0`` this is a point mass
  ``tau_0`` (or more, when further quantiles are 0) at zero rain: the "no rain" probability.
- **Upper tail**: beyond ``x_{Q-1}`` an exponential tail ``1 - F(x) = (1 - tau_{Q-1})
  exp(-(x - x_{Q-1}) / s)`` whose scale ``s`` makes it pass through the last *two* knots:
  ``s = (x_{Q-1} - x_{Q-2}) / ln((1 - tau_{Q-2}) / (1 - tau_{Q-1}))``. If the last two values
  are equal, ``s = 0`` and the remaining probability is a point mass at ``x_{Q-1}``.

All methods are closed form over this CDF (no numerical integration), vectorised over the
leading ("batch") dimensions, and give NaN for pixels whose quantiles are not all finite
(missing input gives missing output, never numbers).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from concurrent.futures import ThreadPoolExecutor

#: Thresholds of the derived probabilities (mm h-1).
POP_THRESHOLD = 0.1
HEAVY_THRESHOLD = 10.0


def _as_levels(levels) -> np.ndarray:
    lv = np.asarray(levels, dtype=np.float64)
    if lv.ndim != 1 or lv.size < 2:
        raise ValueError(f"quantile levels must be a 1-D sequence of at least 2 levels, got shape {lv.shape}")
    if not (np.all(np.diff(lv) > 0) and lv[0] > 0 and lv[-1] < 1):
        raise ValueError(f"quantile levels must be strictly increasing in (0, 1), got {lv}")
    return lv


class QuantileDistribution:
    """Rain-rate distributions given by quantiles ``values`` (..., Q) at ``levels`` (Q,).

    ``values`` may be a numpy array, an xarray object or a torch tensor (converted to numpy).
    Raises ``ValueError`` if shapes disagree or finite quantiles decrease along the last axis.
    """

    def __init__(self, values, levels: Sequence[float]):
        if hasattr(values, "detach"):  # torch tensor
            values = values.detach().cpu().float().numpy()
        v = np.asarray(values, dtype=np.float64)
        self.levels = _as_levels(levels)
        if v.ndim < 1 or v.shape[-1] != self.levels.size:
            raise ValueError(f"values must have a last axis of {self.levels.size} quantiles, got shape {v.shape}")
        self.valid = np.all(np.isfinite(v), axis=-1)
        d = np.diff(v, axis=-1)
        if np.any(d[self.valid] < -1e-6 * (1 + np.abs(v[..., 1:][self.valid]))):
            raise ValueError("quantile values decrease along the quantile axis (quantiles cross)")
        if np.any(v[self.valid] < 0):
            raise ValueError("quantile values are negative; rain rates must be >= 0")
        # Tiny rounding-level decreases are removed; NaN rows are kept NaN via ``valid``.
        v = np.where(self.valid[..., None], np.maximum.accumulate(np.where(np.isfinite(v), v, 0.0), axis=-1), np.nan)
        self.values = v

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_dataset(cls, ds) -> "QuantileDistribution":
        """From a retrieval dataset (``precip_quantiles`` with a ``quantile`` coordinate)."""
        pq = ds["precip_quantiles"]
        if pq.dims[-1] != "quantile":
            pq = pq.transpose(..., "quantile")
        return cls(pq.values, ds["quantile"].values)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.values.shape[:-1]

    def __repr__(self) -> str:
        return f"QuantileDistribution(batch_shape={self.batch_shape}, n_quantiles={self.levels.size})"

    # -- tails -----------------------------------------------------------------------
    def tail_scale(self) -> np.ndarray:
        """Scale ``s`` (mm h-1) of the exponential upper tail (..., ); 0 means a point mass."""
        x1, x2 = self.values[..., -2], self.values[..., -1]
        t1, t2 = self.levels[-2], self.levels[-1]
        return (x2 - x1) / np.log((1 - t1) / (1 - t2))

    def _broadcast_x(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.broadcast_to(x, np.broadcast_shapes(x.shape, self.batch_shape))

    # -- CDF and quantiles -----------------------------------------------------------
    def cdf(self, x) -> np.ndarray:
        """``P(R <= x)``; ``x`` broadcasts against the batch shape."""
        x = self._broadcast_x(x)
        v = np.broadcast_to(self.values, x.shape + (self.levels.size,))
        tau = self.levels
        # number of knots with value <= x (right-continuous CDF)
        k = np.sum(v <= x[..., None], axis=-1)
        q = tau.size
        kk = np.clip(k, 1, q - 1)
        xa = np.take_along_axis(v, (kk - 1)[..., None], -1)[..., 0]
        xb = np.take_along_axis(v, kk[..., None], -1)[..., 0]
        ta, tb = tau[kk - 1], tau[kk]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            inner = ta + (tb - ta) * np.where(xb > xa, (x - xa) / (xb - xa), 0.0)
            x0 = v[..., 0]
            lower = np.where(x < 0, 0.0, np.where(x0 > 0, tau[0] * x / x0, tau[0]))
            s = np.broadcast_to(self.tail_scale(), x.shape)
            xl = v[..., -1]
            upper = 1.0 - (1.0 - tau[-1]) * np.where(s > 0, np.exp(-(x - xl) / s), 0.0)
        out = np.where(k == 0, lower, np.where(k >= q, upper, inner))
        return np.where(np.broadcast_to(self.valid, x.shape) & ~np.isnan(x), out, np.nan)

    def prob_greater(self, threshold) -> np.ndarray:
        """``P(R > threshold)``."""
        return 1.0 - self.cdf(threshold)

    def pop(self) -> np.ndarray:
        """Probability of precipitation, ``P(R > 0.1 mm h-1)``."""
        return self.prob_greater(POP_THRESHOLD)

    def p_heavy(self) -> np.ndarray:
        """Probability of heavy rain, ``P(R > 10 mm h-1)``."""
        return self.prob_greater(HEAVY_THRESHOLD)

    def quantile(self, levels) -> np.ndarray:
        """Quantiles at ``levels`` (scalar or (L,)) -> (..., L) (or (...) for a scalar)."""
        p = np.asarray(levels, dtype=np.float64)
        scalar = p.ndim == 0
        p = np.atleast_1d(p)
        if np.any((p <= 0) | (p >= 1)):
            raise ValueError("levels must lie in (0, 1)")
        tau, v = self.levels, self.values
        # interior: linear interpolation of x against tau
        j = np.clip(np.searchsorted(tau, p, side="right"), 1, tau.size - 1)
        w = np.clip((p - tau[j - 1]) / (tau[j] - tau[j - 1]), 0.0, 1.0)
        inner = v[..., j - 1] * (1 - w) + v[..., j] * w
        lower = v[..., :1] * (p / tau[0])
        s = self.tail_scale()[..., None]
        upper = v[..., -1:] - s * np.log((1 - np.maximum(p, tau[-1])) / (1 - tau[-1]))
        out = np.where(p < tau[0], lower, np.where(p > tau[-1], upper, inner))
        return out[..., 0] if scalar else out

    def median(self) -> np.ndarray:
        return self.quantile(0.5)

    # -- moments and scores ------------------------------------------------------------
    def mean(self) -> np.ndarray:
        """Posterior mean ``E[R] = integral of x dF(x)`` over the piecewise-linear CDF + tails."""
        v, tau = self.values, self.levels
        lower = tau[0] * v[..., 0] / 2.0
        inner = np.sum(np.diff(tau) * (v[..., 1:] + v[..., :-1]) / 2.0, axis=-1)
        upper = (1 - tau[-1]) * (v[..., -1] + self.tail_scale())
        return lower + inner + upper

    def crps(self, obs) -> np.ndarray:
        """Continuous ranked probability score ``integral (F(x) - 1{x >= obs})^2 dx`` against
        observations ``obs`` (broadcasting with the batch shape), in closed form.

        Segments where the CDF is linear contribute ``(b - a)(F_a'^2 + F_a' F_b' + F_b'^2)/3``
        with ``F' = F - H``; the exponential tail is integrated analytically.
        """
        y = self._broadcast_x(obs)
        shape = y.shape
        v = np.broadcast_to(self.values, shape + (self.levels.size,))
        tau = self.levels
        zero = np.zeros(shape + (1,))
        # knots of the linear part: (0, 0), (x_0, tau_0), ..., (x_{Q-1}, tau_{Q-1})
        xs = np.concatenate([zero, v], axis=-1)
        fs = np.concatenate([[0.0], tau])
        a, b = xs[..., :-1], xs[..., 1:]
        fa, fb = fs[:-1], fs[1:]
        yc = np.clip(y[..., None], a, b)
        with np.errstate(invalid="ignore", divide="ignore"):
            fy = fa + (fb - fa) * np.where(b > a, (yc - a) / (b - a), 0.0)
        left = (yc - a) * (fa * fa + fa * fy + fy * fy) / 3.0
        fy1, fb1 = fy - 1.0, fb - 1.0
        right = (b - yc) * (fy1 * fy1 + fy1 * fb1 + fb1 * fb1) / 3.0
        total = np.sum(left + right, axis=-1)
        # below zero: F = 0, so (F - H)^2 = 1 on [y, 0) when y < 0
        total = total + np.maximum(-y, 0.0)
        # upper tail beyond xl with G = 1 - F = m exp(-(x - xl)/s)
        xl = v[..., -1]
        m = 1.0 - tau[-1]
        s = np.broadcast_to(self.tail_scale(), shape)
        d = np.maximum(y - xl, 0.0)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            e = np.where(s > 0, np.exp(-d / np.where(s > 0, s, 1.0)), 0.0)
        tail = d - 2.0 * m * s * (1.0 - e) + m * m * s / 2.0
        total = total + tail
        return np.where(np.broadcast_to(self.valid, shape) & ~np.isnan(y), total, np.nan)

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """``n`` random draws per distribution by inverse-CDF sampling; shape ``(n, *batch_shape)``."""
        rng = np.random.default_rng(rng)
        # quantile() takes levels shared over the batch; evaluate per draw with the inverse CDF
        return self.inverse_cdf(rng.random((n,) + self.batch_shape))

    def inverse_cdf(self, u) -> np.ndarray:
        """The inverse CDF at per-element probabilities ``u`` (``(n, *batch_shape)``, clipped into (0, 1)):
        draws at given uniforms, e.g. common random numbers shared by several forecasts."""
        return self._inverse_cdf(np.clip(np.asarray(u, np.float64), 1e-12, 1 - 1e-12))

    def _inverse_cdf(self, u: np.ndarray) -> np.ndarray:
        """Inverse CDF at per-element probabilities ``u`` (n, *batch_shape)."""
        tau, v = self.levels, self.values
        j = np.clip(np.searchsorted(tau, u, side="right"), 1, tau.size - 1)
        vb = np.broadcast_to(v, u.shape + (tau.size,))
        xa = np.take_along_axis(vb, (j - 1)[..., None], -1)[..., 0]
        xb = np.take_along_axis(vb, j[..., None], -1)[..., 0]
        w = np.clip((u - tau[j - 1]) / (tau[j] - tau[j - 1]), 0.0, 1.0)
        inner = xa * (1 - w) + xb * w
        lower = vb[..., 0] * (u / tau[0])
        s = np.broadcast_to(self.tail_scale(), u.shape)
        upper = vb[..., -1] - s * np.log((1 - np.maximum(u, tau[-1])) / (1 - tau[-1]))
        return np.where(u < tau[0], lower, np.where(u > tau[-1], upper, inner))


def _mean_weights(lv: np.ndarray) -> np.ndarray:
    """The posterior mean is linear in the quantile values: ``mean = values @ w``."""
    w = np.zeros(lv.size)
    dt = np.diff(lv)
    w[0] += lv[0] / 2
    w[:-1] += dt / 2
    w[1:] += dt / 2
    c = (1 - lv[-1]) / np.log((1 - lv[-2]) / (1 - lv[-1]))  # the tail's (1 - tau) * s term
    w[-1] += (1 - lv[-1]) + c
    w[-2] -= c
    return w


def _quantile_weights(lv: np.ndarray, p: float) -> np.ndarray:
    """The quantile at a fixed level is linear in the quantile values: ``q(p) = values @ a``."""
    a = np.zeros(lv.size)
    if p < lv[0]:
        a[0] = p / lv[0]
    elif p > lv[-1]:
        t = np.log((1 - p) / (1 - lv[-1])) / np.log((1 - lv[-2]) / (1 - lv[-1]))
        a[-1], a[-2] = 1 - t, t
    else:
        j = int(np.clip(np.searchsorted(lv, p, side="right"), 1, lv.size - 1))
        w = (p - lv[j - 1]) / (lv[j] - lv[j - 1])
        a[j - 1], a[j] = 1 - w, w
    return a


def derived_products(values, levels, axis: int = -1) -> dict[str, np.ndarray]:
    """The derived retrieval products from quantiles ``values`` (quantiles along ``axis``):
    ``precip_mean``, ``precip_median``, ``pop``, ``p_heavy`` as float32 numpy arrays (the other
    dims), NaN where any quantile is missing.

    Same definitions as :class:`QuantileDistribution` (tested equal). This runs on every
    retrieved orbit, so it is written for speed: one compiled pass (numba, float64 arithmetic)
    reads each pixel's quantiles once and writes all four products, split over
    ``torch.get_num_threads()`` threads. ``values`` may be a numpy array or a tensor; quantiles
    along the last axis of a C-contiguous float32 array are used without a copy."""
    lv = _as_levels(levels)
    if hasattr(values, "detach"):  # torch tensor
        values = values.detach().cpu()
        if values.dtype != __import__("torch").float32:
            values = values.float()
        values = values.numpy()
    v = np.asarray(values)
    if v.ndim < 1 or v.shape[axis] != lv.size:
        raise ValueError(f"values must have {lv.size} quantiles along axis {axis}, got shape {tuple(v.shape)}")
    v = np.ascontiguousarray(np.moveaxis(v, axis, -1), dtype=np.float32)
    shape = v.shape[:-1]
    return {k: a.reshape(shape) for k, a in _products_flat(v.reshape(-1, lv.size), lv).items()}


def _product_constants(lv: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    return _mean_weights(lv), _quantile_weights(lv, 0.5), float(np.log((1 - lv[-2]) / (1 - lv[-1])))


def _products_flat(v: np.ndarray, lv: np.ndarray, threads: int | None = None) -> dict[str, np.ndarray]:
    """Products of ``v`` (N, Q) float32 C-contiguous: one pass, rows shared among threads."""
    n = v.shape[0]
    out = np.empty((4, n), np.float32)
    crossed = np.zeros(n, np.bool_)
    wm, wq, log_tail = _product_constants(lv)
    _parallel_rows(n, lambda a, b: _products_kernel(v, lv, wm, wq, log_tail, POP_THRESHOLD, HEAVY_THRESHOLD,
                                                    out, crossed, a, b), threads)
    if crossed.any():
        raise ValueError("quantile values decrease along the quantile axis (quantiles cross) or are negative")
    return {"precip_mean": out[0], "precip_median": out[1], "pop": out[2], "p_heavy": out[3]}


def _parallel_rows(n: int, fn, threads: int | None = None, min_rows: int = 20000) -> None:
    """Call ``fn(start, stop)`` on ``threads`` contiguous slices of ``range(n)`` at once (the
    kernels release the GIL); ``threads`` defaults to torch's intra-op thread count."""
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    k = int(max(1, min(threads, n // min_rows)))
    if k == 1:
        fn(0, n)
        return

    cuts = np.linspace(0, n, k + 1).astype(int)
    with ThreadPoolExecutor(k) as ex:
        for f in [ex.submit(fn, int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]:
            f.result()


try:
    from numba import njit
except ImportError:  # pragma: no cover - numba is a pinned dependency
    def njit(*a, **k):
        return (lambda f: f) if not (a and callable(a[0])) else a[0]


@njit(cache=True, nogil=True, inline="always")
def _exceed(v, i, lv, x, log_tail):  # pragma: no cover - compiled
    """``1 - F(x)`` of row ``i`` (see :meth:`QuantileDistribution.cdf`), float64."""
    q = lv.size
    k = 0
    for j in range(q):
        if v[i, j] <= x:
            k += 1
    if k == 0:
        f = lv[0] * x / v[i, 0]  # v[i, 0] > x >= 0
    elif k >= q:
        s = (np.float64(v[i, q - 1]) - np.float64(v[i, q - 2])) / log_tail
        f = 1.0 - (1.0 - lv[q - 1]) * (np.exp(-(x - v[i, q - 1]) / s) if s > 0 else 0.0)
    else:
        xa, xb = np.float64(v[i, k - 1]), np.float64(v[i, k])
        gap = xb - xa
        f = lv[k - 1] + (lv[k] - lv[k - 1]) * ((x - xa) / gap if gap > 0 else 0.0)
    return min(max(1.0 - f, 0.0), 1.0)


@njit(cache=True, nogil=True)
def _products_kernel(v, lv, wm, wq, log_tail, pop_x, heavy_x, out, crossed, start, stop):  # pragma: no cover
    q = lv.size
    for i in range(start, stop):
        ok = True
        cross = False
        mean = 0.0
        median = 0.0
        prev = 0.0
        for j in range(q):
            x = np.float64(v[i, j])
            if not np.isfinite(x):
                ok = False
                break
            if x < prev:  # negative first value or a decrease
                cross = True
            prev = x
            mean += wm[j] * x
            median += wq[j] * x
        if not ok:
            out[0, i] = out[1, i] = out[2, i] = out[3, i] = np.nan
            continue
        if cross:
            crossed[i] = True
            continue
        out[0, i] = mean
        out[1, i] = median
        out[2, i] = _exceed(v, i, lv, pop_x, log_tail)
        out[3, i] = _exceed(v, i, lv, heavy_x, log_tail)

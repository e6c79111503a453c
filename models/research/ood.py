"""Out-of-distribution scores from the U-Net's encoder features.

Features per pixel: the normalised input Tb (radiometric shifts), the first encoder block's output
(full resolution, local texture) and the bottleneck's output (1/2**depth resolution,
nearest-upsampled: scene context), concatenated. A Gaussian is fitted to features of training pixels (mean, Ledoit-Wolf-style shrunk
covariance); the raw score is the squared Mahalanobis distance ``d2``. Calibration on held-out
*in-distribution* data (the validation year) turns it into a score in [0, 1]: the fraction of
in-distribution pixels with a smaller ``d2`` (an empirical CDF; > 0.95 means "further out than 95 %
of in-distribution pixels"). A scene score is the mean ``log d2`` over its valid pixels, calibrated
the same way on in-distribution windows.

:func:`auroc` and :func:`fpr_at_tpr` evaluate a score where the truth of "out of distribution" is
known (positives = OOD).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from models.inference import invalid_tb_mask
from models.unet import QuantileUNet
from models.unet import pad_cross as _pad_cross

N_CALIB = 1001  # calibration quantiles stored


@torch.no_grad()
def encoder_features(net: QuantileUNet, tb: torch.Tensor) -> torch.Tensor:
    """(B, 13, H, W) Tb (H, W multiples of ``net.multiple``) -> (B, D, H, W) features."""
    x = net.normalise(tb).to(net.head.weight.dtype)
    inp = x
    first = None
    for block in net.enc:
        x = block(x)
        if first is None:
            first = x
        x = F.max_pool2d(x, 2)
    bottom = net.bottom(x)
    up = F.interpolate(bottom, size=first.shape[-2:], mode="nearest")
    return torch.cat([inp, first, up], dim=1).float()


class MahalanobisOOD:
    """Mahalanobis OOD detector on :func:`encoder_features` of a U-Net."""

    def __init__(self, mean, precision, pixel_calib, scene_calib):
        self.mean = torch.as_tensor(mean, dtype=torch.float32)
        self.precision = torch.as_tensor(precision, dtype=torch.float32)
        self.pixel_calib = np.asarray(pixel_calib, np.float64)  # sorted quantiles of log d2
        self.scene_calib = np.asarray(scene_calib, np.float64)

    # -- fitting -------------------------------------------------------------------------
    @staticmethod
    def fit_gaussian(feats: np.ndarray, shrinkage: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
        """Mean and precision of feature vectors (N, D), covariance shrunk towards
        ``trace/D * I`` by ``shrinkage``."""
        f = np.asarray(feats, np.float64)
        mu = f.mean(0)
        c = np.cov(f - mu, rowvar=False)
        d = c.shape[0]
        c = (1 - shrinkage) * c + shrinkage * np.trace(c) / d * np.eye(d)
        return mu, np.linalg.inv(c)

    @classmethod
    def fit(cls, net: QuantileUNet, train_tb: np.ndarray, calib_tb: np.ndarray, *, max_pixels: int = 200_000,
            shrinkage: float = 0.05, window: int = 128, seed: int = 0, batch: int = 4) -> "MahalanobisOOD":
        """Fit on training scenes ``train_tb`` (N, A, C, 13) and calibrate on held-out
        in-distribution scenes ``calib_tb``."""
        rng = np.random.default_rng(seed)
        feats = []
        per_scene = max(1, max_pixels // max(1, train_tb.shape[0]))
        for f, ok in _iter_features(net, train_tb, batch):
            idx = np.flatnonzero(ok)
            pick = rng.choice(idx, min(per_scene, idx.size), replace=False) if idx.size else idx
            feats.append(f.reshape(f.shape[0], -1)[:, pick].T)
        mu, prec = cls.fit_gaussian(np.concatenate(feats), shrinkage)
        det = cls(mu, prec, np.zeros(2), np.zeros(2))
        pix, scn = [], []
        for f, ok in _iter_features(net, calib_tb, batch):
            ld = np.log(det._d2(torch.from_numpy(f)[None]).numpy()[0])
            pix.append(ld[ok][rng.choice(int(ok.sum()), min(int(ok.sum()), 20000), replace=False)])
            scn.extend(_window_means(ld, ok, window))
        det.pixel_calib = np.quantile(np.concatenate(pix), np.linspace(0, 1, N_CALIB))
        det.scene_calib = np.sort(np.asarray(scn, np.float64))
        return det

    # -- scoring ---------------------------------------------------------------------------
    def _d2(self, f: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance (B, H, W) of features (B, D, H, W)."""
        b, d, h, w = f.shape
        z = (f - self.mean.to(f)[None, :, None, None]).reshape(b, d, h * w)
        pz = torch.matmul(self.precision.to(f), z)
        return (z * pz).sum(1).reshape(b, h, w).clamp_min(1e-12)

    @torch.no_grad()
    def raw_scores(self, net: QuantileUNet, tb: torch.Tensor) -> torch.Tensor:
        """log d2 (B, H, W) for Tb (B, 13, H, W)."""
        return torch.log(self._d2(encoder_features(net, tb)))

    def calibrate_pixels(self, log_d2) -> np.ndarray:
        """Empirical CDF of in-distribution pixels at ``log_d2`` (score in [0, 1])."""
        c = self.pixel_calib
        return np.interp(np.asarray(log_d2, np.float64), c, np.linspace(0, 1, c.size), left=0.0, right=1.0)

    def calibrate_scenes(self, mean_log_d2) -> np.ndarray:
        c = self.scene_calib
        x = np.asarray(mean_log_d2, np.float64)
        return np.searchsorted(c, x, side="right") / max(c.size, 1)

    @torch.no_grad()
    def pixel_scores(self, net: QuantileUNet, tb: torch.Tensor) -> torch.Tensor:
        """Calibrated per-pixel OOD score (B, H, W) in [0, 1] (NaN where Tb are missing)."""
        ld = self.raw_scores(net, tb)
        s = torch.from_numpy(self.calibrate_pixels(ld.cpu().numpy()).astype(np.float32))
        bad = ~torch.isfinite(tb).all(1)
        return torch.where(bad.cpu(), torch.full_like(s, float("nan")), s)

    def scene_score(self, log_d2: np.ndarray, valid: np.ndarray | None = None) -> float:
        ld = np.asarray(log_d2, np.float64)
        ok = np.isfinite(ld) if valid is None else (valid & np.isfinite(ld))
        return float(self.calibrate_scenes(ld[ok].mean())) if ok.any() else float("nan")

    # -- persistence -------------------------------------------------------------------------
    def tensors(self, prefix: str = "ood.") -> dict[str, torch.Tensor]:
        return {f"{prefix}mean": self.mean, f"{prefix}precision": self.precision,
                f"{prefix}pixel_calib": torch.from_numpy(self.pixel_calib.astype(np.float64)),
                f"{prefix}scene_calib": torch.from_numpy(self.scene_calib.astype(np.float64))}

    @classmethod
    def from_tensors(cls, t: dict, prefix: str = "ood.") -> "MahalanobisOOD":
        return cls(t[f"{prefix}mean"], t[f"{prefix}precision"], t[f"{prefix}pixel_calib"].numpy(),
                   t[f"{prefix}scene_calib"].numpy())


def _iter_features(net: QuantileUNet, tc: np.ndarray, batch: int):
    """Yield (features (D, A, C) numpy, valid (A, C)) per scene of ``tc`` (N, A, C, 13)."""
    net = net.eval()
    for i in range(0, tc.shape[0], batch):
        part = np.asarray(tc[i:i + batch], np.float32)
        a, c = part.shape[1:3]
        x = _pad_cross(torch.from_numpy(part).permute(0, 3, 1, 2), net.multiple)
        f = encoder_features(net, x)[:, :, :a, :c].numpy()
        for k in range(part.shape[0]):
            yield f[k], ~invalid_tb_mask(part[k])


def _window_means(ld: np.ndarray, ok: np.ndarray, window: int) -> list[float]:
    out = []
    for i in range(0, max(1, ld.shape[0] - window + 1), window):
        for j in range(0, max(1, ld.shape[1] - window + 1), window):
            m = ok[i:i + window, j:j + window]
            if m.sum() > 0.5 * m.size:
                out.append(float(ld[i:i + window, j:j + window][m].mean()))
    return out


# --------------------------------------------------------------------------- evaluation
def auroc(score_in, score_out) -> float:
    """Area under the ROC curve for separating ``score_out`` (positives) from ``score_in``
    (Mann-Whitney U with ties counted half)."""
    a = np.asarray(score_in, np.float64).ravel()
    b = np.asarray(score_out, np.float64).ravel()
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if not a.size or not b.size:
        return float("nan")
    allv = np.concatenate([a, b])
    from scipy.stats import rankdata

    r = rankdata(allv)
    u = r[a.size:].sum() - b.size * (b.size + 1) / 2
    return float(u / (a.size * b.size))


def fpr_at_tpr(score_in, score_out, tpr: float = 0.95) -> float:
    """False-positive rate (in-distribution flagged) at the threshold that flags ``tpr`` of the
    OOD positives (score >= threshold means flagged)."""
    a = np.asarray(score_in, np.float64).ravel()
    b = np.asarray(score_out, np.float64).ravel()
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if not a.size or not b.size:
        return float("nan")
    b = np.sort(b)
    thr = b[min(int(np.floor((1 - tpr) * b.size + 1e-9)), b.size - 1)]  # >= tpr of positives are >= thr
    return float(np.mean(a >= thr))

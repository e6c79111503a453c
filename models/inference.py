"""Fast on-demand inference on whole orbits.

- :func:`choose_device` picks CUDA, then MPS, then CPU (or what the user asked for) in one place.
- :func:`predict_swath` is a pure function: canonical swath in, canonical retrieval out. It tiles
  the orbit along track with overlap, runs tiles in batches and blends them with weights that
  are zero within the model's receptive margin of a tile edge and ramp linearly across the rest
  of the overlap, so the result equals a single pass (no seams). Pixels with missing or invalid
  Tb give NaN. On GPU it uses channels-last and bf16/fp16 autocast; a CUDA out-of-memory halves
  the batch, then falls back to the CPU, with a message.

Orbits and the output store (:func:`models.run.run_inference`) are one level up, in
:mod:`models.run`, beside the registry that loads the models; this module knows models only as
a :class:`Predictor` (every :class:`models.base.Retriever` is one), so the model classes can use it.
"""

from __future__ import annotations

import logging
import math
import platform
import threading
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
import xarray as xr

from catalogs import schema
from models.conditioning import swath_gmst
from models.errors import InferenceCancelled, ModelError
from models.quantiles import _parallel_rows, derived_products

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]


class Predictor(Protocol):
    """What tiled inference reads of a model: :class:`models.base.Retriever` (which calls
    :func:`predict_swath` from its ``predict``) and its subclasses."""

    name: str
    kind: str
    levels: np.ndarray
    sha256: str
    multiple: int
    overlap_margin: int

    def predict_batch(self, tb: torch.Tensor) -> torch.Tensor: ...

    def to(self, device: torch.device) -> Predictor: ...

    @property
    def device(self) -> torch.device: ...


# -- device -------------------------------------------------------------------------------
def choose_device(pref: str = "auto") -> torch.device:
    """``"auto"``: CUDA if available, then MPS, then CPU; or exactly ``"cpu"``/``"cuda"``/``"mps"``
    (a clear :class:`ModelError` if that device is not available)."""
    pref = (pref or "auto").lower()
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if has_mps:
            return torch.device("mps")
        return torch.device("cpu")
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelError("device 'cuda' requested but no CUDA GPU is available (use --device auto or cpu)")
        return torch.device(pref)
    if pref == "mps":
        if not has_mps:
            raise ModelError("device 'mps' requested but MPS is not available")
        return torch.device("mps")
    if pref == "cpu":
        return torch.device("cpu")
    raise ModelError(f"unknown device {pref!r}; use auto, cpu, cuda or mps")


def device_name(device: torch.device) -> str:
    """Human-readable description of a device, for reports."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return "mps (Apple GPU)"
    cpu = platform.processor() or platform.machine()
    return f"cpu ({cpu}, {torch.get_num_threads()} threads)"


# -- tiling -------------------------------------------------------------------------------
def plan_tiles(n_rows: int, tile: int, overlap: int, multiple: int) -> list[int]:
    """Start rows of tiles of length ``tile`` covering ``n_rows`` (a multiple of ``multiple``)
    with at least ``overlap`` rows shared between neighbours; every start is a multiple of
    ``multiple`` and the last tile ends at ``n_rows``."""
    if tile >= n_rows:
        return [0]
    step = max(multiple, (tile - overlap) // multiple * multiple)
    starts = list(range(0, n_rows - tile, step))
    starts.append(n_rows - tile)
    return sorted(set(starts))


def tile_weights(length: int, first: bool, last: bool, margin: int, overlap: int) -> np.ndarray:
    """Blending weights along one tile: 0 within ``margin`` of an interior edge, then a linear
    ramp up to 1 at ``overlap - margin`` from that edge."""
    w = np.ones(length, np.float32)
    if overlap <= 0:
        return w
    ramp_len = max(overlap - 2 * margin, 1)
    d = np.arange(length, dtype=np.float32)
    ramp = np.clip((d - margin + 1) / (ramp_len + 1), 0.0, 1.0)
    if not first:
        w = np.minimum(w, ramp)
    if not last:
        w = np.minimum(w, ramp[::-1])
    return w


def _pad_to(n: int, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple)


def invalid_tb_mask(tc: np.ndarray) -> np.ndarray:
    """(A, C) True where any channel is missing, non-finite or outside the physical range."""
    lo, hi = schema.TB_VALID_RANGE
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(tc) | (tc < lo) | (tc > hi)
    return bad.any(axis=-1)


def _default_batch(device: torch.device, tile_pixels: int, retriever: Predictor, n_tiles: int) -> int:
    if device.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(device)
        except Exception:  # pragma: no cover - old drivers
            free = 2 * 1024**3
        per_tile = tile_pixels * getattr(retriever, "bytes_per_pixel", 4096)
        return int(max(1, min(n_tiles, 0.5 * free // max(per_tile, 1))))
    return int(max(1, min(n_tiles, getattr(retriever, "cpu_batch_tiles", 2))))


def tile_plan(retriever: Predictor, rows: int, tile_scans: int | None = None,
              overlap: int | None = None) -> tuple[int, int, list[int]]:
    """``(tile_len, overlap, starts)``: the along-track tiles :func:`predict_swath` runs on a
    padded swath of ``rows`` scans (the card's ``inference.tile_scans`` and ``overlap`` unless
    given): the fewest tiles of at most ~``tile_scans`` scans, rows shared evenly."""
    mult = retriever.multiple
    margin = retriever.overlap_margin
    cfg = getattr(retriever, "inference_config", {}) or {}
    tile = _pad_to(tile_scans or cfg.get("tile_scans", 768), mult)
    ov = overlap if overlap is not None else cfg.get("overlap", 2 * margin + 32)
    ov = max(ov, 2 * margin + 2) if margin else ov
    tile = max(tile, _pad_to(2 * ov + mult, mult))  # a tile advances by at least `overlap`
    n_tiles = 1 if tile >= rows else math.ceil((rows - ov) / max(tile - ov, mult))
    tile_len = rows if n_tiles == 1 else min(rows, _pad_to(math.ceil((rows + (n_tiles - 1) * ov) / n_tiles), mult))
    return tile_len, ov, plan_tiles(rows, tile_len, ov, mult)


def _check_swath(retriever: Predictor, swath: xr.Dataset, validate: bool) -> None:
    if "Tc" not in swath:
        raise ModelError("swath has no 'Tc' brightness temperatures")
    n_chan = swath.sizes.get(schema.FREQ, swath["Tc"].shape[-1])
    if n_chan != schema.N_CHANNELS:
        raise ModelError(f"model {retriever.name!r} needs the {schema.N_CHANNELS} GMI channels; "
                         f"the swath has {n_chan} channels along 'pmw_frequency'")
    if validate:
        schema.validate(swath, "swath")


def predict_quantiles(
    retriever: Predictor,
    swath: xr.Dataset,
    *,
    device: str | torch.device | None = None,
    tile_scans: int | None = None,
    overlap: int | None = None,
    batch_tiles: int | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    validate: bool = True,
    precision: str | None = None,
) -> tuple[np.ndarray, dict]:
    """The network part of :func:`predict_swath`: quantiles (along, cross, Q) float32, NaN where
    the Tb are invalid, and a dict with ``device`` (the one used at the end) and, for
    GMST-conditioned models, ``gmst`` and ``gmst_source``. Same arguments as :func:`predict_swath`."""
    _check_swath(retriever, swath, validate)
    dev = torch.device(device) if device is not None else retriever.device
    tc = np.asarray(swath["Tc"].transpose(schema.ALONG, schema.CROSS, schema.FREQ).values, np.float32)
    bad = invalid_tb_mask(tc)
    n_along, n_cross = tc.shape[:2]
    mult = retriever.multiple
    rows, cols = _pad_to(n_along, mult), _pad_to(n_cross, mult)
    # the padded input in (along, cross, channel) memory order: its (13, rows, cols) view is
    # channels-last already, and so is every along-track tile of it (no layout copies)
    xh = np.full((rows, cols, schema.N_CHANNELS), np.nan, np.float32)
    xh[:n_along, :n_cross] = tc
    xh[:n_along, :n_cross][bad] = np.nan
    x = torch.from_numpy(xh).permute(2, 0, 1)
    margin = retriever.overlap_margin
    tile_len, ov, starts = tile_plan(retriever, rows, tile_scans, overlap)
    # climate conditioning (GMST-conditioned models only): ΔT of the orbit and where it came from
    meta: dict = {}
    gmst = None
    if getattr(retriever, "gmst_conditioned", False):
        gmst, meta["gmst_source"] = swath_gmst(swath)
        meta["gmst"] = gmst
    n_q = len(retriever.levels)
    # blended quantiles (rows, cross, Q): each pixel's quantiles contiguous, as the products read them
    # (only the swath's columns: the leading rows of it are then the result, without a copy)
    acc = np.empty((rows, n_cross, n_q), np.float32)
    wsum = np.zeros(rows, np.float32)
    increments = hasattr(retriever, "predict_batch_increments")
    batch = batch_tiles or _default_batch(dev, tile_len * cols, retriever, len(starts))
    retriever = retriever.to(dev)
    done = 0
    filled = 0  # rows of acc written so far (tiles come in order of their start)
    i = 0
    while i < len(starts):
        if cancel is not None and cancel.is_set():
            raise InferenceCancelled("inference cancelled")
        group = starts[i:i + batch]
        xb = x[None, :, group[0]:group[0] + tile_len] if len(group) == 1 else \
            torch.stack([x[:, s:s + tile_len] for s in group]).contiguous(memory_format=torch.channels_last)
        try:
            yb = _run_batch(retriever, xb, dev, precision, gmst=gmst, increments=increments)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if batch > 1:
                batch = max(1, batch // 2)
                msg = f"CUDA out of memory: retrying with {batch} tile(s) per batch"
            else:
                dev = torch.device("cpu")
                retriever = retriever.to(dev)
                msg = "CUDA out of memory with one tile: falling back to the CPU"
            log.warning(msg)
            if progress:
                progress(done, len(starts), msg)
            continue
        for k, s in enumerate(group):
            w = tile_weights(tile_len, s == 0, s + tile_len >= rows, margin, ov)
            y = yb[k].permute(1, 2, 0).contiguous().numpy()  # (tile, cols, Q); no copy if channels-last
            # a row's first contribution is assigned, later ones are added
            _blend_tile(y, acc, w, s, min(max(filled - s, 0), tile_len), increments)
            wsum[s:s + tile_len] += w
            filled = s + tile_len
        done += len(group)
        i += len(group)
        if progress:
            progress(done, len(starts), f"tiles on {dev.type}")
    # Blending is a convex combination of non-decreasing vectors with the same weights for every
    # quantile, and rounding is monotone, so the result is still exactly non-decreasing.
    q = acc[:n_along]  # C-contiguous view
    if len(starts) > 1:  # (one tile: every weight is 1, the blend is the tile itself)
        q /= wsum[:n_along, None, None]
    q[bad] = np.nan
    meta["device"] = dev
    return q, meta


def predict_swath(
    retriever: Predictor,
    swath: xr.Dataset,
    *,
    device: str | torch.device | None = None,
    tile_scans: int | None = None,
    overlap: int | None = None,
    batch_tiles: int | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    validate: bool = True,
    precision: str | None = None,
) -> xr.Dataset:
    """Run ``retriever`` on a canonical swath of any length; return the canonical retrieval
    dataset (quantiles + mean, median, PoP, P(heavy)), NaN where the Tb are invalid.

    ``precision``: ``"fp32"`` or ``"bf16"`` (autocast) for the network; default: bf16/fp16 on
    CUDA, and on CPU bf16 only where the model's card enables it (``inference.cpu_bf16``) and the
    CPU has native bf16 support, else fp32."""
    q, meta = predict_quantiles(retriever, swath, device=device, tile_scans=tile_scans, overlap=overlap,
                                batch_tiles=batch_tiles, progress=progress, cancel=cancel, validate=validate,
                                precision=precision)
    prods = derived_products(q, retriever.levels, axis=-1)
    ds = make_retrieval(swath, q, retriever, prods)
    if "gmst" in meta:
        ds.attrs["gmst_anomaly_K_used"] = float(meta["gmst"])
        ds.attrs["gmst_anomaly_source"] = meta["gmst_source"]
    extra = getattr(retriever, "extra_layers", None)  # e.g. the flow model's ood_score layer
    if extra is not None:
        ds = extra(swath, ds, device=meta["device"], progress=progress, cancel=cancel)
    return ds


def _blend_tile(y: np.ndarray, acc: np.ndarray, w: np.ndarray, start: int, n_add: int, increments: bool) -> None:
    """``acc[start + r] (+)= w[r] * y[r]`` for the rows of one tile output ``y`` (L, cols, Q), the
    first ``acc.shape[1]`` columns (the padding columns are dropped):
    rows ``r < n_add`` already hold a contribution and are added to, the others are assigned.
    ``increments``: ``y`` holds quantile increments, summed along Q first (the network's
    monotone head, done here in the same pass). Rows are shared among torch's threads."""
    w = np.ascontiguousarray(w, np.float32)
    _parallel_rows(y.shape[0], lambda a, b: _blend_kernel(y, acc, w, start, n_add, increments, a, b), min_rows=64)


try:
    from numba import njit
except ImportError:  # pragma: no cover - numba is a pinned dependency
    def njit(*a, **k):
        return lambda f: f


@njit(cache=True, nogil=True)
def _blend_kernel(y, acc, w, start, n_add, increments, r0, r1):  # pragma: no cover - compiled
    n_c, n_q = acc.shape[1], y.shape[2]
    for r in range(r0, r1):
        wr = w[r]
        add = r < n_add
        if add and wr == 0:
            continue
        for c in range(n_c):
            cum = 0.0
            for k in range(n_q):
                if increments:
                    cum += y[r, c, k]
                    v = np.float32(cum)
                else:
                    v = y[r, c, k]
                if add:
                    acc[start + r, c, k] += wr * v
                else:
                    acc[start + r, c, k] = wr * v


def cpu_bf16_supported() -> bool:
    """Whether this CPU runs bf16 convolutions natively (AVX512-BF16 / AMX via oneDNN)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # pragma: no cover - builds without oneDNN
        return False


@torch.inference_mode()
def _run_batch(retriever: Predictor, xb: torch.Tensor, dev: torch.device, precision: str | None = None,
               gmst: float | None = None, increments: bool = False) -> torch.Tensor:
    """The network on one batch of tiles, as float32 on the CPU: quantiles, or with
    ``increments`` (retrievers with ``predict_batch_increments``) their increments."""
    xb = xb.to(dev, non_blocking=True)
    kw = {} if gmst is None else {"gmst": gmst}  # only GMST-conditioned models take it
    predict = retriever.predict_batch_increments if increments else retriever.predict_batch
    if precision not in (None, "fp32", "bf16"):
        raise ModelError(f"unknown precision {precision!r}; use fp32 or bf16")
    if dev.type == "cuda":
        xb = xb.contiguous(memory_format=torch.channels_last)
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        with torch.autocast("cuda", dtype=dtype, enabled=precision != "fp32"):
            y = predict(xb, **kw)
    else:
        if getattr(retriever, "channels_last", False):
            xb = xb.contiguous(memory_format=torch.channels_last)
        bf16 = precision == "bf16" or (precision is None and getattr(retriever, "cpu_bf16", False))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(bf16 and dev.type == "cpu")):
            y = predict(xb, **kw)
    return y.float().cpu()


def make_retrieval(swath: xr.Dataset, q: np.ndarray, retriever: Predictor, prods: dict | None = None) -> xr.Dataset:
    """Canonical retrieval dataset from quantiles ``q`` (A, C, Q) on the swath's grid."""
    levels = np.asarray(retriever.levels, np.float64)
    q = np.asarray(q, np.float32)  # no copy when it is float32 already
    if prods is None:
        prods = derived_products(q, levels)
    dims2 = (schema.ALONG, schema.CROSS)
    data = {
        "precip_quantiles": (dims2 + (schema.QUANTILE,), q, {
            "units": schema.RAIN_UNITS, "long_name": "quantiles of the posterior surface precipitation rate"}),
    }
    for name, arr in prods.items():
        units, long_name = schema.RETRIEVAL_PRODUCTS[name]
        data[name] = (dims2, arr, {"units": units, "long_name": long_name})
    coords = {c: swath[c] for c in ("lat", "lon", "time")}
    coords[schema.QUANTILE] = (schema.QUANTILE, levels, {"long_name": "quantile level"})
    attrs = {k: swath.attrs[k] for k in ("orbit_number", "sensor", "platform", "source") if k in swath.attrs}
    attrs.update({
        "Conventions": "CF-1.10",
        "title": f"{retriever.name} retrieval, orbit {swath.attrs.get('orbit_number')}",
        "model": retriever.name,
        "model_kind": retriever.kind,
        "model_sha256": retriever.sha256,
    })
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    return schema.validate(ds, "retrieval")

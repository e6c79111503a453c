"""A real PPS granule through a registered model into the output store, with its OOD score.

One path for ``raincheck infer --granule`` and the app's Run on a granule, so both store the
result in the same place (:func:`models.run.run_inference`: keyed by the model's checkpoint and
the granule file's content sha256, not its path) and each finds the other's result as a cache hit.

- :func:`check_granule`: what may be run: the file name must be an official PPS name of a
  product with brightness temperatures, the path must lie under the configured data roots
  (:meth:`catalogs.config.Roots.confine`) and exist. 1C-GMI Tb are observed; 2B-CMB carries 13
  Tb *simulated* from the combined radar-radiometer profiles, accepted only where the caller says
  so (the command line keeps accepting them; the app refuses them);
- :func:`add_ood_score`: the ``ood_score`` layer (units 1, in [0, 1]) of any model's retrieval,
  from the Mahalanobis detector shipped with ``flow-residual`` (:mod:`models.research.ood`: the
  fraction of in-distribution, synthetic validation-year pixels whose encoder features lie closer
  to the training mean); the shipped models are trained on synthetic Tb, so on real Tb it says
  how far outside that domain each pixel is;
- :func:`run_granule`: both, plus ``run_inference``; the granule is read only when the result
  is not in the store yet.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from catalogs.config import get_roots
from catalogs.gpm import GranuleError, GranuleInfo, open_granule, parse_granule_name
from catalogs.store import open_dataset
from models.errors import InferenceCancelled, ModelError
from models.inference import Progress
from models.run import run_inference

#: Products whose brightness temperatures are observed: a model may run on them.
OBSERVED_TB = ("1C-GMI",)
#: Products whose 13 Tb are simulated (2B-CMB: from the retrieved profiles), not observed.
SIMULATED_TB = ("2B-CMB",)
#: The model whose shipped OOD detector scores every real-granule retrieval.
DETECTOR = "flow-residual"


@dataclass(frozen=True)
class GranuleInput:
    """A granule that passed :func:`check_granule`: its confined, resolved ``path`` and what its
    file name says (``info``)."""

    path: Path
    info: GranuleInfo

    @property
    def orbit(self) -> int:
        return int(self.info.orbit)

    @property
    def product(self) -> str:
        return self.info.product

    @property
    def source(self) -> str:
        """The folder of its outputs in the store (``pps-1C-GMI``)."""
        return f"pps-{self.info.product}"

    def open(self) -> xr.Dataset:
        return open_granule(self.path)


def refusal(info: GranuleInfo, allow_simulated_tb: bool = False) -> str | None:
    """Why a model may not run on a granule of ``info``'s product, or None."""
    if info.product in OBSERVED_TB or (allow_simulated_tb and info.product in SIMULATED_TB):
        return None
    if info.product in SIMULATED_TB:
        return (f"{info.filename} is a {info.product} granule: its brightness temperatures are simulated from the "
                "combined radar-radiometer profiles, not observed, so a retrieval run on them says nothing about "
                f"the model on real Tb; run it on the 1C-GMI granule of orbit {info.orbit} instead "
                "(`raincheck infer --granule` accepts 2B-CMB's simulated Tb)")
    want = "1C-GMI" + (", or 2B-CMB's simulated Tb" if allow_simulated_tb else "")
    return (f"{info.filename} is a {info.product} granule; inference needs brightness temperatures "
            f"(a {want} granule)")


def check_granule(path: str | Path, *, allow_simulated_tb: bool = False) -> GranuleInput:
    """The granule at ``path`` if a model may run on it, else :class:`catalogs.gpm.GranuleError`
    (not a PPS file name, a product without Tb, no such file) or
    :class:`catalogs.config.PathOutsideRoots` (outside the data roots): nothing is read."""
    info = parse_granule_name(path)
    why = refusal(info, allow_simulated_tb)
    if why:
        raise GranuleError(why)
    p = get_roots().confine(path)
    if not p.is_file():
        raise GranuleError(f"{info.filename}: no such file under the data roots")
    return GranuleInput(p, info)


def add_ood_score(swath: xr.Dataset, ds: xr.Dataset, *, detector: str = DETECTOR, device=None,
                  progress: Progress | None = None, cancel: threading.Event | None = None) -> xr.Dataset:
    """``ds`` (a retrieval of ``swath``) with an ``ood_score`` layer from ``detector``'s shipped
    Mahalanobis detector (kept as it is when ``ds`` has one: the flow model scores itself).
    A detector that cannot be loaded leaves no layer and says why in ``ds.attrs["ood_score_missing"]``
    (the retrieval itself is still good)."""
    from models.registry import load_model
    from models.research.flow import add_ood_layer

    if "ood_score" in ds:
        return ds
    try:
        det = load_model(detector)
        if getattr(det, "ood", None) is None:
            raise ModelError(f"model {detector!r} ships no OOD detector")
    except ModelError as e:
        ds = ds.copy()
        ds.attrs["ood_score_missing"] = f"no OOD score: {e}"
        return ds

    def step(done, total, message=""):
        progress(done, total, f"OOD score: {message}" if message else "OOD score")

    out = add_ood_layer(det, swath, ds, device=device, progress=step if progress else None, cancel=cancel)
    out["ood_score"].attrs.update(detector=detector, detector_sha256=str(det.sha256))
    return out


def run_granule(model: str, granule: str | Path, *, device: str = "auto", progress: Progress | None = None,
                cancel: threading.Event | None = None, info: dict | None = None, allow_simulated_tb: bool = False,
                detector: str = DETECTOR) -> Path:
    """Retrieve the real granule at ``granule`` with the registered ``model`` (plus its
    ``ood_score``, :func:`add_ood_score`) into the output store and return the store's path; a
    complete store for the same checkpoint and granule content is a cache hit (the file is not
    read). ``info`` gets :func:`models.run.run_inference`'s keys plus ``orbit``, ``product`` and
    ``valid_pixels`` (pixels with a retrieval, i.e. all 13 Tb valid)."""
    info = info if info is not None else {}
    g = check_granule(granule, allow_simulated_tb=allow_simulated_tb)
    if cancel is not None and cancel.is_set():
        raise InferenceCancelled("inference cancelled")
    info.update(orbit=g.orbit, product=g.product)

    def extra(swath, ds, **kw):
        return add_ood_score(swath, ds, detector=detector, **kw)

    path = run_inference(model, g.orbit, source=g.source, device=device, progress=progress, cancel=cancel,
                         info=info, swath=g.open, granule=g.path, extra=extra)
    out = open_dataset(path)
    try:
        info["valid_pixels"] = int(np.isfinite(out["precip_mean"].values).sum())
    finally:
        out.close()
    return path

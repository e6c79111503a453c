"""What every retrieval model offers: a :class:`Retriever` with quantile levels and a batch
predictor, and :class:`ModelError` for problems a user should read."""

from __future__ import annotations

import numpy as np
import torch

from models.errors import InferenceCancelled, ModelError
from models.inference import predict_swath

__all__ = ["InferenceCancelled", "ModelError", "Retriever"]


class Retriever:
    """A loaded model. Subclasses implement :meth:`predict_batch`.

    Attributes: ``name``, ``card`` (:class:`models.registry.ModelCard` or None), ``levels``
    (Q,) quantile levels, ``sha256`` of the checkpoint, ``multiple`` (spatial sizes of a batch
    must be multiples of it), ``overlap_margin`` (rows at a tile edge that may differ from a
    single pass; 0 for per-pixel models).
    """

    name: str = "retriever"
    kind: str = "base"
    levels: np.ndarray
    sha256: str = ""
    card = None
    multiple: int = 1
    overlap_margin: int = 0

    def predict_batch(self, tb: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        """(B, 13, H, W) Tb in K (NaN where missing) -> (B, Q, H, W) non-decreasing quantiles."""
        raise NotImplementedError

    def to(self, device: torch.device) -> "Retriever":
        return self

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def predict(self, swath, **kw):
        """Retrieval dataset (canonical ``retrieval`` schema) for a canonical swath."""
        return predict_swath(self, swath, **kw)

"""What the distributions, extremes and scores views answer (their ``compute``), as frozen
dataclasses read by attribute: the curves and tables to draw (pandas), the notes, the baseline,
the cube query, the models and the cube that answered, and the box plan when a box cube did.

``to_dict()`` gives the dict these views returned before (the query and the box plan as their
dicts); every answer also reads as that dict (``res["table"]``) for code written against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import pandas as pd

from evaluation.results import BoxPlan, CubeQuery, DictAccess

__all__ = ["CurvesAnswer", "DistributionsAnswer", "ExtremesAnswer", "ScoresAnswer"]


def _plain(v):
    return v.to_dict() if isinstance(v, (CubeQuery, BoxPlan)) else v


@dataclass(frozen=True, eq=False)
class _Answer(DictAccess):
    notes: list[str]
    query: CubeQuery
    models: list[str]
    cube: str
    box: BoxPlan | None

    _ORDER: ClassVar[tuple] = ()

    def to_dict(self) -> dict:
        return {k: _plain(getattr(self, k)) for k in self._ORDER}

    def _compat(self, key: str):
        return getattr(self, key)


@dataclass(frozen=True, eq=False)
class CurvesAnswer(_Answer):
    """Curves (long table: curve, source, rate_mm_h, value, …) and a per-source table, against
    ``baseline`` (``reference`` on the strip, ``truth`` on all pixels)."""

    curves: pd.DataFrame = field(default_factory=pd.DataFrame)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    baseline: str = "reference"
    strip: bool = True


@dataclass(frozen=True, eq=False)
class DistributionsAnswer(CurvesAnswer):
    """The distributions view: PDF, CDF and Q-Q curves; per source pixels, mean, wet fraction,
    q99, q99.9, Wasserstein-1 and Perkins score against the baseline."""

    _ORDER: ClassVar[tuple] = ("notes", "curves", "table", "baseline", "strip", "query", "models", "cube", "box")


@dataclass(frozen=True, eq=False)
class ExtremesAnswer(CurvesAnswer):
    """The extremes view: exceedance and return-level curves (with their CI), the tail index
    per source; ``n_boot`` bootstrap resamples behind the CIs."""

    n_boot: int = 0

    _ORDER: ClassVar[tuple] = ("notes", "curves", "table", "baseline", "strip", "query", "models", "cube", "n_boot",
                               "box")


@dataclass(frozen=True, eq=False)
class ScoresAnswer(_Answer):
    """The scores view: one row per (model, baseline) with units in the column names."""

    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    strip: bool = True

    _ORDER: ClassVar[tuple] = ("notes", "table", "query", "models", "cube", "strip", "box")

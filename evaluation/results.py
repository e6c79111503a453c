"""Typed results at the evaluation → app boundary.

What the evaluation layer hands the app, as frozen dataclasses read by attribute
(``h.counts``, ``plan.groups[0].orbits``, ``report.summaries(strip=True)["reference"].q99``)
instead of dicts read by string keys:

- :class:`Histogram`: one summed histogram of the climatology cube (``Cube.histogram``), with
  the selection it answers (source, region, period, season, surface, months sampled);
- :class:`BoxPlan` / :class:`BoxGroup`: what a box cube needs (``evaluation.boxes.box_plan``);
- :class:`CubeQuery`: region, period and season as the cube's query arguments;
- :class:`EvaluationReport` and its parts (:class:`DistributionSummary`, :class:`Comparison`,
  :class:`QQ`, :class:`ExtremesSummary`, :class:`GPDSummary`, :class:`ReturnLevels`,
  :class:`Scores`): a typed reading of the ``raincheck.evaluate/1`` report
  (``evaluation.report.evaluate``) that the distributions, extremes and scores views read.

Each type's ``to_dict()`` gives exactly the dict the code returned before these types (the
documented JSON, docs/evaluation.md, is unchanged; ``tests/evaluation/test_evaluation_results.py`` checks it
against a record made by that code). The report's parts keep any key they do not know (the
schema only ever adds fields) and give it back in ``to_dict()``, in the original order.

For callers written against the dicts, every type also answers read-only dict access with the
keys of its ``to_dict()`` (``plan["path"]``, ``h["counts"]``, ``plan.get("main_cube")``,
``dict(plan)``): new code reads attributes.

This module imports nothing of raincheck (the cube, the box cubes and the app import it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

__all__ = ["BoxGroup", "BoxPlan", "Comparison", "CubeQuery", "DictAccess", "DistributionSummary",
           "EvaluationReport", "ExtremesSummary", "GPDSummary", "Histogram", "QQ", "ReturnLevels", "Scores"]


class DictAccess:
    """Read-only dict access by the keys of ``to_dict()`` (for code written against the dicts
    these types replace). A tuple field reads as a list, as it was in the dict; a nested typed
    value reads as itself (it answers dict access too)."""

    def to_dict(self) -> dict:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def keys(self):
        return self.to_dict().keys()

    def _compat(self, key: str):
        v = getattr(self, key)
        return list(v) if isinstance(v, tuple) else v

    def __getitem__(self, key: str):
        if not isinstance(key, str) or key not in self.keys():
            raise KeyError(key)
        return self._compat(key)

    def __contains__(self, key) -> bool:
        return key in self.keys()

    def get(self, key: str, default=None):
        return self[key] if key in self else default


# ------------------------------------------------------------------------------ the cube's query
@dataclass(frozen=True)
class CubeQuery(DictAccess):
    """Region, period and season as the cube's query arguments (``Cube.histogram(source,
    q.region, period=q.period, season=q.season)``); ``season`` None for the whole year."""

    region: str
    period: str | None = None
    season: str | None = None

    def to_dict(self) -> dict:
        return {"region": self.region, "period": self.period, "season": self.season}

    @classmethod
    def coerce(cls, q) -> CubeQuery:
        """A CubeQuery from a CubeQuery or a {region, period, season} dict."""
        if isinstance(q, cls):
            return q
        if isinstance(q, dict):
            unknown = set(q) - {"region", "period", "season"}
            if unknown or "region" not in q:
                raise ValueError(f"a cube query has region, period and season; got keys {sorted(q)}")
            return cls(q["region"], q.get("period"), q.get("season"))
        raise TypeError(f"a cube query must be a CubeQuery or a dict, got {type(q).__name__}")


# ------------------------------------------------------------------------------ histogram
@dataclass(frozen=True, eq=False)
class Histogram(DictAccess):
    """A histogram of rain rates summed from the cube: ``counts[bin]`` on ``edges`` (mm h-1,
    ``evaluation.distributions.EDGES``), the exact sum and sum of squares of the rates
    (``total`` in mm h-1, ``total_sq`` in (mm h-1)²), and what it answers: the source, the
    region spec, period, season and surface asked for and the number of months summed.

    ``to_dict()`` is the cube's documented histogram, ``{counts, n, total, total_sq, edges}``."""

    counts: np.ndarray
    total: float
    total_sq: float
    edges: np.ndarray
    source: str | None = None
    region: str | None = None
    period: Any = None
    season: Any = None
    surface: Any = None
    months: int | None = None

    def __post_init__(self):
        c = np.asarray(self.counts)
        e = np.asarray(self.edges, dtype=np.float64)
        if c.ndim != 1 or e.ndim != 1 or e.size != c.size + 1:
            raise ValueError(f"a histogram needs counts[bin] and edges[bin + 1]; got counts of shape {c.shape} "
                             f"and edges of shape {e.shape}")
        if c.size and (not np.issubdtype(c.dtype, np.integer) or c.min() < 0):
            raise ValueError(f"histogram counts must be non-negative integers, got dtype {c.dtype}"
                             f"{f' with minimum {c.min()}' if np.issubdtype(c.dtype, np.number) else ''}")
        c = c.astype(np.int64)  # a copy: the histogram's own counts, read-only
        c.setflags(write=False)
        object.__setattr__(self, "counts", c)
        object.__setattr__(self, "edges", e)
        object.__setattr__(self, "total", float(self.total))
        object.__setattr__(self, "total_sq", float(self.total_sq))

    @property
    def n(self) -> int:
        """Number of pixels (the sum of the counts)."""
        return int(self.counts.sum())

    @property
    def mean(self) -> float:
        """Exact mean rain rate (mm h-1) from the stored sum; NaN when empty."""
        return self.total / self.n if self.n else float("nan")

    def to_dict(self) -> dict:
        return {"counts": self.counts, "n": self.n, "total": self.total, "total_sq": self.total_sq,
                "edges": self.edges}

    @classmethod
    def from_dict(cls, d: dict, **about) -> Histogram:
        """From ``{counts, total, total_sq, edges[, n]}`` (``n``, when given, must be the counts'
        sum); ``about``: source, region, period, season, surface, months."""
        missing = [k for k in ("counts", "total", "total_sq", "edges") if k not in d]
        if missing:
            raise ValueError(f"a histogram dict needs {', '.join(missing)}")
        h = cls(d["counts"], d["total"], d["total_sq"], d["edges"], **about)
        if "n" in d and int(d["n"]) != h.n:
            raise ValueError(f"histogram n={d['n']} is not the sum of its counts ({h.n})")
        return h

    def __eq__(self, other) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return (np.array_equal(self.counts, other.counts) and np.array_equal(self.edges, other.edges)
                and self.total == other.total and self.total_sq == other.total_sq
                and self._about() == other._about())

    __hash__ = None  # holds arrays

    def _about(self) -> tuple:
        return (self.source, self.region, self.period, self.season, self.surface, self.months)


# ------------------------------------------------------------------------------ box plans
@dataclass(frozen=True)
class BoxGroup(DictAccess):
    """Sources built together for a box cube, on ``orbits`` (those of the main cube's
    ``of`` orbits for these sources that may cross the box), in about ``seconds``."""

    sources: tuple[str, ...]
    orbits: tuple[int, ...]
    seconds: float
    of: int

    def __post_init__(self):
        object.__setattr__(self, "sources", tuple(str(s) for s in self.sources))
        object.__setattr__(self, "orbits", tuple(int(o) for o in self.orbits))
        object.__setattr__(self, "seconds", float(self.seconds))
        object.__setattr__(self, "of", int(self.of))

    def to_dict(self) -> dict:
        return {"sources": list(self.sources), "orbits": list(self.orbits), "seconds": self.seconds, "of": self.of}

    @classmethod
    def from_dict(cls, d) -> BoxGroup:
        if isinstance(d, cls):
            return d
        return cls(d["sources"], d["orbits"], d["seconds"], d["of"])


@dataclass(frozen=True)
class BoxPlan(DictAccess):
    """What the box cube of the box ``spec`` needs (``evaluation.boxes.box_plan``): where it
    goes (``path``), the main cube it completes and that cube's configuration (``config``:
    world_seed, n_scans, model_product), the source groups with their orbits, the models left
    out with the reason (``skipped``), notes, the number of distinct orbits and a rough time
    estimate (``seconds``)."""

    spec: str
    path: str
    main_cube: str | None
    config: dict
    groups: tuple[BoxGroup, ...]
    skipped: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    orbits: int = 0
    seconds: float = 0.0

    _KEYS: ClassVar[tuple] = ("spec", "path", "main_cube", "config", "groups", "skipped", "notes", "orbits",
                              "seconds")

    def __post_init__(self):
        object.__setattr__(self, "path", str(self.path))
        object.__setattr__(self, "groups", tuple(BoxGroup.from_dict(g) for g in self.groups))
        object.__setattr__(self, "skipped", {str(k): str(v) for k, v in dict(self.skipped).items()})
        object.__setattr__(self, "notes", tuple(str(n) for n in self.notes))
        object.__setattr__(self, "config", dict(self.config))
        object.__setattr__(self, "orbits", int(self.orbits))
        object.__setattr__(self, "seconds", float(self.seconds))

    @property
    def sources(self) -> list[str]:
        """Every source the plan computes, group by group."""
        return [s for g in self.groups for s in g.sources]

    def to_dict(self) -> dict:
        return {"spec": self.spec, "path": self.path, "main_cube": self.main_cube, "config": dict(self.config),
                "groups": [g.to_dict() for g in self.groups], "skipped": dict(self.skipped),
                "notes": list(self.notes), "orbits": self.orbits, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d) -> BoxPlan:
        """From a plan's dict (``to_dict()``, the ``<box cube>.box.json`` beside a box cube)."""
        missing = [k for k in cls._KEYS if k not in d]
        if missing:
            raise ValueError(f"a box plan needs {', '.join(missing)}")
        return cls(**{k: d[k] for k in cls._KEYS})

    @classmethod
    def coerce(cls, plan) -> BoxPlan:
        """A BoxPlan from a BoxPlan or a plan's dict (e.g. ``dict(plan)`` from another session)."""
        return plan if isinstance(plan, cls) else cls.from_dict(plan)

    def __hash__(self):  # config/skipped are dicts: hash what identifies a plan
        return hash((self.spec, self.path, self.groups))


# ------------------------------------------------------------------------------ report parts
@dataclass(frozen=True, eq=False)
class _Record(DictAccess):
    """A part of a JSON report read as attributes: its known keys are fields (None when absent
    or null), unknown keys are kept in ``extra``; ``to_dict()`` gives the keys back in the
    original order. ``_NESTED``: {field: (kind, type)} with kind ``one`` (a record), ``map`` (a
    dict of records) or ``map2`` (a dict of dicts of records)."""

    extra: dict = field(default_factory=dict, repr=False, kw_only=True)
    present: tuple = field(default=(), repr=False, kw_only=True)

    _NESTED: ClassVar[dict] = {}

    @classmethod
    def _known(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("extra", "present"))

    @classmethod
    def from_dict(cls, d: dict):
        if isinstance(d, cls):
            return d
        if not isinstance(d, dict):
            raise TypeError(f"{cls.__name__} reads a dict, got {type(d).__name__}")
        known = cls._known()
        kw, extra = {}, {}
        for k, v in d.items():
            if k in known:
                kw[k] = _nest(cls._NESTED.get(k), v)
            else:
                extra[k] = v
        return cls(**kw, extra=extra, present=tuple(d))

    def to_dict(self) -> dict:
        known = self._known()
        return {k: (_unnest(self._NESTED.get(k), getattr(self, k)) if k in known else self.extra[k])
                for k in self.present}

    def keys(self):
        return dict.fromkeys(self.present).keys()

    def _compat(self, key: str):
        return getattr(self, key) if key in self._known() else self.extra[key]

    def __eq__(self, other) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return _same(self.to_dict(), other.to_dict())

    __hash__ = None


def _nest(spec, v):
    if spec is None or v is None:
        return v
    kind, typ = spec
    if kind == "one":
        return typ.from_dict(v)
    if kind == "map":
        return {k: typ.from_dict(x) for k, x in v.items()}
    return {k: {kk: typ.from_dict(x) for kk, x in inner.items()} for k, inner in v.items()}


def _unnest(spec, v):
    if spec is None or v is None:
        return v
    kind, _ = spec
    if kind == "one":
        return v.to_dict()
    if kind == "map":
        return {k: x.to_dict() for k, x in v.items()}
    return {k: {kk: x.to_dict() for kk, x in inner.items()} for k, inner in v.items()}


def _same(a, b) -> bool:
    """Equality of JSON-like values with arrays and NaN (NaN equals NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        a = a.tolist()
    if isinstance(b, np.ndarray):
        b = b.tolist()
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return False
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (a != a and b != b)
    return a == b


@dataclass(frozen=True, eq=False)
class DistributionSummary(_Record):
    """One source's distribution in a report: pixels, mean (mm h-1), wet fraction, quantiles
    q50 … q999 (mm h-1), standard deviation, P(rate ≥ t) per threshold, fraction per bin."""

    n: int | None = None
    mean: float | None = None
    wet_fraction: float | None = None
    q50: float | None = None
    q90: float | None = None
    q99: float | None = None
    q999: float | None = None
    std: float | None = None
    exceedance: dict | None = None
    pdf_fraction: list | None = None


@dataclass(frozen=True, eq=False)
class QQ(_Record):
    """Q-Q pairs: quantile ``levels``, the model's quantiles and the baseline's (stored under
    the baseline's name, ``reference`` or ``truth``), mm h-1."""

    levels: list | None = None
    model: list | None = None
    reference: list | None = None
    truth: list | None = None

    @property
    def baseline(self) -> list | None:
        """The baseline's quantiles, whichever it is."""
        return self.reference if self.reference is not None else self.truth


@dataclass(frozen=True, eq=False)
class Comparison(_Record):
    """A model's distribution against a baseline's: Wasserstein-1 (mm h-1), Perkins score, Q-Q."""

    wasserstein1_mm_h: float | None = None
    perkins_score: float | None = None
    qq: QQ | None = None

    _NESTED: ClassVar[dict] = {"qq": ("one", QQ)}


@dataclass(frozen=True, eq=False)
class GPDSummary(_Record):
    """GPD fit above the report's threshold: shape ξ and scale σ (mm h-1) with bootstrap CIs
    (``ci_xi``, ``ci_sigma``: [low, high] at ``confidence``), exceedances and their rate."""

    xi: float | None = None
    sigma: float | None = None
    n_exceed: int | None = None
    rate: float | None = None
    ci_xi: list | None = None
    ci_sigma: list | None = None
    confidence: float | None = None


@dataclass(frozen=True, eq=False)
class ReturnLevels(_Record):
    """Return levels (mm h-1) per return period (in pixel observations), with CI bounds."""

    return_period_pixels: list | None = None
    level: list | None = None
    ci_lower: list | None = None
    ci_upper: list | None = None


@dataclass(frozen=True, eq=False)
class ExtremesSummary(_Record):
    """One source's tail in a report: GPD threshold (mm h-1), binned Hill index, GPD fit and
    return levels."""

    threshold: float | None = None
    hill_binned: float | None = None
    gpd: GPDSummary | None = None
    return_levels: ReturnLevels | None = None

    _NESTED: ClassVar[dict] = {"gpd": ("one", GPDSummary), "return_levels": ("one", ReturnLevels)}


@dataclass(frozen=True, eq=False)
class Scores(_Record):
    """Skill of one (model, baseline) pair (``evaluation.skill.scores_from_stats``), or
    ``error`` when the cube cannot answer it. Units: bias and SMAPE in %, MAE/RMSE/CRPS in
    mm h-1, MSE in (mm h-1)², effective resolution in km."""

    n: int | None = None
    bias_pct: float | None = None
    mae: float | None = None
    mse: float | None = None
    rmse: float | None = None
    corr: float | None = None
    smape_pct: float | None = None
    categorical: dict | None = None
    crps: float | None = None
    quantile_score: dict | None = None
    pit_hist: list | None = None
    coverage: dict | None = None
    fss: dict | None = None
    effective_resolution_km: float | None = None
    pair: str | None = None
    error: str | None = None

    def category(self, threshold: str, score: str):
        """A categorical score (pod, far, csi, hss, sedi, …) at ``threshold`` (mm h-1, as the
        report writes it: "0.1", "10"); None when absent."""
        return ((self.categorical or {}).get(threshold) or {}).get(score)

    def coverage_at(self, level: str):
        """Coverage of the central interval at ``level`` ("0.9"); None when absent."""
        return (self.coverage or {}).get(level)


@dataclass(frozen=True, eq=False)
class EvaluationReport(_Record):
    """The ``raincheck.evaluate/1`` report (``evaluation.report.evaluate``) read as attributes:
    ``distributions`` {strip | all_pixels: {source: DistributionSummary}}, ``comparison``
    {model: {vs_reference | vs_truth: Comparison}}, ``extremes`` {source: ExtremesSummary}
    (None unless asked for), ``skill`` {model: {vs_reference | vs_truth: Scores}}."""

    schema: str | None = None
    cube: dict | None = None
    selection: dict | None = None
    bins: dict | None = None
    distributions: dict | None = None
    comparison: dict | None = None
    extremes: dict | None = None
    skill: dict | None = None

    _NESTED: ClassVar[dict] = {"distributions": ("map2", DistributionSummary), "comparison": ("map2", Comparison),
                               "extremes": ("map", ExtremesSummary), "skill": ("map2", Scores)}

    def summaries(self, strip: bool) -> dict[str, DistributionSummary]:
        """{source: distribution} on the reference strip or on all pixels."""
        return (self.distributions or {}).get("strip" if strip else "all_pixels", {})

    def comparison_of(self, model: str, against: str) -> Comparison | None:
        """The model's distribution against ``reference`` (strip) or ``truth`` (all pixels)."""
        return (self.comparison or {}).get(model, {}).get(f"vs_{against}")

    def extremes_of(self, source: str) -> ExtremesSummary | None:
        return (self.extremes or {}).get(source)

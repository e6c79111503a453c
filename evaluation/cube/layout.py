"""The cube's layout: source names, the region / surface / stat axes, the skill pairs, paths,
the errors, and the empty cube (see the package docstring for the full layout)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from catalogs import schema
from evaluation import distributions as D
from evaluation import regions as RG
from evaluation import skill as SK
from catalogs.config import get_roots

TRUTH, TRUTH_STRIP, REFERENCE = "truth", "truth_strip", "reference"
BUILTIN = (TRUTH, TRUTH_STRIP, REFERENCE)
STRIP = "@strip"
#: surface categories: the non-negative CF flag values of ``catalogs.schema.SURFACE_TYPES`` in
#: order, then "unknown" (flag -1, or any flag the schema does not know)
_CODES = tuple(sorted(k for k in schema.SURFACE_TYPES if k >= 0))
assert _CODES == tuple(range(len(_CODES))), "surface flags must be 0..n-1"
SURFACES = tuple(schema.SURFACE_TYPES[k] for k in _CODES) + ("unknown",)
#: surface groups answering the "land" / "ocean" region specs from the cube (coast counts as land)
SURFACE_GROUPS = {"ocean": ("ocean", "sea_ice"), "land": ("land", "coast", "snow")}
SEASONS = {"DJF": (12, 1, 2), "MAM": (3, 4, 5), "JJA": (6, 7, 8), "SON": (9, 10, 11)}
LEDGER = "ledger.json"
FORMAT_VERSION = 1
NONE_REGION = "ar6:none"
#: canonical quantile levels of the stored probabilistic statistics
CANON_LEVELS = tuple(sorted(set(SK.QS_LEVELS) | {round((1 - c) / 2, 6) for c in SK.COVERAGE}
                            | {round((1 + c) / 2, 6) for c in SK.COVERAGE}))
PIXEL_STATS = tuple(SK.pixel_stat_names(levels=CANON_LEVELS))
FIELD_STATS = tuple(SK.field_stat_names())
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


class BuildCancelled(RuntimeError):
    """A cube build was cancelled; finished orbits are kept as partials and resume later."""


class CubeConfigMismatch(ValueError):
    """The requested build does not match the existing cube's configuration."""


class StaleSource(CubeConfigMismatch):
    """A source in the cube was computed by another version of it (a retrained model, another
    simulator version); rebuild it with ``replace_stale=True`` (``--replace-stale``)."""


class RegionNotInCube(KeyError):
    """A region that the cube cannot answer (build it with ``extra_regions``)."""


# --------------------------------------------------------------------------- region layout
def ar6_labels() -> list[str]:
    return list(RG.load_index()["abbrevs"]) + [NONE_REGION]


def region_labels(extra_regions: Sequence[str] = ()) -> list[str]:
    return ar6_labels() + list(RG.LAT_BAND_SPECS) + [RG.get_region(s).spec for s in extra_regions]


def model_of(source: str) -> str | None:
    if source in BUILTIN:
        return None
    return source[: -len(STRIP)] if source.endswith(STRIP) else source


def expand_sources(sources: Iterable[str]) -> list[str]:
    """truth → truth + truth_strip; a model name → model + model@strip; order kept, no dups."""
    out: list[str] = []
    for s in sources:
        s = str(s).strip()
        if not s:
            continue
        base = s[: -len(STRIP)] if s.endswith(STRIP) else s
        if base not in BUILTIN and not _NAME_RE.match(base):
            raise ValueError(f"invalid source/model name {s!r}")
        adds = [TRUTH, TRUTH_STRIP] if s == TRUTH else ([base, base + STRIP] if base not in BUILTIN else [s])
        for a in adds:
            if a not in out:
                out.append(a)
    return out


def pairs_for(sources: Sequence[str]) -> list[str]:
    """Skill pairs computed when ``sources`` are built."""
    out = []
    for m in dict.fromkeys(model_of(s) for s in sources if model_of(s)):
        out += [f"{m}{STRIP}|{REFERENCE}", f"{m}|{TRUTH}"]
    if REFERENCE in sources:
        out.append(f"{REFERENCE}|{TRUTH_STRIP}")
    return out


def _group(source: str) -> str:
    """The sources computed together: a model's (name), or truth/reference ("truth")."""
    return model_of(source) or TRUTH


def default_cube_path() -> Path:
    return get_roots().sub("cubes") / "climatology.zarr"


def partials_dir(path: Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".partials")


def skill_labels(cfg: dict) -> list[str]:
    """The ``skill_region`` axis: the AR6 partition, then (``skill_extra``) the extra regions."""
    return ar6_labels() + (list(cfg.get("extra_regions", ())) if cfg.get("skill_extra") else [])


def empty_cube(sources, pairs, regions, months, skill_regions=None) -> xr.Dataset:
    ns, nr, nt, nsf, nb = len(sources), len(regions), len(months), len(SURFACES), D.N_BINS
    skill_regions = ar6_labels() if skill_regions is None else list(skill_regions)
    n_ar6 = len(skill_regions)
    return xr.Dataset(
        {
            "count": (("source", "region", "time", "surface", "bin"), np.zeros((ns, nr, nt, nsf, nb), np.int64)),
            "total": (("source", "region", "time", "surface"), np.zeros((ns, nr, nt, nsf))),
            "total_sq": (("source", "region", "time", "surface"), np.zeros((ns, nr, nt, nsf))),
            "skill": (("pair", "skill_region", "time", "surface", "stat"),
                      np.zeros((len(pairs), n_ar6, nt, nsf, len(PIXEL_STATS)))),
            "field_skill": (("pair", "time", "fstat"), np.zeros((len(pairs), nt, len(FIELD_STATS)))),
        },
        coords={"source": list(sources), "region": list(regions), "time": np.asarray(months, "datetime64[ns]"),
                "surface": list(SURFACES), "bin": np.arange(nb), "bin_lower": ("bin", D.EDGES[:-1]),
                "bin_upper": ("bin", D.EDGES[1:]), "pair": list(pairs), "skill_region": skill_regions,
                "stat": list(PIXEL_STATS), "fstat": list(FIELD_STATS)},
    )

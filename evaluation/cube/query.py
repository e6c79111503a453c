"""Queries: open a cube and answer histograms, time series and skill scores from its stored
counts and sums (every query is a sum over the selected regions, months and surfaces)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from catalogs.store import is_complete
from evaluation import distributions as D
from evaluation import regions as RG
from evaluation import skill as SK
from evaluation.cube import archive as AR
from evaluation.cube.layout import (BUILTIN, CANON_LEVELS, LEDGER, REFERENCE, SEASONS,
                                    STRIP, SURFACE_GROUPS, SURFACES, TRUTH, TRUTH_STRIP, RegionNotInCube,
                                    ar6_labels, default_cube_path)
from evaluation.results import Histogram
from catalogs.store import IncompleteStore


def parse_period(period) -> tuple[np.datetime64 | None, np.datetime64 | None]:
    """"2015-2019" (years inclusive), "2015", "2015-06:2016-05" (months inclusive), a
    (start, end) pair, or None → (start, end-exclusive) datetime64 bounds."""
    if period is None or period == "":
        return None, None
    if isinstance(period, (tuple, list)):
        a, b = period
        return np.datetime64(a, "ns"), np.datetime64(b, "ns")
    p = str(period).strip()
    m = re.fullmatch(r"(\d{4})(?:\s*-\s*(\d{4}))?", p)
    if m:
        y0 = int(m.group(1))
        y1 = int(m.group(2) or y0)
        if y1 < y0:
            raise ValueError(f"period {period!r} ends before it starts")
        return np.datetime64(f"{y0}-01-01", "ns"), np.datetime64(f"{y1 + 1}-01-01", "ns")
    m = re.fullmatch(r"(\d{4}-\d{2})\s*:\s*(\d{4}-\d{2})", p)
    if m:
        a = np.datetime64(m.group(1), "M")
        b = np.datetime64(m.group(2), "M") + 1
        return a.astype("datetime64[ns]"), b.astype("datetime64[ns]")
    raise ValueError(f"period must look like '2015-2019', '2015' or '2015-06:2016-05', got {period!r}")


def parse_season(season) -> tuple[int, ...] | None:
    if season is None or season == "" or str(season).lower() == "all":
        return None
    s = str(season).upper()
    if s in SEASONS:
        return SEASONS[s]
    try:
        m = int(s)
        if 1 <= m <= 12:
            return (m,)
    except ValueError:
        pass
    raise ValueError(f"season must be one of DJF, MAM, JJA, SON or a month 1-12, got {season!r}")


class Cube:
    """Read access to a climatology cube; every query is a sum over stored integer counts."""

    def __init__(self, ds: xr.Dataset, path: Path | None = None, ledger: dict | None = None):
        self.ds = ds
        self.path = path
        self.ledger = ledger or {}
        self._cache: dict = {}

    # -- metadata
    @property
    def sources(self) -> list[str]:
        return [str(s) for s in self.ds["source"].values]

    @property
    def models(self) -> list[str]:
        return [s for s in self.sources if s not in BUILTIN and not s.endswith(STRIP)]

    @property
    def regions(self) -> list[str]:
        return [str(r) for r in self.ds["region"].values]

    @property
    def times(self) -> np.ndarray:
        return self.ds["time"].values

    def n_orbits(self, source: str) -> int:
        return len(self.ledger.get("sources", {}).get(source, ()))

    def identity(self, source: str) -> dict | None:
        """Which version of ``source`` the cube's numbers come from (:func:`source_identity`):
        e.g. ``{"checkpoint_sha256": "0123456789ab", "product_version": "raincheck-sim-4"}`` for a
        model (``<model>@strip`` is the model's), ``{"truth_version": ...}`` for truth/reference;
        None when the cube was written before identities were recorded."""
        ids = self.ledger.get("identities") or {}
        if source not in ids and source.endswith(STRIP):
            source = source[: -len(STRIP)]
        got = ids.get(source)
        return dict(got) if got is not None else None

    def identities(self) -> dict:
        """{source: identity or None} for the cube's models, truth and reference."""
        return {s: self.identity(s) for s in self.sources if not s.endswith(STRIP) and s != TRUTH_STRIP}

    def describe(self) -> dict:
        t = self.times
        return {"path": str(self.path) if self.path else None, "sources": self.sources,
                "orbits": {s: self.n_orbits(s) for s in self.sources},
                "months": int(t.size),
                "first_month": str(t.min())[:7] if t.size else None, "last_month": str(t.max())[:7] if t.size else None,
                "regions": len(self.regions), "config": self.ledger.get("config", {}) and {
                    k: v for k, v in self.ledger["config"].items() if k in (
                        ("loader", "granule_dir", "model_product") if AR.is_archive_config(self.ledger["config"])
                        else ("world_seed", "n_scans", "model_product"))},
                "identities": self.identities(),
                **({"archive": AR.describe_archive(self.ledger), "truth": AR.TRUTH_NOTE}
                   if AR.describe_archive(self.ledger) else {}),
                **({"identities_assumed": list(self.ledger["assumed_identities"])}
                   if self.ledger.get("assumed_identities") else {})}

    # -- selection helpers
    def region_selection(self, region) -> tuple[list[str], list[str] | None]:
        """(region labels to sum, surfaces or None) answering a region spec from the cube."""
        r = RG.get_region(region)
        if r.kind == "global":
            return list(RG.LAT_BAND_SPECS), None
        if r.kind in ("land", "ocean"):
            return list(RG.LAT_BAND_SPECS), list(SURFACE_GROUPS[r.kind])
        if r.kind == "lat":
            lo, hi = r.params
            bands = [s for s in RG.LAT_BAND_SPECS if lo <= float(s.split(":")[1]) and float(s.split(":")[2]) <= hi]
            covered = sum(10 for _ in bands)
            if covered != hi - lo:
                raise RegionNotInCube(f"latitude band {r.spec} does not align with the cube's 10° bands; "
                                      f"build the cube with extra_regions=[{r.spec!r}]")
            return bands, None
        if r.spec in self.regions:
            return [r.spec], None
        raise RegionNotInCube(f"region {r.spec!r} is not in this cube; rebuild with "
                              f"extra_regions=[{r.spec!r}] (raincheck climatology build --extra-region ...)")

    def _time_mask(self, period=None, season=None) -> np.ndarray:
        t = self.times
        m = np.ones(t.size, bool)
        a, b = parse_period(period)
        if a is not None:
            m &= (t >= a) & (t < b)
        months = parse_season(season)
        if months is not None:
            m &= np.isin(pd.DatetimeIndex(t).month, months)
        return m

    def _slab(self, var: str, source: str, labels: list[str], surfaces: list[str] | None, dim="region"):
        """Σ over regions and surfaces of one source: (time, [bin])."""
        key = (var, source, tuple(labels), tuple(surfaces) if surfaces else None)
        if key in self._cache:
            return self._cache[key]
        if source not in self.sources:
            raise KeyError(f"source {source!r} is not in this cube (has {', '.join(self.sources)})")
        # one in-memory copy per (variable, source), then plain numpy: indexing the lazily
        # opened file with lists of regions/surfaces re-reads and re-decompresses it each time
        skey = ("source-array", var, source)
        arr = self._cache.get(skey)
        if arr is None:
            arr = self._cache[skey] = np.asarray(self.ds[var].isel(source=self.sources.index(source)).values)
        dims = [d for d in self.ds[var].dims if d != "source"]
        ra, sa = dims.index("region"), dims.index("surface")
        idx = [self.regions.index(x) for x in labels]
        sub = np.take(arr, idx, axis=ra)
        if surfaces:
            surf_all = [str(v) for v in self.ds["surface"].values]
            sub = np.take(sub, [surf_all.index(x) for x in surfaces], axis=sa)
        out = sub.sum(axis=(ra, sa))
        self._cache[key] = out
        return out

    def histogram(self, source: str, region="global", *, period=None, season=None, surface=None) -> Histogram:
        """Summed histogram of ``source`` over a region, period, season and surface: a
        :class:`evaluation.results.Histogram` (``.counts[bin]``, ``.n``, ``.total``, ``.total_sq``,
        ``.edges``, and the selection it answers; ``.to_dict()`` is {counts, n, total, total_sq,
        edges})."""
        labels, surfs = self.region_selection(region)
        if surface:
            surfs = [s for s in _surfaces(surface) if surfs is None or s in surfs]
        tm = self._time_mask(period, season)
        c = self._slab("count", source, labels, surfs)[tm].sum(axis=0)
        s = self._slab("total", source, labels, surfs)[tm].sum()
        s2 = self._slab("total_sq", source, labels, surfs)[tm].sum()
        return Histogram(c.astype(np.int64), float(s), float(s2), D.EDGES, source=source,
                         region=RG.get_region(region).spec, period=period, season=season, surface=surface,
                         months=int(tm.sum()))

    def series(self, source: str, region="global", stat="mean", *, freq="year", period=None, season=None,
               surface=None, min_count: int = 1) -> pd.DataFrame:
        """One value per period (``freq`` year | season | month) of ``stat``: mean, wet_fraction,
        q99, q999 (or q<digits>, e.g. q95), exceed:<threshold>. Columns: time (mid-period),
        value, n (pixels), months (number of months sampled). Seasons are labelled by the year
        of their last month (DJF 2000 = Dec 1999 – Feb 2000)."""
        labels, surfs = self.region_selection(region)
        if surface:
            surfs = [s for s in _surfaces(surface) if surfs is None or s in surfs]
        tm = self._time_mask(period, season)
        t = pd.DatetimeIndex(self.times[tm])
        C = self._slab("count", source, labels, surfs)[tm]
        S = self._slab("total", source, labels, surfs)[tm]
        if freq == "month":
            key = t.year * 100 + t.month
            mid = t + pd.Timedelta(days=14)
        elif freq == "year":
            key = np.asarray(t.year)
            mid = pd.to_datetime([f"{y}-07-02" for y in t.year])
        elif freq == "season":
            sy = t.year + (t.month == 12)
            sidx = ((t.month % 12) // 3)  # DJF 0, MAM 1, JJA 2, SON 3
            key = np.asarray(sy * 10 + sidx)
            mid = pd.to_datetime([f"{y}-{[1, 4, 7, 10][i]:02d}-15" for y, i in zip(sy, sidx)])
        else:
            raise ValueError(f"freq must be 'year', 'season' or 'month', got {freq!r}")
        rows = []
        for k in np.unique(key):
            sel = np.asarray(key == k)
            c = C[sel].sum(axis=0)
            n = int(c.sum())
            if n < min_count:
                continue
            rows.append({"time": mid[sel][0], "value": _stat(stat, c, S[sel].sum(), n), "n": n,
                         "months": int(sel.sum()), "month_times": t[sel].values})
        df = pd.DataFrame(rows, columns=["time", "value", "n", "months", "month_times"])
        return df

    def skill(self, model: str, against: str = REFERENCE, region="global", *, period=None, season=None,
              surface=None) -> dict:
        """Scores of ``model`` (a model name, or ``reference``) against ``reference`` (on the
        strip) or ``truth`` from the summed statistics; FSS / effective resolution are global
        (whole fields) and ignore region and surface."""
        pair = _pair_name(model, against)
        if pair not in [str(p) for p in self.ds["pair"].values]:
            raise KeyError(f"no skill statistics for {model!r} against {against!r} in this cube")
        labels, surfs = self.region_selection(region)
        if labels == list(RG.LAT_BAND_SPECS):
            labels = ar6_labels()  # the AR6 partition covers the globe too
        ar6 = [str(x) for x in self.ds["skill_region"].values]  # the AR6 partition (+ extra regions)
        if not all(x in ar6 for x in labels):
            raise RegionNotInCube(f"skill statistics are stored on the AR6 partition; {region!r} is not answerable")
        if surface:
            surfs = [s for s in _surfaces(surface) if surfs is None or s in surfs]
        tm = self._time_mask(period, season)
        key = ("skill", pair, tuple(labels), tuple(surfs) if surfs else None)
        if key not in self._cache:
            da = self.ds["skill"].sel(pair=pair).isel(skill_region=[ar6.index(x) for x in labels])
            if surfs:
                da = da.sel(surface=surfs)
            self._cache[key] = np.asarray(da.sum(("skill_region", "surface")).values)
        v = self._cache[key][tm].sum(axis=0)
        f = np.asarray(self.ds["field_skill"].sel(pair=pair).values)[tm].sum(axis=0)
        # pair the stored values with the cube's own stat names, never by position with today's
        names = [str(x) for x in self.ds["stat"].values] + [str(x) for x in self.ds["fstat"].values]
        stats = SK.stats_dict(np.concatenate([v, f]), names)
        stale = self.skill_definitions < SK.SKILL_DEFINITIONS
        if stale:  # PIT, coverage and coherence of a superseded definition: not served
            stats = {k: x for k, x in stats.items() if not k.startswith(SK.REDEFINED_PREFIXES)}
        has_prob = stats.get("prob_n", 0) > 0
        out = SK.scores_from_stats(stats, levels=CANON_LEVELS if has_prob else None)
        out["pair"] = pair
        if has_prob and model != REFERENCE and "baseline" in (self.identity(model) or {}):
            out["quantile_score"], out["coverage"] = {}, {}  # not defined by two tertiles: no zeros shown
            out.setdefault("notes", []).append(AR.BASELINE_PROB_NOTE)
        if stale:
            out["notes"] = [f"PIT, interval coverage and effective resolution are not shown: this cube was built "
                            f"with skill definitions {self.skill_definitions} (now {SK.SKILL_DEFINITIONS}: "
                            f"randomised PIT, coverage on it, coherence on the 13.7 x 5.2 km grid); rebuild "
                            f"the cube to get them"]
        return out

    @property
    def skill_definitions(self) -> int:
        """The version of the probabilistic/spectral statistics' definitions the cube was built
        with (:data:`evaluation.skill.SKILL_DEFINITIONS`; cubes without the attribute: 1)."""
        return int(self.ds.attrs.get("skill_definitions", 1))


def _pair_name(model: str, against: str) -> str:
    if model == REFERENCE:
        return f"{REFERENCE}|{TRUTH_STRIP}"
    if against == REFERENCE:
        return f"{model}{STRIP}|{REFERENCE}"
    if against == TRUTH:
        return f"{model}|{TRUTH}"
    raise ValueError(f"against must be 'reference' or 'truth', got {against!r}")


def _surfaces(surface) -> list[str]:
    if isinstance(surface, str):
        surface = [x.strip() for x in surface.split(",") if x.strip()]
    out = []
    for s in surface:
        if s in SURFACE_GROUPS:
            out += list(SURFACE_GROUPS[s])
        elif s in SURFACES:
            out.append(s)
        else:
            raise ValueError(f"unknown surface {s!r}; use {', '.join(SURFACES)} or land/ocean")
    return out


def _stat(stat: str, counts, total, n):
    if n == 0:
        return float("nan")
    if stat == "mean":
        return float(total / n)
    if stat == "wet_fraction":
        return float(1 - counts[0] / n)
    if stat.startswith("exceed:"):
        return float(D.exceedance_probability(counts, D.EDGES, float(stat.split(":", 1)[1])))
    m = re.fullmatch(r"q(\d+)", stat)
    if m:
        digits = m.group(1)
        q = float("0." + digits) if len(digits) > 2 else float(digits) / 100
        return float(D.quantile_from_hist(counts, q))
    raise ValueError(f"unknown statistic {stat!r}: use mean, wet_fraction, q99, q999, exceed:<mm/h>")


def open_cube(path: str | os.PathLike | None = None) -> Cube:
    """Open a complete cube (raises ``catalogs.store.IncompleteStore`` otherwise)."""

    path = Path(path) if path is not None else default_cube_path()
    if not is_complete(path):
        raise IncompleteStore(f"no complete climatology cube at {path}; build one with "
                              f"'raincheck climatology build'")
    if path.suffix == ".nc":
        ds = xr.open_dataset(path, engine="h5netcdf", chunks=None)
        ledger = json.loads(ds.attrs.get("ledger", "{}"))
        for c in ("source", "region", "surface", "pair", "skill_region", "stat", "fstat"):
            if c in ds.coords:
                ds = ds.assign_coords({c: [str(v) for v in ds[c].values]})
        return Cube(ds, path, ledger)
    ds = xr.open_zarr(path, consolidated=True, chunks=None)
    ledger = json.loads((path / LEDGER).read_text())
    return Cube(ds, path, ledger)

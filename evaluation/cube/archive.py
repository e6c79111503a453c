"""A climatology cube built on a PPS archive: observed 1C-GMI Tb, 2B-CMB as the reference, GPROF
(2A-GMI) as a baseline model read from its granules.

What each source is on an archive
---------------------------------
* ``reference``: the 2B-CMB surface precipitation collocated on the GMI pixels it covers
  (:func:`catalogs.pairs.open_pair`: nearest footprint centre within 5 km and 300 s); NaN
  elsewhere, so the reference strip is where CMB is.
* ``<model>`` / ``<model>@strip``: a registered model run on the observed 1C-GMI Tb (the same model
  path as a synthetic build), on every pixel and on the reference strip.
* ``GPROF<algorithm>`` (e.g. ``GPROF2021v1``; ask for it as ``gprof``): GPROF's
  ``surfacePrecipitation`` read from the orbit's 2A-GMI granule (:func:`catalogs.gpm.open_2a_gprof`),
  never run; its distribution for the probabilistic scores is the one through its two tertiles
  (levels 1/3, 2/3, the quantile distribution's tails beyond them).
* There is **no** ``truth``: real data has none. Asking for it is refused; the cube records it
  (``describe()["truth"]``) and the skill against truth is absent.

Orbits that lack a granule (decided from the file names, before anything is computed)
--------------------------------------------------------------------------------------
* no 1C-GMI or no 2B-CMB granule: the orbit is **skipped** (every source): each statistic of an
  archive cube is against CMB, and a model on orbits the reference never saw would compare
  different samples. Logged as a warning and recorded in the ledger (``archive.skipped``:
  orbit → reason).
* no 2A-GMI granule: the GPROF source is **absent for that orbit** (the reference and the models
  are computed); logged and recorded (``archive.missing``: source → {orbit: reason}), and the
  ledger's orbit list of the GPROF source is shorter. A later build retries it (the granule may
  have arrived).

A granule that is there but wrong (a CMB granule of another orbit under this orbit's name, all
fill, mismatched times, a 2A-GMI on another grid) stops the build with an error naming the file
(:class:`catalogs.pairs.ArchiveError`); the cube is not written. Finished orbits are kept as
partials (the resume state of any build) and reused by the next build.

Keying: the cube's configuration key holds ``loader: "pps-archive"`` and the archive folder
(``granule_dir``), so a build never adds archive orbits to a synthetic cube or the orbits of one
archive to another's cube (:class:`CubeConfigMismatch`); the default path is
``<data root>/cubes/archive-<hash of the folder>.zarr``. Sources are identified by the product
versions they come from (``2B-CMB CORRA2022 V07A`` ...), so a reprocessed archive is a stale
source, as a retrained model is.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from catalogs import gpm
from catalogs.config import get_roots
from catalogs.pairs import MAX_DISTANCE_KM, MAX_TIME_DIFFERENCE_S, ArchiveError, archive_index, open_pair
from evaluation.cube.layout import REFERENCE, STRIP, TRUTH, TRUTH_STRIP, expand_sources, model_of

log = logging.getLogger(__name__)

LOADER = "pps-archive"
#: what a user types for the GPROF baseline: resolved to the algorithm(s) of the archive's 2A-GMI granules
GPROF = "gprof"
PRODUCTS = ("1C-GMI", "2B-CMB", "2A-GMI")
TRUTH_NOTE = "none: real data has no known truth; the reference is 2B-CMB collocated on GMI"
BASELINE_PROB_NOTE = ("GPROF publishes its posterior mean and two tertiles only: CRPS and PIT are those of the "
                      "distribution through the tertiles (levels 1/3, 2/3, quantile-distribution tails beyond); "
                      "quantile scores and interval coverage at the canonical levels are not defined")


def is_archive_config(cfg: dict | None) -> bool:
    return bool(cfg) and cfg.get("loader") == LOADER


def default_archive_cube_path(root) -> Path:
    """``<data root>/cubes/archive-<first 10 hex of sha1(resolved archive folder)>.zarr``."""
    key = hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:10]
    return get_roots().sub("cubes") / f"archive-{key}.zarr"


def _granule_version(path: str) -> str:
    i = gpm.parse_granule_name(path)
    return f"{i.algorithm} {i.version}"


def _one_version(table: pd.DataFrame, product: str) -> str | None:
    """The '<algorithm> <version>' of every ``product`` granule of ``table`` (one only)."""
    vs = {}
    for p in table[product]:
        if p:
            vs.setdefault(_granule_version(p), Path(p).name)
    if len(vs) > 1:
        raise ArchiveError(f"the {product} granules of this selection come from {len(vs)} versions "
                           f"({'; '.join(f'{v}: e.g. {n}' for v, n in sorted(vs.items()))}); a cube holds one "
                           f"version of each source: restrict the period (--start/--end) or --orbits to one")
    return next(iter(vs), None)


def gprof_name(path: str) -> str:
    """The baseline's source name of a 2A-GMI granule, as :func:`catalogs.gpm.open_2a_gprof` names
    its model (``GPROF`` + algorithm after 'GPROF', e.g. ``GPROF2021v1``)."""
    alg = gpm.parse_granule_name(path).algorithm
    return f"GPROF{alg[5:]}" if alg.upper().startswith("GPROF") else f"GPROF-{alg}"


def is_baseline_name(s: str) -> bool:
    """Whether a requested source names the GPROF baseline (``gprof`` or ``GPROF…``)."""
    base = s[: -len(STRIP)] if s.endswith(STRIP) else s
    return base.lower() == GPROF or base.upper().startswith("GPROF")


def resolve_gprof(names: Sequence[str], sources: Iterable[str]) -> list[str]:
    """``names`` with ``gprof`` (any case) replaced by the GPROF baseline(s) among a cube's
    ``sources`` (e.g. ``GPROF2021v1``), so ``--models gprof`` works as it does for the build."""
    found = [s for s in sources if is_baseline_name(s) and not s.endswith(STRIP)]
    out: list[str] = []
    for n in names:
        for m in (found if n.strip().lower() == GPROF else [n]):
            if m not in out:
                out.append(m)
    return out


#: the sources of an archive build when none are named (GPROF only if the archive has 2A-GMI granules)
DEFAULT_SOURCES = (REFERENCE, GPROF)


def plan_archive(root, sources: Sequence[str] | None = None, *, start=None, end=None,
                 orbits: Iterable[int] | None = None) -> dict:
    """What an archive build of ``sources`` does, from the file names alone (nothing opened):
    ``{"granule_dir", "orbits" (to build), "granules" {orbit: {product: path}}, "unavailable"
    {orbit: sources}, "skipped" {orbit: reason}, "missing" {source: {orbit: reason}},
    "sources" (expanded, ``gprof`` resolved), "baselines" {name: identity}, "versions"
    {product: '<algorithm> <version>'}, "period" [start, end] asked, "starts" {orbit: (start, end) of its
    1C-GMI granule}}``.

    Raises :class:`ArchiveError` (a ValueError) naming what is wrong: a folder outside the roots
    or missing, ``truth`` asked for, no 1C-GMI granule in the selection, no orbit with its CMB, a
    GPROF name the archive has no granule of, mixed product versions. ``sources=None``:
    :data:`DEFAULT_SOURCES`, without GPROF when the selection has no 2A-GMI granule (logged)."""
    folder = get_roots().confine(root)
    if not folder.is_dir():
        raise ArchiveError(f"archive folder {str(root)!r} does not exist (or is not a folder)")
    default = sources is None
    want = [str(s).strip() for s in (DEFAULT_SOURCES if default else sources) if str(s).strip()]
    bad_truth = [s for s in want if s in (TRUTH, TRUTH_STRIP)]
    if bad_truth:
        raise ArchiveError(f"an archive has no truth source (real data has no known truth; the reference is "
                           f"2B-CMB): drop {', '.join(bad_truth)} from --sources")
    table = archive_index(folder, start, end)
    if orbits is not None:
        keep = {int(o) for o in orbits}
        absent = sorted(keep - set(table["orbit"].astype(int)))
        table = table[table["orbit"].isin(keep)].reset_index(drop=True)
        if absent:
            log.warning("archive %s: %d asked orbit(s) have no granule in the selection: %s", folder, len(absent),
                        ", ".join(map(str, absent[:20])))
    sel = _selection_words(start, end, orbits)
    with_1c = table[table["1C-GMI"] != ""]
    if with_1c.empty:
        raise ArchiveError(f"no 1C-GMI granule under {folder} {sel}: nothing to build"
                           + (f" ({len(table)} orbit(s) have only other products)" if len(table) else ""))
    skipped = {int(r.orbit): "no 1C-GMI granule" for r in table.itertuples(index=False) if not r[3]}
    for r in with_1c.itertuples(index=False):
        if not r[4]:
            skipped[int(r.orbit)] = "no 2B-CMB granule (the reference): orbit skipped"
    usable = with_1c[with_1c["2B-CMB"] != ""]
    if usable.empty:
        raise ArchiveError(f"no orbit under {folder} {sel} has both its 1C-GMI and its 2B-CMB granule "
                           f"({len(with_1c)} 1C-GMI granule(s), none with a CMB reference): nothing to build")
    for o, why in sorted(skipped.items()):
        log.warning("archive %s: orbit %d skipped: %s", folder, o, why)
    # GPROF: 'gprof' → the algorithm(s) of the selection's 2A-GMI granules
    algs = {gprof_name(p): p for p in usable["2A-GMI"] if p}
    resolved: list[str] = []
    for s in want:
        if not is_baseline_name(s):
            resolved.append(s)
            continue
        base = s[: -len(STRIP)] if s.endswith(STRIP) else s
        if base.lower() == GPROF:
            if not algs and default:
                log.warning("archive %s: no 2A-GMI granule %s: the cube has no GPROF baseline", folder, sel)
                continue
            if not algs:
                raise ArchiveError(f"--sources asks for GPROF, but no orbit under {folder} {sel} has a 2A-GMI "
                                   f"granule")
            resolved += sorted(algs)
        elif base in algs:
            resolved.append(base)
        else:
            raise ArchiveError(f"no 2A-GMI granule of {base!r} under {folder} {sel} (its 2A-GMI granules are "
                               f"{', '.join(sorted(algs)) or 'none'})")
    srcs = expand_sources(resolved)
    if not srcs:
        raise ArchiveError("no source to build: give reference, gprof and/or model names")
    versions = {p: _one_version(usable, p) for p in ("1C-GMI", "2B-CMB")}
    baselines = {}
    for name in dict.fromkeys(model_of(s) for s in srcs if model_of(s) in algs):
        rows = usable[[bool(p) and gprof_name(p) == name for p in usable["2A-GMI"]]]
        baselines[name] = {"baseline": f"2A-GMI {_one_version(rows, '2A-GMI')}"}
    granules, unavailable, missing = {}, {}, {}
    for r in usable.itertuples(index=False):
        o = int(r.orbit)
        granules[o] = {"1C-GMI": r[3], "2B-CMB": r[4], "2A-GMI": r[5]}
        for name in baselines:
            if not r[5] or gprof_name(r[5]) != name:
                why = "no 2A-GMI granule" if not r[5] else f"its 2A-GMI granule is {gprof_name(r[5])}"
                unavailable.setdefault(o, set()).update({name, name + STRIP})
                missing.setdefault(name, {})[o] = why
                log.warning("archive %s: orbit %d: %s absent (%s)", folder, o, name, why)
    return {"granule_dir": str(folder), "orbits": sorted(granules), "granules": granules,
            "unavailable": unavailable, "skipped": skipped, "missing": missing, "sources": srcs,
            "baselines": baselines, "versions": versions,
            "period": [None if start is None else str(start), None if end is None else str(end)],
            "starts": {int(r.orbit): (str(r.start), str(r.end)) for r in usable.itertuples(index=False)}}


def _selection_words(start, end, orbits) -> str:
    words = []
    if start is not None or end is not None:
        words.append(f"in [{start or '…'}, {end or '…'})")
    if orbits is not None:
        o = sorted(int(x) for x in orbits)
        words.append(f"among orbits {', '.join(map(str, o[:8]))}{' …' if len(o) > 8 else ''}")
    return " ".join(words) or "(whole archive)"


# ------------------------------------------------------------------------- what a task reads
def load_orbit(orbit: int, cfg: dict) -> xr.Dataset:
    """The canonical swath of an archive orbit: 1C-GMI Tb with 2B-CMB collocated as
    ``surface_precip`` (:func:`catalogs.pairs.open_pair`, the granules the plan named)."""
    g = cfg["granules"][int(orbit)]
    return open_pair(g["1C-GMI"], g["2B-CMB"], max_distance_km=MAX_DISTANCE_KM,
                     max_time_difference_s=MAX_TIME_DIFFERENCE_S)


def baseline_output(name: str, swath: xr.Dataset, cfg: dict) -> xr.Dataset:
    """The GPROF retrieval of the swath's orbit read from its 2A-GMI granule, checked to be the
    named algorithm on the swath's grid (same shape, pixel centres within 0.01°)."""
    orbit = int(swath.attrs["orbit_number"])
    path = cfg["granules"][orbit]["2A-GMI"]
    ret = gpm.open_2a_gprof(path)
    pname = Path(path).name
    if int(ret.attrs.get("orbit_number", -1)) != orbit:
        raise ArchiveError(f"{pname} holds orbit {ret.attrs.get('orbit_number')}, not orbit {orbit} "
                           f"({swath.attrs.get('granule', 'the 1C-GMI granule')})")
    if ret.attrs.get("model") != name:
        raise ArchiveError(f"{pname} is a {ret.attrs.get('model')} granule, not {name}")
    if (ret.sizes["along_track"], ret.sizes["cross_track"]) != (swath.sizes["along_track"],
                                                                 swath.sizes["cross_track"]):
        raise ArchiveError(f"{pname} has {ret.sizes['along_track']} x {ret.sizes['cross_track']} pixels, the "
                           f"1C-GMI granule of orbit {orbit} {swath.sizes['along_track']} x "
                           f"{swath.sizes['cross_track']}: not the same swath")
    dlat = np.abs(ret["lat"].values.astype(np.float64) - swath["lat"].values)
    dlon = np.abs(((ret["lon"].values.astype(np.float64) - swath["lon"].values) + 180) % 360 - 180)
    worst = float(np.nanmax(np.maximum(dlat, dlon), initial=0.0))
    if worst > 0.01:
        raise ArchiveError(f"{pname}: pixel centres differ from the 1C-GMI granule of orbit {orbit} by up to "
                           f"{worst:.3f}°: not the same swath")
    return ret


def source_identity(source: str, cfg: dict) -> dict:
    """What version of ``source`` an archive build computes: the reference's 2B-CMB algorithm and
    version with the collocation, a baseline's 2A-GMI version, a model's input (1C-GMI) version
    (the checkpoint is added by the caller)."""
    m = model_of(source)
    v = cfg.get("versions") or {}
    if m is None:
        if source == REFERENCE:
            return {"reference": f"2B-CMB {v.get('2B-CMB')}", "collocation":
                    f"nearest <= {MAX_DISTANCE_KM:g} km, <= {MAX_TIME_DIFFERENCE_S:g} s"}
        return {"loader": LOADER}
    if m in (cfg.get("baselines") or {}):
        return dict(cfg["baselines"][m])
    return {"input": f"1C-GMI {v.get('1C-GMI')}"}


def ledger_archive(old: dict | None, plan: dict) -> dict:
    """The ledger's ``archive`` record after a build of ``plan`` on top of ``old``: the folder, the
    orbits built with their granule names and times, the skipped orbits and the sources absent
    per orbit (an orbit built now leaves ``skipped``; a source found now leaves ``missing``)."""
    old = old or {}
    orbits = dict(old.get("orbits") or {})
    for o in plan["orbits"]:
        g = plan["granules"][o]
        t0, t1 = plan["starts"][o]
        orbits[str(o)] = {"start": t0, "end": t1, **{p: Path(g[p]).name for p in PRODUCTS if g.get(p)}}
    skipped = {k: v for k, v in (old.get("skipped") or {}).items() if k not in orbits}
    skipped.update({str(o): why for o, why in plan["skipped"].items()})
    missing: dict = {}
    for s, d in (old.get("missing") or {}).items():
        if s in plan["baselines"]:  # asked again now: the plan says what is still absent
            keep = {k: v for k, v in d.items() if int(k) not in plan["granules"]}
        else:
            keep = dict(d)
        if keep:
            missing[s] = keep
    for s, d in plan["missing"].items():
        missing.setdefault(s, {}).update({str(o): why for o, why in d.items()})
    return {"granule_dir": plan["granule_dir"], "orbits": dict(sorted(orbits.items(), key=lambda kv: int(kv[0]))),
            "skipped": dict(sorted(skipped.items(), key=lambda kv: int(kv[0]))),
            "missing": {s: dict(sorted(d.items(), key=lambda kv: int(kv[0]))) for s, d in sorted(missing.items())}}


def describe_archive(ledger: dict) -> dict | None:
    """What ``Cube.describe()`` says of an archive cube (None for another cube)."""
    a = ledger.get("archive")
    if not a:
        return None
    orbits = a.get("orbits") or {}
    starts = [v["start"] for v in orbits.values()]
    ends = [v["end"] for v in orbits.values()]
    return {"granule_dir": a.get("granule_dir"), "period": [min(starts) if starts else None,
                                                            max(ends) if ends else None],
            "orbits": len(orbits), "skipped": len(a.get("skipped") or {}),
            "skipped_orbits": a.get("skipped") or {},
            "sources_missing": {s: len(d) for s, d in (a.get("missing") or {}).items()},
            "reference": "2B-CMB collocated on GMI (nearest footprint <= 5 km, <= 300 s)"}

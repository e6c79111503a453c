"""The build driver: one task per orbit (dask.distributed or inline) writes a partial; the
partials are merged into the cube atomically with the ledger updated (resumable, never
double-counting, never mixing two versions of a source)."""

from __future__ import annotations

import logging
import os
import threading
import time as _time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from catalogs.config import get_roots
from catalogs.runtime import dask_client
from catalogs.store import cleanup_stale, is_complete
from evaluation import regions as RG
from evaluation.cube import archive as AR
from evaluation.cube.layout import (BUILTIN, REFERENCE, TRUTH, BuildCancelled, CubeConfigMismatch, default_cube_path,
                                    empty_cube, expand_sources, model_of, partials_dir, region_labels, skill_labels)
from evaluation.cube.ledger import (_check_identities, _config_key, _diff, _fmt_identity, _identities,
                                    _legacy_partial, read_ledger)
from evaluation.cube.partials import (_DAMAGE, _discard_damaged, _npz_identities, _parse_partial_name,
                                      orbit_partial, partial_damage, partial_identities, read_partial,
                                      write_partial)
from evaluation.cube.query import open_cube
from evaluation.cube.store import _write_cube

log = logging.getLogger(__name__)


def _orbit_task(orbit: int, sources: list[str], cfg: dict, folder: str) -> dict:
    """One dask task: compute and write the partial of one orbit; return where and what."""
    t0 = _time.perf_counter()
    part = orbit_partial(orbit, sources, cfg)
    path = write_partial(part, Path(folder))
    return {"orbit": int(orbit), "path": str(path), "seconds": _time.perf_counter() - t0,
            "pixels": int(sum(np.sum(c[..., :]) for c in part["counts"].values()))}


def _pair_sides(pair: str) -> list[str]:
    return pair.split("|")


def _check_config(path: Path, ledger: dict, key: dict) -> None:
    """Refuse to add to a cube built with another configuration."""
    if ledger["config"] is not None and ledger["config"] != key:
        raise CubeConfigMismatch(f"cube {path} was built with a different configuration: "
                                 f"{_diff(ledger['config'], key)}")


@dataclass
class _Merge:
    """What a merge knows about the cube at ``path`` as it goes: per source and per pair the
    orbits merged (``done_*``) and being merged (``taking_*``), the identity of each source, and
    the truth/reference sources whose identity was assumed (cubes older than identities)."""

    path: Path
    done_s: dict[str, set]
    done_p: dict[str, set]
    idents: dict
    assumed: list[str]
    taking_s: dict[str, set] = field(default_factory=dict)
    taking_p: dict[str, set] = field(default_factory=dict)

    def accepts(self, s, pid, pp) -> bool:
        """Whether the partial's ``s`` is the version the cube holds (adopting it if new)."""
        got = pid.get(s)
        if s in self.idents:
            if got == self.idents[s]:
                return True
            log.warning("cube %s: skipping %s of %s: identity %s, the cube holds %s", self.path, s, Path(pp).name,
                        _fmt_identity(got), _fmt_identity(self.idents[s]))
            return False
        if got is None:
            log.warning("cube %s: skipping %s of %s: the partial records no identity", self.path, s, Path(pp).name)
            return False
        if self.done_s.get(s) and model_of(s) is not None:
            log.warning("cube %s: skipping %s of %s: the cube holds %s with no recorded identity (stale); rebuild "
                        "it with replace_stale=True", self.path, s, Path(pp).name, s)
            return False
        if self.done_s.get(s):
            log.info("cube %s: %s has no recorded identity (written before identities were recorded); taking it "
                     "as %s", self.path, s, _fmt_identity(got))
            self.assumed.append(s)
        self.idents[s] = got
        return True

    def take(self, o: int, srcs: list[str], prs: list[str], pid: dict, pp) -> tuple[list[str], list[str]]:
        """The sources and pairs of orbit ``o``'s partial ``pp`` to merge (not merged yet, the
        versions the cube holds), marked as being merged."""
        srcs = [s for s in srcs if o not in self.done_s.get(s, ()) and o not in self.taking_s.get(s, ())
                and self.accepts(s, pid, pp)]
        ok_p = []
        for p in prs:
            if o in self.done_p.get(p, ()) or o in self.taking_p.get(p, ()):
                continue
            if all(pid.get(x) is not None and (x not in self.idents or pid[x] == self.idents[x])
                   for x in _pair_sides(p)):
                ok_p.append(p)
            else:
                log.warning("cube %s: skipping pair %s of %s: its sides are not the versions the cube holds",
                            self.path, p, Path(pp).name)
        for s in srcs:
            self.taking_s.setdefault(s, set()).add(o)
        for p in ok_p:
            self.taking_p.setdefault(p, set()).add(o)
        return srcs, ok_p


def _start_merge(path: Path, ledger: dict, cfg: dict, drop: set, adopt: dict | None) -> _Merge:
    """Check the configuration, take ``drop`` out of the ledger and adopt the legacy identities
    of ``adopt``: the state a merge into ``path`` starts from."""
    key = _config_key(cfg)
    _check_config(path, ledger, key)
    ledger["config"] = key
    idents: dict = dict(ledger.get("identities") or {})
    for s in drop:
        ledger["sources"].pop(s, None)
        idents.pop(s, None)
    for p in list(ledger["pairs"]):
        if drop & set(_pair_sides(p)):
            ledger["pairs"].pop(p)
    assumed = [s for s in ledger.get("assumed_identities", []) if s not in drop]
    done_s = {s: set(v) for s, v in ledger["sources"].items()}
    for s, ident in (adopt or {}).items():
        if done_s.get(s) and s not in idents and model_of(s) is None:
            log.info("cube %s: %s has no recorded identity (written before identities were recorded); taking it "
                     "as %s", path, s, _fmt_identity(ident))
            idents[s] = ident
            assumed.append(s)
    done_p = {p: set(v) for p, v in ledger["pairs"].items()}
    return _Merge(path, done_s, done_p, idents, assumed)


def _unmerged(partial_paths: Sequence[Path], done_s: dict[str, set]) -> list[Path]:
    """The partials (by name) holding some source of an orbit the ledger does not have yet."""
    parts = []
    for pp in partial_paths:
        info = _parse_partial_name(Path(pp).name)
        if info is None:
            continue
        o, srcs = info
        if all(o in done_s.get(s, ()) for s in srcs):
            continue
        parts.append(Path(pp))
    return parts


def _kept_cube(path: Path, drop: set):
    """The cube at ``path`` in memory (None if there is none) without the ``drop`` sources, their
    pairs and the months only they had."""
    old = open_cube(path).ds.load() if is_complete(path) else None
    if old is not None and drop:
        keep_s = [str(s) for s in old["source"].values if str(s) not in drop]
        keep_p = [str(p) for p in old["pair"].values if not drop & set(_pair_sides(str(p)))]
        old = old.sel(source=keep_s, pair=keep_p)
        # months only the dropped sources had
        has = old["count"].sum(("source", "region", "surface", "bin")).values > 0 if keep_s else \
            np.zeros(old.sizes["time"], bool)
        old = old.isel(time=np.flatnonzero(has))
    return old


def _read_partial_meta(pp: Path):
    """(orbit, sources, pairs, months, identities) of a partial; None for a damaged one, which is
    discarded (not merged: its orbit stays missing from the ledger, a rerun computes it)."""
    why = partial_damage(pp)
    if why is None:
        try:
            with np.load(pp, allow_pickle=False) as z:
                srcs = [str(s) for s in z["sources"]]
                prs = [str(p) for p in z["pairs"]]
                ms = z["months"].astype("datetime64[ns]")
                pid = _npz_identities(z)
                o = int(z["orbit"])
        except _DAMAGE as e:
            why = f"{type(e).__name__}: {e}"
    if why is not None:
        _discard_damaged(pp, why)
        return None
    return o, srcs, prs, ms, pid


def _plan_merge(parts: list[Path], st: _Merge, cfg: dict, sources: list, pairs: list, months: set) -> list:
    """What each partial adds, ``(path, sources, pairs, months)``; ``sources``, ``pairs`` and
    ``months`` grow to the union the merged cube holds."""
    metas = []
    for pp in parts:
        meta = _read_partial_meta(pp)
        if meta is None:
            continue
        o, srcs, prs, ms, pid = meta
        pid = _legacy_partial(pid, srcs + [x for p in prs for x in _pair_sides(p)], cfg.get("identities"),
                              f"partial {Path(pp).name}")
        srcs, ok_p = st.take(o, srcs, prs, pid, pp)
        if not srcs and not ok_p:
            continue
        metas.append((pp, srcs, ok_p, ms))
        for s in srcs:
            if s not in sources:
                sources.append(s)
        for p in ok_p:
            if p not in pairs:
                pairs.append(p)
        months.update(ms.tolist())
    return metas


def _merged_cube(old, metas: list, st: _Merge, cfg: dict, sources: list, pairs: list, months: set, progress):
    """The new cube's dataset: ``old`` plus every partial of ``metas``, recorded as done in ``st``."""
    months = np.array(sorted(months), dtype="datetime64[ns]")
    new = empty_cube(sources, pairs, cfg["regions"], months, skill_labels(cfg))
    cnt, tot, tsq = new["count"].values, new["total"].values, new["total_sq"].values
    skl, fsk = new["skill"].values, new["field_skill"].values
    si = {s: i for i, s in enumerate(sources)}
    pi = {p: i for i, p in enumerate(pairs)}
    ti = {m: i for i, m in enumerate(months.tolist())}
    if old is not None:
        t_old = [ti[m] for m in old["time"].values.astype("datetime64[ns]").tolist()]
        for s in old["source"].values:
            k = si[str(s)]
            cnt[k][:, t_old] = old["count"].sel(source=s).values
            tot[k][:, t_old] = old["total"].sel(source=s).values
            tsq[k][:, t_old] = old["total_sq"].sel(source=s).values
        for p in old["pair"].values:
            k = pi[str(p)]
            skl[k][:, t_old] = old["skill"].sel(pair=p).values
            fsk[k][t_old] = old["field_skill"].sel(pair=p).values

    for n, (pp, srcs, prs, ms) in enumerate(metas):
        part = read_partial(pp)
        o = part["orbit"]
        t_idx = [ti[m] for m in ms.tolist()]
        for s in srcs:
            k = si[s]
            cnt[k][:, t_idx] += np.moveaxis(part["counts"][s], 0, 1)
            tot[k][:, t_idx] += np.moveaxis(part["sums"][s], 0, 1)
            tsq[k][:, t_idx] += np.moveaxis(part["sumsq"][s], 0, 1)
            st.done_s.setdefault(s, set()).add(o)
        for p in prs:
            k = pi[p]
            skl[k][:, t_idx] += np.moveaxis(part["skill"][p], 0, 1)
            fsk[k][t_idx] += part["field_skill"][p]
            st.done_p.setdefault(p, set()).add(o)
        if progress:
            progress(n + 1, len(metas), "merging partials")
    return new


def _record(ledger: dict, st: _Merge) -> None:
    """Write what ``st`` merged into ``ledger``."""
    ledger["sources"] = {s: sorted(v) for s, v in st.done_s.items()}
    ledger["pairs"] = {p: sorted(v) for p, v in st.done_p.items()}
    ledger["identities"] = {s: st.idents[s] for s in sorted(st.idents) if s in st.done_s}
    if st.assumed:
        ledger["assumed_identities"] = sorted(set(st.assumed))
    else:
        ledger.pop("assumed_identities", None)


def merge_partials(path: Path, partial_paths: Sequence[Path], cfg: dict, *, progress=None,
                   drop: Iterable[str] = (), adopt: dict | None = None, ledger_extra: dict | None = None) -> dict:
    """Merge partial files into the cube at ``path`` (created if missing), atomically, with the
    ledger updated; (source, orbit) pairs already in the ledger are skipped. Returns the ledger.

    ``drop``: sources to remove first (their histograms, every skill pair involving them, their
    ledger entries and identities), e.g. stale ones being rebuilt. Identities: a source of a
    partial is merged only if its identity equals the one the ledger records for that source
    (or the source is new to the cube); a pair only if both its sides match. What does not match
    is skipped with a warning (the cube never mixes two versions of a source). A truth/reference
    source of a cube written before identities were recorded takes the partial's identity (logged),
    or the one given in ``adopt`` ({source: identity}, what :func:`build_cube` checked).
    ``ledger_extra``: top-level ledger entries to record with the merge (an archive cube's
    ``archive`` record); a change in them alone rewrites the cube's ledger."""
    path = Path(path)
    ledger = read_ledger(path)
    drop = set(drop)
    st = _start_merge(path, ledger, cfg, drop, adopt)
    parts = _unmerged(partial_paths, st.done_s)
    old = _kept_cube(path, drop)
    extra_changed = bool(ledger_extra) and any(ledger.get(k) != v for k, v in ledger_extra.items())
    ledger.update(ledger_extra or {})
    if not parts and not ((drop or extra_changed) and old is not None):
        return ledger
    # the union of sources, pairs, months
    sources = [str(s) for s in old["source"].values] if old is not None else []
    pairs = [str(p) for p in old["pair"].values] if old is not None else []
    months = set(old["time"].values.astype("datetime64[ns]").tolist()) if old is not None else set()
    metas = _plan_merge(parts, st, cfg, sources, pairs, months)
    if not metas and not drop and not extra_changed and set(st.idents) == set(ledger.get("identities") or {}):
        for pp in parts:  # nothing usable in them (already merged, or stale)
            Path(pp).unlink(missing_ok=True)
        return ledger
    new = _merged_cube(old, metas, st, cfg, sources, pairs, months, progress)
    _record(ledger, st)
    _write_cube(new, ledger, path)
    for pp in parts:  # merged and recorded: the partials are no longer needed
        Path(pp).unlink(missing_ok=True)
    return ledger


def _build_config(world_seed, n_scans, extra_regions, model_fns, model_product, torch_threads, skill_extra,
                  loader: dict | None = None) -> dict:
    """The configuration of a build (what its ledger key and each orbit task read); ``loader``:
    the archive loader's entries (:func:`build_archive_cube`), else the simulator."""
    cfg = {"world_seed": int(world_seed), "n_scans": n_scans, "regions": region_labels(extra_regions),
           "extra_regions": [RG.get_region(s).spec for s in extra_regions], "model_fns": model_fns or {},
           "model_product": model_product, "torch_threads": torch_threads, "loader": "simulator",
           "skill_extra": bool(skill_extra and extra_regions)}
    cfg.update(loader or {})
    return cfg


def _reusable_partials(path: Path, cur: dict, drop: set) -> tuple[Path, dict[int, set], int]:
    """(the partials folder of the cube at ``path``, {orbit: sources} its finished partials of the
    current versions hold, how many damaged partials were discarded); stale partials are removed."""
    pdir = partials_dir(path)
    pdir.mkdir(parents=True, exist_ok=True)
    cleanup_stale(pdir)  # temps of killed workers (a live writer's are kept)
    have: dict[int, set] = {}
    damaged = 0
    for f in sorted(pdir.glob("o*.npz")):
        info = _parse_partial_name(f.name)
        if not info:
            continue
        why = partial_damage(f)
        if why is None:
            try:
                pid = partial_identities(f)
            except _DAMAGE as e:
                why = f"{type(e).__name__}: {e}"
        if why is not None:  # truncated, empty or bit-flipped (a crash, a full disk): recompute it
            _discard_damaged(f, why)
            damaged += 1
            continue
        pid = _legacy_partial(pid, [x for x in cur if x in info[1] or x in BUILTIN], cur, f"partial {f.name}")
        bad = sorted({x for x in set(info[1]) | set(pid) if (x in cur and pid.get(x) != cur[x])
                      or (x in drop and x not in cur)})
        if bad:
            log.info("removing stale partial %s (%s: not the current version)", f.name, ", ".join(bad))
            f.unlink(missing_ok=True)
            continue
        have.setdefault(info[0], set()).update(info[1])
    return pdir, have, damaged


def _orbits_to_compute(orbits: Iterable[int], srcs: list[str], ledger: dict, drop, have: dict,
                       unavailable: dict | None = None) -> list:
    """``(orbit, sources)`` still to compute: what the ledger and the reusable partials lack
    (``unavailable``: {orbit: sources that orbit has no data for}, left out)."""
    done = {s: (set() if s in drop else set(v)) for s, v in ledger["sources"].items()}
    todo = []
    for o in dict.fromkeys(int(x) for x in orbits):
        absent = (unavailable or {}).get(o, ())
        need = [s for s in srcs if o not in done.get(s, ()) and s not in have.get(o, set()) and s not in absent]
        if need:
            # keep a model's two sources together (one inference feeds both)
            todo.append((o, expand_sources(need)))
    return todo


def build_cube(
    orbits: Iterable[int],
    sources: Sequence[str] = (TRUTH, REFERENCE),
    path: str | os.PathLike | None = None,
    *,
    scheduler=None,
    n_workers: int = 2,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: threading.Event | None = None,
    world_seed: int = 0,
    n_scans: int | None = None,
    extra_regions: Sequence[str] = (),
    model_fns: dict | None = None,
    model_product: str = "precip_mean",
    torch_threads: int | None = 1,
    max_tasks: int | None = None,
    replace_stale: bool = False,
    skill_extra: bool = False,
    loader: dict | None = None,
    unavailable: dict | None = None,
    ledger_extra: dict | None = None,
) -> Path:
    """Build (or extend) the cube at ``path`` with ``orbits`` × ``sources``.

    ``sources``: ``truth`` (adds ``truth_strip``), ``reference``, model names (add
    ``<model>@strip``; pairs with reference and truth). ``scheduler``: None → a
    ``LocalCluster(n_workers, threads_per_worker=1, processes=True)``; a scheduler address
    (``tcp://…``) or a ``distributed.Client``; ``"inline"`` → in this process, no dask.
    ``progress(done, total, message)``; ``cancel`` (threading.Event) stops after the running
    tasks (finished orbits are kept and resume). ``max_tasks`` stops after that many orbits
    were computed (for tests of interruption). Returns the cube path.

    Identities (:func:`source_identity`): if the cube holds a requested source computed by
    another version of it (a retrained model, another simulator version), the build raises
    :class:`StaleSource`; with ``replace_stale=True`` it drops that source (histograms, skill
    pairs, ledger entries; for truth/reference every model too, since their pairs go) and its
    partials, and rebuilds it on ``orbits``. Partials of another version are never reused.

    ``skill_extra``: also store the skill statistics on the extra regions (the ``skill_region``
    axis is then the AR6 partition + ``extra_regions``), so scores answer for them too (box cubes
    are built this way).

    ``loader``, ``unavailable``, ``ledger_extra``: what :func:`build_archive_cube` passes (the
    archive's granules, the sources an orbit has no granule for, the ledger's ``archive`` record)."""
    path = Path(path) if path is not None else default_cube_path()
    if path.parent.is_dir():  # a merge killed mid-write: its temp goes (or a whole cube comes back)
        cleanup_stale(path.parent)
    srcs = expand_sources(sources)
    cfg = _build_config(world_seed, n_scans, extra_regions, model_fns, model_product, torch_threads, skill_extra,
                        loader)
    ledger = read_ledger(path)
    _check_config(path, ledger, _config_key(cfg))
    cur = _identities(srcs, cfg)
    cfg["identities"] = cur
    drop, adopt = _check_identities(path, ledger, srcs, cur, replace_stale)
    # what each orbit still needs, minus what finished partials (of the current versions) hold
    pdir, have, damaged = _reusable_partials(path, cur, drop)
    todo = _orbits_to_compute(orbits, srcs, ledger, drop, have, unavailable)
    total = len(todo)
    if progress:
        progress(0, total, f"{total} orbit(s) to compute, {len(have)} partial(s) to reuse"
                 + (f", {damaged} damaged partial(s) discarded" if damaged else ""))
    if max_tasks is not None:
        todo = todo[:max_tasks]
    _run_tasks(todo, cfg, pdir, scheduler, n_workers, progress, cancel, total)
    if max_tasks is not None and max_tasks < total:
        raise BuildCancelled(f"stopped after {max_tasks} of {total} orbits (max_tasks)")
    merge_partials(path, sorted(pdir.glob("o*.npz")), cfg, progress=None, drop=drop, adopt=adopt,
                   ledger_extra=ledger_extra)
    if progress:
        progress(total, total, "cube written")
    return path


def build_archive_cube(root, sources: Sequence[str] | None = None, path: str | os.PathLike | None = None,
                       *,
                       start=None, end=None, orbits: Iterable[int] | None = None, scheduler=None,
                       n_workers: int = 2,
                       progress: Callable[[int, int, str], None] | None = None, cancel=None,
                       extra_regions: Sequence[str] = (), model_fns: dict | None = None,
                       model_product: str = "precip_mean", torch_threads: int | None = 1,
                       max_tasks: int | None = None, replace_stale: bool = False) -> Path:
    """Build (or extend) the cube of the PPS archive under ``root`` (see the module doc) with the
    orbits whose 1C-GMI granule starts in [``start``, ``end``) (and among ``orbits`` if given).
    ``sources``: ``reference``, ``gprof`` (or a ``GPROF…`` name), model names; default
    ``reference`` and ``gprof`` if the archive has 2A-GMI granules. ``path``: default
    :func:`evaluation.cube.archive.default_archive_cube_path`; confined to the data root. The rest as
    :func:`build_cube`. Returns the cube path."""
    plan = AR.plan_archive(root, sources, start=start, end=end, orbits=orbits)
    dest = Path(path) if path is not None else AR.default_archive_cube_path(plan["granule_dir"])
    dest = get_roots().confine(dest, write=True)
    extra = {"archive": AR.ledger_archive(read_ledger(dest).get("archive"), plan)}
    loader = {"loader": AR.LOADER, "granule_dir": plan["granule_dir"], "granules": plan["granules"],
              "baselines": plan["baselines"], "versions": plan["versions"]}
    return build_cube(plan["orbits"], plan["sources"], dest, scheduler=scheduler, n_workers=n_workers,
                      progress=progress, cancel=cancel, extra_regions=extra_regions, model_fns=model_fns,
                      model_product=model_product, torch_threads=torch_threads, max_tasks=max_tasks,
                      replace_stale=replace_stale, loader=loader, unavailable=plan["unavailable"],
                      ledger_extra=extra)


def _run_tasks(todo, cfg, pdir, scheduler, n_workers, progress, cancel, total):
    if not todo:
        return
    if scheduler == "inline":
        for n, (o, s) in enumerate(todo):
            if cancel is not None and cancel.is_set():
                raise BuildCancelled(f"cancelled after {n} of {total} orbits; rerun to resume")
            _orbit_task(o, s, cfg, str(pdir))
            if progress:
                progress(n + 1, total, f"orbit {o}")
        return
    from distributed import as_completed

    with dask_client(scheduler, n_workers) as client:
        cfg_f = client.scatter(cfg, broadcast=True) if cfg.get("model_fns") else cfg
        futs = [client.submit(_orbit_task, o, s, cfg_f, str(pdir), key=f"cube-orbit-{o}-{uuid.uuid4().hex[:6]}",
                              pure=False) for o, s in todo]
        done = 0
        for fut in as_completed(futs):
            fut.result()  # re-raise task errors
            done += 1
            if progress:
                progress(done, total, "orbits")
            if cancel is not None and cancel.is_set():
                for f in futs:
                    f.cancel()
                raise BuildCancelled(f"cancelled after {done} of {total} orbits; rerun to resume")

"""Box cubes: a climatology cube for one lat/lon box the main cube was not built with.

A user can draw any box; the main cube answers only the regions it was built with. For another
box, :func:`box_plan` works out what its *box cube* needs -- truth and reference, and each model
the main cube holds, on the main cube's orbits for that source that can reach the box
(:func:`catalogs.orbits.orbits_near_box`), with a rough time estimate -- and
:func:`build_box_cube` builds it with :func:`evaluation.cube.build_cube` (atomic, resumable,
versioned like every cube) under ``<data_root>/cubes/box-<hash>.zarr``. The views, the exports
and ``raincheck evaluate``/``trends`` then answer the box from it (:func:`cube_for_region`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from catalogs.store import is_complete, temp_name
from evaluation import regions as RG
from evaluation.cube import (REFERENCE, STRIP, TRUTH, Cube, build_cube, expand_sources, model_of, open_cube,
                             read_ledger, source_identity)
from evaluation.results import BoxGroup, BoxPlan
import hashlib
from catalogs.config import get_roots
from catalogs.simulator.geometry import N_SCANS
from catalogs.orbits import orbits_near_box

log = logging.getLogger(__name__)

#: rough cost of one whole orbit (2924 scans) on this 2-core CPU, in seconds: simulating and
#: summarising it (truth/reference), or a model's inference on it (the U-Nets ≈ 4–8 s idle,
#: the Bayesian database retrieval 26 s idle with its skill statistics, measured 2026-12-02 as
#: an inline cube build of orbit 30000 with and without it); a model not listed counts as ``DEFAULT``
ORBIT_COST_S = {TRUTH: 1.5, "unet": 8.0, "bayes-baseline": 30.0, "callable": 0.5, "default": 20.0}
#: a box cube skips a model whose inference over its orbits would take longer than this (s)
BOX_MODEL_LIMIT_S = 600.0
_BOX_KEYS = ("world_seed", "n_scans", "model_product")


def box_spec(spec) -> str:
    """The normalised ``bbox:`` spec of a box region (ValueError for anything else)."""
    r = RG.get_region(spec)
    if r.kind != "bbox":
        raise ValueError(f"a box cube needs a box region (bbox:lon0,lat0,lon1,lat1), got {spec!r}")
    return r.spec


def _main_config(main) -> dict:
    cfg = (main.ledger.get("config") or {}) if main is not None else {}
    return {"world_seed": int(cfg.get("world_seed", 0) or 0), "n_scans": cfg.get("n_scans"),
            "model_product": cfg.get("model_product", "precip_mean")}


def box_cube_path(spec, main=None) -> Path:
    """Where the box cube of ``spec`` lives: ``<data root>/cubes/box-<hash>.zarr``, the hash of
    the normalised spec and of the main cube's world seed, scans per orbit and model product
    (the configuration the box cube must share with the cube it completes)."""


    key = json.dumps({"spec": box_spec(spec), **_main_config(main)}, sort_keys=True)
    return get_roots().sub("cubes") / f"box-{hashlib.sha256(key.encode()).hexdigest()[:16]}.zarr"


def orbit_cost_s(source: str, n_scans: int | None = None, *, callable_model: bool = False) -> float:
    """Rough seconds to add ``source`` (truth/reference, or a model) on one orbit of ``n_scans``
    scans (:data:`ORBIT_COST_S`)."""

    frac = 1.0 if n_scans is None else min(int(n_scans), N_SCANS) / N_SCANS
    m = model_of(source)
    if m is None:
        c = ORBIT_COST_S[TRUTH]
    elif callable_model:
        c = ORBIT_COST_S["callable"]
    else:
        c = ORBIT_COST_S.get(m, ORBIT_COST_S["unet"] if m.startswith("unet") else ORBIT_COST_S["default"])
    return c * frac


def fmt_seconds(s: float) -> str:
    if s < 90:
        return f"{max(s, 1):.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def box_plan(spec, main, *, model_fns: dict | None = None, max_model_seconds: float = BOX_MODEL_LIMIT_S,
             path=None) -> BoxPlan:
    """What the box cube of ``spec`` needs, from the main cube ``main`` (a :class:`Cube` or a
    path): for truth + reference and each model the main cube holds, the orbits the main cube
    used for it (its ledger) that may cross the box (:func:`catalogs.orbits.orbits_near_box`).

    Returns a :class:`evaluation.results.BoxPlan`: spec, path, main_cube, config, groups
    (:class:`~evaluation.results.BoxGroup`: sources, orbits, seconds, of), skipped {model: reason},
    notes, orbits (distinct orbits), seconds (rough estimate); ``to_dict()`` is the plan's JSON
    (``<box cube>.box.json``). A model is
    skipped (with its reason) when its inference would take longer than ``max_model_seconds``,
    when the main cube's numbers come from a callable this process lacks (``model_fns``), or
    when it is not registered any more."""

    main = main if isinstance(main, Cube) else open_cube(main)
    spec = box_spec(spec)
    if (main.ledger.get("config") or {}).get("loader", "simulator") != "simulator":  # box cubes simulate orbits
        raise ValueError(f"{main.path} is the cube of a PPS archive, and box cubes are built from synthetic orbits: "
                         f"build the archive cube with the box as an extra region instead (raincheck climatology "
                         f"build --archive DIR --extra-region {spec})")
    cfg = _main_config(main)
    params = RG.get_region(spec).params
    led = main.ledger.get("sources") or {}
    model_fns = model_fns or {}
    cache: dict = {}

    def crossing(orbits) -> list[int]:
        key = tuple(sorted(int(o) for o in orbits))
        if key not in cache:
            cache[key] = [int(o) for o in orbits_near_box(list(key), params, n_scans=cfg["n_scans"])]
        return cache[key]

    groups, skipped, notes = [], {}, []
    t_orb, r_orb = led.get(TRUTH, []), led.get(REFERENCE, [])
    if sorted(t_orb) == sorted(r_orb):
        builtin = [([TRUTH, REFERENCE], t_orb)] if t_orb else []
    else:
        builtin = [([s], o) for s, o in ((TRUTH, t_orb), (REFERENCE, r_orb)) if o]
    for srcs, orbs in builtin:
        o = crossing(orbs)
        groups.append(BoxGroup(srcs, o, len(o) * orbit_cost_s(TRUTH, cfg["n_scans"]), len(orbs)))
    for m in main.models:
        ident = main.identity(m) or {}
        orbs = led.get(m, [])
        if "model" in ident:  # computed by a callable (tests, custom models)
            fn = model_fns.get(m)
            if fn is None:
                skipped[m] = (f"{m}: the cube's numbers come from a custom model function ({ident['model']}) that "
                              "this program does not have")
                continue
            now = source_identity(m, {"model_fns": {m: fn}, "loader": "simulator"})
            if now.get("model") != ident.get("model"):
                skipped[m] = f"{m}: the model function given is {now.get('model')}, the cube's is {ident['model']}"
                continue
            cost = orbit_cost_s(m, cfg["n_scans"], callable_model=True)
        else:
            try:
                from models.registry import get_card

                sha = str(get_card(m).checkpoint_sha256)
            except Exception as e:  # noqa: BLE001 - unregistered / unreadable: say so, go on
                skipped[m] = f"{m}: not available ({type(e).__name__}: {e})"
                continue
            if ident.get("checkpoint_sha256") and not sha.startswith(ident["checkpoint_sha256"]):
                notes.append(f"{m}: the cube's numbers come from checkpoint {ident['checkpoint_sha256']}; the box is "
                             f"computed with the registered one, {sha[:12]}")
            cost = orbit_cost_s(m, cfg["n_scans"])
        o = crossing(orbs)
        secs = len(o) * (cost + orbit_cost_s(TRUTH, cfg["n_scans"]))
        if secs > max_model_seconds:
            skipped[m] = (f"{m}: inference on the {len(o)} orbit(s) crossing the box would take about "
                          f"{fmt_seconds(secs)} (limit {fmt_seconds(max_model_seconds)}); add it with "
                          f"`raincheck climatology build-box {spec} --max-model-seconds {int(secs) + 60}`")
            continue
        groups.append(BoxGroup([m], o, secs, len(orbs)))
    groups = [g for g in groups if g.orbits]
    distinct = sorted({o for g in groups for o in g.orbits})
    return BoxPlan(spec=spec, path=str(Path(path) if path is not None else box_cube_path(spec, main)),
                   main_cube=str(main.path) if main.path else None, config=cfg, groups=tuple(groups),
                   skipped=skipped, notes=tuple(notes), orbits=len(distinct),
                   seconds=float(sum(g.seconds for g in groups)))


def box_missing(plan: BoxPlan | dict) -> dict:
    """{source: orbits of the plan the box cube does not hold yet} (empty: complete). ``plan``:
    a :class:`BoxPlan` or its dict."""
    plan = BoxPlan.coerce(plan)
    led = read_ledger(Path(plan.path))
    have = led.get("sources") or {}
    out = {}
    for g in plan.groups:
        for s in expand_sources(list(g.sources)):
            miss = sorted(set(g.orbits) - set(have.get(s, ())))
            if miss:
                out[s] = miss
    return out


def box_complete(plan: BoxPlan | dict) -> bool:
    plan = BoxPlan.coerce(plan)
    return bool(plan.groups) and is_complete(Path(plan.path)) and not box_missing(plan)


def box_info(path) -> BoxPlan | None:
    """The plan a box cube was built from (``<box cube>.box.json``), or None when there is none
    or it cannot be read as a plan."""
    p = Path(str(path) + ".box.json")
    try:
        return BoxPlan.from_dict(json.loads(p.read_text()))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def cube_for_region(main, region) -> Cube:
    """The cube that answers ``region``: ``main`` (a :class:`Cube` or a path), or for a box it
    does not hold, that box's complete box cube (:func:`build_box_cube`) if there is one."""
    main = main if isinstance(main, Cube) else open_cube(main)
    try:
        r = RG.get_region(region)
    except (ValueError, KeyError):
        return main
    if r.kind != "bbox" or r.spec in main.regions:
        return main
    plan = box_plan(r.spec, main, max_model_seconds=float("inf"))
    path = Path(plan.path)
    if not is_complete(path):
        return main
    missing = box_missing(plan)
    if missing:
        log.warning("the box cube %s lacks %s; build-box completes it", path,
                    ", ".join(f"{s} on {len(v)} orbit(s)" for s, v in missing.items() if not s.endswith(STRIP)))
    return open_cube(path)


def build_box_cube(spec, main, *, path=None, progress: Callable[[int, int, str], None] | None = None,
                   cancel: threading.Event | None = None, scheduler="inline", n_workers: int = 2,
                   model_fns: dict | None = None, max_model_seconds: float = BOX_MODEL_LIMIT_S,
                   plan: BoxPlan | dict | None = None) -> Path:
    """Build (or complete) the *box cube* of ``spec``: a cube with the box as its one extra
    region (skill statistics included), over the orbits of the main cube ``main`` that cross
    the box, each source on the orbits the main cube used for it (:func:`box_plan`). Atomic and
    resumable like every cube (:func:`build_cube`; ``cancel`` keeps finished orbits); a stale
    source (another simulator version, a retrained model) is replaced. ``scheduler`` as in
    :func:`build_cube` (default inline: no dask). Writes the plan next to the cube
    (``<cube>.box.json``, :func:`box_info`). ``plan``: a :class:`BoxPlan` or its dict (default:
    :func:`box_plan`). Returns the box cube's path."""
    main = main if isinstance(main, Cube) else open_cube(main)
    plan = (BoxPlan.coerce(plan) if plan is not None else
            box_plan(spec, main, model_fns=model_fns, max_model_seconds=max_model_seconds, path=path))
    if not plan.groups:
        raise ValueError(f"no orbit of the cube {plan.main_cube} crosses {plan.spec}: nothing to compute")
    path = Path(plan.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    side = Path(str(path) + ".box.json")
    tmp = side.with_name(temp_name(side.name))
    tmp.write_text(json.dumps(plan.to_dict(), sort_keys=True))
    os.replace(tmp, side)
    cfg = plan.config
    grand = sum(len(g.orbits) for g in plan.groups)
    state = {"base": 0}
    for g in plan.groups:
        label = "truth/reference" if model_of(g.sources[0]) is None else g.sources[0]
        n_g = len(g.orbits)

        def prog(done, total, message="", _label=label, _n=n_g):
            if progress is None:
                return
            skipped = max(_n - int(total), 0)  # orbits already in the box cube or its partials
            progress(min(state["base"] + skipped + int(done), grand), grand, f"{_label}: {message}")

        build_cube(list(g.orbits), list(g.sources), path, scheduler=scheduler, n_workers=n_workers, progress=prog,
                   cancel=cancel, world_seed=cfg["world_seed"], n_scans=cfg["n_scans"], extra_regions=[plan.spec],
                   model_fns=model_fns, model_product=cfg["model_product"], replace_stale=True, skill_extra=True)
        state["base"] += n_g
    if progress:
        progress(grand, grand, "box cube written")
    return path

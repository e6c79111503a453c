"""The demo record: the orbits sampling the synthetic record, the packaged demo cube, and the
demo build (``raincheck climatology build --demo``)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from catalogs.store import is_complete
from evaluation.cube.build import build_cube
from evaluation.cube.layout import REFERENCE, TRUTH
from evaluation.cube.store import import_cube
from catalogs.simulator import geometry
from catalogs.config import get_roots

log = logging.getLogger(__name__)

PACKAGED_DEMO = Path(__file__).resolve().parent.parent / "data" / "demo_cube.nc"
#: the recorded demo build (``raincheck climatology build --demo``): the synthetic record
#: 1998–2060, one month per season, ``per_month`` whole orbits per month, truth + reference; each
#: shipped model on every k-th of those orbits (k coprime with the 8 orbits a year, so a model's
#: orbits rotate through the sampled months), k set by its cost on a 2-core CPU (≈ 4 s an orbit
#: and worker for a U-Net, simulation included; the Bayesian database retrieval ≈ 1–2.5 min):
#: the reference U-Net on every third orbit (168 orbits, 2.7 a year: its trends are the seed's
#: question), two research models (tail loss, hybrid) on every ninth, the Bayesian baseline on
#: every 63rd. The whole build takes ≈ 15 min on 2 workers here.
DEMO = {"years": (1998, 2060), "months": (1, 4, 7, 10), "per_month": 2,
        "sources": (TRUTH, REFERENCE),
        "models": {"unet-reference": 3, "unet-hybrid": 9, "unet-tailpinball": 9, "bayes-baseline": 63}}


def record_orbits(years=DEMO["years"], months=DEMO["months"], per_month=DEMO["per_month"], *, seed: int = 0) -> list[int]:
    """Orbits sampling the synthetic record: ``per_month`` orbits in each of ``months`` of each
    year, stratified-random in time: the k-th orbit of a month is the first orbit that starts
    after a time drawn uniformly in the k-th of ``per_month`` equal parts of the month
    (deterministic: ``default_rng([seed, year, month, k])``). Every sampled orbit starts in its
    month.

    Why random: orbits taken at the same UTC times every year have ground tracks (longitudes,
    local times) that drift *systematically* from year to year, which aliases the geography and
    the diurnal cycle of rain into a spurious multi-decadal trend (measured on the synthetic
    record: ≈ -5 %/K in the global mean with fixed 00 UTC days-1-and-15 sampling, against the
    injected +2 %/K). Random times turn that drift into noise that averages out."""

    out = []
    margin = np.timedelta64(2 * 3600, "s")  # > one orbit period: the next orbit still starts in the month
    for y in range(int(years[0]), int(years[1]) + 1):
        for m in months:
            a = np.datetime64(f"{y}-{m:02d}", "M")
            t0 = a.astype("datetime64[s]")
            t1 = (a + 1).astype("datetime64[s]") - margin
            span = (t1 - t0).astype(np.int64)
            for k in range(per_month):
                rng = np.random.default_rng([int(seed), y, int(m), k])
                frac = (k + rng.random()) / per_month
                t = (t0 + np.timedelta64(int(frac * span), "s")).astype("datetime64[ns]")
                o = int(geometry.orbit_at_time(t)) + 1  # the first orbit starting after t
                out.append(o)
    return out


def demo_cube_path(*, for_writing: bool = False) -> Path:
    """The demo cube: one built into the data root (``cubes/demo.zarr``) if complete, else the
    one shipped in the package."""

    built = get_roots().sub("cubes") / "demo.zarr"
    if for_writing or is_complete(built) or not is_complete(PACKAGED_DEMO):
        return built
    return PACKAGED_DEMO


def build_demo(path=None, *, models=None, scheduler=None, n_workers=2, progress=None, cancel=None,
               per_month=DEMO["per_month"], years=DEMO["years"], replace_stale: bool = False,
               from_packaged: bool = True) -> Path:
    """Build the demo cube: truth + reference over the record, then each available shipped model
    on its subset of the same orbits (``models``: name → stride, default :data:`DEMO`).
    Resumable like any build; models that are not registered are skipped.

    A new demo cube (the standard record: default ``years`` and ``per_month``) starts from the
    packaged one (``from_packaged``), so only what is missing or stale is computed: after models
    are retrained, ``replace_stale=True`` rebuilds just them. ``replace_stale`` as in
    :func:`build_cube`."""
    path = Path(path) if path is not None else demo_cube_path(for_writing=True)
    standard = tuple(years) == tuple(DEMO["years"]) and int(per_month) == DEMO["per_month"]
    if (from_packaged and standard and not is_complete(path) and is_complete(PACKAGED_DEMO)
            and path.resolve() != PACKAGED_DEMO.resolve()):
        log.info("starting the demo cube %s from the packaged %s", path, PACKAGED_DEMO)
        import_cube(PACKAGED_DEMO, path)
    orbits = record_orbits(years=years, per_month=per_month)
    build_cube(orbits, DEMO["sources"], path, scheduler=scheduler, n_workers=n_workers, progress=progress, cancel=cancel,
               replace_stale=replace_stale)
    if models is None:
        try:
            from models.registry import list_models

            have = {c.name for c in list_models()}
        except Exception:  # noqa: BLE001 - no models layer: truth/reference only
            have = set()
        models = {m: k for m, k in DEMO["models"].items() if m in have}
    for m, k in dict(models).items():
        build_cube(orbits[::int(k)], [m], path, scheduler=scheduler, n_workers=n_workers, progress=progress,
                   cancel=cancel, replace_stale=replace_stale)
    return path

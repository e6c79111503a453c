"""`raincheck climatology build|info`, `raincheck evaluate`, `raincheck trends`.

Thin wrappers: the numbers come from :mod:`evaluation.report` (the same functions the app
calls); ``--json`` prints the documented schema (docs/evaluation.md).
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import click

from app.commands._args import check_sources, parse_orbits, parse_years
from app.commands._progress import ProgressBar
from catalogs.config import PathOutsideRoots, get_roots
from catalogs.store import is_complete, read_marker
from evaluation import regions as RG
from models.errors import ModelError

# evaluation.cube, .boxes, .report and .trends load numba and scipy (about a second): imported
# where a command needs them, so `raincheck --help` does not pay for them


def _orbit_list(spec: str) -> list[int]:
    """Orbits of an ``--orbits`` value (see :func:`app.commands._args.parse_orbits`)."""
    return parse_orbits(spec)


def _open(cube_path, region=None):
    """The cube (default: the demo cube); for a box it does not hold, the box's cube once built
    (``raincheck climatology build-box``). A missing, unfinished or foreign ``--cube`` and a bad
    region are refused with a message (no traceback)."""
    from evaluation import boxes as BX
    from evaluation import cube as CB

    if region:
        try:
            RG.get_region(region)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--region") from None
    path = cube_path or CB.demo_cube_path()
    if not is_complete(path):
        raise click.BadParameter(f"no complete climatology cube at {str(path)!r}; build one with "
                                 "'raincheck climatology build'", param_hint="--cube")
    try:
        kind = read_marker(path).get("kind")
    except (OSError, ValueError):
        kind = None
    if kind is not None and kind != "climatology-cube":
        raise click.BadParameter(f"{str(path)!r} is a {kind} store, not a climatology cube", param_hint="--cube")
    try:
        c = CB.open_cube(path)
    except (OSError, ValueError, KeyError) as e:
        raise click.BadParameter(f"{str(path)!r} is not a readable climatology cube ({str(e)[:200]})",
                                 param_hint="--cube") from None
    if not region:
        return c
    try:
        return BX.cube_for_region(c, region)
    except (ValueError, KeyError) as e:
        raise click.BadParameter(str(e).strip("'\""), param_hint="--region") from None


def _check_period(cube, period) -> None:
    """Refuse a period the cube holds no month of (instead of printing empty scores)."""
    from evaluation import cube as CB

    try:
        a, b = CB.parse_period(period)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--period") from None
    if a is None:
        return
    t = cube.times
    if not ((t >= a) & (t < b)).any():
        d = cube.describe()
        raise click.ClickException(f"no data in period {period!r}: the cube covers {d['first_month']} to "
                                   f"{d['last_month']}")


def _emit(obj, as_json: bool, text) -> None:
    if as_json:
        click.echo(json.dumps(obj, indent=1, sort_keys=False))
    else:
        click.echo(text(obj))


@click.group("climatology")
def climatology() -> None:
    """Build and inspect the climatology cube (mergeable per-orbit histograms)."""


@climatology.command("build")
@click.option("--demo", is_flag=True, help="The recorded demo build: 1998-2060, 4 months/year, 2 orbits/month, "
                                           "truth + reference, shipped models on a subset (U-Net every 31st, "
                                           "Bayes every 63rd orbit).")
@click.option("--orbits", "orbit_spec", default=None, help="Orbits: '1000:1100', '1000:2000:10', '5,6,7'.")
@click.option("--record", is_flag=True, help="Orbits sampling the synthetic record (see --per-month, --years).")
@click.option("--years", default="1998-2060", show_default=True, help="Years for --record/--demo.")
@click.option("--per-month", default=2, show_default=True, type=click.IntRange(1, 400),
              help="Orbits per sampled month (--record/--demo).")
@click.option("--archive", "archive_dir", type=click.Path(file_okay=False), default=None,
              help="Build on the PPS archive under this folder (1C-GMI, 2B-CMB, 2A-GMI granules in gpm-api's "
                   "tree, e.g. made by 'raincheck archive make'): CMB is the reference, GPROF a baseline read "
                   "from its 2A-GMI granules, models run on the 1C-GMI Tb; no truth.")
@click.option("--start", default=None, help="With --archive: orbits whose 1C-GMI granule starts on or after this "
                                            "date (ISO).")
@click.option("--end", default=None, help="With --archive: ... and before this date (ISO).")
@click.option("--sources", default=None,
              help="truth, reference and/or model names (comma separated); default truth,reference "
                   "(with --archive: reference,gprof; 'gprof' = the archive's 2A-GMI algorithm, e.g. GPROF2021v1).")
@click.option("--n-scans", type=click.IntRange(min=1), default=None, help="Use only the first N scans of each orbit.")
@click.option("--extra-region", "extra_regions", multiple=True, help="Extra region (bbox:..., polygon:WKT) to store.")
@click.option("--cube", "cube_path", type=click.Path(), default=None,
              help="Cube path (default: <data root>/cubes/climatology.zarr; with --archive "
                   "<data root>/cubes/archive-<hash of the folder>.zarr, which info/evaluate --archive find).")
@click.option("--scheduler", default=None, help="dask scheduler address (tcp://host:8786); default: a LocalCluster.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 256), help="LocalCluster workers.")
@click.option("--inline", is_flag=True, help="No dask: compute in this process.")
@click.option("--replace-stale", is_flag=True,
              help="Drop and rebuild sources the cube holds in another version (a retrained model's checkpoint, "
                   "another simulator version); without it such a build stops with an error.")
def build_cmd(demo, orbit_spec, record, years, per_month, archive_dir, start, end, sources, n_scans, extra_regions,
              cube_path, scheduler, workers, inline, replace_stale) -> None:
    """Build or extend a cube; an interrupted build resumes where it stopped."""
    from evaluation import cube as CB

    if logging.getLogger().getEffectiveLevel() > logging.INFO:  # quiet dask unless -v
        logging.getLogger("distributed").setLevel(logging.ERROR)
    if archive_dir is not None:
        if demo or record or n_scans:
            raise click.UsageError("--archive builds on the archive's granules: --demo, --record and --n-scans "
                                   "do not apply")
        _build_archive(archive_dir, start, end, orbit_spec, sources, extra_regions, cube_path,
                       "inline" if inline else scheduler, workers, replace_stale)
        return
    if start or end:
        raise click.UsageError("--start/--end select orbits of an --archive; for synthetic orbits use --orbits or "
                               "--record --years")
    sources = sources or "truth,reference"
    # every value is checked before anything is computed or written
    yrs = parse_years(years)
    if not demo:
        srcs = check_sources([s.strip() for s in sources.split(",") if s.strip()])
        if record:
            orbits = CB.record_orbits(years=yrs, per_month=per_month)
        elif orbit_spec:
            orbits = _orbit_list(orbit_spec)
        else:
            raise click.UsageError("give --orbits, --record or --demo")
    for r in extra_regions:
        try:
            RG.get_region(r)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--extra-region") from None
    bar = ProgressBar("cube", unit="orbit")
    sched = "inline" if inline else scheduler
    try:
        if demo:
            path = CB.build_demo(cube_path, scheduler=sched, n_workers=workers, progress=bar, cancel=threading.Event(),
                                 per_month=per_month, years=yrs, replace_stale=replace_stale)
        else:
            path = CB.build_cube(orbits, srcs,
                                 cube_path or CB.default_cube_path(), scheduler=sched, n_workers=workers,
                                 progress=bar, cancel=threading.Event(), n_scans=n_scans,
                                 extra_regions=extra_regions, replace_stale=replace_stale)
    except (CB.CubeConfigMismatch, ValueError, KeyError, ModelError) as e:
        raise click.ClickException(str(e).strip("'\"")) from None
    finally:
        bar.close()
    click.echo(json.dumps(CB.open_cube(path).describe(), indent=1))


def _build_archive(archive_dir, start, end, orbit_spec, sources, extra_regions, cube_path, sched, workers,
                   replace_stale) -> None:
    """`climatology build --archive`: every value checked before anything is computed or written."""
    import pandas as pd

    from evaluation import cube as CB
    from evaluation.cube import archive as AR

    # paths as typed are relative to the working directory (then confined to the roots)
    archive_dir = Path(archive_dir).absolute()
    cube_path = None if cube_path is None else Path(cube_path).absolute()
    srcs = None if sources is None else [s.strip() for s in sources.split(",") if s.strip()]
    models = [s for s in srcs or () if not AR.is_baseline_name(s) and s not in CB.BUILTIN]
    if models:
        check_sources(models)
    orbits = parse_orbits(orbit_spec, strict=False) if orbit_spec else None
    bounds = {}
    for name, value in (("--start", start), ("--end", end)):
        if value is not None:
            try:
                bounds[name] = pd.Timestamp(value)
            except ValueError as e:
                raise click.BadParameter(f"{value!r} is not a date (ISO, e.g. 2019-06-01): {e}", param_hint=name) from None
    if len(bounds) == 2 and bounds["--end"] <= bounds["--start"]:
        raise click.BadParameter(f"the period {start} .. {end} ends before it starts", param_hint="--start/--end")
    for r in extra_regions:
        try:
            RG.get_region(r)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--extra-region") from None
    try:
        get_roots().confine(archive_dir)
        if cube_path is not None:
            get_roots().confine(cube_path, write=True)
    except PathOutsideRoots as e:
        raise click.BadParameter(str(e), param_hint="--archive/--cube") from None
    bar = ProgressBar("archive cube", unit="orbit")
    try:
        path = CB.build_archive_cube(archive_dir, srcs, cube_path, start=start, end=end, orbits=orbits,
                                     scheduler=sched, n_workers=workers, progress=bar, cancel=threading.Event(),
                                     extra_regions=extra_regions, replace_stale=replace_stale)
    except (CB.CubeConfigMismatch, ValueError, KeyError, ModelError, OSError) as e:
        raise click.ClickException(str(e).strip("'\"")) from None
    finally:
        bar.close()
    click.echo(json.dumps(CB.open_cube(path).describe(), indent=1))


@climatology.command("build-box")
@click.argument("box")
@click.option("--cube", "cube_path", type=click.Path(), default=None,
              help="The climatology cube the box completes (default: the demo cube).")
@click.option("--max-model-seconds", type=float, default=None,
              help="Skip a model whose inference over the box's orbits would take longer (estimate; default 600).")
@click.option("--scheduler", default=None, help="dask scheduler address; default: in this process (no dask).")
@click.option("--workers", default=2, show_default=True, type=int, help="LocalCluster workers (--scheduler local).")
@click.option("--plan", "plan_only", is_flag=True,
              help="Print what the build takes (orbits, sources, estimate) and stop.")
def build_box_cmd(box, cube_path, max_model_seconds, scheduler, workers, plan_only) -> None:
    """Build the box cube of BOX (bbox:lon0,lat0,lon1,lat1) for a cube that does not hold it:
    the cube's orbits that cross the box, truth + reference + the cube's models (each on the
    orbits the cube used for it); what the app's "Compute this box" runs. Resumes if interrupted."""
    from evaluation import boxes as BX
    from evaluation import cube as CB

    limit = BX.BOX_MODEL_LIMIT_S if max_model_seconds is None else max_model_seconds
    sched = "inline" if scheduler is None else (None if scheduler == "local" else scheduler)
    try:
        main = _open(cube_path)
        plan = BX.box_plan(box, main, max_model_seconds=limit)
        summary = {"box": plan["spec"], "box_cube": plan["path"], "main_cube": plan["main_cube"],
                   "orbits": plan["orbits"], "estimate": BX.fmt_seconds(plan["seconds"]),
                   "sources": {"+".join(g["sources"]): f"{len(g['orbits'])} of {g['of']} orbits"
                               for g in plan["groups"]},
                   "not_included": plan["skipped"], "notes": plan["notes"]}
        if plan_only:
            click.echo(json.dumps(summary, indent=1))
            return
        click.echo(json.dumps(summary, indent=1), err=True)
        bar = ProgressBar("box cube", unit="orbit")
        try:
            path = BX.build_box_cube(box, main, plan=plan, progress=bar, cancel=threading.Event(),
                                     scheduler=sched, n_workers=workers)
        finally:
            bar.close()
    except KeyError as e:
        raise click.ClickException(str(e).strip("'\"")) from None
    except (CB.CubeConfigMismatch, ValueError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps(CB.open_cube(path).describe(), indent=1))


@climatology.command("info")
@click.option("--cube", "cube_path", type=click.Path(), default=None)
@click.option("--archive", "archive_dir", type=click.Path(file_okay=False), default=None,
              help="The cube of this PPS archive at its default place (as built by 'climatology build --archive').")
def info_cmd(cube_path, archive_dir) -> None:
    """Describe a cube (sources, orbits, months, the identity of each source; for an archive cube
    its folder, period, skipped orbits and the sources absent from some orbits)."""
    click.echo(json.dumps(_open(archive_cube_path(cube_path, archive_dir)).describe(), indent=1))


def archive_cube_path(cube_path, archive_dir):
    """``--cube`` if given, else the default cube of ``--archive`` (if given), else None."""
    if archive_dir is None or cube_path is not None:
        return cube_path
    from evaluation.cube.archive import default_archive_cube_path

    try:
        return default_archive_cube_path(get_roots().confine(Path(archive_dir).absolute()))
    except PathOutsideRoots as e:
        raise click.BadParameter(str(e), param_hint="--archive") from None


@climatology.command("export")
@click.argument("dest", type=click.Path())
@click.option("--cube", "cube_path", type=click.Path(), default=None, help="Cube to export (default: the demo cube).")
def export_cmd(dest, cube_path) -> None:
    """Write a cube as one compressed netCDF file (e.g. evaluation/data/demo_cube.nc)."""
    from evaluation import cube as CB

    c = _open(cube_path)  # refuses a missing, unfinished or foreign cube
    out = CB.export_cube(c.path, dest)
    click.echo(str(out))


@click.command("evaluate")
@click.option("--models", default=None, help="Comma-separated model names (default: all in the cube).")
@click.option("--region", default="global", show_default=True,
              help="global, land, ocean, an AR6 abbreviation (WAF...), lat:S:N on 10° edges, or an extra region.")
@click.option("--period", default=None, help="'2015-2019', '2016' or '2015-06:2016-05'.")
@click.option("--season", default=None, help="DJF, MAM, JJA, SON or a month number.")
@click.option("--surface", default=None, help="ocean, land, coast, sea_ice, snow (comma separated) or land/ocean.")
@click.option("--cube", "cube_path", type=click.Path(), default=None)
@click.option("--archive", "archive_dir", type=click.Path(file_okay=False), default=None,
              help="The cube of this PPS archive at its default place (as built by 'climatology build --archive').")
@click.option("--no-extremes", is_flag=True, help="Skip the GPD fits and bootstrap.")
@click.option("--json", "as_json", is_flag=True, help="Print the raincheck.evaluate/1 JSON.")
def evaluate_cmd(models, region, period, season, surface, cube_path, archive_dir, no_extremes, as_json) -> None:
    """Distributions, extremes and skill of models vs reference and truth (an archive cube: vs 2B-CMB, with
    GPROF among the models)."""
    from evaluation import report

    from evaluation.cube.archive import resolve_gprof

    cube = _open(archive_cube_path(cube_path, archive_dir), region)
    _check_period(cube, period)
    names = resolve_gprof([m for m in (models or "").split(",") if m.strip()], cube.sources)
    try:
        out = report.evaluate(cube, names or None,
                              region, period=period, season=season, surface=surface, extremes=not no_extremes)
    except (KeyError, ValueError) as e:
        raise click.ClickException(str(e).strip("'\"")) from None
    if not any(v.get("n") for d in out["distributions"].values() for v in d.values()):
        raise click.ClickException(f"no data for this selection (region {region!r}, period {period!r}, "
                                   f"season {season!r}, surface {surface!r}): nothing to score")
    _emit(out, as_json, _evaluate_text)


@click.command("trends")
@click.option("--source", default="truth", show_default=True, help="reference, truth or a model name.")
@click.option("--strip", is_flag=True, help="Use the source on the reference strip only.")
@click.option("--region", default="global", show_default=True)
@click.option("--period", default=None)
@click.option("--season", default=None)
@click.option("--surface", default=None)
@click.option("--freq", default="year", show_default=True, type=click.Choice(["year", "season", "month"]))
@click.option("--stats", default=",".join(("mean", "wet_fraction", "q99", "q999", "exceed:10")), show_default=True)
@click.option("--gmst", default=None,
              help="synthetic (the simulator's), default (labelled linear default for real data) or a CSV "
                   "(time,gmst_K). Default: synthetic for simulator cubes.")
@click.option("--mk", "method", default="hamed_rao", show_default=True,
              type=click.Choice(["hamed_rao", "yue_wang", "original"]))
@click.option("--cube", "cube_path", type=click.Path(), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the raincheck.trends/1 JSON.")
def trends_cmd(source, strip, region, period, season, surface, freq, stats, gmst, method, cube_path, as_json) -> None:
    """Trends (%/decade, %/K) with CIs, the IPCC envelope and a verdict per series."""
    from evaluation import report

    g = gmst
    if gmst and gmst not in ("synthetic", "default"):
        from evaluation.trends import read_gmst_csv

        try:
            series = read_gmst_csv(get_roots().confine(gmst))
        except (PathOutsideRoots, OSError, ValueError) as e:
            raise click.BadParameter(str(e), param_hint="--gmst") from None
        g = series
    cube = _open(cube_path, region)
    _check_period(cube, period)
    try:
        out = report.trends(cube, source, region, period=period, season=season, surface=surface,
                            freq=freq, stats=[s for s in stats.split(",") if s.strip()], gmst=g, method=method,
                            strip=strip)
    except (KeyError, ValueError) as e:
        raise click.ClickException(str(e).strip("'\"")) from None
    _emit(out, as_json, _trends_text)


def register(main: click.Group) -> None:
    """Add `climatology ...`, `evaluate` and `trends` to ``main``."""
    main.add_command(climatology)
    main.add_command(evaluate_cmd)
    main.add_command(trends_cmd)


def _f(x, fmt="{:.3g}"):
    return "—" if x is None else fmt.format(x)


def _evaluate_text(o: dict) -> str:
    sel = o["selection"]
    lines = [f"region {sel['region_name']}  period {sel['period'] or 'all'}  season {sel['season'] or 'all'}"]
    arch = (o.get("cube") or {}).get("archive")
    if arch:
        per = arch["period"]
        lines.append(f"archive {arch['granule_dir']}  {arch['orbits']} orbits {str(per[0])[:16]} .. "
                     f"{str(per[1])[:16]}  reference: 2B-CMB; truth: none (real data)"
                     + (f"; {arch['skipped']} orbit(s) skipped (no 1C-GMI or 2B-CMB)" if arch["skipped"] else ""))
        n_ref = (o["cube"].get("orbits") or {}).get("reference")
        for s, n in (o["cube"].get("orbits") or {}).items():
            if n_ref and s != "reference" and not s.endswith("@strip") and n < n_ref:
                lines.append(f"  note: {s} on {n} of the {n_ref} orbits ({n_ref - n} without its granule): its "
                             f"distributions are over those orbits only")
    for group, d in o["distributions"].items():
        for s, v in d.items():
            lines.append(f"  [{group}] {s:22s} n={v['n']:>10d} mean={_f(v['mean'])} wet={_f(v['wet_fraction'])} "
                         f"q99={_f(v['q99'])} q99.9={_f(v['q999'])}")
    for m, d in o["skill"].items():
        for k, v in d.items():
            if "error" in v:
                continue
            c = v["categorical"]
            lines.append(f"  skill {m} {k}: bias {_f(v['bias_pct'], '{:+.1f}')} % MAE {_f(v['mae'])} "
                         f"corr {_f(v['corr'], '{:.3f}')} POD/FAR@0.1 {_f(c['0.1']['pod'], '{:.2f}')}/"
                         f"{_f(c['0.1']['far'], '{:.2f}')} HSS@1 {_f(c['1']['hss'], '{:.2f}')}"
                         + (f" CRPS {_f(v.get('crps'))}" if v.get("crps") is not None else ""))
    return "\n".join(lines)


def _trends_text(o: dict) -> str:
    sel = o["selection"]
    lines = [f"{o['source']} in {sel['region_name']} ({sel['freq']}ly), GMST: {o['gmst']['label']}"]
    for s in o["series"]:
        t = s["trend"]
        ci, ck = t["ci_pct_per_decade"], t["ci_pct_per_K"]
        lines.append(f"  {s['stat']:12s} {_f(t['pct_per_decade'], '{:+.2f}')} %/decade [{_f(ci[0], '{:+.2f}')}, "
                     f"{_f(ci[1], '{:+.2f}')}]   {_f(t['pct_per_K'], '{:+.2f}')} %/K [{_f(ck[0], '{:+.2f}')}, "
                     f"{_f(ck[1], '{:+.2f}')}]   → {s['ipcc']['verdict']}: {s['ipcc']['reason']}")
    return "\n".join(lines)

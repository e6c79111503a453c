"""`raincheck archive`: PPS archives — make a synthetic one in the real V07 format, list one by
orbit, and check that its 1C-GMI and 2B-CMB granules pair up (:mod:`catalogs.pps`,
:mod:`catalogs.pairs`)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from app.commands._progress import ProgressBar


@click.group()
def archive() -> None:
    """PPS archives: make a synthetic one (real V07 layout), index one, check its GMI x CMB pairs."""


@archive.command("make")
@click.argument("root", type=click.Path(file_okay=False, path_type=Path))
@click.option("--start", required=True, help="Start of the period (ISO date, after 2014-03-04).")
@click.option("--end", required=True, help="End of the period (ISO date).")
@click.option("--orbits", "n_orbits", type=click.IntRange(1, 5000), default=4, show_default=True,
              help="Orbits drawn evenly over the period (one per stratum).")
@click.option("--n-scans", type=click.IntRange(min=8), default=None,
              help="Only the first N scans of each orbit (default: the whole orbit, 2924 scans).")
@click.option("--world-seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--gprof", "gprof_model", default="bayes-baseline", show_default=True,
              help="Model whose retrieval is written as the 2A-GMI (GPROF) granule; 'none' for no 2A-GMI.")
def make_cmd(root: Path, start: str, end: str, n_orbits: int, n_scans: int | None, world_seed: int,
             gprof_model: str) -> None:
    """Write synthetic orbits as 1C-GMI, 2B-CMB and 2A-GMI V07 granules under ROOT, in
    gpm-api's archive tree (ROOT/GPM/RS/V07/...). Granules already there are kept."""
    from catalogs import pps

    try:
        orbits = pps.archive_orbits(start, end, n_orbits, seed=world_seed)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--start/--end/--orbits") from None
    gprof = None
    if gprof_model.lower() != "none":
        from models.inference import predict_swath
        from models.registry import load_model

        try:
            model = load_model(gprof_model, "cpu")
        except Exception as e:  # noqa: BLE001 - shown to the user
            raise click.BadParameter(f"cannot load {gprof_model!r}: {e}", param_hint="--gprof") from None

        def gprof(swath):
            return predict_swath(model, swath, device="cpu")

    t0 = time.perf_counter()
    click.echo(f"writing {len(orbits)} orbits ({orbits[0]}..{orbits[-1]}) under {root}", err=True)
    bar = ProgressBar("orbits")
    try:
        paths = pps.make_archive(root, orbits, world_seed=world_seed, n_scans=n_scans, gprof=gprof, progress=bar)
    finally:
        bar.close()
    click.echo(f"  {len(paths)} granules in {time.perf_counter() - t0:.1f} s", err=True)
    for p in paths:
        click.echo(str(p))


@archive.command("index")
@click.argument("root", type=click.Path(file_okay=False, path_type=Path))
@click.option("--start", default=None, help="Only granules starting on or after this date.")
@click.option("--end", default=None, help="Only granules starting before this date.")
def index_cmd(root: Path, start: str | None, end: str | None) -> None:
    """List the orbits of an archive with their 1C-GMI, 2B-CMB and 2A-GMI granules (names only)."""
    from catalogs.config import get_roots
    from catalogs.pairs import ArchiveError, archive_index

    try:
        folder = get_roots().confine(root)
        table = archive_index(folder, start, end)
    except (ArchiveError, FileNotFoundError, PermissionError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{len(table)} orbits under {folder}")
    for r in table.itertuples(index=False):
        have = ", ".join(p for p, v in (("1C-GMI", r[3]), ("2B-CMB", r[4]), ("2A-GMI", r[5])) if v)
        click.echo(f"  orbit {r.orbit:6d}  {r.start:%Y-%m-%d %H:%M}  {have}")


@archive.command("check")
@click.argument("root", type=click.Path(file_okay=False, path_type=Path))
@click.option("--start", default=None)
@click.option("--end", default=None)
def check_cmd(root: Path, start: str | None, end: str | None) -> None:
    """Open every 1C-GMI granule with its 2B-CMB and report the collocation (pixels paired, time
    difference); exits non-zero naming the granules that do not pair."""
    from catalogs.config import get_roots
    from catalogs.gpm import GranuleError
    from catalogs.pairs import archive_index, open_pair

    try:
        folder = get_roots().confine(root)
        table = archive_index(folder, start, end)
    except (GranuleError, FileNotFoundError, PermissionError) as e:
        raise click.ClickException(str(e)) from None
    bad = []
    for r in table.itertuples(index=False):
        if not r[3]:
            bad.append(f"orbit {r.orbit}: no 1C-GMI granule")
            continue
        try:
            t0 = time.perf_counter()
            ds = open_pair(r[3], r[4] or "auto")
            click.echo(f"  orbit {r.orbit}: {ds.attrs['reference_pixels_collocated']} GMI pixels with CMB, "
                       f"median CMB - GMI time {ds.attrs['reference_median_time_difference_s']:.0f} s "
                       f"({time.perf_counter() - t0:.1f} s)")
        except GranuleError as e:
            bad.append(str(e))
    for b in bad:
        click.echo(f"  problem: {b}", err=True)
    if bad:
        raise click.ClickException(f"{len(bad)} of {len(table)} orbits do not pair")
    click.echo(f"{len(table)} orbits pair up")


def register(main: click.Group) -> None:
    main.add_command(archive)

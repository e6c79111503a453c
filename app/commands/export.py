"""`raincheck export`: a view of the app as a figure for papers (PDF/SVG/PNG at 300 dpi), with the
data behind it and a provenance manifest — no browser, no server."""

from __future__ import annotations

from urllib.parse import urlparse

import click

from models.errors import ModelError

# app.export loads Panel and the views, and models.registry loads torch: imported in the functions
# that need them. The command's --view/--format/--season choices come from app.state (light: no
# Panel), so the command is made when it is registered (_command).


def register(main: click.Group) -> None:
    """Add `export` to ``main``."""
    from app.state import FORMATS, SEASONS, VIEWS

    main.add_command(_command(VIEWS, FORMATS, SEASONS))


def _command(views, formats, seasons) -> click.Command:
    """The `export` command, offering ``views``, ``formats`` and ``seasons``."""

    @click.command("export")
    @click.option("--view", type=click.Choice(views), default="swath", show_default=True)
    @click.option("--format", "fmt", type=click.Choice(formats), default="pdf", show_default=True)
    @click.option("--out", "out_dir", type=click.Path(file_okay=False), default=".", show_default=True,
                  help="Folder for the figure, its data and the manifest.")
    @click.option("--orbit", type=int, default=None, help="Orbit number (swath view).")
    @click.option("--granule", default=None, help="A real granule instead of an orbit (swath view).")
    @click.option("--models", default=None, help="Comma-separated model names.")
    @click.option("--layers", default=None, help="Swath layers, comma-separated: Tb,reference,truth.")
    @click.option("--channel", default=None, help="Tb channel, e.g. 89.0V.")
    @click.option("--product", default=None,
                  help="Model product: precip_mean, precip_median, quantile, pop, p_heavy.")
    @click.option("--region", default=None,
                  help="Region spec (global, an AR6 code, land, ocean, lat:S:N, bbox:...).")
    @click.option("--period", default=None, help="Years, e.g. 2015-2024.")
    @click.option("--season", type=click.Choice(seasons), default=None)
    @click.option("--pixels", type=click.Choice(["strip", "all"]), default=None)
    @click.option("--link", default=None, help="A shared app link (or its query string): export exactly that state.")
    @click.option("--catalog", "catalog_path", type=click.Path(dir_okay=False), default=None)
    @click.option("--cube", "cube_path", type=click.Path(), default=None, help="Climatology cube (evaluation views).")
    @click.option("--archive", "archive_dir", type=click.Path(file_okay=False), default=None,
                  help="A PPS archive: its cube (`climatology build --archive` default place) for evaluation views.")
    def export(view, fmt, out_dir, orbit, granule, models, layers, channel, product, region, period, season, pixels,
               link, catalog_path, cube_path, archive_dir):
        """Export a view as a publication figure + data (netCDF/CSV) + provenance manifest."""
        from app.commands.evaluate import archive_cube_path

        cube_path = archive_cube_path(cube_path, archive_dir)
        sel = _selection(view, link, orbit=orbit, granule=granule, models=models, layers=layers, channel=channel,
                         product=product, region=region, period=period, season=season, pixels=pixels)
        _export(sel, fmt, out_dir, catalog_path, cube_path, period_given=bool(period or link))

    return export


def _selection(view, link, *, orbit, granule, models, layers, channel, product, region, period, season, pixels):
    """The app's selection the options (after ``link``, a shared app link, if given) describe; a
    bad value is refused with a message."""
    from app.state import Selection, sync_url

    sel = Selection()
    if link:
        from panel.io.location import Location

        q = urlparse(link).query if "://" in link else link.lstrip("?")
        for problem in sync_url(sel, Location(search=f"?{q}")):
            click.echo(f"warning: {problem}", err=True)
        if "view=" not in q:
            sel.view = view
    else:
        sel.view = view
    try:
        if orbit is not None:
            sel.orbit = orbit
        if granule:
            sel.param.update(source="real", granule=granule)
        if models is not None:
            sel.models = [m.strip() for m in models.split(",") if m.strip()]
        if layers is not None:
            sel.layers = [m.strip() for m in layers.split(",") if m.strip()]
        if channel:
            sel.channel = channel
        if product:
            sel.product = product
        if region:
            sel.region = region
        if period:
            a, _, b = period.partition("-")
            sel.param.update(start_year=int(a), end_year=int(b or a))
        if season:
            sel.season = season
        if pixels:
            sel.pixels = pixels
    except (ValueError, TypeError) as e:
        raise click.BadParameter(str(e))
    return sel


def _cube_years(sel, cube_path) -> None:
    """An evaluation view exported without --period covers the cube's own years (an archive cube
    spans its archive's months, not the synthetic record the app defaults to)."""
    from app.views.common import cube_years

    years = cube_years(cube_path)  # None: export_view reports a missing or bad cube itself
    if years:
        sel.param.update(start_year=years[0], end_year=years[1])


def _export(sel, fmt, out_dir, catalog_path, cube_path, *, period_given: bool = True) -> None:
    """Export the view ``sel`` shows and print the paths written."""
    from app.export import ExportError, export_view

    if sel.view != "swath" and not period_given:
        _cube_years(sel, cube_path)

    if sel.view == "swath" and sel.models:
        from models.registry import get_card

        for m in sel.models:  # an unknown name would export a figure without it, silently
            try:
                get_card(m)
            except ModelError as e:
                raise click.BadParameter(str(e), param_hint="--models") from None
    try:
        res = export_view(sel.view, sel, fmt, out_dir, catalog_path=catalog_path, cube_path=cube_path)
    except ExportError as e:
        raise click.ClickException(str(e))
    for p in res.paths:
        click.echo(str(p))

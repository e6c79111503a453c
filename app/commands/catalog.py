"""`raincheck catalog list|show` and `raincheck orbits`."""

from __future__ import annotations

import click

from catalogs.config import get_roots
from catalogs.gpm import open_latlon, scan_granules
from catalogs.orbits import bbox_mask, granule_orbits, synthetic_orbits
from catalogs.userinput import UserInputError
from evaluation.regions import get_region

# catalogs.catalog loads intake and fsspec: imported in the commands that open a catalogue


def _parse_params(pairs: tuple[str, ...]) -> dict:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise click.BadParameter(f"{p!r}: expected NAME=VALUE", param_hint="--param")
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def resolve_region(region: str | None, bbox: str | None):
    """(mask function or None, label) for a --region name or a --bbox box."""
    if region and bbox:
        raise click.UsageError("give --region or --bbox, not both")
    if bbox:
        try:
            box = tuple(float(v) for v in bbox.split(","))
            if len(box) != 4:
                raise ValueError("need 4 numbers")
            return bbox_mask(box), f"bbox:{bbox}"
        except ValueError as e:
            raise click.BadParameter(f"{bbox!r}: {e} (lon0,lat0,lon1,lat1)", param_hint="--bbox")
    if region and region != "global":
        try:
            r = get_region(region)
        except (KeyError, ValueError) as e:
            raise click.BadParameter(str(e), param_hint="--region")
        return r.mask, region
    return None, "global"


_catalog_opt = click.option("--catalog", "catalog_path", type=click.Path(dir_okay=False),
                           default=None, help="Intake 2 catalogue file (default: the demo).")
_trust_opt = click.option("--trust-catalog", is_flag=True, default=False,
                         help="Accept a catalogue that names readers other than raincheck's own "
                              "(a catalogue is code: only one you wrote; env RAINCHECK_TRUST_CATALOG=1).")


@click.group()
def catalog() -> None:
    """Inspect the Intake catalogue."""


@catalog.command("list")
@_catalog_opt
@_trust_opt
def catalog_list(catalog_path, trust_catalog):
    """List the catalogue's entries and their parameters."""
    from catalogs.catalog import CatalogError, entries, open_catalog

    try:
        cat = open_catalog(catalog_path, trust=trust_catalog or None)
    except CatalogError as e:
        raise click.ClickException(str(e))
    for e in entries(cat):
        params = f" [{', '.join(e.parameters)}]" if e.parameters else ""
        click.echo(f"{e.name:14s} {e.output:16s}{params}\n    {e.description}")


@catalog.command("show")
@click.argument("entry")
@click.option("--param", "-p", multiple=True, help="Catalogue parameter override NAME=VALUE (repeatable).")
@_catalog_opt
@_trust_opt
def catalog_show(entry, param, catalog_path, trust_catalog):
    """Read ENTRY and print what it holds (parameter values are data, never templates)."""
    from catalogs.catalog import CatalogError, open_catalog, read

    try:
        cat = open_catalog(catalog_path, trust=trust_catalog or None)
        obj = read(cat, entry, **_parse_params(param))
    except (CatalogError, UserInputError) as e:
        raise click.ClickException(str(e))
    except (ValueError, LookupError, PermissionError, OSError) as e:
        raise click.ClickException(f"{entry}: {e}")
    click.echo(obj)


@click.command()
@click.option("--start", required=True, help="Start of the period (ISO date).")
@click.option("--end", required=True, help="End of the period (ISO date).")
@click.option("--region", default=None, help="Region name: global, an AR6 code (e.g. WAF), land, ocean, lat:S:N.")
@click.option("--bbox", default=None, help="lon0,lat0,lon1,lat1 (lon0 > lon1 crosses the antimeridian).")
@click.option("--granule-dir", default=None, type=click.Path(file_okay=False),
              help="List real granules under this folder instead of synthetic orbits.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def orbits(start, end, region, bbox, granule_dir, as_json):
    """Orbits that crossed a region during a period."""
    mask, label = resolve_region(region, bbox)
    try:
        if granule_dir:
            table = scan_granules(get_roots().confine(granule_dir))
            df = granule_orbits(table, start, end, mask=mask, open_latlon=open_latlon)
        else:
            df = synthetic_orbits(start, end, mask=mask, region_name=label)
    except (ValueError, PermissionError) as e:
        raise click.ClickException(str(e))
    if as_json:
        click.echo(df.to_json(orient="records", date_format="iso"))
    else:
        click.echo(f"{len(df)} orbits crossed {label} between {start} and {end}")
        if len(df):
            click.echo(df.to_string(index=False, max_rows=40))


def register(main: click.Group) -> None:
    """Add `catalog list|show` and `orbits` to ``main``."""
    main.add_command(catalog)
    main.add_command(orbits)

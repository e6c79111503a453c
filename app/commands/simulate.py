"""`raincheck simulate`: write one orbit of the synthetic GMI observing system."""

from __future__ import annotations

import time
from pathlib import Path

import click


def register(main: click.Group) -> None:
    @main.command()
    @click.option("--orbit", "orbit", type=int, required=True, help="Orbit number (0 = first orbit after 2014-03-04; negative before).")
    @click.option("--world", "world", type=click.IntRange(min=0), default=0, show_default=True, help="World seed.")
    @click.option("--source", type=click.Choice(["observed", "simulated"]), default="observed", show_default=True,
                  help="'simulated': a +2 K / +4 K warmer model world with a slightly different forward model.")
    @click.option("--climate-offset", "climate_offset", type=float, default=None,
                  help="Simulated source only: warming offset in K (default +2 K even orbits, +4 K odd).")
    @click.option("--scans", "n_scans", type=click.IntRange(min=1), default=None, help="Only the first N scans.")
    @click.option("--out", "out", type=click.Path(dir_okay=True, path_type=Path), required=True,
                  help="Output file: .nc (netCDF) or .zarr.")
    def simulate(orbit: int, world: int, source: str, climate_offset: float | None, n_scans: int | None, out: Path) -> None:
        """Simulate one orbit (Tb, reference, truth) of the synthetic world and write it atomically."""
        from catalogs import store
        from catalogs.simulator import geometry, simulate_orbit

        if out.suffix not in (".nc", ".nc4", ".zarr"):
            raise click.BadParameter(f"unsupported output {str(out)!r}: use a .nc or .zarr suffix", param_hint="--out")
        lo, hi = geometry.ORBIT_RANGE
        if not lo <= orbit <= hi:
            raise click.BadParameter(f"orbit {orbit} outside the synthetic record {lo}..{hi} (1998-2060)", param_hint="--orbit")
        if climate_offset is not None and source != "simulated":
            raise click.BadParameter("--climate-offset needs --source simulated", param_hint="--climate-offset")
        t0 = time.perf_counter()
        click.echo(f"simulating orbit {orbit} (starts {geometry.orbit_start_time(orbit)}), world {world}, source {source} ...", err=True)
        ds = simulate_orbit(orbit, world_seed=world, source=source, n_scans=n_scans, climate_offset_K=climate_offset)
        t1 = time.perf_counter()
        click.echo(f"  simulated {ds.sizes['along_track']} scans x {ds.sizes['cross_track']} pixels in {t1 - t0:.2f} s; "
                   f"GMST anomaly {ds.attrs['gmst_anomaly_K']:.2f} K", err=True)
        path = store.write_dataset(ds, out, meta={"orbit": orbit, "world_seed": world, "source": ds.attrs["source"]})
        click.echo(f"  wrote {path} in {time.perf_counter() - t1:.2f} s", err=True)
        click.echo(str(path))

"""`raincheck simulate`: write one orbit (or a scene of it) of the synthetic GMI observing system,
in its own climate or a counterfactual one (``--warming K --world PRESET``)."""

from __future__ import annotations

import time
from pathlib import Path

import click
from catalogs import store


def _world_and_seed(world: str, world_seed: int | None) -> tuple[str, int]:
    """``--world`` names a preset; a plain integer there is the world seed of old command lines
    (``--world 4``), still accepted, unless ``--world-seed`` is given too."""
    from catalogs.simulator.worlds import WORLDS

    text = str(world).strip()
    if text.isdigit():
        if world_seed is not None:
            raise click.BadParameter(f"{text!r} is not a world preset ({', '.join(WORLDS)}); the seed is --world-seed",
                                     param_hint="--world")
        click.echo(f"note: --world {text} read as the world seed (use --world-seed {text}); --world now names a "
                   f"world preset ({', '.join(WORLDS)})", err=True)
        return "today", int(text)
    if text not in WORLDS:
        raise click.BadParameter(f"unknown world preset {text!r}; presets: {', '.join(WORLDS)}", param_hint="--world")
    return text, 0 if world_seed is None else int(world_seed)


def register(main: click.Group) -> None:
    @main.command()
    @click.option("--orbit", "orbit", type=int, required=True, help="Orbit number (0 = first orbit after 2014-03-04; negative before).")
    @click.option("--world", "world", default="today", show_default=True, metavar="PRESET",
                  help="World preset: what a counterfactual warming does (today, stationary, published, ...; "
                       "docs/simulator.md). A plain integer is read as the world seed (old form).")
    @click.option("--world-seed", "world_seed", type=click.IntRange(min=0), default=None,
                  help="World seed (default 0): another seed is another synthetic weather record.")
    @click.option("--warming", "warming", type=float, default=0.0, show_default=True, metavar="K",
                  help="Counterfactual warming (K of global-mean surface temperature, -3 .. +8) relative to the "
                       "orbit's own climate: the same weather in a warmer climate, by the preset's rules.")
    @click.option("--source", type=click.Choice(["observed", "simulated"]), default="observed", show_default=True,
                  help="'simulated': a +2 K / +4 K warmer model world with a slightly different forward model.")
    @click.option("--climate-offset", "climate_offset", type=float, default=None,
                  help="Simulated source only: warming offset in K (default +2 K even orbits, +4 K odd).")
    @click.option("--scan-start", "scan_start", type=click.IntRange(min=0), default=0, show_default=True,
                  help="First scan of the scene (its scans equal the same scans of the full orbit).")
    @click.option("--scans", "n_scans", type=click.IntRange(min=1), default=None, help="Only N scans (from --scan-start).")
    @click.option("--out", "out", type=click.Path(dir_okay=True, path_type=Path), required=True,
                  help="Output file: .nc (netCDF) or .zarr.")
    def simulate(orbit: int, world: str, world_seed: int | None, warming: float, source: str,
                 climate_offset: float | None, scan_start: int, n_scans: int | None, out: Path) -> None:
        """Simulate one orbit (Tb, reference, truth) of the synthetic world and write it atomically."""
        from catalogs.simulator import geometry, simulate_orbit
        from catalogs.simulator.worlds import check_warming

        if out.suffix not in (".nc", ".nc4", ".zarr"):
            raise click.BadParameter(f"unsupported output {str(out)!r}: use a .nc or .zarr suffix", param_hint="--out")
        lo, hi = geometry.ORBIT_RANGE
        if not lo <= orbit <= hi:
            raise click.BadParameter(f"orbit {orbit} outside the synthetic record {lo}..{hi} (1998-2060)", param_hint="--orbit")
        if climate_offset is not None and source != "simulated":
            raise click.BadParameter("--climate-offset needs --source simulated", param_hint="--climate-offset")
        if scan_start >= geometry.N_SCANS:
            raise click.BadParameter(f"scan {scan_start} outside the orbit's scans 0..{geometry.N_SCANS - 1}",
                                     param_hint="--scan-start")
        try:
            warming = check_warming(warming)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--warming") from None
        preset, seed = _world_and_seed(world, world_seed)
        t0 = time.perf_counter()
        what = f"world {preset}, warming {warming:+g} K, " if (preset != "today" or warming) else ""
        click.echo(f"simulating orbit {orbit} (starts {geometry.orbit_start_time(orbit)}), {what}world seed {seed}, "
                   f"source {source} ...", err=True)
        ds = simulate_orbit(orbit, world_seed=seed, source=source, n_scans=n_scans, scan_start=scan_start,
                            warming_K=warming, world=preset, climate_offset_K=climate_offset)
        t1 = time.perf_counter()
        click.echo(f"  simulated {ds.sizes['along_track']} scans x {ds.sizes['cross_track']} pixels in {t1 - t0:.2f} s; "
                   f"GMST anomaly {ds.attrs['gmst_anomaly_K']:.2f} K (Tb in a climate of "
                   f"{ds.attrs['scene_gmst_anomaly_K']:.2f} K)", err=True)
        meta = {"orbit": orbit, "world_seed": seed, "source": ds.attrs["source"]}
        if preset != "today" or warming or scan_start:
            meta.update(world=preset, world_version=ds.attrs["world_version"], warming_K=warming, scan_start=scan_start)
        path = store.write_dataset(ds, out, meta=meta)
        click.echo(f"  wrote {path} in {time.perf_counter() - t1:.2f} s", err=True)
        click.echo(str(path))

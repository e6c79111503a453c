"""Intake 2 readers for raincheck's data: synthetic orbits, real granules, model outputs.

Each reader returns canonical objects (swaths validated by :func:`catalogs.schema.validate`).
They are referenced from the YAML catalogues in this folder as ``catalogs.readers:<Class>`` and
work with plain ``intake`` in a notebook::

    import intake
    cat = intake.from_yaml_file(".../catalogs/demo.yaml")
    ds = cat(orbit=20000).observations.read()

Readers take no catch-all keyword arguments: a misspelt parameter is an error, never silently
ignored (the trap of intake-xarray 2.0 entries, see ../shared/NOTES.md).

Every path a reader gets (from a catalogue, a user parameter or the app) is confined to the
configured data roots (:mod:`catalogs.config`) before anything is opened.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import xarray as xr
from intake.readers import readers

from catalogs import schema
from catalogs.config import get_roots
from catalogs.outputs import check_name, output_dir
from catalogs.store import IncompleteStore, is_complete, open_dataset

#: Which variables each synthetic "product" keeps (all share the canonical grid).
PRODUCT_VARS = {
    "swath": None,  # everything
    "observations": ("Tc", "surface_type", "quality_flag"),
    "reference": ("surface_precip", "surface_type", "quality_flag"),
    "truth": ("surface_precip_truth", "surface_type", "quality_flag"),
}


class MissingOutput(LookupError):
    """A model output that has not been computed yet."""


def _select_product(ds: xr.Dataset, product: str) -> xr.Dataset:
    if product not in PRODUCT_VARS:
        raise ValueError(f"unknown product {product!r}; choose one of {sorted(PRODUCT_VARS)}")
    keep = PRODUCT_VARS[product]
    if keep is None:
        return ds
    return ds[[v for v in keep if v in ds]]


class SyntheticSwathReader(readers.BaseReader):
    """One orbit of the synthetic GMI observing system (deterministic in world seed + orbit)."""

    output_instance = "xarray:Dataset"
    imports = {"xarray", "numpy"}

    def _read(self, orbit_number=None, world_seed=0, source="observed", product="swath", n_scans=None,
              orbit=None, world=None):
        from catalogs.simulator import simulate_orbit
        from catalogs.simulator.geometry import ORBIT_RANGE

        # `entry.read(orbit=N)` passes the user parameter's name straight through: honour it.
        orbit_number = orbit if orbit is not None else orbit_number
        world_seed = world if world is not None else world_seed
        if orbit_number is None:
            raise ValueError("an orbit number is required (catalogue parameter 'orbit')")
        orbit = int(orbit_number)
        lo, hi = ORBIT_RANGE
        if not lo <= orbit <= hi:
            raise ValueError(f"orbit {orbit} is outside the synthetic record (orbits {lo} to {hi})")
        ds = simulate_orbit(orbit, world_seed=int(world_seed), source=str(source),
                            n_scans=None if n_scans in (None, "", 0) else int(n_scans))
        return _select_product(ds, product)


class GranuleReader(readers.BaseReader):
    """One real GPM PPS granule (1C-GMI, 2A-GMI, 2A-DPR, 2B-CMB), converted to the schema."""

    output_instance = "xarray:Dataset"
    imports = {"gpm"}

    def _read(self, path=None, granule=None):
        from catalogs.gpm import open_granule

        path = granule or path
        if not path:
            raise ValueError("a granule path is required (catalogue parameter 'granule')")
        return open_granule(get_roots().confine(path))


class GranuleDirectoryReader(readers.BaseReader):
    """Table of the real granules under a folder (from their official file names)."""

    output_instance = "pandas:DataFrame"
    imports = {"pandas"}

    def _read(self, folder=None, granule_dir=None):
        from catalogs.gpm import scan_granules

        folder = granule_dir or folder
        if not folder:
            raise ValueError("a granule folder is required (catalogue parameter 'granule_dir')")
        return scan_granules(get_roots().confine(folder))


def find_output(model: str, orbit: int, source: str = "synthetic", sha256: str | None = None) -> Path:
    """The complete output store of ``model`` for ``orbit``; the newest if several checkpoints
    of the same model have outputs and no ``sha256`` is given."""
    check_name(model)
    orbit = int(orbit)
    if sha256:
        candidates = [output_dir(model, sha256) / source / f"orbit-{orbit:06d}.zarr"]
    else:
        base = get_roots().data_root / "outputs"
        candidates = sorted(base.glob(f"{model}-*/{source}/orbit-{orbit:06d}.zarr"),
                            key=lambda p: p.stat().st_mtime, reverse=True)
    for p in candidates:
        if is_complete(p):
            return p
    raise MissingOutput(
        f"no output yet for model {model!r} on orbit {orbit} ({source}); "
        f"run `raincheck infer --model {model} --orbit {orbit}` or press Run in the app"
    )


class ModelOutputReader(readers.BaseReader):
    """A model's retrieval for one orbit, from the model-output store (written by inference)."""

    output_instance = "xarray:Dataset"
    imports = {"xarray", "zarr"}

    def _read(self, model_name=None, orbit_number=None, source="synthetic", sha256=None, orbit=None, model=None):
        # reader kwargs must not share a user parameter's name (intake would swallow them); the
        # user-parameter names are accepted at read time, `entry.read(model=..., orbit=...)`.
        model = model or model_name
        orbit_number = orbit if orbit is not None else orbit_number
        if not model:
            raise ValueError("a model name is required (catalogue parameter 'model')")
        if orbit_number is None:
            raise ValueError("an orbit number is required (catalogue parameter 'orbit')")
        path = find_output(str(model), int(orbit_number), str(source), sha256 or None)
        try:
            ds = open_dataset(path)
        except IncompleteStore as e:  # raced with a concurrent rewrite
            raise MissingOutput(str(e)) from e
        return schema.validate(ds, kind="retrieval")


class OrbitIndexReader(readers.BaseReader):
    """Synthetic orbits that crossed a lat/lon box during a period (see :mod:`catalogs.orbits`)."""

    output_instance = "pandas:DataFrame"
    imports = {"pandas"}

    def _read(self, start=None, end=None, bbox=None):
        from catalogs.orbits import synthetic_orbits

        bbox = None if bbox in (None, "", "global") else tuple(float(v) for v in str(bbox).split(","))
        return synthetic_orbits(pd.Timestamp(start), pd.Timestamp(end), bbox=bbox)

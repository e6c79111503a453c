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
from catalogs.outputs import check_name, check_sha256, output_dir, stored_checkpoints, stored_models
from catalogs.store import IncompleteStore, is_complete, open_dataset
from catalogs.gpm import open_granule, scan_granules
from catalogs.orbits import synthetic_orbits

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
    """One orbit of the synthetic GMI observing system (deterministic in world seed + orbit), in its own
    climate or ``warming_K`` kelvin warmer by the rules of the world preset ``preset`` (catalogue
    parameters ``warming`` and ``world_preset``; ``world`` is the seed)."""

    output_instance = "xarray:Dataset"
    imports = {"xarray", "numpy"}

    def _read(self, orbit_number=None, world_seed=0, source="observed", product="swath", n_scans=None,
              orbit=None, world=None, warming_K=0.0, preset="today", warming=None, world_preset=None):
        from catalogs.simulator import simulate_orbit
        from catalogs.simulator.geometry import ORBIT_RANGE

        # `entry.read(orbit=N)` passes the user parameter's name straight through: honour it.
        orbit_number = orbit if orbit is not None else orbit_number
        world_seed = world if world is not None else world_seed
        warming_K = warming if warming is not None else warming_K
        preset = world_preset if world_preset is not None else preset
        if orbit_number is None:
            raise ValueError("an orbit number is required (catalogue parameter 'orbit')")
        orbit = int(orbit_number)
        lo, hi = ORBIT_RANGE
        if not lo <= orbit <= hi:
            raise ValueError(f"orbit {orbit} is outside the synthetic record (orbits {lo} to {hi})")
        # warming_K and world_preset are checked by the simulator (a ValueError naming the value and the range
        # or the presets)
        ds = simulate_orbit(orbit, world_seed=int(world_seed), source=str(source),
                            n_scans=None if n_scans in (None, "", 0) else int(n_scans),
                            warming_K=0.0 if warming_K in (None, "") else float(warming_K),
                            world=str(preset or "today"))
        return _select_product(ds, product)


class GranuleReader(readers.BaseReader):
    """One real GPM PPS granule (1C-GMI, 2A-GMI, 2A-DPR, 2B-CMB), converted to the schema."""

    output_instance = "xarray:Dataset"
    imports = {"gpm"}

    def _read(self, path=None, granule=None):
        path = granule or path
        if not path:
            raise ValueError("a granule path is required (catalogue parameter 'granule')")
        return open_granule(get_roots().confine(path))


class GranulePairReader(readers.BaseReader):
    """A real 1C-GMI granule with the 2B-CMB surface precipitation of its orbit collocated on its
    pixels as the reference (:func:`catalogs.pairs.open_pair`; the CMB and 2A-GMI granules are
    found next to it or in gpm-api's archive tree). ``cmb="if-found"`` (default) opens the 1C
    alone when its orbit has no CMB granule; ``"auto"`` refuses."""

    output_instance = "xarray:Dataset"
    imports = {"gpm"}

    def _read(self, path=None, granule=None, cmb="if-found"):
        from catalogs.pairs import open_pair

        path = granule or path
        if not path:
            raise ValueError("a 1C-GMI granule path is required (catalogue parameter 'granule')")
        roots = get_roots()
        cmb = cmb if cmb in ("auto", "if-found") else roots.confine(cmb)
        return open_pair(roots.confine(path), cmb, roots=roots.all_read_roots)


class ArchiveIndexReader(readers.BaseReader):
    """One row per orbit of a PPS archive with the paths of its 1C-GMI, 2B-CMB and 2A-GMI
    granules (:func:`catalogs.pairs.archive_index`; file names only), granules starting in [start, end)."""

    output_instance = "pandas:DataFrame"
    imports = {"pandas"}

    def _read(self, folder=None, granule_dir=None, start=None, end=None):
        from catalogs.pairs import archive_index

        folder = granule_dir or folder
        if not folder:
            raise ValueError("an archive folder is required (catalogue parameter 'granule_dir')")
        return archive_index(get_roots().confine(folder), start or None, end or None)


class GranuleDirectoryReader(readers.BaseReader):
    """Table of the real granules under a folder (from their official file names)."""

    output_instance = "pandas:DataFrame"
    imports = {"pandas"}

    def _read(self, folder=None, granule_dir=None):
        folder = granule_dir or folder
        if not folder:
            raise ValueError("a granule folder is required (catalogue parameter 'granule_dir')")
        return scan_granules(get_roots().confine(folder))


class AmbiguousOutput(LookupError):
    """Outputs of several checkpoints of one model name hold the orbit and no hash says which."""


def find_output(model: str, orbit: int, source: str = "synthetic", sha256: str | None = None) -> Path:
    """The complete output store of ``model`` for ``orbit``, found by exact identity.

    With ``sha256`` (the model card's checkpoint hash, which callers that know the model pass):
    exactly ``<model>-<sha12>``. Without it: the folder named exactly ``<model>-<12 hex>``
    (never a prefix: ``unet`` does not find ``unet-reference``), refused with
    :class:`AmbiguousOutput` if outputs of more than one checkpoint of that name hold the orbit."""
    check_name(model)
    check_name(source, "source")
    orbit = int(orbit)
    leaf = Path(source) / f"orbit-{orbit:06d}.zarr"
    if sha256:
        sha256 = check_sha256(sha256)
        path = output_dir(model, sha256) / leaf
        if is_complete(path):
            return path
        raise MissingOutput(
            f"no output yet for model {model!r} (checkpoint {sha256[:12]}) on orbit {orbit} ({source}); "
            f"run `raincheck infer --model {model} --orbit {orbit}` or press Run in the app"
        )
    shas = stored_checkpoints(model)
    found = [s for s in shas if is_complete(output_dir(model, s) / leaf)]
    if len(found) == 1:
        return output_dir(model, found[0]) / leaf
    if len(found) > 1:
        raise AmbiguousOutput(
            f"outputs of {len(found)} checkpoints of model {model!r} hold orbit {orbit} "
            f"({', '.join(found)}): say which with the catalogue parameter sha256 "
            f"(e.g. -p sha256={found[0]}); `raincheck models show {model}` prints the current checkpoint"
        )
    if not shas:
        others = stored_models()
        stored = f" (outputs are stored for: {', '.join(others)})" if others else ""
        raise MissingOutput(
            f"no output for model {model!r} on orbit {orbit}: no model named exactly {model!r} has stored "
            f"outputs{stored}; if it is a registered model (`raincheck models list`), run "
            f"`raincheck infer --model {model} --orbit {orbit}` or press Run in the app"
        )
    raise MissingOutput(
        f"no output yet for model {model!r} on orbit {orbit} ({source}); "
        f"run `raincheck infer --model {model} --orbit {orbit}` or press Run in the app"
    )


class ModelOutputReader(readers.BaseReader):
    """A model's retrieval for one orbit, from the model-output store (written by inference)."""

    output_instance = "xarray:Dataset"
    imports = {"xarray", "zarr"}

    def _read(self, model_name=None, orbit_number=None, source="synthetic", checkpoint_sha256=None,
              sha256=None, orbit=None, model=None):
        # reader kwargs must not share a user parameter's name (intake would swallow them); the
        # user-parameter names are accepted at read time, `entry.read(model=..., orbit=...)`.
        model = model or model_name
        orbit_number = orbit if orbit is not None else orbit_number
        sha256 = sha256 or checkpoint_sha256 or None
        if not model:
            raise ValueError("a model name is required (catalogue parameter 'model')")
        if orbit_number is None:
            raise ValueError("an orbit number is required (catalogue parameter 'orbit')")
        path = find_output(str(model), int(orbit_number), str(source), sha256)
        try:
            ds = open_dataset(path)
        except IncompleteStore as e:  # raced with a concurrent rewrite
            raise MissingOutput(str(e)) from e
        # the store says whose retrieval it holds: never hand out another model's numbers
        got_model, got_sha = ds.attrs.get("model"), str(ds.attrs.get("model_sha256") or "")
        want_sha = path.parent.parent.name.rsplit("-", 1)[1]
        if (got_model is not None and got_model != model) or (got_sha and not got_sha.startswith(want_sha)):
            raise MissingOutput(f"the output store for model {model!r} on orbit {orbit_number} holds "
                                f"{got_model!r} (checkpoint {got_sha[:12]}): not read; delete it and rerun inference")
        return schema.validate(ds, kind="retrieval")


class OrbitIndexReader(readers.BaseReader):
    """Synthetic orbits that crossed a lat/lon box during a period (see :mod:`catalogs.orbits`)."""

    output_instance = "pandas:DataFrame"
    imports = {"pandas"}

    def _read(self, start=None, end=None, bbox=None):
        bbox = None if bbox in (None, "", "global") else tuple(float(v) for v in str(bbox).split(","))
        return synthetic_orbits(pd.Timestamp(start), pd.Timestamp(end), bbox=bbox)

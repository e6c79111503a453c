"""Writing a cube: the zarr store with its ledger (atomic, with a completion marker), and the
single-file netCDF form (export, e.g. to ship it in the package; import, to extend it again)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from catalogs.store import atomic_write
from evaluation import distributions as D
from evaluation import skill as SK
from evaluation.cube.layout import FORMAT_VERSION, LEDGER, PIXEL_STATS, SURFACES
from evaluation.cube.query import open_cube


def _write_cube(ds: xr.Dataset, ledger: dict, path: Path) -> Path:
    ds = ds.copy()
    ds.attrs = {"title": "raincheck climatology cube", "format": FORMAT_VERSION,
                "bins": "bin 0: [0, 0.1) mm h-1; 35 log bins 0.1..316 (10/decade); overflow [316, inf)",
                "units_total": "mm h-1 (sum of rates)", "created_by": "evaluation.cube.build_cube",
                "skill_definitions": SK.SKILL_DEFINITIONS}
    ds["count"].attrs = {"long_name": "pixel count", "units": "1"}
    ds["total"].attrs = {"long_name": "sum of rain rates", "units": "mm h-1"}
    ds["total_sq"].attrs = {"long_name": "sum of squared rain rates", "units": "mm2 h-2"}
    enc = {
        "count": {"chunks": (1, 1, max(ds.sizes["time"], 1), len(SURFACES), D.N_BINS)},
        "total": {"chunks": (1, 1, max(ds.sizes["time"], 1), len(SURFACES))},
        "total_sq": {"chunks": (1, 1, max(ds.sizes["time"], 1), len(SURFACES))},
        "skill": {"chunks": (1, ds.sizes["skill_region"], max(ds.sizes["time"], 1), len(SURFACES), len(PIXEL_STATS))},
    }

    def writer(tmp: Path) -> None:
        ds.to_zarr(tmp, mode="w", consolidated=True, zarr_format=2, encoding=enc)
        (tmp / LEDGER).write_text(json.dumps(ledger, sort_keys=True))

    return atomic_write(path, writer, meta={"kind": "climatology-cube", "format": FORMAT_VERSION})


def export_cube(src, dest) -> Path:
    """Write a cube as one compressed netCDF file (ledger in the ``ledger`` attribute), e.g. to
    ship it inside the package; :func:`open_cube` reads both forms. Atomic, with a marker."""
    c = open_cube(src)
    ds = c.ds.load().copy()
    ds.attrs = dict(ds.attrs) | {"ledger": json.dumps(c.ledger, sort_keys=True)}
    for c_ in ("source", "region", "surface", "pair", "skill_region", "stat", "fstat"):
        ds = ds.assign_coords({c_: np.array([str(v) for v in ds[c_].values], dtype=object)})
    enc = {}
    for v in ("count", "total", "total_sq", "skill", "field_skill"):
        shape = ds[v].shape
        chunks = tuple(1 if i < 2 and v != "field_skill" else max(n, 1) for i, n in enumerate(shape))
        enc[v] = {"zlib": True, "complevel": 6, "shuffle": True, "chunksizes": chunks}
    dest = Path(dest)

    def writer(tmp: Path) -> None:
        ds.to_netcdf(tmp, engine="h5netcdf", encoding=enc, invalid_netcdf=True)

    return atomic_write(dest, writer, meta={"kind": "climatology-cube", "format": FORMAT_VERSION})


def import_cube(src, dest) -> Path:
    """Write a cube (e.g. the packaged netCDF one) as a zarr cube with its ledger, so that it can
    be extended or have stale sources replaced by :func:`build_cube`."""
    c = open_cube(src)
    ds = c.ds.load().copy()
    for c_ in ("source", "region", "surface", "pair", "skill_region", "stat", "fstat"):
        ds = ds.assign_coords({c_: [str(v) for v in ds[c_].values]})
    for v in ds.variables.values():
        v.encoding = {}
    return _write_cube(ds, json.loads(json.dumps(c.ledger)), Path(dest))

"""The climatology cube: mergeable per-orbit summaries from which every distribution, tail,
skill and trend view is answered in well under a second.

Layout (an xarray Dataset, stored as zarr with a completion marker and a ledger)
--------------------------------------------------------------------------------
dims    ``source``  truth, truth_strip, reference, <model>, <model>@strip
        ``region``  the AR6 reference regions (abbreviations), ``ar6:none`` (no AR6 region),
                    the 18 ten-degree latitude bands ``lat:-90:-80`` … ``lat:80:90``, and any
                    extra regions the cube was built with (``bbox:…``, ``polygon:…``). The AR6
                    set (with ``ar6:none``) and the latitude bands are each a partition of the
                    globe, so a pixel is counted once in each; "global" = Σ over the bands.
        ``time``    month (datetime64, first of the month); only months with data
        ``surface`` ocean, land, coast, sea_ice, snow (``catalogs.schema.SURFACE_TYPES``)
        ``bin``     the rain-rate bins of :data:`evaluation.distributions.EDGES`
vars    ``count``   (source, region, time, surface, bin) int64 pixel counts
        ``total``, ``total_sq`` (source, region, time, surface) float64 Σ rate, Σ rate²
        ``skill``   (pair, skill_region, time, surface, stat) float64: additive skill statistics
                    (:func:`evaluation.skill.pixel_stats`) per pair, on the AR6 partition
        ``field_skill`` (pair, time, fstat): FSS and spectral-coherence sums per orbit field
pairs   ``<model>@strip|reference`` (model vs the reference, on the radar strip),
        ``<model>|truth`` (model vs the truth, whole swath; synthetic world),
        ``reference|truth_strip`` (the reference vs the truth on the strip).

Sources: ``truth`` is the synthetic truth on every pixel, ``truth_strip`` the same on the
reference strip, ``reference`` the radar-like reference (strip only), ``<model>`` a model's
``precip_mean`` on every pixel and ``<model>@strip`` on the strip (so model, reference and
truth can be compared on the same pixels).

Counts are integers and Σ rate / Σ rate² are float64, so means and wet fractions are exact
and merging is exact: a cube built in any order or chunking is identical (tested). Quantiles
are interpolated within bins (:func:`evaluation.distributions.quantile_from_hist`).

Building
--------
:func:`build_cube` runs one task per orbit on dask.distributed (a ``LocalCluster`` by default,
a scheduler address, or ``"inline"`` for no dask at all). Each task loads (simulates) the orbit,
runs the models, computes the partial summaries and writes them atomically to
``<cube>.partials/``; the driver then merges the partials into the cube, written atomically
with a ledger of included (source, orbit) pairs. Re-running skips what the ledger holds and
reuses partials already written, so an interrupted build resumes without redoing finished
orbits and never double-counts (tested by interrupting). New orbits or models only add.

Source identities
-----------------
The ledger (and every partial file) records *which version* of each source the numbers come
from (:func:`source_identity`): for a model, the first 12 hex digits of its registered
checkpoint's sha256 and, with the simulator loader, the simulator's ``PRODUCT_VERSION`` (the Tb
every model reads); for truth/reference, the simulator's ``TRUTH_VERSION`` (bumped only when the
rain truth or the reference change, so a Tb-only simulator change keeps them). A build compares
the current identity of each requested source with the ledger's: on a mismatch (a retrained
model, a new simulator) it raises :class:`StaleSource` unless ``replace_stale=True``, which drops
that source (histograms, skill pairs, ledger entries) and rebuilds it on the requested orbits.
Partials are only reused when their identity is the current one, and a merge never mixes two
identities of one source. A cube written before identities were recorded counts as stale for its
models and as current for its truth/reference (logged).

Modules
-------
``layout``    source names, the region / surface / stat axes, skill pairs, paths, errors, the empty cube
``kernels``   the per-orbit aggregation kernels (numba, numpy fallback)
``partials``  one orbit's partial summaries and the partial files
``ledger``    the ledger, the configuration key and source identities (the stale-source check)
``store``     writing a cube (zarr + ledger), netCDF export / import
``build``     the build driver (dask or inline) and the merge of partials
``query``     :func:`open_cube` and :class:`Cube`: every query a view or report asks
``demo``      the demo record and its build
``archive``   a cube on a PPS archive: CMB reference, models on the 1C-GMI Tb, GPROF read from 2A-GMI

The names below are re-exported here (``from evaluation import cube as CB; CB.build_cube(...)``);
to replace a function in a test, patch it in the module that calls it (e.g.
``evaluation.cube.build._write_cube``), not here.
"""

from __future__ import annotations

from catalogs.store import atomic_write, is_complete
from evaluation.cube.archive import default_archive_cube_path
from evaluation.cube.build import _orbit_task, _run_tasks, build_archive_cube, build_cube, merge_partials
from evaluation.cube.demo import DEMO, PACKAGED_DEMO, build_demo, demo_cube_path, record_orbits
from evaluation.cube.kernels import HAVE_NUMBA, accumulate, accumulate_layers, aggregate_orbit, pixel_groups
from evaluation.cube.layout import (BUILTIN, CANON_LEVELS, FIELD_STATS, FORMAT_VERSION, LEDGER, NONE_REGION,
                                    PIXEL_STATS, REFERENCE, SEASONS, STRIP, SURFACE_GROUPS, SURFACES, TRUTH,
                                    TRUTH_STRIP, BuildCancelled, CubeConfigMismatch, RegionNotInCube, StaleSource,
                                    ar6_labels, default_cube_path, empty_cube, expand_sources, model_of, pairs_for,
                                    partials_dir, region_labels, skill_labels)
from evaluation.cube.ledger import _check_identities, _config_key, _identities, read_ledger, source_identity
from evaluation.cube.partials import (orbit_partial, partial_damage, partial_identities, read_partial,
                                      write_partial)
from evaluation.cube.query import Cube, open_cube, parse_period, parse_season
from evaluation.cube.store import _write_cube, export_cube, import_cube

__all__ = [
    "BUILTIN", "CANON_LEVELS", "DEMO", "FIELD_STATS", "FORMAT_VERSION", "HAVE_NUMBA", "LEDGER", "NONE_REGION",
    "PACKAGED_DEMO", "PIXEL_STATS", "REFERENCE", "SEASONS", "STRIP", "SURFACES", "SURFACE_GROUPS", "TRUTH",
    "TRUTH_STRIP", "BuildCancelled", "Cube", "CubeConfigMismatch", "RegionNotInCube", "StaleSource",
    "_check_identities", "_config_key", "_identities", "_orbit_task", "_run_tasks", "_write_cube", "accumulate",
    "accumulate_layers", "aggregate_orbit", "ar6_labels", "atomic_write", "build_archive_cube", "build_cube",
    "build_demo", "default_archive_cube_path", "default_cube_path", "demo_cube_path", "empty_cube",
    "expand_sources", "export_cube", "import_cube", "is_complete", "merge_partials", "model_of", "open_cube",
    "orbit_partial", "pairs_for", "parse_period", "parse_season", "partial_damage", "partial_identities",
    "partials_dir", "pixel_groups", "read_ledger", "read_partial", "record_orbits", "region_labels", "skill_labels",
    "source_identity", "write_partial",
]

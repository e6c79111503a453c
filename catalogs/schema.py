"""The canonical swath schema: one definition, one validator.

Every part of raincheck (readers, the simulator, models, evaluation, the app) speaks this
`xarray.Dataset` layout for one orbit (or a segment of one). Dimension names follow gpm-api.

Swath (``kind="swath"``)
------------------------
dims       ``along_track`` (scans), ``cross_track`` (pixels in a scan), ``pmw_frequency`` (13)
coords     ``lat`` (along_track, cross_track)  degrees_north, in [-90, 90]
           ``lon`` (along_track, cross_track)  degrees_east, in [-180, 180)
           ``time`` (along_track)              datetime64[ns], scan time (UTC)
           ``pmw_frequency`` (pmw_frequency)   channel labels, exactly :data:`CHANNELS`
           ``frequency`` (pmw_frequency)       centre frequency, GHz
           ``polarization`` (pmw_frequency)    "V" or "H"
variables  ``Tc`` (along_track, cross_track, pmw_frequency) float32, K; NaN where invalid
           ``surface_precip`` (along_track, cross_track) float32, mm h-1; the reference
              (radar / combined); NaN outside the reference strip
           ``surface_precip_truth`` (along_track, cross_track) float32, mm h-1; synthetic only
           ``surface_type`` (along_track, cross_track) int8, CF flags (:data:`SURFACE_TYPES`)
           ``quality_flag`` (along_track, cross_track) uint8, 0 = good (CF flag_masks)
attrs      ``orbit_number`` (int), ``sensor`` ("GMI"), ``platform``, ``source``,
           ``product_version``, ``Conventions`` ("CF-1.10"), ``title``

Retrieval output (``kind="retrieval"``)
---------------------------------------
Same grid and coords (``pmw_frequency`` and ``Tc`` optional), plus a ``quantile`` dim:
``precip_quantiles`` (along_track, cross_track, quantile) mm h-1, non-decreasing along quantile;
``precip_mean``, ``precip_median`` (mm h-1), ``pop`` and ``p_heavy`` (1, in [0, 1]),
optionally ``ood_score`` (1). Attributes ``model``, ``model_sha256`` and ``orbit_number``.

:func:`validate` checks a dataset against one of these and raises :class:`SchemaError` naming
the first violation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

DIMS = ("along_track", "cross_track", "pmw_frequency")
ALONG, CROSS, FREQ = DIMS
QUANTILE = "quantile"


@dataclass(frozen=True)
class Channel:
    label: str
    frequency_ghz: float
    polarization: str
    scan_mode: str  # S1 or S2 in the 1C-GMI product


#: The 13 GMI channels, in the order of the 1C product (S1 then S2).
GMI_CHANNELS: tuple[Channel, ...] = (
    Channel("10.65V", 10.65, "V", "S1"),
    Channel("10.65H", 10.65, "H", "S1"),
    Channel("18.7V", 18.7, "V", "S1"),
    Channel("18.7H", 18.7, "H", "S1"),
    Channel("23.8V", 23.8, "V", "S1"),
    Channel("36.64V", 36.64, "V", "S1"),
    Channel("36.64H", 36.64, "H", "S1"),
    Channel("89.0V", 89.0, "V", "S1"),
    Channel("89.0H", 89.0, "H", "S1"),
    Channel("166.0V", 166.0, "V", "S2"),
    Channel("166.0H", 166.0, "H", "S2"),
    Channel("183.31±3V", 183.31, "V", "S2"),
    Channel("183.31±7V", 183.31, "V", "S2"),
)
CHANNELS: tuple[str, ...] = tuple(c.label for c in GMI_CHANNELS)
N_CHANNELS = len(CHANNELS)

#: Physical range of a valid brightness temperature (K); outside is treated as invalid.
TB_VALID_RANGE = (20.0, 350.0)

#: CF flag values of ``surface_type``.
SURFACE_TYPES = {0: "ocean", 1: "land", 2: "coast", 3: "sea_ice", 4: "snow", -1: "unknown"}
#: Flag for pixels whose surface is not known (e.g. a 1C granule without its 2A companion).
SURFACE_UNKNOWN = -1

#: Bits of ``quality_flag`` (CF flag_masks).
QUALITY_BITS = {1: "tb_missing", 2: "tb_out_of_range", 4: "geolocation_missing", 8: "reference_missing"}

RAIN_UNITS = "mm h-1"
TB_UNITS = "K"

SWATH_REQUIRED_VARS = ("Tc", "surface_type", "quality_flag")
RETRIEVAL_REQUIRED_VARS = ("precip_quantiles", "precip_mean", "precip_median", "pop", "p_heavy")
RETRIEVAL_PRODUCTS = {
    "precip_mean": ("mm h-1", "Posterior mean surface precipitation rate"),
    "precip_median": ("mm h-1", "Posterior median surface precipitation rate"),
    "pop": ("1", "Probability of precipitation (rate > 0.1 mm h-1)"),
    "p_heavy": ("1", "Probability of heavy precipitation (rate > 10 mm h-1)"),
    "ood_score": ("1", "Out-of-distribution score"),
}
REQUIRED_ATTRS = ("orbit_number", "sensor", "source")


class SchemaError(ValueError):
    """A dataset does not follow the canonical swath schema; the message names the violation."""


def _fail(msg: str) -> None:
    raise SchemaError(msg)


def _check_units(ds: xr.Dataset, name: str, units: str) -> None:
    got = ds[name].attrs.get("units")
    if got != units:
        _fail(f"variable {name!r} must have units {units!r}, found {got!r}")


def _check_grid(ds: xr.Dataset) -> None:
    for d in (ALONG, CROSS):
        if d not in ds.dims:
            _fail(f"missing dimension {d!r} (found dims {list(ds.dims)})")
        if ds.sizes[d] < 1:
            _fail(f"dimension {d!r} is empty")
    for c in ("lat", "lon"):
        if c not in ds.coords:
            _fail(f"missing coordinate {c!r}")
        if ds[c].dims != (ALONG, CROSS):
            _fail(f"coordinate {c!r} must have dims ('along_track', 'cross_track'), found {ds[c].dims}")
    lat = ds["lat"].values
    lon = ds["lon"].values
    if np.isfinite(lat).any():
        if np.nanmin(lat) < -90 or np.nanmax(lat) > 90:
            _fail(f"coordinate 'lat' outside [-90, 90] (min {np.nanmin(lat):.3f}, max {np.nanmax(lat):.3f})")
    if np.isfinite(lon).any():
        if np.nanmin(lon) < -180 or np.nanmax(lon) > 180:
            _fail(f"coordinate 'lon' outside [-180, 180] (min {np.nanmin(lon):.3f}, max {np.nanmax(lon):.3f})")
    if "time" not in ds.coords:
        _fail("missing coordinate 'time'")
    if ds["time"].dims != (ALONG,):
        _fail(f"coordinate 'time' must have dims ('along_track',), found {ds['time'].dims}")
    if not np.issubdtype(ds["time"].dtype, np.datetime64):
        _fail(f"coordinate 'time' must be datetime64, found {ds['time'].dtype}")


def _check_attrs(ds: xr.Dataset) -> None:
    for a in REQUIRED_ATTRS:
        if a not in ds.attrs:
            _fail(f"missing global attribute {a!r}")
    try:
        int(ds.attrs["orbit_number"])
    except (TypeError, ValueError):
        _fail(f"global attribute 'orbit_number' must be an integer, found {ds.attrs['orbit_number']!r}")


def _check_rain(ds: xr.Dataset, name: str) -> None:
    if ds[name].dims != (ALONG, CROSS):
        _fail(f"variable {name!r} must have dims ('along_track', 'cross_track'), found {ds[name].dims}")
    _check_units(ds, name, RAIN_UNITS)
    v = ds[name].values
    if np.nanmin(v, initial=0.0) < 0:
        _fail(f"variable {name!r} has negative rain rates (min {np.nanmin(v):.3g} mm h-1)")


def _check_tc(ds: xr.Dataset, required: bool) -> None:
    if "Tc" not in ds:
        if required:
            _fail("missing variable 'Tc' (brightness temperatures)")
        return
    if FREQ not in ds.dims:
        _fail("missing dimension 'pmw_frequency'")
    if ds.sizes[FREQ] != N_CHANNELS:
        _fail(f"dimension 'pmw_frequency' must have {N_CHANNELS} GMI channels, found {ds.sizes[FREQ]}")
    if FREQ not in ds.coords or tuple(str(v) for v in ds[FREQ].values) != CHANNELS:
        got = list(ds[FREQ].values) if FREQ in ds.coords else None
        _fail(f"coordinate 'pmw_frequency' must list the GMI channels {list(CHANNELS)}, found {got}")
    if ds["Tc"].dims != DIMS:
        _fail(f"variable 'Tc' must have dims {DIMS}, found {ds['Tc'].dims}")
    if not np.issubdtype(ds["Tc"].dtype, np.floating):
        _fail(f"variable 'Tc' must be floating point, found {ds['Tc'].dtype}")
    _check_units(ds, "Tc", TB_UNITS)
    tc = ds["Tc"].values
    finite = tc[np.isfinite(tc)]
    if finite.size:
        lo, hi = TB_VALID_RANGE
        if finite.min() < lo or finite.max() > hi:
            _fail(
                f"variable 'Tc' has values outside the physical range {TB_VALID_RANGE} K "
                f"(min {finite.min():.1f}, max {finite.max():.1f}); fill values must be NaN"
            )


def validate(ds: xr.Dataset, kind: str = "swath") -> xr.Dataset:
    """Check ``ds`` against the canonical schema; return it unchanged or raise :class:`SchemaError`.

    ``kind`` is ``"swath"`` (observations / reference / truth) or ``"retrieval"`` (model output).
    """
    if not isinstance(ds, xr.Dataset):
        _fail(f"expected an xarray.Dataset, got {type(ds).__name__}")
    if kind not in ("swath", "retrieval"):
        raise ValueError(f"unknown schema kind {kind!r}; expected 'swath' or 'retrieval'")
    _check_grid(ds)
    _check_attrs(ds)
    if kind == "swath":
        _check_tc(ds, required=True)
        for v in ("surface_type", "quality_flag"):
            if v not in ds:
                _fail(f"missing variable {v!r}")
            if ds[v].dims != (ALONG, CROSS):
                _fail(f"variable {v!r} must have dims ('along_track', 'cross_track'), found {ds[v].dims}")
        st = ds["surface_type"].values
        bad = ~np.isin(st, list(SURFACE_TYPES))
        if bad.any():
            _fail(f"variable 'surface_type' has values outside the flags {sorted(SURFACE_TYPES)}: {np.unique(st[bad])[:5].tolist()}")
        for v in ("surface_precip", "surface_precip_truth"):
            if v in ds:
                _check_rain(ds, v)
    else:
        _check_tc(ds, required=False)
        for v in RETRIEVAL_REQUIRED_VARS:
            if v not in ds:
                _fail(f"missing variable {v!r}")
        if QUANTILE not in ds.dims:
            _fail("missing dimension 'quantile'")
        q = ds[QUANTILE].values
        if q.size < 2 or not np.all(np.diff(q) > 0) or q[0] <= 0 or q[-1] >= 1:
            _fail(f"coordinate 'quantile' must be strictly increasing levels in (0, 1), found {q[:5]}...")
        pq = ds["precip_quantiles"]
        if pq.dims != (ALONG, CROSS, QUANTILE):
            _fail(f"variable 'precip_quantiles' must have dims ('along_track', 'cross_track', 'quantile'), found {pq.dims}")
        _check_units(ds, "precip_quantiles", RAIN_UNITS)
        d = np.diff(pq.values, axis=-1)
        if np.any(d[np.isfinite(d)] < 0):
            _fail("variable 'precip_quantiles' decreases along 'quantile' (quantiles cross)")
        for v in ("precip_mean", "precip_median"):
            _check_rain(ds, v)
        for v in ("pop", "p_heavy"):
            _check_units(ds, v, "1")
            vals = ds[v].values
            if np.nanmin(vals, initial=0) < 0 or np.nanmax(vals, initial=0) > 1:
                _fail(f"variable {v!r} must be a probability in [0, 1]")
    return ds


def channel_coords() -> dict[str, tuple]:
    """Coordinates of the ``pmw_frequency`` dim, ready for ``Dataset.assign_coords``."""
    return {
        FREQ: (FREQ, np.array(CHANNELS, dtype=object)),
        "frequency": (FREQ, np.array([c.frequency_ghz for c in GMI_CHANNELS]), {"units": "GHz", "long_name": "centre frequency"}),
        "polarization": (FREQ, np.array([c.polarization for c in GMI_CHANNELS], dtype=object)),
    }


def make_swath(
    *,
    tc: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    time: np.ndarray,
    surface_type: np.ndarray,
    orbit_number: int,
    source: str,
    surface_precip: np.ndarray | None = None,
    surface_precip_truth: np.ndarray | None = None,
    quality_flag: np.ndarray | None = None,
    platform: str = "GPM",
    product_version: str = "",
    attrs: dict | None = None,
) -> xr.Dataset:
    """Build a canonical swath from arrays (fill values already NaN) and validate it.

    ``tc`` is (along_track, cross_track, 13) in K; ``lat``/``lon`` (along_track, cross_track);
    ``time`` (along_track,) datetime64. Invalid Tb (non-finite or out of physical range) are set
    to NaN and flagged in ``quality_flag``.
    """
    tc = np.asarray(tc, dtype=np.float32)
    if tc.ndim != 3 or tc.shape[-1] != N_CHANNELS:
        raise SchemaError(f"Tc must be (along_track, cross_track, {N_CHANNELS}), got shape {tc.shape}")
    lo, hi = TB_VALID_RANGE
    nonfinite = ~np.isfinite(tc)
    out_of_range = np.isfinite(tc) & ((tc < lo) | (tc > hi))
    tc = np.where(nonfinite | out_of_range, np.float32(np.nan), tc)
    qf = np.zeros(tc.shape[:2], dtype=np.uint8) if quality_flag is None else np.asarray(quality_flag, np.uint8).copy()
    qf |= np.where(nonfinite.any(-1), 1, 0).astype(np.uint8)
    qf |= np.where(out_of_range.any(-1), 2, 0).astype(np.uint8)
    lat = np.asarray(lat, dtype=np.float32)
    lon = np.asarray(lon, dtype=np.float32)
    qf |= np.where(~(np.isfinite(lat) & np.isfinite(lon)), 4, 0).astype(np.uint8)

    data_vars = {
        "Tc": (DIMS, tc, {"units": TB_UNITS, "long_name": "brightness temperature",
                          "standard_name": "brightness_temperature"}),
        "surface_type": ((ALONG, CROSS), np.asarray(surface_type, np.int8), {
            "long_name": "surface type", "flag_values": np.array(list(SURFACE_TYPES), np.int8),
            "flag_meanings": " ".join(SURFACE_TYPES.values())}),
    }
    for name, arr, long_name in (
        ("surface_precip", surface_precip, "reference surface precipitation rate"),
        ("surface_precip_truth", surface_precip_truth, "true surface precipitation rate (synthetic)"),
    ):
        if arr is not None:
            arr = np.asarray(arr, np.float32)
            data_vars[name] = ((ALONG, CROSS), arr, {
                "units": RAIN_UNITS, "long_name": long_name,
                "standard_name": "lwe_precipitation_rate"})
    if surface_precip is not None:
        qf |= np.where(~np.isfinite(data_vars["surface_precip"][1]), 8, 0).astype(np.uint8)
    data_vars["quality_flag"] = ((ALONG, CROSS), qf, {
        "long_name": "quality flag (0 = good)", "flag_masks": np.array(list(QUALITY_BITS), np.uint8),
        "flag_meanings": " ".join(QUALITY_BITS.values())})

    coords = {
        "lat": ((ALONG, CROSS), lat, {"units": "degrees_north", "standard_name": "latitude"}),
        "lon": ((ALONG, CROSS), lon, {"units": "degrees_east", "standard_name": "longitude"}),
        "time": ((ALONG,), np.asarray(time).astype("datetime64[ns]"), {"standard_name": "time"}),
        **channel_coords(),
    }
    ds_attrs = {
        "Conventions": "CF-1.10",
        "title": f"{platform} GMI swath, orbit {int(orbit_number)}",
        "orbit_number": int(orbit_number),
        "sensor": "GMI",
        "platform": platform,
        "source": source,
        "product_version": product_version,
    }
    ds_attrs.update(attrs or {})
    ds = xr.Dataset(data_vars, coords=coords, attrs=ds_attrs)
    return validate(ds)


def reference_strip(ds: xr.Dataset) -> xr.DataArray:
    """Boolean (along_track, cross_track) mask of pixels where the reference exists."""
    if "surface_precip" not in ds:
        return xr.zeros_like(ds["lat"], dtype=bool)
    return np.isfinite(ds["surface_precip"])

"""Collocation of model outputs with the reference (radar strip) and the truth (synthetic world),
pixel by pixel, with the grouping keys of the protocol: surface type, month, season, region.

``collocate(swath, retrievals)`` flattens one orbit into a table (an xarray Dataset along
``pixel``): ``reference``, ``truth``, ``<model>`` (posterior mean) and optionally
``<model>_quantiles`` (pixel, quantile), plus ``lat``, ``lon``, ``time``, ``surface``,
``on_strip``, ``month``, ``season``, ``ar6`` (region abbreviation). ``select`` filters it by a
region spec, period, season and surface; ``orbit_scores`` scores it with :mod:`evaluation.skill`.
The climatology cube (``evaluation.cube``) stores the same comparisons aggregated over orbits.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from catalogs import schema
from evaluation import regions as RG
from evaluation import skill as SK

SEASON_OF_MONTH = {12: "DJF", 1: "DJF", 2: "DJF", 3: "MAM", 4: "MAM", 5: "MAM", 6: "JJA", 7: "JJA", 8: "JJA",
                   9: "SON", 10: "SON", 11: "SON"}


def collocate(swath: xr.Dataset, retrievals: dict[str, xr.Dataset] | None = None, *, quantiles: bool = True,
              validate: bool = True) -> xr.Dataset:
    """Pixel table of one orbit (see module doc). ``retrievals`` maps model name → canonical
    retrieval dataset on the swath's grid."""
    if validate:
        schema.validate(swath, "swath")
    A, C = swath.sizes[schema.ALONG], swath.sizes[schema.CROSS]
    lat = swath["lat"].values.ravel()
    lon = swath["lon"].values.ravel()
    t = np.repeat(swath["time"].values, C)
    month = ((t.astype("datetime64[M]").astype(np.int64)) % 12 + 1).astype(np.int8)
    st = swath["surface_type"].values.ravel().astype(np.int8)
    ref = swath["surface_precip"].values.ravel() if "surface_precip" in swath else np.full(A * C, np.nan, np.float32)
    ids = RG.ar6_lookup(lat, lon)
    idx = RG.load_index()
    names = np.array(list(idx["abbrevs"]) + ["none"])
    num_to_pos = {n: k for k, n in enumerate(idx["numbers"])}
    pos = np.array([num_to_pos.get(int(i), len(idx["numbers"])) for i in range(-1, max(idx["numbers"]) + 1)])
    data = {
        "reference": ("pixel", ref.astype(np.float32)),
        "on_strip": ("pixel", np.isfinite(ref)),
        "surface": ("pixel", st),
        "month": ("pixel", month),
        "season": ("pixel", np.array([SEASON_OF_MONTH[int(m)] for m in range(1, 13)])[month - 1]),
        "ar6": ("pixel", names[pos[ids.astype(np.int64) + 1]]),
    }
    if "surface_precip_truth" in swath:
        data["truth"] = ("pixel", swath["surface_precip_truth"].values.ravel().astype(np.float32))
    coords = {"lat": ("pixel", lat), "lon": ("pixel", lon), "time": ("pixel", t)}
    for name, ret in (retrievals or {}).items():
        if validate:
            schema.validate(ret, "retrieval")
        if ret["precip_mean"].shape != (A, C):
            raise ValueError(f"retrieval {name!r} is not on the swath grid ({ret['precip_mean'].shape} vs {(A, C)})")
        data[name] = ("pixel", ret["precip_mean"].values.ravel().astype(np.float32))
        if quantiles:
            q = ret["precip_quantiles"].values.reshape(A * C, -1)
            dim = f"quantile_{name}"
            data[f"{name}_quantiles"] = (("pixel", dim), q)
            coords[dim] = (dim, ret["quantile"].values)
    out = xr.Dataset(data, coords=coords, attrs={"orbit_number": int(swath.attrs.get("orbit_number", -1)),
                                                 "surface_flags": str(schema.SURFACE_TYPES)})
    return out


def select(table: xr.Dataset, region="global", *, period=None, season=None, surface=None, strip=None) -> xr.Dataset:
    """Rows of a collocation table inside a region (any :func:`evaluation.regions.get_region`
    spec; exact masks), a period ('2015-2019'), season (DJF…) and surface (names, or land/ocean),
    and on/off the reference strip."""
    from evaluation.cube import SURFACE_GROUPS, SURFACES, parse_period, parse_season

    m = RG.get_region(region).mask(table["lat"].values, table["lon"].values)
    a, b = parse_period(period)
    if a is not None:
        t = table["time"].values
        m &= (t >= a) & (t < b)
    months = parse_season(season)
    if months is not None:
        m &= np.isin(table["month"].values, months)
    if surface:
        names = surface.split(",") if isinstance(surface, str) else list(surface)
        wanted = []
        for s in names:
            wanted += list(SURFACE_GROUPS.get(s.strip(), (s.strip(),)))
        codes = [k for k, v in schema.SURFACE_TYPES.items() if v in wanted and v in SURFACES]
        m &= np.isin(table["surface"].values, codes)
    if strip is not None:
        m &= table["on_strip"].values == bool(strip)
    return table.isel(pixel=np.flatnonzero(m))


def orbit_scores(table: xr.Dataset, model: str, against: str = "reference") -> dict:
    """Skill of ``model`` against ``reference`` (strip pixels) or ``truth`` on a collocation
    table, with CRPS/PIT/coverage when the model's quantiles are in the table."""
    p = table[model].values
    r = table[against].values
    out = SK.continuous_scores(p, r)
    out["categorical"] = SK.categorical_scores(p, r)
    qn = f"{model}_quantiles"
    if qn in table:
        lv = table[f"quantile_{model}"].values
        ok = np.isfinite(r)
        out["probabilistic"] = SK.probabilistic_scores(table[qn].values[ok], lv, r[ok])
    return out

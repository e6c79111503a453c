"""Regenerate ``catalogs/assets/pps_layout.json`` from real V07 PPS granules (developer tool).

The layout is what :mod:`catalogs.pps` writes: for each product, the file-level metadata
attributes (``FileHeader``, ``FileInfo``, ...), the scan-mode groups with their attributes, and,
for the variables raincheck writes, their path, HDF5 data type, ``DimensionNames`` and attributes
(``_FillValue``, ``CodeMissingValue``, ``Units``, ``LongName`` ...) exactly as PPS wrote them. The
sizes of non-scan dimensions (channels, ``nKuKa`` ...) come along. Run it on real granules (the
shipped test cuts in ``../shared/fixtures/gpm`` or full files)::

    python -m catalogs.make_pps_layout /path/to/granules

``tests/test_pps.py`` checks that the shipped layout is still the real cuts' layout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

#: Product -> (file-name prefix, {scan mode: variables written}) — the variables raincheck
#: reads, their geolocation and time, and the quality flags a PPS user expects to find.
_SCAN_TIME = ["ScanTime/Year", "ScanTime/Month", "ScanTime/DayOfMonth", "ScanTime/Hour", "ScanTime/Minute",
              "ScanTime/Second", "ScanTime/MilliSecond", "ScanTime/DayOfYear", "ScanTime/SecondOfDay"]
_SC_STATUS = ["SCstatus/SClatitude", "SCstatus/SClongitude", "SCstatus/SCaltitude", "SCstatus/SCorientation",
              "SCstatus/FractionalGranuleNumber"]
WRITTEN = {
    "1C-GMI": ("1C.GPM.GMI.", {
        mode: ["Latitude", "Longitude", "Tc", "Quality", "incidenceAngle", "incidenceAngleIndex", "sunLocalTime",
               *_SCAN_TIME, *_SC_STATUS]
        for mode in ("S1", "S2")}),
    "2B-CMB": ("2B.GPM.DPRGMI.", {"KuGMI": [
        "Latitude", "Longitude", "estimSurfPrecipTotRate", "estimSurfPrecipLiqRate", "nearSurfPrecipTotRate",
        "Input/surfaceType", "Input/snowIceCover", "Input/precipitationFlag", "Input/localZenithAngle",
        "sunLocalTime", "navigation/scLat", "navigation/scLon", "navigation/timeMidScan",
        "scanStatus/FractionalGranuleNumber", "scanStatus/dataQuality", *_SCAN_TIME]}),
    "2A-GMI": ("2A.GPM.GMI.", {"S1": [
        "Latitude", "Longitude", "surfacePrecipitation", "precip1stTertial", "precip2ndTertial",
        "probabilityOfPrecip", "mostLikelyPrecipitation", "surfaceTypeIndex", "pixelStatus", "qualityFlag",
        "L1CqualityFlag", "sunLocalTime", *_SCAN_TIME, *_SC_STATUS]}),
}


def _text(v) -> str | int | float | list:
    if isinstance(v, bytes | np.bytes_):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray):
        return [_text(x) for x in v.tolist()]
    if isinstance(v, np.generic):
        return v.item()
    return v


def _attrs(obj) -> dict:
    out = {}
    for k, v in obj.attrs.items():
        if k in ("DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME"):
            continue
        typ = "bytes" if isinstance(v, bytes | np.bytes_) else (str(np.asarray(v).dtype) if not isinstance(v, str) else "str")
        out[k] = {"type": typ, "value": _text(v)}
    return out


def layout_of(path: Path, product: str) -> dict:
    import h5py

    _, modes = WRITTEN[product]
    with h5py.File(path, "r") as h:
        doc = {"file_attrs": _attrs(h), "groups": {}}
        for mode, names in modes.items():
            g = h[mode]
            variables = {}
            for name in names:
                if name not in g:
                    raise SystemExit(f"{path.name}: {mode}/{name} not in the granule")
                d = g[name]
                dims = _text(d.attrs["DimensionNames"]).split(",")
                variables[name] = {"dtype": str(d.dtype), "dims": dims, "attrs": _attrs(d),
                                   "sizes": dict(zip(dims, map(int, d.shape)))}
            doc["groups"][mode] = {"attrs": _attrs(g), "variables": variables}
    return doc


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    folder = Path(argv[0] if argv else Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "gpm")
    out = {}
    for product, (prefix, _) in WRITTEN.items():
        files = sorted(folder.glob(prefix + "*"))
        if not files:
            raise SystemExit(f"no {product} granule ({prefix}*) in {folder}")
        out[product] = {"source": files[0].name, **layout_of(files[0], product)}
    dest = Path(__file__).parent / "assets" / "pps_layout.json"
    dest.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()

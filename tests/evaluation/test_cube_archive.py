"""A climatology cube on a PPS archive (issue 16, 3b): 2B-CMB as the reference, a model run on the 1C-GMI Tb,
GPROF read from 2A-GMI granules; checked against independent computations on the same granules, against the
synthetic cube of the same orbits (known truth), and with bad archives."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from app.cli import main
from catalogs import gpm, pps
from catalogs.config import PathOutsideRoots
from catalogs.pairs import archive_index, open_pair
from catalogs.store import is_complete
from evaluation import cube as CB
from evaluation import distributions as D
from models.inference import make_retrieval
from models.quantiles import QuantileDistribution
from tests.evaluation.test_evaluation_cube import register_tiny_unet

N_SCANS = 300
GPROF = "GPROF2021v1"  # the algorithm field of pps' 2A-GMI file names
FAKE_LEVELS = np.array([0.1, 0.25, 0.5, 0.75, 0.9])


def fake_gprof(swath):
    """A GPROF-like retrieval of the swath (any retrieval will do: it is written as the 2A-GMI granule and read
    back): the truth times lognormal noise, quantiles spread around it."""
    rng = np.random.default_rng(int(swath.attrs["orbit_number"]))
    t = np.nan_to_num(swath["surface_precip_truth"].values.astype(np.float64))
    mean = t * np.exp(rng.normal(0.0, 0.3, t.shape))
    q = mean[..., None] * np.exp(0.4 * np.array([-1.28, -0.67, 0.0, 0.67, 1.28]))
    return make_retrieval(swath, q, SimpleNamespace(levels=FAKE_LEVELS, name="fake-gprof", kind="test", sha256="0"))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Three short orbits of June 2019 as a PPS archive (2A-GMI for the first two only) and their archive cube
    (reference, gprof, a tiny U-Net) built by the CLI, inline; the data root holds it all."""
    d = tmp_path_factory.mktemp("archive-cube")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAINCHECK_DATA_ROOT", str(d / "data"))
        mp.delenv("RAINCHECK_READ_ROOTS", raising=False)
        root = d / "data" / "archive"
        orbits = pps.archive_orbits("2019-06-01", "2019-06-03", 3)
        pps.make_archive(root, orbits[:2], n_scans=N_SCANS, gprof=fake_gprof)
        pps.make_archive(root, orbits[2:], n_scans=N_SCANS)
        register_tiny_unet()
        r = CliRunner().invoke(main, ["climatology", "build", "--archive", str(root), "--sources",
                                      "reference,gprof,tiny-unet", "--inline"])
        assert r.exit_code == 0, r.output
        path = CB.default_archive_cube_path(root)
        assert json.loads(r.output[r.output.index("{"):])["path"] == str(path)
        yield SimpleNamespace(d=d, data=d / "data", root=root, orbits=orbits, path=path, index=archive_index(root))


def _pairs(env):
    """{orbit: open_pair swath} of the archive (the reference on GMI, read independently of the cube)."""
    return {int(r.orbit): open_pair(r[3]) for r in env.index.itertuples(index=False)}


def test_archive_cube_sources_ledger_and_histograms(env):
    c = CB.open_cube(env.path)
    assert set(c.sources) == {"reference", GPROF, GPROF + "@strip", "tiny-unet", "tiny-unet@strip"}
    assert not any("truth" in p for p in c.ds["pair"].values.astype(str))  # an archive has no truth
    d = c.describe()
    assert d["truth"].startswith("none")
    assert d["config"] == {"loader": "pps-archive", "granule_dir": str(env.root.resolve()),
                           "model_product": "precip_mean"}  # no world seed nor scan count: not the simulator's
    a = d["archive"]
    assert a["granule_dir"] == str(env.root.resolve()) and a["orbits"] == 3 and a["skipped"] == 0
    assert a["period"] == [str(env.index["start"].min()), str(env.index["end"].max())]
    assert a["sources_missing"] == {GPROF: 1}
    assert c.ledger["archive"]["missing"] == {GPROF: {str(env.orbits[2]): "no 2A-GMI granule"}}
    assert c.ledger["sources"]["reference"] == sorted(env.orbits)
    assert c.ledger["sources"][GPROF] == sorted(env.orbits[:2])  # absent where there is no 2A-GMI granule
    assert c.ledger["config"]["loader"] == "pps-archive"
    assert c.ledger["config"]["granule_dir"] == str(env.root.resolve())
    assert c.identity("reference")["reference"] == "2B-CMB CORRA2022 V07A"
    assert c.identity(GPROF) == {"baseline": "2A-GMI GPROF2021v1 V07A"}
    assert c.identity("tiny-unet")["input"] == "1C-GMI XCAL2016-C V07A"
    # histograms against independent ones of the same granules
    sw = _pairs(env)
    ref = np.concatenate([s["surface_precip"].values.ravel() for s in sw.values()])
    np.testing.assert_array_equal(c.histogram("reference").counts, D.histogram(ref))
    gp, gp_strip = [], []
    for r in env.index.itertuples(index=False):
        if r[5]:
            m = gpm.open_2a_gprof(r[5])["precip_mean"].values
            gp.append(m.ravel())
            gp_strip.append(np.where(np.isfinite(sw[int(r.orbit)]["surface_precip"].values), m, np.nan).ravel())
    np.testing.assert_array_equal(c.histogram(GPROF).counts, D.histogram(np.concatenate(gp)))
    np.testing.assert_array_equal(c.histogram(GPROF + "@strip").counts, D.histogram(np.concatenate(gp_strip)))
    # the model on the observed Tb: a value wherever every channel is valid (the last scans of a granule have no
    # S2 partner), on the reference strip and everywhere
    tb_ok = {o: np.isfinite(s["Tc"].values).all(axis=-1) for o, s in sw.items()}
    assert c.histogram("tiny-unet@strip").n == sum((tb_ok[o] & np.isfinite(s["surface_precip"].values)).sum()
                                                   for o, s in sw.items()) > 0
    assert c.histogram("tiny-unet").n == sum(v.sum() for v in tb_ok.values())
    assert c.histogram("tiny-unet").n < sum(v.size for v in tb_ok.values())
    # info finds it from the archive folder
    r = CliRunner().invoke(main, ["climatology", "info", "--archive", str(env.root)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["archive"]["granule_dir"] == str(env.root.resolve())


def test_gprof_skill_in_the_cube_matches_an_independent_computation(env):
    """GPROF's scores against CMB from the cube = numpy on open_2a_gprof's mean vs open_pair's reference, pixel
    by pixel over the orbits that have a 2A-GMI granule."""
    sw = _pairs(env)
    P, R, Q = [], [], []
    for r in env.index.itertuples(index=False):
        if not r[5]:
            continue
        g = gpm.open_2a_gprof(r[5])
        P.append(g["precip_mean"].values.ravel())
        Q.append(g["precip_quantiles"].values.reshape(-1, 2))
        R.append(sw[int(r.orbit)]["surface_precip"].values.ravel())
    p, r_, q = np.concatenate(P).astype(np.float64), np.concatenate(R).astype(np.float64), np.concatenate(Q)
    ok = np.isfinite(p) & np.isfinite(r_)
    p, r_, q = p[ok], r_[ok], q[ok]
    s = CB.open_cube(env.path).skill(GPROF, "reference")
    assert s["n"] == ok.sum() > 1000
    assert s["bias_pct"] == pytest.approx(100 * (p.sum() - r_.sum()) / r_.sum(), rel=1e-9)
    assert s["mae"] == pytest.approx(np.abs(p - r_).mean(), rel=1e-9)
    assert s["rmse"] == pytest.approx(np.sqrt(((p - r_) ** 2).mean()), rel=1e-9)
    assert s["corr"] == pytest.approx(np.corrcoef(p, r_)[0, 1], rel=1e-8)
    hit, fa, miss = ((p >= 0.1) & (r_ >= 0.1)).sum(), ((p >= 0.1) & (r_ < 0.1)).sum(), ((p < 0.1) & (r_ >= 0.1)).sum()
    assert s["categorical"]["0.1"]["pod"] == pytest.approx(hit / (hit + miss))
    assert s["categorical"]["0.1"]["far"] == pytest.approx(fa / (hit + fa))
    # CRPS of the distribution through GPROF's two tertiles (levels 1/3, 2/3)
    okq = np.isfinite(q).all(axis=1)
    crps = QuantileDistribution(q[okq], [1 / 3, 2 / 3]).crps(r_[okq])
    assert s["crps"] == pytest.approx(crps.mean(), rel=1e-9)
    assert s["quantile_score"] == {} and s["coverage"] == {}  # not defined by two tertiles (no zeros shown)
    assert any("tertiles" in n for n in s["notes"])


def test_evaluate_on_the_archive_cube(env):
    r = CliRunner().invoke(main, ["evaluate", "--cube", str(env.path), "--no-extremes", "--json"])
    assert r.exit_code == 0, r.output
    o = json.loads(r.output)
    assert set(o["distributions"]["strip"]) == {"reference", GPROF + "@strip", "tiny-unet@strip"}
    assert set(o["distributions"]["all_pixels"]) == {GPROF, "tiny-unet"}  # no truth
    for m in (GPROF, "tiny-unet"):
        assert o["skill"][m]["vs_reference"]["n"] > 1000 and "error" not in o["skill"][m]["vs_reference"]
        assert "error" in o["skill"][m]["vs_truth"]
    c = CB.open_cube(env.path)
    assert o["skill"][GPROF]["vs_reference"]["mae"] == pytest.approx(c.skill(GPROF, "reference")["mae"])
    assert o["cube"]["archive"]["orbits"] == 3
    r = CliRunner().invoke(main, ["evaluate", "--archive", str(env.root), "--no-extremes"])  # its default cube
    assert r.exit_code == 0, r.output
    assert "truth: none" in r.output and f"skill {GPROF} vs_reference" in r.output
    assert f"note: {GPROF} on 2 of the 3 orbits" in r.output
    r = CliRunner().invoke(main, ["evaluate", "--archive", str(env.root), "--no-extremes", "--models", "gprof", "--json"])
    assert r.exit_code == 0, r.output
    assert set(json.loads(r.output)["skill"]) - {"reference"} == {GPROF}  # "gprof": the archive's GPROF, as in the build


def test_an_export_of_the_archive_cube_covers_its_own_period(env, tmp_path, monkeypatch):
    """Without --period an evaluation view's figure covers the cube's years (2019), not the synthetic record."""
    monkeypatch.setenv("RAINCHECK_DATA_ROOT", str(env.data))
    r = CliRunner().invoke(main, ["export", "--view", "distributions", "--cube", str(env.path), "--models",
                                  f"tiny-unet,{GPROF}", "--format", "png", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in tmp_path.iterdir())
    assert any(n.endswith(".png") and "_2019-2019_" in n for n in names), names
    manifest = json.loads(next(tmp_path.glob("*.manifest.json")).read_text())
    assert "2019" in json.dumps(manifest)


def test_the_app_opens_an_archive_cube_on_its_own_period(env, monkeypatch):
    """A session on the archive cube starts on its years (2019, not the synthetic record's
    1998–2060), on real granules and with the granule picker on the archive's first day, unless
    its link says otherwise; its Trends view shows no synthetic-world forced response."""
    from app.views.common import archive_session
    from app.state import Selection
    from app.views import make_views
    from app.views.common import cube_years

    monkeypatch.setenv("RAINCHECK_DATA_ROOT", str(env.data))
    assert cube_years(str(env.path), archive_only=True) == (2019, 2019)
    sel = Selection()
    archive_session(sel, str(env.path), "?view=trends&models=tiny-unet")
    assert (sel.start_year, sel.end_year) == (2019, 2019)
    # real granules, the granule picker on the archive's first day (the ledger's earliest granule start)
    first = min(v["start"] for v in CB.open_cube(env.path).ledger["archive"]["orbits"].values())[:10]
    assert sel.source == "real" and sel.pick_start == first and sel.pick_end > first
    assert (np.datetime64(sel.pick_end) - np.datetime64(sel.pick_start)).astype(int) == 1
    linked = Selection(start_year=2015, end_year=2020, source="synthetic", pick_start="2019-01-01",
                       pick_end="2019-01-03")
    archive_session(linked, str(env.path), "?y0=2015&y1=2020&source=synthetic&from=2019-01-01&to=2019-01-03")
    assert (linked.start_year, linked.end_year) == (2015, 2020)  # the link's period stands
    assert linked.source == "synthetic" and (linked.pick_start, linked.pick_end) == ("2019-01-01", "2019-01-03")
    synthetic = Selection()
    archive_session(synthetic, None, "")  # the demo cube is not an archive's: the defaults stay
    assert (synthetic.start_year, synthetic.end_year) == (1998, 2060)
    assert (synthetic.source, synthetic.pick_start) == ("synthetic", Selection.param.pick_start.default)
    sel.param.update(view="trends", models=["tiny-unet"])
    trends = make_views(sel, None, str(env.path))["trends"]
    assert trends.result is not None, [a.object for a in trends._alerts.objects]
    assert trends.result["forced"] is None
    assert trends.result["query"]["period"] and "2019" in str(trends.result["query"]["period"])


def test_known_truth_reference_equals_the_synthetic_cube(env):
    """The archive cube's reference (CMB collocated on GMI) against the synthetic cube of the same orbits built
    the usual way (the simulator's radar reference): equal exactly once the pixels where they differ are taken
    out of each side, and those are few.

    They differ on three sets of pixels, measured here (300-scan granules): (1) the last ~35 scans of the strip
    have no CMB (the DPR sees that ground ~67 s after GMI, after the granule ends) and a few strip-edge pixels
    per scan lie > 5 km from any CMB footprint: 2313 pixels an orbit; (2) 242 pixels an orbit just outside the
    simulator's strip are within 5 km of a CMB footprint; (3) where both have a value, the nearest footprint
    takes the reference of another GMI pixel at 30-43 of 12 387 pixels an orbit (0.24-0.35 %). The bound on (3)
    is that measured rate (< 0.4 %); on the remaining pixels the histograms must agree bin for bin."""
    syn = CB.build_cube(env.orbits, ["reference"], env.data / "synthetic.zarr", scheduler="inline",
                        n_scans=N_SCANS)
    from catalogs.simulator import simulate_orbit

    sw = _pairs(env)
    only_syn, only_arch, differ_syn, differ_arch, n_both = [], [], [], [], 0
    for o in env.orbits:
        a = sw[o]["surface_precip"].values.astype(np.float64)
        b = simulate_orbit(o, n_scans=N_SCANS)["surface_precip"].values.astype(np.float64)
        fa, fb = np.isfinite(a), np.isfinite(b)
        both = fa & fb
        diff = both & (a != b)
        only_syn.append(b[fb & ~fa])
        only_arch.append(a[fa & ~fb])
        differ_syn.append(b[diff])
        differ_arch.append(a[diff])
        n_both += both.sum()
    n_diff = sum(x.size for x in differ_syn)
    assert 0 < n_diff / n_both < 0.004, n_diff / n_both
    h_arch = CB.open_cube(env.path).histogram("reference").counts
    h_syn = CB.open_cube(syn).histogram("reference").counts
    cat = np.concatenate
    np.testing.assert_array_equal(h_arch - D.histogram(cat(only_arch)) - D.histogram(cat(differ_arch)),
                                  h_syn - D.histogram(cat(only_syn)) - D.histogram(cat(differ_syn)))
    # the differing pixels move at most 2 counts each: the L1 distance on the common pixels is bounded by that
    common = (h_arch - D.histogram(cat(only_arch))) - (h_syn - D.histogram(cat(only_syn)))
    assert np.abs(common).sum() <= 2 * n_diff
    # keyed apart: an archive build never adds to a synthetic cube (and the default paths differ)
    with pytest.raises(CB.CubeConfigMismatch, match="loader"):
        CB.build_archive_cube(env.root, ["reference"], syn, scheduler="inline")
    assert env.path not in (CB.default_cube_path(), CB.demo_cube_path(for_writing=True))


def _copy_archive(env, name):
    dest = env.data / name
    shutil.copytree(env.root, dest)
    return dest, archive_index(dest)


def test_bad_archives_give_clear_errors_and_write_no_cube(env, caplog):
    run = CliRunner().invoke
    # no 1C-GMI in the period
    cube = env.data / "empty.zarr"
    r = run(main, ["climatology", "build", "--archive", str(env.root), "--start", "2020-01-01", "--inline",
                   "--cube", str(cube)])
    assert r.exit_code != 0 and "no 1C-GMI granule" in r.output and "2020-01-01" in r.output
    assert not cube.exists() and not CB.partials_dir(cube).exists()
    # truth asked for; a folder outside the roots
    r = run(main, ["climatology", "build", "--archive", str(env.root), "--sources", "truth,reference", "--inline",
                   "--cube", str(cube)])
    assert r.exit_code != 0 and "no truth" in r.output and not cube.exists()
    with pytest.raises(PathOutsideRoots):
        CB.build_archive_cube(env.d, ["reference"], cube, scheduler="inline")
    for args, needle in ((["--start", "2019-13-01"], "--start: '2019-13-01' is not a date"),
                         (["--start", "2019-07-01", "--end", "2019-06-01"], "ends before it starts"),
                         (["--demo"], "do not apply"), (["--sources", "GPROF2017v2"], "no 2A-GMI granule of "
                                                                                      "'GPROF2017v2'"),
                         (["--cube", str(env.d / "elsewhere.zarr")], "outside the configured data roots")):
        r = run(main, ["climatology", "build", "--archive", str(env.root), "--inline", "--cube", str(cube), *args])
        assert r.exit_code != 0 and needle in r.output, (args, r.output)
        assert not cube.exists() and "Traceback" not in r.output
    # a CMB granule of another orbit under this orbit's name: the build stops naming it, no cube is written
    bad, idx = _copy_archive(env, "renamed")
    victim = Path(idx.loc[idx["orbit"] == env.orbits[1], "2B-CMB"].item())
    keep = victim.read_bytes()
    shutil.copyfile(idx.loc[idx["orbit"] == env.orbits[0], "2B-CMB"].item(), victim)
    cube = env.data / "renamed.zarr"
    with pytest.raises(gpm.GranuleError, match=f"{victim.name}: the file name says orbit {env.orbits[1]} but its "
                                               f"FileHeader says GranuleNumber={env.orbits[0]:06d}"):
        CB.build_archive_cube(bad, ["reference"], cube, scheduler="inline")
    assert not cube.exists() and not is_complete(cube)
    r = run(main, ["climatology", "build", "--archive", str(bad), "--sources", "reference", "--inline",
                   "--cube", str(cube)])
    assert r.exit_code != 0 and victim.name in r.output and "Traceback" not in r.output and not cube.exists()
    victim.write_bytes(keep)  # fixed: the rerun completes (the finished orbit's partial is reused)
    CB.build_archive_cube(bad, ["reference"], cube, scheduler="inline")
    np.testing.assert_array_equal(CB.open_cube(cube).histogram("reference").counts,
                                  CB.open_cube(env.path).histogram("reference").counts)
    # a 2A-GMI granule of another swath under this orbit's name
    g0 = Path(idx.loc[idx["orbit"] == env.orbits[0], "2A-GMI"].item())
    shutil.copyfile(idx.loc[idx["orbit"] == env.orbits[1], "2A-GMI"].item(), g0)
    cube2 = env.data / "renamed-gprof.zarr"
    with pytest.raises(gpm.GranuleError, match=f"{g0.name}: its S1 grid does not match"):
        CB.build_archive_cube(bad, ["reference", "gprof"], cube2, scheduler="inline")
    assert not cube2.exists()
    # an orbit without its CMB granule: skipped (every source), with a warning counted in the ledger
    holey, idx = _copy_archive(env, "holey")
    Path(idx.loc[idx["orbit"] == env.orbits[2], "2B-CMB"].item()).unlink()
    cube3 = env.data / "holey.zarr"
    with caplog.at_level(logging.WARNING, logger="evaluation.cube.archive"):
        CB.build_archive_cube(holey, ["reference", "gprof"], cube3, scheduler="inline")
    assert f"orbit {env.orbits[2]} skipped: no 2B-CMB granule" in caplog.text
    c = CB.open_cube(cube3)
    assert c.ledger["sources"]["reference"] == sorted(env.orbits[:2])
    assert c.describe()["archive"]["skipped"] == 1
    assert "no 2B-CMB" in c.ledger["archive"]["skipped"][str(env.orbits[2])]


def test_archive_cube_grows_by_period_and_answers_its_extra_region(env):
    """A first build on one orbit's period, then the rest by --orbits: one cube whose ledger and info follow; a box
    is answered when built in (--extra-region), and refused with what to do when not (box cubes simulate orbits)."""
    run = CliRunner().invoke
    cube = env.data / "grow.zarr"
    box = "bbox:-180,-60,180,60"
    first = env.index.iloc[0]
    r = run(main, ["climatology", "build", "--archive", str(env.root), "--start", str(first["start"]), "--end",
                   str(first["end"]), "--sources", "reference", "--extra-region", box, "--inline", "--cube", str(cube)])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output[r.output.index("{"):])
    assert d["archive"]["orbits"] == 1 and d["archive"]["period"] == [str(first["start"]), str(first["end"])]
    r = run(main, ["climatology", "build", "--archive", str(env.root), "--orbits", ",".join(map(str, env.orbits)),
                   "--sources", "reference", "--extra-region", box, "--inline", "--cube", str(cube)])
    assert r.exit_code == 0, r.output
    c = CB.open_cube(cube)
    assert c.describe()["archive"]["orbits"] == 3 and c.ledger["sources"]["reference"] == sorted(env.orbits)
    np.testing.assert_array_equal(c.histogram("reference").counts,
                                  CB.open_cube(env.path).histogram("reference").counts)
    r = run(main, ["evaluate", "--cube", str(cube), "--region", box, "--no-extremes", "--json"])
    assert r.exit_code == 0, r.output
    assert 0 < json.loads(r.output)["distributions"]["strip"]["reference"]["n"] <= c.histogram("reference").n
    r = run(main, ["evaluate", "--cube", str(env.path), "--region", "bbox:0,0,10,10", "--no-extremes"])
    assert r.exit_code != 0 and "--extra-region bbox:0,0,10,10" in r.output and "Traceback" not in r.output


def test_reprocessed_archive_is_a_stale_source(env):
    """The sources are identified by the product versions they come from: after the CMB granules change version
    the build refuses to mix them, says what to run, and --replace-stale rebuilds."""
    arch, idx = _copy_archive(env, "reprocessed")
    cube = env.data / "reprocessed.zarr"
    CB.build_archive_cube(arch, ["reference"], cube, orbits=env.orbits[:2], scheduler="inline")
    for p in idx["2B-CMB"]:
        Path(p).rename(Path(p).with_name(Path(p).name.replace(".V07A.", ".V07B.")))
    with pytest.raises(CB.StaleSource, match=r"CORRA2022 V07A.*\n.*--archive DIR --sources reference"):
        CB.build_archive_cube(arch, ["reference"], cube, orbits=env.orbits[:2], scheduler="inline")
    assert CB.open_cube(cube).identity("reference")["reference"] == "2B-CMB CORRA2022 V07A"
    CB.build_archive_cube(arch, ["reference"], cube, orbits=env.orbits[:2], scheduler="inline", replace_stale=True)
    c = CB.open_cube(cube)
    assert c.identity("reference")["reference"] == "2B-CMB CORRA2022 V07B"
    assert c.ledger["archive"]["orbits"][str(env.orbits[0])]["2B-CMB"].endswith(".V07B.HDF5")

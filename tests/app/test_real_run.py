"""Run on demand on a real granule in the app (issue 16, items 4 and 5).

The granules: synthetic orbits written as full-size V07 1C-GMI files (:mod:`catalogs.pps`, read
by gpm-api as real files) in an archive folder that is a read root, and the real PPS cuts of
``../shared/fixtures/gpm`` (the 1C-GMI cut's Tb are all fill; the 2B-CMB cut's Tb are simulated).
The jobs run in a real inference worker process (:class:`app.jobs.JobManager`, process mode),
driven through :class:`app.jobs.RunControl` as a user's Run / Cancel does."""

from __future__ import annotations

import hashlib
import json
import shutil
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from app import data
from app.cli import main
from app.export import export_view
from app.jobs import JobManager, RunControl
from app.main import GranulePicker
from app.state import Selection
from app.swath import SwathMap, load, swath_layers
from catalogs import store
from catalogs.gpm import parse_granule_name
from catalogs.outputs import output_path
from catalogs.pps import write_1c_gmi
from catalogs.simulator import simulate_orbit
from models.registry import get_card
from tests.app_helpers import register_card
from tests.conftest import GPM_FIXTURES

MODEL = "unet-reference"
CUT_1C = "1C.GPM.GMI.XCAL2016-C.20140304-S175932-E193159.000079.V07A.HDF5"
CUT_CMB = "2B.GPM.DPRGMI.CORRA2022.20140308-S220950-E234217.000144.V07A.HDF5"
ORBIT = 20000


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _wait(pred, timeout=60.0):
    t0 = time.time()
    while not pred():
        if time.time() - t0 > timeout:
            raise AssertionError("timed out")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """A user's archive: orbit 20000 as a full-size 1C-GMI granule (gpm-api's folder layout), a
    64-scan 1C-GMI granule of orbit 20001, and the real 1C-GMI and 2B-CMB cuts."""
    root = tmp_path_factory.mktemp("archive")
    full = write_1c_gmi(simulate_orbit(ORBIT), root=root)
    small = write_1c_gmi(simulate_orbit(ORBIT + 1, n_scans=64), root=root)
    for name in (CUT_1C, CUT_CMB):
        shutil.copyfile(GPM_FIXTURES / name, root / name)
    return {"root": root, "full": full, "small": small, "cut": root / CUT_1C, "cmb": root / CUT_CMB}


@pytest.fixture
def roots(data_root, archive, monkeypatch):
    """The archive as the user's read root; no memo carried over from another test's data root."""
    monkeypatch.setenv("RAINCHECK_READ_ROOTS", str(archive["root"]))
    for memo in (data._swaths, data._outputs, data._geoms):
        memo.clear()
    return data_root


@pytest.fixture(scope="module")
def manager():
    """One inference worker process, as ``raincheck serve`` runs them (it gets each job's
    RAINCHECK_* variables with the job, so tests with their own data roots can share it)."""
    m = JobManager(max_workers=1, device="cpu", mode="process")
    yield m
    m.shutdown()


def _alerts(sm) -> str:
    return " | ".join(a.object for a in sm._alerts.objects)


def test_run_on_a_full_granule_lands_is_shared_and_cached(roots, archive, manager, tmp_path):
    path = archive["full"]
    sel = Selection(source="real", granule=str(path), models=[MODEL], layers=["Tb"])
    rc = RunControl(sel, manager=manager)
    sm = SwathMap(selection=sel)
    rc.param.watch(lambda e: sm.param.trigger("refresh"), "landed")
    assert sm.swath.sizes["along_track"] > 2900 and sm.swath.sizes["cross_track"] == 221  # full size
    assert f"model {MODEL} has no output for {path.name} yet" in _alerts(sm)
    note = f"{MODEL} was trained on synthetic Tb; this granule is real PPS 1C-GMI: outside its training domain"
    assert note in _alerts(sm)
    run, cancel, bar, text = rc._widgets[MODEL]
    run.clicks += 1  # press Run
    job = manager.get_granule(MODEL, _sha256(path))
    assert job is not None and job.granule == str(path)
    manager.wait(job, timeout=120)
    rc.poll()
    assert job.status == "done", job.error
    assert not job.cache_hit and "computed" in text.object and "1C-GMI granule of orbit 20000" in text.object
    # stored where `raincheck infer --granule` stores it: model checkpoint + the file's content
    want = output_path(MODEL, get_card(MODEL).checkpoint_sha256, ORBIT, "pps-1C-GMI", _sha256(path))
    assert job.result == str(want) and store.is_complete(want)
    assert [lay.key for lay in sm.layers.layers] == ["tb", f"{MODEL}:precip_mean"]  # the map refreshed
    out = store.open_dataset(want)
    ok = np.isfinite(out["precip_mean"].values)
    assert ok.mean() > 0.9
    ood = out["ood_score"].values
    # the note now says how much of the granule lies outside the training domain
    assert f"(OOD score above 0.95 on {100 * np.mean(ood[ok] > 0.95):.0f} % of its pixels)" in _alerts(sm)
    assert out["ood_score"].attrs["units"] == "1" and out["ood_score"].attrs["detector"] == "flow-residual"
    assert np.array_equal(np.isfinite(ood), ok)  # finite exactly where there is a retrieval
    assert ((ood[ok] >= 0) & (ood[ok] <= 1)).all()
    sel.product = "ood_score"
    lay = next(lay for lay in sm.layers.layers if lay.model == MODEL)
    assert lay.key == f"{MODEL}:ood_score" and lay.unit == "1" and lay.clim == (0.0, 1.0)
    # the pixel's predicted distribution comes from the granule's output
    i, j = 1500, 110
    sm.pixel = (i, j)
    sm._show_pixel()
    assert f"{out['precip_mean'].values[i, j]:.2f}" in sm._pixel_info.object

    # a second session, with the same file under another path: same job (keyed by content), same store
    other = roots / "copy"  # under the data root: another path, the same content
    other.mkdir()
    shutil.copyfile(path, other / path.name)
    sel2 = Selection(source="real", granule=str(other / path.name), models=[MODEL], layers=["Tb"])
    rc2 = RunControl(sel2, manager=manager)
    assert rc2._job(MODEL) is job and rc2._stored[MODEL]
    assert "computed" in rc2._widgets[MODEL][3].object
    assert [lay.key for lay in load(sel2)[2].layers] == ["tb", f"{MODEL}:precip_mean"]
    # Run again: a cache hit; and the command line finds the app's result
    job2 = rc2.run(MODEL)
    manager.wait(job2, timeout=60)
    assert job2 is not job and job2.status == "done" and job2.cache_hit and job2.result == str(want)
    r = CliRunner().invoke(main, ["infer", "--model", MODEL, "--granule", str(other / path.name)])
    assert r.exit_code == 0 and f"cache hit: {want}" in r.output, r.output

    # export of the swath view: figure, data and a manifest naming the granule's content
    x0, x1, y0, y1 = sm.geom.extent
    res = export_view("swath", sel, "png", tmp_path / "export",
                      view_range={"x_range": (x0, x0 + 0.1 * (x1 - x0)), "y_range": (y0, y1)})
    man = json.loads(res.manifest.read_text())
    assert man["granule_sha256"] == _sha256(path) and man["training_domain"] == {MODEL: "synthetic"}
    assert any(note in n for n in man["notes"]) and res.figure.stat().st_size > 10_000
    import xarray as xr

    with xr.open_dataset(res.data) as exported:
        assert "unet_reference_ood_score" in exported and exported["unet_reference_ood_score"].attrs["units"] == "1"


def test_cancel_a_run_on_a_full_granule(roots, archive, manager):
    path = archive["full"]
    model = "flow-residual"  # ten members of eight flow steps per pixel: long enough to cancel
    sel = Selection(source="real", granule=str(path), models=[model])
    rc = RunControl(sel, manager=manager)
    job = rc.run(model)
    _wait(lambda: job.status == "running" and (job.done > 0 or job.message.startswith("loading")))
    rc.cancel(model)
    manager.wait(job, timeout=60)
    rc.poll()
    assert job.status == "cancelled", (job.status, job.error)
    assert not store.is_complete(data.granule_output_path(model, data.real_granule(str(path))))
    run, cancel, bar, text = rc._widgets[model]
    assert "cancelled" in text.object and not run.disabled and cancel.disabled


def test_refusals_say_why(roots, archive, manager):
    # a 2B-CMB: its Tb are simulated; the map still shows it, no model runs on it
    sel = Selection(source="real", granule=str(archive["cmb"]), models=[MODEL], layers=["reference"])
    rc = RunControl(sel, manager=manager)
    assert not rc._controls and "simulated" in rc._rows.objects[0].object
    assert rc.run(MODEL) is None and manager.get_granule(MODEL, _sha256(archive["cmb"])) is None
    sl = load(sel)[2]
    assert [lay.key for lay in sl.layers] == ["reference"] and any("simulated" in n for n in sl.notes)
    # a path outside the data roots: refused before anything is read
    sel.granule = str(GPM_FIXTURES / CUT_1C)
    assert not rc._controls and "outside the configured data roots" in rc._rows.objects[0].object
    # not a granule's file name
    sel.granule = str(roots / "notes.txt")
    assert not rc._controls and "not a GPM granule file name" in rc._rows.objects[0].object
    # the real 1C-GMI cut: a real file whose Tb are all fill; the job fails and says so
    sel.granule = str(archive["cut"])
    assert list(rc._controls) == [MODEL]
    job = rc.run(MODEL)
    manager.wait(job, timeout=60)
    rc.poll()
    assert job.status == "failed" and "no valid brightness temperatures" in job.error
    assert "no valid brightness temperatures" in rc._widgets[MODEL][3].object


def test_domain_note_only_off_the_training_domain(roots, archive):
    g = data.real_granule(str(archive["small"]))
    assert data.training_domain(MODEL) == "synthetic"
    note = data.domain_note(MODEL, g.product)
    assert note.startswith(f"{MODEL} was trained on synthetic Tb") and "see the OOD score" in note
    real = swath_layers(data.load_swath(None, granule=str(archive["small"])),
                        Selection(source="real", granule=str(archive["small"]), models=[MODEL], layers=[]))
    assert note in real.notes
    synth = load(Selection(source="synthetic", orbit=ORBIT, models=[MODEL], layers=[]))[2]
    assert not any("trained on synthetic" in n for n in synth.notes)
    # a model whose card says it was trained on an archive: no note (a card's training_data, and an
    # older card with only its config's data section naming an archive)
    from models.registry import ModelCard, load_config, user_models_dir

    archive_cfg = load_config("archive-tiny")
    for name, cfg, trained in (("arch-a", {}, {"kind": "archive", "granule_dir": "archive", "reference": "2B-CMB"}),
                               ("arch-b", archive_cfg, {})):
        folder = user_models_dir() / name
        folder.mkdir(parents=True)
        ModelCard(name=name, kind="unet", config=cfg, checkpoint_sha256="cd" * 32, levels=[0.5],
                  training_data=trained).save(folder)
        assert data.training_domain(name) == "archive" and data.domain_note(name) is None
    register_card("synth-c", "ef" * 32)
    assert data.training_domain("synth-c") == "synthetic" and data.domain_note("synth-c")


def test_ood_score_is_the_detectors_mahalanobis_distance(roots, archive):
    """The stored ``ood_score`` against an independent computation: numpy's squared Mahalanobis
    distance of the detector's encoder features, through its calibration table; and on this
    synthetic (training-like) orbit most pixels score below 0.95."""
    from models.granule_run import run_granule
    from models.inference import invalid_tb_mask
    from models.registry import load_model
    from models.research.ood import encoder_features

    path = archive["small"]
    p = run_granule(MODEL, str(path), device="cpu")  # what the worker runs
    out = store.open_dataset(p)
    score = out["ood_score"].values.astype(np.float64)
    det = load_model("flow-residual")
    sw = data.load_swath(None, granule=str(path))
    tc = np.asarray(sw["Tc"].transpose("along_track", "cross_track", "pmw_frequency").values, np.float32)
    bad = invalid_tb_mask(tc)
    a, c = tc.shape[:2]
    m = det.base.multiple
    x = np.full((-(-a // m) * m, -(-c // m) * m, 13), np.nan, np.float32)
    x[:a, :c] = np.where(bad[..., None], np.nan, tc)
    with torch.no_grad():
        f = encoder_features(det.base, torch.from_numpy(x).permute(2, 0, 1)[None])[0, :, :a, :c].numpy()
    mu = det.ood.mean.numpy().astype(np.float64)
    prec = det.ood.precision.numpy().astype(np.float64)
    z = f.reshape(f.shape[0], -1).T.astype(np.float64) - mu
    d2 = np.maximum(np.einsum("nd,de,ne->n", z, prec, z), 1e-12).reshape(a, c)
    calib = det.ood.pixel_calib
    want = np.interp(np.log(d2), calib, np.linspace(0, 1, calib.size), left=0.0, right=1.0)
    ok = np.isfinite(out["precip_mean"].values)
    assert ok.sum() > 0.9 * ok.size and np.array_equal(np.isfinite(score), ok)
    assert np.abs(score[ok] - want[ok]).max() < 1e-4
    # training-like data: the calibration puts 5 % of in-distribution pixels above 0.95
    assert np.median(score[ok]) < 0.8 and (score[ok] > 0.95).mean() < 0.2


def test_granule_picker_lists_the_archive_by_period_and_region(roots, archive):
    info = parse_granule_name(archive["full"])
    day = info.start.date().isoformat()
    sel = Selection(source="real", pick_start=day, pick_end=f"{info.start.year + 1}-01-01", region="global")
    picker = GranulePicker(selection=sel)
    df = picker.search()
    names = [p.rsplit("/", 1)[-1] for p in df["path"]]
    # 1C-GMI only (no 2B-CMB), in the period (not orbit 79 of 2014)
    assert sorted(names) == sorted([archive["full"].name, archive["small"].name])
    assert picker.found.visible and not any(str(archive["root"]) in k for k in picker.found.options)
    assert sel.granule == str(picker.found.value) == str(archive["full"])  # the first listed is picked
    # a region: a box around a pixel of the full granule finds it, not the 64 scans of the next orbit
    full = data.load_swath(None, granule=str(archive["full"]))
    lat, lon = float(full["lat"].values[1000, 110]), float(full["lon"].values[1000, 110])
    sel.region = f"bbox:{lon - 1:.2f},{lat - 1:.2f},{lon + 1:.2f},{lat + 1:.2f}"
    df = picker.search()
    assert list(df["orbit"]) == [ORBIT] and 0 < df["coverage"].iloc[0] < 0.1
    # a box on those 64 scans finds only them, and picking it makes it the selection's granule
    small = data.load_swath(None, granule=str(archive["small"]))
    lat, lon = float(small["lat"].values[32, 110]), float(small["lon"].values[32, 110])
    sel.region = f"bbox:{lon - 0.5:.2f},{lat - 0.5:.2f},{lon + 0.5:.2f},{lat + 0.5:.2f}"
    assert list(picker.search()["orbit"]) == [ORBIT + 1]
    assert sel.granule == str(archive["small"])
    sel.pick_start, sel.pick_end = "2014-03-01", "2014-03-02"
    picker.search()
    assert not picker.found.visible and "no 1C-GMI granule crossed" in picker.message.object


def test_a_1c_granule_shows_its_orbits_cmb_as_the_reference(roots, archive, tmp_path):
    """The map of a 1C-GMI granule whose orbit has a 2B-CMB granule in the archive tree (inside the
    roots) has the CMB reference collocated on its pixels; one without shows no reference."""
    from catalogs.pps import write_2b_cmb

    sw = simulate_orbit(ORBIT + 1, n_scans=64)
    write_2b_cmb(sw, root=archive["root"])
    try:
        sel = Selection(source="real", granule=str(archive["small"]), layers=["Tb", "reference"])
        ds, _, sl = load(sel)
        ref = next(layer for layer in sl.layers if layer.key == "reference")
        assert ref.title == "Reference (2B-CMB collocated)"
        got, want = ds["surface_precip"].values, sw["surface_precip"].values
        both = np.isfinite(got) & np.isfinite(want)
        assert both.sum() > 500 and np.mean(got[both] == want[both]) > 0.99
        full, _, sl_full = load(Selection(source="real", granule=str(archive["full"]), layers=["reference"]))
        assert "surface_precip" not in full and not any(layer.key == "reference" for layer in sl_full.layers)
    finally:
        for p in archive["root"].rglob("2B.GPM.DPRGMI.*.020001.*"):
            p.unlink()

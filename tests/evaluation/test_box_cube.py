"""Box cubes: a box the climatology cube does not hold is computed on demand (the cube's orbits
that cross it, each source on the orbits the cube used for it) and then answers every view;
the build is a shared, cancellable, resumable background job behind a "Compute this box" button."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest

from app.state import Selection
from tests.app_helpers import cube_model, small_cube

BOX = "bbox:85,-62,110,-48"  # crossed by 2 of the 4 orbits' first 300 scans (2015-2016, Jan/Jul)
FNS = {"unit-model": cube_model}
SOURCES = ("truth", "truth_strip", "reference", "unit-model", "unit-model@strip")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("box-root")
    mp.setenv("RAINCHECK_DATA_ROOT", str(root))
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def main(root):
    return str(small_cube(root / "main.zarr", years=(2015, 2016)))


@pytest.fixture(scope="module")
def direct(root, main):
    """The main cube's orbits and sources built directly with the box as an extra region."""
    from evaluation import cube as CB

    orbits = CB.open_cube(main).ledger["sources"]["truth"]
    return CB.open_cube(CB.build_cube(orbits, ["truth", "reference", "unit-model"], root / "direct.zarr",
                                      scheduler="inline", n_scans=300, model_fns=FNS, extra_regions=[BOX],
                                      skill_extra=True))


def _same_box(a, b, spec=BOX):
    for s in SOURCES:
        ha, hb = a.histogram(s, spec), b.histogram(s, spec)
        assert ha["n"] > 0, s
        np.testing.assert_array_equal(ha["counts"], hb["counts"], err_msg=s)
        assert ha["total"] == pytest.approx(hb["total"], rel=1e-12)
    for m, against in (("unit-model", "reference"), ("unit-model", "truth"), ("reference", "truth")):
        sa, sb = a.skill(m, against, spec), b.skill(m, against, spec)
        assert sa["n"] == sb["n"] > 0 and sa["bias_pct"] == pytest.approx(sb["bias_pct"])


def test_orbits_near_box_keeps_every_orbit_that_crosses():
    from catalogs.orbits import orbits_near_box
    from catalogs.simulator import geometry as geo
    from evaluation.regions import get_region

    orbits = np.random.default_rng(3).integers(*geo.ORBIT_RANGE, 16)
    geoms = {int(o): geo.swath_geometry(int(o), 1200) for o in orbits}
    kept_total = 0
    for spec in (BOX, "bbox:170,-5,-170,5", "bbox:-10,60,5,66", "bbox:0,0,1,1"):
        r = get_region(spec)
        near = set(orbits_near_box(orbits, r.params, n_scans=1200).tolist())
        hits = {o for o, g in geoms.items() if r.mask(g["lat"], g["lon"]).any()}
        assert hits <= near, spec
        kept_total += len(near)
    assert kept_total < 4 * len(orbits)  # and it does leave orbits out


def test_box_cube_answers_like_a_direct_build(root, main, direct, tmp_path):
    from app.views import distributions, scores
    from evaluation import cube as CB
    from evaluation import boxes as BX

    c = CB.open_cube(main)
    plan = BX.box_plan(BOX, c, model_fns=FNS)
    assert [g["sources"] for g in plan["groups"]] == [["truth", "reference"], ["unit-model"]]
    assert plan["orbits"] == 2 and all(g["of"] == 4 for g in plan["groups"]) and not plan["skipped"]
    assert plan["path"] == str(BX.box_cube_path(BOX, c)) and plan["path"].startswith(str(root / "cubes" / "box-"))
    assert BX.box_plan(BOX, c)["skipped"].keys() == {"unit-model"}  # without its function: said, not failed
    steps = []
    path = BX.build_box_cube(BOX, main, model_fns=FNS, progress=lambda *a: steps.append(a))
    assert steps[-1][0] == steps[-1][1] and BX.box_complete(plan)
    box = CB.open_cube(path)
    assert box.regions[-1] == BOX and sorted(box.ledger["sources"]["truth"]) == plan["groups"][0]["orbits"]
    _same_box(box, direct)
    assert BX.box_info(path)["spec"] == BOX

    # the views answer the box from it: the same counts as the direct build
    s = Selection(region=BOX, models=["unit-model"], start_year=2015, end_year=2016)
    res = distributions.compute(s, main)
    assert res["cube"] == str(path) and res["box"]["spec"] == BOX
    want = direct.histogram("reference", BOX, period="2015-2016")["n"]
    assert res["table"].query("source == 'reference (strip)'")["pixels"].iloc[0] == want
    assert any("answered from its box cube" in n for n in res["notes"])
    sc = scores.compute(s, main)
    assert set(sc["table"].model) == {"unit-model", "reference"}
    prov = distributions.provenance(res, "distributions")
    assert prov["cube"] == str(path) and prov["box_cube"]["main_cube"] == main

    # exports too, with provenance naming the box cube and the cube it completes
    from app.export import export_view

    r = export_view("extremes", s, "svg", tmp_path, cube_path=main)
    man = json.loads(r.manifest.read_text())
    assert man["cube"] == str(path) and man["region"] == BOX
    assert man["box_cube"]["path"] == str(path) and man["box_cube"]["main_cube"] == main
    assert man["box_cube"]["orbits"] == 2


def test_box_job_is_shared_cancellable_and_resumes(root, main, direct):
    from app.boxjobs import BoxJobManager
    from evaluation import cube as CB
    from evaluation import boxes as BX

    plan = BX.box_plan(BOX, CB.open_cube(main), model_fns=FNS, path=root / "job-box.zarr")
    holding = threading.Event()
    release = threading.Event()

    def builder(*a, progress=None, **kw):
        def prog(done, total, message=""):
            progress(done, total, message)
            if done >= 1 and not release.is_set():  # one orbit done: hold until the test cancels
                holding.set()
                release.wait(60)
        return BX.build_box_cube(*a, progress=prog, **kw)

    mgr = BoxJobManager(builder=builder, model_fns=FNS)  # a closure: runs in a thread of this process
    assert mgr.mode == "thread"
    a = mgr.submit(plan)
    b = mgr.submit(dict(plan))  # a second session asking for the same box
    assert a is b
    assert holding.wait(60) and a.status == "running" and 0 < a.fraction < 1
    assert mgr.cancel(plan["path"])
    release.set()
    mgr.wait(a, 60)
    assert a.status == "cancelled" and "resumes" in a.describe()
    assert not BX.box_complete(plan)
    kept = list(CB.partials_dir(plan["path"]).glob("o*.npz")) + [p for p in [plan["path"]] if CB.is_complete(p)]
    assert kept  # the finished orbit is kept
    c = mgr.submit(plan)
    assert c is not a
    mgr.wait(c, 120)
    assert c.status == "done", c.error
    _same_box(CB.open_cube(plan["path"]), direct)
    mgr.shutdown()


def test_views_offer_compute_for_an_uncovered_box(root, main, direct):
    from app import boxjobs
    from app.views import make_views
    from evaluation import cube as CB
    from evaluation import boxes as BX

    spec = "bbox:84,-63,111,-47"  # not built yet
    mgr = boxjobs.BoxJobManager(model_fns=FNS)
    boxjobs.set_box_manager(mgr)
    try:
        s = Selection(region=spec, models=["unit-model"], start_year=2015, end_year=2016, view="distributions")
        views = make_views(s, cube_path=main)
        v = views["distributions"]
        alert = v._alerts.objects[0]
        assert alert.alert_type == "info" and "not in this climatology cube" in alert.object
        ctl = v.box_control
        assert isinstance(ctl, boxjobs.BoxControl) and v._body.objects
        assert ctl.button.label.startswith("Compute this box (2 orbits, about ")
        for name in ("extremes", "trends", "scores"):  # every view offers it
            s.view = name
            w = views[name]
            assert w.result is None and w.box_control.plan["spec"] == spec, name
            assert w._alerts.objects[0].alert_type == "info", name
        s.view = "distributions"  # shown again: the view looks again (a new control)
        ctl = v.box_control
        assert mgr.mode == "process"
        job = ctl.run()
        assert ctl.button.disabled and ctl.bar.visible
        mgr.wait(job, 120)
        ctl.poll()  # what the periodic callback does
        assert job.status == "done", job.error
        assert job.info["pid"] != os.getpid()  # built in a worker process, not in the server
        assert v.result is not None and v.result["cube"] == str(BX.box_cube_path(spec, CB.open_cube(main)))
        assert v._alerts.objects[0].alert_type != "info"
        assert v.result["table"]["pixels"].min() > 0
        s.view = "scores"  # the other views answer from it too
        assert views["scores"].result is not None and len(views["scores"].result["table"])
    finally:
        boxjobs.set_box_manager(None)
        mgr.shutdown()


def test_cli_build_box(root, main):
    from click.testing import CliRunner

    from app.cli import main as cli

    r = CliRunner().invoke(cli, ["climatology", "build-box", BOX, "--cube", main, "--plan"])
    assert r.exit_code == 0, r.output
    assert '"orbits": 2' in r.output and "unit-model" in r.output  # not included: a custom function
    r = CliRunner().invoke(cli, ["climatology", "build-box", "WAF", "--cube", main])
    assert r.exit_code != 0 and "box region" in r.output
    # once built (test above), evaluate and trends answer the box from its box cube
    from evaluation import cube as CB
    from evaluation import boxes as BX

    box_path = str(BX.box_cube_path(BOX, CB.open_cube(main)))
    assert CB.is_complete(box_path)
    r = CliRunner().invoke(cli, ["evaluate", "--region", BOX, "--cube", main, "--no-extremes", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["cube"]["path"] == box_path
    r = CliRunner().invoke(cli, ["trends", "--region", BOX, "--cube", main, "--source", "reference", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["cube"]["path"] == box_path

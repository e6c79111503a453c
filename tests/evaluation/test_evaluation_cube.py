"""The climatology cube: agreement with independent histograms, exact merging (order and
chunking), antimeridian regions, interrupted builds that resume exactly, models added later,
the dask path, and query speed."""

from __future__ import annotations


import numpy as np
import pytest
import scipy.stats
import xarray as xr

from catalogs.simulator import geometry, simulate_orbit
from evaluation import cube as CB
from evaluation import distributions as D
from evaluation import regions as RG

N_SCANS = 240


def _orbits(n, start="2016-01-31T20:00"):
    o0 = geometry.orbit_at_time(np.datetime64(start))
    return [o0 + k for k in range(n)]  # straddles a month boundary


def _crossing_orbits(n=2):
    out = []
    o = geometry.orbit_at_time(np.datetime64("2019-03-01"))
    while len(out) < n:
        g = geometry.swath_geometry(o, N_SCANS)
        lon = g["lon"]
        if np.any(lon > 175) and np.any(lon < -175):
            out.append(o)
        o += 1
    return out


LEVELS = np.array([0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99])


def fake_model(swath: xr.Dataset) -> xr.Dataset:
    """A 'retrieval' that spreads a lognormal around the truth (independent of the models work)."""
    t = swath["surface_precip_truth"].values.astype(np.float64)
    z = scipy.stats.norm.ppf(LEVELS)
    q = (t[..., None] * np.exp(0.4 * z)).astype(np.float32)
    mean = (t * np.exp(0.08)).astype(np.float32)
    return xr.Dataset({"precip_quantiles": (("along_track", "cross_track", "quantile"), q),
                       "precip_mean": (("along_track", "cross_track"), mean)},
                      coords={"quantile": LEVELS})


def build(tmp_path, orbits, name="c.zarr", **kw):
    kw.setdefault("sources", ["truth", "reference"])
    kw.setdefault("scheduler", "inline")
    return CB.build_cube(orbits, path=tmp_path / name, n_scans=N_SCANS, **kw)


def arrays(path):
    c = CB.open_cube(path)
    ds = c.ds.load()
    return ds, c


@pytest.fixture(scope="module")
def reference_cube(tmp_path_factory):
    d = tmp_path_factory.mktemp("cube")
    orbits = _orbits(4) + _crossing_orbits(2)
    p = CB.build_cube(orbits, ["truth", "reference"], d / "ref.zarr", scheduler="inline", n_scans=N_SCANS,
                      extra_regions=["bbox:170,-70,-170,-45"])
    return orbits, p


def test_cube_matches_independent_histograms(reference_cube):
    orbits, p = reference_cube
    c = CB.open_cube(p)
    truth, ref, lat, lon, months = [], [], [], [], []
    for o in orbits:
        ds = simulate_orbit(o, n_scans=N_SCANS)
        truth.append(ds["surface_precip_truth"].values.ravel())
        ref.append(ds["surface_precip"].values.ravel())
        lat.append(ds["lat"].values.ravel())
        lon.append(ds["lon"].values.ravel())
        months.append(np.repeat(ds["time"].values.astype("datetime64[M]"), ds.sizes["cross_track"]))
    truth, ref, lat, lon, months = map(np.concatenate, (truth, ref, lat, lon, months))
    h = c.histogram("truth", "global")
    np.testing.assert_array_equal(h["counts"], D.histogram(truth))
    assert h["total"] == pytest.approx(np.sum(truth.astype(np.float64)), rel=1e-12)
    assert h["n"] == truth.size
    hr = c.histogram("reference")
    np.testing.assert_array_equal(hr["counts"], D.histogram(ref))
    hs = c.histogram("truth_strip")
    np.testing.assert_array_equal(hs["counts"], D.histogram(np.where(np.isfinite(ref), truth, np.nan)))
    # per AR6 region (gather lookup) and per month
    ids = RG.ar6_lookup(lat, lon)
    for abbrev in ("EPO", "SPO", "SOO", "NPO"):
        num = RG.get_region(abbrev).params[0]
        sel = ids == num
        np.testing.assert_array_equal(c.histogram("truth", abbrev)["counts"], D.histogram(truth[sel]))
    jan = months == np.datetime64("2016-01")
    np.testing.assert_array_equal(c.histogram("truth", period="2016-01:2016-01")["counts"], D.histogram(truth[jan]))
    # latitude bands and land/ocean from the surface dim
    band = (lat >= -30) & (lat < 30)
    np.testing.assert_array_equal(c.histogram("truth", "lat:-30:30")["counts"], D.histogram(truth[band]))
    with pytest.raises(CB.RegionNotInCube):
        c.histogram("truth", "lat:-35:30")


def test_antimeridian_in_cube(reference_cube):
    orbits, p = reference_cube
    c = CB.open_cube(p)
    crossing = orbits[-2:]
    lat = np.concatenate([simulate_orbit(o, n_scans=N_SCANS)["lat"].values.ravel() for o in orbits])
    lon = np.concatenate([simulate_orbit(o, n_scans=N_SCANS)["lon"].values.ravel() for o in orbits])
    truth = np.concatenate([simulate_orbit(o, n_scans=N_SCANS)["surface_precip_truth"].values.ravel() for o in orbits])
    assert any(np.any(simulate_orbit(o, n_scans=N_SCANS)["lon"].values > 175) for o in crossing)
    box = RG.get_region("bbox:170,-70,-170,-45")
    inside = box.mask(lat, lon)
    assert inside.sum() > 1000 and np.any(lon[inside] > 0) and np.any(lon[inside] < 0)
    np.testing.assert_array_equal(c.histogram("truth", "bbox:170,-70,-170,-45")["counts"], D.histogram(truth[inside]))
    # AR6 regions across the date line: the cube's lookup agrees with exact polygon tests to
    # within the pixels of one 0.25° cell along the borders
    for abbrev in ("SOO", "SPO"):
        exact = RG.get_region(abbrev).mask(lat, lon)
        n_cube = c.histogram("truth", abbrev)["n"]
        assert exact[(lon > 179) | (lon < -179)].any()
        assert n_cube == pytest.approx(exact.sum(), rel=0.01)


def test_merging_is_exact_under_order_and_chunking(tmp_path):
    orbits = _orbits(5)
    a = build(tmp_path, orbits, "a.zarr")
    b = build(tmp_path, orbits[::-1], "b.zarr")
    build(tmp_path, orbits[3:], "c.zarr")
    build(tmp_path, orbits[:1], "c.zarr")
    c = build(tmp_path, orbits[1:3], "c.zarr")
    da, ca = arrays(a)
    for other in (b, c):
        do, co = arrays(other)
        np.testing.assert_array_equal(da["count"].values, do["count"].sel(source=da["source"]).values)
        np.testing.assert_allclose(da["total"].values, do["total"].sel(source=da["source"]).values, rtol=1e-12)
        np.testing.assert_allclose(da["skill"].values, do["skill"].sel(pair=da["pair"]).values, rtol=1e-12, atol=1e-9)
        assert co.ledger["sources"] == ca.ledger["sources"]
    # re-running with the same orbits adds nothing
    before = da["count"].values.copy()
    build(tmp_path, orbits, "a.zarr")
    np.testing.assert_array_equal(arrays(a)[0]["count"].values, before)


def test_interrupted_build_resumes_exactly(tmp_path, monkeypatch):
    orbits = _orbits(5)
    full = build(tmp_path, orbits, "full.zarr")
    # 1) stopped after 2 orbits: partials kept, no cube yet
    with pytest.raises(CB.BuildCancelled):
        build(tmp_path, orbits, "r.zarr", max_tasks=2)
    parts = list(CB.partials_dir(tmp_path / "r.zarr").glob("o*.npz"))
    assert len(parts) == 2
    # 2) cancelled through the event after one more orbit
    import threading

    ev = threading.Event()
    computed = []

    def progress(done, total, msg):
        if msg.startswith("orbit"):
            computed.append(msg)
            ev.set()

    with pytest.raises(CB.BuildCancelled):
        build(tmp_path, orbits, "r.zarr", cancel=ev, progress=progress)
    assert len(computed) == 1  # the two finished orbits were not redone
    computed.pop()
    # 3) a crash while writing the merged cube leaves partials and no (or the old) cube
    real = CB._write_cube

    def crash(*a, **k):
        raise OSError("disk full")

    def count(d, t, m):
        if m.startswith("orbit"):
            computed.append(m)

    monkeypatch.setattr("evaluation.cube.build._write_cube", crash)  # the merge writes through it
    with pytest.raises(OSError):
        build(tmp_path, orbits, "r.zarr", progress=count)
    monkeypatch.setattr("evaluation.cube.build._write_cube", real)
    assert not (tmp_path / "r.zarr").exists()
    assert len(computed) == 2  # the two missing orbits were computed before the crash
    # 4) resume: nothing is recomputed, the result equals the uninterrupted build
    r = build(tmp_path, orbits, "r.zarr", progress=count)
    assert len(computed) == 2  # every orbit computed exactly once over all the runs: 2 + 1 + 2
    dr, cr = arrays(r)
    df, cf = arrays(full)
    np.testing.assert_array_equal(dr["count"].values, df["count"].values)
    np.testing.assert_allclose(dr["total"].values, df["total"].values, rtol=1e-12)
    assert cr.ledger["sources"] == cf.ledger["sources"]
    assert not list(CB.partials_dir(r).glob("o*.npz"))  # merged partials are removed


def test_partials_already_in_ledger_are_not_double_counted(tmp_path):
    orbits = _orbits(3)
    p = build(tmp_path, orbits, "d.zarr")
    before = arrays(p)[0]["count"].values.copy()
    # a crash after the cube write but before the partials were removed: put one back
    part = CB.orbit_partial(orbits[0], CB.expand_sources(["truth", "reference"]),
                            {"regions": CB.region_labels(), "n_scans": N_SCANS})
    CB.write_partial(part, CB.partials_dir(p))
    build(tmp_path, orbits, "d.zarr")
    np.testing.assert_array_equal(arrays(p)[0]["count"].values, before)


def test_models_added_incrementally_with_skill(tmp_path):
    orbits = _orbits(3)
    p = build(tmp_path, orbits, "m.zarr")
    before = arrays(p)[0]["count"].sel(source="truth").values.copy()
    build(tmp_path, orbits, "m.zarr", sources=["fake"], model_fns={"fake": fake_model})
    ds, c = arrays(p)
    assert {"fake", "fake@strip"} <= set(c.sources)
    np.testing.assert_array_equal(ds["count"].sel(source="truth").values, before)
    # the model's distribution: its precip_mean on every pixel
    vals = np.concatenate([fake_model(simulate_orbit(o, n_scans=N_SCANS))["precip_mean"].values.ravel()
                           for o in orbits])
    np.testing.assert_array_equal(c.histogram("fake")["counts"], D.histogram(vals))
    # skill against truth from the cube equals the array route on the same pixels
    from evaluation import skill as S

    truth = np.concatenate([simulate_orbit(o, n_scans=N_SCANS)["surface_precip_truth"].values.ravel() for o in orbits])
    sc = c.skill("fake", "truth")
    ar = S.continuous_scores(vals, truth)
    for k in ("bias_pct", "mae", "mse", "smape_pct"):
        assert sc[k] == pytest.approx(ar[k], rel=1e-9)
    assert sc["corr"] == pytest.approx(ar["corr"], rel=1e-6)
    assert sc["bias_pct"] == pytest.approx(100 * (np.exp(0.08) - 1), rel=1e-3)
    # a lognormal spread around the truth is calibrated: central-interval coverage ≈ nominal
    # on wet pixels (dry pixels are a point mass at 0 for both)
    assert 0 <= sc["coverage"]["0.8"] <= 1
    assert np.isfinite(sc["crps"]) and sc["n"] == truth.size
    sr = c.skill("fake", "reference")
    assert sr["n"] == np.isfinite(np.concatenate([simulate_orbit(o, n_scans=N_SCANS)["surface_precip"].values.ravel()
                                                   for o in orbits])).sum()
    assert "effective_resolution_km" in sr
    # a cube built with an older definition of PIT / coverage / coherence does not serve them
    assert c.skill_definitions == S.SKILL_DEFINITIONS and "notes" not in sr
    c.ds.attrs["skill_definitions"] = 1
    old = c.skill("fake", "reference")
    assert old["coverage"] == {} and old["pit_hist"] == [] and "effective_resolution_km" not in old
    assert "skill definitions 1" in old["notes"][0] and old["mae"] == sr["mae"]


def test_numba_and_numpy_paths_agree():
    ds = simulate_orbit(_orbits(1)[0], n_scans=N_SCANS)
    months, midx = np.unique(ds["time"].values.astype("datetime64[M]"), return_inverse=True)
    v = ds["surface_precip_truth"].values.copy()
    v[::7, ::5] = np.nan
    v[1, 1] = D.EDGES[11]  # exactly on an edge
    n_reg = len(CB.region_labels())
    a = CB.aggregate_orbit(v, ds["lat"].values, ds["lon"].values, ds["surface_type"].values, midx, months.size, n_reg,
                           use_numba=True)
    b = CB.aggregate_orbit(v, ds["lat"].values, ds["lon"].values, ds["surface_type"].values, midx, months.size, n_reg,
                           use_numba=False)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-12)
    assert a[0].sum() == 2 * np.isfinite(v).sum()


def test_cube_quantiles_and_queries_answer_from_a_fresh_open(reference_cube):
    # quantiles from the cube's histograms match the pixels' own; a freshly opened cube answers
    # every query kind (speed: benchmarks.bench_cube)
    orbits, p = reference_cube
    c = CB.open_cube(p)
    truth = np.concatenate([simulate_orbit(o, n_scans=N_SCANS)["surface_precip_truth"].values.ravel() for o in orbits])
    h = c.histogram("truth")
    for q in (0.99, 0.999):
        assert D.quantile_from_hist(h["counts"], q) == pytest.approx(np.quantile(truth, q), rel=0.03)
    c2 = CB.open_cube(p)
    for stat in ("mean", "wet_fraction", "q99", "q999", "exceed:10"):
        s = c2.series("truth", "global", stat, freq="month")
        assert len(s) > 0
    assert c2.histogram("truth", "global")["n"] == h["n"] == np.isfinite(truth).sum()
    c2.histogram("reference", "EPO", season="DJF")
    c2.skill("reference", "truth", "SPO")


def test_config_mismatch_is_refused(tmp_path):
    p = build(tmp_path, _orbits(1), "x.zarr")
    with pytest.raises(CB.CubeConfigMismatch):
        CB.build_cube(_orbits(2), ["truth"], p, scheduler="inline", n_scans=N_SCANS + 1)


@pytest.mark.slow
def test_dask_localcluster_build_equals_inline(tmp_path):
    orbits = _orbits(4)
    a = build(tmp_path, orbits, "inline.zarr")
    seen = []
    b = CB.build_cube(orbits, ["truth", "reference"], tmp_path / "dask.zarr", n_scans=N_SCANS, n_workers=2,
                      progress=lambda d, t, m: seen.append((d, t)))
    np.testing.assert_array_equal(arrays(a)[0]["count"].values, arrays(b)[0]["count"].values)
    assert seen[-1][0] == seen[-1][1] == 4


def test_export_to_netcdf_reads_the_same(reference_cube, tmp_path):
    orbits, p = reference_cube
    nc = CB.export_cube(p, tmp_path / "demo_cube.nc")
    a, b = CB.open_cube(p), CB.open_cube(nc)
    assert a.sources == b.sources and a.regions == b.regions and a.ledger == b.ledger
    for region in ("global", "SOO", "bbox:170,-70,-170,-45"):
        np.testing.assert_array_equal(a.histogram("truth", region)["counts"], b.histogram("truth", region)["counts"])
    assert a.skill("reference", "truth")["mae"] == pytest.approx(b.skill("reference", "truth")["mae"], rel=1e-12)


def test_record_orbits_start_in_their_month():
    orbits = CB.record_orbits(years=(1999, 2001), months=(1, 7), per_month=2)
    start = geometry.orbit_start_time(np.array(orbits))
    months = start.astype("datetime64[M]").astype(int) % 12 + 1
    assert months.tolist() == [1, 1, 7, 7] * 3
    assert len(set(orbits)) == len(orbits)


# -- source identities: a retrained model or a new simulator never mixes into a cube --------------
TINY_LEVELS = [0.01, 0.1, 0.5, 0.9, 0.99]


def register_tiny_unet(name="tiny-unet", seed=0):
    """A tiny random U-Net in the (test) user registry; another seed = a "retrained" checkpoint."""
    import torch

    from models.registry import ModelCard, save_model, user_models_dir
    from models.unet_retriever import build_unet

    cfg = {"name": name, "kind": "unet", "channels": "all", "quantile_levels": TINY_LEVELS,
           "network": {"base": 4, "depth": 1, "max_width": 8}, "inference": {"tile_scans": 64, "cpu_batch_tiles": 4}}
    torch.manual_seed(seed)
    net = build_unet(cfg)
    net.set_normalisation(np.full(13, 220.0), np.full(13, 40.0))
    with torch.no_grad():
        net.head.bias.uniform_(-1, 1)
    card = ModelCard(name=name, kind="unet", config=cfg, checkpoint_sha256="", levels=TINY_LEVELS)
    return save_model(user_models_dir() / name, net.state_dict(), card)


def _computed(monkeypatch):
    """Record (orbit, sources) of every orbit computed from here on (inline scheduler)."""
    seen = []
    real = CB.orbit_partial

    def spy(orbit, sources, cfg, **kw):
        seen.append((int(orbit), tuple(sources)))
        return real(orbit, sources, cfg, **kw)

    monkeypatch.setattr("evaluation.cube.build.orbit_partial", spy)  # what each orbit task calls
    return seen


def test_retrained_model_is_refused_then_replaced_exactly(tmp_path, data_root, monkeypatch):
    from click.testing import CliRunner

    from app.cli import main
    from catalogs.simulator import PRODUCT_VERSION, TRUTH_VERSION

    orbits = _orbits(3)
    old = register_tiny_unet(seed=0)
    p = build(tmp_path, orbits, "s.zarr")
    build(tmp_path, orbits[:2], "s.zarr", sources=["tiny-unet"])
    # an interrupted build with the old model left a partial of it for the third orbit
    part = CB.orbit_partial(orbits[2], CB.expand_sources(["tiny-unet"]), {"regions": CB.region_labels(),
                                                                          "n_scans": N_SCANS})
    assert part["identities"]["tiny-unet"]["checkpoint_sha256"] == old.checkpoint_sha256[:12]
    CB.write_partial(part, CB.partials_dir(p))
    c = CB.open_cube(p)
    assert c.identity("tiny-unet") == {"checkpoint_sha256": old.checkpoint_sha256[:12],
                                       "product_version": PRODUCT_VERSION}
    assert c.identity("tiny-unet@strip") == c.identity("tiny-unet")
    assert c.identity("truth") == c.identity("reference") == {"truth_version": TRUTH_VERSION}
    assert c.describe()["identities"]["tiny-unet"]["checkpoint_sha256"] == old.checkpoint_sha256[:12]
    from app.views.distributions import cube_model_provenance

    def provenance():  # what an exported cube view states about the model
        return cube_model_provenance({"cube": str(p), "models": ["tiny-unet"]})[0]

    assert provenance()["checkpoint_sha256"] == old.checkpoint_sha256 and "note" not in provenance()
    before = arrays(p)[0]
    truth_ledger = {s: c.ledger["sources"][s] for s in ("truth", "truth_strip", "reference")}

    new = register_tiny_unet(seed=1)  # "retrained": same name, another checkpoint
    assert new.checkpoint_sha256 != old.checkpoint_sha256
    seen = _computed(monkeypatch)
    with pytest.raises(CB.StaleSource, match="replace-stale") as e:
        build(tmp_path, orbits, "s.zarr", sources=["tiny-unet"])
    msg = str(e.value)
    assert "'tiny-unet'" in msg and old.checkpoint_sha256[:12] in msg and new.checkpoint_sha256[:12] in msg
    r = CliRunner().invoke(main, ["climatology", "build", "--orbits", ",".join(map(str, orbits)), "--sources",
                                  "tiny-unet", "--n-scans", str(N_SCANS), "--inline", "--cube", str(p)])
    assert r.exit_code != 0 and "--replace-stale" in r.output and new.checkpoint_sha256[:12] in r.output
    assert seen == [] and CB.open_cube(p).identity("tiny-unet")["checkpoint_sha256"] == old.checkpoint_sha256[:12]
    prov = provenance()  # the numbers still come from the old checkpoint: the manifest says so
    assert prov["checkpoint_sha256"] == old.checkpoint_sha256[:12]
    assert prov["registered_checkpoint_sha256"] == new.checkpoint_sha256 and "--replace-stale" in prov["note"]

    build(tmp_path, orbits, "s.zarr", sources=["tiny-unet"], replace_stale=True)
    # every orbit of the model recomputed (the stale partial was not reused), truth/reference not
    assert sorted(seen) == [(o, ("tiny-unet", "tiny-unet@strip")) for o in orbits]
    assert not list(CB.partials_dir(p).glob("o*.npz"))
    fresh = build(tmp_path, orbits, "fresh.zarr", sources=["truth", "reference", "tiny-unet"])
    (da, ca), (df, cf) = arrays(p), arrays(fresh)
    assert sorted(ca.sources) == sorted(cf.sources) and sorted(ca.ledger["pairs"]) == sorted(cf.ledger["pairs"])
    assert ca.ledger["sources"] == cf.ledger["sources"] and ca.ledger["pairs"] == cf.ledger["pairs"]
    assert ca.ledger["identities"] == cf.ledger["identities"]
    assert ca.identity("tiny-unet")["checkpoint_sha256"] == new.checkpoint_sha256[:12]
    assert provenance()["checkpoint_sha256"] == new.checkpoint_sha256 and "note" not in provenance()
    src, prs = cf.sources, [str(x) for x in df["pair"].values]
    np.testing.assert_array_equal(da["count"].sel(source=src).values, df["count"].values)
    np.testing.assert_allclose(da["total"].sel(source=src).values, df["total"].values, rtol=1e-12)
    np.testing.assert_allclose(da["skill"].sel(pair=prs).values, df["skill"].values, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(da["field_skill"].sel(pair=prs).values, df["field_skill"].values, rtol=1e-12)
    # truth and reference survived untouched
    for s in ("truth", "truth_strip", "reference"):
        np.testing.assert_array_equal(da["count"].sel(source=s).values, before["count"].sel(source=s).values)
        assert ca.ledger["sources"][s] == truth_ledger[s]
    # the model's numbers did change
    assert not np.array_equal(da["count"].sel(source="tiny-unet").values,
                              before["count"].sel(source="tiny-unet").values)


def _legacy_partial(orbit, sources, folder, **cfg):
    """A partial as written before identities were recorded."""
    part = CB.orbit_partial(orbit, CB.expand_sources(sources), {"regions": CB.region_labels(), "n_scans": N_SCANS,
                                                                 **cfg})
    part["identities"] = {}
    CB.write_partial(part, folder)


def test_cube_without_identities_keeps_truth_and_refuses_models(tmp_path, caplog, monkeypatch):
    import json

    orbits = _orbits(3)
    p = build(tmp_path, orbits[:2], "legacy.zarr", sources=["truth", "reference", "fake"],
              model_fns={"fake": fake_model})
    led = json.loads((p / CB.LEDGER).read_text())
    assert led["identities"]["fake"]["model"].endswith("fake_model")
    del led["identities"]  # as written before identities were recorded
    (p / CB.LEDGER).write_text(json.dumps(led))
    assert CB.open_cube(p).identity("truth") is None
    before = arrays(p)[0]["count"].sel(source="truth").values.copy()
    _legacy_partial(orbits[2], ["truth", "reference"], CB.partials_dir(p))
    seen = _computed(monkeypatch)
    with caplog.at_level("INFO", logger="evaluation.cube"):
        build(tmp_path, orbits, "legacy.zarr")  # truth/reference: kept, extended, identity recorded
    assert "no recorded identity" in caplog.text
    assert seen == []  # the old partial of truth/reference was reused (same rule as the cube)
    c = CB.open_cube(p)
    assert c.n_orbits("truth") == 3 and c.identity("reference")["truth_version"]
    assert c.describe()["identities_assumed"] == ["reference", "truth", "truth_strip"]
    assert c.identity("fake") is None
    with pytest.raises(CB.StaleSource, match="not recorded"):
        build(tmp_path, orbits, "legacy.zarr", sources=["fake"], model_fns={"fake": fake_model})
    _legacy_partial(orbits[0], ["fake"], CB.partials_dir(p), model_fns={"fake": fake_model})
    seen.clear()
    build(tmp_path, orbits, "legacy.zarr", sources=["fake"], model_fns={"fake": fake_model}, replace_stale=True)
    assert sorted(seen) == [(o, ("fake", "fake@strip")) for o in orbits]  # the old model partial: not reused
    c = CB.open_cube(p)
    assert c.n_orbits("fake") == 3 and c.identity("fake")["model"].endswith("fake_model")
    assert c.ledger["pairs"]["fake@strip|reference"] == sorted(orbits)
    h = c.histogram("truth", period=("2000-01-01", "2100-01-01"))
    assert h["n"] > 0 and c.ds["count"].sel(source="truth").values[..., :].sum() >= before.sum()


def test_simulator_tb_change_invalidates_models_not_truth(tmp_path, monkeypatch):
    import catalogs.simulator as SIM

    orbits = _orbits(1)
    p = build(tmp_path, orbits, "v.zarr", sources=["truth", "reference", "fake"], model_fns={"fake": fake_model})
    monkeypatch.setattr(SIM, "PRODUCT_VERSION", "raincheck-sim-next")  # Tb changed, truth did not
    build(tmp_path, _orbits(2), "v.zarr")  # truth/reference still current
    with pytest.raises(CB.StaleSource, match="raincheck-sim-next"):
        build(tmp_path, orbits, "v.zarr", sources=["fake"], model_fns={"fake": fake_model})
    monkeypatch.setattr(SIM, "TRUTH_VERSION", "raincheck-sim-next")  # now the truth changed too
    with pytest.raises(CB.StaleSource, match="truth/reference"):
        build(tmp_path, orbits, "v.zarr")
    build(tmp_path, orbits, "v.zarr", replace_stale=True)
    c = CB.open_cube(p)  # truth rebuilt on the requested orbit; the model (built against it) dropped
    assert c.n_orbits("truth") == 1 and c.identity("truth") == {"truth_version": "raincheck-sim-next"}
    assert "fake" not in c.sources and not any("fake" in k for k in c.ledger["pairs"])


def test_packaged_demo_cube_is_the_shipped_models_and_resumes_without_work(tmp_path):
    """The shipped cube records which checkpoints its models are (the shipped ones: a model
    retrained without refreshing the cube fails here); imported for a rebuild, every source it
    holds is current, so asking again for orbits it holds does no work and raises nothing."""
    if not CB.is_complete(CB.PACKAGED_DEMO):
        pytest.skip("no packaged demo cube")
    from models.registry import get_card

    p = CB.import_cube(CB.PACKAGED_DEMO, tmp_path / "demo.zarr")
    c = CB.open_cube(p)
    assert c.ledger["sources"] == CB.open_cube(CB.PACKAGED_DEMO).ledger["sources"]
    assert c.models, "the demo cube ships model climatologies"
    for m in c.models:
        assert c.identity(m)["checkpoint_sha256"] == get_card(m).checkpoint_sha256[:12], m
        assert c.identity(m) == CB.source_identity(m, {"loader": "simulator"})
    done = c.ledger["sources"]["truth"][:3]
    before = {s: list(v) for s, v in c.ledger["sources"].items()}
    CB.build_cube(done, ["truth", "reference"], p, scheduler="inline")  # held, current: no work, no error
    m = c.models[0]
    held = c.ledger["sources"][m][:2]
    CB.build_cube(held, [m], p, scheduler="inline")
    assert CB.open_cube(p).ledger["sources"] == before

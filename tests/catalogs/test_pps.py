"""PPS-format synthetic granules (catalogs.pps) and GMI x CMB collocation (catalogs.pairs).

The real 10 x 10 PPS cuts are the check that the layout written is the real one; a full-size
synthetic orbit (2924 scans x 221 pixels) goes through gpm-api and comes back as the swath it was
written from (the known truth); collocation is checked against a brute-force great-circle search."""

from __future__ import annotations

import json
import shutil
import threading

import h5py
import numpy as np
import pytest

from catalogs import gpm, pairs, pps, schema
from catalogs.make_pps_layout import WRITTEN, layout_of
from catalogs.simulator import geometry as geo
from catalogs.simulator import simulate_orbit
from tests.conftest import GPM_FIXTURES

ORBIT = 20000


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """A whole synthetic orbit written as 1C-GMI + 2B-CMB in an archive tree."""
    root = tmp_path_factory.mktemp("archive")
    sw = simulate_orbit(ORBIT)
    p1 = pps.write_1c_gmi(sw, root=root)
    pc = pps.write_2b_cmb(sw, root=root)
    return sw, root, p1, pc


def test_shipped_layout_is_the_layout_of_the_real_cuts():
    shipped = json.loads(pps.LAYOUT_PATH.read_text())
    for product, (prefix, _) in WRITTEN.items():
        real = sorted(GPM_FIXTURES.glob(prefix + "*"))[0]
        assert shipped[product]["source"] == real.name
        fresh = layout_of(real, product)
        assert shipped[product]["groups"] == json.loads(json.dumps(fresh["groups"])), product
        assert shipped[product]["file_attrs"].keys() == fresh["file_attrs"].keys()


def _datasets(h):
    out = {}
    h.visititems(lambda n, o: out.__setitem__(n, o) if isinstance(o, h5py.Dataset) else None)
    return out


@pytest.mark.parametrize("product", ["1C-GMI", "2B-CMB"])
def test_written_granule_has_the_real_types_dims_and_attributes(full, product):
    sw, root, p1, pc = full
    path = p1 if product == "1C-GMI" else pc
    real = sorted(GPM_FIXTURES.glob(WRITTEN[product][0] + "*"))[0]
    with h5py.File(path) as w, h5py.File(real) as r:
        assert set(w.attrs) == set(r.attrs)
        header = w.attrs["FileHeader"].decode()
        assert f"FileName={path.name};" in header and f"GranuleNumber={ORBIT:06d};" in header
        rd = _datasets(r)
        for name, d in _datasets(w).items():
            assert name in rd, name
            assert d.dtype == rd[name].dtype, name
            for k in ("DimensionNames", "Units", "_FillValue", "CodeMissingValue"):
                assert (k in d.attrs) == (k in rd[name].attrs), (name, k)
                if k in d.attrs:
                    assert d.attrs[k] == rd[name].attrs[k], (name, k)
        for mode in WRITTEN[product][1]:
            hdr = w[mode].attrs[f"{mode}_SwathHeader"].decode()
            n_scans = w[f"{mode}/Latitude"].shape[0]
            assert f"NumberScansGranule={n_scans};" in hdr


def test_full_size_1c_reads_back_as_the_swath(full):
    sw, root, p1, pc = full
    info = gpm.parse_granule_name(p1)
    assert info.product == "1C-GMI" and info.orbit == ORBIT
    assert p1.relative_to(root).parts[:6] == ("GPM", "RS", "V07", "PMW", "1C-GMI", f"{info.start:%Y}")
    g = gpm.open_1c_gmi(p1)
    assert dict(g.sizes) == {"along_track": geo.N_SCANS, "cross_track": 221, "pmw_frequency": 13}
    tc0 = sw["Tc"].transpose(..., "pmw_frequency").values
    tc1 = g["Tc"].transpose(..., "pmw_frequency").values
    np.testing.assert_array_equal(tc1[..., :9], tc0[..., :9])
    k = pps.S2_SCAN_OFFSET  # S2 scan i was written at S1 scan i + k: exact from scan k on
    np.testing.assert_array_equal(tc1[k:, :, 9:], tc0[k:, :, 9:])
    np.testing.assert_allclose(g["lat"].values, sw["lat"].values, atol=1e-5)
    dt = np.abs((g["time"].values - sw["time"].values) / np.timedelta64(1, "ms"))
    assert dt.max() < 1000  # gpm-api decodes ScanTime to the second (it drops MilliSecond)
    # the orbit index from file names alone
    table = gpm.scan_granules(root)
    assert sorted(table["product"]) == ["1C-GMI", "2B-CMB"] and set(table["orbit"]) == {ORBIT}


def test_collocation_recovers_the_known_reference(full):
    sw, root, p1, pc = full
    ds = pairs.open_pair(p1)
    ref, got = sw["surface_precip"].values, ds["surface_precip"].values
    both = np.isfinite(ref) & np.isfinite(got)
    # nearest footprint of a GMI pixel carries that pixel's own reference (the CMB was sampled from it)
    assert np.mean(ref[both] == got[both]) > 0.995
    # CMB covers the reference strip except where DPR sees ground after the granule's end (≈ 67 s of scans)
    covered = np.isfinite(got[:, 90:131]).mean()
    assert 0.95 < covered < 0.999
    assert np.nanmax(ds["cmb_distance"].values) <= pairs.MAX_DISTANCE_KM
    # GMI looks SCAN_RADIUS_KM ahead at the swath centre: the DPR passes there that far later (tolerance:
    # both times are read to the second by gpm-api, a DPR scan period, and the Earth turning meanwhile)
    speed = 2 * np.pi * geo.R_EARTH_KM / geo.PERIOD_S
    dt = ds["cmb_time_difference"].values[:, 110]
    assert np.nanmedian(dt) == pytest.approx(geo.SCAN_RADIUS_KM / speed, abs=2 + 2 * pps.DPR_SCAN_PERIOD_S)
    # paired pixels: a footprint within reach (its value may be missing: fill in the CMB granule)
    assert ds.attrs["reference_pixels_collocated"] == int(np.isfinite(ds["cmb_distance"].values).sum())
    assert np.isfinite(got).sum() <= ds.attrs["reference_pixels_collocated"]


def test_collocation_matches_a_brute_force_search(full):
    sw, root, p1, pc = full
    gmi = gpm.open_1c_gmi(p1)
    cmb = gpm.open_2b_cmb(pc)
    ds = pairs.collocate_cmb(gmi, cmb)
    rng = np.random.default_rng(0)
    clat, clon = cmb["lat"].values.ravel(), cmb["lon"].values.ravel()
    cref = cmb["surface_precip"].values.ravel()
    for _ in range(150):
        i, j = int(rng.integers(100, geo.N_SCANS - 100)), int(rng.integers(70, 150))
        la, lo = gmi["lat"].values[i, j], gmi["lon"].values[i, j]
        d = geo.great_circle_km(la, lo, clat, clon)
        k = int(np.nanargmin(d))
        if d[k] <= pairs.MAX_DISTANCE_KM:
            assert ds["cmb_distance"].values[i, j] == pytest.approx(d[k], abs=1e-3)
            np.testing.assert_equal(ds["surface_precip"].values[i, j], cref[k])
        else:
            assert np.isnan(ds["surface_precip"].values[i, j])


def test_gprof_granule_round_trip(tmp_path):
    sw = simulate_orbit(ORBIT, n_scans=60)
    q = np.array([0.1, 0.25, 0.5, 0.75, 0.9])
    base = np.clip(sw["surface_precip_truth"].values, 0, None)
    quant = base[..., None] * np.array([0.2, 0.6, 1.0, 1.5, 2.5])
    import xarray as xr

    A, C = schema.ALONG, schema.CROSS
    ret = xr.Dataset(
        {"precip_quantiles": ((A, C, schema.QUANTILE), quant.astype(np.float32), {"units": schema.RAIN_UNITS}),
         "precip_mean": ((A, C), (1.1 * base).astype(np.float32), {"units": schema.RAIN_UNITS}),
         "precip_median": ((A, C), base.astype(np.float32), {"units": schema.RAIN_UNITS}),
         "pop": ((A, C), (base > 0.1).astype(np.float32), {"units": "1"}),
         "p_heavy": ((A, C), (base > 10).astype(np.float32), {"units": "1"})},
        coords={"lat": sw["lat"], "lon": sw["lon"], "time": sw["time"], schema.QUANTILE: q},
        attrs={"model": "m", "model_sha256": "0" * 64, "orbit_number": ORBIT, "sensor": "GMI", "source": "test"})
    path = pps.write_2a_gprof(ret, sw, root=tmp_path)
    g = gpm.open_2a_gprof(path)
    np.testing.assert_allclose(g["precip_mean"].values, 1.1 * base, rtol=1e-6)
    # tertiles: linear in the quantile level between the written levels (1/3 between 0.25 and 0.5)
    w = (1 / 3 - 0.25) / 0.25
    np.testing.assert_allclose(g["precip_quantiles"].values[..., 0], base * (0.6 + w * 0.4), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(g["surface_type"].values, sw["surface_type"].values)
    # a 1C next to it takes its surface type from it
    p1 = pps.write_1c_gmi(sw, root=tmp_path)
    np.testing.assert_array_equal(pairs.open_pair(p1, cmb=None)["surface_type"].values, sw["surface_type"].values)


# -- bad archives ---------------------------------------------------------------------------------
@pytest.fixture()
def small(tmp_path):
    root = tmp_path / "a"
    paths = pps.make_archive(root, [ORBIT, ORBIT + 31], n_scans=80)
    return root, paths


def test_missing_s2_group_is_named(small):
    root, paths = small
    with h5py.File(paths[0], "r+") as f:
        del f["S2"]
    with pytest.raises(gpm.GranuleError, match="missing scan-mode group 'S2'"):
        pairs.open_pair(paths[0])


def test_cmb_of_another_orbit_is_refused(small):
    root, paths = small
    with pytest.raises(pairs.ArchiveError, match=f"CMB granule of orbit {ORBIT + 31}, not of orbit {ORBIT}"):
        pairs.open_pair(paths[0], paths[3])
    # renamed to pass the name check: the contents still say which orbit it is
    other = gpm.open_2b_cmb(paths[3]).assign_attrs(orbit_number=ORBIT)
    with pytest.raises(pairs.ArchiveError, match="do not overlap|mismatched times"):
        pairs.collocate_cmb(gpm.open_1c_gmi(paths[0]), other)


def test_mismatched_times_are_refused(small):
    root, paths = small
    gmi = gpm.open_1c_gmi(paths[0])
    cmb = gpm.open_2b_cmb(paths[1])
    late = cmb.assign_coords(time=cmb["time"] + np.timedelta64(2, "h"))
    with pytest.raises(pairs.ArchiveError, match="mismatched times"):
        pairs.collocate_cmb(gmi, late)


def test_fill_everywhere_says_so(small):
    root, paths = small
    with h5py.File(paths[0], "r+") as f:
        for mode in ("S1", "S2"):
            f[f"{mode}/Tc"][...] = -9999.9
    with pytest.raises(gpm.NoValidData, match="no valid brightness temperatures"):
        pairs.open_pair(paths[0])
    with h5py.File(paths[1], "r+") as f:
        f["KuGMI/estimSurfPrecipTotRate"][...] = -9999.9
    with pytest.raises(gpm.NoValidData, match="no valid surface precipitation"):
        gpm.open_2b_cmb(paths[1])


def test_a_1c_without_cmb_is_named(small):
    root, paths = small
    paths[1].unlink()
    with pytest.raises(pairs.ArchiveError, match="no 2B-CMB granule of orbit"):
        pairs.open_pair(paths[0])
    assert "surface_precip" not in pairs.open_pair(paths[0], cmb="if-found")
    table = pairs.archive_index(root)
    assert table.loc[0, "2B-CMB"] == "" and table.loc[1, "2B-CMB"]


def test_archive_maker_leaves_nothing_half_written(tmp_path):
    root = tmp_path / "a"
    stop = threading.Event()

    def gprof(swath):
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError, match="model crashed"):
        pps.make_archive(root, [ORBIT], n_scans=40, gprof=gprof)
    files = sorted(p.name for p in root.rglob("*") if p.is_file())
    assert len(files) == 2 and not any(f.endswith(".part") for f in files)  # 1C + CMB complete, no 2A
    stop.set()
    with pytest.raises(InterruptedError):
        pps.make_archive(root, [ORBIT + 1], n_scans=40, cancel=stop)
    again = pps.make_archive(root, [ORBIT], n_scans=40)  # re-running keeps what is complete
    assert [p.name for p in again] == [f for f in files if f.startswith("1C")] + [f for f in files if f.startswith("2B")]


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="before GPM's launch"):
        pps.archive_orbits("2010-01-01", "2010-02-01", 3)
    with pytest.raises(ValueError, match="end is before the start"):
        pps.archive_orbits("2019-02-01", "2019-01-01", 3)
    sw = simulate_orbit(ORBIT, n_scans=20).drop_vars("surface_precip")
    with pytest.raises(ValueError, match="no surface_precip"):
        pps.write_2b_cmb(sw, root=tmp_path)
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_catalogue_reads_an_archive_and_its_pairs(tmp_path, monkeypatch):
    from catalogs.catalog import open_catalog, read
    from catalogs.config import PathOutsideRoots

    root = tmp_path / "archive"
    paths = pps.make_archive(root, [ORBIT, ORBIT + 6000], n_scans=80)  # 2017-09, 2018-10
    monkeypatch.setenv("RAINCHECK_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("RAINCHECK_READ_ROOTS", str(root))
    cat = open_catalog()
    table = read(cat, "archive", granule_dir=str(root), start="2017-01-01", end="2018-01-01")
    assert table["orbit"].tolist() == [ORBIT] and table.loc[0, "1C-GMI"] == str(paths[0])
    ds = read(cat, "pair", granule=str(paths[0]))
    assert ds.attrs["reference"].startswith("2B-CMB") and np.isfinite(ds["surface_precip"].values).any()
    monkeypatch.setenv("RAINCHECK_READ_ROOTS", str(tmp_path / "elsewhere"))
    with pytest.raises(PathOutsideRoots):
        read(cat, "pair", granule=str(paths[0]))


def test_companions_outside_the_roots_are_not_read(tmp_path, monkeypatch):
    """A 1C inside a read root whose CMB and 2A-GMI lie in the archive tree outside it: found by
    name, but a server confined to its roots does not read them."""
    from catalogs.catalog import open_catalog, read

    root = tmp_path / "archive"
    sw = simulate_orbit(ORBIT, n_scans=60)
    p1 = pps.write_1c_gmi(sw, root=root)
    pps.write_2b_cmb(sw, root=root)
    monkeypatch.setenv("RAINCHECK_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("RAINCHECK_READ_ROOTS", str(p1.parent))  # the 1C's day folder only
    ds = read(open_catalog(), "pair", granule=str(p1))
    assert "surface_precip" not in ds  # the CMB is outside the roots: the 1C alone
    assert "surface_precip" in pairs.open_pair(p1)  # unconfined (a local script): found


def test_a_granule_renamed_to_another_orbit_is_caught(small):
    root, paths = small
    (root / "mixed").mkdir()
    fake = root / "mixed" / paths[1].name
    shutil.copyfile(paths[3], fake)  # orbit ORBIT+31's CMB under the exact name of orbit ORBIT's CMB
    with pytest.raises(gpm.GranuleError, match=f"file name says orbit {ORBIT} but its FileHeader says "
                                               f"GranuleNumber={ORBIT + 31:06d}"):
        pairs.open_pair(paths[0], fake)


def test_archive_commands(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from app.cli import main

    monkeypatch.setenv("RAINCHECK_DATA_ROOT", str(tmp_path / "data"))
    root = tmp_path / "archive"
    monkeypatch.setenv("RAINCHECK_READ_ROOTS", str(root))
    r = CliRunner().invoke(main, ["archive", "make", str(root), "--start", "2019-01-01", "--end", "2019-03-01",
                                  "--orbits", "2", "--n-scans", "40", "--gprof", "none"])
    assert r.exit_code == 0, r.output
    assert len(list(root.rglob("*.HDF5"))) == 4 and not list(root.rglob("2A.*"))
    r = CliRunner().invoke(main, ["archive", "index", str(root)])
    assert r.exit_code == 0 and "2 orbits" in r.output and "1C-GMI, 2B-CMB" in r.output, r.output
    r = CliRunner().invoke(main, ["archive", "check", str(root)])
    assert r.exit_code == 0 and "2 orbits pair up" in r.output, r.output
    cmb = sorted(root.rglob("2B.*"))[0]
    cmb.write_bytes(cmb.read_bytes()[:5000])  # an interrupted download
    r = CliRunner().invoke(main, ["archive", "check", str(root)])
    assert r.exit_code != 0 and "truncated HDF5 file" in r.output and cmb.name in r.output, r.output
    assert "1 of 2 orbits do not pair" in r.output
    r = CliRunner().invoke(main, ["archive", "make", str(root), "--start", "2010-01-01", "--end", "2010-03-01"])
    assert r.exit_code == 2 and "before GPM's launch" in r.output
    r = CliRunner().invoke(main, ["archive", "index", str(tmp_path / "elsewhere")])
    assert r.exit_code != 0 and "outside the configured data roots" in r.output

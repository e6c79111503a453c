"""Real PPS V07 granules (10x10 cuts in the shared fixtures) -> canonical schema, and clear errors."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import h5py  # test-only dependency: builds modified copies of the real granules
import numpy as np
import pytest

from catalogs import gpm, schema
from tests.conftest import GPM_FIXTURES

C1 = "1C.GPM.GMI.XCAL2016-C.20140304-S175932-E193159.000079.V07A.HDF5"
GPROF = "2A.GPM.GMI.GPROF2021v1.20140304-S175932-E193159.000079.V07A.HDF5"
DPR = "2A.GPM.DPR.V9-20211125.20140308-S220950-E234217.000144.V07A.HDF5"
CMB = "2B.GPM.DPRGMI.CORRA2022.20140308-S220950-E234217.000144.V07A.HDF5"

def fixture(name: str) -> Path:
    return GPM_FIXTURES / name


def copy_to(tmp_path: Path, name: str, new_name: str | None = None) -> Path:
    dst = tmp_path / (new_name or name)
    shutil.copyfile(fixture(name), dst)  # copyfile: the copy is writable (fixtures are read-only)
    return dst


# ---------------------------------------------------------------------------------------------
# File names and directory listing
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, product, algorithm, orbit, start, end", [
    (C1, "1C-GMI", "XCAL2016-C", 79, datetime(2014, 3, 4, 17, 59, 32), datetime(2014, 3, 4, 19, 31, 59)),
    (GPROF, "2A-GMI", "GPROF2021v1", 79, datetime(2014, 3, 4, 17, 59, 32), datetime(2014, 3, 4, 19, 31, 59)),
    (DPR, "2A-DPR", "V9-20211125", 144, datetime(2014, 3, 8, 22, 9, 50), datetime(2014, 3, 8, 23, 42, 17)),
    (CMB, "2B-CMB", "CORRA2022", 144, datetime(2014, 3, 8, 22, 9, 50), datetime(2014, 3, 8, 23, 42, 17)),
])
def test_parse_fixture_names(name, product, algorithm, orbit, start, end):
    info = gpm.parse_granule_name(fixture(name))
    assert (info.product, info.algorithm, info.orbit, info.start, info.end) == (product, algorithm, orbit, start, end)
    assert info.version == "V07A" and info.satellite == "GPM" and info.filename == name


def test_parse_name_crossing_midnight():
    info = gpm.parse_granule_name("1C.GPM.GMI.XCAL2016-C.20200101-S231200-E004425.033312.V07A.HDF5")
    assert info.start == datetime(2020, 1, 1, 23, 12) and info.end == datetime(2020, 1, 2, 0, 44, 25)
    assert info.orbit == 33312 and info.product == "1C-GMI"


@pytest.mark.parametrize("name", [
    "granule.HDF5",
    "1C.GPM.GMI.XCAL2016-C.20140304-S175932-E193159.V07A.HDF5",  # no orbit
    "1C.GPM.GMI.XCAL2016-C.20141304-S175932-E193159.000079.V07A.HDF5",  # month 13
    "1C.GPM.GMI.XCAL2016-C.20140304-S175932-E193159.000079.V07A.txt",
    "notes.txt",
])
def test_parse_rejects_non_gpm_names(name):
    with pytest.raises(gpm.GranuleError, match="not a GPM granule file name|invalid date"):
        gpm.parse_granule_name(name)


def test_scan_granules_fixtures():
    df = gpm.scan_granules(GPM_FIXTURES)
    assert list(df["product"]) == ["1C-GMI", "2A-GMI", "2A-DPR", "2B-CMB"]  # sorted by start, then product
    assert list(df["orbit"]) == [79, 79, 144, 144]
    assert df["start"].is_monotonic_increasing
    assert (df["end"] > df["start"]).all()
    assert {Path(p).name for p in df["path"]} == {C1, GPROF, DPR, CMB}
    assert df.attrs["skipped"] == 0


def test_scan_granules_tree_skips_other_files(tmp_path):
    (tmp_path / "2014" / "03").mkdir(parents=True)
    (tmp_path / "2014" / "03" / CMB).write_bytes(b"")  # names only: contents are never read
    (tmp_path / DPR).write_bytes(b"")
    (tmp_path / "README.txt").write_text("not a granule")
    df = gpm.scan_granules(tmp_path)
    assert sorted(df["product"]) == ["2A-DPR", "2B-CMB"] and df.attrs["skipped"] == 1
    assert list(gpm.scan_granules(tmp_path, recursive=False)["product"]) == ["2A-DPR"]
    with pytest.raises(FileNotFoundError):
        gpm.scan_granules(tmp_path / "nope")


def test_scan_granules_empty_folder(tmp_path):
    df = gpm.scan_granules(tmp_path)
    assert len(df) == 0 and "orbit" in df.columns and "path" in df.columns


# ---------------------------------------------------------------------------------------------
# The real granules
# ---------------------------------------------------------------------------------------------

def test_2b_cmb_reference_swath():
    ds = gpm.open_granule(fixture(CMB))
    schema.validate(ds)
    assert dict(ds.sizes) == {"along_track": 10, "cross_track": 10, "pmw_frequency": 13}
    assert ds.attrs["orbit_number"] == 144 and ds.attrs["surface_precip_variable"] == "estimSurfPrecipTotRate"
    rain = ds["surface_precip"].values
    assert ds["surface_precip"].attrs["units"] == "mm h-1"
    assert np.isfinite(rain).all() and (rain >= 0).all()
    assert 0.5 < rain.max() < 1.5 and (rain > 0).sum() == 2  # light rain at two pixels, real values
    # orientation: (along_track, cross_track) == HDF5 (nscan, nray), checked against the raw file
    with h5py.File(fixture(CMB), "r") as f:
        raw = f["KuGMI/estimSurfPrecipTotRate"][:]
        np.testing.assert_allclose(rain, raw, rtol=1e-6)
        np.testing.assert_allclose(ds["lat"].values, f["KuGMI/Latitude"][:])
        np.testing.assert_allclose(ds["lon"].values, f["KuGMI/Longitude"][:])
        sim = f["KuGMI/simulatedBrightTemp"][:]
    assert -66.5 < ds["lat"].min() and ds["lat"].max() < -65.5
    assert 159.5 < ds["lon"].min() and ds["lon"].max() < 161
    t = ds["time"].values
    assert (t >= np.datetime64("2014-03-08T22:09:50")).all() and (t <= np.datetime64("2014-03-08T22:10:00")).all()
    # simulated Tb: 13 channels in the product's order, which is the schema's order
    tc = ds["Tc"].values
    assert np.isfinite(tc).any() and np.isnan(tc).any()
    np.testing.assert_allclose(tc, np.where(sim < 0, np.nan, sim), rtol=1e-6)
    finite = tc[np.isfinite(tc)]
    assert 150 < finite.min() and finite.max() < 300
    # sea ice (snowIceCover 3 over an ocean surfaceType 0) at 66 S in March
    assert (ds["surface_type"].values == 3).all()
    assert "simulated" in ds.attrs["Tc_source"]


def test_2a_dpr_reference_only_swath():
    ds = gpm.open_granule(fixture(DPR))
    schema.validate(ds)
    assert ds.attrs["orbit_number"] == 144 and ds.attrs["reference_only"] == 1 and ds.attrs["sensor"] == "DPR"
    rain = ds["surface_precip"].values
    with h5py.File(fixture(DPR), "r") as f:
        np.testing.assert_allclose(rain, f["FS/SLV/precipRateNearSurface"][:], rtol=1e-6)
        np.testing.assert_allclose(ds["lat"].values, f["FS/Latitude"][:])
    assert np.isfinite(rain).all() and (rain >= 0).all() and 0.3 < rain.max() < 1.0
    assert np.isnan(ds["Tc"].values).all()
    assert ((ds["quality_flag"].values & 1) == 1).all()  # tb_missing everywhere
    assert (ds["surface_type"].values == 3).all()
    assert str(ds["time"].values[0]).startswith("2014-03-08T22:09")


def test_1c_all_fill_gives_clear_message():
    with pytest.raises(gpm.NoValidData, match=f"^no valid brightness temperatures in this granule: {C1}$"):
        gpm.open_granule(fixture(C1))
    with pytest.raises(gpm.GranuleError):  # NoValidData is a GranuleError
        gpm.open_1c_gmi(fixture(C1))


def test_1c_all_fill_allow_empty_is_a_flagged_swath():
    ds = gpm.open_1c_gmi(fixture(C1), allow_empty=True)
    schema.validate(ds)
    assert np.isnan(ds["Tc"].values).all() and (ds["quality_flag"].values & 1).all()
    assert ds.attrs["orbit_number"] == 79 and "surface_precip" not in ds
    assert -69.5 < ds["lat"].min() and ds["lat"].max() < -69
    # surface type from the GPROF granule of the same orbit next to it (surfaceTypeIndex 1 = ocean)
    assert GPROF in ds.attrs["surface_type_source"] and (ds["surface_type"].values == 0).all()


def test_2a_gprof_all_missing_gives_clear_message():
    with pytest.raises(gpm.NoValidData, match=f"no valid GPROF surface precipitation in this granule: {GPROF}.*pixelStatus"):
        gpm.open_granule(fixture(GPROF))


def test_2a_gprof_allow_empty_is_a_valid_retrieval():
    ds = gpm.open_2a_gprof(fixture(GPROF), allow_empty=True)
    schema.validate(ds, kind="retrieval")
    assert ds.attrs["orbit_number"] == 79 and ds.attrs["model"] == "GPROF2021v1"
    assert len(ds.attrs["model_sha256"]) == 64
    np.testing.assert_allclose(ds["quantile"].values, [1 / 3, 2 / 3])
    assert ds["precip_quantiles"].shape == (10, 10, 2)
    assert str(ds["time"].values[0]).startswith("2014-03-04T17:59")
    with h5py.File(fixture(GPROF), "r") as f:
        np.testing.assert_allclose(ds["lat"].values, f["S1/Latitude"][:])


# ---------------------------------------------------------------------------------------------
# Copies of the real granules with values written in (the cuts hold fill where we need data)
# ---------------------------------------------------------------------------------------------

def _s1_values(shape):
    """S1 Tc: channel k = 150 + 10 k K, plus 0.1 K * (scan*10 + pixel) so each pixel differs."""
    ns, npx, nch = shape
    pix = 0.1 * (np.arange(ns)[:, None] * 10 + np.arange(npx)[None, :])
    return (150 + 10 * np.arange(nch)[None, None, :] + pix[..., None]).astype(np.float32)


def _s2_values(shape):
    """S2 Tc: channel j = 200 + 20 j K, plus 0.01 K * (scan*10 + pixel)."""
    ns, npx, nch = shape
    pix = 0.01 * (np.arange(ns)[:, None] * 10 + np.arange(npx)[None, :])
    return (200 + 20 * np.arange(nch)[None, None, :] + pix[..., None]).astype(np.float32)


def _write_1c(path: Path, s2_lat_shift: float = 0.0):
    """Plausible Tb into S1/S2, and S2 geolocation = S1's with pixels reversed (+ a shift)."""
    with h5py.File(path, "r+") as f:
        s1 = _s1_values(f["S1/Tc"].shape)
        s2 = _s2_values(f["S2/Tc"].shape)
        f["S1/Tc"][...] = s1
        f["S2/Tc"][...] = s2
        lat1, lon1 = f["S1/Latitude"][:], f["S1/Longitude"][:]
        f["S2/Latitude"][...] = lat1[:, ::-1] + 0.001 + s2_lat_shift  # ~0.1 km off
        f["S2/Longitude"][...] = lon1[:, ::-1]
    return s1, s2


def test_1c_merges_13_channels_on_s1_grid(tmp_path):
    path = copy_to(tmp_path, C1)
    s1, s2 = _write_1c(path)
    ds = gpm.open_granule(path)
    schema.validate(ds)
    tc = ds["Tc"].values
    assert tc.shape == (10, 10, 13) and np.isfinite(tc).all()
    assert list(ds["pmw_frequency"].values) == list(schema.CHANNELS)
    np.testing.assert_allclose(tc[..., :9], s1, rtol=1e-6)  # S1 channels as they are
    # S2 pixel (i, 9 - j) sits on S1 pixel (i, j): nearest neighbour must pick it
    np.testing.assert_allclose(tc[..., 9:], s2[:, ::-1, :], rtol=1e-6)
    # each channel is where its label says: 10.65V first, 183.31±7V last
    assert ds["Tc"].sel(pmw_frequency="10.65V").values[0, 0] == pytest.approx(150.0)
    assert ds["Tc"].sel(pmw_frequency="89.0H").values[0, 0] == pytest.approx(230.0)
    assert ds["Tc"].sel(pmw_frequency="166.0V").values[0, 0] == pytest.approx(200.09, abs=1e-3)
    assert ds["Tc"].sel(pmw_frequency="183.31±7V").values[0, 0] == pytest.approx(260.09, abs=1e-3)
    assert (ds["quality_flag"].values == 0).all()
    assert ds.attrs["s2_pixels_without_partner"] == 0
    # no GPROF granule next to the copy: surface type is declared unknown, not silently ocean
    assert ds.attrs["surface_type_source"].startswith("unknown")


def test_1c_surface_from_explicit_gprof(tmp_path):
    path = copy_to(tmp_path, C1)
    _write_1c(path)
    ds = gpm.open_1c_gmi(path, surface_from=fixture(GPROF))
    assert GPROF in ds.attrs["surface_type_source"] and (ds["surface_type"].values == 0).all()
    # a GPROF granule whose grid is not this 1C's is refused, not silently used
    (tmp_path / "shifted").mkdir()
    shifted = copy_to(tmp_path, GPROF, "shifted/" + GPROF)
    with h5py.File(shifted, "r+") as f:
        f["S1/Latitude"][...] = f["S1/Latitude"][:] + 1.0
    with pytest.raises(gpm.GranuleError, match="does not match"):
        gpm.open_1c_gmi(path, surface_from=shifted)


def test_1c_s2_too_far_gives_nan_s2_channels(tmp_path):
    path = copy_to(tmp_path, C1)
    s1, _ = _write_1c(path, s2_lat_shift=1.0)  # S2 ~110 km away from every S1 pixel
    ds = gpm.open_1c_gmi(path, surface_from=None)
    tc = ds["Tc"].values
    np.testing.assert_allclose(tc[..., :9], s1, rtol=1e-6)
    assert np.isnan(tc[..., 9:]).all()
    assert ((ds["quality_flag"].values & 1) == 1).all() and ds.attrs["s2_pixels_without_partner"] == 100
    # a wider tolerance brings them back
    wide = gpm.open_1c_gmi(path, surface_from=None, max_s2_distance_km=200)
    assert np.isfinite(wide["Tc"].values).all()


def test_1c_out_of_range_tb_is_nan_and_flagged(tmp_path):
    path = copy_to(tmp_path, C1)
    _write_1c(path)
    with h5py.File(path, "r+") as f:
        tc = f["S1/Tc"][:]
        tc[2, 3, 7] = 400.0  # impossible 89V
        tc[4, 5, :] = -9999.9  # fill at one pixel
        f["S1/Tc"][...] = tc
    ds = gpm.open_1c_gmi(path, surface_from=None)
    qf = ds["quality_flag"].values
    assert np.isnan(ds["Tc"].values[2, 3, 7]) and qf[2, 3] & 2
    assert np.isnan(ds["Tc"].values[4, 5, :9]).all() and qf[4, 5] & 1
    assert qf[0, 0] == 0


def test_2a_gprof_with_values(tmp_path):
    path = copy_to(tmp_path, GPROF)
    with h5py.File(path, "r+") as f:
        shape = f["S1/surfacePrecipitation"].shape
        mean = np.full(shape, 0.0, np.float32)
        mean[3, 4] = 5.0
        t1 = np.zeros(shape, np.float32)
        t2 = np.zeros(shape, np.float32)
        t1[3, 4], t2[3, 4] = 2.0, 6.0
        t1[5, 5], t2[5, 5] = 3.0, 1.0  # crossed tertiles: must be sorted
        pop = np.zeros(shape, np.float32)
        pop[3, 4] = 80
        mean[9, 9] = -9999.9
        f["S1/surfacePrecipitation"][...] = mean
        f["S1/precip1stTertial"][...] = t1
        f["S1/precip2ndTertial"][...] = t2
        f["S1/probabilityOfPrecip"][...] = pop
    ds = gpm.open_granule(path)
    schema.validate(ds, kind="retrieval")
    assert ds["precip_mean"].values[3, 4] == pytest.approx(5.0)
    assert np.isnan(ds["precip_mean"].values[9, 9])
    np.testing.assert_allclose(ds["precip_quantiles"].values[3, 4], [2.0, 6.0])
    np.testing.assert_allclose(ds["precip_quantiles"].values[5, 5], [1.0, 3.0])
    assert ds.attrs["quantiles_sorted"] == 1
    assert ds["precip_median"].values[3, 4] == pytest.approx(4.0)
    assert ds["pop"].values[3, 4] == pytest.approx(0.8) and ds["pop"].values[0, 0] == 0
    assert np.isnan(ds["p_heavy"].values).all()


def test_2b_cmb_all_fill_gives_no_valid_data(tmp_path):
    path = copy_to(tmp_path, CMB)
    with h5py.File(path, "r+") as f:
        f["KuGMI/estimSurfPrecipTotRate"][...] = -9999.9
    with pytest.raises(gpm.NoValidData, match=f"no valid surface precipitation in this granule: {CMB}"):
        gpm.open_granule(path)
    assert np.isnan(gpm.open_2b_cmb(path, allow_empty=True)["surface_precip"].values).all()


# ---------------------------------------------------------------------------------------------
# Files that are not readable granules
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_bytes", [100, 4096, 1_000_000])
def test_truncated_file(tmp_path, n_bytes):
    dst = tmp_path / DPR
    dst.write_bytes(fixture(DPR).read_bytes()[:n_bytes])
    with pytest.raises(gpm.GranuleError, match=rf"{DPR}: truncated HDF5 file: {n_bytes} bytes on disk"):
        gpm.open_granule(dst)


def test_random_bytes(tmp_path):
    dst = tmp_path / CMB
    dst.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(gpm.GranuleError, match=f"{CMB}: not an HDF5 file"):
        gpm.open_granule(dst)


def test_text_file_named_hdf5(tmp_path):
    dst = tmp_path / C1
    dst.write_text("<html>404 Not Found</html>\n")
    with pytest.raises(gpm.GranuleError, match=r"not an HDF5 file .*<html>"):
        gpm.open_granule(dst)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / CMB).write_bytes(b"")
    with pytest.raises(gpm.GranuleError, match="empty"):
        gpm.open_granule(tmp_path / CMB)
    with pytest.raises(gpm.GranuleError, match="not found"):
        gpm.open_granule(tmp_path / DPR)


def test_non_gpm_name(tmp_path):
    dst = copy_to(tmp_path, CMB, "my_granule.HDF5")  # valid contents, unusable name
    with pytest.raises(gpm.GranuleError, match="'my_granule.HDF5' is not a GPM granule file name"):
        gpm.open_granule(dst)


def test_corrupt_superblock(tmp_path):
    dst = copy_to(tmp_path, CMB)
    data = bytearray(dst.read_bytes())
    data[8] = 99  # unknown superblock version
    dst.write_bytes(bytes(data))
    with pytest.raises(gpm.GranuleError, match=f"{CMB}: corrupt or unreadable HDF5 file"):
        gpm.open_granule(dst)


def test_missing_scan_mode_group_in_copy(tmp_path):
    dst = copy_to(tmp_path, DPR)
    with h5py.File(dst, "r+") as f:
        del f["FS"]
    with pytest.raises(gpm.GranuleError, match=rf"{DPR}: missing scan-mode group 'FS' needed for 2A-DPR .*'HS'"):
        gpm.open_granule(dst)


def test_missing_scan_mode_group_new_file(tmp_path):
    dst = tmp_path / CMB
    with h5py.File(dst, "w") as f:
        f.create_group("KuKaGMI").create_dataset("Latitude", data=np.zeros((2, 2), np.float32))
    with pytest.raises(gpm.GranuleError, match=rf"{CMB}: missing scan-mode group 'KuGMI'"):
        gpm.open_granule(dst)


def test_wrong_product_for_reader_and_unsupported_product(tmp_path):
    with pytest.raises(gpm.GranuleError, match="is a 2A-DPR granule, not 2B-CMB"):
        gpm.open_2b_cmb(fixture(DPR))
    with pytest.raises(gpm.GranuleError, match="product 2A-Ku is not supported"):
        gpm.open_granule(tmp_path / "2A.GPM.Ku.V9-20211125.20140308-S220950-E234217.000144.V07A.HDF5")


# ---------------------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------------------

def test_map_cmb_surface():
    surface = np.array([0, 1, 2, 3, 0, 1, 100, 200, np.nan])
    snow = np.array([0, 1, 0, 0, 3, 2, 1, 0, 0])
    flags, unknown = gpm.map_cmb_surface(surface, snow)
    assert flags.tolist() == [0, 1, 2, 1, 3, 4, 1, 2, -1] and unknown == 1


def test_map_gprof_surface():
    idx = np.array([1, 2, 3, 7, 8, 11, 12, 13, 14, 15, 16, 17, 18, np.nan, -99])
    flags, unknown = gpm.map_gprof_surface(idx)
    assert flags.tolist() == [0, 3, 1, 1, 4, 4, 1, 2, 2, 2, 3, 1, 4, -1, -1] and unknown == 2
    assert set(gpm.GPROF_SURFACE_MAP.values()) <= set(schema.SURFACE_TYPES)


def test_nearest_across_antimeridian():
    lat1, lon1 = np.array([[10.0, 10.0]]), np.array([[179.99, 0.0]])
    lat2, lon2 = np.array([[10.0, 10.0, 50.0]]), np.array([[-179.99, 1.0, 0.0]])
    idx, km = gpm.nearest_s2_on_s1(lat1, lon1, lat2, lon2, max_distance_km=15)
    assert idx.tolist() == [[0, -1]]  # 2 km across the date line; 110 km to the nearest for the other
    assert km[0, 0] == pytest.approx(2.19, abs=0.05) and np.isnan(km[0, 1])  # none within 15 km


def test_2b_cmb_fallbacks_when_variables_are_absent(tmp_path):
    path = copy_to(tmp_path, CMB)
    with h5py.File(path, "r+") as f:
        near = f["KuGMI/nearSurfPrecipTotRate"][:]
        del f["KuGMI/estimSurfPrecipTotRate"]
        del f["KuGMI/simulatedBrightTemp"]
    ds = gpm.open_granule(path)
    schema.validate(ds)
    assert ds.attrs["surface_precip_variable"] == "nearSurfPrecipTotRate"
    np.testing.assert_allclose(ds["surface_precip"].values, near, rtol=1e-6)
    assert np.isnan(ds["Tc"].values).all() and ds.attrs["Tc_source"].startswith("none")


def test_2a_dpr_without_precipitation_variable(tmp_path):
    path = copy_to(tmp_path, DPR)
    with h5py.File(path, "r+") as f:
        del f["FS/SLV/precipRateNearSurface"]
    with pytest.raises(gpm.GranuleError, match=rf"{DPR}: scan mode FS lacks variable\(s\) \['precipRateNearSurface'\]"):
        gpm.open_granule(path)


def test_1c_auto_surface_tolerates_a_bad_neighbour(tmp_path):
    path = copy_to(tmp_path, C1)
    _write_1c(path)
    (tmp_path / GPROF).write_text("not hdf5")  # a broken GPROF granule of the same orbit next to it
    ds = gpm.open_1c_gmi(path)
    assert ds.attrs["surface_type_source"].startswith("unknown: the 2A-GMI granule next to it could not be used")
    assert "not an HDF5 file" in ds.attrs["surface_type_source"]
    with pytest.raises(gpm.GranuleError, match="not an HDF5 file"):  # asked for explicitly: an error
        gpm.open_1c_gmi(path, surface_from=tmp_path / GPROF)


@pytest.mark.parametrize("name", [C1, GPROF, DPR, CMB])
def test_open_latlon_matches_the_full_reader(name):
    lat, lon = gpm.open_latlon(fixture(name))
    full = gpm.open_granule(fixture(name), allow_empty=True)
    np.testing.assert_allclose(lat, full["lat"].values, rtol=1e-6)
    np.testing.assert_allclose(lon, full["lon"].values, rtol=1e-6)


def test_open_latlon_errors(tmp_path):
    (tmp_path / CMB).write_text("nope")
    with pytest.raises(gpm.GranuleError, match="not an HDF5 file"):
        gpm.open_latlon(tmp_path / CMB)
    dst = copy_to(tmp_path, DPR)
    with h5py.File(dst, "r+") as f:
        del f["FS"]
    with pytest.raises(gpm.GranuleError, match="missing scan-mode group 'FS'"):
        gpm.open_latlon(dst)

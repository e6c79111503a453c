"""The Intake 2 catalogue: parameters select what was asked, paths stay inside data roots."""

import shutil

import intake
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from app.cli import main
from catalogs import schema
from catalogs.catalog import DEMO_CATALOG, CatalogError, entries, open_catalog, read
from catalogs.config import PathOutsideRoots
from catalogs.orbits import bbox_mask, swath_points, synthetic_orbits
from catalogs.readers import MissingOutput

from tests.conftest import GPM_FIXTURES

N = 40  # scans: short segments keep the tests fast


def test_demo_catalog_lists_every_kind_of_entry():
    names = {e.name for e in entries(open_catalog())}
    assert {"observations", "reference", "truth", "simulated", "model_output",
            "granule", "granules", "orbit_index"} <= names


@pytest.mark.parametrize("orbit", [20000, 20001, 31337])
def test_orbit_parameter_selects_that_orbit(orbit, data_root):
    cat = open_catalog()
    ds = cat(orbit=orbit, world=0)["swath"].read(n_scans=N)
    assert ds.attrs["orbit_number"] == orbit
    schema.validate(ds)


def test_plain_intake_honours_parameters_both_ways():
    cat = intake.from_yaml_file(str(DEMO_CATALOG))
    a = cat(orbit=20002).truth.read(n_scans=N)
    b = cat.truth.read(orbit=20003, n_scans=N)
    assert a.attrs["orbit_number"] == 20002 and b.attrs["orbit_number"] == 20003
    assert not np.array_equal(a.surface_precip_truth.values, b.surface_precip_truth.values)


def test_world_parameter_changes_the_world():
    cat = open_catalog()
    a = cat(orbit=20000, world=0).truth.read(n_scans=N)
    b = cat(orbit=20000, world=1).truth.read(n_scans=N)
    assert a.attrs["world_seed"] == 0 and b.attrs["world_seed"] == 1
    np.testing.assert_array_equal(a.lat.values, b.lat.values)  # same orbit geometry
    assert not np.array_equal(a.surface_precip_truth.values, b.surface_precip_truth.values)


def test_products_keep_their_fields():
    cat = open_catalog()(orbit=20000)
    assert "Tc" in cat.observations.read(n_scans=N) and "surface_precip" not in cat.observations.read(n_scans=N)
    ref = cat.reference.read(n_scans=N)
    assert "surface_precip" in ref and "surface_precip_truth" not in ref
    sim = cat.simulated.read(n_scans=N)
    assert sim.attrs["source"] == "synthetic-simulated"


def test_out_of_record_orbit_is_a_clear_error():
    with pytest.raises(ValueError, match="outside the synthetic record"):
        read(open_catalog(), "swath", orbit=10**9)


def test_unknown_entry_and_parameter():
    cat = open_catalog()
    with pytest.raises(CatalogError, match="no entry 'nope'"):
        read(cat, "nope")
    with pytest.raises(CatalogError, match="unknown catalogue parameter"):
        read(cat, "truth", orbitt=3)


def test_bad_catalogue_files(tmp_path):
    with pytest.raises(CatalogError, match="does not exist"):
        open_catalog(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\nentries: [unclosed\n")
    with pytest.raises(CatalogError, match="cannot open catalogue"):
        open_catalog(bad)


def test_granule_parameter_cannot_escape_roots(data_root):
    cat = open_catalog()
    for bad in ["/etc/passwd", "../../etc/passwd", str(GPM_FIXTURES)]:
        with pytest.raises(PathOutsideRoots):
            read(cat, "granule", granule=bad)


def test_granule_entries_read_real_granules_inside_roots(data_root, monkeypatch):
    shutil.copytree(GPM_FIXTURES, data_root / "pps")
    cat = open_catalog()
    table = read(cat, "granules", granule_dir="pps")
    assert set(table["orbit"]) == {79, 144}
    cmb = next(p for p in table["path"] if "DPRGMI" in str(p))
    ds = read(cat, "granule", granule=str(cmb))
    assert ds.attrs["orbit_number"] == 144
    assert np.isfinite(ds.surface_precip.values).any()


def test_missing_model_output_is_explained(data_root):
    with pytest.raises(MissingOutput, match="raincheck infer --model unet-reference --orbit 20000"):
        read(open_catalog(), "model_output", model="unet-reference", orbit=20000)
    for bad in ("../../etc", "a/b", ".."):
        with pytest.raises(ValueError, match="invalid model name"):
            read(open_catalog(), "model_output", model=bad, orbit=20000)
    with pytest.raises(ValueError, match="invalid model name"):
        open_catalog().model_output.read(model="../x", orbit=20000)


def test_bbox_mask_crosses_antimeridian():
    m = bbox_mask((170, -10, -170, 10))
    lat = np.array([0, 0, 0, 0, 20])
    lon = np.array([175, -175, 180, 0, 175])
    np.testing.assert_array_equal(m(lat, lon), [True, True, True, False, False])
    with pytest.raises(ValueError, match="invalid box latitudes"):
        bbox_mask((0, 10, 10, -10))


def test_swath_points_span_the_swath():
    lat = np.linspace(-10, 10, 50)
    lon = np.zeros(50)
    plat, plon = swath_points(lat, lon, 442.5)
    width_deg = abs(plon[25, -1] - plon[25, 0])
    assert abs(width_deg * 111.2 - 885) < 15  # across-track on the equator ≈ 885 km


def test_orbit_index_global_counts_and_times():
    df = synthetic_orbits("2019-01-01", "2019-01-02")
    assert 15 <= len(df) <= 17  # ≈ 15.5 orbits a day
    assert (df.end_time > pd.Timestamp("2019-01-01")).all() and (df.start_time < pd.Timestamp("2019-01-02")).all()
    assert df.orbit.is_monotonic_increasing


def test_orbit_index_region_really_crossed(data_root):
    box = (170, -10, -170, 10)  # across the antimeridian
    df = synthetic_orbits("2019-01-01", "2019-01-03", bbox=box)
    assert 0 < len(df) < 31
    m = bbox_mask(box)
    for orbit in df.orbit[:3]:
        ds = read(open_catalog(), "swath", orbit=int(orbit))
        assert m(ds.lat.values, ds.lon.values).any(), f"orbit {orbit} listed but never crossed the box"
    # and some orbit of the period that is not listed does not cross it
    allorb = synthetic_orbits("2019-01-01", "2019-01-03")
    missing = sorted(set(allorb.orbit) - set(df.orbit))
    ds = read(open_catalog(), "swath", orbit=int(missing[0]))
    assert not m(ds.lat.values, ds.lon.values).any()


def test_orbit_index_errors():
    with pytest.raises(ValueError, match="empty period"):
        synthetic_orbits("2019-01-02", "2019-01-01")
    with pytest.raises(ValueError, match="outside the synthetic record"):
        synthetic_orbits("2200-01-01", "2200-01-02")


def test_cli_catalog_and_orbits():
    r = CliRunner().invoke(main, ["catalog", "list"])
    assert r.exit_code == 0 and "model_output" in r.output
    r = CliRunner().invoke(main, ["catalog", "show", "truth", "-p", "orbit=20000"])
    assert r.exit_code == 0 and "surface_precip_truth" in r.output
    r = CliRunner().invoke(main, ["catalog", "show", "nope"])
    assert r.exit_code != 0 and "no entry 'nope'" in r.output
    r = CliRunner().invoke(main, ["orbits", "--bbox", "170,-10,-170,10", "--start", "2019-01-01",
                                  "--end", "2019-01-02", "--json"])
    assert r.exit_code == 0, r.output
    assert len(pd.read_json(__import__("io").StringIO(r.output))) > 0
    r = CliRunner().invoke(main, ["orbits", "--bbox", "1,2,3", "--start", "2019-01-01", "--end", "2019-01-02"])
    assert r.exit_code != 0 and "lon0,lat0,lon1,lat1" in r.output

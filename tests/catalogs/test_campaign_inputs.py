"""Bad-input campaign, data-in layer: malformed and hostile inputs each get a clear error and
leave no partial output. Generated (hypothesis) and hand-made cases."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from catalogs import gpm, schema, store
from catalogs.catalog import CatalogError, open_catalog, read
from catalogs.config import PathOutsideRoots, confine

from tests.conftest import GPM_FIXTURES, make_tiny_swath

CMB = "2B.GPM.DPRGMI.CORRA2022.20140308-S220950-E234217.000144.V07A.HDF5"
DPR = "2A.GPM.DPR.V9-20211125.20140308-S220950-E234217.000144.V07A.HDF5"
FIXTURE_BYTES = {n: (GPM_FIXTURES / n).read_bytes() for n in (CMB, DPR)}
SLOW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# --- corrupted granules -----------------------------------------------------------------------

@SLOW
@given(name=st.sampled_from([CMB, DPR]), frac=st.floats(0.0, 0.98))
def test_truncated_granules_fail_clearly(tmp_path_factory, name, frac):
    data = FIXTURE_BYTES[name]
    path = tmp_path_factory.mktemp("trunc") / name
    path.write_bytes(data[: int(len(data) * frac)])
    with pytest.raises(gpm.GranuleError) as err:
        gpm.open_granule(path)
    assert name in str(err.value)


@SLOW
@given(name=st.sampled_from([CMB, DPR]), offset=st.integers(0, 2047),
       junk=st.binary(min_size=8, max_size=64))
def test_header_corruption_fails_clearly_or_reads_valid(tmp_path_factory, name, offset, junk):
    data = bytearray(FIXTURE_BYTES[name])
    data[offset: offset + len(junk)] = junk
    path = tmp_path_factory.mktemp("corrupt") / name
    path.write_bytes(bytes(data[: len(FIXTURE_BYTES[name])]))
    try:
        ds = gpm.open_granule(path)
    except gpm.GranuleError as e:
        assert name in str(e)
    else:  # the damage hit bytes that do not matter: what is returned is still a valid swath
        schema.validate(ds)


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"GIF89a" + b"\0" * 100, "not an HDF5 file"),
    (b"hello, I am a text file\n" * 10, "not an HDF5 file"),
    (b"\x89HDF\r\n\x1a\n", "HDF5"),  # a bare signature
])
def test_non_hdf5_contents(tmp_path, content, message):
    path = tmp_path / CMB
    path.write_bytes(content)
    with pytest.raises(gpm.GranuleError, match=message):
        gpm.open_granule(path)


@pytest.mark.parametrize("name", [
    "2A.GPM.Ku.V9-20211125.20140308-S220950-E234217.000144.V07A.HDF5",  # unsupported product
    "3B.GPM.IMERG.20140308-S220950-E234217.000144.V07A.HDF5",
    "../../2B.GPM.DPRGMI.CORRA2022.HDF5",
    "random.bin",
])
def test_unknown_products_and_names(tmp_path, name):
    path = tmp_path / Path(name).name
    shutil.copyfile(GPM_FIXTURES / CMB, path)
    with pytest.raises(gpm.GranuleError):
        gpm.open_granule(path)


def test_missing_file():
    with pytest.raises(gpm.GranuleError):
        gpm.open_granule(Path("/nonexistent") / CMB)


# --- brightness temperatures ------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([np.nan, np.inf, -np.inf, -9999.9, 0.0, 5.0, 400.0, 1e30, -1.0]),
                min_size=1, max_size=6),
       st.integers(0, 4 * 3 * 13 - 1))
def test_bad_tb_values_become_missing_and_flagged(bad_values, start):
    tc = np.full((4, 3, 13), 200.0)
    flat = tc.reshape(-1)
    for i, v in enumerate(bad_values):
        flat[(start + 7 * i) % flat.size] = v
    ds = make_tiny_swath(n_scans=4, n_pix=3, tc=tc)
    bad = ~np.isfinite(tc) | (tc < schema.TB_VALID_RANGE[0]) | (tc > schema.TB_VALID_RANGE[1])
    assert np.isnan(ds.Tc.values[bad]).all() and np.isfinite(ds.Tc.values[~bad]).all()
    assert ((ds.quality_flag.values & 3) > 0)[bad.any(-1)].all()


@pytest.mark.parametrize("shape", [(4, 3), (4, 3, 12), (4, 3, 14), (4, 3, 13, 1), (13,)])
def test_wrong_tb_shapes(shape):
    with pytest.raises(schema.SchemaError, match="Tc must be"):
        make_tiny_swath(n_scans=4, n_pix=3, tc=np.full(shape, 200.0))


@pytest.mark.parametrize("dtype", ["int16", "U3", "complex64", "datetime64[ns]"])
def test_wrong_tb_dtypes(tiny_swath, dtype):
    if dtype == "U3":
        bad = tiny_swath.assign(Tc=tiny_swath.Tc.astype(str))
    elif dtype == "datetime64[ns]":
        bad = tiny_swath.assign(Tc=(tiny_swath.Tc.dims, np.zeros(tiny_swath.Tc.shape, dtype), {"units": "K"}))
    else:
        bad = tiny_swath.assign(Tc=tiny_swath.Tc.fillna(0).astype(dtype).assign_attrs(units="K"))
    with pytest.raises(schema.SchemaError):
        schema.validate(bad)


def test_channels_in_the_wrong_order(tiny_swath):
    bad = tiny_swath.isel(pmw_frequency=list(range(12, -1, -1)))
    with pytest.raises(schema.SchemaError, match="must list the GMI channels"):
        schema.validate(bad)


# --- catalogue YAML -----------------------------------------------------------------------------

BAD_YAML = [
    ("", "not an Intake 2 catalogue|cannot open"),
    ("- a\n- b\n", "cannot open|not an Intake 2"),
    ("version: 2\nentries: {x: {reader: os:system, kwargs: {}}}\n", "cannot open|not an Intake 2"),
    ("version: 2\nentries: [unclosed\n", "cannot open"),
    ("\t\tversion: 2", "cannot open"),
    ("!!python/object/apply:os.system ['echo pwned']", "cannot open"),
    ("sources:\n  a: {driver: csv, args: {urlpath: x.csv}}\n", "cannot open|not an Intake 2"),
    ("version: 2\nentries: {a: 1}\n", "cannot open|not an Intake 2"),
]


@pytest.mark.parametrize("text, message", BAD_YAML)
def test_malformed_catalogues(tmp_path, text, message):
    p = tmp_path / "cat.yaml"
    p.write_text(text)
    with pytest.raises(CatalogError, match=message):
        open_catalog(p)
    assert not (tmp_path / "pwned").exists()


# --- paths that try to leave the roots ---------------------------------------------------------

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["..", ".", "a", "b", "~", "/", "etc", "passwd", "%2e%2e", "..\\.."]),
                min_size=1, max_size=8))
def test_generated_paths_never_escape(tmp_path_factory, parts):
    root = tmp_path_factory.mktemp("root")
    candidate = "/".join(parts)
    try:
        resolved = confine(candidate, [root])
    except PathOutsideRoots:
        return
    assert resolved == root.resolve() or resolved.is_relative_to(root.resolve())


@pytest.mark.parametrize("param, value", [
    ("granule", "/etc/passwd"), ("granule", "../../../../etc/shadow"), ("granule", "~/.bashrc"),
    ("granule_dir", "/"), ("granule_dir", ".."), ("granule_dir", "/proc/self"),
])
def test_catalogue_parameters_cannot_leave_roots(data_root, param, value):
    entry = "granule" if param == "granule" else "granules"
    with pytest.raises(PathOutsideRoots):
        read(open_catalog(), entry, **{param: value})


def test_symlinked_granule_pointing_outside(data_root):
    (data_root / CMB).symlink_to(GPM_FIXTURES / CMB)
    with pytest.raises(PathOutsideRoots):
        read(open_catalog(), "granule", granule=CMB)


# --- absurd requests ----------------------------------------------------------------------------

@pytest.mark.parametrize("orbit", [-10**7, 10**7, 2**63 - 1])
def test_orbit_far_out_of_range(orbit):
    with pytest.raises(ValueError, match="outside the synthetic record"):
        read(open_catalog(), "swath", orbit=orbit)


@pytest.mark.parametrize("orbit", ["abc", "1e3", "", None])
def test_orbit_not_a_number(orbit):
    with pytest.raises((ValueError, TypeError)):
        read(open_catalog(), "swath", orbit=orbit)


def test_store_write_failure_leaves_nothing(tmp_path, tiny_swath):
    bad = tiny_swath.assign_attrs(history=object())  # cannot be encoded: fails mid-write
    for suffix in (".zarr", ".nc"):
        with pytest.raises((TypeError, ValueError)):
            store.write_dataset(bad, tmp_path / f"x{suffix}")
    assert list(tmp_path.iterdir()) == []

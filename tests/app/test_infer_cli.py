"""`raincheck infer` beyond one synthetic orbit: real granules through the same pipeline, and
batches over orbit lists and periods."""

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from app.cli import main
from catalogs import store
from catalogs.outputs import output_path
from models.registry import get_card

from tests.conftest import GPM_FIXTURES

CMB = "2B.GPM.DPRGMI.CORRA2022.20140308-S220950-E234217.000144.V07A.HDF5"
DPR = "2A.GPM.DPR.V9-20211125.20140308-S220950-E234217.000144.V07A.HDF5"


def test_real_granule_flows_through_inference(data_root):
    shutil.copyfile(GPM_FIXTURES / CMB, data_root / CMB)
    r = CliRunner().invoke(main, ["infer", "--model", "unet-reference", "--granule", str(data_root / CMB),
                                  "--device", "cpu"])
    assert r.exit_code == 0, r.output
    path = output_path("unet-reference", get_card("unet-reference").checkpoint_sha256, 144, "pps-2B-CMB",
                       store.file_sha256(data_root / CMB))  # keyed by the granule's content
    assert store.is_complete(path)
    ds = store.open_dataset(path)
    assert ds.attrs["orbit_number"] == 144 and ds.precip_mean.shape == (10, 10)
    # the cut has no pixel with all 13 channels: missing output everywhere, and the CLI says why
    assert np.isnan(ds.precip_mean.values).all()
    assert "no pixel of this granule has all 13 channels valid" in r.output
    r2 = CliRunner().invoke(main, ["infer", "--model", "unet-reference", "--granule", str(data_root / CMB)])
    assert "cache hit" in r2.output


def test_granule_errors(data_root):
    shutil.copyfile(GPM_FIXTURES / DPR, data_root / DPR)
    r = CliRunner().invoke(main, ["infer", "--model", "unet-reference", "--granule", str(data_root / DPR)])
    assert r.exit_code != 0 and "needs brightness temperatures" in r.output
    r = CliRunner().invoke(main, ["infer", "--model", "unet-reference", "--granule", str(GPM_FIXTURES / CMB)])
    assert r.exit_code != 0 and "outside the configured data roots" in r.output
    r = CliRunner().invoke(main, ["infer", "--model", "unet-reference"])
    assert r.exit_code != 0 and "exactly one of" in r.output


@pytest.mark.slow
def test_batch_over_orbits_inline(data_root):
    r = CliRunner().invoke(main, ["infer", "--model", "unet-reference", "--orbits", "20020:20021", "--inline",
                                  "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "2 computed, 0 cache hits, 0 failed" in r.output
    r = CliRunner().invoke(main, ["infer", "--model", "unet-reference", "--orbits", "20020,20021,99999999",
                                  "--inline"])
    assert r.exit_code == 1 and "0 computed, 2 cache hits, 1 failed" in r.output and "orbit 99999999" in r.output

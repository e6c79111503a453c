"""Model outputs are found by exact identity (model name and checkpoint hash), never by prefix:
a name that is not a registered model reads nothing, and a user model whose name extends a
shipped one (``unet-reference-v2``) never shadows the shipped model's outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from app import data
from app.cli import main
from app.state import Selection
from app.swath import load
from catalogs.catalog import open_catalog, read
from catalogs.readers import AmbiguousOutput, MissingOutput, find_output
from models.registry import get_card
from tests.app_helpers import orbit_like_swath, register_card, write_retrieval

ORBIT = 20003
V2_SHA = "ab" * 32


@pytest.fixture
def env(data_root):
    for memo in (data._swaths, data._outputs, data._geoms):
        memo.clear()
    yield data_root
    for memo in (data._swaths, data._outputs, data._geoms):
        memo.clear()


def _ref_sha():
    return get_card("unet-reference").checkpoint_sha256


def _mean(ds):
    return float(np.nanmean(ds["precip_mean"].values))


def test_a_name_that_is_a_prefix_of_a_model_reads_nothing(env):
    sw = orbit_like_swath(n_scans=30, n_pix=9, orbit=ORBIT)
    write_retrieval(sw, model="unet-reference", sha=_ref_sha())  # where `raincheck infer` writes it
    r = CliRunner().invoke(main, ["catalog", "show", "model_output", "-p", "model=unet", "-p", f"orbit={ORBIT}"])
    assert r.exit_code != 0
    assert "no model named exactly 'unet' has stored outputs" in r.output
    assert "unet-reference" in r.output and "Dimensions" not in r.output and "Traceback" not in r.output
    # the exact name reads it
    r = CliRunner().invoke(main, ["catalog", "show", "model_output", "-p", "model=unet-reference",
                                  "-p", f"orbit={ORBIT}"])
    assert r.exit_code == 0 and "precip_mean" in r.output, r.output
    # the app refuses a name that is not a registered model, and never reports it as stored
    with pytest.raises(data.DataError, match="'unet' is not a registered model"):
        data.load_output(None, "unet", ORBIT)
    assert not data.output_stored("unet", ORBIT) and data.output_stored("unet-reference", ORBIT)


def test_user_model_extending_a_shipped_name_does_not_shadow_it(env, tmp_path):
    sel = Selection(orbit=ORBIT, models=["unet-reference"], layers=["reference"])
    sw, _, _ = load(sel)
    write_retrieval(sw, model="unet-reference", sha=_ref_sha(), seed=1)
    # a user model `unet-reference-v2` (its card in the data root), its output written last (newest)
    write_retrieval(sw, model="unet-reference-v2", sha=V2_SHA, seed=2)
    assert get_card("unet-reference-v2").checkpoint_sha256 == V2_SHA
    ref = xr.open_zarr(find_output("unet-reference", ORBIT, sha256=_ref_sha())).load()
    v2 = xr.open_zarr(find_output("unet-reference-v2", ORBIT, sha256=V2_SHA)).load()
    assert ref.attrs["model"] == "unet-reference" and v2.attrs["model"] == "unet-reference-v2"
    assert abs(_mean(ref) - _mean(v2)) > 1e-3

    got = data.load_output(None, "unet-reference", ORBIT)
    assert got.attrs["model_sha256"] == _ref_sha() and _mean(got) == pytest.approx(_mean(ref))
    assert find_output("unet-reference", ORBIT).parent.parent.name == f"unet-reference-{_ref_sha()[:12]}"

    out = tmp_path / "export"
    r = CliRunner().invoke(main, ["export", "--view", "swath", "--orbit", str(ORBIT), "--models", "unet-reference",
                                  "--layers", "reference", "--format", "png", "--out", str(out)])
    assert r.exit_code == 0, r.output
    man = json.loads(next(out.glob("*.json")).read_text())
    assert man["model_outputs"]["unet-reference"]["model_sha256"] == _ref_sha()
    assert man["models"][0]["checkpoint_sha256"] == _ref_sha()
    with xr.open_dataset(next(out.glob("*.nc")), engine="h5netcdf") as nc:
        exported = nc["unet_reference_precip_mean"].values
    np.testing.assert_allclose(np.nanmean(exported), _mean(ref), rtol=1e-6)


def test_two_checkpoints_of_one_name_need_a_hash(env):
    sw = orbit_like_swath(n_scans=30, n_pix=9, orbit=ORBIT)
    old, new = "12" * 32, "34" * 32
    write_retrieval(sw, model="my-model", sha=old, seed=1)
    write_retrieval(sw, model="my-model", sha=new, seed=2)  # retrained: the card now names `new`
    with pytest.raises(AmbiguousOutput, match="2 checkpoints of model 'my-model'"):
        find_output("my-model", ORBIT)
    r = CliRunner().invoke(main, ["catalog", "show", "model_output", "-p", "model=my-model", "-p", f"orbit={ORBIT}"])
    assert r.exit_code != 0 and "sha256" in r.output and "Traceback" not in r.output
    cat = open_catalog()
    for sha in (old, new):
        ds = read(cat, "model_output", model="my-model", orbit=ORBIT, sha256=sha[:12])
        assert ds.attrs["model_sha256"] == sha
    assert data.load_output(None, "my-model", ORBIT).attrs["model_sha256"] == new  # the card's checkpoint
    with pytest.raises(MissingOutput, match="checkpoint 5656565656"):
        find_output("my-model", ORBIT, sha256="56" * 32)
    r = CliRunner().invoke(main, ["catalog", "show", "model_output", "-p", "model=my-model", "-p", f"orbit={ORBIT}",
                                  "-p", "sha256=xyz"])
    assert r.exit_code != 0 and "invalid checkpoint hash 'xyz'" in r.output


def test_a_store_holding_another_models_data_is_not_read(env):
    sw = orbit_like_swath(n_scans=30, n_pix=9, orbit=ORBIT)
    path = write_retrieval(sw, model="my-model", sha="12" * 32)
    # someone copied another model's store under this model's folder
    other = write_retrieval(sw, model="other-model", sha="34" * 32)
    import shutil

    shutil.rmtree(path)
    shutil.copytree(other, path)
    with pytest.raises(MissingOutput, match="holds 'other-model'"):
        read(open_catalog(), "model_output", model="my-model", orbit=ORBIT)
    register_card("my-model", "12" * 32)
    with pytest.raises(data.MissingModelOutput, match="holds 'other-model'"):
        data.load_output(None, "my-model", ORBIT)

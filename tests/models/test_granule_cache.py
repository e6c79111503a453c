"""The inference cache of real granules is keyed by the file's content (sha256), not its name:
two different granules with the same file name in two folders get their own results, and the
same content anywhere is a cache hit."""

from __future__ import annotations

import os
import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from app.cli import main
from catalogs import store
from catalogs.outputs import output_path
from models.registry import get_card

from tests.conftest import GPM_FIXTURES

CMB = "2B.GPM.DPRGMI.CORRA2022.20140308-S220950-E234217.000144.V07A.HDF5"


def _granule(folder, tb: float):
    """The real 2B-CMB cut with its simulated Tb set around ``tb`` K (all 13 channels valid)."""
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / CMB
    shutil.copyfile(GPM_FIXTURES / CMB, dst)
    os.chmod(dst, 0o644)
    with h5py.File(dst, "r+") as f:
        d = f["KuGMI/simulatedBrightTemp"]
        d[...] = (tb + 20 * np.random.default_rng(int(tb)).random(d.shape)).astype(np.float32)
    return dst


def _infer(path):
    r = CliRunner().invoke(main, ["infer", "--model", "unet-reference", "--granule", str(path), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    return r.output


def _mean(path):
    ds = store.open_dataset(path)
    return float(np.nanmean(ds["precip_mean"].values))


def test_same_name_in_two_folders_are_two_results(data_root):
    a, b = _granule(data_root / "a", 180.0), _granule(data_root / "b", 260.0)
    sha = get_card("unet-reference").checkpoint_sha256
    out_a = output_path("unet-reference", sha, 144, "pps-2B-CMB", store.file_sha256(a))
    out_b = output_path("unet-reference", sha, 144, "pps-2B-CMB", store.file_sha256(b))
    assert out_a != out_b
    assert "wrote" in _infer(a)
    r = _infer(b)
    assert "cache hit" not in r and "wrote" in r
    assert store.is_complete(out_a) and store.is_complete(out_b)
    assert store.read_marker(out_b)["input_sha256"] == store.file_sha256(b)
    ma, mb = _mean(out_a), _mean(out_b)
    assert np.isfinite(ma) and np.isfinite(mb) and abs(ma - mb) > 1e-3
    # the same content anywhere is the same result
    c = data_root / "c" / CMB
    c.parent.mkdir()
    shutil.copyfile(a, c)
    assert f"cache hit: {out_a}" in _infer(c)
    # a file rewritten in place is a new input
    shutil.copyfile(b, a)
    assert f"cache hit: {out_b}" in _infer(a)


def test_content_hash_is_memoised_and_follows_changes(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"x" * 3_000_000)
    h = store.file_sha256(p)
    import hashlib

    assert h == hashlib.sha256(p.read_bytes()).hexdigest() and store.file_sha256(p) == h
    p.write_bytes(b"y" * 3_000_000)
    assert store.file_sha256(p) == hashlib.sha256(p.read_bytes()).hexdigest() != h
    with pytest.raises(FileNotFoundError):
        store.file_sha256(tmp_path / "missing")

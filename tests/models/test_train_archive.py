"""Training on a PPS archive (issue 16 item 3): `raincheck train archive-tiny --archive PATH` on
PPS-format granules written in the test (catalogs.pps), checked against the simulator's known truth."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from app.cli import main
from catalogs import pairs, pps
from catalogs.catalog import DEMO_CATALOG
from catalogs.simulator import simulate_orbit
from catalogs.store import is_complete, open_dataset
from models.config import load_config, parse_config
from models.errors import ModelError
from models.inference import invalid_tb_mask
from models.quantiles import QuantileDistribution
from models.registry import get_card, load_model, training_domain
from models.train import train
from models.training.data import archive_root, build_training_set, data_key
from models.training.scoring import predict_scenes
from models.training.state import load_state, save_state
from models.unet import pinball_loss
from models.unet_retriever import build_unet

N_SCANS = 300
#: (first day, last day, orbits): four training orbits in four months, March (validation) and September (test)
MONTHS = [("2019-01-01", "2019-01-31", 1), ("2019-04-01", "2019-04-30", 1), ("2019-06-01", "2019-06-30", 1),
          ("2019-11-01", "2019-11-30", 1), ("2019-03-01", "2019-03-31", 1), ("2019-09-01", "2019-09-30", 1)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """An archive of six short orbits under the data root, archive-tiny trained on it by the CLI."""
    root = tmp_path_factory.mktemp("archive-root")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAINCHECK_DATA_ROOT", str(root))
        mp.delenv("RAINCHECK_READ_ROOTS", raising=False)
        orbits = sorted(o for a, b, n in MONTHS for o in pps.archive_orbits(a, b, n))
        pps.make_archive(root / "pps", orbits, n_scans=N_SCANS)
        r = CliRunner().invoke(main, ["train", "archive-tiny", "--archive", str(root / "pps"),
                                      "--set", "training.epochs=1"])
        assert r.exit_code == 0, r.output
        cfg = load_config("archive-tiny")
        cfg["data"]["archive"] = {"granule_dir": str(root / "pps")}
        yield {"root": root, "archive": root / "pps", "orbits": orbits, "config": cfg, "output": r.output,
               "card": get_card("archive-tiny")}


def _month(orbit: int, index) -> int:
    return int(index.set_index("orbit").loc[orbit, "start"].month)


def test_card_says_archive(run):
    card = run["card"]
    td = card.training_data
    assert td["kind"] == "archive" and training_domain(card) == "archive"
    assert td["granule_dir"] == str(run["archive"]) and td["archive_folder"] == str(run["archive"])
    assert td["reference"] == "2B-CMB"
    assert td["held_out_months"] == [3, 9]
    assert td["months"] == {"train": [1, 2, 4, 5, 6, 7, 8, 10, 11, 12], "validation": [3], "test": [9]}
    assert td["orbits"] == {"train": 4, "validation": 1, "test": 1}  # what the archive had, not the 8 asked
    assert td["orbits_requested"]["train"] == 8
    assert card.training["source"].startswith(f"archive {run['archive']}")
    assert "simulator" not in card.training
    assert card.config["training"]["epochs"] == 1 and len(card.training["history"]) == 1  # --set
    assert card.training["command"].endswith("--set training.epochs=1")
    # the shipped cards predate the field: derived from their config
    assert training_domain(get_card("unet-reference")) == "synthetic"
    assert "training_data" not in get_card("unet-reference").to_dict()  # a re-saved old card stays as it was
    shown = CliRunner().invoke(main, ["models", "show", "archive-tiny"])
    assert shown.exit_code == 0, shown.output
    d = yaml.safe_load(shown.output)
    assert d["training_data"]["kind"] == "archive" and d["training_data"]["held_out_months"] == [3, 9]
    ref = yaml.safe_load(CliRunner().invoke(main, ["models", "show", "unet-reference"]).output)
    assert ref["training_data"]["kind"] == "synthetic" and ref["training_data"]["world"] == "today"


def test_held_out_months_never_in_train(run):
    index = pairs.archive_index(run["archive"])
    months = {}
    for split in ("train", "validation", "test"):
        ds = open_dataset(build_training_set(run["config"], split))  # cached by the run
        months[split] = {_month(int(o), index) for o in np.unique(ds["orbit"].values)}
        assert ds.attrs["reference"] == "2B-CMB"
    assert months["validation"] == {3} and months["test"] == {9}
    assert months["train"] == {1, 4, 6, 11}
    # a config whose training period takes a held-out month is refused before anything is built
    leaky = copy.deepcopy(run["config"])
    leaky["data"]["train"]["exclude_months"] = [3]
    with pytest.raises(ModelError, match=r"data.test .* and data.train .* share 1 archive orbit"):
        build_training_set(leaky, "train")


def test_scenes_are_the_known_truth(run):
    """Scenes cut from the archive are the simulated orbit at the recorded scans: Tb to float16
    precision, the CMB reference equal to the simulator's radar reference on rainy pixels."""
    ds = open_dataset(build_training_set(run["config"], "test"))
    assert ds.sizes["scene"] == 2
    rainy = agree = 0
    for k in range(ds.sizes["scene"]):
        orbit, s = int(ds["orbit"][k]), int(ds["start_scan"][k])
        sim = simulate_orbit(orbit, world_seed=0, n_scans=N_SCANS)
        n = ds.sizes["along_track"]
        tc_sim = sim["Tc"].transpose("along_track", "cross_track", "pmw_frequency").values[s:s + n]
        tc = ds["Tc"].values[k].astype(np.float32)
        ok = ~invalid_tb_mask(tc)
        assert ok.mean() > 0.95
        np.testing.assert_allclose(tc[ok], tc_sim[ok], atol=0.13)  # float16 at 300 K: 0.125 K steps
        ref, ref_sim = ds["surface_precip"].values[k], sim["surface_precip"].values[s:s + n]
        assert np.isfinite(ref).all(axis=1).sum() == 0  # the reference is the central strip only
        assert np.isfinite(ref).any(axis=1).all()  # ... on every scan of the scene
        wet = np.isfinite(ref) & np.isfinite(ref_sim) & (ref_sim > 0.1)
        rainy += int(wet.sum())
        agree += int((np.abs(ref[wet] - ref_sim[wet]) <= 1e-3 * np.maximum(1, ref_sim[wet])).sum())
    assert rainy > 50
    # the round trip GMI pixel -> 5 km CMB footprint -> nearest GMI pixel gives a few % of rainy pixels
    # a neighbour's value (97 % agree on these orbits); one scan off, < 1 % would
    assert agree / rainy > 0.95


def test_scores_are_against_cmb(run):
    """The card's test scores, recomputed from the CMB granules read afresh (not the cached set)."""
    res = run["card"].metrics["test_2019"]
    assert res["reference"] == "2B-CMB" and res["orbits"] == 1
    ds = open_dataset(build_training_set(run["config"], "test"))
    index = pairs.archive_index(run["archive"]).set_index("orbit")
    model = load_model("archive-tiny")
    tcs, refs = [], []
    for k in range(ds.sizes["scene"]):
        orbit, s = int(ds["orbit"][k]), int(ds["start_scan"][k])
        sw = pairs.open_pair(index.loc[orbit, "1C-GMI"], index.loc[orbit, "2B-CMB"])
        n = ds.sizes["along_track"]
        tc = sw["Tc"].transpose("along_track", "cross_track", "pmw_frequency").values[s:s + n]
        ref = sw["surface_precip"].values[s:s + n].copy()
        ref[invalid_tb_mask(tc)] = np.nan
        tcs.append(tc)
        refs.append(ref)
    tc, ref = np.stack(tcs), np.stack(refs)
    strip = np.isfinite(ref)
    assert res["pixels"] == int(strip.sum()) > 1000
    q = predict_scenes(model, tc.astype(np.float16), strip_only=strip.any(axis=(0, 1)))
    mean = QuantileDistribution(q[strip], model.levels).mean()
    cmb = ref[strip].astype(np.float64)
    m = res["archive-tiny"]
    assert m["n"] == cmb.size
    assert m["mse"] == pytest.approx(np.mean((mean - cmb) ** 2), rel=1e-3)
    assert m["bias_pct"] == pytest.approx(100 * (mean.mean() - cmb.mean()) / cmb.mean(), rel=1e-3, abs=1e-3)
    assert m["correlation"] == pytest.approx(np.corrcoef(mean, cmb)[0, 1], rel=1e-3)
    assert "test_2019: " in run["output"] and "archive-tiny" in run["output"]


def test_changed_archive_changes_the_key(run):
    cfg = run["config"]
    key = data_key(cfg["data"])
    assert data_key(cfg["data"]) == key
    index = pairs.archive_index(run["archive"])
    cmb = Path(index["2B-CMB"][0])
    st = cmb.stat()
    try:
        os.utime(cmb, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        assert data_key(cfg["data"]) != key
    finally:
        os.utime(cmb, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert data_key(cfg["data"]) == key


def test_catalogue_entry_names_the_archive(run, tmp_path):
    doc = yaml.safe_load(DEMO_CATALOG.read_text())
    doc["user_parameters"]["granule_dir"]["default"] = str(run["archive"])
    cat = run["root"] / "my-catalog.yaml"
    cat.write_text(yaml.safe_dump(doc, sort_keys=False))
    data = {**run["config"]["data"], "archive": {"catalog": str(cat), "entry": "granules"}}
    assert archive_root(data) == run["archive"]
    with pytest.raises(ModelError, match=r"data.archive.catalog: .*no entry 'nope'"):
        archive_root({**data, "archive": {"catalog": str(cat), "entry": "nope"}})


def test_loss_counts_only_the_reference(run):
    """The training loss is the pinball loss over the pixels with a CMB value only (NaN elsewhere)."""
    ds = open_dataset(build_training_set(run["config"], "train"))
    ref = ds["surface_precip"].values[:2]
    assert 0 < np.isfinite(ref).mean() < 0.5  # the central strip
    levels = np.asarray(run["config"]["quantile_levels"])
    pred = np.random.default_rng(0).gamma(0.5, 1.0, (2, levels.size, *ref.shape[1:])).astype(np.float32)
    got = float(pinball_loss(torch.from_numpy(pred), torch.from_numpy(ref), torch.tensor(levels, dtype=torch.float32)))
    ok = np.isfinite(ref)
    diff = ref[:, None] - pred
    tau = levels[None, :, None, None]
    want = np.maximum(tau * diff, (tau - 1) * diff).mean(axis=1)[ok].mean()
    assert got == pytest.approx(want, rel=1e-5)


def test_resume_only_on_the_same_data(tmp_path):
    """A run's saved state is resumed only by a run on the same scene sets (not by the same config pointed
    at another archive)."""
    cfg = load_config("tiny")
    net = build_unet(cfg)
    opt = torch.optim.AdamW(net.parameters())
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=4)
    save_state(tmp_path, net, opt, sched, 0, 1.0, 1, [], data_key="a" * 16)
    assert load_state(tmp_path, net, opt, sched, "b" * 16) is None
    assert load_state(tmp_path, net, opt, sched, "a" * 16)["epoch"] == 0


def test_train_set_option_checked(run):
    r = CliRunner().invoke(main, ["train", "archive-tiny", "--set", "data.test.months=[13]"])
    assert r.exit_code != 0 and "with --set: field data.test.months must be a non-empty list of months" in r.output
    r = CliRunner().invoke(main, ["train", "archive-tiny", "--set", "data.tset.months=[9]"])
    assert r.exit_code != 0 and "unknown key 'data.tset'; did you mean 'test'?" in r.output
    r = CliRunner().invoke(main, ["train", "archive-tiny", "--set", "epochs"])
    assert r.exit_code == 2 and "expected KEY=VALUE" in r.output


# ------------------------------------------------------------------------------ bad archives
def _bad(run, tmp_path, monkeypatch, change) -> tuple[dict, Path]:
    """A copy of the run's archive, broken by ``change(folder, index)``, and archive-tiny pointed at it
    (a fresh data root: nothing cached)."""
    monkeypatch.setenv("RAINCHECK_DATA_ROOT", str(tmp_path))
    folder = tmp_path / "bad"
    shutil.copytree(run["archive"], folder)
    change(folder, pairs.archive_index(folder))
    cfg = copy.deepcopy(run["config"])
    cfg["data"]["archive"] = {"granule_dir": str(folder)}
    cfg["training"]["epochs"] = 1
    return cfg, folder


def _nothing_written(root: Path) -> None:
    """No model folder, and no scene set that is not complete (a finished split's set is a valid cache)."""
    assert not (root / "models" / "archive-tiny").exists()
    for p in root.glob("training/*/*"):
        assert p.suffix == ".zarr" and is_complete(p), p


def test_1c_without_cmb(run, tmp_path, monkeypatch):
    def drop(folder, index):
        Path(index["2B-CMB"][index["start"].dt.month == 6].iloc[0]).unlink()

    cfg, folder = _bad(run, tmp_path, monkeypatch, drop)
    with pytest.raises(ModelError, match=r"no 2B-CMB granule .* for 1 1C-GMI granule\(s\) of data.train: 1C\.GPM"):
        train(cfg)
    _nothing_written(tmp_path)


def test_cmb_of_another_orbit(run, tmp_path, monkeypatch):
    """The test orbit's CMB replaced by another orbit's file under its name: found when the pair is
    opened, before any model is written (the held-out sets are built before training)."""
    def swap(folder, index):
        test = index[index["start"].dt.month == 9].iloc[0]
        other = index[index["start"].dt.month == 1].iloc[0]
        shutil.copyfile(other["2B-CMB"], test["2B-CMB"])

    cfg, folder = _bad(run, tmp_path, monkeypatch, swap)
    # (the file's name says the test orbit; its own FileHeader says the other orbit)
    with pytest.raises(ModelError, match=r"orbit (\d+) of data.test: 2B\.GPM\.\S+\.0*\1\.V07A\.HDF5: the file name says "
                                         r"orbit \1 but its FileHeader says GranuleNumber=\d+"):
        train(cfg)
    _nothing_written(tmp_path)


def test_no_granule_in_the_period(run, tmp_path, monkeypatch):
    cfg, folder = _bad(run, tmp_path, monkeypatch, lambda folder, index: None)
    cfg["data"]["test"]["months"] = [12]
    cfg["data"]["train"]["exclude_months"] = [3, 9, 12]
    with pytest.raises(ModelError, match=r"archive .*bad: no 1C-GMI granule for data.test \(.*months \[12\]\)"):
        train(cfg)
    _nothing_written(tmp_path)


def test_archive_outside_the_roots(run, tmp_path, monkeypatch):
    monkeypatch.setenv("RAINCHECK_DATA_ROOT", str(tmp_path / "elsewhere"))
    with pytest.raises(ModelError, match=r"data.archive.granule_dir: .*outside the configured data roots"):
        train(run["config"])
    r = CliRunner().invoke(main, ["train", "tiny", "--archive", str(run["archive"])])
    assert r.exit_code != 0 and "--archive is for a config that trains on an archive" in r.output


@pytest.mark.parametrize("change, message", [
    (lambda d: d["archive"].update(catalog="c.yaml"), r"data.archive needs exactly one of granule_dir .* got "
                                                      r"granule_dir, catalog"),
    (lambda d: d.update(reference="2A-DPR"), r"field data.reference must be one of 2B-CMB"),
    (lambda d: d.update(world_seed=3), r"field data.world_seed is for the synthetic world"),
    (lambda d: d["test"].update(months=[13]), r"field data.test.months must be a non-empty list of months 1..12"),
    (lambda d: d["train"].update(start="2019-13-01"), r"field data.train.start must be an ISO date"),
    (lambda d: d["train"].update(end="2018-12-31"), r"field data.train.end \(2018-12-31\) is before"),
    (lambda d: d.pop("archive") and d.pop("reference"), r"field data.train.exclude_months is for an archive"),
])
def test_data_section_checked(change, message):
    cfg = load_config("archive-tiny")
    change(cfg["data"])
    with pytest.raises(ModelError, match=message):
        parse_config(cfg)


def test_research_configs_on_an_archive_are_checked_first(run, tmp_path, monkeypatch):
    """A research U-Net (a tail-sensitive loss) on a broken archive stops before anything is trained;
    hybrid training, which needs the synthetic world's simulated source, is refused on an archive."""
    def drop(folder, index):
        Path(index["2B-CMB"][index["start"].dt.month == 9].iloc[0]).unlink()  # the test orbit's CMB

    cfg, folder = _bad(run, tmp_path, monkeypatch, drop)
    cfg["name"] = "archive-tiny"
    cfg["loss"] = {"type": "twcrps", "thresholds": [0.0, 5.0], "threshold_weights": [1.0, 1.0]}
    assert parse_config(cfg).research
    with pytest.raises(ModelError, match=r"no 2B-CMB granule .* of data.test"):
        train(cfg)
    _nothing_written(tmp_path)
    hyb = copy.deepcopy(cfg)
    del hyb["loss"]
    hyb["hybrid"] = {"ratio": 0.3}
    with pytest.raises(ModelError, match="hybrid training on a PPS archive is not supported"):
        train(hyb)


def test_archive_scenes_lie_inside_the_reference_run_or_the_orbit_is_named_short():
    """An archive orbit's scenes start inside its longest run of scans with the reference (the
    CMB ends ~35 scans before a granule does); a run shorter than a scene gives the reason the
    build reports for that orbit instead of scenes."""
    from types import SimpleNamespace

    from models.training.data import _orbit_scenes
    from tests.conftest import make_tiny_swath

    sw = make_tiny_swath(n_scans=40)
    ref = np.full((40, 9), np.nan, np.float32)
    ref[5:25, 3:6] = 1.0  # 20 scans with the reference, one gap-free run
    sw["surface_precip"] = (("along_track", "cross_track"), ref)
    d = SimpleNamespace(seed=0, orbit_scans=2900)
    tc, got_ref, st, starts = _orbit_scenes(7, lambda o, n: sw, d, 8, 2, archive=True)
    assert starts and all(5 <= s and s + 8 <= 25 for s in starts), starts
    assert tc.shape == (40, 9, 13) and st.shape == (40, 9)
    assert np.isnan(got_ref[:5]).all() and np.isfinite(got_ref[5:25, 3:6]).all()
    assert _orbit_scenes(7, lambda o, n: sw, d, 24, 2, archive=True) == "20 scans with the reference"

"""Typed configs: every shipped config loads, defaults live in one place, ``inherit`` is resolved at
load for every trainer, an unknown key is refused naming the file, the key and the nearest name."""

from __future__ import annotations

import pytest
import yaml

from models.base import ModelError
from models.config import CONFIG_DIR, ModelConfig, TrainingConfig, load_config, load_typed, parse_config
from models.registry import SHIPPED_DIR, load_config as registry_load_config, read_card

SHIPPED = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_loads(name):
    cfg = load_config(name)
    typed = load_typed(name)
    assert isinstance(typed, ModelConfig) and typed.name == cfg["name"] == name
    assert typed.data.train is not None and typed.data.validation is not None, "no training data after inherit"
    # the values written in the YAML are the values the trainers read
    raw = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())
    for key, value in (raw.get("training") or {}).items():
        assert getattr(typed.training, key) == value


@pytest.mark.parametrize("name", sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / "card.yaml").is_file()))
def test_shipped_cards_configs_are_valid_configs(name):
    card = read_card(SHIPPED_DIR / name)
    parse_config(card.config, f"model card {name}")


def test_inherit_is_resolved_at_load_for_every_trainer():
    ref = load_config("unet-reference")
    for name in ("unet-hybrid", "unet-density", "unet-climate"):
        cfg = registry_load_config(name)  # what `raincheck train` reads
        for key in ("channels", "quantile_levels", "network", "inference", "data"):
            assert cfg[key] == ref[key], (name, key)
    flow = load_config("flow-residual")
    assert flow["data"] == ref["data"] and flow["channels"] == ref["channels"]
    assert "network" not in flow and "quantile_levels" not in flow  # a flow has its own


def test_one_set_of_defaults():
    d = parse_config({"name": "x", "kind": "unet"})
    assert d.training == TrainingConfig()
    assert (d.training.epochs, d.training.lr, d.training.batch_size) == (10, 2e-3, 8)
    assert d.data.orbit_scans == 2900 and d.data.source == "observed"
    from models.config import LOSS_TYPES
    from models.losses import ResearchLoss

    assert LOSS_TYPES == ResearchLoss.TYPES


def _write(tmp_path, text):
    p = tmp_path / "mine.yaml"
    p.write_text(text)
    return p


def test_unknown_key_is_refused_with_the_nearest_name(tmp_path):
    p = _write(tmp_path, "name: mine\nkind: unet\ntraining: {epoch: 3}\n")
    with pytest.raises(ModelError) as e:
        load_config(p)
    msg = str(e.value)
    assert str(p) in msg and "'training.epoch'" in msg and "did you mean 'epochs'" in msg
    p = _write(tmp_path, "name: mine\nkind: unet\nnetwrok: {base: 4}\n")
    with pytest.raises(ModelError, match=r"unknown key 'netwrok'; did you mean 'network'"):
        load_config(p)
    p = _write(tmp_path, "name: mine\nkind: unet\ndata: {train: {start: 2015-01-01, end: 2015-02-01, orbit: 2}}\n")
    with pytest.raises(ModelError, match=r"'data.train.orbit'; did you mean 'orbits'"):
        load_config(p)


def test_wrong_types_and_values_are_refused(tmp_path):
    for text, pattern in (("training: {lr: fast}", r"field training.lr must be float, got 'fast'"),
                          ("training: {flip: 1}", r"field training.flip must be bool"),
                          ("training: {epochs: 2.5}", r"training.epochs must be an integer"),
                          ("network: {base: 100000}", r"network.base = 100000 is out of range"),
                          ("loss: {type: huber}", r"loss.type must be one of"),
                          ("training: 5", r"field training must be a mapping")):
        p = _write(tmp_path, f"name: mine\nkind: unet\n{text}\n")
        with pytest.raises(ModelError, match=pattern):
            load_config(p)
    p = _write(tmp_path, "name: mine\nkind: unet\ninherit: nothing-like-it\n")
    with pytest.raises(ModelError, match="config 'nothing-like-it' not found"):
        load_config(p)


def test_inherit_loop_is_refused(tmp_path, monkeypatch):
    import models.config as mc

    (tmp_path / "a.yaml").write_text("name: a\nkind: unet\ninherit: b\n")
    (tmp_path / "b.yaml").write_text("name: b\nkind: unet\ninherit: a\n")
    monkeypatch.setattr(mc, "CONFIG_DIR", tmp_path)
    with pytest.raises(ModelError, match="loops back"):
        load_config("a")

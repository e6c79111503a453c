"""The command-line campaign (issue 12): bad values and broken models give a clear message that
names the bad value, a non-zero exit and nothing written to the data root; never a traceback,
never a silent wrong result."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from app.cli import main

RECORD = "-91843..265994"  # catalogs.simulator.geometry.ORBIT_RANGE


def _files(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def _refused(args, *needles, root: Path):
    """Run the CLI; assert a clean refusal (exit != 0, no traceback) naming every needle and
    that no file in ``root`` appeared or changed."""
    before = _files(root)
    r = CliRunner().invoke(main, [str(a) for a in args])
    out = r.output
    assert r.exit_code != 0, out
    assert isinstance(r.exception, SystemExit), f"uncaught {r.exception!r}\n{out}"
    assert "Traceback" not in out
    for n in needles:
        assert n in out, f"{n!r} not in:\n{out}"
    assert _files(root) == before, "the refusal wrote to the data root"
    return out


# --- climatology build: every value checked before anything is computed or written ------------

@pytest.mark.parametrize("args, needles", [
    (["--record", "--years", "abc"], ["--years", "'abc'"]),
    (["--record", "--years", "2016-2015"], ["'2016-2015' ends before it starts"]),
    (["--record", "--years", "1900-1910"], ["'1900-1910' is outside the synthetic record (1998-2060)"]),
    (["--record", "--per-month", "-1"], ["--per-month", "-1 is not in the range"]),
    (["--orbits", "10:0"], ["--orbits", "'10:0' ends before it starts"]),
    (["--orbits", "20000:20001:0"], ["step must be at least 1"]),
    (["--orbits", "20000:abc"], ["'20000:abc' is not an orbit number or range"]),
    (["--orbits", "0:9999999999"], ["orbit 9999999999", RECORD]),
    (["--orbits", "20000:20001", "--sources", "nosuch", "--inline"], ["--sources", "'nosuch'", "unknown model"]),
    (["--orbits", "20000:20001", "--n-scans", "-5", "--inline"], ["--n-scans", "-5 is not in the range"]),
    (["--orbits", "20000:20001", "--extra-region", "polygon:NOT WKT", "--inline"],
     ["--extra-region", "'polygon:NOT WKT' is not a WKT polygon"]),
])
def test_climatology_build_refuses_bad_values(data_root, args, needles):
    _refused(["climatology", "build", *args], *needles, root=data_root)
    assert not (data_root / "cubes" / "climatology.zarr.partials").exists()


def test_climatology_info_on_missing_or_foreign_cube(data_root, tmp_path):
    missing = data_root / "nope.zarr"
    _refused(["climatology", "info", "--cube", missing], "--cube", f"no complete climatology cube at '{missing}'",
             root=data_root)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a cube")
    _refused(["climatology", "info", "--cube", foreign], f"no complete climatology cube at '{foreign}'", root=data_root)
    # a complete store of another kind (say a model output) is named for what it is
    from catalogs.store import atomic_write

    other = tmp_path / "other.zarr"
    atomic_write(other, lambda tmp: (tmp.mkdir(), (tmp / "x").write_text("x")), meta={"kind": "retrieval"})
    _refused(["climatology", "info", "--cube", other], f"'{other}' is a retrieval store, not a climatology cube",
             root=data_root)


# --- evaluate / trends -------------------------------------------------------------------------

def test_evaluate_bad_region(data_root):
    _refused(["evaluate", "--region", "polygon:NOT WKT"], "--region", "'polygon:NOT WKT' is not a WKT polygon",
             root=data_root)


@pytest.mark.parametrize("cmd", [["evaluate", "--no-extremes"], ["trends"]])
def test_period_without_data_is_an_error_not_empty_scores(data_root, cmd):
    out = _refused([*cmd, "--period", "3000-3001"], "no data in period '3000-3001'", "the cube covers 1998-01 to 2060-",
                   root=data_root)
    assert "skill" not in out


def test_trends_gmst_outside_the_roots(data_root):
    _refused(["trends", "--gmst", "/etc/passwd"], "--gmst", "'/etc/passwd'", "outside the configured data roots",
             root=data_root)


@pytest.mark.parametrize("content, needle", [
    ("time,gmst_K\n2000-01-01,0.5\n", "needs at least two rows"),
    ("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n", "needs two columns"),
    ("time,gmst_K\n2000-01-01,0.5\nnot-a-date,0.6\n", "row 3 has no valid time"),
    ("time,gmst_K\n2000-01-01,0.5\n2001-01-01,warm\n", "row 3 has no finite GMST anomaly"),
    ("time,gmst_K\n2000-01-01,0.5\n2001-01-01,inf\n", "row 3 has no finite GMST anomaly"),
    ("", "is not a CSV table"),
])
def test_trends_malformed_gmst_csv(data_root, content, needle):
    f = data_root / "gmst.csv"
    f.write_text(content)
    _refused(["trends", "--gmst", f], "--gmst", f"GMST file '{f}'", needle, root=data_root)
    _refused(["trends", "--gmst", data_root / "absent.csv"], f"GMST file '{data_root / 'absent.csv'}' not found",
             root=data_root)


def test_trends_with_a_valid_gmst_csv_still_works(data_root):
    f = data_root / "gmst.csv"
    f.write_text("time,gmst_K\n1990-01-01,0.4\n2030-01-01,1.5\n2070-01-01,2.5\n")
    r = CliRunner().invoke(main, ["trends", "--gmst", str(f), "--stats", "mean", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["gmst"]["label"] == "user GMST series"


# --- infer -------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, needles", [
    (["--orbits", "0:9999999999"], ["orbit 9999999999", RECORD]),  # a MemoryError before
    (["--orbits", "20010:20000"], ["'20010:20000' ends before it starts", "20000:20010"]),  # 0 orbits, exit 0 before
    (["--orbits", "20000:20001,0:9999999999"], ["orbit 9999999999"]),
    (["--orbit", "-99999999"], ["--orbit", "orbit -99999999", RECORD]),
])
def test_infer_refuses_inverted_and_absurd_orbit_ranges(data_root, args, needles):
    _refused(["infer", "--model", "unet-reference", *args], *needles, root=data_root)


# --- serve (each refused before any server or worker starts) ----------------------------------

def test_serve_refuses_bad_port_provider_and_busy_port(data_root):
    _refused(["serve", "--port", "70000"], "--port", "70000 is not in the range", root=data_root)
    _refused(["serve", "--oauth-provider", "bogus"], "--oauth-provider", "'bogus'", "github", root=data_root)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        _refused(["serve", "--port", port], "--port", f"port {port} on 127.0.0.1 is already in use", root=data_root)


# --- models: broken, absurd or shadowing cards; broken weights ---------------------------------

def _user_copy(data_root: Path, name: str, src: str = "unet-reference") -> Path:
    from models.registry import SHIPPED_DIR

    dest = data_root / "models" / name
    shutil.copytree(SHIPPED_DIR / src, dest)
    card = yaml.safe_load((dest / "card.yaml").read_text())
    card["name"] = card["config"]["name"] = name
    (dest / "card.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    return dest


def test_nan_weights_with_a_matching_hash_are_refused_at_load(data_root):
    """Before: the hash matched, so an all-NaN retrieval was written and the exit status was 0."""
    import torch

    from models.registry import load_checkpoint, read_card, save_model

    folder = _user_copy(data_root, "nan-model")
    tensors = load_checkpoint(folder / "model.safetensors")
    tensors["head.weight"] = torch.full_like(tensors["head.weight"], float("nan"))
    save_model(folder, tensors, read_card(folder))  # the card's hash now matches the NaN weights
    before = _files(data_root)
    r = CliRunner().invoke(main, ["infer", "--model", "nan-model", "--orbit", "20003"])
    assert r.exit_code != 0 and isinstance(r.exception, SystemExit), r.output
    assert f"checkpoint {folder / 'model.safetensors'}" in r.output and "non-finite" in r.output
    assert "'head.weight'" in r.output
    assert _files(data_root) == before  # no output store


def test_card_asking_for_a_huge_network_is_refused_before_allocating(data_root):
    folder = _user_copy(data_root, "huge-model")
    card = yaml.safe_load((folder / "card.yaml").read_text())
    card["config"]["network"]["base"] = 100_000  # ≈ 360 GB of weights
    (folder / "card.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    out = _refused(["infer", "--model", "huge-model", "--orbit", "20003"], str(folder / "card.yaml"),
                   "field network.base = 100000", root=data_root)
    assert "MemoryError" not in out
    card["config"]["network"].update(base=1024, depth=8, max_width=4096)  # each in range, too big together
    (folder / "card.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    _refused(["infer", "--model", "huge-model", "--orbit", "20003"], "field network asks for a U-Net of",
             root=data_root)


def test_training_config_asking_for_a_huge_network_is_refused(data_root, tmp_path):
    from models.registry import CONFIG_DIR

    cfg = yaml.safe_load((CONFIG_DIR / "tiny.yaml").read_text())
    cfg.setdefault("network", {})["base"] = 100_000
    f = tmp_path / "huge.yaml"
    f.write_text(yaml.safe_dump(cfg))
    _refused(["train", f], f"config {f}", "field network.base = 100000", root=data_root)


@pytest.mark.parametrize("edit, needle", [
    (lambda c: c.pop("levels"), "lacks the field(s) levels"),
    (lambda c: c.update(levels="many"), "field levels must be a list"),
    (lambda c: c.update(levels=[0.9, 0.1]), "field levels must be increasing"),
    (lambda c: c.update(kind="pickle"), "field kind must be one of unet, bayes, flow, got 'pickle'"),
    (lambda c: c.update(checkpoint_sha256="abc"), "field checkpoint_sha256 must be 64 hex digits"),
    (lambda c: c["config"]["network"].update(depth="deep"), "field network.depth must be an integer"),
    (lambda c: c.update(config=[1, 2]), "field config must be a mapping"),
])
def test_malformed_user_card_under_a_shipped_name_is_named_not_silently_shadowed(data_root, edit, needle):
    folder = _user_copy(data_root, "unet-reference")
    card = yaml.safe_load((folder / "card.yaml").read_text())
    edit(card)
    (folder / "card.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    where = str(folder / "card.yaml")
    _refused(["infer", "--model", "unet-reference", "--orbit", "20003"], where, needle, root=data_root)
    _refused(["models", "show", "unet-reference"], where, needle, root=data_root)
    r = CliRunner().invoke(main, ["models", "list"])
    # the list no longer offers the shipped model under the name that loads the broken card
    assert "unet-reference       UNUSABLE" in r.output and where in r.output
    assert "checkpoints/unet-reference" not in r.output


def test_user_model_under_a_shipped_name_is_announced(data_root, caplog):
    import logging

    from models import registry

    registry._WARNED.clear()
    _user_copy(data_root, "unet-reference")
    r = CliRunner().invoke(main, ["models", "list"])
    assert r.exit_code == 0
    line = next(x for x in r.output.splitlines() if x.startswith("unet-reference "))
    assert str(data_root) in line and "shadows the shipped model" in line
    with caplog.at_level(logging.WARNING, logger="models.registry"):
        r = CliRunner().invoke(main, ["models", "show", "unet-reference"])
    assert r.exit_code == 0
    assert "not the shipped model of the same name" in caplog.text and str(data_root) in caplog.text


def test_shipped_checkpoints_are_finite_and_cards_valid(data_root):
    """The load checks must not refuse what ships."""
    from models.registry import list_models, load_model

    problems: dict = {}
    cards = list_models(problems)
    assert not problems and {c.name for c in cards} >= {"unet-reference", "bayes-baseline"}
    for c in cards:
        load_model(c.name)


# --- the other commands: names checked before any data is simulated or any file written -------

@pytest.mark.parametrize("args, needles", [
    (["compare", "--models", "nosuch"], ["--models", "unknown model 'nosuch'"]),
    (["compare", "--reference", "nosuch"], ["--reference", "unknown model 'nosuch'"]),
    (["compare", "--config", "nosuch"], ["--config", "config 'nosuch' not found"]),
    (["compare", "--update-cards", "nosuch"], ["--update-cards", "unknown model 'nosuch'"]),
    (["compare", "--draws", "-1"], ["--draws", "-1 is not in the range"]),
    (["export", "--view", "swath", "--orbit", "20000", "--models", "nosuch"], ["--models", "unknown model 'nosuch'"]),
    (["climatology", "build-box", "bbox:abc"], ["got 'bbox:abc'"]),
])
def test_other_commands_refuse_unknown_names(data_root, tmp_path, monkeypatch, args, needles):
    monkeypatch.chdir(tmp_path)  # export's default --out is the working folder
    _refused(args, *needles, root=data_root)
    assert not any(tmp_path.glob("raincheck_*"))


def test_climatology_export_of_a_missing_cube(data_root, tmp_path):
    dest = data_root / "cube.nc"
    _refused(["climatology", "export", dest, "--cube", tmp_path / "nope.zarr"], "--cube", "no complete climatology cube",
             root=data_root)
    assert not dest.exists()

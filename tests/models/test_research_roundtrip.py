"""Tiny-config train -> save -> load -> infer round trips of every research model type, and the
comparison on them (CLI included)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from catalogs import schema
from models.registry import get_card, list_models, load_config
from models.train import train


def _tiny(name, **over):
    cfg = load_config("tiny")
    cfg["name"] = name
    cfg["training"] = dict(cfg["training"], epochs=1)
    cfg.update(over)
    return cfg


def _flow_cfg():
    cfg = _tiny("tiny-flow", kind="flow", base_model="tiny", flow={"base": 4, "depth": 1, "patch": 2},
                sampling={"members": 4, "steps": 3, "seed": 0}, ood={"fit_scenes": 4, "max_pixels": 4000})
    cfg.pop("quantile_levels")
    cfg["training"] = {"epochs": 1, "batch_size": 2, "crop_along": 16, "lr": 0.003, "score": False}
    return cfg


@pytest.mark.slow
def test_research_models_train_save_load_infer(data_root):
    from models.registry import load_model
    from models.research.trainer import train_research
    from catalogs.simulator import simulate_orbit

    train("tiny", command="pytest")
    sw = simulate_orbit(30000, n_scans=40)
    # each tail loss and the hybrid: kind unet, loadable by the core registry
    cfgs = [_tiny("tiny-tail", init_from="tiny", loss={"type": "tail_pinball"}),
            _tiny("tiny-twcrps", init_from="tiny", loss={"type": "twcrps", "thresholds": [0.0, 2.0]}),
            _tiny("tiny-density", init_from="tiny", loss={"type": "density"}),
            _tiny("tiny-hybrid", init_from="tiny", hybrid={
                "ratio": 0.5, "domain_weight": 0.5, "bias_correction": True,
                "simulated": {"start": "2015-01-01", "end": "2019-12-31", "orbits": 2, "scenes_per_orbit": 2, "scene_scans": 32},
                "calibration": {"start": "2015-01-01", "end": "2019-12-31", "orbits": 2, "scenes_per_orbit": 1, "scene_scans": 32}})]
    for cfg in cfgs:
        card = train_research(cfg, command="pytest")
        assert card.kind == "unet" and card.training["init_from"] == "tiny"
        assert card.training["loss"]["type"] == cfg.get("loss", {"type": "pinball"})["type"]
        assert {cfg["name"], "climatology"} <= set(card.metrics["test_2021"])
        r = load_model(cfg["name"])
        assert r.sha256 == get_card(cfg["name"]).checkpoint_sha256
        ds = r.predict(sw)
        schema.validate(ds, "retrieval")
        assert ds.attrs["model"] == cfg["name"] and np.isfinite(ds["precip_mean"].values).all()
    hc = get_card("tiny-hybrid").training["hybrid"]
    assert hc["ratio"] == 0.5 and len(hc["tb_offset_estimate_K"]) == 13
    # the flow model: kind flow, ensembles as quantiles, deterministic, OOD layer
    card = train_research(_flow_cfg(), command="pytest")
    assert card.kind == "flow" and card.levels == [0.125, 0.375, 0.625, 0.875]
    assert card.training["base_model"] == "tiny"
    r = load_model("tiny-flow")
    ds1, ds2 = r.predict(sw), r.predict(sw)
    schema.validate(ds1, "retrieval")
    assert np.array_equal(ds1["precip_quantiles"].values, ds2["precip_quantiles"].values, equal_nan=True)
    import torch

    tb = torch.from_numpy(sw["Tc"].values[:32, :32].astype(np.float32)).permute(2, 0, 1)[None]
    m = r.sample(tb, members=3, steps=2, seed=5)
    assert m.shape == (1, 3, 32, 32) and (m >= 0).all()
    s_in = r.ood_scores(tb).numpy()
    s_out = r.ood_scores(tb + 30).numpy()
    assert np.nanmean(s_out) > np.nanmean(s_in)
    assert "tiny-flow" in {c.name for c in list_models()}
    # the OOD map layer on a whole (short) swath and the app's window sampler
    from models.research.flow import predict_with_ood, sample_window

    ds = predict_with_ood(r, sw)
    schema.validate(ds, "retrieval")
    sc = ds["ood_score"].values
    assert ds["ood_score"].attrs["units"] == "1" and np.nanmin(sc) >= 0 and np.nanmax(sc) <= 1
    hot = sw.copy()
    hot["Tc"] = hot["Tc"] + 30.0
    assert np.nanmean(predict_with_ood(r, hot)["ood_score"].values) > np.nanmean(sc)
    win = sample_window(r, sw, slice(0, 24), slice(90, 130), members=3, steps=2, seed=1)
    assert win.dims == ("member", "along_track", "cross_track") and win.shape == (3, 24, 40)
    assert np.array_equal(win.values, sample_window(r, sw, slice(0, 24), slice(90, 130), 3, 2, 1).values)


@pytest.mark.slow
def test_compare_on_tiny_models(data_root, tmp_path):
    from app.cli import main
    from evaluation.compare import compare, goal_check
    from models.research.trainer import train_research

    train("tiny", command="pytest")
    train_research(_tiny("tiny-tail", init_from="tiny", loss={"type": "tail_pinball"}), score_splits=False)
    train_research(_flow_cfg())
    cfg = load_config("tiny")
    cfg["data"]["ood"] = {"start": "2055-01-01", "end": "2059-12-31", "orbits": 1, "scenes_per_orbit": 1, "scene_scans": 64}
    res = compare(["tiny-tail", "tiny-flow"], config=cfg, reference="tiny", n_boot=5)
    assert set(res["models"]) == {"tiny", "tiny-tail", "tiny-flow"}
    for m in res["models"].values():
        for split in ("test", "ood"):
            assert m[split]["pixels"] == res["models"]["tiny"][split]["pixels"]  # same pixels for all
            assert np.isfinite(m[split]["crps"]) and np.isfinite(m[split]["twcrps@p99.9"])
    od = res["ood_detection"]
    assert 0 <= od["tb_plus_30K"]["pixel_auroc"] <= 1 and 0 <= od["future_decades"]["scene_fpr95"] <= 1
    assert od["tb_plus_30K"]["fraction_flagged"] > od["in_fraction_flagged"]
    flow = res["models"]["tiny-flow"]["test"]
    assert len(flow["ensemble"]["rank_histogram"]) == 5 and abs(sum(flow["ensemble"]["rank_histogram"]) - 1) < 1e-9
    assert "crps_ood_in" in flow and flow["pixels_ood_in"] + flow["pixels_ood_out"] == flow["pixels"]
    assert set(goal_check(res)["models"]) == {"tiny-tail", "tiny-flow"}
    # cached per-model scores: the same numbers without recomputation
    import time

    from evaluation.report import clean

    t = time.perf_counter()
    again = compare(["tiny-tail", "tiny-flow"], config=cfg, reference="tiny", n_boot=5)
    assert time.perf_counter() - t < res["seconds"]
    for n in res["models"]:
        assert again["models"][n]["test"]["crps"] == res["models"][n]["test"]["crps"]
        assert again["models"][n]["ood"]["crps_ood_in"] == res["models"][n]["ood"]["crps_ood_in"]
        assert clean(again["models"][n]["trend"]) == clean(res["models"][n]["trend"])
    path = tmp_path / "tiny-ood.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = CliRunner().invoke(main, ["compare", "--models", "tiny-tail", "--reference", "tiny", "--config", str(path),
                                    "--boot", "3", "--no-ood", "--json", "--update-cards", "tiny-tail"])
    assert out.exit_code == 0, out.output
    js = json.loads(out.output[out.output.index("{"):])
    assert js["schema"] == "raincheck.compare/1" and "tiny-tail" in js["models"]
    assert "comparison" in get_card("tiny-tail").metrics
    assert "comparison" not in (get_card("tiny").metrics or {})  # only the named cards are touched
    # the app's comparison view shows the stored result
    from app.views.compare import CompareView, trend_frame

    view = CompareView()
    assert len(view.body.objects) >= 4
    assert list(trend_frame(js)["model"]) == ["tiny", "tiny-tail"]


def test_saved_checkpoint_is_never_mistaken_for_a_pickle(tmp_path):
    """A safetensors file starts with its header length; when that starts with 0x80 or "PK" the
    registry would refuse it as a pickle. save_checkpoint re-writes such files."""
    import torch

    from models.registry import ModelCard, load_checkpoint
    from models.research.trainer import save_checkpoint

    for n in range(1, 400):
        tensors = {"w" * n: torch.zeros(2)}
        card = ModelCard(name="x", kind="unet", config={}, checkpoint_sha256="", levels=[0.5])
        card = save_checkpoint(tmp_path / f"m{n}", tensors, card)
        head = (tmp_path / f"m{n}" / "model.safetensors").read_bytes()[:2]
        assert head[:1] != b"\x80" and head != b"PK"
        got = load_checkpoint(tmp_path / f"m{n}" / "model.safetensors", expected_sha256=card.checkpoint_sha256)
        assert torch.equal(got["w" * n], tensors["w" * n])

"""Climate conditioning (``conditioning: {gmst: true}``): the ΔT input is used, a zero ΔT weight
reproduces the unconditioned network exactly, unconditioned models are unchanged, and ΔT comes
from the swath attribute or the labelled default series and is recorded in the output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.unet import QuantileUNet

LEVELS = [0.1, 0.5, 0.9, 0.99]


def _nets(head_hidden=4, domain=False):
    torch.manual_seed(0)
    plain = QuantileUNet(len(LEVELS), base=4, depth=2, max_width=16, head_hidden=head_hidden).eval()
    cond = QuantileUNet(len(LEVELS), base=4, depth=2, max_width=16, head_hidden=head_hidden, gmst=True,
                        domain=domain).eval()
    cond.set_gmst_normalisation(2.0, 1.5)
    cond.load_unconditioned(plain.state_dict())
    return plain, cond


def _tb(b=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    tb = 180 + 80 * torch.rand((b, 13, 16, 24), generator=g)
    tb[0, :, 3, 5] = float("nan")
    return tb


@pytest.mark.parametrize("head_hidden,domain", [(0, False), (4, False), (4, True)])
def test_zero_gmst_weights_equal_the_unconditioned_network(head_hidden, domain):
    plain, cond = _nets(head_hidden, domain)
    tb = _tb()
    ref = plain(tb)
    for g in (0.0, 1.2, [2.0, 5.3]):
        assert torch.equal(cond(tb, g), ref)
        if domain:
            assert torch.equal(cond(tb, g, [1.0, 0.0]), ref)
    # also the BatchNorm-folded inference copies
    assert torch.allclose(cond.fused()(tb, 3.0), plain.fused()(tb), atol=1e-5, rtol=1e-5)
    sd = cond.state_dict()
    extra = 1 + int(domain)
    assert sd["enc.0.0.weight"].shape[1] == 13 + extra and not sd["enc.0.0.weight"][:, 13:].any()
    if head_hidden:
        assert not sd["pixel.0.weight"][:, -extra:].any()
    with pytest.raises(ValueError, match="gmst"):
        cond(tb)  # never a silent default


def test_gmst_changes_the_output_of_a_trained_conditioned_network():
    _, cond = _nets()
    with torch.no_grad():
        cond.enc[0][0].weight[:, 13] = 0.3  # as after training
        cond.pixel[0].weight[:, -1] = 0.3
    tb = _tb()
    a, b = cond(tb, 1.2), cond(tb, 4.0)
    assert not torch.allclose(a, b)
    # per-scene values: each scene gets its own ΔT
    mixed = cond(tb, [1.2, 4.0])
    assert torch.allclose(mixed[0], a[0]) and torch.allclose(mixed[1], b[1])


def test_domain_flag_is_a_separate_input_defaulting_to_observed():
    _, cond = _nets(domain=True)
    with torch.no_grad():
        cond.enc[0][0].weight[:, 14] = 0.3
    tb = _tb()
    assert torch.equal(cond(tb, 1.2), cond(tb, 1.2, 0.0))  # inference: the observing system
    assert not torch.allclose(cond(tb, 1.2, 1.0), cond(tb, 1.2, 0.0))
    with pytest.raises(ValueError, match="needs gmst"):
        QuantileUNet(len(LEVELS), base=4, depth=2, domain=True)


def test_unconditioned_network_is_unchanged():
    net = QuantileUNet(len(LEVELS), base=4, depth=2, max_width=16)
    assert not net.gmst_conditioned and "gmst_mean" not in net.state_dict()
    assert net.enc[0][0].weight.shape[1] == 13
    tb = _tb()
    assert torch.equal(net.eval()(tb), net(tb, 3.0))  # ΔT ignored


def test_scene_and_orbit_gmst_match_the_simulator():
    from catalogs.simulator import simulate_orbit
    from models.conditioning import orbit_gmst

    for src, off in (("observed", None), ("simulated", None), ("simulated", 0.0)):
        sw = simulate_orbit(30001, source=src, n_scans=4, climate_offset_K=off)
        assert orbit_gmst(30001, src, off) == pytest.approx(sw.attrs["gmst_anomaly_K"], abs=1e-12)


def test_swath_gmst_attribute_or_labelled_default():
    from catalogs.simulator import simulate_orbit
    from catalogs.simulator.climate import gmst_anomaly
    from models.conditioning import DEFAULT_GMST_SERIES, SWATH_ATTRIBUTE, swath_gmst

    sw = simulate_orbit(30000, n_scans=8)
    assert swath_gmst(sw) == (sw.attrs["gmst_anomaly_K"], SWATH_ATTRIBUTE)
    real = sw.copy()
    real.attrs = {k: v for k, v in sw.attrs.items() if k != "gmst_anomaly_K"}
    v, src = swath_gmst(real)
    t = sw["time"].values
    assert src == DEFAULT_GMST_SERIES and "default GMST series" in src
    assert v == pytest.approx(gmst_anomaly(t[0] + (t[-1] - t[0]) // 2)) and v > 1.0


@pytest.mark.slow
def test_conditioned_model_trains_loads_and_records_gmst(data_root):
    from catalogs import schema
    from catalogs.simulator import simulate_orbit
    from models.conditioning import DEFAULT_GMST_SERIES, SWATH_ATTRIBUTE
    from models.inference import predict_swath
    from models.run import run_inference
    from models.registry import load_config, load_model
    from models.research.trainer import train_research
    from models.train import train

    train("tiny", command="pytest")
    cfg = load_config("tiny")
    cfg.update(name="tiny-climate", init_from="tiny", conditioning={"gmst": True, "domain": True},
               training=dict(cfg["training"], epochs=1, threads=1, validate_init=True),
               hybrid={"ratio": 0.5, "present_share": 0.5, "domain_weight": 0.5, "bias_correction": True,
                       "simulated": {"start": "2015-01-01", "end": "2019-12-31", "orbits": 2, "scenes_per_orbit": 2, "scene_scans": 32},
                       "calibration": {"start": "2015-01-01", "end": "2019-12-31", "orbits": 2, "scenes_per_orbit": 1, "scene_scans": 32}})
    card = train_research(cfg, command="pytest")
    c = card.training["conditioning"]
    assert c["gmst"] and c["domain"] and c["gmst_std_K"] > 0.5  # observed ~1.2 K plus simulated +0/+2/+4 K
    assert c["gmst_range_K"]["simulated"][0] < 1.5 < 4.5 < c["gmst_range_K"]["simulated"][1]
    assert card.training["hybrid"]["present_climate_simulated_scenes"] == 2
    assert card.training["hybrid"]["present_share"] == 0.5  # 2 present scenes x 2 against 4 warm ones
    assert card.training["init_from"] == "tiny"
    # the start equals the init model (init_from: the ΔT input weights start at zero)
    from models.research.trainer import _init_weights
    from models.unet_retriever import build_unet

    start = build_unet(card.config)
    _init_weights(start, card.config)
    tb = torch.from_numpy(simulate_orbit(30000, n_scans=32)["Tc"].values[:, :32].astype(np.float32)).permute(2, 0, 1)[None]
    assert torch.equal(start.eval()(tb, 4.0), load_model("tiny").net(tb))
    assert "tiny-climate" in card.metrics["test_2021"]  # held-out scoring passes each scene's ΔT

    r = load_model("tiny-climate")
    plain = load_model("tiny")
    assert r.gmst_conditioned and not plain.gmst_conditioned
    sw = simulate_orbit(30000, n_scans=40)
    ds = predict_swath(r, sw)
    schema.validate(ds, "retrieval")
    assert ds.attrs["gmst_anomaly_K_used"] == sw.attrs["gmst_anomaly_K"]
    assert ds.attrs["gmst_anomaly_source"] == SWATH_ATTRIBUTE
    # same Tb, different ΔT -> a different retrieval
    warm = sw.copy()
    warm.attrs = dict(sw.attrs, gmst_anomaly_K=sw.attrs["gmst_anomaly_K"] + 3.0)
    dw = predict_swath(r, warm)
    assert not np.allclose(dw["precip_quantiles"].values, ds["precip_quantiles"].values, equal_nan=True)
    # a real-granule-like swath (no attribute): the labelled default series
    real = sw.copy()
    real.attrs = {k: v for k, v in sw.attrs.items() if k != "gmst_anomaly_K"}
    dr = predict_swath(r, real)
    assert dr.attrs["gmst_anomaly_source"] == DEFAULT_GMST_SERIES
    assert abs(dr.attrs["gmst_anomaly_K_used"] - sw.attrs["gmst_anomaly_K"]) < 0.01
    # an unconditioned model: no ΔT attributes, output as before
    dp = predict_swath(plain, sw)
    assert "gmst_anomaly_K_used" not in dp.attrs
    # a batch without ΔT is refused, never defaulted
    from models.base import ModelError

    with pytest.raises(ModelError, match="GMST"):
        r.predict_batch(torch.zeros((1, 13, 32, 224)))
    # through the store (what `raincheck infer` and the app use): attributes persist
    from catalogs.store import open_dataset

    out = open_dataset(run_inference("tiny-climate", 30000, device="cpu"))
    assert out.attrs["gmst_anomaly_source"] == SWATH_ATTRIBUTE and np.isfinite(out.attrs["gmst_anomaly_K_used"])

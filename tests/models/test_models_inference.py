"""U-Net head, registry safety, tiled inference, missing input, atomic cached outputs."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from catalogs import schema
from catalogs.store import is_complete, open_dataset
from tests.conftest import make_tiny_swath
from models import inference, run
from models.base import InferenceCancelled, ModelError
from models.inference import choose_device, plan_tiles, predict_swath
from models.quantiles import QuantileDistribution
from models.registry import (ModelCard, get_card, list_models, load_checkpoint, load_model, save_model,
                             sha256_file, user_models_dir)
from models.run import run_inference
from models.unet import QuantileUNet, monotone_quantiles, pinball_loss
from models.unet_retriever import build_unet

LEVELS = [0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 0.999]


def tiny_config(name="rand-unet", depth=2):
    return {"name": name, "kind": "unet", "channels": "all", "quantile_levels": LEVELS,
            "network": {"base": 4, "depth": depth, "max_width": 16},
            "inference": {"tile_scans": 32, "cpu_batch_tiles": 2}}


def register_random_unet(name="rand-unet", depth=2, seed=0):
    """A U-Net with random weights (and non-trivial BatchNorm statistics) in the user registry."""
    cfg = tiny_config(name, depth)
    torch.manual_seed(seed)
    net = build_unet(cfg)
    net.set_normalisation(np.full(13, 200.0), np.full(13, 40.0))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        net.head.bias.uniform_(-1, 1)
    card = ModelCard(name=name, kind="unet", config=cfg, checkpoint_sha256="", levels=LEVELS)
    return save_model(user_models_dir() / name, net.state_dict(), card)


# -- the network ---------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 1000), scale=st.floats(0.1, 50))
def test_quantiles_never_cross_by_construction(seed, scale):
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(2, 8, 5, 3, generator=g) * scale
    q = monotone_quantiles(raw, dim=1)
    assert torch.all(q >= 0)
    assert torch.all(torch.diff(q, dim=1) >= 0)


@pytest.mark.parametrize("head_hidden", [0, 8])
def test_unet_output_monotone_and_shape(head_hidden):
    torch.manual_seed(0)
    net = QuantileUNet(len(LEVELS), base=4, depth=2, head_hidden=head_hidden).eval()
    x = 150 + 120 * torch.rand(2, 13, 16, 12)
    with torch.no_grad():
        y = net(x)
        yf = net.fused()(x)
    assert y.shape == (2, len(LEVELS), 16, 12)
    assert torch.all(torch.diff(y, dim=1) >= 0) and torch.all(y >= 0)
    torch.testing.assert_close(y, yf, rtol=1e-4, atol=1e-5)  # BatchNorm folding changes nothing
    with pytest.raises(ValueError, match="13 channels"):
        net(x[:, :12])


def test_receptive_radius_bounds_influence():
    torch.manual_seed(1)
    net = QuantileUNet(4, base=4, depth=2).eval()
    x = 200 + 30 * torch.randn(1, 13, 96, 16)
    x2 = x.clone()
    x2[0, :, 48, 8] += 60
    with torch.no_grad():
        d = (net(x2) - net(x)).abs().amax(dim=(0, 1, 3))
    changed = torch.nonzero(d > 0).flatten()
    assert changed.numel() > 0
    assert (changed - 48).abs().max() <= net.receptive_radius


def test_pinball_loss_only_where_reference_exists():
    levels = torch.tensor([0.1, 0.5, 0.9])
    pred = torch.zeros(1, 3, 2, 2)
    y = torch.tensor([[[1.0, float("nan")], [float("nan"), float("nan")]]])
    loss = pinball_loss(pred, y, levels)
    assert loss.item() == pytest.approx((0.1 + 0.5 + 0.9) / 3)
    y2 = y.clone()
    y2[0, 1, 1] = float("nan")
    pred2 = pred.clone()
    pred2[0, :, 0, 1] = 100.0  # outside the strip: ignored
    assert pinball_loss(pred2, y2, levels).item() == pytest.approx(loss.item())


# -- registry and safe loading ----------------------------------------------------------------------
def test_registry_roundtrip_and_cards(data_root):
    card = register_random_unet()
    assert card.checkpoint_sha256 == sha256_file(user_models_dir() / "rand-unet" / "model.safetensors")
    assert "rand-unet" in [c.name for c in list_models()]
    assert get_card("rand-unet").levels == LEVELS
    r = load_model("rand-unet")
    assert r.sha256 == card.checkpoint_sha256 and r.kind == "unet"


def test_unknown_model(data_root):
    with pytest.raises(ModelError, match="unknown model 'no-such-model'"):
        load_model("no-such-model")
    with pytest.raises(ModelError, match="invalid model name"):
        load_model("../etc")


def test_corrupt_checkpoint_refused(data_root):
    register_random_unet()
    f = user_models_dir() / "rand-unet" / "model.safetensors"
    b = bytearray(f.read_bytes())
    b[-5] ^= 0xFF
    f.write_bytes(bytes(b))
    with pytest.raises(ModelError, match="corrupt"):
        load_model("rand-unet")


def test_truncated_checkpoint_with_matching_hash_refused(data_root):
    card = register_random_unet()
    f = user_models_dir() / "rand-unet" / "model.safetensors"
    f.write_bytes(f.read_bytes()[:100])
    card.checkpoint_sha256 = sha256_file(f)
    card.save(f.parent)
    with pytest.raises(ModelError, match="corrupt or not a safetensors"):
        load_model("rand-unet")


def test_pickle_checkpoint_refused(data_root, tmp_path):
    card = register_random_unet()
    f = user_models_dir() / "rand-unet" / "model.safetensors"

    class Boom:
        def __reduce__(self):
            return (pytest.fail, ("pickle was executed",))

    for payload in (lambda p: torch.save({"x": torch.zeros(2), "boom": Boom()}, p),
                    lambda p: p.write_bytes(pickle.dumps({"boom": Boom()}))):
        payload(f)
        card.checkpoint_sha256 = sha256_file(f)
        card.save(f.parent)
        with pytest.raises(ModelError, match="pickle"):
            load_model("rand-unet")
        with pytest.raises(ModelError, match="pickle"):
            load_checkpoint(f)


def test_checkpoint_not_fitting_config(data_root):
    card = register_random_unet()
    card.config["network"]["base"] = 8
    card.save(card.path)
    with pytest.raises(ModelError, match="does not fit its config"):
        load_model("rand-unet")


# -- inference ------------------------------------------------------------------------------------
def test_choose_device():
    assert choose_device("cpu").type == "cpu"
    assert choose_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA"):
            choose_device("cuda")
    with pytest.raises(ModelError, match="unknown device"):
        choose_device("tpu")


def test_plan_tiles_cover_and_align():
    for n in (8, 64, 200, 1000):
        starts = plan_tiles(n, 64, 24, 8)
        assert starts[0] == 0 and starts[-1] + min(64, n) == n
        assert all(s % 8 == 0 for s in starts)
        assert all(b - a <= 64 - 24 for a, b in zip(starts[:-1], starts[1:]))


@pytest.mark.parametrize("depth", [2, 3])
def test_tiling_equals_single_pass(data_root, depth):
    register_random_unet(depth=depth)
    r = load_model("rand-unet")
    sw = make_tiny_swath(n_scans=300 if depth == 2 else 800, n_pix=30, seed=3)
    one = predict_swath(r, sw, tile_scans=1024)
    assert len(plan_tiles(1024, 1024, 0, 8)) == 1
    calls = []
    tiled = predict_swath(r, sw, tile_scans=8, batch_tiles=3, progress=lambda d, t, m: calls.append((d, t)))
    assert calls[-1][0] == calls[-1][1] >= 3  # really tiled, in several batches
    np.testing.assert_allclose(tiled.precip_quantiles.values, one.precip_quantiles.values, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(tiled.precip_mean.values, one.precip_mean.values, rtol=1e-4, atol=1e-5)


def test_retrieval_schema_and_products_consistent(data_root):
    register_random_unet()
    r = load_model("rand-unet")
    ds = r.predict(make_tiny_swath(n_scans=40, n_pix=20, seed=4))
    schema.validate(ds, "retrieval")
    assert ds.attrs["model_sha256"] == r.sha256
    d = QuantileDistribution.from_dataset(ds)
    np.testing.assert_allclose(ds.precip_mean.values, d.mean(), rtol=1e-5)
    np.testing.assert_allclose(ds.pop.values, d.pop(), rtol=1e-5, atol=1e-6)
    # mean of random samples approximates the posterior mean
    s = d.sample(4000, np.random.default_rng(0))
    np.testing.assert_allclose(s.mean(0), ds.precip_mean.values, rtol=0.1, atol=0.05)
    assert np.all(np.diff(ds.precip_quantiles.values, axis=-1) >= 0)


def test_missing_tb_gives_missing_output(data_root):
    register_random_unet()
    r = load_model("rand-unet")
    sw = make_tiny_swath(n_scans=48, n_pix=20, seed=5)
    tc = sw["Tc"].values.copy()
    tc[3, 4, 0] = np.nan          # one missing channel
    tc[10, 10, 7] = 1000.0        # out of physical range (validate() would refuse; predict masks)
    tc[20, 2, :] = -9999.9        # fill value
    sw["Tc"] = (sw["Tc"].dims, tc, sw["Tc"].attrs)
    ds = predict_swath(r, sw, validate=False)
    for v in ("precip_quantiles", "precip_mean", "precip_median", "pop", "p_heavy"):
        a = ds[v].values
        for (i, j) in ((3, 4), (10, 10), (20, 2)):
            assert np.all(np.isnan(a[i, j])), v
        assert np.isfinite(a).sum() == a.size - 3 * (a.size // (48 * 20))
    # all missing: all NaN, no numbers
    sw["Tc"] = (sw["Tc"].dims, np.full_like(tc, np.nan), sw["Tc"].attrs)
    assert np.isnan(predict_swath(r, sw).precip_mean.values).all()


def test_wrong_channel_count(data_root):
    register_random_unet()
    r = load_model("rand-unet")
    sw = make_tiny_swath().isel(pmw_frequency=slice(0, 12))
    with pytest.raises(ModelError, match="13 GMI channels.*12 channels"):
        r.predict(sw)


def test_run_inference_cache_hit_and_cancel(data_root, monkeypatch):
    register_random_unet()
    sw = make_tiny_swath(n_scans=64, n_pix=20, orbit=777, seed=6)
    ev = threading.Event()
    ev.set()
    with pytest.raises(InferenceCancelled):
        run_inference("rand-unet", 777, swath=sw, cancel=ev)
    info: dict = {}
    path = run_inference("rand-unet", 777, swath=sw, info=info, device="cpu")
    assert is_complete(path) and info["cache_hit"] is False and "cpu" in info["device"]
    ds = open_dataset(path)
    schema.validate(ds.load(), "retrieval")
    assert ds.attrs["orbit_number"] == 777 and ds.attrs["model"] == "rand-unet"

    def boom(*a, **k):
        raise AssertionError("recomputed on a cache hit")

    monkeypatch.setattr(run, "predict_swath", boom)
    monkeypatch.setattr(run, "load_swath", boom)
    info2: dict = {}
    assert run_inference("rand-unet", 777, info=info2) == path
    assert info2["cache_hit"] is True
    # a different world seed is a different output
    with pytest.raises(AssertionError, match="recomputed"):
        run_inference("rand-unet", 777, world_seed=3)


def test_crash_mid_write_leaves_no_valid_store(data_root, monkeypatch):
    register_random_unet()
    sw = make_tiny_swath(n_scans=64, n_pix=20, orbit=778, seed=7)
    import xarray as xr

    real = xr.Dataset.to_zarr

    def crash(self, store, *a, **k):
        real(self.isel(along_track=slice(0, 5)), store, *a, **k)  # something is on disk...
        raise OSError("disk full (simulated crash)")

    monkeypatch.setattr(xr.Dataset, "to_zarr", crash)
    with pytest.raises(OSError, match="simulated crash"):
        run_inference("rand-unet", 778, swath=sw)
    r = load_model("rand-unet")
    from catalogs.outputs import output_path

    path = output_path("rand-unet", r.sha256, 778)
    assert not is_complete(path) and not path.exists()  # nothing half-written under the store's name
    leftovers = sorted(p.name for p in path.parent.glob(".*")) if path.parent.exists() else []
    assert leftovers == []  # nor a temporary beside it
    monkeypatch.setattr(xr.Dataset, "to_zarr", real)
    info: dict = {}
    assert run_inference("rand-unet", 778, swath=sw, info=info) == path
    assert info["cache_hit"] is False and is_complete(path)


def test_safetensors_whose_header_length_looks_like_pickle_loads(tmp_path):
    """A safetensors header length whose low byte is 0x80 (a pickle's first byte) is fine."""
    from safetensors.torch import save_file

    for pad in range(0, 400):
        f = tmp_path / "m.safetensors"
        save_file({"w": torch.arange(4.0)}, str(f), metadata={"pad": "x" * pad})
        if f.read_bytes()[0] == 0x80:
            break
    else:
        pytest.skip("could not craft the header length")
    assert torch.equal(load_checkpoint(f)["w"], torch.arange(4.0))


def test_bf16_path_close_to_fp32_and_monotone(data_root):
    register_random_unet()
    r = load_model("rand-unet")
    sw = make_tiny_swath(n_scans=64, n_pix=24, seed=8)
    a = predict_swath(r, sw, precision="fp32")
    b = predict_swath(r, sw, precision="bf16")
    assert np.all(np.diff(b.precip_quantiles.values, axis=-1) >= 0)
    np.testing.assert_allclose(b.precip_mean.values, a.precip_mean.values, rtol=0.05, atol=0.02)
    with pytest.raises(ModelError, match="precision"):
        predict_swath(r, sw, precision="int8")


@pytest.mark.parametrize("tile_scans", [None, 320])
def test_optimised_path_equals_naive_eager_on_the_shipped_model(data_root, tile_scans):
    """The fast path (folded BatchNorm, channels-last, compiled blend + cumulative sum, one pass
    for the products) gives the numbers of plain eager fp32 PyTorch on the same tiles, products
    by QuantileDistribution, to 1e-4 — with the real shipped checkpoint, on one tile and on
    several blended ones, invalid pixels included."""
    from benchmarks.bench_inference import max_difference, naive_retrieval
    from catalogs.simulator import simulate_orbit

    r = load_model("unet-reference")
    sw = simulate_orbit(30000, n_scans=700)
    tc = sw["Tc"].values.copy()
    tc[5, 7, 3] = np.nan
    tc[400, 100, :] = -9999.9
    sw["Tc"] = (sw["Tc"].dims, tc, sw["Tc"].attrs)
    rows = inference._pad_to(700, r.multiple)
    n_tiles = len(inference.tile_plan(r, rows, tile_scans)[2])
    assert n_tiles == (1 if tile_scans is None else 2)
    fast = predict_swath(r, sw, device="cpu", tile_scans=tile_scans, validate=False, precision="fp32")
    naive = naive_retrieval(r, sw, tile_scans)
    assert max_difference(fast, naive) <= 1e-4
    assert np.isnan(fast.precip_mean.values[[5, 400], [7, 100]]).all()
    assert np.isfinite(fast.precip_quantiles.values).sum() == (700 * 221 - 2) * len(r.levels)
    assert np.nanmax(fast.precip_mean.values) > 1.0  # real rain in the cut, not a trivial comparison

"""Climate-invariant inputs (models.research.invariant, config ``inputs:``): the background against
scipy.ndimage and a brute-force loop, the invariance to a background offset (by construction and on
the simulator's same weather 4 K warmer), the rain signal, tiles = whole (transform, network, tiled
inference), the state dict unchanged, save/load, and bad configs refused with the field named."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from catalogs.schema import CHANNELS
from models.base import ModelError
from models.config import parse_config
from models.inference import predict_quantiles
from models.registry import ModelCard, load_checkpoint, save_model
from models.research.invariant import (EMISSION_CHANNELS, SCATTERING_CHANNELS, LocalAnomaly, build_input_transform,
                                       input_statistics, set_input_normalisation, window_pair)
from models.unet import QuantileUNet, pad_cross
from models.unet_retriever import UNetRetriever, build_unet

LEVELS = [0.1, 0.5, 0.9, 0.99]
EMI = [CHANNELS.index(c) for c in EMISSION_CHANNELS]
SCA = [CHANNELS.index(c) for c in SCATTERING_CHANNELS]
V10, H10 = CHANNELS.index("10.65V"), CHANNELS.index("10.65H")


def _scene(rng, a=40, c=50, b=1):
    """Smooth-ish random Tb (b, 13, a, c) around plausible clear-sky levels, float64 numpy."""
    base = np.linspace(150.0, 260.0, 13)[None, :, None, None]
    noise = ndimage.uniform_filter(rng.normal(0.0, 8.0, (b, 13, a, c)), size=(1, 1, 3, 3))
    return base + noise + rng.normal(0.0, 1.0, (b, 13, a, c))


def _brute_opening(x, valid, ka, kc):
    """Grey opening of one 2-D field by explicit truncated windows, missing pixels ignored (in the
    erosion and in the dilation)."""
    a, c = x.shape
    ra, rc = ka // 2, kc // 2
    ero = np.full((a, c), np.inf)
    for i in range(a):
        for j in range(c):
            w = x[max(0, i - ra):i + ra + 1, max(0, j - rc):j + rc + 1]
            m = valid[max(0, i - ra):i + ra + 1, max(0, j - rc):j + rc + 1]
            if m.any():
                ero[i, j] = w[m].min()
    out = np.full((a, c), -np.inf)
    for i in range(a):
        for j in range(c):
            w = ero[max(0, i - ra):i + ra + 1, max(0, j - rc):j + rc + 1]
            m = valid[max(0, i - ra):i + ra + 1, max(0, j - rc):j + rc + 1]
            if m.any():
                out[i, j] = w[m].max()
    return out


def test_background_matches_scipy_grey_opening_and_closing():
    """No missing pixels: the emission background is scipy's grey_opening, the scattering one its
    grey_closing (mode 'nearest' = a window truncated at the edge, for a minimum or maximum)."""
    rng = np.random.default_rng(0)
    x = _scene(rng, 37, 45)
    bg = LocalAnomaly((5, 9), surface_pd=False).background(torch.from_numpy(x).float()).double().numpy()
    for k in range(13):
        op = ndimage.grey_opening if k in EMI else ndimage.grey_closing
        want = op(x[0, k].astype(np.float32), size=(5, 9), mode="nearest")
        np.testing.assert_allclose(bg[0, k], want, atol=1e-4, err_msg=CHANNELS[k])
    assert (bg[0, EMI] <= x[0, EMI] + 1e-4).all() and (bg[0, SCA] >= x[0, SCA] - 1e-4).all()


def test_background_with_missing_pixels_matches_brute_force():
    """Missing pixels (NaN, a fill value outside the valid Tb range, a whole missing block) are
    ignored by the windows; the anomaly is NaN there. Checked against explicit loops."""
    rng = np.random.default_rng(1)
    x = _scene(rng, 18, 23)
    x[0, :, 3, 4] = np.nan
    x[0, :, 10:18, 0:6] = np.nan  # a block larger than half a window: windows with no data at all
    x[0, 2, 7, 9] = -9999.9
    t = LocalAnomaly((5, 7), surface_pd=False)
    xt = torch.from_numpy(x).float()
    bg = t.background(xt).double().numpy()
    out = t(xt).double().numpy()
    for k in (0, 2, 4, 7, 12):
        valid = np.isfinite(x[0, k]) & (x[0, k] > 20) & (x[0, k] < 350)
        s = 1.0 if k in EMI else -1.0
        want = s * _brute_opening(s * x[0, k].astype(np.float32), valid, 5, 7)
        np.testing.assert_allclose(bg[0, k][valid], want[valid], atol=1e-4, err_msg=CHANNELS[k])
        assert np.isnan(bg[0, k][~valid]).all() and np.isnan(out[0, k][~valid]).all()
        np.testing.assert_allclose(out[0, k][valid], (x[0, k] - want)[valid], atol=1e-3)


def test_offset_leaves_the_inputs_unchanged_and_rain_survives():
    """A per-channel offset on a whole scene (V and H of 10.65 GHz alike) leaves every transformed
    input unchanged; a rain feature narrower than the window (emission bump, scattering pit) on a
    linear background comes out at its full amplitude and nothing else survives."""
    a, c = 48, 64
    ii, jj = np.meshgrid(np.arange(a), np.arange(c), indexing="ij")
    x = np.full((1, 13, a, c), 180.0)
    x += np.arange(13)[None, :, None, None] * 5.0
    bump = 40.0 * np.exp(-((ii - 24) ** 2 / 4.0 + (jj - 30) ** 2 / 9.0))  # ≈ 5 x 9 pixels
    rain = x.copy()
    rain[0, EMI] += bump
    rain[0, SCA] -= 2.0 * bump
    t = LocalAnomaly((11, 31))
    out = t(torch.from_numpy(rain).float()).double().numpy()[0]
    for k in range(13):
        if k == H10:  # the 10.65 GHz polarisation difference, as it is
            np.testing.assert_allclose(out[k], rain[0, H10] - rain[0, V10], atol=1e-3)
            continue
        want = bump if k in EMI else -2.0 * bump
        np.testing.assert_allclose(out[k], want, atol=2e-3, err_msg=CHANNELS[k])
    # on a background sloping by 0.3 K per scan and -0.2 K per pixel across, the peak keeps > 90 %
    slope = (0.3 * ii - 0.2 * jj)[None, None]
    out_s = t(torch.from_numpy(rain + slope).float()).double().numpy()[0]
    emi = [k for k in EMI if k != H10]
    assert (out_s[emi, 24, 30] > 36.0).all() and (out_s[SCA, 24, 30] < -72.0).all()
    offset = np.linspace(3.0, 9.0, 13) * np.where(np.arange(13) % 3 == 0, -1.0, 1.0)
    offset[H10] = offset[V10]
    shifted = t(torch.from_numpy(rain + offset[None, :, None, None]).float()).double().numpy()[0]
    np.testing.assert_allclose(shifted, out, atol=2e-3)
    raw_change = np.abs(offset).min()
    assert raw_change > 0.5  # the offsets are not a no-op


@pytest.mark.slow
def test_same_weather_four_kelvin_warmer_background_removed():
    """The simulator's same weather 4 K warmer (world today): the clear-sky Tb of the emission
    channels (water vapour, surface) warm by several K; the transformed inputs by a tenth of that."""
    from catalogs.simulator import simulate_orbit

    s0 = simulate_orbit(20000, n_scans=128, scan_start=400)
    s4 = simulate_orbit(20000, n_scans=128, scan_start=400, warming_K=4)
    t = LocalAnomaly((11, 31))
    x0 = torch.from_numpy(s0.Tc.values).permute(2, 0, 1)[None]
    x4 = torch.from_numpy(s4.Tc.values).permute(2, 0, 1)[None]
    clear = (s0.surface_precip_truth.values == 0) & (s4.surface_precip_truth.values == 0)
    assert clear.mean() > 0.5
    raw = (x4 - x0)[0].numpy()[:, clear].mean(1)
    tr = (t(x4) - t(x0))[0].numpy()[:, clear].mean(1)
    for name in ("18.7V", "18.7H", "23.8V", "36.64V", "36.64H"):
        k = CHANNELS.index(name)
        assert raw[k] > 2.0, (name, raw[k])
        assert abs(tr[k]) < 0.1 * raw[k], (name, raw[k], tr[k])


def test_tiles_equal_the_whole_scene_and_padding_changes_nothing():
    rng = np.random.default_rng(2)
    x = torch.from_numpy(_scene(rng, 90, 40)).float()
    x[0, :, 30:33, 5:9] = float("nan")
    t = LocalAnomaly((7, 9))
    whole = t(x)
    m = t.radius
    for s, e in ((0, 25), (25, 61), (61, 90)):
        lo, hi = max(0, s - m), min(90, e + m)
        tile = t(x[:, :, lo:hi])
        torch.testing.assert_close(tile[:, :, s - lo:e - lo], whole[:, :, s:e], equal_nan=True)
    # one row less of overlap than the radius: a tile edge would change a pixel (the radius is tight)
    lo = 25 - (m - 1)
    assert not torch.allclose(t(x[:, :, lo:61])[:, :, 25 - lo:], whole[:, :, 25:61], equal_nan=True)
    padded = t(pad_cross(x, 32))
    torch.testing.assert_close(padded[:, :, :90, :40], whole, equal_nan=True)


def _tiny_config(**inputs):
    return {"name": "tiny-invariant", "kind": "unet", "channels": "all", "quantile_levels": LEVELS,
            "network": {"base": 4, "depth": 2, "max_width": 8, "head_hidden": 4},
            "inference": {"tile_scans": 64, "cpu_batch_tiles": 2, "channels_last": False, "cpu_bf16": False},
            "inputs": {"transform": "local_anomaly", "window": [7, 11], **inputs}}


def _randomised(net):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
        for name, b in net.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.5, 2.0)
    net.set_normalisation(np.full(13, 5.0), np.full(13, 12.0))
    return net.eval()


def test_state_dict_unchanged_reference_loads_and_save_load_round_trip(tmp_path):
    """The transform adds nothing to the state dict (a network without it loads strictly), the
    network's input goes through it (outputs differ from the same weights without it), and a
    saved/loaded model (card + safetensors) rebuilds it from the config: the same output."""
    cfg = _tiny_config()
    net = _randomised(build_unet(cfg))
    plain_cfg = {k: v for k, v in cfg.items() if k != "inputs"}
    plain = build_unet(plain_cfg)
    assert net.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(net.state_dict(), strict=True)
    plain.eval()
    assert net.receptive_radius == plain.receptive_radius + 2 * 3
    x = torch.from_numpy(_scene(np.random.default_rng(3), 64, 48)).float()
    with torch.no_grad():
        q, q_plain = net(x), plain(x)
    assert not torch.allclose(q, q_plain)
    card = ModelCard(name="tiny-invariant", kind="unet", config=cfg, checkpoint_sha256="", levels=LEVELS)
    card = save_model(tmp_path / "m", net.state_dict(), card)
    r = UNetRetriever(card, load_checkpoint(tmp_path / "m" / "model.safetensors", card.checkpoint_sha256))
    assert isinstance(r.net.input_transform, LocalAnomaly) and r.net.input_transform.window == (7, 11)
    with torch.no_grad():
        torch.testing.assert_close(r.net(x), q)
        torch.testing.assert_close(r.predict_batch(x), q, atol=1e-4, rtol=1e-4)  # BatchNorm folded
    # the shipped reference's state dict loads into a network with the transform (init_from)
    from models.registry import get_card, load_config

    ref = get_card("unet-reference")
    big = build_unet({**load_config("unet-reference"), "inputs": {"transform": "local_anomaly"}})
    big.load_state_dict(load_checkpoint(ref.weights_path, ref.checkpoint_sha256), strict=True)


def test_tiled_inference_equals_one_pass(tmp_path):
    """Tiled inference (models.inference, overlap from the receptive radius, which counts the
    transform's window) gives the single pass's quantiles on a simulated swath."""
    from catalogs.simulator import simulate_orbit

    cfg = _tiny_config()
    net = _randomised(build_unet(cfg))
    card = save_model(tmp_path / "m", net.state_dict(),
                      ModelCard(name="tiny-invariant", kind="unet", config=cfg, checkpoint_sha256="", levels=LEVELS))
    r = UNetRetriever(card, load_checkpoint(tmp_path / "m" / "model.safetensors", card.checkpoint_sha256))
    swath = simulate_orbit(20000, n_scans=300, scan_start=1000)
    one, _ = predict_quantiles(r, swath, tile_scans=1024)
    tiled, _ = predict_quantiles(r, swath, tile_scans=96)
    assert np.isfinite(one).mean() > 0.9
    np.testing.assert_allclose(tiled, one, atol=2e-4, rtol=1e-4)


def test_input_statistics_against_numpy():
    rng = np.random.default_rng(4)
    tc = np.moveaxis(_scene(rng, 24, 30, b=5), 1, -1).astype(np.float32)  # (scenes, along, cross, 13)
    tc[1, 3:6, 2:4] = np.nan
    t = LocalAnomaly((5, 7))
    mean, std = input_statistics(t, tc, np.arange(13), max_scenes=64, batch=2)
    a = t(torch.from_numpy(tc).permute(0, 3, 1, 2)).double().numpy()
    want_m = np.array([np.nanmean(a[:, k]) for k in range(13)])
    want_s = np.array([np.nanstd(a[:, k]) for k in range(13)])
    np.testing.assert_allclose(mean, want_m, atol=1e-6)
    np.testing.assert_allclose(std, want_s, rtol=1e-5, atol=1e-6)
    net = build_unet(_tiny_config(window=[5, 7]))
    net.set_normalisation(np.arange(13) + 100.0, np.arange(13) + 20.0)  # e.g. the reference's, loaded
    set_input_normalisation(net, tc)
    np.testing.assert_allclose(net.tb_mean.numpy(), want_m, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(net.tb_std.numpy(), np.arange(13) + 20.0)  # the Tb scale is kept


@pytest.mark.parametrize("inputs, field", [
    ({"transform": "anomaly"}, "inputs.transform"),
    ({"transform": "local_anomaly", "window": 30}, "inputs.window"),
    ({"transform": "local_anomaly", "window": [11, 31, 3]}, "inputs.window"),
    ({"transform": "local_anomaly", "window": 1}, "inputs.window"),
    ({"transform": "local_anomaly", "windows": 11}, "inputs.windows"),
    ({"transform": "local_anomaly", "surface_pd": "yes"}, "inputs.surface_pd"),
])
def test_bad_config_refused_with_the_field_named(inputs, field):
    with pytest.raises(ModelError, match=field.replace(".", r"\.")):
        parse_config({"name": "x", "kind": "unet", "inputs": inputs})


def test_bad_transform_arguments_refused():
    with pytest.raises(ModelError, match="inputs is for kind unet"):
        parse_config({"name": "x", "kind": "bayes", "inputs": {"transform": "local_anomaly"}})
    with pytest.raises(ValueError, match="odd"):
        window_pair(10)
    with pytest.raises(ValueError, match="no parameters or buffers"):
        QuantileUNet(4, input_transform=torch.nn.Conv2d(13, 13, 1))
    with pytest.raises(ValueError, match="13 channels"):
        LocalAnomaly()(torch.zeros(1, 4, 8, 8))
    assert build_input_transform(parse_config({"name": "x", "kind": "unet", "inputs": {}}).inputs) is None

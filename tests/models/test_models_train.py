"""Training: cached scene sets, train -> save -> load -> infer round trip, resume, Bayes baseline."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from catalogs import schema
from catalogs.store import is_complete, open_dataset
from tests.conftest import make_tiny_swath
from models.bayes import BayesRetriever, fit_pca, weighted_quantiles
from models.registry import ModelCard, get_card, load_config, load_model
from models.scoring import climatology_quantiles, point_scores, score
from models.quantiles import QuantileDistribution
from models.train import TrainingCancelled, build_training_set, split_orbits, train


def tiny_cfg(**over):
    cfg = load_config("tiny")
    cfg.update(over)
    return cfg


def fake_swath(orbit, n_scans):
    """A small swath whose rain is a function of Tb: learnable, with a central strip reference."""
    rng = np.random.default_rng(orbit)
    n = n_scans or 64
    rain = rng.gamma(0.4, 3.0, (n, 24)).astype(np.float32) * (rng.random((n, 24)) < 0.3)
    tc = 200 + rng.normal(0, 5, (n, 24, 13)).astype(np.float32)
    tc[..., 7] -= 4 * rain  # scattering signal at 89 GHz
    ref = rain.copy()
    ref[:, :8] = np.nan
    ref[:, 16:] = np.nan
    return make_tiny_swath(n_scans=n, n_pix=24, orbit=orbit, tc=tc, surface_precip=ref, surface_precip_truth=rain)


def test_split_orbits_deterministic_and_in_period():
    cfg = load_config("unet-reference")["data"]
    a = split_orbits(cfg, "test")
    assert a == split_orbits(cfg, "test") and len(a) == cfg["test"]["orbits"] and len(set(a)) == len(a)
    from catalogs.simulator.geometry import orbit_start_time

    years = {str(orbit_start_time(o))[:4] for o in a}
    assert years == {"2021"}
    assert not set(a) & set(split_orbits(cfg, "train"))


def test_training_set_cached_once(data_root):
    cfg = tiny_cfg()
    calls = []

    def swath_fn(orbit, n):
        calls.append(orbit)
        return fake_swath(orbit, n)

    p = build_training_set(cfg, "train", swath_fn=swath_fn)
    assert is_complete(p)
    ds = open_dataset(p)
    assert ds.sizes["scene"] == 6 and ds.sizes["along_track"] == 32 and ds.sizes["pmw_frequency"] == 13
    n = len(calls)
    assert n == 3
    assert build_training_set(cfg, "train", swath_fn=swath_fn) == p
    assert len(calls) == n  # reused, not regenerated


def test_train_save_load_infer_roundtrip(data_root):
    """The tiny config on the real simulator: train, save, reload from the registry, infer."""
    card = train("tiny", command="pytest")
    assert card.checkpoint_sha256 and (data_root / "models" / "tiny" / "model.safetensors").is_file()
    assert card.training["best_epoch"] >= 1 and "test_2021" in card.metrics
    m = card.metrics["test_2021"]
    assert {"tiny", "climatology"} <= set(m) and {"bias_pct", "mse", "correlation", "crps", "pod_0p1", "far_10"} <= set(m["tiny"])
    again = get_card("tiny")
    assert again.checkpoint_sha256 == card.checkpoint_sha256 and again.training["command"] == "pytest"
    r = load_model("tiny")
    from catalogs.simulator import simulate_orbit

    sw = simulate_orbit(12345, n_scans=80)
    ds = r.predict(sw)
    schema.validate(ds, "retrieval")
    assert ds.sizes["along_track"] == 80 and ds.sizes["quantile"] == 8
    assert np.isfinite(ds.precip_mean.values).all()
    # deterministic: training again from scratch gives the same weights
    import shutil

    shutil.rmtree(data_root / "models" / "tiny")
    assert train("tiny", command="pytest").checkpoint_sha256 == card.checkpoint_sha256


def test_train_learns_and_resumes(data_root, monkeypatch):
    cfg = tiny_cfg(training={"epochs": 3, "batch_size": 2, "lr": 0.01, "seed": 0, "threads": 2, "crop_cross": 16})
    cfg["data"] = dict(cfg["data"])
    for split in ("train", "validation", "test"):
        build_training_set(cfg, split, swath_fn=fake_swath)
    out = data_root / "models" / "tiny-resume"
    cancel = threading.Event()
    seen = []

    def progress(done, total, msg):
        seen.append(msg)
        if "epoch 2/3" in msg:
            cancel.set()  # interrupt during the second epoch

    with pytest.raises(TrainingCancelled):
        train(cfg, progress=progress, cancel=cancel, out=out, command="t")
    assert (out / ".train-state" / "last.safetensors").is_file()
    msgs = []
    card = train(cfg, progress=lambda d, t, m: msgs.append(m), out=out, command="t")
    assert any("resumed after epoch 1" in m for m in msgs)
    assert [h["epoch"] for h in card.training["history"]] == [1, 2, 3]
    # an uninterrupted run gives the same history (deterministic seeds, exact resume)
    card2 = train(cfg, out=data_root / "models" / "tiny-straight", command="t")
    np.testing.assert_allclose([h["val_loss"] for h in card2.training["history"]],
                               [h["val_loss"] for h in card.training["history"]], rtol=1e-5)
    assert card.metrics["test_2021"]["tiny"]["crps"] > 0


def test_weighted_quantiles():
    v = np.array([[3.0, 1.0, 2.0, 4.0]])
    w = np.ones((1, 4))
    q = weighted_quantiles(v, w, np.array([0.125, 0.375, 0.5, 0.875]))
    np.testing.assert_allclose(q, [[1.0, 2.0, 2.5, 4.0]])
    # weight concentrated on one entry -> its value up to its (Hazen) position
    w2 = np.array([[1e-12, 1.0, 1e-12, 1e-12]])
    np.testing.assert_allclose(weighted_quantiles(v, w2, np.array([0.1, 0.3, 0.5])), [[1.0, 1.0, 1.0]], atol=1e-6)
    rng = np.random.default_rng(0)
    vv, ww = rng.gamma(0.5, 2, (50, 30)), rng.random((50, 30))
    qq = weighted_quantiles(vv, ww, np.linspace(0.01, 0.99, 20))
    assert np.all(np.diff(qq, axis=1) >= 0)


def _hazen_quantiles_by_row(values, weights, levels):
    """The definition, row by row with np.interp: sorted values at their Hazen positions
    (cumulative weight minus half their own), levels interpolated, clamped at both ends."""
    out = []
    for v, w in zip(values, weights):
        o = np.argsort(v, kind="stable")
        v, w = v[o], w[o] / w.sum()
        out.append(np.interp(levels, np.cumsum(w) - 0.5 * w, v))
    return np.maximum.accumulate(np.array(out), axis=1)


def test_weighted_quantiles_match_the_definition_across_blocks():
    """Blocked computation (any block size, a last block of 1 row) equals the row-by-row
    definition; ties among values (dry entries), levels beyond the first and last positions."""
    rng = np.random.default_rng(3)
    n, k = 2049, 17
    v = rng.gamma(0.4, 3.0, (n, k)) * (rng.random((n, k)) < 0.4)  # many exact zeros: ties
    w = rng.random((n, k)) ** 4 + 1e-9
    levels = np.array([0.001, 0.01, 0.2, 0.5, 0.8, 0.99, 0.999])
    want = _hazen_quantiles_by_row(v, w, levels)
    for rows in (1, 7, 1024, 5000):
        got = weighted_quantiles(v, w, levels, block_rows=rows)
        assert got.dtype == np.float32 and got.shape == (n, levels.size)
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)
    with pytest.raises(ValueError, match="levels must increase"):
        weighted_quantiles(v, w, levels[::-1])
    with pytest.raises(ValueError, match="must be the same"):
        weighted_quantiles(v, w[:, :3], levels)


def test_bayes_retrieval_conditions_on_tb():
    rng = np.random.default_rng(0)
    n = 20000
    rain = rng.gamma(0.4, 3.0, n) * (rng.random(n) < 0.3)
    tb = 200 + rng.normal(0, 2, (n, 13))
    tb[:, 7] -= 5 * rain
    levels = [0.1, 0.5, 0.9, 0.99]
    card = ModelCard(name="b", kind="bayes", config={"bayes": {"neighbours": 32}}, checkpoint_sha256="0" * 64, levels=levels)
    r = BayesRetriever.from_arrays(card, tb, rain, fit_pca(tb, 4), 0.5)
    qtest = np.array([200.0] * 13)
    heavy = qtest.copy()
    heavy[7] -= 50  # strong scattering: ~10 mm/h
    q = r.quantiles(np.stack([qtest, heavy, np.full(13, np.nan)]))
    assert q[0, 1] < 0.5 and 3 < q[1, 1] < 15 and q[1, 3] > 6  # conditioned on the scattering signal
    assert np.isnan(q[2]).all()
    assert np.all(np.diff(q[:2], axis=1) >= 0)
    # as a retriever on a swath: pixelwise, schema-valid
    ds = r.predict(make_tiny_swath(n_scans=10, n_pix=7))
    schema.validate(ds, "retrieval")


def test_scoring_definitions():
    ref = np.array([0.0, 0.0, 1.0, 20.0])
    pred = np.array([0.0, 0.5, 1.0, 5.0])
    s = point_scores(pred, ref)
    assert s["bias_pct"] == pytest.approx(100 * (6.5 - 21) / 21)
    assert s["mse"] == pytest.approx((0.25 + 225) / 4)
    assert s["pod_0p1"] == pytest.approx(1.0) and s["far_0p1"] == pytest.approx(1 / 3)
    assert s["pod_10"] == 0.0 and np.isnan(s["far_10"])
    lv = [0.1, 0.5, 0.9]
    clim = climatology_quantiles(np.arange(11.0), lv)
    np.testing.assert_allclose(clim, [1, 5, 9])
    d = QuantileDistribution(np.broadcast_to(clim, (4, 3)), lv)
    sc = score(d, ref)
    np.testing.assert_allclose(sc["crps"], d.crps(ref).mean())

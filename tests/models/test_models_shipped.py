"""The shipped checkpoints load out of the box (hash-checked), retrieve, and carry their scores."""

from __future__ import annotations

import numpy as np
import pytest

from catalogs import schema
from models.registry import SHIPPED_DIR, get_card, load_model, sha256_file


@pytest.mark.parametrize("name", ["unet-reference", "bayes-baseline"])
def test_shipped_model_loads_and_retrieves(name, data_root):
    card = get_card(name)
    assert card.path == str(SHIPPED_DIR / name)
    assert sha256_file(SHIPPED_DIR / name / "model.safetensors") == card.checkpoint_sha256
    assert (SHIPPED_DIR / name / "model.safetensors").stat().st_size < 10 * 2**20
    assert "2015" in card.training["periods"]["train"] and card.training["command"].startswith("raincheck train")
    from catalogs.simulator import simulate_orbit

    sw = simulate_orbit(31000, n_scans=160)
    ds = load_model(name).predict(sw)
    schema.validate(ds, "retrieval")
    strip = np.isfinite(sw.surface_precip.values)
    assert np.isfinite(ds.precip_mean.values[strip]).all()


def test_shipped_cards_report_heldout_skill():
    m = get_card("unet-reference").metrics["test_2021"]
    unet, bayes, clim = m["unet-reference"], m["bayes-baseline"], m["climatology"]
    assert unet["crps"] < 0.5 * clim["crps"] and unet["mse"] < 0.5 * clim["mse"]
    assert unet["mse"] < bayes["mse"] and unet["correlation"] > bayes["correlation"]
    assert m["checkpoints"]["bayes-baseline"] == get_card("bayes-baseline").checkpoint_sha256[:12]

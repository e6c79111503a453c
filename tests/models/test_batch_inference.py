"""Batch inference across a dask LocalCluster: every orbit stored once, reruns are cache hits,
failures are per orbit, the same result as in-process inference."""

import numpy as np
import pytest

from catalogs import store
from catalogs.outputs import output_path
from models.base import ModelError
from models.batch import infer_orbits
from models.registry import get_card

ORBITS = [20010, 20011, 20012]


@pytest.mark.slow
def test_cluster_batch_then_cache_hits(data_root):
    # the reference U-Net (0.8 s an orbit here; the Bayesian baseline takes 13 s): what is tested
    # is the batch's bookkeeping on a real cluster, not the model
    model = "unet-reference"
    sha = get_card(model).checkpoint_sha256
    seen = []
    res = infer_orbits(model, ORBITS + [ORBITS[0]], scheduler=None, n_workers=2, device="cpu",
                       progress=lambda d, t, m: seen.append((d, t)))
    assert sorted(res.computed) == ORBITS and not res.cached and not res.failed
    assert seen[-1] == (3, 3)
    for o in ORBITS:
        p = output_path(model, sha, o, "synthetic")
        assert store.is_complete(p) and store.open_dataset(p).attrs["orbit_number"] == o
    again = infer_orbits(model, ORBITS, scheduler="inline", device="cpu")
    assert sorted(again.cached) == ORBITS and not again.computed


@pytest.mark.slow
def test_inline_matches_direct_inference_and_records_failures(data_root):
    from models.inference import predict_swath
    from models.registry import load_model
    from catalogs.simulator import simulate_orbit

    res = infer_orbits("bayes-baseline", [20013, 10**9], scheduler="inline", device="cpu")
    assert res.computed == [20013] and 10**9 in res.failed
    sha = get_card("bayes-baseline").checkpoint_sha256
    stored = store.open_dataset(output_path("bayes-baseline", sha, 20013, "synthetic")).load()
    direct = predict_swath(load_model("bayes-baseline", device="cpu"), simulate_orbit(20013))
    np.testing.assert_allclose(stored.precip_mean.values, direct.precip_mean.values, rtol=1e-6, equal_nan=True)


def test_unknown_model_fails_before_any_work(data_root):
    with pytest.raises(ModelError):
        infer_orbits("no-such-model", [1, 2], scheduler=None)

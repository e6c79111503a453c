"""The forced response beside the present-climate CRPS (evaluation.warming.table): its numbers are
the shipped results' own rows and the shipped comparison's CRPS (read here by hand from the JSON
files), missing models get NaN and a note, and model cards take rows only from results of their
own checkpoint."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

from evaluation.compare import PACKAGED_RESULT
from evaluation.warming import load_results
from evaluation.warming.response import SHIPPED_DIR
from evaluation.warming import table as TB


@pytest.fixture(scope="module")
def shipped():
    return load_results()


@pytest.fixture(scope="module")
def comparison():
    return json.loads(PACKAGED_RESULT.read_text())


def _raw_row(world, source, statistic, level_q, warming_K, group="global"):
    """The row of a shipped result file, found by hand in the JSON (no ForcedResponse)."""
    with open(SHIPPED_DIR / f"{world}.json") as f:
        d = json.load(f)
    hits = [r for r in d["rows"] if r["source"] == source and r["group"] == group and r["statistic"] == statistic
            and r["population"] == "all" and r["warming_K"] == warming_K
            and (level_q is None or (r["level_q"] is not None and abs(r["level_q"] - level_q) < 1e-12))]
    assert len(hits) == 1, hits
    return hits[0]


def _val(x):
    return float("nan") if x is None else float(x)


def test_parse_stat_names():
    assert TB.parse_stat("p99.9") == ("quantile", 0.999, "p99.9")
    assert TB.parse_stat("q99") == ("quantile", 0.99, "p99")
    assert TB.parse_stat("mean") == ("mean", None, "mean")
    for bad in ("p100", "median", "p", "q-1"):
        with pytest.raises(ValueError, match="unknown forced-response statistic"):
            TB.parse_stat(bad)


def test_table_rows_are_the_results_rows_and_crps_is_the_comparisons(shipped, comparison):
    t = TB.forced_table(shipped, comparison)
    levels = {w: fr.meta["levels_K"] for w, fr in shipped.items()}
    models = list(dict.fromkeys([*comparison["models"], *(m for fr in shipped.values() for m in fr.models)]))
    assert list(dict.fromkeys(t["model"])) == models
    assert len(t) == len(models) * sum(len(v) for v in levels.values()) * 3
    both = [m for m in comparison["models"] if all(m in fr.models for fr in shipped.values())]
    assert len(both) >= 8  # the shipped models of the issue-14 results
    # a model in both sources, of the same checkpoints: no note
    assert (t[t.model.isin(both)]["note"] == "").all()
    ref_crps = comparison["models"]["unet-reference"]["test"]["crps"]
    for world, model, stat, q, L in (("today", "unet-reference", "quantile", 0.999, 4.0),
                                     ("published", "bayes-baseline", "quantile", 0.99, 2.0),
                                     ("stationary", "unet-twcrps", "mean", None, 1.0),
                                     ("published-super-cc", "flow-residual", "quantile", 0.999, 1.0)):
        label = "mean" if q is None else f"p{100 * q:g}"
        got = t[(t.world == world) & (t.model == model) & (t.statistic == label) & (t.warming_K == L)]
        assert len(got) == 1
        g = got.iloc[0]
        raw = _raw_row(world, model, stat, q, L)
        truth = _raw_row(world, "truth", stat, q, L)
        np.testing.assert_equal([g.error, g.error_lo, g.error_hi, g.model_response],
                                [_val(raw["error"]), _val(raw["error_lo"]), _val(raw["error_hi"]),
                                 _val(raw["response"])])
        assert g.verdict == raw["verdict"]
        np.testing.assert_equal([g.truth_response, g.truth_lo, g.truth_hi],
                                [_val(truth["response"]), _val(truth["lo"]), _val(truth["hi"])])
        # the error is model minus truth of the same rows (to the 6 digits the JSON keeps)
        assert g.error == pytest.approx(raw["response"] - truth["response"], abs=2e-4 * max(1, abs(g.error)))
        crps = comparison["models"][model]["test"]["crps"]
        assert g.crps_test == crps and g.crps_ratio == pytest.approx(crps / ref_crps, rel=1e-15)
        with open(SHIPPED_DIR / f"{world}.json") as f:
            meta = json.load(f)
        assert g.forced_checkpoint_sha256 == meta["models"][model]["checkpoint_sha256"]
        assert g.world_version == meta["world"]["version"] and g.ci == meta["ci"]
    assert (t[t.model == "unet-reference"]["crps_ratio"] == 1.0).all()


def test_missing_models_appear_with_nan_and_a_note(shipped, comparison):
    comp = json.loads(json.dumps(comparison))
    comp["models"]["unit-only-compared"] = json.loads(json.dumps(comp["models"]["unet-hybrid"]))
    comp["models"]["unit-only-compared"]["test"]["crps"] = 0.02
    del comp["models"]["unet-density"]
    comp["models"]["unet-hybrid"]["sha256"] = "ab" * 32  # a comparison of another checkpoint
    t = TB.forced_table({"today": shipped["today"]}, comp)
    only = t[t.model == "unit-only-compared"]
    assert len(only) == 9 and only["error"].isna().all() and only["verdict"].isna().all()
    np.testing.assert_allclose(only["crps_ratio"], 0.02 / comp["models"]["unet-reference"]["test"]["crps"], rtol=1e-15)
    assert only["note"].str.contains("not in the today forced-response result").all()
    # the truth's response is the result's, whatever the model
    ref = t[t.model == "unet-reference"].set_index(["statistic", "warming_K"])["truth_response"]
    np.testing.assert_array_equal(only.set_index(["statistic", "warming_K"])["truth_response"], ref)
    dens = t[t.model == "unet-density"]
    assert dens["crps_test"].isna().all() and dens["error"].notna().all()
    assert dens["note"].str.contains("not in the model comparison").all()
    hyb = t[t.model == "unet-hybrid"]
    assert hyb["note"].str.contains("CRPS of checkpoint abababababab, forced response of checkpoint 4ad6e31b9dbe").all()
    # no comparison at all
    t0 = TB.forced_table({"today": shipped["today"]}, None)
    assert t0["crps_test"].isna().all() and t0["note"].str.contains("no model comparison").all()
    assert t0["error"].notna().all()
    # a quantile level the result does not have: NaN and a note, never a neighbour's number
    t1 = TB.forced_table({"today": shipped["today"]}, comparison, stats=("p99.8",))
    assert t1["error"].isna().all() and t1["note"].str.contains("has no p99.8").all()
    with pytest.raises(ValueError, match="no forced-response result has the group 'arctic'"):
        TB.forced_table(shipped, comparison, group="arctic")


def test_headline_and_level_table(shipped, comparison):
    t = TB.forced_table(shipped, comparison)
    h = TB.headline(t).set_index("model")
    assert list(h.index) == list(dict.fromkeys(t["model"]))
    for world in shipped:
        raw = _raw_row(world, "unet-climate", "quantile", 0.999, 4.0)
        assert h.loc["unet-climate", f"{world} error"] == _val(raw["error"])
        assert h.loc["unet-climate", f"{world} error_lo"] == _val(raw["error_lo"])
        assert h.loc["unet-climate", f"{world} verdict"] == raw["verdict"]
    assert h.loc["unet-climate", "crps_ratio"] == pytest.approx(
        comparison["models"]["unet-climate"]["test"]["crps"] / comparison["models"]["unet-reference"]["test"]["crps"])
    # a level no result has: NaN with a note
    h6 = TB.headline(t, level_K=6.0)
    assert h6[[c for c in h6.columns if c.endswith(" error")]].isna().all().all()
    assert h6["note"].str.contains("has no \\+6 K level").all()
    lt = TB.level_table(t, "today").set_index(["model", "statistic"])
    raw = _raw_row("today", "unet-hybrid", "quantile", 0.99, 2.0)
    assert lt.loc[("unet-hybrid", "p99"), "+2 K error"] == _val(raw["error"])
    assert lt.loc[("unet-hybrid", "p99"), "+2 K hi"] == _val(raw["error_hi"])
    assert lt.loc[("unet-hybrid", "p99"), "+2 K verdict"] == raw["verdict"]
    with pytest.raises(ValueError, match="no rows of the world preset 'nowhere'"):
        TB.level_table(t, "nowhere")


def test_card_rows(shipped):
    rows = TB.card_rows(shipped, "unet-tailpinball")
    assert len(rows) == sum(len(fr.meta["levels_K"]) for fr in shipped.values()) * 3
    r = next(x for x in rows if x["world"] == "published" and x["statistic"] == "p99.9" and x["warming_K"] == 4.0)
    raw = _raw_row("published", "unet-tailpinball", "quantile", 0.999, 4.0)
    assert (r["error"], r["error_lo"], r["error_hi"], r["verdict"]) == \
        (raw["error"], raw["error_lo"], raw["error_hi"], raw["verdict"])
    assert r["checkpoint_sha256"] == shipped["published"].meta["models"]["unet-tailpinball"]["checkpoint_sha256"]
    assert r["world_version"] == shipped["published"].meta["world"]["version"]
    json.dumps(rows, allow_nan=False)  # JSON-clean
    assert TB.card_rows(shipped, "no-such-model") == []


def _user_card(data_root, name):
    """A copy of a shipped card in the user's model folder (it shadows the shipped one), without the
    forced-response rows the shipped card already carries (so a test sees what update_cards writes)."""
    from models.registry import SHIPPED_DIR as MODELS

    dst = data_root / "models" / name
    dst.mkdir(parents=True)
    d = yaml.safe_load((MODELS / name / "card.yaml").read_text())
    (d.get("metrics") or {}).pop("forced_response", None)
    (dst / "card.yaml").write_text(yaml.safe_dump(d, sort_keys=False, allow_unicode=True))
    return dst / "card.yaml"


def test_update_cards_only_from_results_of_the_cards_checkpoint(shipped, data_root, caplog):
    from models.registry import SHIPPED_DIR as MODELS

    before = {n: (MODELS / n / "card.yaml").read_bytes() for n in ("unet-reference", "unet-hybrid")}
    good = _user_card(data_root, "unet-reference")
    bad = _user_card(data_root, "unet-hybrid")
    d = yaml.safe_load(bad.read_text())
    d["checkpoint_sha256"] = "ab" * 32  # retrained since the results
    bad.write_text(yaml.safe_dump(d, sort_keys=False))
    with caplog.at_level("WARNING", logger="evaluation.warming.table"):
        updated, skipped = TB.update_cards(shipped, ["unet-reference", "unet-hybrid", "no-such-model"])
    assert updated == ["unet-reference"]
    assert set(skipped) == {"unet-hybrid", "no-such-model"}
    assert "no forced-response result of its checkpoint abababababab" in skipped["unet-hybrid"]
    assert "unknown model 'no-such-model'" in skipped["no-such-model"]
    assert "is of checkpoint 4ad6e31b9dbe, the card's is abababababab: skipped" in caplog.text
    assert "forced_response" not in (yaml.safe_load(bad.read_text()).get("metrics") or {})
    card = yaml.safe_load(good.read_text())
    fr_m = card["metrics"]["forced_response"]
    assert fr_m["worlds"] == sorted(shipped) and fr_m["rows"] == TB.card_rows(shipped, "unet-reference")
    assert {r["checkpoint_sha256"] for r in fr_m["rows"]} == {card["checkpoint_sha256"]}
    assert "comparison" in card["metrics"]  # the card's other metrics stay
    # the shipped cards are never touched by a test
    assert {n: (MODELS / n / "card.yaml").read_bytes() for n in before} == before
    assert not any(math.isnan(r["error"]) for r in fr_m["rows"] if r["error"] is not None)


def test_cards_command(data_root):
    from click.testing import CliRunner

    from app.cli import main

    card = _user_card(data_root, "unet-climate")
    out = CliRunner().invoke(main, ["warming", "cards", "--models", "unet-climate"])
    assert out.exit_code == 0, out.output
    assert "card of unet-climate: metrics.forced_response written" in out.output
    rows = yaml.safe_load(card.read_text())["metrics"]["forced_response"]["rows"]
    assert {r["world"] for r in rows} == set(load_results())
    out = CliRunner().invoke(main, ["warming", "cards", "--models", "unet-climat"])
    assert out.exit_code != 0 and "unknown model 'unet-climat'; did you mean 'unet-climate'?" in out.output

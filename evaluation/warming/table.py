"""The forced response beside the present-climate scores (issue 15): one table of both, the
headline across world presets, and the rows a model card carries.

Sources, never re-derived here:

- the forced-response results (:class:`evaluation.warming.response.ForcedResponse`, one per world
  preset, :func:`evaluation.warming.load_results`): per model, statistic and warming level the
  error of the model's response (model − truth, %/K) with its paired scene-bootstrap interval and
  the verdict, and the truth's own response;
- the model comparison (``raincheck.compare/1``, :mod:`evaluation.compare`): the present-climate
  CRPS of each model on the held-out test year, ``comparison["models"][name]["test"]["crps"]``
  (mm h-1), and the comparison's reference model (``comparison["reference"]``).

A model missing from either source still gets its rows, with NaN where that source has nothing
and a note saying why; nothing is filled in. Where the comparison and the forced-response result
were computed with different checkpoints of a model, the row says so.

Statistics are named as in :mod:`evaluation.compare`: ``mean`` (mean rain rate, all pixels),
``wet_fraction`` and the quantiles of all pixels ``p99``, ``p99.9`` ... (``q99.9`` is accepted too:
the key of the Warming response view). Only the quantile levels a result holds exist.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from evaluation.warming.response import KIND, SCHEMA_VERSION, TRUTH, ForcedResponse
from models.errors import ModelError

log = logging.getLogger(__name__)

#: the statistics of the comparison view's table and figure, and of a model card
DEFAULT_STATS = ("mean", "p99", "p99.9")
#: the headline: this statistic's error at this warming level in every world preset
HEADLINE_STAT = "p99.9"
HEADLINE_LEVEL_K = 4.0
#: the columns of :func:`forced_table`
TABLE_COLUMNS = ("model", "world", "world_version", "product", "group", "warming_K", "statistic", "error",
                 "error_lo", "error_hi", "verdict", "ci", "truth_response", "truth_lo", "truth_hi", "model_response",
                 "crps_test", "crps_reference", "crps_ratio", "forced_checkpoint_sha256", "crps_checkpoint_sha256",
                 "note")
_STAT_RE = re.compile(r"[pq](\d+(?:\.\d+)?)")


def parse_stat(key: str) -> tuple[str, float | None, str]:
    """``(statistic, level_q, label)`` of a statistic's name: ``mean``, ``wet_fraction``, or a
    percentile of all pixels ``p99.9`` / ``q99.9`` (level 0.999, label ``p99.9``). A
    ValueError naming the key otherwise."""
    k = str(key).strip()
    if k in ("mean", "wet_fraction"):
        return k, None, k
    m = _STAT_RE.fullmatch(k)
    if m:
        pct = float(m.group(1))
        if 0.0 < pct < 100.0:
            return "quantile", round(pct / 100.0, 10), f"p{pct:g}"
    raise ValueError(f"unknown forced-response statistic {key!r}: give mean, wet_fraction or a percentile of all "
                     "pixels such as p99 or p99.9")


def _num(x) -> float:
    """A number of a JSON source as float (None, missing, text → NaN)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return float("nan")
    return v


def _crps_of(comparison: Mapping | None) -> tuple[dict, dict, str | None]:
    """``({model: test-year CRPS}, {model: checkpoint sha256}, reference)`` of a comparison."""
    if not comparison:
        return {}, {}, None
    models = comparison.get("models")
    if not isinstance(models, Mapping):
        raise ValueError("the comparison has no 'models' mapping: not a raincheck.compare/1 result")
    crps, sha = {}, {}
    for name, m in models.items():
        test = (m or {}).get("test") if isinstance(m, Mapping) else None
        crps[name] = _num(test.get("crps")) if isinstance(test, Mapping) else float("nan")
        sha[name] = str(m.get("sha256") or "") if isinstance(m, Mapping) else ""
    return crps, sha, comparison.get("reference")


def _result_rows(fr: ForcedResponse, group: str, specs: list[tuple[str, float | None, str]]) -> dict:
    """``{(source, label, warming_K): row}`` of the result's rows of ``group`` for ``specs``."""
    df = fr.frame()
    df = df[(df["group"] == group) & (df["population"] == "all")]
    out = {}
    for stat, q, label in specs:
        d = df[df["statistic"] == stat]
        if q is not None:
            d = d[np.isclose(d["level_q"].astype(float), q, rtol=0, atol=1e-9)]
        for r in d.itertuples(index=False):
            out[(r.source, label, float(r.warming_K))] = r
    return out


def forced_table(responses: Mapping[str, ForcedResponse], comparison: Mapping | None, *, group: str = "global",
                 stats: Sequence[str] = DEFAULT_STATS, models: Sequence[str] | None = None,
                 reference: str | None = None) -> pd.DataFrame:
    """One row per (model, world, warming_K, statistic) with the columns :data:`TABLE_COLUMNS`.

    ``responses``: ``{world: ForcedResponse}`` (:func:`evaluation.warming.load_results`);
    ``comparison``: a ``raincheck.compare/1`` result (JSON nulls allowed) or None. ``models``:
    which models (default: the comparison's, then every result's, in order). ``crps_ratio`` is
    the model's test-year CRPS over ``reference``'s (default: the comparison's reference,
    ``unet-reference`` for ``raincheck compare``). ``error``, ``error_lo``/``error_hi`` (the
    result's ``ci`` % paired scene-bootstrap interval) and ``verdict`` are the result's row of the
    model; ``truth_*`` the truth's response (%/K) on the same scenes."""
    specs = [parse_stat(s) for s in stats]
    if group not in {g for fr in responses.values() for g in (fr.meta.get("groups") or {})} and responses:
        have = sorted({g for fr in responses.values() for g in (fr.meta.get("groups") or {})})
        raise ValueError(f"no forced-response result has the group {group!r} (groups: {', '.join(have)})")
    crps, crps_sha, ref = _crps_of(comparison)
    ref = reference or ref
    crps_ref = crps.get(ref, float("nan")) if ref else float("nan")
    if models is None:
        names = list(crps) + [m for fr in responses.values() for m in fr.models]
        models = list(dict.fromkeys(names))
    rows = []
    for world, fr in responses.items():
        wmeta = fr.meta.get("world") or {}
        levels = [float(x) for x in fr.meta.get("levels_K") or []]
        lookup = _result_rows(fr, group, specs)
        have_q = [float(q) for q in fr.meta.get("quantile_levels") or []]
        sha_of = {n: str((i or {}).get("checkpoint_sha256") or "") for n, i in (fr.meta.get("models") or {}).items()}
        for name in models:
            base_notes = []
            in_result = name in fr.models
            if not in_result:
                base_notes.append(f"{name} is not in the {world} forced-response result")
            if comparison is None:
                base_notes.append("no model comparison: present-climate CRPS unknown")
            elif name not in crps:
                base_notes.append(f"{name} is not in the model comparison: present-climate CRPS unknown")
            elif in_result and crps_sha.get(name) and sha_of.get(name) and crps_sha[name] != sha_of[name]:
                base_notes.append(f"CRPS of checkpoint {crps_sha[name][:12]}, forced response of checkpoint "
                                  f"{sha_of[name][:12]}")
            c = crps.get(name, float("nan"))
            ratio = c / crps_ref if math.isfinite(c) and math.isfinite(crps_ref) and crps_ref > 0 else float("nan")
            for L in levels:
                for stat, q, label in specs:
                    notes = list(base_notes)
                    if q is not None and not any(math.isclose(q, h, abs_tol=1e-9) for h in have_q):
                        notes.append(f"the {world} result has no {label} (quantile levels "
                                     f"{', '.join(f'p{100 * h:g}' for h in have_q)})")
                    t = lookup.get((TRUTH, label, L))
                    r = lookup.get((name, label, L)) if in_result else None
                    rows.append({
                        "model": name, "world": world, "world_version": wmeta.get("version"),
                        "product": fr.meta.get("product"), "group": group, "warming_K": L, "statistic": label,
                        "error": _num(r.error) if r is not None else np.nan,
                        "error_lo": _num(r.error_lo) if r is not None else np.nan,
                        "error_hi": _num(r.error_hi) if r is not None else np.nan,
                        "verdict": (r.verdict if r is not None and isinstance(r.verdict, str) else None),
                        "ci": _num(fr.meta.get("ci")),
                        "truth_response": _num(t.response) if t is not None else np.nan,
                        "truth_lo": _num(t.lo) if t is not None else np.nan,
                        "truth_hi": _num(t.hi) if t is not None else np.nan,
                        "model_response": _num(r.response) if r is not None else np.nan,
                        "crps_test": c, "crps_reference": ref, "crps_ratio": ratio,
                        "forced_checkpoint_sha256": sha_of.get(name) or None,
                        "crps_checkpoint_sha256": crps_sha.get(name) or None,
                        "note": "; ".join(notes)})
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def headline(table: pd.DataFrame, *, stat: str = HEADLINE_STAT, level_K: float = HEADLINE_LEVEL_K) -> pd.DataFrame:
    """Wide: one row per model, its test-year CRPS and CRPS ratio, then per world preset the
    error of ``stat`` at ``level_K`` (%/K, model − truth) with its interval and verdict
    (``<world> error``, ``<world> error_lo``, ``<world> error_hi``, ``<world> verdict``); NaN where
    a world's result lacks the model or the level (``note`` says which)."""
    label = parse_stat(stat)[2]
    models = list(dict.fromkeys(table["model"]))
    worlds = list(dict.fromkeys(table["world"]))
    first = table.drop_duplicates("model").set_index("model")
    out = pd.DataFrame({"model": models})
    out["crps_test"] = [float(first.loc[m, "crps_test"]) for m in models]
    out["crps_ratio"] = [float(first.loc[m, "crps_ratio"]) for m in models]
    out["crps_reference"] = [first.loc[m, "crps_reference"] for m in models]
    notes = {m: [] for m in models}
    sel = table[(table["statistic"] == label) & np.isclose(table["warming_K"].astype(float), float(level_K))]
    for w in worlds:
        d = sel[sel["world"] == w].set_index("model")
        for col in ("error", "error_lo", "error_hi", "verdict"):
            out[f"{w} {col}"] = [d.loc[m, col] if m in d.index else (None if col == "verdict" else np.nan)
                                 for m in models]
        for m in models:
            if m not in d.index:
                notes[m].append(f"the {w} result has no +{level_K:g} K level")
            elif d.loc[m, "note"]:
                notes[m].append(f"{w}: {d.loc[m, 'note']}")
    out["note"] = ["; ".join(dict.fromkeys(notes[m])) for m in models]
    return out


def level_table(table: pd.DataFrame, world: str) -> pd.DataFrame:
    """One world's rows side by side: per model and statistic, the test-year CRPS and CRPS ratio,
    then per warming level the error (%/K), its interval and the verdict (``+<L> K error``,
    ``+<L> K lo``, ``+<L> K hi``, ``+<L> K verdict``)."""
    d = table[table["world"] == world]
    if not len(d):
        raise ValueError(f"the table has no rows of the world preset {world!r}")
    levels = sorted(float(x) for x in d["warming_K"].unique())
    stats = list(dict.fromkeys(d["statistic"]))
    rows = []
    for m in dict.fromkeys(d["model"]):
        dm = d[d["model"] == m]
        for s in stats:
            ds = dm[dm["statistic"] == s].set_index("warming_K")
            if not len(ds):
                continue
            r0 = ds.iloc[0]
            row = {"model": m, "statistic": s, "crps_test": float(r0["crps_test"]), "crps_ratio": float(r0["crps_ratio"])}
            for L in levels:
                r = ds.loc[L] if L in ds.index else None
                row[f"+{L:g} K error"] = float(r["error"]) if r is not None else np.nan
                row[f"+{L:g} K lo"] = float(r["error_lo"]) if r is not None else np.nan
                row[f"+{L:g} K hi"] = float(r["error_hi"]) if r is not None else np.nan
                row[f"+{L:g} K verdict"] = r["verdict"] if r is not None else None
            row["note"] = "; ".join(dict.fromkeys(n for n in ds["note"] if n))
            rows.append(row)
    return pd.DataFrame(rows)


def _clean(x):
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def card_rows(responses: Mapping[str, ForcedResponse], name: str, *, group: str = "global",
              stats: Sequence[str] = DEFAULT_STATS) -> list[dict]:
    """The forced-response rows of model ``name`` for its card: per world preset whose result
    holds it, per warming level and statistic, the error (%/K, model − truth), its interval, the
    verdict, the world's version, the product and the result's checkpoint sha256 of the model
    (JSON-clean: an undefined value is None)."""
    have = {w: fr for w, fr in responses.items() if name in fr.models}
    if not have:
        return []
    t = forced_table(have, None, group=group, stats=stats, models=[name])
    out = []
    for r in t.itertuples(index=False):
        fr = have[r.world]
        out.append({"world": r.world, "world_version": r.world_version, "product": r.product, "group": r.group,
                    "warming_K": _clean(r.warming_K), "statistic": r.statistic, "error": _clean(r.error),
                    "error_lo": _clean(r.error_lo), "error_hi": _clean(r.error_hi), "ci": _clean(r.ci),
                    "verdict": r.verdict, "checkpoint_sha256": r.forced_checkpoint_sha256,
                    "n_scenes": _clean(fr.meta.get("n_scenes")), "n_boot": _clean(fr.meta.get("n_boot")),
                    "created": fr.meta.get("created")})
    return out


def result_checkpoint(fr: ForcedResponse, name: str) -> str:
    """The checkpoint sha256 a result recorded for model ``name`` ('' when none)."""
    return str(((fr.meta.get("models") or {}).get(name) or {}).get("checkpoint_sha256") or "")


def update_cards(responses: Mapping[str, ForcedResponse], names: Sequence[str] | None = None, *,
                 group: str = "global", stats: Sequence[str] = DEFAULT_STATS) -> tuple[list[str], dict[str, str]]:
    """Write ``metrics["forced_response"]`` into the cards of ``names`` (default: every model of
    the results) from the results whose recorded checkpoint of the model is the card's
    ``checkpoint_sha256``; a result of another checkpoint is skipped and logged (the numbers would
    not be the card's model's). Returns ``(updated names, {skipped name: why})``; a card with no
    matching result is not touched."""
    from models.registry import get_card  # (the registry loads torch)

    if names is None:
        names = list(dict.fromkeys(m for fr in responses.values() for m in fr.models))
    updated, skipped = [], {}
    for n in names:
        try:
            card = get_card(n)
        except ModelError as e:
            skipped[n] = str(e)
            log.warning("forced response not written to the card of %s: %s", n, e)
            continue
        want = str(card.checkpoint_sha256 or "").lower()
        ok, other = {}, []
        for w, fr in responses.items():
            if n not in fr.models:
                continue
            got = result_checkpoint(fr, n).lower()
            if got == want:
                ok[w] = fr
            else:
                other.append(w)
                log.warning("card of %s: the %s forced-response result is of checkpoint %s, the card's is %s: "
                            "skipped (run `raincheck warming run --world %s --models %s` again)", n, w, got[:12] or "?",
                            want[:12], w, n)
        if not ok:
            why = (f"no forced-response result of its checkpoint {want[:12]} (results of other checkpoints: "
                   f"{', '.join(other)})" if other else "no forced-response result holds it")
            skipped[n] = why
            log.warning("forced response not written to the card of %s: %s", n, why)
            continue
        metrics = dict(card.metrics or {})
        metrics["forced_response"] = {
            "kind": KIND, "schema_version": SCHEMA_VERSION, "group": group,
            "error": "model − truth response, %/K; interval: ci % paired scene bootstrap",
            "worlds": sorted(ok), "rows": card_rows(ok, n, group=group, stats=stats)}
        card.metrics = metrics
        try:
            card.save(card.path)
        except OSError as e:
            skipped[n] = f"card folder {card.path} is not writable ({e})"
            log.warning("forced response not written to the card of %s: %s", n, skipped[n])
            continue
        updated.append(n)
    return updated, skipped

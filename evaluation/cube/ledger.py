"""The ledger and source identities: which version of each source a cube's numbers come from
(``source_identity``), the configuration key a cube was built with, and the stale-source check."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from catalogs.store import is_complete
from evaluation import distributions as D
from evaluation.cube import archive as AR
from evaluation.cube.layout import (FORMAT_VERSION, LEDGER, REFERENCE, STRIP, TRUTH, TRUTH_STRIP,
                                    StaleSource, _group, model_of, pairs_for)
import catalogs.simulator

log = logging.getLogger(__name__)


def source_identity(source: str, cfg: dict) -> dict:
    """What version of ``source`` a build with ``cfg`` computes (recorded in the ledger).

    truth / truth_strip / reference: ``{"truth_version": catalogs.simulator.TRUTH_VERSION}``
    (simulator loader). A model: ``{"checkpoint_sha256": <first 12 hex of the registered
    checkpoint>}`` (or ``{"model": ...}`` for a callable in ``cfg["model_fns"]``: its
    ``identity`` attribute, else its qualified name) plus ``"product_version":
    catalogs.simulator.PRODUCT_VERSION`` with the simulator loader (the Tb the model reads)."""
    loader = cfg.get("loader", "simulator")
    m = model_of(source)
    if AR.is_archive_config(cfg) and (m is None or m in (cfg.get("baselines") or {})):
        return AR.source_identity(source, cfg)
    if m is None:
        if loader == "simulator":
            return {"truth_version": catalogs.simulator.TRUTH_VERSION}  # read at call time
        return {"loader": str(loader)}
    fn = (cfg.get("model_fns") or {}).get(m)
    if fn is not None:
        ident = {"model": str(getattr(fn, "identity", None)
                              or f"callable:{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}")}
    else:
        from models.registry import get_card

        ident = {"checkpoint_sha256": str(get_card(m).checkpoint_sha256)[:12]}
    if loader == "simulator":
        ident["product_version"] = catalogs.simulator.PRODUCT_VERSION  # read at call time
    elif AR.is_archive_config(cfg):
        ident.update(AR.source_identity(source, cfg))  # the 1C-GMI version the model reads
    return ident


def _identities(sources: Iterable[str], cfg: dict, known: dict | None = None) -> dict:
    """Identities of ``sources`` and of the sides of their skill pairs (``known`` first)."""
    sources = list(sources)
    need = list(sources) + [x for p in pairs_for(sources) for x in p.split("|")]
    known = known or {}
    out: dict = {}
    for s in dict.fromkeys(need):
        out[s] = known[s] if s in known else source_identity(s, cfg)
    return out


def _fmt_identity(ident) -> str:
    if not ident:
        return "not recorded (cube written before identities were recorded)"
    return ", ".join(f"{k}={v}" for k, v in sorted(ident.items()))


def _legacy_partial(pid: dict, names: Iterable[str], cur: dict | None, where: str) -> dict:
    """Identities of a partial written before they were recorded (``pid`` empty): its truth /
    reference count as the current version (as in a cube of that age), its models as unknown."""
    if pid or not cur:
        return pid
    out = {x: cur[x] for x in names if model_of(x) is None and x in cur}
    if out:
        log.info("%s records no identities (written before they were); its truth/reference are taken as %s",
                 where, _fmt_identity(next(iter(out.values()))))
    return out


def read_ledger(path: Path) -> dict:
    path = Path(path)
    if not is_complete(path):
        return {"format": FORMAT_VERSION, "config": None, "sources": {}, "pairs": {}, "identities": {}}
    return json.loads((path / LEDGER).read_text())


def _config_key(cfg: dict) -> dict:
    key = {"format": FORMAT_VERSION, "world_seed": int(cfg.get("world_seed", 0)), "n_scans": cfg.get("n_scans"),
           "regions": list(cfg["regions"]), "edges": [float(e) for e in D.EDGES[:-1]],
           "model_product": cfg.get("model_product", "precip_mean"), "loader": cfg.get("loader", "simulator")}
    if cfg.get("skill_extra"):  # only when set: cubes built before the option keep their key
        key["skill_extra"] = True
    if AR.is_archive_config(cfg):  # one archive's cube: never mixed with another's or a synthetic one
        key["granule_dir"] = str(cfg["granule_dir"])
    return key


def _diff(a: dict, b: dict) -> str:
    keys = sorted(set(a) | set(b))
    return "; ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in keys if a.get(k) != b.get(k))[:500]


def _check_identities(path: Path, ledger: dict, srcs: Sequence[str], cur: dict, replace_stale: bool):
    """(sources to drop, legacy truth/reference identities to adopt) for a build of ``srcs``
    whose current identities are ``cur``; raises :class:`StaleSource` on a mismatch unless
    ``replace_stale``."""
    stored_all = ledger.get("identities") or {}
    stale: dict = {}
    adopt: dict = {}
    for s in srcs:
        if not ledger["sources"].get(s):
            continue
        stored = stored_all.get(s)
        if stored is None and model_of(s) is None:
            log.info("cube %s: %s has no recorded identity (written before identities were recorded); it is "
                     "taken as the current %s", path, s, _fmt_identity(cur[s]))
            adopt[s] = cur[s]
        elif stored != cur[s]:
            stale.setdefault(_group(s), (stored, cur[s]))
    if not stale:
        return set(), adopt
    if not replace_stale:
        lines = [f"  {'truth/reference' if g == TRUTH else repr(g)}: the cube holds {_fmt_identity(a)}; "
                 f"now {_fmt_identity(b)}" for g, (a, b) in stale.items()]
        archive = AR.is_archive_config(ledger.get("config"))  # an archive has no truth to name
        names = ",".join(sorted(("reference" if archive else "truth,reference") if g == TRUTH else g for g in stale))
        raise StaleSource(f"cube {path} holds sources computed by another version of them (a retrained model, "
                          f"another simulator version or a reprocessed archive); their numbers would be mixed with "
                          f"the new ones:\n"
                          + "\n".join(lines)
                          + f"\nFix: rebuild them with replace_stale=True (raincheck climatology build "
                            f"{'--archive DIR ' if archive else ''}--sources {names} ... --replace-stale): the stale "
                            f"sources are dropped (histograms, skill pairs, ledger entries) and recomputed on the "
                            f"requested orbits.")
    in_cube = set(ledger["sources"])
    drop = set()
    for g in stale:
        if g == TRUTH:  # every pair involves truth or reference: models go too
            drop |= {x for x in in_cube if model_of(x) is None} | {TRUTH, TRUTH_STRIP, REFERENCE}
            others = sorted({model_of(x) for x in in_cube if model_of(x) and model_of(x) not in
                             {model_of(y) for y in srcs}})
            if others:
                log.warning("cube %s: truth/reference are stale; dropping the models built against them too (%s): "
                            "rebuild them with --sources", path, ", ".join(others))
            drop |= {x for x in in_cube if model_of(x)}
        else:
            drop |= {g, g + STRIP}
        a, b = stale[g]
        log.warning("cube %s: replacing stale %s (%s → %s)", path, "truth/reference" if g == TRUTH else g,
                    _fmt_identity(a), _fmt_identity(b))
    return drop, {k: v for k, v in adopt.items() if k not in drop}

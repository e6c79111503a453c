"""`raincheck warming run|show|cards|worlds`: the forced-response experiment (paired counterfactual climates).

The numbers come from :mod:`evaluation.warming`; ``--json`` prints the ``raincheck.forced_response``
JSON (docs/evaluation.md, "Forced response"). Every value is checked before anything is simulated;
a failed or cancelled run writes no result file (finished scene summaries stay and a rerun resumes).
"""

from __future__ import annotations

import difflib
import json
import shlex
import sys
import threading

import click

from app.commands._progress import ProgressBar

#: statistics of the default text table: (label, statistic, population, level_q)
_TABLE_STATS = (("p99.9", "quantile", "all", 0.999), ("p99", "quantile", "all", 0.99), ("mean", "mean", "all", None))


def _models(spec: str) -> list[str]:
    from models.base import ModelError
    from models.registry import get_card, list_models

    known = [c.name for c in list_models()]
    if spec.strip() == "all":
        return known
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise click.BadParameter("give model names (comma separated) or 'all'", param_hint="--models")
    for n in names:
        try:
            get_card(n)
        except ModelError:
            near = difflib.get_close_matches(n, known, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise click.BadParameter(f"unknown model {n!r}{hint} Known models: {', '.join(known)}",
                                     param_hint="--models") from None
    return list(dict.fromkeys(names))


def _world(name: str):
    from catalogs.simulator import WORLDS, get_world

    try:
        return get_world(name)
    except ValueError:
        raise click.BadParameter(f"unknown world preset {name!r}; presets: {', '.join(WORLDS)}",
                                 param_hint="--world") from None


def _fmt(x, fmt="{:+.2f}") -> str:
    return "—" if x is None or x != x else fmt.format(x)


def table_text(fr, group: str = "global") -> str:
    """The verdict table of one result: per model, the p99.9, p99 and mean errors (%/K) at each
    level with their intervals and verdicts, and the truth's response."""
    df = fr.frame()
    df = df[df["group"] == group]
    gf = fr.growth_frame()
    gf = gf[gf["group"] == group]
    m = fr.meta
    lines = [f"world {fr.world} ({m['world'].get('version')}), {m['n_scenes']} scenes × {m['scenes']['n_scans']} scans, "
             f"levels {', '.join(f'+{x:g}' for x in m['levels_K'])} K above the training climate "
             f"(ΔT_train {m['training_climate_K']:.3f} K), {m['n_boot']} replicates, {m['ci']:g} % intervals, "
             f"tolerance ±{m['tolerance_pct_per_K']:g} %/K, group {group}"]
    for label, stat, pop, q in _TABLE_STATS:
        sel = (df["statistic"] == stat) & (df["population"] == pop)
        if q is not None:
            sel &= (df["level_q"] - q).abs() < 1e-9
        d = df[sel]
        gsel = (gf["statistic"] == stat) & (gf["population"] == pop)
        if q is not None:
            gsel &= (gf["level_q"] - q).abs() < 1e-9
        g = gf[gsel].set_index("source")
        lines.append(f"\n{label}  (response %/K; error = model − truth, %/K; growth = error at the largest level "
                     "minus the smallest)")
        for src in ["truth", *fr.models]:
            parts = []
            for _, r in d[d["source"] == src].sort_values("warming_K").iterrows():
                if src == "truth":
                    parts.append(f"+{r.warming_K:g}K {_fmt(r.response)} [{_fmt(r.lo)}, {_fmt(r.hi)}]")
                else:
                    parts.append(f"+{r.warming_K:g}K {_fmt(r.error)} [{_fmt(r.error_lo)}, {_fmt(r.error_hi)}] "
                                 f"{r.verdict}")
            if src in g.index:
                r = g.loc[src]
                parts.append(f"growth {_fmt(r.growth)} [{_fmt(r.lo)}, {_fmt(r.hi)}]")
            lines.append(f"  {src:17s} " + "   ".join(parts))
    return "\n".join(lines)


@click.group("warming")
def warming() -> None:
    """The forced response to warming: each model's response against the truth's on paired scenes."""


@warming.command("run")
@click.option("--models", "model_spec", required=True, help="Comma-separated model names, or 'all'.")
@click.option("--levels", default="1,2,4", show_default=True, help="Warming levels, K above the training climate "
                                                                  "(each in (0, 6]).")
@click.option("--world", default="today", show_default=True, help="World preset (raincheck warming worlds).")
@click.option("--scenes", "n_scenes", default=120, show_default=True, type=click.IntRange(2, 2000),
              help="Scenes (one per held-out 2021 orbit).")
@click.option("--scan-length", "n_scans", default=300, show_default=True, type=click.IntRange(16, 2900),
              help="Scans per scene.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0), help="Seed of the scenes and bootstrap.")
@click.option("--boot", "n_boot", default=1000, show_default=True, type=click.IntRange(100, 100_000),
              help="Scene-bootstrap replicates.")
@click.option("--tolerance", default=1.0, show_default=True, type=click.FloatRange(0, 50, min_open=True),
              help="Equivalence margin of the 'tracks' verdict (%/K).")
@click.option("--scheduler", default=None, help="dask scheduler address; default: a LocalCluster of --workers.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 256), help="LocalCluster workers.")
@click.option("--inline", is_flag=True, help="No dask: compute in this process.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Result JSON (default: <data root>/warming/results/<world>.json).")
@click.option("--product", default="precip_mean", show_default=True,
              type=click.Choice(["precip_mean", "precip_median", "precip_sample"]),
              help="The retrieval product judged: the posterior mean, the median, or 4 draws a pixel from the "
                   "predictive distribution (the same uniforms in every climate).")
@click.option("--json", "as_json", is_flag=True, help="Print the result JSON instead of the table.")
def run_cmd(model_spec, levels, world, n_scenes, n_scans, seed, n_boot, tolerance, scheduler, workers, inline,
            out, product, as_json) -> None:
    """Run (or resume) the experiment and write the result JSON."""
    import logging
    from pathlib import Path

    from catalogs.config import get_roots
    from evaluation import warming as WM

    if logging.getLogger().getEffectiveLevel() > logging.INFO:  # quiet dask unless -v
        logging.getLogger("distributed").setLevel(logging.ERROR)
    # every value is checked before anything is simulated or written
    w = _world(world)
    try:
        lv = WM.check_levels(levels)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--levels") from None
    names = _models(model_spec)
    stem = w.name if product == "precip_mean" else f"{w.name}-{product}"
    dest = Path(out) if out else get_roots().data_root / "warming" / "results" / f"{stem}.json"
    command = "raincheck " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else ""
    bar = ProgressBar(f"warming {w.name}")
    try:
        fr = WM.run_forced_response(names, lv, w.name, n_scenes=n_scenes, n_scans=n_scans, seed=seed,
                                    n_boot=n_boot, tolerance=tolerance, product=product,
                                    scheduler="inline" if inline else scheduler, n_workers=workers,
                                    progress=bar, cancel=threading.Event(), command=command)
    except WM.ModelRunFailed as e:
        raise click.ClickException(f"{e}\nNo result written; the finished scene summaries are kept and a rerun "
                                   "resumes.") from None
    except (WM.WarmingCancelled, ValueError) as e:
        raise click.ClickException(str(e)) from None
    finally:
        bar.close()
    fr.to_json(dest)
    click.echo(f"forced response written to {dest}", err=True)
    click.echo(fr.to_json() if as_json else table_text(fr))


@warming.command("show")
@click.option("--world", default=None, help="World preset (default: every result).")
@click.option("--group", default="global", show_default=True,
              help="global, ocean, land, tropics or extratropics.")
@click.option("--user", is_flag=True, help="Also read the results of your runs (<data root>/warming/results).")
@click.option("--product", default="precip_mean", show_default=True,
              type=click.Choice(["precip_mean", "precip_median", "precip_sample"]),
              help="Show the results of this retrieval product.")
@click.option("--json", "as_json", is_flag=True, help="Print the result JSON(s).")
def show_cmd(world, group, user, product, as_json) -> None:
    """Print the verdict table of the shipped (and your) results."""
    from evaluation import warming as WM
    from evaluation.warming.summary import GROUPS

    if group not in GROUPS:
        raise click.BadParameter(f"unknown group {group!r}; groups: {', '.join(GROUPS)}", param_hint="--group")
    res = WM.load_results(user=user, product=product)
    if world is not None:
        _world(world)
        if world not in res:
            raise click.ClickException(f"no forced-response result for world {world!r}; results: "
                                       f"{', '.join(res) or 'none'} (run 'raincheck warming run')")
        res = {world: res[world]}
    if not res:
        raise click.ClickException("no forced-response result; run 'raincheck warming run'")
    if as_json:
        click.echo(json.dumps({k: json.loads(v.to_json()) for k, v in res.items()}, indent=1))
    else:
        click.echo("\n\n".join(table_text(v, group) for v in res.values()))


@warming.command("cards")
@click.option("--models", "model_spec", default="all", show_default=True,
              help="Comma-separated model names, or 'all' (every model of the results).")
@click.option("--user", is_flag=True, help="Also read the results of your runs (<data root>/warming/results); "
                                           "they replace the shipped result of the same world.")
def cards_cmd(model_spec, user) -> None:
    """Write the forced-response rows (global; mean, p99, p99.9; every world and level) into the model
    cards' metrics.forced_response, only from results of the card's own checkpoint."""
    from evaluation import warming as WM
    from evaluation.warming.table import update_cards

    res = WM.load_results(user=user)
    if not res:
        raise click.ClickException("no forced-response result; run 'raincheck warming run'")
    names = None if model_spec.strip() == "all" else _models(model_spec)
    updated, skipped = update_cards(res, names)
    for n in updated:
        click.echo(f"card of {n}: metrics.forced_response written")
    for n, why in skipped.items():
        click.echo(f"card of {n}: not written: {why}", err=True)
    if not updated:
        raise click.ClickException("no card written")


@warming.command("worlds")
@click.option("--json", "as_json", is_flag=True, help="Print the presets' descriptions as JSON.")
def worlds_cmd(as_json) -> None:
    """List the world presets: version, mechanisms (magnitude, citation) and the truth's injected scaling."""
    from catalogs.simulator import WORLDS

    if as_json:
        click.echo(json.dumps({k: w.describe() for k, w in WORLDS.items()}, indent=1))
        return
    for w in WORLDS.values():
        d = w.describe()
        inj = ", ".join(f"{k} {v:+g} %/K" for k, v in d["injected_pct_per_K"].items() if v is not None)
        click.echo(f"{w.name} ({w.version}): {d['title']}")
        click.echo(f"  injected truth scaling: {inj or 'measured on the scenes'}")
        for m in d["mechanisms"]:
            click.echo(f"  - {m['name']}: {m['magnitude']} [{m['citation']}]")


@warming.command("ood")
@click.option("--world", default="published-freezing-level", show_default=True,
              help="World preset (raincheck warming worlds).")
@click.option("--level", default=4.0, show_default=True, type=float,
              help="Warming level, K above the training climate (in (0, 6]).")
@click.option("--scenes", "n_scenes", default=30, show_default=True, type=click.IntRange(2, 2000),
              help="Scenes (the first N of the forced-response plan: held-out 2021 orbits).")
@click.option("--scan-length", "n_scans", default=150, show_default=True, type=click.IntRange(16, 2900),
              help="Scans per scene.")
@click.option("--model", default="unet-reference", show_default=True, help="The model whose forced error is judged.")
@click.option("--detector", default="flow-residual", show_default=True, help="A model that ships an OOD detector.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0), help="Seed of the scenes and bootstrap.")
@click.option("--boot", "n_boot", default=1000, show_default=True, type=click.IntRange(100, 100_000),
              help="Scene-bootstrap replicates.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Result JSON (default: <data root>/warming/results/ood-<world>.json).")
@click.option("--json", "as_json", is_flag=True, help="Print the result JSON instead of the table.")
def ood_cmd(world, level, n_scenes, n_scans, model, detector, seed, n_boot, out, as_json) -> None:
    """Does the detector's OOD score flag the pixels and scenes where the model's forced response
    (warm minus base, against the truth's) goes most wrong? AUROCs with scene-bootstrap intervals."""
    from pathlib import Path

    from catalogs.config import get_roots
    from evaluation import warming as WM
    from evaluation.warming import ood as OOD

    w = _world(world)  # every value is checked before anything is simulated or written
    try:
        (lv,) = WM.check_levels([level])
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--level") from None
    (m,) = _models_opt(model, "--model")
    (d,) = _models_opt(detector, "--detector")
    have = OOD.detector_models()
    if d not in have:
        raise click.BadParameter(f"model {d!r} ships no OOD detector; models with one: {', '.join(have) or 'none'}",
                                 param_hint="--detector")
    dest = Path(out) if out else get_roots().data_root / "warming" / "results" / f"ood-{w.name}.json"
    command = "raincheck " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else ""
    bar = ProgressBar(f"warming ood {w.name}")
    try:
        res = OOD.run_warming_ood(w.name, lv, model=m, detector=d, n_scenes=n_scenes, n_scans=n_scans, seed=seed,
                                  n_boot=n_boot, progress=bar, cancel=threading.Event(), command=command)
    except (WM.WarmingCancelled, ValueError) as e:
        raise click.ClickException(f"{e}\nNo result written.") from None
    finally:
        bar.close()
    res.to_json(dest)
    click.echo(f"warming OOD result written to {dest}", err=True)
    click.echo(res.to_json() if as_json else res.text())


def _models_opt(name: str, hint: str) -> list[str]:
    """One model name for option ``hint`` (the unknown-model message of ``--models``, re-hinted)."""
    if "," in name or name.strip() == "all":
        raise click.BadParameter(f"give one model name, not {name!r}", param_hint=hint)
    try:
        return _models(name)
    except click.BadParameter as e:
        raise click.BadParameter(e.message, param_hint=hint) from None


def register(main: click.Group) -> None:
    """Add `warming` (run, show, cards, worlds) to ``main``."""
    main.add_command(warming)

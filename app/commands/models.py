"""`raincheck train`, `raincheck infer` and `raincheck models list/show`."""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import click
import yaml

from app.commands._args import parse_orbits
from app.commands._progress import ProgressBar
from catalogs.config import PathOutsideRoots
from catalogs.outputs import check_name
from catalogs.orbits import synthetic_orbits
from models.config import parse_config
from models.errors import ModelError

# models.registry, .train, .run and .batch load torch (seconds): imported where a command needs
# them, so `raincheck --help` does not pay for them


@click.command("train")
@click.argument("configs", nargs=-1, required=True)
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for model.safetensors + card.yaml (default: <data root>/models/<name>); "
                   "with several CONFIGs, the parent folder (<out>/<name>).")
@click.option("--archive", type=click.Path(file_okay=False), default=None,
              help="For a config that trains on a PPS archive (data.archive): the archive folder to use "
                   "(inside a configured data root) instead of the config's.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a field of the config(s), e.g. --set data.train.end=2021-06-30 or "
                   "--set 'data.test.months=[9]' (VALUE is read as YAML; the result is checked like a config "
                   "file); repeatable.")
def train_cmd(configs: tuple[str, ...], out: str | None, archive: str | None, overrides: tuple[str, ...]) -> None:
    """Train the model(s) described by CONFIG (YAML paths or shipped config names).

    Several configs train in order in one process, on the same cached data (models named in
    a later config's ``compare_with`` are scored on the same held-out pixels)."""
    from models.registry import load_config
    from models.train import train

    if archive is not None:
        archive = str(Path(archive).expanduser().resolve())  # relative to where the command runs
    sets = [_parse_set(item) for item in overrides]
    command = " ".join(["raincheck", "train", *configs] + (["--out", out] if out else [])
                       + (["--archive", archive] if archive else []) + [f"--set {item}" for item in overrides])
    for config in configs:
        bar = ProgressBar("train")
        try:
            cfg = load_config(config)
            if archive is not None:
                if not isinstance(cfg.get("data"), dict) or cfg["data"].get("archive") is None:
                    raise ModelError(f"config {config}: --archive is for a config that trains on an archive "
                                     "(data.archive); this one trains on the synthetic world")
                cfg["data"] = {**cfg["data"], "archive": {"granule_dir": archive}}
            if sets:
                cfg = _apply_sets(cfg, sets, config)
            dest = out if (out is None or len(configs) == 1) else str(Path(out) / cfg["name"])
            card = train(cfg, progress=bar, cancel=threading.Event(), out=dest, command=command)
        except ModelError as e:
            raise click.ClickException(str(e)) from None
        finally:
            bar.close()
        click.echo(f"trained {card.name} ({card.kind}) -> {card.path}  sha256 {card.checkpoint_sha256[:12]}")
        _echo_metrics(card)


def _parse_set(item: str) -> tuple[list[str], object]:
    key, eq, text = item.partition("=")
    path = key.strip().split(".")
    if not eq or not all(p.strip() for p in path):
        raise click.UsageError(f"--set {item!r}: expected KEY=VALUE with a dotted KEY, e.g. data.train.end=2021-06-30")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise click.UsageError(f"--set {item!r}: VALUE is not valid YAML ({e})") from None
    return [p.strip() for p in path], value


def _apply_sets(cfg: dict, sets: list, config: str) -> dict:
    """``cfg`` with the ``--set`` values put in, checked as a config (unknown keys, types, sizes)."""
    cfg = copy.deepcopy(cfg)
    for path, value in sets:
        node = cfg
        for i, key in enumerate(path[:-1]):
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ModelError(f"config {config}: --set {'.'.join(path)}: {'.'.join(path[:i + 1])} is not a mapping")
        node[path[-1]] = value
    try:
        check_name(cfg.get("name"))
    except (ValueError, TypeError) as e:
        raise ModelError(f"config {config} with --set: field name: {e}") from None
    parse_config(cfg, f"config {config} with --set")
    return cfg


@click.command("infer")
@click.option("--model", "model_name", required=True, help="Registered model name (see `raincheck models list`).")
@click.option("--orbit", type=int, default=None, help="One synthetic orbit.")
@click.option("--orbits", "orbit_spec", default=None,
              help="Many synthetic orbits: '20000:20010' (inclusive), '20000:21000:10', '5,6,7'.")
@click.option("--start", default=None, help="With --end: every synthetic orbit of a period (ISO dates).")
@click.option("--end", default=None, help="End of the period (exclusive).")
@click.option("--granule", type=click.Path(dir_okay=False), default=None,
              help="A real 1C-GMI or 2B-CMB granule (inside a configured data root).")
@click.option("--world", "world_seed", default=0, show_default=True, type=int, help="Synthetic world seed.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto", show_default=True)
@click.option("--scheduler", default=None, help="Batch: dask scheduler address; default a LocalCluster.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 256),
              help="Batch: LocalCluster workers.")
@click.option("--inline", is_flag=True, help="Batch: run in this process, no dask.")
def infer_cmd(model_name, orbit, orbit_spec, start, end, granule, world_seed, device, scheduler, workers,
              inline) -> None:
    """Retrieve orbits (or a real granule) with a model and store the results; what is already
    stored is a cache hit. A batch that is interrupted keeps every finished orbit."""
    from models.granule_run import run_granule
    from models.run import run_inference

    chosen = [x for x in (orbit is not None, bool(orbit_spec), bool(start or end), bool(granule)) if x]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --orbit, --orbits, --start/--end or --granule")
    if orbit is not None:
        parse_orbits(str(orbit), "--orbit")  # inside the synthetic record, before any work
    if orbit_spec or start or end:
        _infer_batch(model_name, orbit_spec, start, end, world_seed, device,
                     "inline" if inline else scheduler, workers)
        return
    label = Path(granule).name if granule else f"orbit {orbit}"
    bar = ProgressBar(f"{model_name} {label}")
    info: dict = {}
    try:
        if granule:  # the app's Run on a granule goes through the same function (same store, OOD score)
            path = run_granule(model_name, granule, device=device, progress=bar, info=info,
                               allow_simulated_tb=True)
        else:
            path = run_inference(model_name, orbit, world_seed=world_seed, device=device, progress=bar, info=info)
    except (ModelError, ValueError, PathOutsideRoots) as e:  # GranuleError is a ValueError
        raise click.ClickException(str(e)) from None
    finally:
        bar.close()
    if info.get("cache_hit"):
        click.echo(f"cache hit: {path}")
    else:
        click.echo(f"device: {info.get('device')}")
        click.echo(f"wrote {path} in {info.get('seconds', 0):.1f} s")
    if granule and info.get("valid_pixels") == 0:
        click.echo("note: no pixel of this granule has all 13 channels valid, so the retrieval is "
                   "missing everywhere")


@click.group("models")
def models_grp() -> None:
    """Registered retrieval models and their cards."""


@models_grp.command("list")
def list_cmd() -> None:
    """List the available models."""
    from models.registry import list_models, shadowing

    problems: dict = {}
    for c in list_models(problems):
        note = "  (user model: shadows the shipped model of this name)" if shadowing(c.name) else ""
        click.echo(f"{c.name:20s} {c.kind:6s} sha256 {c.checkpoint_sha256[:12]}  {c.path}{note}")
    for name, msg in sorted(problems.items()):
        click.echo(f"{name:20s} UNUSABLE: {msg}", err=True)


@models_grp.command("show")
@click.argument("name")
def show_cmd(name: str) -> None:
    """Show a model card."""
    from models.registry import _plain, card_training_data, get_card

    try:
        card = get_card(name)
    except ModelError as e:
        raise click.ClickException(str(e)) from None
    d = card.to_dict()
    d["config"] = {k: v for k, v in d["config"].items() if k != "data"} | {"data": "(see training_data)"}
    d["training"] = {k: v for k, v in d["training"].items() if k != "history"}
    d.pop("training_data", None)  # shown after the kind; derived from the config for a card written before the field
    d = {"name": d.pop("name"), "kind": d.pop("kind"), "training_data": card_training_data(card), **d}
    click.echo(yaml.safe_dump(_plain(d), sort_keys=False, allow_unicode=True))


def register(main: click.Group) -> None:
    """Add `train`, `infer` and `models list|show` to ``main``."""
    main.add_command(train_cmd)
    main.add_command(infer_cmd)
    main.add_command(models_grp)


def _echo_metrics(card) -> None:
    for split, res in (card.metrics or {}).items():
        click.echo(f"{split}: {res.get('pixels')} strip pixels")
        for name, m in res.items():
            if isinstance(m, dict) and "mse" in m:
                click.echo(f"  {name:16s} bias {m['bias_pct']:+7.1f} %  MSE {m['mse']:.4f}  r {m['correlation']:.3f}  "
                           f"CRPS {m['crps']:.4f}  POD/FAR 0.1 {m['pod_0p1']:.2f}/{m['far_0p1']:.2f}  "
                           f"10 {m['pod_10']:.2f}/{m['far_10']:.2f}")


def _infer_batch(model_name, orbit_spec, start, end, world_seed, device, scheduler, workers) -> None:
    from models.batch import infer_orbits

    if orbit_spec:
        # refuses inverted, absurd or out-of-record ranges; a single orbit outside the record is
        # tried and reported as a failed orbit, like any other failure in a batch
        orbits = parse_orbits(orbit_spec, strict=False)
    else:
        if not (start and end):
            raise click.UsageError("--start and --end go together")
        try:
            orbits = synthetic_orbits(start, end)["orbit"].tolist()
        except ValueError as e:
            raise click.ClickException(str(e)) from None
        if not orbits:
            raise click.ClickException(f"no synthetic orbit between --start {start} and --end {end}")
    bar = ProgressBar(f"{model_name} x {len(orbits)} orbits")
    try:
        res = infer_orbits(model_name, orbits, world_seed=world_seed, device=device, scheduler=scheduler,
                           n_workers=workers, progress=bar)
    except ModelError as e:
        raise click.ClickException(str(e)) from None
    finally:
        bar.close()
    click.echo(f"{len(res.computed)} computed, {len(res.cached)} cache hits, {len(res.failed)} failed "
               f"in {res.seconds:.1f} s")
    for o, msg in sorted(res.failed.items()):
        click.echo(f"  orbit {o}: {msg}")
    if res.failed:
        raise SystemExit(1)

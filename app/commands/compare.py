"""`raincheck compare`: all models on the same held-out sets (an in-distribution year and the
future warmer decades): overall, tail and extreme-trend scores, OOD detection and split.

The numbers come from :func:`evaluation.compare.compare` (the app's comparison view calls the
same function); ``--json`` prints the ``raincheck.compare/1`` dict.
"""

from __future__ import annotations

import json
import sys

import click

from evaluation.compare import compare, save_result, table, unclean
from evaluation.compare import update_cards as _update
from models.errors import ModelError

# evaluation.report (scipy) and models.registry (torch) load slowly: imported in the command, so
# `raincheck --help` does not pay for them


@click.command("compare")
@click.option("--models", "model_list", default=None,
              help="Comma-separated registered model names (default: every registered model).")
@click.option("--reference", default="unet-reference", show_default=True, help="The model to beat.")
@click.option("--config", default="unet-reference", show_default=True,
              help="Training config whose test/ood splits are the held-out sets.")
@click.option("--draws", default=4, show_default=True, type=click.IntRange(1, 1000),
              help="Predictive draws per pixel for extremes.")
@click.option("--boot", "n_boot", default=100, show_default=True, type=click.IntRange(0, 100_000),
              help="Scene-bootstrap replicates (0: none).")
@click.option("--no-ood", is_flag=True, help="Skip the OOD detection and split.")
@click.option("--no-cache", is_flag=True, help="Recompute every model's scores (ignore the cache).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON result instead of tables.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the JSON result here.")
@click.option("--update-cards", "update_names", default=None,
              help="Comma-separated models whose cards get their comparison rows (metrics.comparison).")
def compare_cmd(model_list, reference, config, draws, n_boot, no_ood, no_cache, as_json, out,
                update_names) -> None:
    """Compare models on the same held-out sets (test year and future decades)."""
    from evaluation.report import clean
    from models.registry import get_card, list_models, load_config

    names = [n.strip() for n in model_list.split(",") if n.strip()] if model_list else \
        [c.name for c in list_models()]
    # names and the config are checked before any data is simulated
    for hint, values in (("--models", names), ("--reference", [reference]),
                         ("--update-cards", [n.strip() for n in (update_names or "").split(",") if n.strip()])):
        for n in values:
            try:
                get_card(n)
            except ModelError as e:
                raise click.BadParameter(str(e), param_hint=hint) from None
    try:
        load_config(config)
    except (ModelError, ValueError) as e:
        raise click.BadParameter(str(e), param_hint="--config") from None

    def progress(done, total, msg=""):
        click.echo(f"  {msg}", err=True)

    try:
        res = compare(names, config=config, reference=reference, draws=draws, n_boot=n_boot,
                      ood=not no_ood, progress=progress, cache=not no_cache)
    except ModelError as e:
        raise click.ClickException(str(e)) from None
    res = clean(res)
    saved = save_result(res)  # the app's comparison view shows the last one
    if out:
        save_result(res, out)
    click.echo(f"comparison saved to {saved}" + (f" and {out}" if out else ""), err=True)
    if update_names:
        done = _update(res, [n.strip() for n in update_names.split(",") if n.strip()])
        click.echo(f"updated cards: {', '.join(done) or 'none'}", err=True)
    if as_json:
        click.echo(json.dumps(res, indent=1))
    else:
        click.echo(table(unclean(res)))
    sys.stdout.flush()


def register(main: click.Group) -> None:
    """Add `compare` to ``main``."""
    main.add_command(compare_cmd)

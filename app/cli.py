"""The `raincheck` command line: one face of the app (the other is the Panel web app).

Sub-commands live one module per concern in :mod:`app.commands`; each exposes ``register(main)``.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from app.commands import COMMAND_MODULES


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="raincheck")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """raincheck: judge satellite rain retrievals against reference, truth and IPCC projections."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


for _mod in COMMAND_MODULES:
    importlib.import_module(f"app.commands.{_mod}").register(main)


def run() -> None:  # pragma: no cover - console entry
    sys.exit(main())

"""`raincheck catalog ...` and `raincheck orbits ...` (filled in by the catalogue work)."""

import click


def register(main: click.Group) -> None:
    @main.group()
    def catalog() -> None:
        """Inspect the Intake catalogue."""

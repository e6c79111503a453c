"""CLI sub-command modules; each defines ``register(main: click.Group)``."""

# Listed explicitly so the command set is visible in one place.
COMMAND_MODULES = [
    "catalog",
    "simulate",
    "models",
    "serve",
    "export",
    "evaluate",
    "compare",
    "warming",
    "archive",
]

"""Open raincheck's Intake 2 catalogues and describe their entries.

The demo catalogue ships inside the package (``catalogs/demo.yaml``); any other Intake 2
catalogue that uses :mod:`catalogs.readers` works the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import intake

DEMO_CATALOG = Path(__file__).resolve().parent / "demo.yaml"


class CatalogError(ValueError):
    """A catalogue that cannot be opened or an entry that does not exist."""


@dataclass(frozen=True)
class EntryInfo:
    name: str
    description: str
    output: str
    reader: str
    parameters: tuple[str, ...]


def open_catalog(path: str | Path | None = None):
    """Open an Intake 2 catalogue (default: the packaged demo)."""
    path = Path(path) if path else DEMO_CATALOG
    if not path.is_file():
        raise CatalogError(f"catalogue file {str(path)!r} does not exist")
    try:
        cat = intake.from_yaml_file(str(path))
    except Exception as e:  # yaml errors, unknown reader classes, v1 catalogues...
        raise CatalogError(f"cannot open catalogue {str(path)!r}: {type(e).__name__}: {e}") from e
    if not hasattr(cat, "entries"):
        raise CatalogError(f"{str(path)!r} is not an Intake 2 catalogue (write `version: 2`)")
    return cat


def entries(cat) -> list[EntryInfo]:
    out = []
    for name, e in cat.entries.items():
        kwargs = getattr(e, "kwargs", {}) or {}
        params = tuple(sorted(p for p in cat.user_parameters
                              if any(f"{{{p}}}" in str(v) for v in kwargs.values())))
        reader = getattr(e, "reader", "")
        out.append(EntryInfo(
            name=name,
            description=str((e.metadata or {}).get("description", "")),
            output=str(getattr(e, "output_instance", "")),
            reader=reader if isinstance(reader, str) else getattr(reader, "__name__", str(reader)),
            parameters=params,
        ))
    return out


def read(cat, entry: str, **params):
    """Read ``entry`` with user-parameter overrides, e.g. ``read(cat, "truth", orbit=20001)``."""
    if entry not in cat.entries:
        raise CatalogError(f"no entry {entry!r} in the catalogue; entries: {', '.join(sorted(cat.entries))}")
    unknown = set(params) - set(cat.user_parameters)
    if unknown:
        raise CatalogError(f"unknown catalogue parameter(s) {sorted(unknown)}; known: {sorted(cat.user_parameters)}")
    return cat(**params)[entry].read()

"""Open raincheck's Intake 2 catalogues and describe their entries.

The demo catalogue ships inside the package (``catalogs/demo.yaml``); any other Intake 2
catalogue that uses :mod:`catalogs.readers` works the same way.

A catalogue is code: its readers are Python classes that Intake imports, and Intake's template
functions (``func(...)``, ``import(...)``) import modules. By default :func:`open_catalog` accepts
only raincheck's own readers (``catalogs.readers:*``) and refuses a catalogue that names any
other reader, class or import; an operator who wrote a catalogue and trusts it opts in with
``open_catalog(path, trust=True)``, ``--trust-catalog`` or ``RAINCHECK_TRUST_CATALOG=1``.

Values from users (:func:`read`'s parameters) are data, never templates: they pass the gate of
:mod:`catalogs.userinput` and reach the reader without Intake's templating.
"""

from __future__ import annotations

import os
import re
import string
from copy import copy
from dataclasses import dataclass
from pathlib import Path

import intake

from catalogs.userinput import UserInputError, check_parameters

DEMO_CATALOG = Path(__file__).resolve().parent / "demo.yaml"

#: Environment variable that trusts any catalogue (as ``--trust-catalog`` does).
TRUST_ENV = "RAINCHECK_TRUST_CATALOG"
#: The readers a catalogue may name without being trusted.
OWN_READERS = re.compile(r"catalogs\.readers:[A-Za-z_]\w*")
#: Other class references an untrusted catalogue may hold (Intake's own parameter and entry
#: classes, its data types) and the output types of raincheck's readers.
_ALLOWED_REFS = {
    "cls": re.compile(r"intake\.readers\.(user_parameters|entry):[A-Za-z_]\w*"),
    "datatype": re.compile(r"intake\.readers\.datatypes:[A-Za-z_]\w*"),
    "output_instance": re.compile(r"(xarray|pandas|numpy|builtins):[A-Za-z_]\w*"),
}
#: Intake's template functions that import code (refused in an untrusted catalogue).
_IMPORTING_TEMPLATE = re.compile(r"(?<![\w.])(func|import|pickle64)\s*\(")
#: Parameters Intake adds to every catalogue it opens (never set by users).
INTERNAL_PARAMETERS = frozenset({"CATALOG_PATH", "CATALOG_DIR", "STORAGE_OPTIONS"})


class CatalogError(ValueError):
    """A catalogue that cannot be opened or an entry that does not exist."""


class UntrustedCatalog(CatalogError):
    """A catalogue that names code other than raincheck's readers, opened without trust."""


@dataclass(frozen=True)
class EntryInfo:
    name: str
    description: str
    output: str
    reader: str
    parameters: tuple[str, ...]


def trusted_by_env() -> bool:
    """Whether ``RAINCHECK_TRUST_CATALOG`` trusts every catalogue."""
    return os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _where(path: tuple) -> str:
    if len(path) >= 2 and path[0] in ("entries", "data"):
        rest = ".".join(map(str, path[2:]))
        return f"{'entry' if path[0] == 'entries' else 'data'} {path[1]!r}" + (f" ({rest})" if rest else "")
    return ".".join(map(str, path)) or "the top level"


def untrusted_parts(doc) -> list[str]:
    """What in a parsed catalogue (YAML as plain data) is code beyond raincheck's readers: a
    reader, class, data type or output type outside the allowed ones, or an importing template."""
    found: list[str] = []

    def walk(obj, path):
        if isinstance(obj, dict):
            for k, v in obj.items():
                key = str(k)
                if key == "reader" and not (isinstance(v, str) and OWN_READERS.fullmatch(v.strip())):
                    found.append(f"{_where(path)} uses reader {v!r}")
                elif key in _ALLOWED_REFS and not (isinstance(v, str) and _ALLOWED_REFS[key].fullmatch(v.strip())):
                    found.append(f"{_where(path)} names the class {v!r} ({key})")
                walk(v, (*path, key))
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, (*path, i))
        elif isinstance(obj, str):
            m = _IMPORTING_TEMPLATE.search(obj)
            if m:
                found.append(f"{_where(path)} holds the template {m.group(1)}(...), which imports code")

    walk(doc, ())
    return sorted(found, key=lambda f: " uses reader " not in f)  # readers first, else in file order


def open_catalog(path: str | Path | None = None, *, trust: bool | None = None):
    """Open an Intake 2 catalogue (default: the packaged demo).

    Unless ``trust`` (default: ``RAINCHECK_TRUST_CATALOG``), the catalogue may name only
    raincheck's readers (:data:`OWN_READERS`): anything else is :class:`UntrustedCatalog`,
    raised before Intake imports anything the file names."""
    import yaml

    path = Path(path) if path else DEMO_CATALOG
    trust = trusted_by_env() if trust is None else bool(trust)
    if not path.is_file():
        raise CatalogError(f"catalogue file {str(path)!r} does not exist")
    if not trust:
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except Exception as e:  # yaml errors, undecodable files
            raise CatalogError(f"cannot open catalogue {str(path)!r}: {type(e).__name__}: {e}") from e
        bad = untrusted_parts(doc)
        if bad:
            more = f" (and {len(bad) - 6} more)" if len(bad) > 6 else ""
            raise UntrustedCatalog(
                f"cannot open catalogue {str(path)!r}: {'; '.join(bad[:6])}{more}. A catalogue is code: "
                "by default raincheck accepts only its own readers (catalogs.readers:...). If you wrote "
                f"this catalogue and trust it, pass --trust-catalog (or set {TRUST_ENV}=1)")
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
            description=str((getattr(e, "metadata", None) or {}).get("description", "")),
            output=str(getattr(e, "output_instance", "")),
            reader=reader if isinstance(reader, str) else getattr(reader, "__name__", str(reader)),
            parameters=params,
        ))
    return out


def user_parameters(cat, entry: str | None = None) -> dict:
    """The parameters a user may set (the catalogue's, plus ``entry``'s own), by name."""
    out = {k: v for k, v in cat.user_parameters.items() if k not in INTERNAL_PARAMETERS}
    if entry is not None and entry in cat.entries:
        out.update(getattr(cat.entries[entry], "user_parameters", None) or {})
    return out


_FORMATTER = string.Formatter()


def _escape_braces(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _fill_str(template: str, values: dict):
    """``template`` (a catalogue kwarg) with the fields of ``values`` filled in; other fields are
    left for Intake (the catalogue's own defaults)."""
    m = re.fullmatch(r"\{(\w+)\}", template)
    if m:
        return values[m.group(1)] if m.group(1) in values else template
    if "{" not in template:
        return template
    try:
        parts = list(_FORMATTER.parse(template))
    except ValueError:  # a genuine '{' in the text: Intake leaves it too
        return template
    out = []
    for literal, field, spec, conv in parts:
        out.append(_escape_braces(literal))
        if field is None:
            continue
        base = re.match(r"\w*", field).group(0)
        if base in values:
            obj, _ = _FORMATTER.get_field(field, (), values)
            obj = _FORMATTER.convert_field(obj, conv)
            try:
                out.append(_escape_braces(format(obj, spec or "")))
            except (TypeError, ValueError) as e:
                raise CatalogError(f"cannot put parameter {base!r} = {obj!r} into {template!r}: {e}") from None
        else:
            out.append("{" + field + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}")
    return "".join(out)


def _fill(obj, values: dict):
    if isinstance(obj, dict):
        return {k: _fill(v, values) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_fill(v, values) for v in obj)
    if isinstance(obj, str):
        return _fill_str(obj, values)
    return obj


def reader(cat, entry: str, **params):
    """The Intake reader of ``entry`` with user-parameter values ``params``, checked by
    :func:`catalogs.userinput.check_parameters` and put into the entry's arguments directly:
    Intake never templates them (its templating applies only to the catalogue's own text)."""
    if entry not in cat.entries:
        raise CatalogError(f"no entry {entry!r} in the catalogue; entries: {', '.join(sorted(cat.entries))}")
    declared = user_parameters(cat, entry)
    given = {**(getattr(cat, "_up_overrides", None) or {}), **params}
    unknown = set(given) - set(declared)
    if unknown:
        raise CatalogError(f"unknown catalogue parameter(s) {sorted(map(str, unknown))}; known: {sorted(declared)}")
    values = check_parameters(given, declared)
    desc = copy(cat.entries[entry])
    rehydrate = getattr(cat, "_rehydrate", None)  # the catalogue's own data(...) references
    if rehydrate is not None:
        desc = rehydrate(desc)
    desc.kwargs = _fill(getattr(desc, "kwargs", None) or {}, values)
    desc.metadata = getattr(desc, "metadata", None) or {}  # an entry without one is valid YAML
    # the entry's parameters the user set are now literal arguments: drop them so Intake does
    # not look at their values at all
    desc.user_parameters = {k: v for k, v in (desc.user_parameters or {}).items() if k not in values}
    ups = {k: v for k, v in cat.user_parameters.items() if k not in values}
    return desc(user_parameters=ups)


def read(cat, entry: str, **params):
    """Read ``entry`` with user-parameter overrides, e.g. ``read(cat, "truth", orbit=20001)``.

    Every value passes :mod:`catalogs.userinput` (:class:`catalogs.userinput.UserInputError`,
    a ValueError, for a template form, a control character, a wrong type...)."""
    return reader(cat, entry, **params).read()


__all__ = ["DEMO_CATALOG", "TRUST_ENV", "CatalogError", "UntrustedCatalog", "UserInputError", "EntryInfo",
           "open_catalog", "entries", "user_parameters", "reader", "read", "untrusted_parts", "trusted_by_env"]

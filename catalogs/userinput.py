"""The one gate for values that come from users: link values, widget text, catalogue parameters
(``raincheck catalog show -p NAME=VALUE``, the app). They are data, never templates.

Intake 2 expands template forms in catalogue parameter values (intake 2.0.9,
``intake/readers/user_parameters.py``): ``env(NAME)`` reads a server environment variable,
``func(module:attr)`` and ``import(module:attr)`` import a module (running its import-time code),
``data(name)`` reads another entry or an internal parameter (the catalogue's path),
``pickle64(...)`` unpickles, and ``{name}`` / ``{func(...)}`` fields are formatted
(``str.format_map``). Intake 1 catalogues add Jinja (``{{ ... }}``, ``{% ... %}``) with
``env(...)``, ``client_env(...)``, ``shell(...)`` and ``client_shell(...)``. Every one of these
forms is refused here, with a message that names the parameter and the form; so are control
characters (NUL, bidirectional overrides, ...), HTML markup and values longer than a path can be.

:func:`catalogs.catalog.read` calls :func:`check_parameters` for every read, and then passes the
values to the reader without letting Intake template them at all (defence in depth).
"""

from __future__ import annotations

import math
import re
import unicodedata

#: The longest catalogue parameter value accepted (a path, a date, a box, a model name).
MAX_PARAMETER_CHARS = 1024
#: The longest free-text value accepted from a link or a widget (a region polygon in WKT).
MAX_TEXT_CHARS = 8192

#: Intake's template functions (v2: env, data, func, import, pickle64; v1 Jinja globals: env,
#: client_env, shell, client_shell), and what each would do on the server.
TEMPLATE_FUNCTIONS = {
    "env": "reads a server environment variable",
    "client_env": "reads an environment variable",
    "shell": "runs a shell command",
    "client_shell": "runs a shell command",
    "func": "imports a Python module",
    "import": "imports a Python module",
    "data": "reads another catalogue entry or internal parameter",
    "pickle64": "unpickles a Python object",
}

_FUNC_FORM = re.compile(r"(?i)(?<![\w.])(" + "|".join(sorted(TEMPLATE_FUNCTIONS, key=len, reverse=True))
                        + r")\s*\(")
_ANY_CALL = re.compile(r"(?<![\w.])([A-Za-z_][\w.]*)\s*\(")
_IMPORT_PREFIX = re.compile(r"(?i)^\s*import\s*:")
_JINJA = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}")
_FIELD = re.compile(r"\{[^{}]*\}")
_MARKUP = re.compile(r"<\s*[/!?]?\s*[A-Za-z]")


class UserInputError(ValueError):
    """A value from a user that raincheck refuses (it names the parameter and the reason)."""

    def __init__(self, name: str, value, reason: str):
        self.name, self.value, self.reason = name, value, reason
        super().__init__(f"{name}: {show(value)} {reason}")


def show(value, limit: int = 60) -> str:
    """``value`` quoted for a message: control characters escaped, long values shortened."""
    if not isinstance(value, str):
        text = repr(value)
        return text if len(text) <= limit else text[:limit] + "…"
    text = value
    if len(text) > limit:
        text = text[:limit] + f"… ({len(text)} characters)"
    out = []
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            out.append(f"\\u{ord(ch):04x}" if ord(ch) > 0xFF else f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "'" + "".join(out).replace("'", "\\'") + "'"


def _control(value: str) -> str | None:
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            name = unicodedata.name(ch, "")
            return f"U+{ord(ch):04X}" + (f" ({name})" if name else " (a control character)")
    return None


def check_text(name: str, value, max_chars: int = MAX_TEXT_CHARS) -> str:
    """Plain text from a user (a link value, a widget): a string of at most ``max_chars``
    characters without control or bidirectional-formatting characters. Returns it unchanged."""
    if not isinstance(value, str):
        raise UserInputError(name, value, "is not text")
    if len(value) > max_chars:
        raise UserInputError(name, value, f"is too long ({len(value)} characters; at most {max_chars})")
    bad = _control(value)
    if bad:
        raise UserInputError(name, value, f"contains the control or formatting character {bad}; "
                             "type the value without it")
    return value


def template_form(value: str) -> str | None:
    """The template form ``value`` uses, described for a message, or None if it is plain data."""
    m = _JINJA.search(value)
    if m:
        return f"a Jinja template marker {m.group(0)!r}"
    m = _FUNC_FORM.search(value)
    if m:
        fn = m.group(1).lower()
        return f"the template function {fn}(...), which {TEMPLATE_FUNCTIONS[fn]}"
    if _IMPORT_PREFIX.search(value):
        return "an 'import:' reference, which imports a Python module"
    m = _FIELD.search(value)
    if m:
        return f"a template field {m.group(0)!r}"
    if "{" in value or "}" in value:
        return "a template brace '{' or '}'"
    m = _MARKUP.search(value)
    if m:
        return f"HTML markup {m.group(0)!r}..."
    m = _ANY_CALL.search(value)
    if m:
        return f"a function-call form {m.group(1)}(...)"
    return None


def check_value(name: str, value: str, max_chars: int = MAX_PARAMETER_CHARS) -> str:
    """A string catalogue parameter from a user: :func:`check_text` plus no template form."""
    check_text(name, value, max_chars)
    form = template_form(value)
    if form:
        raise UserInputError(name, value, f"looks like {form}: catalogue parameters are data, never "
                             "templates (give a plain value)")
    return value


def coerce(name: str, value, dtype: str | None):
    """``value`` as the parameter's declared ``dtype`` (``int``, ``float``, ``bool``, ``str``;
    anything else: a checked string or number), or :class:`UserInputError`."""
    if isinstance(value, str):
        check_value(name, value)
    dtype = (dtype or "").strip() or None
    if dtype == "int":
        if isinstance(value, bool):
            raise UserInputError(name, value, "is not a whole number")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,30}\s*", value):
            return int(value)
        raise UserInputError(name, value, "is not a whole number")
    if dtype == "float":
        try:
            out = float(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else None
        except ValueError:
            out = None
        if out is None or not math.isfinite(out):
            raise UserInputError(name, value, "is not a finite number")
        return out
    if dtype == "bool":
        if isinstance(value, bool):
            return value
        low = str(value).strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise UserInputError(name, value, "is not true or false")
    if isinstance(value, str):
        return value
    if dtype == "str" and isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise UserInputError(name, value, "is not a finite number")
        return str(value)
    if isinstance(value, bool) or (isinstance(value, (int, float)) and (not isinstance(value, float)
                                                                         or math.isfinite(value))):
        return value
    raise UserInputError(name, value, f"is not a plain value (a {type(value).__name__})")


def check_parameters(values: dict, declared: dict | None = None) -> dict:
    """Check and coerce catalogue parameter values from a user. ``declared`` maps parameter
    names to Intake user-parameter objects (their ``dtype`` is used); the result holds plain
    values that are safe to pass to a reader."""
    out = {}
    for name, value in values.items():
        check_text("parameter name", name, 100)
        up = (declared or {}).get(name)
        dtype = getattr(up, "dtype", None)
        dtype = dtype if isinstance(dtype, str) else getattr(dtype, "__name__", None)
        v = coerce(f"catalogue parameter {name!r}", value, dtype)
        options = getattr(up, "options", None)
        if options is not None and v not in (options.values() if isinstance(options, dict) else options):
            raise UserInputError(f"catalogue parameter {name!r}", value,
                                 f"is not one of {sorted(map(str, options))}")
        out[name] = v
    return out

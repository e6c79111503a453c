"""Imports inside the package run one way: no import cycle among the modules of catalogs, models,
evaluation and app, and the layers import only downward (app -> evaluation -> models -> catalogs).

Every import counts, at the top of a module or inside a function (or under ``if TYPE_CHECKING``):
an import hidden in a function still ties the two modules together, it only fails later. Importing
``a.b.c`` also runs the package ``a.b``'s ``__init__``, so it counts as importing ``a.b`` too (a
module's own enclosing packages excepted: they are loaded before it)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("catalogs", "models", "evaluation", "app")  # lowest layer first


def modules(root: Path, packages=PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under the packages."""
    out = {}
    for pkg in packages:
        for p in sorted((root / pkg).rglob("*.py")):
            parts = p.relative_to(root).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _targets(cur: str, node: ast.Import | ast.ImportFrom, mods: dict[str, Path]) -> set[str]:
    """The package's modules an import statement in module ``cur`` loads."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            pkg = cur.split(".") if mods[cur].name == "__init__.py" else cur.split(".")[:-1]
            pkg = pkg[: len(pkg) - (node.level - 1)]
            base = ".".join(pkg + ([base] if base else []))
        names = [base] + [f"{base}.{a.name}" for a in node.names]  # `from pkg import module`
    out = set()
    for n in names:
        parts = n.split(".")
        for k in range(1, len(parts) + 1):  # the module and every package above it
            name = ".".join(parts[:k])
            if name in mods and name != cur and not cur.startswith(name + "."):
                out.add(name)
    return out


def import_graph(root: Path, packages=PACKAGES) -> dict[str, dict[str, str]]:
    """module -> {imported module: 'file:line' of the first import of it}."""
    mods = modules(root, packages)
    graph: dict[str, dict[str, str]] = {m: {} for m in mods}
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for t in _targets(m, node, mods):
                    graph[m].setdefault(t, f"{p.relative_to(root)}:{node.lineno}")
    return graph


def cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth: the longest import chain (a few dozen)
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def describe(graph, comp: list[str]) -> str:
    edges = [f"  {a} -> {b} ({graph[a][b]})" for a in comp for b in sorted(graph[a]) if b in comp]
    return f"cycle of {len(comp)}: {', '.join(comp)}\n" + "\n".join(edges)


# -- the package ------------------------------------------------------------------------------
def test_no_import_cycle_inside_the_package():
    graph = import_graph(ROOT)
    assert len(graph) > 50 and "models.inference" in graph and "app.export" in graph  # it read the package
    found = cycles(graph)
    assert not found, "import cycles (move the shared code to a lower module):\n" + \
        "\n".join(describe(graph, c) for c in found)


def upward_imports(graph, packages=PACKAGES) -> list[str]:
    """Imports of a higher layer's module (``packages`` lists the layers, lowest first)."""
    layer = {pkg: i for i, pkg in enumerate(packages)}
    return [f"{a} -> {b} ({where})" for a, deps in sorted(graph.items()) for b, where in sorted(deps.items())
            if layer[b.split(".")[0]] > layer[a.split(".")[0]]]


def test_layers_import_only_downward():
    bad = upward_imports(import_graph(ROOT))
    assert not bad, "a lower layer imports a higher one (catalogs -> models -> evaluation -> app):\n" + "\n".join(bad)


# -- the check itself sees what it must ---------------------------------------------------------
def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_the_check_sees_a_cycle_hidden_in_a_function(tmp_path):
    _write(tmp_path, {
        "models/__init__.py": "",
        "models/base.py": "def predict():\n    from models.inference import run\n    return run()\n",
        "models/inference.py": "from models.base import predict\n",
        "models/unet.py": "from . import base\n",
    })
    graph = import_graph(tmp_path, ("models",))
    assert cycles(graph) == [["models.base", "models.inference"]]
    assert graph["models.base"]["models.inference"] == "models/base.py:2"
    assert graph["models.unet"] == {"models.base": "models/unet.py:1"}  # relative import resolved
    # the same without the in-function import: no cycle
    _write(tmp_path, {"models/base.py": "def predict():\n    return None\n"})
    assert cycles(import_graph(tmp_path, ("models",))) == []


def test_the_check_sees_a_cycle_through_a_package_init(tmp_path):
    # models.research's __init__ imports the registry, which imports models.research.flow: loading
    # flow runs the package's __init__ first, so it is a cycle although no module names the package
    _write(tmp_path, {
        "models/__init__.py": "",
        "models/registry.py": "from models.research.flow import Flow\n",
        "models/research/__init__.py": "from models.registry import load_model\n",
        "models/research/flow.py": "from models.research import ood\n",
        "models/research/ood.py": "x = 1\n",
    })
    graph = import_graph(tmp_path, ("models",))
    assert cycles(graph) == [["models.registry", "models.research"]]
    assert "models.research" not in graph["models.research.flow"]  # its own package: loaded before it


def test_the_check_sees_an_upward_import(tmp_path):
    _write(tmp_path, {
        "catalogs/__init__.py": "", "catalogs/schema.py": "def f():\n    import models.base\n",
        "models/__init__.py": "", "models/base.py": "from catalogs import schema\n",
    })
    graph = import_graph(tmp_path, ("catalogs", "models"))
    assert upward_imports(graph, ("catalogs", "models")) == ["catalogs.schema -> models (catalogs/schema.py:2)",
                                                             "catalogs.schema -> models.base (catalogs/schema.py:2)"]
    assert cycles(graph) == [["catalogs.schema", "models.base"]]
    _write(tmp_path, {"catalogs/schema.py": "x = 1\n"})
    assert upward_imports(import_graph(tmp_path, ("catalogs", "models")), ("catalogs", "models")) == []

"""The package's shape, as docs/architecture.md draws it: modules of a readable size, no import cycle,
dependencies that point one way, each library imported where the map says, and every reach into a
library's private internals in bench/_compat.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from helpers import ROOT

PACKAGE = ROOT / "bench"
MAX_LINES = 400

# Each part of the package, and the parts it may import (besides itself). The lowest come first.
ALLOWED: dict[str, set[str]] = {
    "bench.errors": set(),
    "bench.lazy": set(),
    "bench.uris": set(),
    "bench.cache": set(),
    "bench.stored": set(),
    "bench._compat": set(),
    "bench.faults": set(),
    "bench.journal": {"bench.errors"},
    "bench.usercode": {"bench.errors"},
    "bench.model": {"bench.errors", "bench.lazy", "bench.usercode"},
    "bench.data": {"bench.errors", "bench.cache", "bench.usercode"},
    "bench.schedules": {"bench.errors", "bench.lazy"},
    "bench.train": {
        "bench.errors",
        "bench.lazy",
        "bench.model",
        "bench.data",
        "bench.schedules",
        "bench.usercode",
        "bench._compat",
    },
    "bench.sweep": {
        "bench.errors",
        "bench.lazy",
        "bench.model",
        "bench.data",
        "bench.schedules",
        "bench.train",
        "bench.config",
    },
    "bench.config": {
        "bench.errors",
        "bench.data",
        "bench.model",
        "bench.schedules",
        "bench.train",
        "bench.usercode",
    },
    "bench.tracking": {
        "bench.errors",
        "bench.uris",
        "bench.cache",
        "bench.faults",
        "bench._compat",
        "bench.train",
    },
    "bench.search": {
        "bench.errors",
        "bench.faults",
        "bench.journal",
        "bench.uris",
        "bench.stored",
        "bench.config",
        "bench.data",
        "bench.schedules",
        "bench.train",
        "bench.tracking",
    },
    "bench.analysis": set(),
    "bench.report": {
        "bench.cache",
        "bench.stored",
        "bench.tracking.names",
        "bench.analysis",
        "bench.config",
        "bench.data",
        "bench.schedules",
    },
    "bench.__main__": {"bench.cli"},
    "bench.cli": {
        "bench.errors",
        "bench.cache",
        "bench.journal",
        "bench.uris",
        "bench.config",
        "bench.data",
        "bench.model",
        "bench.schedules",
        "bench.train",
        "bench.sweep",
        "bench.usercode",
        "bench.tracking",
        "bench.search",
        "bench.report",
        "bench.analysis",
        "bench.stored",
    },
}
# Third-party libraries and the only parts that import them.
LIBRARIES = {
    "optuna": {"bench.search"},
    "mlflow": {"bench.tracking", "bench._compat"},
    "sqlalchemy": {"bench.search", "bench.cli", "bench._compat"},
    "matplotlib": {"bench.report"},
    "scipy": {"bench.analysis"},
    "plotly": {"bench.report"},
    "jinja2": {"bench.report"},
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(path: Path, name: str) -> set[str]:
    """Every module ``path`` imports at run time, at its top or inside a function (imports under ``if
    TYPE_CHECKING:`` are for the type checker alone)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: the package, up level - 1 times
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], base]).strip(".")
            submodules = {f"{base}.{alias.name}" for alias in node.names} & MODULES.keys()
            found |= submodules
            if len(submodules) < len(node.names):  # names defined in the module itself
                found.add(base)
    return found


def _part(module: str) -> str:
    """The entry of ALLOWED a module belongs to ("bench": the package's own __init__)."""
    return max((p for p in ALLOWED if module == p or module.startswith(p + ".")), key=len, default=module)


GRAPH = {name: {m for m in _imports(path, name) if m.startswith("bench")} for name, path in MODULES.items()}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_400_lines(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name}: {lines} lines"


def test_no_import_cycle() -> None:
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for imported in sorted(GRAPH.get(module, ())):
            if imported not in MODULES:
                continue
            if state.get(imported) == 1:
                cycle = [*path[path.index(imported) :], imported]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if imported not in state:
                visit(imported, [*path, imported])
        state[module] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module, [module])


def test_dependencies_point_one_way() -> None:
    """Each part imports itself and the parts below it only: the data flow of docs/architecture.md."""
    wrong = []
    for module, imported in GRAPH.items():
        if module == "bench":  # the package's own __init__ re-exports the public API, lazily
            continue
        mine = _part(module)
        for other in imported:
            theirs = _part(other) if other != "bench" else "bench"
            if theirs != mine and not (theirs in ALLOWED[mine] or other in ALLOWED[mine]):
                wrong.append(f"{module} imports {other}")
    assert not wrong, wrong


@pytest.mark.parametrize("library", sorted(LIBRARIES))
def test_each_library_is_imported_where_the_map_says(library: str) -> None:
    importers = [
        module
        for module, path in MODULES.items()
        if any(m == library or m.startswith(library + ".") for m in _imports(path, module))
    ]
    assert importers and all(_part(m) in LIBRARIES[library] for m in importers), importers


# Private names of torch, Optuna, MLflow, SQLAlchemy and the standard library the code once reached into.
PRIVATE = [
    r"torch\.ops\.aten",
    r"_log_softmax_backward_data",
    r"_dynamo",
    r"\._storage\b",
    r"\._trial_id\b",
    r"\._study_id\b",
    r"sqlalchemy_store",
    r"_initialize_tables",
    r"DELETE FROM",
    r"\._processes\b",
    r"urllib3\.connectionpool",
    r"event\.listen\(Engine",
]


def test_private_internals_are_reached_only_in_the_compat_module() -> None:
    allowed = {PACKAGE / "_compat.py", Path(__file__)}
    found = []
    for folder in ("bench", "tests", "perf"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path in allowed:
                continue
            text = path.read_text()
            found += [f"{path.relative_to(ROOT)}: {p}" for p in PRIVATE if re.search(p, text)]
    assert not found, found

"""The package's structure, read from its imports: no cycles, no import running up a layer.

The graph is drawn with :mod:`ast` from every module under ``src/orchestrate``: each
``import`` and ``from … import`` anywhere in a module (a function-level import counts as
much as one at the top) is an edge, except those under ``if TYPE_CHECKING:``, which never
run. ``from orchestrate.pkg import name`` is an edge to ``orchestrate.pkg.name`` when that
is a module, else to the package ``orchestrate.pkg``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "orchestrate"

# Third-party SDKs the engine must never import (durability wraps models; models never
# know about durability), besides the access layers above it.
VENDOR_SDKS = ("openai", "anthropic", "ollama", "llama_cpp", "fastapi", "starlette", "uvicorn", "click", "rich")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run (those under ``if TYPE_CHECKING:`` cannot)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def targets(module: str) -> set[str]:
    """The modules ``module`` imports (internal ones by module name, others by top package)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out: set[str] = set()
    for node in _imports(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
            continue
        source = _resolve(module, path, node)
        for alias in node.names:
            sub = f"{source}.{alias.name}"
            out.add(sub if sub in MODULES else source)
    return {t for t in out if t != module}


def graph() -> dict[str, set[str]]:
    """Internal edges: module -> the internal modules it imports."""
    return {m: {t for t in targets(m) if t in MODULES} for m in MODULES}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(found)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _edges_from(package: str) -> list[tuple[str, str]]:
    return sorted((m, t) for m in MODULES if _within(m, package) for t in targets(m))


# Package ``__init__`` modules re-export their children, so a child importing a sibling
# through the package would be an edge back to it: the graph below leaves the package
# inits out (what a child imports from one is the child module that defines it).
def _without_inits(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    inits = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    return {m: t - inits for m, t in edges.items() if m not in inits}


def test_the_graph_sees_function_level_imports_and_skips_type_checking_ones(tmp_path: Path) -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from orchestrate.a import X\n"
        "def f():\n    from orchestrate.b import Y\n"
    )
    found = {node.module for node in _imports(ast.parse(source)) if isinstance(node, ast.ImportFrom)}
    assert found == {"typing", "orchestrate.b"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_engine_has_no_import_cycle() -> None:
    edges = _without_inits(graph())
    engine = {m: {t for t in ts if _within(t, "orchestrate._engine")} for m, ts in edges.items()}
    assert cycles(engine) == []


# Cycles outside the engine that are known and not yet cut; a new one fails the test
# below, and cutting one of these fails it too, so that the list stays true.
KNOWN_CYCLES = [
    ["orchestrate.cli._common", "orchestrate.cli.yaml_commands"],  # _common imports the YAML commands in a function
    ["orchestrate.models.base", "orchestrate.models.streaming"],  # base's default stream() imports streaming
]


def test_no_module_imports_one_that_imports_it_back() -> None:
    # The whole package: definitions, engine, review, stores, policies, models, access.
    assert cycles(_without_inits(graph())) == KNOWN_CYCLES


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("orchestrate._engine", ("orchestrate.server", "orchestrate.cli", *VENDOR_SDKS)),
        ("orchestrate.review", ("orchestrate._engine",)),
        ("orchestrate.workflow", ("orchestrate._engine",)),
        ("orchestrate._definitions", ("orchestrate._engine",)),
        ("orchestrate.policies", ("orchestrate._engine",)),
        ("orchestrate.store", ("orchestrate._engine", "orchestrate.workflow", "orchestrate._definitions")),
    ],
)
def test_no_import_runs_up_a_layer(package: str, forbidden: tuple[str, ...]) -> None:
    upward = [(m, t) for m, t in _edges_from(package) if any(_within(t, f) for f in forbidden)]
    assert upward == []

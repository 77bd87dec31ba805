"""The package's import graph: one-way layers and no cycles (issue 13's guardrails).

Every ``import`` statement counts, those inside functions too (a lazy import still
ties two modules together), except imports under ``if TYPE_CHECKING:``, which only
the type checker follows. The graph is read from the source with ``ast``, so the
test needs no compiled extension and imports nothing of the broker.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mqttfast"

# layer -> packages it must never import (the layers point one way:
# codec <- core <- transport <- app; the cluster backplane sits beside app).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "mqttfast.codec": (
        "mqttfast.core",
        "mqttfast.transport",
        "mqttfast.app",
        "mqttfast.plugins",
        "mqttfast.cluster",
        "mqttfast.embed",
        "asyncio",
    ),
    "mqttfast.core": (
        "mqttfast.transport",
        "mqttfast.app",
        "mqttfast.plugins",
        "mqttfast.cluster",
        "mqttfast.embed",
        "asyncio",
        "socket",
        "nats",
    ),
    "mqttfast.transport": (
        "mqttfast.app",
        "mqttfast.plugins",
        "mqttfast.cluster",
        "mqttfast.embed",
        "nats",
    ),
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                found.add(target)
                # "from pkg import submodule" imports the submodule too.
                for alias in child.names:
                    found.add(f"{target}.{alias.name}")
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for target in _imports(path, name):
            # Keep only edges to modules of the package (the nearest existing module).
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith("mqttfast"):
                edges.add(target)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def _is_package_init_edge(a: str, b: str) -> bool:
    # A package's __init__ re-exporting its own submodules is not a cycle of concerns.
    return b.startswith(a + ".") or a.startswith(b + ".")


def test_no_import_cycles() -> None:
    graph = _graph()
    pruned = {a: {b for b in bs if not _is_package_init_edge(a, b)} for a, bs in graph.items()}
    cycles = _cycles(pruned)
    assert not cycles, "import cycles in mqttfast/:\n" + "\n".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_point_one_way(layer: str) -> None:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    bad = []
    for name, path in modules.items():
        if name != layer and not name.startswith(layer + "."):
            continue
        for target in _imports(path, name):
            for forbidden in FORBIDDEN[layer]:
                if target == forbidden or target.startswith(forbidden + "."):
                    bad.append(f"{name} imports {target}")
    assert not bad, "\n".join(sorted(set(bad)))


def test_graph_is_read() -> None:
    """The reader really finds edges (a broken reader would pass every test above)."""
    graph = _graph()
    assert "mqttfast.codec.constants" in graph["mqttfast.core.broker"] or any(
        t.startswith("mqttfast.codec") for t in graph["mqttfast.core.broker"]
    )
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]

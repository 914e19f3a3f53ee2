"""No import cycle between the product's modules: each module's load-time imports (those at
module level, not inside functions or under ``TYPE_CHECKING``) form a graph without cycles.

A cycle means one of the two modules cannot be read, tested or replaced without the other;
the turn-as-a-value design exists to break the one the engine and the pipeline had.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "channels", "core", "common", "intents", "payments", "backend_client")


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _load_time_nodes(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements run when the module is imported: the body, and the bodies of ``if`` / ``try``
    blocks in it, except ``if TYPE_CHECKING:``."""
    out: list[ast.stmt] = []
    for node in body:
        if isinstance(node, ast.If):
            test = node.test
            if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                    isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
                out += _load_time_nodes(node.orelse)
                continue
            out += _load_time_nodes(node.body) + _load_time_nodes(node.orelse)
        elif isinstance(node, ast.Try):
            out += _load_time_nodes(node.body) + _load_time_nodes(node.orelse) + _load_time_nodes(node.finalbody)
            for h in node.handlers:
                out += _load_time_nodes(h.body)
        else:
            out.append(node)
    return out


def graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the product modules it imports at load time (``from a import b`` counts as
    ``a.b`` when that is a module, else ``a``)."""
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        found: set[str] = set()
        for node in _load_time_nodes(tree.body):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
                for a in node.names:
                    found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
        edges[name] = {m for m in found if m in modules and m != name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _product_modules() -> dict[str, Path]:
    return {_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))
            if "migrations" not in p.parts}


def test_no_import_cycle() -> None:
    assert cycles(graph(_product_modules())) == []


def test_the_cycle_check_can_fail() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []

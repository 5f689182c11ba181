"""The package's import graph: no cycles between modules, and imports inside functions only
in the modules that say why (start-up time and per-step memory), plus two marked ones."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "hipgen_utils"
# modules whose docstring says why their imports sit inside functions
LAZY_BY_DESIGN = {"hipgen_utils.cli", "hipgen_utils.bench", "hipgen_utils.data_bench"}


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _imports(mods: dict[str, Path]):
    """{module: set of package modules it imports}, and [(module, line, text)] of the
    imports made inside a function or a branch."""
    edges, inner = {m: set() for m in mods}, []
    for m, p in mods.items():
        src = p.read_text()
        for node in ast.walk(ast.parse(src)):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    here = m.split(".") if p.name == "__init__.py" else m.split(".")[:-1]
                    base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            targets = {n for n in names if n in mods and n != m}
            edges[m] |= targets
            if targets and node.col_offset > 0:
                inner.append((m, node.lineno, src.splitlines()[node.lineno - 1].strip()))
    return edges, inner


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_between_the_packages_modules():
    edges, _ = _imports(_modules())
    assert _cycles(edges) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_inside_functions_only_where_a_module_says_why():
    _, inner = _imports(_modules())
    unexplained = [f"{m}:{line}: {text}" for m, line, text in inner
                   if m not in LAZY_BY_DESIGN and "#" not in text]  # fmt: skip
    assert unexplained == []


@pytest.mark.parametrize("module", sorted(LAZY_BY_DESIGN))
def test_lazy_modules_say_why_in_their_docstring(module):
    doc = ast.get_docstring(ast.parse(_modules()[module].read_text())) or ""
    assert "import" in doc and "inside" in doc

"""The package's import structure, read from the source with ``ast`` (nothing is imported):

1. no import circle between modules, counting every import: at module level, inside
   functions (lazy) and under ``TYPE_CHECKING``;
2. imports flow downward through :data:`LAYERS`: a module imports only from its own layer
   or a lower one;
3. no module imports another module's private names (``from reverie.x import _name``, or
   ``mod._name`` on an imported module).

docs/design.md ("Layers") explains the order. An exception lives in an allow-list below,
named by the importing module with the reason; an entry that no longer matches an import
fails the test too, so it goes when the import does.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("reverie", "reverie.errors", "reverie.utils", "reverie.paths"),
    ("reverie.world",),
    ("reverie.base",),
    ("reverie.hypernet",),
    ("reverie.memory",),
    ("reverie.sleep",),
    # The learned selector that sleep() runs (registered into the sleep cycle's selectors).
    ("reverie.policy.features", "reverie.policy.net", "reverie.policy.selector"),
    ("reverie.learner",),
    ("reverie.eval",),
    # Training and benchmarking the policy: streams, answer tables, the environment, PPO.
    ("reverie.policy",),
    ("reverie.demo",),
    ("reverie.cli_common", "reverie.cli_recipes", "reverie.cli"),
)
"""Lowest first. A module belongs to the layer of its longest listed prefix."""

ALLOWED_UPWARD: dict[tuple[str, str], str] = {}
"""(importing module, imported module) -> why an import against the layer order stays."""

ALLOWED_PRIVATE: dict[tuple[str, str], str] = {}
"""(importing module, imported private name) -> why it stays for now."""


@dataclass(frozen=True)
class Import:
    importer: str
    target: str
    """The module imported from (the most specific module the import names)."""
    line: int
    private: str | None = None
    """``target.name`` when the import takes a private name from ``target``."""


def modules(src: Path = SRC) -> dict[str, Path]:
    """Dotted module name -> file, for every module under ``src``."""
    out = {}
    for f in sorted(src.rglob("*.py")):
        parts = list(f.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f
    return out


def _owner(name: str, mods: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a module (``reverie.a.b.C`` -> ``reverie.a.b``)."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def imports(mods: dict[str, Path]) -> list[Import]:
    """Every import of one module of ``mods`` by another, wherever it stands in the file."""
    out: list[Import] = []
    for mod, f in mods.items():
        package = mod if f.name == "__init__.py" else mod.rpartition(".")[0]
        tree = ast.parse(f.read_text(encoding="utf-8"), str(f))
        bound: dict[str, str] = {}  # local name -> module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    t = _owner(a.name, mods)
                    if t and t != mod:
                        out.append(Import(mod, t, node.lineno))
                        if a.asname:
                            bound[a.asname] = t
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    t = sub if sub in mods else _owner(base, mods)
                    if not t or t == mod:
                        continue
                    out.append(Import(mod, t, node.lineno, sub if t != sub and _private(a.name) else None))
                    if t == sub:
                        bound[a.asname or a.name] = t
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in bound and _private(node.attr)):
                t = bound[node.value.id]
                out.append(Import(mod, t, node.lineno, f"{t}.{node.attr}"))
    return list(dict.fromkeys(out))


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
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
    return out


def layer(mod: str) -> int | None:
    """The index in :data:`LAYERS` of ``mod``'s longest listed prefix (None: not placed)."""
    best: tuple[int, int] | None = None
    for i, names in enumerate(LAYERS):
        for p in names:
            if (mod == p or mod.startswith(p + ".")) and (best is None or len(p) > best[0]):
                best = (len(p), i)
    return None if best is None else best[1]


MODS = modules()
IMPORTS = imports(MODS)


def _where(imps: Iterable[Import]) -> str:
    return "\n".join(f"  {MODS[i.importer].relative_to(SRC)}:{i.line}: {i.importer} -> {i.private or i.target}"
                     for i in imps)


def test_the_source_is_read():
    assert "reverie.learner" in MODS and "reverie.world.generator" in MODS
    assert any(i.importer == "reverie.learner" for i in IMPORTS)


def test_no_import_circles():
    graph: dict[str, set[str]] = {m: set() for m in MODS}
    for i in IMPORTS:
        graph[i.importer].add(i.target)
    found = circles(graph)
    assert not found, "import circles:\n" + "\n".join(
        " <-> ".join(c) + "\n" + _where(i for i in IMPORTS if i.importer in c and i.target in c) for c in found)


def test_circles_are_found():
    """The check above can fail: a lazy two-module circle and a longer one are both found."""
    assert circles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_every_module_has_a_layer():
    assert not [m for m in MODS if layer(m) is None], "place these modules in LAYERS"


def test_imports_flow_downward():
    up = [i for i in IMPORTS if (layer(i.target) or 0) > (layer(i.importer) or 0)
          and (i.importer, i.target) not in ALLOWED_UPWARD]
    assert not up, "imports of a higher layer (see LAYERS):\n" + _where(up)


def test_no_private_names_across_modules():
    bad = [i for i in IMPORTS if i.private and (i.importer, i.private) not in ALLOWED_PRIVATE]
    assert not bad, "private names used by another module (make them public where shared):\n" + _where(bad)


@pytest.mark.parametrize("table", ["upward", "private"])
def test_allow_lists_are_still_needed(table):
    if table == "upward":
        stale = set(ALLOWED_UPWARD) - {(i.importer, i.target) for i in IMPORTS}
    else:
        stale = set(ALLOWED_PRIVATE) - {(i.importer, i.private) for i in IMPORTS}
    assert not stale, f"these allow-list entries match no import any more; delete them: {sorted(stale)}"

"""The package import graph keeps the layering DESIGN.md promises: no cycle between packages,
nothing climbs to a higher floor, no private name imported from another package.

Parsed with ``ast`` (every import, also those inside functions), so a lazy import that climbs
is caught as well as a top-level one.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import frugalrec

ROOT = Path(frugalrec.__file__).parent

# Floors, lowest first. A package may import its own floor or lower ones (within a floor only
# without cycles); root modules (``_io``, ``opcount``, ...) are the ground floor.
FLOORS: dict[str, int] = {
    "<root>": 0,
    "privacy": 1,
    "data": 2,
    "text": 3,
    "models": 4,
    "pipeline": 5,
    "evaluate": 6,
    "llm": 7,
    "cost": 7,
    "engines": 7,
    "serve": 8,
    "bench": 8,
    "cli": 9,
    "api": 9,  # frugalrec.api: the library facade (frugalrec.Recommender), on top like the CLI
}
# Root modules that are not ground floor: the facade composes the packages below it.
ROOT_FACADES = {"api"}


def _package(module: str, root: Path = ROOT) -> str | None:
    parts = module.split(".")
    if parts[0] != "frugalrec" or len(parts) < 2:
        return None
    if (root / parts[1]).is_dir():
        return parts[1]
    return parts[1] if parts[1] in ROOT_FACADES else "<root>"


def _source(rel: Path) -> str:
    if len(rel.parts) > 1:
        return rel.parts[0]
    return rel.stem if rel.stem in ROOT_FACADES else "<root>"


def import_edges(root: Path = ROOT) -> dict[tuple[str, str], list[str]]:
    """``{(from_package, to_package): [file:line, ...]}`` over every ``frugalrec`` import."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root)
        src = _source(rel)
        mod = ["frugalrec", *rel.with_suffix("").parts]
        is_pkg = mod[-1] == "__init__"
        if is_pkg:
            mod = mod[:-1]
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod if is_pkg else mod[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    names = [".".join(base + ([node.module] if node.module else []))]
                else:
                    names = [node.module or ""]
            for name in names:
                dst = _package(name, root)
                if dst is not None and dst != src:
                    edges[(src, dst)].append(f"{rel}:{node.lineno}")
    return edges


def find_cycles(edges: dict[tuple[str, str], list[str]]) -> list[list[str]]:
    """Strongly connected components with more than one package (Tarjan)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
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
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_known_cycle():
    edges = {("a", "b"): ["x"], ("b", "c"): ["y"], ("c", "a"): ["z"], ("c", "d"): ["w"]}
    assert find_cycles(edges) == [["a", "b", "c"]]
    assert find_cycles({("a", "b"): ["x"]}) == []


def test_edges_are_parsed_from_lazy_and_relative_imports(tmp_path):
    pkg = tmp_path / "frugalrec"
    (pkg / "low").mkdir(parents=True)
    (pkg / "high").mkdir()
    (pkg / "low" / "__init__.py").write_text("")
    (pkg / "high" / "__init__.py").write_text("")
    (pkg / "low" / "m.py").write_text("def f():\n    from frugalrec.high import x\n")
    (pkg / "high" / "n.py").write_text("from ..low import m\n")
    edges = import_edges(pkg)
    assert set(edges) == {("low", "high"), ("high", "low")}
    assert find_cycles(edges) == [["high", "low"]]


def test_every_package_has_a_floor():
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert packages <= set(FLOORS), f"give these packages a floor: {packages - set(FLOORS)}"


def test_no_import_cycle_between_packages():
    edges = import_edges()
    cycles = find_cycles(edges)
    where = {
        tuple(c): [f"{a}->{b}: {edges[(a, b)][0]}" for a in c for b in c if (a, b) in edges]
        for c in cycles
    }
    assert not cycles, f"import cycles between packages: {where}"


def test_nothing_climbs_to_a_higher_floor():
    climbs = [
        f"{a} -> {b} ({', '.join(sites[:3])})"
        for (a, b), sites in import_edges().items()
        if FLOORS.get(b, 0) > FLOORS.get(a, 0)
    ]
    assert not climbs, "upward imports:\n" + "\n".join(climbs)


def test_no_private_name_imported_from_another_package():
    bad = []
    for f in sorted(ROOT.rglob("*.py")):
        rel = f.relative_to(ROOT)
        src = _source(rel)
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                dst = _package(node.module)
                if dst is None or dst == src:
                    continue
                for alias in node.names:
                    if alias.name.startswith("_"):
                        bad.append(f"{rel}:{node.lineno} imports {node.module}.{alias.name}")
    assert not bad, "\n".join(bad)

"""No import cycles inside xrobust, between modules or between packages, and no package imports one
of a higher layer (docs/ARCHITECTURE.md, "Layers").

An AST scan of xrobust/: every `import` and `from ... import` statement (absolute or relative, at
module level or inside a function, since a deferred import is still a dependency) becomes an edge.
`from package import name` points at the submodule `package.name` when there is one, else at the
package's __init__. Importing a submodule also runs its package's __init__; that implied edge is
left out, as Python resolves a package importing its own submodules without a cycle.

`python tests/test_import_layers.py` prints both graphs.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "xrobust"

# Lowest first (docs/ARCHITECTURE.md, "Layers": keep the two in step). A unit (a subpackage, or a
# module directly under xrobust/) imports units of its own layer or lower ones, never a higher one;
# within a layer the cycle tests keep imports one-way.
LAYERS = {
    "foundation": ["xrobust", "errors", "io", "shipped"],
    "building blocks": ["tasks", "data", "modeling", "kernels", "adversarial"],
    "experiment config": ["config"],
    "processes": ["launch", "distributed", "host_memory", "tracking"],
    "training": ["training"],
    "evaluation": ["evaluation"],
    "pipeline": ["pipeline"],
    "studies": ["study"],
    "tools": ["demo", "bench"],
    "interface": ["commands", "cli"],
}


def module_names(root: Path = PACKAGE_ROOT) -> dict[str, Path]:
    """Dotted module name -> file, a package named by its __init__.py."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imported_modules(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The xrobust modules that module `name` (at `path`) imports anywhere in its body."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import xrobust.a.b` binds through a.b; a name inside a module
                target = target.rpartition(".")[0]
            if target and target.split(".")[0] == "xrobust" and target != name:
                found.add(target)
    return found


def module_graph(root: Path = PACKAGE_ROOT) -> dict[str, set[str]]:
    known = module_names(root)
    return {name: imported_modules(name, path, known) for name, path in known.items()}


def unit(module: str) -> str:
    """The layer unit a module belongs to: its subpackage, or itself directly under xrobust/."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def unit_graph(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for source, targets in modules.items():
        graph.setdefault(unit(source), set()).update(unit(t) for t in targets if unit(t) != unit(source))
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search, nodes in sorted order)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def layer_of(unit_name: str) -> int | None:
    return next((i for i, names in enumerate(LAYERS.values()) if unit_name in names), None)


def unplaced(units: dict[str, set[str]]) -> list[str]:
    """Units in no layer."""
    return sorted(u for u in set(units) | {t for ts in units.values() for t in ts} if layer_of(u) is None)


def upward_imports(units: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) pairs where a unit imports one of a higher layer."""
    return sorted((source, target) for source, targets in units.items() for target in targets
                  if None not in (layer_of(source), layer_of(target)) and layer_of(target) > layer_of(source))


def importers(modules: dict[str, set[str]], source_unit: str, target_unit: str) -> list[str]:
    """Module-level edges behind one unit-level edge, for the failure message."""
    return sorted(f"{s} -> {t}" for s, ts in modules.items() for t in ts
                  if unit(s) == source_unit and unit(t) == target_unit)


def test_scan_sees_every_kind_of_import(tmp_path):
    """The scanner on a small tree: absolute, relative, `from . import submodule`, in a function."""
    pkg = tmp_path / "xrobust"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("X = 1\n")
    (pkg / "a" / "__init__.py").write_text("from .m import f\n")
    (pkg / "a" / "m.py").write_text("from ..low import X\n\ndef f():\n    from . import n\n    import xrobust.b\n")
    (pkg / "a" / "n.py").write_text("from xrobust.a import m\n")
    (pkg / "b.py").write_text("import json\nfrom xrobust.a.m import f\n")
    graph = module_graph(pkg)
    assert graph == {"xrobust": set(), "xrobust.low": set(), "xrobust.a": {"xrobust.a.m"},
                     "xrobust.a.m": {"xrobust.low", "xrobust.a.n", "xrobust.b"},
                     "xrobust.a.n": {"xrobust.a.m"}, "xrobust.b": {"xrobust.a.m"}}
    assert find_cycle(graph) == ["xrobust.a.m", "xrobust.a.n", "xrobust.a.m"]
    assert find_cycle(unit_graph(graph)) == ["a", "b", "a"]
    del graph["xrobust.a.n"], graph["xrobust.b"]
    graph["xrobust.a.m"] = {"xrobust.low"}
    assert find_cycle(graph) is None


def test_layer_rule_catches_an_upward_import_and_an_unplaced_unit():
    assert upward_imports({"training": {"errors", "data"}, "data": {"tasks"}}) == []
    assert upward_imports({"data": {"training"}, "training": set()}) == [("data", "training")]
    assert unplaced({"newpkg": {"errors"}}) == ["newpkg"]


def test_no_module_cycle():
    cycle = find_cycle(module_graph())
    assert cycle is None, "import cycle between modules: " + " -> ".join(cycle)


def test_no_package_cycle():
    modules = module_graph()
    cycle = find_cycle(unit_graph(modules))
    if cycle:
        edges = [e for a, b in zip(cycle, cycle[1:]) for e in importers(modules, a, b)]
        raise AssertionError("import cycle between packages: " + " -> ".join(f"xrobust.{u}" for u in cycle)
                             + "\n  " + "\n  ".join(edges))


def test_every_unit_has_a_layer():
    missing = unplaced(unit_graph(module_graph()))
    assert not missing, (f"in no layer: {', '.join('xrobust.' + u for u in missing)}; add each to LAYERS here "
                         "and to docs/ARCHITECTURE.md (Layers)")


def test_lower_layers_never_import_higher_ones():
    modules = module_graph()
    names = list(LAYERS)
    bad = [f"xrobust.{a} ({names[layer_of(a)]}) imports xrobust.{b} ({names[layer_of(b)]}): "
           + ", ".join(importers(modules, a, b)) for a, b in upward_imports(unit_graph(modules))]
    assert not bad, "layer rule broken (docs/ARCHITECTURE.md, Layers):\n  " + "\n  ".join(bad)


if __name__ == "__main__":
    modules = module_graph()
    for name, targets in sorted(modules.items()):
        print(name, "->", ", ".join(sorted(targets)) or "-")
    print()
    for name, targets in sorted(unit_graph(modules).items()):
        print(name, "->", ", ".join(sorted(targets)) or "-")
    print("module cycle:", find_cycle(modules))
    print("package cycle:", find_cycle(unit_graph(modules)))
    print("unplaced:", unplaced(unit_graph(modules)), "upward:", upward_imports(unit_graph(modules)))

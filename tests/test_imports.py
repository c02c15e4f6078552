"""The package's shape: no import cycle among its modules (imports inside functions included), and no module
longer than about 500 lines unless its docstring says at once why.

The graph is read from the source with ``ast`` (nothing is imported), so a cycle hidden in a function body is
found as surely as one at the top of a file. Imports under ``if TYPE_CHECKING:`` never run and are left out.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Where each part of the package lives in the checkout (pyproject.toml/setup.py map them the same way).
PACKAGE_ROOTS = {"fsgen_bench": ROOT / "src" / "fsgen_bench", "fsgen_bench.baselines": ROOT / "baselines"}
MAX_LINES = 500
# A longer module states why in the first line of its docstring, e.g. "... (kept in one file because ...)".
LONG_FILE_REASON = re.compile(r"kept in one file because", re.I)


@dataclass(frozen=True)
class Import:
    source: str          # the importing module
    target: str          # the imported module of the package
    line: int
    local: bool          # inside a function body


def package_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (baselines included)."""
    modules: dict[str, Path] = {}
    for prefix, folder in PACKAGE_ROOTS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([prefix, *parts])] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, in_function: bool):
    """(import node, inside a function?) for every import that can run."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield from _walk(other, in_function)
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, in_function
        yield from _walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                  ast.Lambda)))


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []
    is_package = path.name == "__init__.py"
    for node, local in _walk(tree, False):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = _resolve(name, is_package, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in modules else base)   # `from pkg import submodule` or a name
        for target in targets:
            # `import a.b.c` binds a module of the package: the longest known prefix is what runs
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.append(Import(name, target, node.lineno, local))
    return found


def import_graph() -> tuple[dict[str, set[str]], list[Import]]:
    modules = package_modules()
    edges: list[Import] = []
    for name, path in modules.items():
        edges += imports_of(name, path, modules)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for edge in edges:
        graph[edge.source].add(edge.target)
    return graph, edges


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative depth-first search, three colours)."""
    colour = {node: 0 for node in graph}           # 0 new, 1 on the current path, 2 done
    for start in sorted(graph):
        if colour[start]:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        colour[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                colour[path.pop()] = 2
                stack.pop()
            elif colour[nxt] == 1:
                return path[path.index(nxt):] + [nxt]
            elif colour[nxt] == 0:
                colour[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_the_checker_finds_a_cycle_through_a_function_body(tmp_path):
    """The checker itself, on a made-up package: a cycle closed by an import inside a function is found."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from pkg import a\n    return a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    modules = {"pkg": pkg / "__init__.py", "pkg.a": pkg / "a.py", "pkg.b": pkg / "b.py", "pkg.c": pkg / "c.py"}
    graph = {name: {e.target for e in imports_of(name, path, modules)} for name, path in modules.items()}
    assert graph["pkg.b"] == {"pkg.a"} and graph["pkg.c"] == set()      # type-checking imports never run
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]
    graph["pkg.b"] = set()
    assert find_cycle(graph) is None


def test_no_import_cycle_in_the_package():
    graph, edges = import_graph()
    assert len(graph) > 40 and any(e.local for e in edges)     # the walk saw the package and function bodies
    cycle = find_cycle(graph)
    if cycle:
        where = [next(f"{e.source} -> {e.target} (line {e.line}{', in a function' if e.local else ''})"
                      for e in edges if e.source == a and e.target == b) for a, b in zip(cycle, cycle[1:])]
        raise AssertionError("import cycle:\n  " + "\n  ".join(where))


def test_no_module_is_long_without_a_stated_reason():
    too_long = []
    for name, path in package_modules().items():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines <= MAX_LINES:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if not LONG_FILE_REASON.search(doc.strip().splitlines()[0] if doc.strip() else ""):
            too_long.append(f"{path.relative_to(ROOT).as_posix()}: {lines} lines")
    assert not too_long, (f"modules over {MAX_LINES} lines whose docstring's first line does not say why "
                          f"('kept in one file because ...'): split them or say why:\n  " + "\n  ".join(too_long))

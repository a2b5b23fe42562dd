"""The package tree is the architecture: each layer of frontend/ imports only the
layers below it, and no frontend module imports itself back through another.

Every module under frontend/ is parsed (not imported) and every import in it
is read, those inside functions and under ``if TYPE_CHECKING:`` too: an
import that only the type checker follows is a dependency all the same, and
two modules that name each other are one module in two files.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping, Set
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "frontend"

#: The layers (``frontend.<layer>``) each layer may import, besides itself and
#: the ``frontend`` package's own ``__init__`` (its version).  None: anything.
MAY_IMPORT: Mapping[str, frozenset[str] | None] = {
    "errors": frozenset(),
    "config": frozenset({"errors"}),
    "wire": frozenset({"config", "errors"}),
    "directory": frozenset({"config", "errors"}),
    "routing": frozenset({"directory", "config", "errors"}),
    "proxy": frozenset({"wire", "routing", "directory", "config", "errors"}),
    "ops": None,
    "loadtest": None,
    "__main__": None,  # ``python -m frontend``: an entry point, like ops
}

#: Layers nothing below them may import.
TOP_ONLY = {"loadtest": frozenset({"ops", "loadtest", "__main__"})}

#: Import cycles known today, each a set of modules.
KNOWN_CYCLES: set[frozenset[str]] = set()


@dataclass(frozen=True)
class Import:
    """One import statement's target in a frontend module."""

    importer: str
    imported: str
    line: int
    type_only: bool  # under ``if TYPE_CHECKING:`` (reported, counted all the same)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(
    node: ast.Import | ast.ImportFrom, importer: str, *, is_package: bool, modules: Set[str]
) -> set[str]:
    """The modules ``node`` imports: ``from a import b`` names a.b when that is a
    module, else a."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    base = node.module or ""
    if node.level:  # relative: resolved against the importer's package
        package = importer.split(".")
        if not is_package:
            package.pop()
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    named = {f"{base}.{alias.name}" for alias in node.names}
    found = named & modules
    return found if found == named else found | {base}


def imports_of(
    source: str, importer: str, modules: Set[str], *, is_package: bool = False
) -> Iterator[Import]:
    """Every import of one of ``modules`` in ``source``, at any depth, with
    whether it is type-only."""

    def walk(node: ast.AST, *, type_only: bool) -> Iterator[Import]:
        if isinstance(node, ast.Import | ast.ImportFrom):
            targets = _targets(node, importer, is_package=is_package, modules=modules)
            for target in sorted(targets & modules):
                yield Import(importer, target, node.lineno, type_only)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for statement in node.body:
                yield from walk(statement, type_only=True)
            for statement in node.orelse:
                yield from walk(statement, type_only=type_only)
            return
        for child in ast.iter_child_nodes(node):
            yield from walk(child, type_only=type_only)

    yield from walk(ast.parse(source), type_only=False)


def package_imports(root: Path) -> tuple[set[str], list[Import]]:
    """The modules of the package under ``root`` and their imports of each other."""
    files = sorted((root / PACKAGE).rglob("*.py"))
    paths = {module_name(f, root): f for f in files}
    modules = set(paths)
    found: list[Import] = []
    for name, path in paths.items():
        source = path.read_text(encoding="utf-8")
        found += imports_of(source, name, modules, is_package=path.name == "__init__.py")
    return modules, found


def layer_of(module: str) -> str | None:
    """``frontend.routing.resolver`` -> ``routing``; the package itself -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def layer_violations(imports: Iterable[Import]) -> list[str]:
    problems = []
    for imp in imports:
        mine, theirs = layer_of(imp.importer), layer_of(imp.imported)
        if mine is None:  # frontend/__init__.py: imports nothing of frontend
            problems.append(f"{imp.importer}:{imp.line} imports {imp.imported}")
            continue
        if theirs is None or theirs == mine:
            continue  # the package's own __init__ (its version), or the same layer
        if mine not in MAY_IMPORT:
            problems.append(f"{imp.importer}:{imp.line}: {mine} is not a known layer")
            continue
        allowed = MAY_IMPORT[mine]
        importers = TOP_ONLY.get(theirs)
        if (allowed is not None and theirs not in allowed) or (
            importers is not None and mine not in importers
        ):
            problems.append(f"{imp.importer}:{imp.line} ({mine}) imports {imp.imported}")
    return problems


def cycles(modules: Iterable[str], imports: Iterable[Import]) -> set[frozenset[str]]:
    """The import cycles (strongly connected components), type-only imports included."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        graph[imp.importer].add(imp.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.add(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_layer_imports_only_the_layers_below_it() -> None:
    """config and errors import nothing above them, wire and directory only
    config/errors, routing also directory, proxy also wire and routing; nothing
    but ops imports loadtest."""
    _, imports = package_imports(ROOT)
    assert imports, "no import found: is the package where the test looks?"
    assert layer_violations(imports) == []


def test_no_import_cycle_among_frontend_modules() -> None:
    """No frontend module imports itself back through others (imports in
    functions and under TYPE_CHECKING count), except the known cycles."""
    modules, imports = package_imports(ROOT)
    assert cycles(modules, imports) - KNOWN_CYCLES == set()


def _fake_package(tmp_path: Path, files: Mapping[str, str]) -> Path:
    for relative, source in files.items():
        path = tmp_path / PACKAGE / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    for directory in [tmp_path / PACKAGE, *(tmp_path / PACKAGE).rglob("*")]:
        if directory.is_dir() and not (directory / "__init__.py").exists():
            (directory / "__init__.py").write_text("", encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("relative", "source"),
    [
        ("wire/server.py", "from frontend.routing.resolver import Router\n"),
        ("config/file.py", "def f():\n    from frontend.directory import ldap\n"),
        ("directory/lookups.py", "from ..routing import marks\n"),
        ("routing/marks.py", "import frontend.proxy.runtime\n"),
        ("proxy/handler.py", "from frontend.loadtest import cli\n"),
        ("errors.py", "from frontend.config import file\n"),
        ("__init__.py", "from frontend import errors\n"),
    ],
)
def test_a_forbidden_import_is_found(tmp_path: Path, relative: str, source: str) -> None:
    """The checker itself: an import against the layers, at any depth, is reported."""
    root = _fake_package(
        tmp_path,
        {
            "errors.py": "",
            "config/file.py": "",
            "wire/server.py": "",
            "directory/lookups.py": "",
            "directory/ldap.py": "",
            "routing/marks.py": "",
            "routing/resolver.py": "",
            "proxy/runtime.py": "",
            "proxy/handler.py": "",
            "loadtest/cli.py": "",
        }
        | {relative: source},
    )
    _, imports = package_imports(root)
    assert len(layer_violations(imports)) == 1


def test_a_new_cycle_is_found_even_through_a_function(tmp_path: Path) -> None:
    """The checker itself: a cycle closed by an import inside a function, or
    under TYPE_CHECKING, is reported."""
    root = _fake_package(
        tmp_path,
        {
            "ops/a.py": "from frontend.ops import b\n",
            "ops/b.py": "def f():\n    import frontend.ops.a\n",
            "ops/c.py": "from frontend.ops.d import X\n",
            "ops/e.py": "from frontend.ops.c import Z\n",
            "ops/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from frontend.ops.c import Y\n",
        },
    )
    modules, imports = package_imports(root)
    assert cycles(modules, imports) == {
        frozenset({"frontend.ops.a", "frontend.ops.b"}),
        frozenset({"frontend.ops.c", "frontend.ops.d"}),
    }

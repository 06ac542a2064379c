"""The package's import structure, read from the source with ``ast`` (nothing is imported).

* no import cycle between vae_edu's modules (module-level *and* function-level imports);
* no module uses another module's private names (``from vae_edu.x import _y`` or
  ``x._y``); a private *module* such as ``vae_edu._checks`` is shared by design with the
  modules of its own package, and its public functions may be used there;
* no function-level import of a vae_edu module, unless the line says why with a comment
  starting ``# lazy:`` (e.g. to keep ``import vae_edu`` or the CLI's start-up fast).

The analyser itself is tested first on a small synthetic package, so a bug in it cannot
make the tests on the real package pass vacuously.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "vae_edu"
LAZY_MARK = "# lazy:"


# ----------------------------------------------------------------------------- the analyser
@dataclass(frozen=True)
class Import:
    """One import of a package module: where it is and what it names."""

    importer: str  # dotted module name of the file holding the import
    target: str  # the package module it imports (or imports names from)
    names: tuple[str, ...]  # for ``from target import a, b``: ("a", "b"); else ()
    line: int
    function_level: bool
    lazy_comment: bool


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package at ``root``."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of the dotted ``name`` that is a module of the package."""
    parts = name.split(".")
    for stop in range(len(parts), 0, -1):
        candidate = ".".join(parts[:stop])
        if candidate in modules:
            return candidate
    return None


def _walk_with_scope(tree: ast.AST) -> Iterator[tuple[ast.AST, bool]]:
    """Every node with a flag: is it inside a function (or lambda) body?"""
    stack = [(tree, False)]
    while stack:
        node, in_function = stack.pop()
        yield node, in_function
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        stack.extend((child, inner) for child in ast.iter_child_nodes(node))


def _base_package(module: str, path: Path, level: int) -> str:
    """The package a relative import of ``level`` dots in ``module`` starts from."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(level - 1):
        package = package.rpartition(".")[0]
    return package


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """The imports of package modules in one file, relative imports resolved."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    found = []
    for node, in_function in _walk_with_scope(ast.parse(source, str(path))):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        span = lines[node.lineno - 1 : node.end_lineno]
        lazy = any(LAZY_MARK in line for line in span)

        def add(target, names=(), node=node, lazy=lazy, in_function=in_function):
            found.append(Import(module, target, names, node.lineno, in_function, lazy))

        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name, modules)
                if target is not None:
                    add(target)
            continue
        if node.level:
            base = _base_package(module, path, node.level)
            full = f"{base}.{node.module}" if node.module else base
        else:
            full = node.module or ""
        if _resolve(full, modules) is None:
            continue
        names_from_module = []
        for alias in node.names:
            submodule = f"{full}.{alias.name}"
            if submodule in modules:
                add(submodule)  # ``from package import module``: an edge to that module
            else:
                names_from_module.append(alias.name)
        if names_from_module:
            add(_resolve(full, modules), tuple(names_from_module))
    return found


def all_imports(root: Path) -> list[Import]:
    modules = module_files(root)
    return [imp for name, path in modules.items() for imp in imports_of(name, path, modules)]


def import_cycles(imports: list[Import]) -> list[list[str]]:
    """One cycle (a list of modules, first = last) per strongly connected component."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.target != imp.importer:
            graph.setdefault(imp.importer, set()).add(imp.target)
    # Tarjan's algorithm, iterative.
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(set(component))
    cycles = []
    for component in components:
        first = min(component)
        # Breadth-first search inside the component for the shortest way back to ``first``.
        previous = {first: None}
        queue = [first]
        end = None
        while queue and end is None:
            node = queue.pop(0)
            for child in sorted(graph.get(node, ())):
                if child == first:
                    end = node
                    break
                if child in component and child not in previous:
                    previous[child] = node
                    queue.append(child)
        path, node = [], end
        while node is not None:
            path.append(node)
            node = previous[node]
        cycles.append([*reversed(path), first])
    return cycles


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_module_allowed(importer: str, module: str) -> bool:
    """A private module (``pkg._m``) may be used by the modules of its package ``pkg``."""
    package = module.rpartition(".")[0]
    return importer == package or importer.startswith(package + ".")


def _module_private(module: str) -> bool:
    return any(_is_private(part) for part in module.split(".")[1:])


def private_uses(root: Path) -> list[str]:
    """Uses of another package module's private names, as "file:line: what" strings."""
    modules = module_files(root)
    offenders = []
    for name, path in modules.items():
        relative = path.relative_to(root.parent).as_posix()
        for imp in imports_of(name, path, modules):
            if imp.target == name:
                continue
            if _module_private(imp.target) and not _private_module_allowed(name, imp.target):
                offenders.append(f"{relative}:{imp.line}: imports private module {imp.target}")
            for imported in imp.names:
                if _is_private(imported):
                    offenders.append(f"{relative}:{imp.line}: from {imp.target} import {imported}")
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        # Names bound to package modules anywhere in the file (``import vae_edu.x as m``,
        # ``from vae_edu import x``, ``import vae_edu``).
        bound: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if _resolve(alias.name, modules) is None:
                        continue
                    if alias.asname:
                        bound[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        bound[top] = top
            elif isinstance(node, ast.ImportFrom):
                base = _base_package(name, path, node.level) if node.level else ""
                full = ".".join(p for p in (base, node.module or "") if p)
                for alias in node.names:
                    if f"{full}.{alias.name}" in modules:
                        bound[alias.asname or alias.name] = f"{full}.{alias.name}"
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not _is_private(node.attr):
                continue
            chain, value = [], node.value
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            if not isinstance(value, ast.Name) or value.id not in bound:
                continue
            dotted = ".".join([bound[value.id], *reversed(chain)])
            if dotted not in modules or dotted == name:
                continue
            attribute = f"{dotted}.{node.attr}"
            if attribute in modules and _private_module_allowed(name, attribute):
                continue  # e.g. vae_edu._checks used as a module attribute
            offenders.append(f"{relative}:{node.lineno}: uses {attribute}")
    return sorted(set(offenders))


def unexplained_function_level_imports(root: Path) -> list[str]:
    modules, offenders = module_files(root), []
    for imp in all_imports(root):
        if imp.function_level and not imp.lazy_comment:
            path = modules[imp.importer].relative_to(root.parent).as_posix()
            offenders.append(f"{path}:{imp.line}: imports {imp.target} inside a function")
    return sorted(set(offenders))


# ----------------------------------------------------------------- the analyser, on a toy
def _toy_package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "toy"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_analyser_finds_a_cycle_through_a_function_level_relative_import(tmp_path):
    root = _toy_package(
        tmp_path,
        {
            "a.py": "from toy import b\n",
            "b.py": "import toy.c as c\n",
            "c.py": "def f():\n    from . import a\n",
            "d.py": "from toy.a import thing\n",
        },
    )
    assert import_cycles(all_imports(root)) == [["toy.a", "toy.b", "toy.c", "toy.a"]]
    assert unexplained_function_level_imports(root) == [
        "toy/c.py:2: imports toy.a inside a function"
    ]


def test_analyser_accepts_a_lazy_comment_and_an_acyclic_graph(tmp_path):
    root = _toy_package(
        tmp_path,
        {
            "a.py": "from toy import b\n",
            "b.py": "def f():\n    import toy.c  # lazy: c is slow to import\n",
            "c.py": "import os\n",
        },
    )
    assert import_cycles(all_imports(root)) == []
    assert unexplained_function_level_imports(root) == []


def test_analyser_finds_private_imports_and_attributes(tmp_path):
    root = _toy_package(
        tmp_path,
        {
            "_checks.py": "def count(): ...\ndef _helper(): ...\n",
            "a.py": "def _secret(): ...\n",
            "b.py": (
                "from toy import _checks, a\n"
                "from toy.a import _secret\n"
                "from toy._checks import count, _helper\n"
                "import toy.a as alias\n"
                "x = a._secret, alias._secret, _checks.count, a.__name__, _checks._helper\n"
            ),
            "sub/__init__.py": "",
            "sub/_inner.py": "",
            "c.py": "from toy.sub import _inner\n",
        },
    )
    assert private_uses(root) == [
        "toy/b.py:2: from toy.a import _secret",
        "toy/b.py:3: from toy._checks import _helper",
        "toy/b.py:5: uses toy._checks._helper",
        "toy/b.py:5: uses toy.a._secret",
        "toy/c.py:1: imports private module toy.sub._inner",
    ]


# ----------------------------------------------------------------------- the real package
def test_no_import_cycle_inside_vae_edu():
    cycles = import_cycles(all_imports(PACKAGE_ROOT))
    assert not cycles, "import cycles (module-level and function-level imports): " + "; ".join(
        " -> ".join(cycle) for cycle in cycles
    )


def test_no_module_uses_another_modules_private_names():
    offenders = private_uses(PACKAGE_ROOT)
    assert not offenders, "private names used across modules:\n" + "\n".join(offenders)


def test_function_level_imports_of_the_package_say_why():
    offenders = unexplained_function_level_imports(PACKAGE_ROOT)
    assert not offenders, (
        f"function-level imports of vae_edu modules without a '{LAZY_MARK} <reason>' "
        "comment:\n" + "\n".join(offenders)
    )


@pytest.mark.parametrize("module", ["vae_edu.kl", "vae_edu.elbo", "vae_edu.evaluate"])
def test_the_analyser_sees_the_package(module):
    # Guards the three tests above against passing because nothing was parsed.
    importers = {imp.importer for imp in all_imports(PACKAGE_ROOT)}
    assert module in importers

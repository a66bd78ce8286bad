"""The package's import graph, read from the source with ``ast``: every import points down the spine that the
README draws (so the picture matches the code), no minibert module is imported inside a function (the usual way
to hide a cycle) or after the code, and only the course imports the course."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "minibert"
README = PACKAGE.parent / "README.md"
OFF_THE_SPINE = ("minibert", "minibert.__main__")  # the package re-exports everything; __main__ is the command line


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The minibert modules an import statement names (``from minibert import assets`` names minibert.assets)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in known}
    if node.level:  # relative: resolve against the importing module's package
        package = module.split(".") if is_package else module.split(".")[:-1]
        base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    names = {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
    return names & known


def _imports(module: str, path: Path, known: set[str]) -> list[tuple[str, int, bool, bool]]:
    """(imported module, line, at module level?, before the first def/class?) for every minibert import."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    top_level = {id(node) for node in tree.body}
    first_code = min((node.lineno for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                              ast.ClassDef))), default=10**9)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for name in sorted(_imported(node, module, path.name == "__init__.py", known)):
                if name != module:
                    found.append((name, node.lineno, id(node) in top_level, node.lineno < first_code))
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph = {}
    for module, path in modules.items():
        # the package __init__ re-exports everything: it sits on top, not in the layers
        graph[module] = {name for name, _, _, _ in _imports(module, path, known)
                         if name not in ("minibert", "minibert.course")}
    return graph


def _spine() -> list[str]:
    """The README's module picture, bottom to top: the indented block of "The library", one module a line
    (``course/`` stands for the whole course package; more deeply indented lines continue a description)."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## The library"):]
    section = section[:section.index("\n## ", 1)]
    names = re.findall(r"^    ([a-z_]+/?) {2,}\S", section, flags=re.MULTILINE)
    return ["minibert." + name.rstrip("/") for name in reversed(names)]


def _layer(module: str) -> str:
    """A module's place in the picture: every module of the course package sits in ``course/``."""
    return "minibert.course" if module.startswith("minibert.course.") else module


def test_the_walk_sees_the_layers():
    graph = _graph()  # a broken walk would find no edges and pass the tests below for nothing
    assert {"minibert.config", "minibert.inputs", "minibert.checkpoints", "minibert.modeling"} <= set(graph)
    assert "minibert.config" in graph["minibert.checkpoints"]
    assert {"minibert.checkpoints", "minibert.inputs"} <= graph["minibert.modeling"]
    assert "minibert.modeling" in graph["minibert.heads"]
    assert "minibert.heads" in graph["minibert.course.checks"]
    spine = _spine()
    assert spine[0] == "minibert.assets" and spine[-1] == "minibert.course" and len(spine) > 10


def test_the_readme_picture_names_every_module_once():
    spine = _spine()
    modules = {_layer(m) for m in _modules() if m not in OFF_THE_SPINE}
    assert len(spine) == len(set(spine)), f"a module is drawn twice in README's picture: {spine}"
    assert not modules - set(spine), f"modules missing from README's picture: {sorted(modules - set(spine))}"
    assert not set(spine) - modules, f"README's picture draws modules that do not exist: {sorted(set(spine) - modules)}"


def test_every_module_imports_only_from_the_modules_below_it():
    spine = _spine()
    height = {module: i for i, module in enumerate(spine)}
    upward = [f"{module} imports {dep}" for module, deps in _graph().items() if module not in OFF_THE_SPINE
              for dep in sorted(deps) if _layer(dep) != _layer(module) and height[_layer(dep)] > height[_layer(module)]]
    assert not upward, ("imports that point up the spine (README, The library; move the shared piece down, or "
                        "redraw the picture if the module belongs higher): " + "; ".join(upward))


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle) + "; move the shared piece into the lower module")
            if dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_minibert_modules_are_imported_at_the_top_of_a_module():
    modules = _modules()
    problems = []
    for module, path in modules.items():
        for name, line, top_level, before_code in _imports(module, path, set(modules)):
            if not top_level:
                problems.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name} inside a function or "
                                "block")
            elif not before_code:
                problems.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name} after the code")
    assert not problems, "import minibert modules at the top of the module (a hidden import hides a cycle):\n" + \
        "\n".join(problems)


def test_only_the_course_imports_the_course():
    modules = _modules()
    offenders = [f"{module} imports {name}" for module, path in modules.items()
                 if not module.startswith("minibert.course")
                 for name, _, _, _ in _imports(module, path, set(modules)) if name.startswith("minibert.course")]
    assert not offenders, "the library never imports minibert.course: " + "; ".join(offenders)


def _private_uses(tree: ast.AST, own: str) -> list[str]:
    """``from minibert.x import _name`` and ``alias._name`` on an imported minibert module, outside module ``own``."""
    aliases, found = {}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("minibert") and node.module != own:
            found += [f"from {node.module} import {a.name}" for a in node.names
                      if a.name.startswith("_") and not a.name.startswith("__")]
            aliases.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
        elif isinstance(node, ast.Import):
            aliases.update({a.asname or a.name: a.name for a in node.names if a.name.startswith("minibert")})
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases \
                and node.attr.startswith("_") and not node.attr.startswith("__") and aliases[node.value.id] != own:
            found.append(f"{aliases[node.value.id]}.{node.attr}")
    return found


def test_no_module_notebook_or_benchmark_uses_another_modules_private_names():
    """A name with a leading underscore may change without notice: what another module, a notebook or a benchmark
    needs is public. (Tests may reach inside; the library, the course and the benchmarks may not.)"""
    sources = [*_modules().items(), *(("", path) for path in sorted((PACKAGE.parent / "benchmarks").glob("*.py")))]
    problems = [f"{path.relative_to(PACKAGE.parent)}: {use}" for module, path in sources
                for use in _private_uses(ast.parse(path.read_text(encoding="utf-8")), module)]
    for path in sorted((PACKAGE.parent / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        # IPython's !shell and %magic lines become `pass`, at their indentation, so that the rest parses
        code = "\n".join(re.sub(r"^(\s*)[!%].*$", r"\1pass", "".join(c["source"]), flags=re.MULTILINE)
                         for c in cells if c["cell_type"] == "code")
        problems += [f"{path.relative_to(PACKAGE.parent)}: {use}" for use in _private_uses(ast.parse(code), "")]
    assert not problems, "private names used from outside their module:\n" + "\n".join(problems)

"""The package's import graph, read from the source with ``ast``: it points one way (no cycle), no minibert module
is imported inside a function (the usual way to hide a cycle) or after the code, and only the course imports the
course."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "minibert"


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


def test_the_walk_sees_the_layers():
    graph = _graph()  # a broken walk would find no edges and pass the tests below for nothing
    assert {"minibert.config", "minibert.checkpoints", "minibert.modeling", "minibert.heads"} <= set(graph)
    assert "minibert.config" in graph["minibert.checkpoints"]
    assert "minibert.checkpoints" in graph["minibert.modeling"]
    assert "minibert.modeling" in graph["minibert.heads"]
    assert "minibert.heads" in graph["minibert.course.checks"]


def test_the_spine_points_one_way():
    graph = _graph()
    below = {"minibert.config": set(), "minibert.checkpoints": {"minibert.config"},
             "minibert.modeling": {"minibert.config", "minibert.checkpoints", "minibert.inputs"}}
    for module, allowed in below.items():
        upward = graph[module] - allowed - {"minibert.assets"}
        assert not upward, f"{module} imports {sorted(upward)}, which sit above it in the spine"


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

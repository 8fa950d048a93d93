"""The package's shape, as the architecture asks: short functions, no import cycle, one place per decision."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "subspace_bayes"
MAX_FUNCTION_LINES = 40


def _modules() -> dict[str, ast.Module]:
    out = {}
    for file in sorted(PACKAGE.rglob("*.py")):
        parts = file.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(file.read_text(), filename=str(file))
    return out


def _imported(module: str, tree: ast.Module, is_package: bool) -> set[str]:
    """Package-internal modules that ``module`` imports anywhere (also inside functions)."""
    base = module.split(".") if is_package else module.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - node.level + 1]
                target = ".".join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names] + [target]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found.update(n for n in names if n.startswith("subspace_bayes"))
    return found


def _graph() -> dict[str, set[str]]:
    trees = _modules()
    files = {m: (PACKAGE.parent / m.replace(".", "/")).is_dir() for m in trees}
    return {m: {t for t in _imported(m, tree, files[m]) if t in trees and t != m} for m, tree in trees.items()}


def test_no_import_cycle():
    graph = _graph()
    graph.pop("subspace_bayes")  # the public API imports from everything below it and nothing imports it back
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path[path.index(dep) :], dep]))
            if dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not any(dep == "subspace_bayes" for deps in graph.values() for dep in deps), (
        "import the module, not the package"
    )


def test_functions_are_short():
    long = []
    for file in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                    body = body[1:]  # the docstring does not count
                lines = node.end_lineno - body[0].lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{file.name}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_only_the_inference_package_branches_on_the_posterior():
    from subspace_bayes.options import Posterior

    names = {p.value for p in Posterior}
    offenders = []
    for file in sorted(PACKAGE.rglob("*.py")):
        if "inference" in file.parts or file.name == "options.py":
            continue
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                constants = [c.value for c in ast.walk(ast.Tuple(elts=operands)) if isinstance(c, ast.Constant)]
                if any(isinstance(v, str) and v in names for v in constants):
                    offenders.append(f"{file.name}:{node.lineno}")
    assert not offenders, offenders


def test_docs_hold_no_control_characters():
    # A LaTeX string written without r"" turns \t, \b, \f, \v, \a into control characters that the
    # page renders as garbage (\top, \big, \frac, \varphi, \approx); this once shipped in method.md.
    root = PACKAGE.parent
    pages = [*root.joinpath("docs").rglob("*.md"), root / "README.md"]
    bad = {p.name: sorted({repr(c) for c in p.read_text() if ord(c) < 32 and c not in "\n\r"}) for p in pages}
    assert not {name: chars for name, chars in bad.items() if chars}

"""The architecture, checked: the import graph of ``autograder/`` and who receives which files.

* no import cycle inside ``autograder/``, lazy (function-level) imports included;
* what runs next to student code (``harness/``, ``schedules/``) imports nothing from the judge,
  the Gradescope packaging or the instructor's tools;
* every audience's copy (the sandbox, the student release, the grading image) is closed: each
  module it receives imports only modules it also receives;
* a new module in ``instructor/`` (or one that imports it from elsewhere) reaches neither the
  student release nor the grading image nor the sandbox.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from autograder import layout
from autograder.instructor import student_release
from tests.support import ROOT

PACKAGE = ROOT / "autograder"


def module_name(rel: str) -> str:
    """``schedules/actions.py`` -> ``autograder.schedules.actions``; a package's ``__init__.py`` -> the package."""
    parts = ["autograder", *rel[: -len(".py")].split("/")]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def python_files(root: Path = PACKAGE) -> dict[str, str]:
    """``{module name: relative path}`` of every module of ``root``."""
    return {module_name(rel): rel for rel in layout.all_files(root) if rel.endswith(".py")}


def imports_of(rel: str, modules: dict[str, str], root: Path = PACKAGE) -> set[str]:
    """The ``autograder`` modules that ``rel`` imports anywhere in it (lazy imports included)."""
    name = module_name(rel)
    package = name if rel.endswith("__init__.py") else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse((root / rel).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # ``import autograder.x.y`` names x.y's module
                target = target.rpartition(".")[0]
            if target.startswith("autograder") and target != name:
                found.add(target)
    return found


def graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    modules = python_files(root)
    return {name: imports_of(rel, modules, root) for name, rel in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def is_package_init(importer: str, imported: str, modules: dict[str, str]) -> bool:
    """A package's ``__init__`` importing its own submodules (to re-export them) is not a cycle
    with a submodule that imports a sibling through the package."""
    return modules.get(importer, "").endswith("__init__.py") and imported.startswith(importer + ".")


def test_the_import_graph_is_read_correctly():
    edges = graph()
    assert "autograder.schedules.actions" in edges["autograder.schedules.simulate"]
    assert "autograder.judge.sandbox" in edges["autograder.judge.trial"]
    assert "autograder.instructor.release" in edges["autograder.release"]  # the command's short name


def test_no_import_cycle_inside_autograder():
    modules = python_files()
    edges = {v: {w for w in ws if not is_package_init(v, w, modules)} for v, ws in graph().items()}
    assert cycles(edges) == []


@pytest.mark.parametrize("folder", layout.SANDBOX_FOLDERS)
def test_code_next_to_student_code_imports_nothing_from_the_judge_or_the_tools(folder):
    allowed = ("autograder.harness", "autograder.schedules", "autograder.practical")
    for name, imported in graph().items():
        if name.startswith(f"autograder.{folder}"):
            outside = sorted(m for m in imported if m != "autograder" and not m.startswith(allowed))
            assert outside == [], f"{name} imports {outside}"


@pytest.mark.parametrize("audience", layout.AUDIENCES)
def test_each_audience_receives_every_module_its_modules_import(audience):
    kept = {module_name(rel) for rel in layout.files_for(audience) if rel.endswith(".py")}
    edges = graph()
    for name in sorted(kept):
        missing = sorted(m for m in edges[name] if m not in kept)
        assert missing == [], f"{audience}: {name} imports {missing}, which {audience} does not receive"


def _copy_repository(dest: Path) -> Path:
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", "out", ".pytest_cache")
    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


def test_a_new_instructor_module_reaches_no_student_no_grader_no_sandbox(tmp_path):
    repo = _copy_repository(tmp_path / "repo")
    package = repo / "autograder"
    (package / "instructor" / "grade_curve.py").write_text('"""A TA-only tool."""\nSECRET_CURVE = [90, 80]\n')
    (package / "curve.py").write_text(
        '"""Its short command name."""\nfrom .instructor.grade_curve import SECRET_CURVE\n'
    )
    for audience in layout.AUDIENCES:
        files = layout.files_for(audience, package)
        assert "instructor/grade_curve.py" not in files and "curve.py" not in files, audience
    released = student_release.build_student_files(repo)
    assert not any("grade_curve" in path or path == "autograder/curve.py" for path in released)
    assert not any(b"SECRET_CURVE" in data for data in released.values())


MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60  # issue 12: small modules with one job


def test_modules_and_functions_stay_small():
    """No module of autograder/ over 400 lines, no function over 60 (docstrings included): past
    that, split by job (see how dist/result.py or instructor/bench_torch.py came about)."""
    big_modules, big_functions = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(ROOT).as_posix()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            big_modules.append(f"{name} ({len(text.splitlines())} lines)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    big_functions.append(f"{name}:{node.name} ({length} lines)")
    assert not big_modules and not big_functions, big_modules + big_functions

"""Who gets which part of ``autograder/``: derived from its folders, never from lists of file names.

The folders are the roles (see README, "Where things are"):

* ``schedules/``, ``harness/``: run next to student code. They are all that the sandbox copies
  (with ``__init__.py`` and the registry ``practical.py``), and they import nothing from the judge
  or the instructor's tools (``tests/unit/test_layout.py`` checks the import graph).
* ``instructor/``: the TAs' tools (release, reference schedules, benchmark). Never shipped: not to
  students, not into the grading image, not into the sandbox.
* ``hidden/``: the tests kept for grading. In the grading image, never in the student release.
* everything else (``judge/``, ``graded/``, ``gradescope/``, ``dist/``, ``student/``): the public
  autograder that students run locally and the grader runs for real.

A module elsewhere that imports the instructor's tools (a command's short name such as
``autograder/release.py``) goes wherever ``instructor/`` goes, so a new TA-only module cannot
ship by accident, whatever its name or folder.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path, PurePosixPath

PACKAGE_DIR = Path(__file__).resolve().parent
SANDBOX_FOLDERS = ("schedules", "harness")
SANDBOX_MODULES = ("__init__.py", "practical.py")
INSTRUCTOR_FOLDER = "instructor"
HIDDEN_FOLDER = "hidden"
IGNORED_DIRS = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints"}
IGNORED_SUFFIXES = {".pyc", ".pyo"}
AUDIENCES = ("sandbox", "students", "grader")


def all_files(root: Path = PACKAGE_DIR) -> list[str]:
    """Every file under ``root`` (posix paths relative to it), sorted, without caches."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_DIRS)
        for name in filenames:
            if PurePosixPath(name).suffix not in IGNORED_SUFFIXES:
                found.append((Path(dirpath) / name).relative_to(root).as_posix())
    return sorted(found)


def imports_instructor(path: Path) -> bool:
    """Whether a module imports ``autograder.instructor`` (or ``.instructor``) anywhere in it."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return True  # cannot tell: keep it with the instructor's tools
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            relative = node.level > 0 and (
                module.split(".")[0] == INSTRUCTOR_FOLDER or any(a.name == INSTRUCTOR_FOLDER for a in node.names)
            )
            if relative or module.split(".")[:2] == ["autograder", INSTRUCTOR_FOLDER]:
                return True
        elif isinstance(node, ast.Import) and any(
            a.name.startswith(f"autograder.{INSTRUCTOR_FOLDER}") for a in node.names
        ):
            return True
    return False


def files_for(audience: str, root: Path = PACKAGE_DIR) -> list[str]:
    """The files of ``autograder/`` (relative posix paths) that ``audience`` receives.

    ``"sandbox"``: what runs next to student code; ``"students"``: the public autograder of the
    student release; ``"grader"``: the grading image and the Gradescope upload (hidden tests
    included). None of them gets ``instructor/``.
    """
    if audience not in AUDIENCES:
        raise ValueError(f"audience must be one of {', '.join(AUDIENCES)}, got {audience!r}")
    chosen = []
    for rel in all_files(root):
        top = rel.split("/", 1)[0]
        if audience == "sandbox":
            keep = top in SANDBOX_FOLDERS or rel in SANDBOX_MODULES
        elif top == INSTRUCTOR_FOLDER or (audience == "students" and top == HIDDEN_FOLDER):
            keep = False
        elif rel.endswith(".py"):
            keep = not imports_instructor(root / rel)
        else:
            keep = True
        if keep:
            chosen.append(rel)
    return chosen


def prune(audience: str, root: Path = PACKAGE_DIR) -> list[str]:
    """Delete the files of ``root`` that ``audience`` does not receive (the grading image runs
    ``python -m autograder.layout grader``); returns what was removed."""
    keep = set(files_for(audience, root))
    removed = [rel for rel in all_files(root) if rel not in keep]
    for rel in removed:
        (root / rel).unlink()
    for dirpath, _dirnames, _filenames in sorted(os.walk(root), key=lambda entry: -len(entry[0])):
        if dirpath != str(root) and not os.listdir(dirpath):
            os.rmdir(dirpath)
    return removed


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2 or sys.argv[1] not in AUDIENCES:
        print(f"usage: python -m autograder.layout {{{','.join(AUDIENCES)}}}", file=sys.stderr)
        sys.exit(2)
    for rel in prune(sys.argv[1]):
        print(f"removed autograder/{rel}")

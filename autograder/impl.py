"""Finding the implementation to grade: ``assignment``, ``solutions`` or a submission directory.

A submission directory holds some or all of the student-editable files (``EDITABLE_FILES``); they
are laid over a pristine copy of the generated ``assignment/`` package in a fresh temporary
directory, under the package name ``submission``. Files not in the list are ignored, so a
submission cannot replace provided code, the model or the autograder.
"""
from __future__ import annotations

import hashlib
import importlib
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# The files students edit: the only files ever taken from a submission. tests/ checks that this
# list equals the files of solutions/ that contain task markers.
EDITABLE_FILES = ("partition.py", "microbatch.py", "schedules.py", "per_stage.py")
SUBMISSION_PACKAGE = "submission"


class ImplError(ValueError):
    """The implementation to grade cannot be found or laid out (one-line, actionable message)."""


@dataclass(frozen=True)
class Impl:
    """An importable implementation: package ``name`` found under directory ``root``."""

    name: str
    root: Path
    missing: tuple[str, ...] = ()  # editable files a submission did not include

    @property
    def package_dir(self) -> Path:
        return self.root / self.name

    def module(self, name: str):
        """Import ``<package>.<name>`` (``root`` is put first on ``sys.path`` once).

        A submission is imported as the package ``submission``; ``assignment`` is made an alias of
        it, so a student's absolute imports (``from assignment.microbatch import ...``, as IDEs write
        them) reach the submitted files, as they do in the student's own repository.
        """
        if str(self.root) not in sys.path:
            sys.path.insert(0, str(self.root))
        if self.name == SUBMISSION_PACKAGE:
            package = importlib.import_module(self.name)
            if sys.modules.get("assignment") is not package:
                for key in [k for k in sys.modules if k == "assignment" or k.startswith("assignment.")]:
                    del sys.modules[key]
                sys.modules["assignment"] = package
        return importlib.import_module(f"{self.name}.{name}")


def resolve(spec: str, workdir: Path | None = None) -> Impl:
    """``"assignment"`` / ``"solutions"`` (packages of this repository) or a path to a submission."""
    if spec in ("assignment", "solutions"):
        if not (REPO_ROOT / spec / "__init__.py").is_file():
            raise ImplError(f"package {spec}/ not found in {REPO_ROOT}")
        return Impl(spec, REPO_ROOT)
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise ImplError(f"--impl {spec}: not 'assignment', 'solutions' or an existing directory")
    return overlay(path, workdir)


def overlay(submission: Path, workdir: Path | None = None) -> Impl:
    """Lay a submission's editable files over a pristine copy of ``assignment/``.

    Looks for each editable file at the submission's top level or in an ``assignment/`` folder in
    it (students often upload the folder). Everything else in the submission is ignored.
    """
    pristine = REPO_ROOT / "assignment"
    if not (pristine / "__init__.py").is_file():
        raise ImplError(f"pristine package {pristine} not found: run python -m autograder.release")
    digest = hashlib.sha256(str(submission.resolve()).encode()).hexdigest()[:12]
    root = Path(workdir or tempfile.mkdtemp(prefix="pp-impl-")) / f"impl-{digest}"
    if root.exists():
        shutil.rmtree(root)
    target = root / SUBMISSION_PACKAGE
    shutil.copytree(pristine, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    missing = []
    for name in EDITABLE_FILES:
        found = find_submitted(submission, name)
        if found is None:
            missing.append(name)
            continue
        shutil.copyfile(found, target / name)
    return Impl(SUBMISSION_PACKAGE, root, tuple(missing))


def find_submitted(submission: Path, name: str) -> Path | None:
    """The submitted copy of an editable file, at the top level or under ``assignment/``."""
    for candidate in (submission / name, submission / "assignment" / name):
        if candidate.is_file() and not candidate.is_symlink():
            return candidate
    return None

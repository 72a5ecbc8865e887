"""The student package as files: generated in memory, compared, written, scanned for leaks.

:func:`build` turns the reference package (``solutions/``) into the student package
(``assignment/``) file by file. How each file is turned into its student version is chosen by
suffix in ``TRANSFORMS`` (:func:`~.skeleton.release_python` for ``.py``,
:func:`~.notebook.release_notebook` for ``.ipynb``); files whose suffix is not there are copied
unchanged, and ``__pycache__`` and ``*.pyc`` are skipped, so ``diff -r solutions assignment``
shows exactly the tasks.

:func:`check` and :func:`diff_trees` compare a generated package with one on disk,
:func:`write_release` makes a directory hold exactly the generated package, and
:func:`leaked_lines` finds solution lines in anything students receive.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from .notebook import release_notebook
from .skeleton import (
    Region,
    ReleaseError,
    SourceFile,
    Task,
    Transform,
    copy_unchanged,
    marker_error,
    release_python,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

IGNORED_DIRS = frozenset({"__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".mypy_cache"})
IGNORED_FILES = frozenset({".DS_Store"})
IGNORED_SUFFIXES = frozenset({".pyc", ".pyo"})

# Suffix (lowercase, with dot) -> transform. Suffixes not listed are copied unchanged.
# Notebooks: nbgrader's preprocessors (autograder.instructor.notebook imports nbgrader only when it runs).
TRANSFORMS: dict[str, Transform] = {".py": release_python, ".ipynb": release_notebook}


def transform_for(rel: str) -> Transform:
    return TRANSFORMS.get(PurePosixPath(rel).suffix.lower(), copy_unchanged)


# --------------------------------------------------------------------------- generating


def shown_path(path: Path) -> str:
    """How messages name a path: relative to the repository root or the cwd when inside them."""
    path = Path(os.path.abspath(path))
    for base in (REPO_ROOT, Path(os.path.abspath(os.curdir))):
        try:
            return path.relative_to(base).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def _ignored(name: str) -> bool:
    return name in IGNORED_FILES or PurePosixPath(name).suffix in IGNORED_SUFFIXES


def package_files(root: Path) -> list[str]:
    """Relative posix paths of the files under ``root``, sorted, without caches and ``*.pyc``."""
    root = Path(root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_DIRS)
        for name in filenames:
            if not _ignored(name):
                found.append((Path(dirpath) / name).relative_to(root).as_posix())
    return sorted(found)


def read_tree(root: Path) -> dict[str, bytes]:
    """The files of a directory as ``generate`` returns them; empty if it does not exist."""
    root = Path(root)
    if not root.is_dir():
        return {}
    return {rel: (root / rel).read_bytes() for rel in package_files(root)}


@dataclass(frozen=True)
class Release:
    """A generated student package: its files and the solution regions taken out of it."""

    files: dict[str, bytes]  # relative posix path -> content
    regions: tuple[Region, ...]

    @property
    def tasks(self) -> list[Task]:
        """The code tasks (skeleton stubs); a notebook's answers are regions, not tasks."""
        return [region.task for region in self.regions if region.path.endswith(".py")]


def build(src_dir: Path) -> Release:
    """Generate the student package from ``src_dir`` in memory; writes nothing."""
    src_dir = Path(src_dir)
    if not src_dir.is_dir():
        raise ReleaseError(f"{shown_path(src_dir)}: no such directory")
    package = Path(os.path.abspath(src_dir)).name
    files: dict[str, bytes] = {}
    regions: list[Region] = []
    public: list[str] = []
    first_use: dict[str, str] = {}
    for rel in package_files(src_dir):
        shown = shown_path(src_dir / rel)
        result = transform_for(rel)(SourceFile(rel, shown, (src_dir / rel).read_bytes(), package))
        for region in result.regions:
            if region.task_id in first_use:
                raise marker_error(
                    shown,
                    region.line,
                    f"duplicate task id {region.task_id} (already used at {first_use[region.task_id]})",
                )
            first_use[region.task_id] = f"{shown}:{region.line}"
        files[rel] = result.content
        regions.extend(result.regions)
        public.append(result.public_text)
    if not files:
        raise ReleaseError(f"{shown_path(src_dir)}: no files to release")

    public_text = "\n".join(public)
    regions = [
        replace(
            region,
            shared=frozenset(text for text in (line.strip() for line in region.lines) if text and text in public_text),
        )
        for region in regions
    ]
    return Release(files, tuple(regions))


def generate(src_dir: Path) -> dict[str, bytes]:
    """Relative posix path -> content of every file of the student package; writes nothing."""
    return build(src_dir).files


def find_tasks(src_dir: Path) -> list[Task]:
    """Every task of the source package, in file and line order."""
    return build(src_dir).tasks


def solution_regions(src_dir: Path) -> list[Region]:
    """Every solution region of the source package, with its exact lines."""
    return list(build(src_dir).regions)


# --------------------------------------------------------------------------- writing and checking


class Change(NamedTuple):
    action: str  # "wrote" or "deleted"
    path: str  # relative posix path inside the destination


def diff_trees(expected: dict[str, bytes], actual: dict[str, bytes]) -> list[tuple[str, str]]:
    """``(path, why)`` for every path that is ``missing``, ``extra`` or ``differs``, sorted."""
    found = []
    for rel in sorted(expected.keys() | actual.keys()):
        if rel not in actual:
            found.append((rel, "missing"))
        elif rel not in expected:
            found.append((rel, "extra"))
        elif expected[rel] != actual[rel]:
            found.append((rel, "differs"))
    return found


def check(src_dir: Path, dst_dir: Path) -> list[str]:
    """Relative paths where ``dst_dir`` is not what ``src_dir`` generates (empty: in sync)."""
    return [rel for rel, _ in diff_trees(generate(src_dir), read_tree(dst_dir))]


def _refuse_unsafe_destination(src_dir: Path, dst_dir: Path) -> None:
    src, dst = Path(src_dir).resolve(), Path(dst_dir).resolve()
    if src == dst or src in dst.parents or dst in src.parents:
        raise ReleaseError(f"refusing to write {shown_path(dst_dir)}: it overlaps the source {shown_path(src_dir)}")
    if (dst / ".git").exists():
        raise ReleaseError(
            f"refusing to write {shown_path(dst_dir)}: it holds .git, so it is a repository, not a package directory"
        )
    if dst.exists() and not dst.is_dir():
        raise ReleaseError(f"refusing to write {shown_path(dst_dir)}: it is a file, not a directory")


def _remove_empty_dirs(root: Path) -> None:
    for dirpath, _dirnames, _filenames in os.walk(root, topdown=False):
        path = Path(dirpath)
        if path != root and not any(path.iterdir()):
            path.rmdir()


def write_release(src_dir: Path, dst_dir: Path) -> list[Change]:
    """Make ``dst_dir`` hold exactly the generated package; returns what changed.

    Writes only files whose content differs, deletes files that are not generated, removes
    directories left empty; ``__pycache__`` and ``*.pyc`` in ``dst_dir`` are left alone.
    Nothing is written when generation fails.
    """
    return write_files(generate(src_dir), Path(src_dir), Path(dst_dir))


def write_files(files: dict[str, bytes], src_dir: Path, dst_dir: Path) -> list[Change]:
    """Make ``dst_dir`` hold exactly ``files`` (generated from ``src_dir``), as :func:`write_release` says."""
    _refuse_unsafe_destination(src_dir, dst_dir)
    changes: list[Change] = []
    for rel in package_files(dst_dir) if dst_dir.is_dir() else []:
        if rel not in files:
            (dst_dir / rel).unlink()
            changes.append(Change("deleted", rel))
    if dst_dir.is_dir():
        _remove_empty_dirs(dst_dir)

    root = dst_dir.resolve()
    for rel, content in files.items():
        target = dst_dir / rel
        if target.is_symlink():
            target.unlink()  # never write through a link (it may point into the sources)
        elif target.is_file() and target.read_bytes() == content:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if root not in target.parent.resolve().parents and target.parent.resolve() != root:
            raise ReleaseError(f"refusing to write {shown_path(target)}: it leads outside {shown_path(dst_dir)}")
        target.write_bytes(content)
        changes.append(Change("wrote", rel))
    return changes


# --------------------------------------------------------------------------- leak scanning


def leaked_lines(generated: dict[str, bytes], regions: list[Region], min_len: int = 20) -> list[str]:
    """Solution lines found in a release: ``"path:line: <task id> solution line: <text>"``.

    ``generated`` maps relative paths to contents (``generate``, ``read_tree`` or any
    bundle); ``regions`` come from ``solution_regions(src)``. A solution line counts when,
    stripped, it is at least ``min_len`` characters, is not a comment or docstring-quote
    line, and does not also occur in the unmarked parts of the source. It is found anywhere
    inside a line, so code quoted in a notebook's JSON is found too.
    """
    owners: dict[str, list[str]] = {}  # secret line -> the tasks whose solutions contain it
    for region in regions:
        for text in region.secret_lines(min_len):
            tasks = owners.setdefault(text, [])
            if region.task_id not in tasks:
                tasks.append(region.task_id)
    secrets = {text: ", ".join(tasks) for text, tasks in owners.items()}
    found = []
    for rel in sorted(generated):
        text = generated[rel].decode("utf-8", errors="replace")
        present = [secret for secret in secrets if secret in text]
        if not present:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            for secret in present:
                if secret in line:
                    found.append(f"{rel}:{number}: {secrets[secret]} solution line: {secret}")
    return found

"""Generate the student package ``assignment/`` from the reference package ``solutions/``: the command line.

``solutions/`` is the one source of the practical. Every student task sits between nbgrader's
markers, and the release replaces each region by one ``raise NotImplementedError`` line
(:mod:`.skeleton`, which also holds the records and errors of the release); everything else is
copied byte for byte, so ``diff -r solutions assignment`` shows exactly the tasks.
:mod:`.package` generates, compares, writes and scans the package; this module is the command
and re-exports the release's public names (``generate``, ``check``, ``leaked_lines``, ...).

Command line (the default paths are relative to the repository root, not the cwd)::

    python -m autograder.release               # regenerate assignment/ from solutions/
    python -m autograder.release --check       # exit 1 if assignment/ is out of date
    python -m autograder.release --list-tasks  # task ids, where they are, hints
    python -m autograder.release --student-repo DIR   # the whole student repository (see student_release)

Exit status: 0 done / in sync, 1 out of sync (``--check``), 2 error (one ``error:`` line).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from . import student_release
from .package import (
    REPO_ROOT,
    Release,
    build,
    check,
    diff_trees,
    find_tasks,
    generate,
    leaked_lines,
    read_tree,
    shown_path,
    solution_regions,
    write_files,
    write_release,
)
from .skeleton import BEGIN, END, MarkerError, Region, ReleaseError, SourceFile, Task

__all__ = [  # the release's public names, importable from here as before the split
    "REPO_ROOT",
    "MarkerError",
    "Region",
    "ReleaseError",
    "SourceFile",
    "Task",
    "build_parser",
    "check",
    "find_tasks",
    "generate",
    "leaked_lines",
    "main",
    "read_tree",
    "solution_regions",
    "write_release",
]

DEFAULT_SRC = REPO_ROOT / "solutions"
DEFAULT_DST = REPO_ROOT / "assignment"
REGENERATE = "python -m autograder.release"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=REGENERATE,
        description="Generate the student package from the reference package: every "
        f"'{BEGIN} ... {END}' region becomes one 'raise NotImplementedError' line.",
    )
    parser.add_argument(
        "--src",
        type=Path,
        default=DEFAULT_SRC,
        help="reference package (default: solutions/ in the repository root)",
    )
    parser.add_argument(
        "--dst",
        type=Path,
        default=DEFAULT_DST,
        help="student package to write (default: assignment/ in the repository root)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the student package is out of sync with the reference",
    )
    mode.add_argument(
        "--list-tasks",
        action="store_true",
        help="print every task: id, source location, hint",
    )
    mode.add_argument(
        "--student-repo",
        type=Path,
        metavar="DIR",
        help="write the whole student repository to DIR, after proving the solutions score full "
        "marks; then check the skeleton scores zero there",
    )
    return parser


def _regenerate_command(args: argparse.Namespace) -> str:
    words = [REGENERATE]
    if args.src != DEFAULT_SRC:
        words.append(f"--src {shlex.quote(str(args.src))}")
    if args.dst != DEFAULT_DST:
        words.append(f"--dst {shlex.quote(str(args.dst))}")
    return " ".join(words)


def _answers(release: Release) -> str:
    answers = len(release.regions) - len(release.tasks)  # notebook answer regions
    return f", {answers} notebook answers" if answers else ""


def release_command(args: argparse.Namespace) -> int:
    release = build(args.src)
    changes = write_files(release.files, args.src, args.dst)
    dst = shown_path(args.dst)
    for change in changes:
        print(f"{change.action} {dst}/{change.path}")
    print(
        f"{dst}/ regenerated from {shown_path(args.src)}/: "
        f"{len(release.files)} files, {len(release.tasks)} tasks{_answers(release)}"
    )
    return 0


def check_command(args: argparse.Namespace) -> int:
    release = build(args.src)
    src, dst = shown_path(args.src), shown_path(args.dst)
    differences = diff_trees(release.files, read_tree(args.dst))
    if not differences:
        print(f"{dst}/ is in sync with {src}/ ({len(release.tasks)} tasks{_answers(release)})")
        return 0
    for rel, why in differences:
        print(f"{dst}/ is out of sync with {src}/: {rel} ({why})")
    print(f"run: {_regenerate_command(args)}")
    return 1


def list_tasks_command(args: argparse.Namespace) -> int:
    src = shown_path(args.src)
    tasks = find_tasks(args.src)
    rows = [(task.task_id, f"{src}/{task.path}:{task.line}", task.hint) for task in tasks]
    id_width = max((len(row[0]) for row in rows), default=0)
    where_width = max((len(row[1]) for row in rows), default=0)
    for task_id, where, hint in rows:
        print(f"{task_id.ljust(id_width)}  {where.ljust(where_width)}  {hint}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.list_tasks:
            return list_tasks_command(args)
        if args.check:
            return check_command(args)
        if args.student_repo:
            for line in student_release.student_release(args.student_repo):
                print(line)
            return 0
        return release_command(args)
    except (ReleaseError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # ReleaseError lives in .skeleton, so even run as __main__ this module catches the class the others raise.
    sys.exit(main())

"""Generate the student package ``assignment/`` from the reference package ``solutions/``.

``solutions/`` is the one source of the practical. Every student task in a ``.py`` file sits
between nbgrader's markers; the BEGIN marker names the task and gives students a one-line hint::

    def gpipe_step(stages, inputs, targets, loss_fn, num_microbatches):
        \"\"\"Docstring kept.\"\"\"
        ### BEGIN SOLUTION  part2.gpipe_step: run every forward, then every backward
        ...reference code...
        ### END SOLUTION

The release replaces each region, both marker lines included, by one line at the BEGIN
marker's indentation::

        raise NotImplementedError("part2.gpipe_step: run every forward, then every backward")

Everything else is copied byte for byte (``__pycache__`` and ``*.pyc`` are skipped), so
``diff -r solutions assignment`` shows exactly the tasks. Every generated ``.py`` file must
compile, and none may import the source package by name (``from solutions.x import y``
would hand students the reference).

How each file is turned into its student version is chosen by suffix in ``TRANSFORMS``;
files whose suffix is not there are copied unchanged. A transform takes a ``SourceFile`` and
returns a ``FileRelease`` (content, solution regions, text students see anyway).

Command line (the default paths are relative to the repository root, not the cwd)::

    python -m autograder.release               # regenerate assignment/ from solutions/
    python -m autograder.release --check       # exit 1 if assignment/ is out of date
    python -m autograder.release --list-tasks  # task ids, where they are, hints
    python -m autograder.release --student-repo DIR   # the whole student repository (see student_release)

Exit status: 0 done / in sync, 1 out of sync (``--check``), 2 error (one ``error:`` line).
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import re
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import NamedTuple

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SRC = REPO_ROOT / "solutions"
DEFAULT_DST = REPO_ROOT / "assignment"
REGENERATE = "python -m autograder.release"

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
TASK_ID = r"[a-z0-9_]+(?:\.[a-z0-9_]+)+"
_BEGIN_ARGUMENTS = re.compile(rf"(?P<task_id>{TASK_ID})\s*:\s*(?P<hint>\S.*?)\s*")
# A comment that mentions BEGIN/END SOLUTION but is not a well-formed marker is almost
# always a typo (``## BEGIN SOLUTION``, ``### End Solution``) that would leak a solution.
_LOOKS_LIKE_MARKER = re.compile(r"#.*\b(?:BEGIN|END)[\s_]*SOLUTION", re.IGNORECASE)
_BEGIN_EXAMPLE = "### BEGIN SOLUTION part2.gpipe_step: <one-line hint for students>"

IGNORED_DIRS = frozenset({"__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".mypy_cache"})
IGNORED_FILES = frozenset({".DS_Store"})
IGNORED_SUFFIXES = frozenset({".pyc", ".pyo"})


# --------------------------------------------------------------------------- errors and records


class ReleaseError(ValueError):
    """The release cannot be generated or written; the message says where and why."""


class MarkerError(ReleaseError):
    """A solution marker is malformed or misplaced, or the skeleton it leaves does not compile.

    The message reads ``path:line: what is wrong``.
    """


def _marker_error(shown: str, line: int, problem: str) -> MarkerError:
    return MarkerError(f"{shown}:{line}: {problem}")


class Task(NamedTuple):
    """One student task: what the autograder lists and what the skeleton's raise says."""

    task_id: str  # e.g. "part2.gpipe_step"
    hint: str  # one line, shown to students
    path: str  # posix path relative to the package root, e.g. "parallel.py"
    line: int  # 1-based line of the BEGIN marker in the source file

    @property
    def message(self) -> str:
        """The NotImplementedError message of the skeleton: ``"task_id: hint"``."""
        return f"{self.task_id}: {self.hint}"


@dataclass(frozen=True)
class Region:
    """The reference code of one task, exactly as it stands between its markers."""

    task_id: str
    hint: str
    path: str  # posix path relative to the package root
    line: int  # 1-based line of the BEGIN marker
    end_line: int  # 1-based line of the END marker
    indent: str  # the BEGIN marker's leading whitespace
    lines: tuple[str, ...]  # the lines strictly between the markers, without line endings
    # Stripped lines of this region that also occur in the unmarked text of the source
    # package: students see them anyway, so finding them in a release is no leak.
    shared: frozenset[str] = frozenset()

    @property
    def task(self) -> Task:
        return Task(self.task_id, self.hint, self.path, self.line)

    def secret_lines(self, min_len: int = 20) -> list[str]:
        """Stripped lines that would give the solution away if a release contained them.

        Leaves out lines shorter than ``min_len``, comments, docstring-quote lines and
        lines shared with unmarked code.
        """
        secrets = []
        for line in self.lines:
            text = line.strip()
            if len(text) < min_len or text.startswith("#") or text in self.shared:
                continue
            if _is_docstring_quote_line(text):
                continue
            secrets.append(text)
        return secrets


def _is_docstring_quote_line(text: str) -> bool:
    body = text.lstrip("rRbBuUfF")
    return body.startswith(('"""', "'''")) or text.endswith(('"""', "'''"))


class SourceFile(NamedTuple):
    """One file of the source package, as handed to a transform."""

    rel: str  # posix path relative to the package root
    shown: str  # how messages name the file, e.g. "solutions/parallel.py"
    data: bytes
    package: str  # import name of the source package, e.g. "solutions"


class FileRelease(NamedTuple):
    """What a transform makes of one source file."""

    content: bytes  # the student version
    regions: tuple[Region, ...] = ()
    public_text: str = ""  # source text students see anyway (everything outside regions)


Transform = Callable[[SourceFile], FileRelease]


# --------------------------------------------------------------------------- transforms


def copy_unchanged(source: SourceFile) -> FileRelease:
    """Files without solution regions (data, configs, ...) are copied byte for byte."""
    try:
        public_text = source.data.decode("utf-8")
    except UnicodeDecodeError:
        public_text = ""
    return FileRelease(source.data, (), public_text)


def skeleton_line(indent: str, task_id: str, hint: str) -> str:
    """The line that replaces a region, without line ending.

    ``json.dumps`` escapes quotes, backslashes and control characters the way a Python
    string literal reads them back.
    """
    literal = json.dumps(f"{task_id}: {hint}", ensure_ascii=False)
    return f"{indent}raise NotImplementedError({literal})"


def _split_ending(line: str) -> tuple[str, str]:
    body = line.rstrip("\r\n")
    return body, line[len(body) :]


def release_python(source: SourceFile) -> FileRelease:
    """Replace every marked region of a Python file by a ``raise NotImplementedError`` line."""
    shown = source.shown
    try:
        text = source.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReleaseError(f"{shown}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None

    out: list[str] = []
    origin: list[int] = []  # source line of each output line, to report compile errors
    public: list[str] = []
    regions: list[Region] = []
    opened: tuple[int, str, str, str] | None = None  # (line, indent, task id, hint)
    body: list[str] = []

    # Python's own line splitting: \n, \r\n and \r end lines, \f and \x1c do not.
    for number, line in enumerate(io.StringIO(text, newline="").readlines(), start=1):
        content, ending = _split_ending(line)
        stripped = content.strip()
        indent = content[: len(content) - len(content.lstrip())]

        if stripped.startswith(BEGIN):
            if opened is not None:
                raise _marker_error(
                    shown,
                    number,
                    f"nested {BEGIN}: the region of {opened[2]} opened at line {opened[0]} "
                    f"is not closed yet (add {END} before this line)",
                )
            after = stripped[len(BEGIN) :]
            match = _BEGIN_ARGUMENTS.fullmatch(after.lstrip()) if after[:1].isspace() else None
            if match is None:
                raise _marker_error(
                    shown,
                    number,
                    f"{BEGIN} needs a task id and a hint, like '{_BEGIN_EXAMPLE}' "
                    f"(task ids are lowercase, dotted: part1.split_microbatches); got {stripped!r}",
                )
            opened = (number, indent, match["task_id"], match["hint"])
            body = []
        elif stripped.startswith(END):
            if stripped != END:
                raise _marker_error(shown, number, f"unexpected text after {END}: {stripped!r}")
            if opened is None:
                raise _marker_error(shown, number, f"{END} without a {BEGIN} before it")
            begin_line, begin_indent, task_id, hint = opened
            if indent != begin_indent:
                raise _marker_error(
                    shown,
                    number,
                    f"{END} is indented by {indent!r} but its {BEGIN} (line {begin_line}) by "
                    f"{begin_indent!r}; the two markers must line up",
                )
            regions.append(Region(task_id, hint, source.rel, begin_line, number, indent, tuple(body)))
            out.append(skeleton_line(indent, task_id, hint) + ending)
            origin.append(begin_line)
            opened = None
        elif _LOOKS_LIKE_MARKER.match(stripped):
            raise _marker_error(
                shown,
                number,
                f"looks like a solution marker but is not one: {stripped!r}; "
                f"write exactly '{_BEGIN_EXAMPLE}' and '{END}'",
            )
        elif opened is not None:
            body.append(content)
        else:
            out.append(line)
            origin.append(number)
            public.append(content)

    if opened is not None:
        raise _marker_error(shown, opened[0], f"{BEGIN} for {opened[2]} is never closed by {END}")

    content = "".join(out).encode("utf-8")
    _check_compiles(source, content, origin, bool(regions))
    return FileRelease(content, tuple(regions), "\n".join(public))


def _check_compiles(source: SourceFile, content: bytes, origin: list[int], had_regions: bool) -> None:
    """The generated file must compile and must not import the source package by name."""

    def source_line(generated_line: int | None) -> int:
        if generated_line is not None and 1 <= generated_line <= len(origin):
            return origin[generated_line - 1]
        return generated_line or 1

    what = "the skeleton left after removing the solution regions" if had_regions else "this file"
    try:
        compile(content, source.shown, "exec", dont_inherit=True)
        tree = ast.parse(content, source.shown)
    except SyntaxError as exc:
        raise _marker_error(
            source.shown,
            source_line(exc.lineno),
            f"{what} does not compile: {exc.msg} (generated line {exc.lineno})",
        ) from None
    except ValueError as exc:  # e.g. null bytes
        raise _marker_error(source.shown, 1, f"{what} does not compile: {exc}") from None

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        if any(name == source.package or name.startswith(source.package + ".") for name in names):
            raise ReleaseError(
                f"{source.shown}:{source_line(node.lineno)}: imports the {source.package!r} "
                "package by name, so the student package would import the reference; "
                "use a relative import (from .module import name)"
            )


# Suffix (lowercase, with dot) -> transform. Suffixes not listed are copied unchanged.
# Notebooks: nbgrader's preprocessors (autograder.notebook imports nbgrader only when it runs).
from .notebook import release_notebook  # noqa: E402

TRANSFORMS: dict[str, Transform] = {".py": release_python, ".ipynb": release_notebook}


def transform_for(rel: str) -> Transform:
    return TRANSFORMS.get(PurePosixPath(rel).suffix.lower(), copy_unchanged)


# --------------------------------------------------------------------------- generating


def _shown(path: Path) -> str:
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
        raise ReleaseError(f"{_shown(src_dir)}: no such directory")
    package = Path(os.path.abspath(src_dir)).name
    files: dict[str, bytes] = {}
    regions: list[Region] = []
    public: list[str] = []
    first_use: dict[str, str] = {}
    for rel in package_files(src_dir):
        shown = _shown(src_dir / rel)
        result = transform_for(rel)(SourceFile(rel, shown, (src_dir / rel).read_bytes(), package))
        for region in result.regions:
            if region.task_id in first_use:
                raise _marker_error(
                    shown,
                    region.line,
                    f"duplicate task id {region.task_id} (already used at {first_use[region.task_id]})",
                )
            first_use[region.task_id] = f"{shown}:{region.line}"
        files[rel] = result.content
        regions.extend(result.regions)
        public.append(result.public_text)
    if not files:
        raise ReleaseError(f"{_shown(src_dir)}: no files to release")

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
        raise ReleaseError(f"refusing to write {_shown(dst_dir)}: it overlaps the source {_shown(src_dir)}")
    if (dst / ".git").exists():
        raise ReleaseError(
            f"refusing to write {_shown(dst_dir)}: it holds .git, so it is a repository, not a package directory"
        )
    if dst.exists() and not dst.is_dir():
        raise ReleaseError(f"refusing to write {_shown(dst_dir)}: it is a file, not a directory")


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
    return _write_files(generate(src_dir), Path(src_dir), Path(dst_dir))


def _write_files(files: dict[str, bytes], src_dir: Path, dst_dir: Path) -> list[Change]:
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
            raise ReleaseError(f"refusing to write {_shown(target)}: it leads outside {_shown(dst_dir)}")
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


# --------------------------------------------------------------------------- command line


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
    changes = _write_files(release.files, args.src, args.dst)
    dst = _shown(args.dst)
    for change in changes:
        print(f"{change.action} {dst}/{change.path}")
    print(
        f"{dst}/ regenerated from {_shown(args.src)}/: "
        f"{len(release.files)} files, {len(release.tasks)} tasks{_answers(release)}"
    )
    return 0


def check_command(args: argparse.Namespace) -> int:
    release = build(args.src)
    src, dst = _shown(args.src), _shown(args.dst)
    differences = diff_trees(release.files, read_tree(args.dst))
    if not differences:
        print(f"{dst}/ is in sync with {src}/ ({len(release.tasks)} tasks{_answers(release)})")
        return 0
    for rel, why in differences:
        print(f"{dst}/ is out of sync with {src}/: {rel} ({why})")
    print(f"run: {_regenerate_command(args)}")
    return 1


def list_tasks_command(args: argparse.Namespace) -> int:
    src = _shown(args.src)
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
            from .student_release import student_release

            for line in student_release(args.student_repo):
                print(line)
            return 0
        return release_command(args)
    except (ReleaseError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # Import ourselves by name: run as __main__, this file is a second copy of the module, whose
    # ReleaseError would not be the one student_release.py and notebook.py raise.
    from autograder.instructor.release import main as _main

    sys.exit(_main())

"""Solution markers in Python sources, and the records every release transform shares.

Every student task in a ``.py`` file of ``solutions/`` sits between nbgrader's markers; the BEGIN
marker names the task and gives students a one-line hint::

    def gpipe_step(stages, inputs, targets, loss_fn, num_microbatches):
        \"\"\"Docstring kept.\"\"\"
        ### BEGIN SOLUTION  part2.gpipe_step: run every forward, then every backward
        ...reference code...
        ### END SOLUTION

:func:`release_python` replaces each region, both marker lines included, by one line at the BEGIN
marker's indentation::

        raise NotImplementedError("part2.gpipe_step: run every forward, then every backward")

and keeps every other line byte for byte. The generated file must compile, and must not import
the source package by name (``from solutions.x import y`` would hand students the reference).

The records: a transform takes a :class:`SourceFile` and returns a :class:`FileRelease` (content,
solution :class:`Region` s, text students see anyway); :class:`ReleaseError` and
:class:`MarkerError` are what every step of the release raises. :mod:`.package` picks the
transform of each file; :mod:`.notebook` is the one for notebooks.
"""

from __future__ import annotations

import ast
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
TASK_ID = r"[a-z0-9_]+(?:\.[a-z0-9_]+)+"
_BEGIN_ARGUMENTS = re.compile(rf"(?P<task_id>{TASK_ID})\s*:\s*(?P<hint>\S.*?)\s*")
# A comment that mentions BEGIN/END SOLUTION but is not a well-formed marker is almost
# always a typo (``## BEGIN SOLUTION``, ``### End Solution``) that would leak a solution.
_LOOKS_LIKE_MARKER = re.compile(r"#.*\b(?:BEGIN|END)[\s_]*SOLUTION", re.IGNORECASE)
_BEGIN_EXAMPLE = "### BEGIN SOLUTION part2.gpipe_step: <one-line hint for students>"


# --------------------------------------------------------------------------- errors and records


class ReleaseError(ValueError):
    """The release cannot be generated or written; the message says where and why."""


class MarkerError(ReleaseError):
    """A solution marker is malformed or misplaced, or the skeleton it leaves does not compile.

    The message reads ``path:line: what is wrong``.
    """


def marker_error(shown: str, line: int, problem: str) -> MarkerError:
    """A :class:`MarkerError` reading ``shown:line: problem``."""
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


class _Opened(NamedTuple):
    """A BEGIN marker whose END has not been read yet."""

    line: int
    indent: str
    task_id: str
    hint: str


def _open_region(shown: str, number: int, stripped: str, indent: str, opened: _Opened | None) -> _Opened:
    """The region a BEGIN marker line opens; raises if one is still open or the marker is malformed."""
    if opened is not None:
        raise marker_error(
            shown,
            number,
            f"nested {BEGIN}: the region of {opened.task_id} opened at line {opened.line} "
            f"is not closed yet (add {END} before this line)",
        )
    after = stripped[len(BEGIN) :]
    match = _BEGIN_ARGUMENTS.fullmatch(after.lstrip()) if after[:1].isspace() else None
    if match is None:
        raise marker_error(
            shown,
            number,
            f"{BEGIN} needs a task id and a hint, like '{_BEGIN_EXAMPLE}' "
            f"(task ids are lowercase, dotted: part1.split_microbatches); got {stripped!r}",
        )
    return _Opened(number, indent, match["task_id"], match["hint"])


def _close_region(
    source: SourceFile, number: int, stripped: str, indent: str, opened: _Opened | None, body: list[str]
) -> Region:
    """The region an END marker line closes; raises if the marker is malformed or unmatched."""
    shown = source.shown
    if stripped != END:
        raise marker_error(shown, number, f"unexpected text after {END}: {stripped!r}")
    if opened is None:
        raise marker_error(shown, number, f"{END} without a {BEGIN} before it")
    if indent != opened.indent:
        raise marker_error(
            shown,
            number,
            f"{END} is indented by {indent!r} but its {BEGIN} (line {opened.line}) by "
            f"{opened.indent!r}; the two markers must line up",
        )
    return Region(opened.task_id, opened.hint, source.rel, opened.line, number, indent, tuple(body))


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
    opened: _Opened | None = None
    body: list[str] = []

    # Python's own line splitting: \n, \r\n and \r end lines, \f and \x1c do not.
    for number, line in enumerate(io.StringIO(text, newline="").readlines(), start=1):
        content, ending = _split_ending(line)
        stripped = content.strip()
        indent = content[: len(content) - len(content.lstrip())]

        if stripped.startswith(BEGIN):
            opened = _open_region(shown, number, stripped, indent, opened)
            body = []
        elif stripped.startswith(END):
            region = _close_region(source, number, stripped, indent, opened, body)
            regions.append(region)
            out.append(skeleton_line(indent, region.task_id, region.hint) + ending)
            origin.append(region.line)
            opened = None
        elif _LOOKS_LIKE_MARKER.match(stripped):
            raise marker_error(
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
        raise marker_error(shown, opened.line, f"{BEGIN} for {opened.task_id} is never closed by {END}")

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
        raise marker_error(
            source.shown,
            source_line(exc.lineno),
            f"{what} does not compile: {exc.msg} (generated line {exc.lineno})",
        ) from None
    except ValueError as exc:  # e.g. null bytes
        raise marker_error(source.shown, 1, f"{what} does not compile: {exc}") from None

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

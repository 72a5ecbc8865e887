"""The release transform of notebooks: ``solutions/practical9.ipynb`` -> ``assignment/practical9.ipynb``.

``solutions/`` holds the nbgrader *source* notebook: every answer cell carries nbgrader metadata
(``grade``, ``solution``, ``locked``, ``points``, ``grade_id``) and its reference answer between
``### BEGIN SOLUTION`` and ``### END SOLUTION``, in markdown cells (written answers) as in code
cells (autograded answers, each followed by a locked test cell). :func:`release_notebook` makes
the student version with nbgrader's own preprocessors, in the order ``nbgrader generate_assignment``
runs them:

    LockCells, ClearSolutions, ClearOutput, CheckCellMetadata, ComputeChecksums,
    ClearHiddenTests, ClearMarkScheme, ComputeChecksums, CheckCellMetadata

leaving out the three that need an nbgrader course directory: ``IncludeHeaderFooter`` (no header),
``InstantiateTests`` (no ``AUTOTEST`` directives here) and ``SaveCells`` (the gradebook database).
So a TA who grades with nbgrader's own pipeline can put ``solutions/practical9.ipynb`` into
``source/practical9/`` of a course directory and run ``nbgrader generate_assignment practical9``:
it releases the same cells, ids, points and checksums (``tests/test_notebook.py`` compares them).

nbgrader is TA tooling (the ``ta`` extra), never something students install: it is imported only
when a notebook is released, and a missing nbgrader is one line telling the TA what to install.
The output is deterministic (same bytes on every run), so ``python -m autograder.release --check``
works. Every reference answer is returned as a :class:`~autograder.instructor.skeleton.Region` (task id
``notebook.<grade_id>``), so the release's leak scan looks for its lines everywhere students get.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..harness.errors import first_line
from .skeleton import FileRelease, MarkerError, Region, ReleaseError

NOTEBOOK_TASK_PREFIX = "notebook."
BEGIN_DELIMITER = "BEGIN SOLUTION"  # nbgrader's ClearSolutions delimiters (substring of a line)
END_DELIMITER = "END SOLUTION"
_LOOKS_LIKE_MARKER = re.compile(r"\b(?:BEGIN|END)[\s_]*SOLUTION\b", re.IGNORECASE)
INSTALL_HINT = 'pip install -e ".[ta]"'


def _nbgrader(shown: str = "a notebook"):
    """nbformat and nbgrader's preprocessors, imported only now (they belong to the TA extra)."""
    try:
        import nbformat
        from nbgrader.preprocessors import (
            CheckCellMetadata,
            ClearHiddenTests,
            ClearMarkScheme,
            ClearOutput,
            ClearSolutions,
            ComputeChecksums,
            LockCells,
        )
    except ImportError as exc:
        raise ReleaseError(
            f"{shown}: releasing it needs nbgrader, the TA extra ({exc.name or 'nbgrader'} is missing): "
            f"run {INSTALL_HINT}"
        ) from None
    pipeline = (
        LockCells,
        ClearSolutions,
        ClearOutput,
        CheckCellMetadata,
        ComputeChecksums,
        ClearHiddenTests,
        ClearMarkScheme,
        ComputeChecksums,
        CheckCellMetadata,
    )
    return nbformat, pipeline


def _source(cell: Any) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _nbgrader_meta(cell: Any) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def _split_answer(text: str) -> tuple[list[list[str]], list[str]]:
    """The solution regions of one cell's source (lines strictly between the markers) and the
    lines outside them."""
    regions: list[list[str]] = []
    outside: list[str] = []
    current: list[str] | None = None
    for line in text.split("\n"):
        if BEGIN_DELIMITER in line:
            current = []
        elif END_DELIMITER in line and current is not None:
            regions.append(current)
            current = None
        elif current is not None:
            current.append(line)
        else:
            outside.append(line)
    return regions, outside


def _marker_lines(data: str) -> list[int]:
    """1-based line numbers of the notebook file's JSON lines holding a BEGIN marker, in order."""
    return [n for n, line in enumerate(data.splitlines(), start=1) if BEGIN_DELIMITER in line]


def answer_regions(source, nb) -> tuple[list, list[str]]:
    """``(regions, public lines)`` of a source notebook: one Region per solution region (a solution
    cell without markers is one region, the whole cell, as nbgrader replaces it whole)."""
    begin_lines = _marker_lines(source.data.decode("utf-8"))
    regions, public = [], []
    found = 0
    for index, cell in enumerate(nb.cells):
        text = _source(cell)
        meta = _nbgrader_meta(cell)
        cell_regions, outside = _split_answer(text)
        if meta.get("solution") and not cell_regions:
            cell_regions, outside = [text.split("\n")], []
        public.extend(outside)
        for lines in cell_regions:
            line = begin_lines[found] if found < len(begin_lines) else 1
            found += 1
            grade_id = meta.get("grade_id") or f"cell{index}"
            kind = "written answer" if cell.get("cell_type") == "markdown" else "code answer"
            regions.append(
                Region(
                    task_id=f"{NOTEBOOK_TASK_PREFIX}{grade_id}",
                    hint=f"{kind} in cell {index} ({grade_id})",
                    path=source.rel,
                    line=line,
                    end_line=line + len(lines) + 1,  # one JSON line per source line
                    indent="",
                    lines=tuple(lines),
                )
            )
    return regions, public


def _check_markers(source, nb) -> None:
    """A line that looks like a solution marker but is not nbgrader's would leak its answer."""
    for index, cell in enumerate(nb.cells):
        for line in _source(cell).split("\n"):
            if _LOOKS_LIKE_MARKER.search(line) and BEGIN_DELIMITER not in line and END_DELIMITER not in line:
                raise MarkerError(
                    f"{source.shown}: cell {index}: looks like a solution marker but is not one: "
                    f"{line.strip()!r}; write exactly '### {BEGIN_DELIMITER}' and '### {END_DELIMITER}'"
                )


def clear_notebook(nb):
    """Run nbgrader's generate_assignment preprocessors on ``nb`` (a NotebookNode); returns it."""
    _, pipeline = _nbgrader()
    resources: dict[str, Any] = {}
    for preprocessor in pipeline:
        nb, resources = preprocessor().preprocess(nb, resources)
    return nb


def release_notebook(source):
    """The release transform of ``.ipynb`` files (see ``autograder.instructor.package.TRANSFORMS``).

    Returns a FileRelease: the student notebook (answers cleared, outputs cleared, grade and
    read-only cells locked, checksums computed), the reference answers as regions, and the text
    outside them (students see it anyway). Raises ReleaseError naming the file when the notebook
    is not valid JSON / nbformat / nbgrader metadata, or an answer would survive the release.
    """
    nbformat, _ = _nbgrader(source.shown)
    try:
        text = source.data.decode("utf-8")
        raw = json.loads(text)
    except ValueError as exc:
        raise ReleaseError(f"{source.shown}: not a readable notebook: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list):
        raise ReleaseError(f"{source.shown}: not a notebook (no list of cells)")
    ids = [cell.get("id") if isinstance(cell, dict) else None for cell in raw["cells"]]
    missing = [i for i, cell_id in enumerate(ids) if cell_id is None]
    repeated = [i for i, cell_id in enumerate(ids) if cell_id is not None and ids.index(cell_id) != i]
    if missing or repeated:  # nbformat would make up random ids: the release would differ on every run
        index = min(missing + repeated)
        raise ReleaseError(
            f"{source.shown}: cell {index} has {'no id' if index in missing else 'a repeated id'}; "
            "every cell needs its own id (nbformat 4.5): save the notebook with a current Jupyter"
        )
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as exc:  # nbformat validation: one line naming the file
        raise ReleaseError(f"{source.shown}: not a valid notebook: {str(exc).splitlines()[0]}") from None
    _check_markers(source, nb)
    regions, public = answer_regions(source, nb)
    try:
        student = clear_notebook(nbformat.from_dict(nb))
    except Exception as exc:  # nbgrader: RuntimeError / ValidationError with one-line messages
        first = first_line(exc) or type(exc).__name__
        raise ReleaseError(f"{source.shown}: nbgrader refused the notebook: {first}") from None

    left = [
        f"cell {index}: {line.strip()}"
        for index, cell in enumerate(student.cells)
        for line in _source(cell).split("\n")
        if BEGIN_DELIMITER in line or END_DELIMITER in line
    ]
    public_text = "\n".join(public)  # as the release's scan does: lines students see anyway are no secret
    secrets = {line for region in regions for line in region.secret_lines() if line not in public_text}
    for index, cell in enumerate(student.cells):
        body = _source(cell)
        left += [f"cell {index}: {secret}" for secret in sorted(secrets) if secret in body]
    if left:
        raise ReleaseError(f"{source.shown}: answer text would survive the release: {left[0]}")

    text = nbformat.writes(student)
    if not text.endswith("\n"):
        text += "\n"
    return FileRelease(text.encode("utf-8"), tuple(regions), public_text)

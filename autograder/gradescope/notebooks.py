"""Notebook points from an nbgrader course (``python -m autograder.instructor.course``), for gradebooks.

:func:`notebook_scores` reads nbgrader's gradebook and the course's ``notebook_status.json`` (the
last sandboxed autograde of each student): autograded and manual points, what still needs a
grader, and loud errors (a setup cell that failed). ``autograder.grade --batch --notebooks``
joins them to the code points; ``course scores`` writes them as a CSV.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..practical import NOTEBOOK_ASSIGNMENT as ASSIGNMENT

STATUS_FILE = "notebook_status.json"


def load_status(course: Path) -> dict:
    """``{student: {"status", "error", "notes"}}`` of the last autograde ({} when there is none)."""
    try:
        data = json.loads((course / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def notebook_scores(course_dir: Path | str) -> dict[str, dict]:
    """Per student, from nbgrader's gradebook: ``autograded`` (points of the autograded cells, a
    grader's override included) and ``max_autograded``; ``manual`` (points of the written answers,
    None while none is graded) and ``max_manual``; ``max``; ``manual_pending`` (written answers
    awaiting a grader); and the last autograde's ``status``, ``error``, ``notes``."""
    course = Path(course_dir).resolve()
    status = load_status(course)
    scores: dict[str, dict] = {}
    if (course / "gradebook.db").is_file():
        from nbgrader.api import Gradebook, MissingEntry

        with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
            try:
                submissions = gradebook.find_assignment(ASSIGNMENT).submissions
            except MissingEntry:
                submissions = []
            for submission in submissions:
                scores[submission.student.id] = _submission_scores(submission)
    for student in sorted(set(scores) | set(status)):
        row = scores.setdefault(
            student,
            {
                "autograded": None,
                "max_autograded": None,
                "manual": None,
                "max_manual": None,
                "max": None,
                "manual_pending": None,
            },
        )
        last = status.get(student, {})
        pending = row.get("manual_pending")
        default = "not autograded" if not last else ("needs manual grading" if pending else "graded")
        row["status"] = "error" if last.get("status") == "error" else default
        row["error"] = last.get("error", "")
        row["notes"] = list(last.get("notes", []))
    return dict(sorted(scores.items()))


def _submission_scores(submission) -> dict:
    written = [
        g
        for nb in submission.notebooks
        for g in nb.grades
        if g.cell_type == "markdown" and g.cell_type_gradecell is not None and (g.max_score or 0) > 0
    ]
    pending = sum(1 for g in written if g.needs_manual_grade)
    graded = any(g.manual_score is not None for g in written) or (written and not pending)
    return {
        "autograded": float(submission.code_score),
        "max_autograded": float(submission.max_code_score),
        "manual": float(submission.written_score) if graded else None,
        "max_manual": float(submission.max_written_score),
        "max": float(submission.max_score),
        "manual_pending": pending,
    }

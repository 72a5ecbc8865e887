"""Batch grading: one gradebook for a folder of submissions (``python -m autograder.grade --batch``).

Each entry of the folder (a sub-folder or a ``.zip`` per student) is graded as Gradescope would
(:func:`autograder.gradescope.grade.grade_submission`), ``--jobs`` at a time; each grading has its
own private uid, so gradings running together cannot touch each other. Per student:
``OUT/<student>.json`` (results.json) and ``OUT/<student>.log`` (the judge's output). A re-run
skips students whose results exist unless ``--force``. One student's crash, hang or attack never
stops the batch.

The gradebook has one row per student (:mod:`.roster`: a Gradescope export's
``submission_metadata.yml`` gives names, SIDs, emails and submission times; each member of a group
submission gets a row): identity, ``late`` (against ``--deadline``), points per row of the score
table, the code total and maximum, with ``--notebooks COURSE_DIR`` the nbgrader notebook points
(autograded and manual, from :mod:`.notebooks`), the total, status, a one-line reason
for a grading that stopped, and integrity flags.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from .. import practical
from ..judge.text import csv_cell
from .grade import Graded, GradeError, Settings, grade_submission
from .notebooks import notebook_scores
from .roster import RosterError, Submitter, parse_deadline, read_roster


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch",
        type=Path,
        help="grade every submission (folder or .zip) in this folder; a "
        "Gradescope export's submission_metadata.yml names the students",
    )
    parser.add_argument("--csv", type=Path, default=Path("grades.csv"), help="gradebook for --batch")
    parser.add_argument("--out", type=Path, default=Path("results"), help="per-student results and logs for --batch")
    parser.add_argument("--jobs", type=int, default=1, help="gradings at once for --batch (default 1)")
    parser.add_argument("--force", action="store_true", help="with --batch, grade again students already graded")
    parser.add_argument(
        "--deadline",
        help="with --batch, ISO 8601 time with offset: a 'late' column from the "
        "submission times in submission_metadata.yml",
    )
    parser.add_argument(
        "--notebooks",
        type=Path,
        metavar="COURSE_DIR",
        help="with --batch, the nbgrader course (python -m autograder.instructor.course) whose "
        "notebook points join the gradebook, matched by folder name, SID or email",
    )


def entries(folder: Path) -> dict[str, Path]:
    """``{student: submission}``: every sub-folder and ``.zip`` of ``folder`` (hidden names skipped)."""
    found = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith((".", "__MACOSX")):
            continue
        if path.is_dir() and not path.is_symlink():
            found[path.name] = path
        elif path.is_file() and path.suffix == ".zip":
            found[path.stem] = path
    return found


IDENTITY = ("student", "name", "sid", "email", "submitted_at", "late")
NOTEBOOK = (
    "notebook_autograded",
    "notebook_max_autograded",
    "notebook_manual",
    "notebook_max_manual",
    "notebook_status",
)


def _num(value) -> str:
    return "" if value is None else f"{float(value):g}"


def code_columns(doc: dict) -> dict[str, str]:
    """Points per scored row of the score table, the code total and its maximum (bonus excluded)."""
    points: dict[str, float] = {}
    for test in doc.get("tests", []):
        key = (test.get("tags") or ["?"])[0]
        points[key] = points.get(key, 0.0) + float(test.get("score", 0))
    row = {g.key: _num(points.get(g.title, 0.0)) for g in practical.GROUPS if g.scored}
    row["code_total"] = _num(doc.get("score", 0))
    row["code_max"] = _num(
        sum(
            float(t.get("max_score", 0))
            for t in doc.get("tests", [])
            if (t.get("tags") or [""])[0] != practical.GROUP["bonus"].title
        )
    )
    return row


def notebook_columns(scores: dict | None) -> dict[str, str]:
    if scores is None:
        return dict.fromkeys(NOTEBOOK, "") | {"notebook_status": "no notebook graded"}
    cells = {f"notebook_{k}": _num(scores.get(k)) for k in ("autograded", "max_autograded", "manual", "max_manual")}
    status = scores.get("status", "")
    if scores.get("error"):
        status += f": {scores['error']}"
    return cells | {"notebook_status": csv_cell(status)}


def gradebook_row(
    student: str,
    person: Submitter,
    doc: dict,
    graded: Graded | None,
    deadline: dt.datetime | None,
    notebook: dict | None | bool = False,
) -> dict:
    """One CSV row: identity, per-row code points, notebook points (``False``: not asked for), total,
    status, reason, integrity flags."""
    row = {
        "student": student,
        "name": csv_cell(person.name),
        "sid": csv_cell(person.sid),
        "email": csv_cell(person.email),
        "submitted_at": person.submitted_at.isoformat() if person.submitted_at else "",
        "late": person.late(deadline),
    }
    row |= code_columns(doc)
    total = float(doc.get("score", 0))
    if notebook is not False:
        row |= notebook_columns(notebook or None)
        total += sum(float(notebook.get(k) or 0) for k in ("autograded", "manual")) if notebook else 0.0
    row["total"] = _num(total)
    extra = doc.get("extra_data", {})
    row["status"] = graded.status if graded else ("graded" if doc.get("tests") else "failed")
    row["reason"] = csv_cell(graded.reason if graded else extra.get("stopped", ""))
    row["integrity"] = csv_cell(extra.get("integrity_summary", "none"))
    return row


def _notebook_for(scores: dict[str, dict], student: str, person: Submitter) -> dict | None:
    for key in (student, person.sid, person.email):
        if key and key in scores:
            return scores[key]
    return None


def _settings(args) -> tuple[dict[str, list[Submitter]] | None, dt.datetime | None, dict | None]:
    try:
        roster = read_roster(args.batch)
        deadline = parse_deadline(args.deadline) if args.deadline else None
    except RosterError as exc:
        raise GradeError(str(exc)) from None
    scores = None
    if args.notebooks is not None:
        if not (args.notebooks / "nbgrader_config.py").is_file():
            raise GradeError(
                f"--notebooks {args.notebooks}: not an nbgrader course (no nbgrader_config.py); make "
                f"it with python -m autograder.instructor.course init"
            )
        scores = notebook_scores(args.notebooks)
    return roster, deadline, scores


def run_batch(args, settings: Settings) -> int:
    folder: Path = args.batch
    if not folder.is_dir():
        raise GradeError(f"--batch {folder}: not a folder")
    if args.jobs < 1:
        raise GradeError(f"--jobs must be at least 1, got {args.jobs}")
    students = entries(folder)
    if not students:
        raise GradeError(f"{folder}: no submissions (expected one folder or .zip per student)")
    roster, deadline, scores = _settings(args)
    args.out.mkdir(parents=True, exist_ok=True)
    todo = {s: p for s, p in students.items() if args.force or not (args.out / f"{s}.json").is_file()}
    graded = _grade_all(todo, args, settings)
    rows = []
    for student in students:
        doc = graded[student].doc if student in graded else json.loads((args.out / f"{student}.json").read_text())
        people = (roster or {}).get(student) or [Submitter(name="" if roster is None else "(not in the metadata)")]
        for person in people:  # a group submission: one row per member, with the group's points
            notebook = False if scores is None else _notebook_for(scores, student, person)
            rows.append(gradebook_row(student, person, doc, graded.get(student), deadline, notebook))
    write_gradebook(args.csv, rows)
    print(
        f"gradebook: {args.csv} ({len(rows)} rows for {len(students)} submissions, {len(todo)} graded now); "
        f"results in {args.out}/"
    )
    return 0


def _grade_all(todo: dict[str, Path], args, settings: Settings) -> dict[str, Graded]:
    """Grade ``todo``, ``args.jobs`` at a time, with a progress line (and ETA) per finished student."""
    start, graded = time.monotonic(), {}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {
            pool.submit(grade_submission, path, args.out / f"{s}.json", settings, args.out / f"{s}.log"): s
            for s, path in todo.items()
        }
        for future in as_completed(futures):
            student = futures[future]
            graded[student] = result = future.result()
            elapsed = time.monotonic() - start
            eta = elapsed / len(graded) * (len(todo) - len(graded))
            print(
                f"[{len(graded)}/{len(todo)}] {student}: {result.doc['score']:g} ({result.status}) "
                f"elapsed {elapsed:.0f} s, about {eta:.0f} s left",
                flush=True,
            )
    return graded


def write_gradebook(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(rows[0]) if rows else ["student"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)

"""Batch grading: one gradebook for a folder of submissions (``python -m autograder.grade --batch``).

Each entry of the folder (a sub-folder or a ``.zip`` per student) is graded as Gradescope would
(:func:`autograder.gradescope.grade.grade_submission`), ``--jobs`` at a time; each grading has its
own private uid, so gradings running together cannot touch each other. Per student:
``OUT/<student>.json`` (results.json) and ``OUT/<student>.log`` (the judge's output). A re-run
skips students whose results exist unless ``--force``. One student's crash, hang or attack never
stops the batch.
"""

from __future__ import annotations

import argparse
import csv
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from .. import practical
from ..judge.text import csv_cell
from .grade import GradeError, Graded, Settings, grade_submission


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=Path, help="grade every submission (folder or .zip) in this folder")
    parser.add_argument("--csv", type=Path, default=Path("grades.csv"), help="gradebook for --batch")
    parser.add_argument("--out", type=Path, default=Path("results"), help="per-student results and logs for --batch")
    parser.add_argument("--jobs", type=int, default=1, help="gradings at once for --batch (default 1)")
    parser.add_argument("--force", action="store_true", help="with --batch, grade again students already graded")


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


def gradebook_row(student: str, graded: Graded | None, doc: dict) -> dict:
    """One CSV row: identity, per-row points, total, status, reason, integrity flags."""
    row = {"student": student}
    points: dict[str, float] = {}
    for test in doc.get("tests", []):
        key = test.get("tags", ["?"])[0]
        points[key] = points.get(key, 0.0) + float(test.get("score", 0))
    for group in practical.GROUPS:
        if group.scored:
            row[group.key] = f"{points.get(group.title, 0.0):g}"
    row["total"] = f"{float(doc.get('score', 0)):g}"
    row["max_total"] = f"{sum(float(t.get('max_score', 0)) for t in doc.get('tests', []) if t.get('tags', [''])[0] != practical.GROUP['bonus'].title):g}"
    extra = doc.get("extra_data", {})
    row["status"] = graded.status if graded else ("graded" if doc.get("tests") else "failed")
    row["reason"] = csv_cell(graded.reason if graded else extra.get("stopped", ""))
    row["integrity"] = csv_cell(extra.get("integrity_summary", "none"))
    return row


def run_batch(args, settings: Settings) -> int:
    folder: Path = args.batch
    if not folder.is_dir():
        raise GradeError(f"--batch {folder}: not a folder")
    if args.jobs < 1:
        raise GradeError(f"--jobs must be at least 1, got {args.jobs}")
    students = entries(folder)
    if not students:
        raise GradeError(f"{folder}: no submissions (expected one folder or .zip per student)")
    args.out.mkdir(parents=True, exist_ok=True)
    todo = {s: p for s, p in students.items() if args.force or not (args.out / f"{s}.json").is_file()}
    start, done, rows = time.monotonic(), 0, {}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(grade_submission, path, args.out / f"{s}.json", settings, args.out / f"{s}.log"): s
                   for s, path in todo.items()}
        for future in as_completed(futures):
            student = futures[future]
            graded = future.result()
            rows[student] = gradebook_row(student, graded, graded.doc)
            done += 1
            elapsed = time.monotonic() - start
            eta = elapsed / done * (len(todo) - done)
            print(f"[{done}/{len(todo)}] {student}: {graded.doc['score']:g} ({graded.status}) "
                  f"elapsed {elapsed:.0f} s, about {eta:.0f} s left", flush=True)
    for student in students:
        if student not in rows:  # graded by an earlier run
            import json

            rows[student] = gradebook_row(student, None, json.loads((args.out / f"{student}.json").read_text()))
    write_gradebook(args.csv, [rows[s] for s in students])
    print(f"gradebook: {args.csv} ({len(students)} students, {len(todo)} graded now); results in {args.out}/")
    return 0


def write_gradebook(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(rows[0]) if rows else ["student"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)

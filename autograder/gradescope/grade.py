"""Grade submissions the way Gradescope does, locally or in the autograder image.

    python -m autograder.grade SUBMISSION [--results results.json]      # a folder or a .zip
    python -m autograder.grade --batch DIR --csv grades.csv [--out DIR]  # one entry per student

Each grading runs ``pytest autograder --isolate --hidden`` in a separate process: student code
runs in sandboxed child processes (``autograder.sandbox``), the tests (the judge) decide every
score from data they check, and results.json is written by this process last, from the results
the judge wrote. Whatever the submission does, a valid results.json is written: if grading
itself fails, with score 0 and an explanation.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from ..impl import EDITABLE_FILES, REPO_ROOT, find_submitted
from ..scoring import score_table

MAX_ZIP_FILES = 500
MAX_ZIP_BYTES = 20 * 1024 * 1024
MAX_OUTPUT_CHARS = 8000
DEFAULT_TIMEOUT = 15 * 60  # whole grading; a hanging submission takes about 4 minutes (see conftest)
SCHEMA = Path(__file__).resolve().parent / "results.schema.json"


class GradeError(Exception):
    """Grading could not run (bad submission archive, bad arguments): one line."""


def extract_zip(archive: Path, dest: Path) -> Path:
    """Extract a submission zip safely: no absolute or ``..`` paths, no links, bounded size."""
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ZIP_FILES:
                raise GradeError(f"{archive.name}: more than {MAX_ZIP_FILES} files")
            if sum(i.file_size for i in infos) > MAX_ZIP_BYTES:
                raise GradeError(f"{archive.name}: more than {MAX_ZIP_BYTES // 2**20} MiB uncompressed")
            for info in infos:
                name = info.filename
                if name.startswith(("/", "\\")) or ".." in Path(name).parts or (info.external_attr >> 28) == 0xA:
                    continue  # unsafe entry: ignored, never written
                target = dest / name
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
    except zipfile.BadZipFile:
        raise GradeError(f"{archive.name} is not a valid zip file") from None
    return dest


def submission_root(path: Path) -> Path:
    """The folder holding the editable files: the folder itself, or the one folder a zip wraps them in."""
    if any(find_submitted(path, name) for name in EDITABLE_FILES):
        return path
    children = [c for c in path.iterdir() if c.is_dir() and not c.name.startswith(("__MACOSX", "."))]
    if len(children) == 1 and any(find_submitted(children[0], name) for name in EDITABLE_FILES):
        return children[0]
    return path


def failure_results(reason: str, seconds: float = 0.0) -> dict:
    return {"score": 0.0, "execution_time": round(seconds, 3),
            "output": f"Grading failed: {reason}\nYour submission could not be graded; contact the course staff "
                      f"if this persists.", "visibility": "visible", "stdout_visibility": "hidden", "tests": []}


def validate_results(doc: dict) -> None:
    """Check results.json against the repository's JSON schema of Gradescope's format."""
    import jsonschema  # listed in the ta extra and installed in the grading image

    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))


def summary(doc: dict, missing: list[str]) -> str:
    lines = []
    for name in missing:
        lines.append(f"{name} was not in your submission: the tasks in it score 0 (the skeleton was used).")
    visible = [t for t in doc["tests"] if t["visibility"] == "visible"]
    lines += score_table([(t["tags"][0], t["score"], t["max_score"]) for t in visible])
    if len(visible) < len(doc["tests"]):
        lines.append("(the hidden tests' results are shown after the due date)")
    return "\n".join(lines)


def grade_submission(submission: Path, results_path: Path, *, hidden: bool = True, user: str | None = None,
                     timeout: float = DEFAULT_TIMEOUT, trial_timeout: float = 20.0, log: Path | None = None) -> dict:
    """Grade one submission (folder or zip) and write results.json; always returns the document written."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pp-grade-") as tmp:
        tmp = Path(tmp)
        try:
            if submission.is_file() and submission.suffix == ".zip":
                submission = extract_zip(submission, tmp / "unzipped")
            if not submission.is_dir():
                raise GradeError(f"{submission}: not a folder or a .zip file")
            root = submission_root(submission)
            missing = [name for name in EDITABLE_FILES if find_submitted(root, name) is None]
            raw = tmp / "judge-results.json"
            cmd = [sys.executable, "-m", "pytest", "autograder", "--impl", str(root), "--isolate",
                   "--results-json", str(raw), "--trial-timeout", str(trial_timeout), "-q", "-p", "no:cacheprovider",
                   *(["--hidden"] if hidden else []), *(["--sandbox-user", user] if user else [])]
            env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(REPO_ROOT)}
            stdout, stderr = run_in_own_session(cmd, timeout, env)
            if log is not None:
                log.write_text(stdout[-200_000:] + stderr[-50_000:])
            if not raw.is_file():
                tail = (stdout + stderr).strip().splitlines()[-1:] or ["no output"]
                raise GradeError(f"the autograder wrote no results ({tail[0][:300]})")
            doc = json.loads(raw.read_text())
            doc["execution_time"] = round(time.monotonic() - start, 3)
            doc["output"] = summary(doc, missing)[:MAX_OUTPUT_CHARS]
            validate_results(doc)
        except subprocess.TimeoutExpired:
            doc = failure_results(f"grading took longer than {timeout:g} s", time.monotonic() - start)
        except (GradeError, OSError, ValueError) as exc:
            doc = failure_results(str(exc), time.monotonic() - start)
        except Exception as exc:  # a bug in the grader itself: still leave a valid result file
            doc = failure_results(f"internal error: {type(exc).__name__}: {exc}", time.monotonic() - start)
    write_json(results_path, doc)
    return doc


def run_in_own_session(cmd: list[str], timeout: float, env: dict) -> tuple[str, str]:
    """Run the judge in its own process group; on timeout kill the whole group (sandbox workers and
    whatever student code is still running), so nothing outlives this grading."""
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise


def write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.replace(path)


def grade_batch(folder: Path, csv_path: Path, out_dir: Path, **kwargs) -> list[dict]:
    """Grade every submission in ``folder`` (one sub-folder or .zip per student); write a gradebook."""
    entries = sorted(p for p in folder.iterdir() if p.is_dir() or p.suffix == ".zip")
    if not entries:
        raise GradeError(f"{folder}: no submissions (expected one folder or .zip per student)")
    rows = []
    for i, entry in enumerate(entries, start=1):
        student = entry.stem if entry.suffix == ".zip" else entry.name
        start = time.monotonic()
        doc = grade_submission(entry, out_dir / f"{student}.json", **kwargs)
        total = sum(t["max_score"] for t in doc["tests"])
        status = "graded" if doc["tests"] else "failed"
        print(f"[{i}/{len(entries)}] {student}: {doc['score']:g}/{total:g} ({status}, "
              f"{time.monotonic() - start:.1f} s)", flush=True)
        rows.append({"student": student, "score": doc["score"], "max_score": total, "status": status})
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["student", "score", "max_score", "status"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.grade", description=__doc__.splitlines()[0])
    parser.add_argument("submission", nargs="?", type=Path, help="a submission folder or .zip")
    parser.add_argument("--results", type=Path, default=Path("results.json"), help="where to write results.json")
    parser.add_argument("--batch", type=Path, help="grade every submission in this folder")
    parser.add_argument("--csv", type=Path, default=Path("grades.csv"), help="gradebook for --batch")
    parser.add_argument("--out", type=Path, default=Path("results"), help="per-student results.json for --batch")
    parser.add_argument("--user", default=None, help="run student code as this unprivileged user (when root)")
    parser.add_argument("--no-hidden", action="store_true", help="skip the hidden tests")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds for one whole grading")
    parser.add_argument("--trial-timeout", type=float, default=20.0, help="seconds for one call into student code")
    args = parser.parse_args(argv)
    kwargs = dict(hidden=not args.no_hidden, user=args.user, timeout=args.timeout, trial_timeout=args.trial_timeout)
    try:
        if args.batch:
            if not args.batch.is_dir():
                raise GradeError(f"--batch {args.batch}: not a folder")
            rows = grade_batch(args.batch, args.csv, args.out, **kwargs)
            print(f"gradebook: {args.csv} ({len(rows)} students); results in {args.out}/")
            return 0
        if args.submission is None:
            raise GradeError("give a submission folder or .zip, or --batch DIR")
        if not args.submission.exists():
            raise GradeError(f"{args.submission}: no such file or folder")
        doc = grade_submission(args.submission, args.results, **kwargs)
        print(doc["output"])
        print(f"results: {args.results}")
        return 0
    except OSError as exc:
        print(f"error: cannot write the results: {exc}", file=sys.stderr)
        return 2
    except GradeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

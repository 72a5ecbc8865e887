"""Grade one submission the way Gradescope does, locally or in the autograder image
(:func:`grade_submission`; the command line is :mod:`.cli`, ``python -m autograder.grade``).

One grading: the submission's editable files are staged into a private folder of this process
(``judge.staging``: nothing else of the submission is read), then the judge, ``pytest autograder``
in a child process, grades the staged copy (student code runs in its sandbox, never in the judge)
and streams each test's outcome to a file of this process as the test ends. This process writes
results.json from those outcomes, whatever happens: if the judge crashes, is killed or runs past
the grading's time budget, every test that finished keeps its points and the others say why they
were not graded. Student code cannot reach this process (another uid, or Landlock's scopes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..judge import integrity
from ..judge.budget import DEFAULT_TOTAL_S, STOP_MARGIN_S
from ..judge.staging import REPO_ROOT, Staged, StagingError, stage
from ..judge.text import clean, clean_line
from . import results as R

MAX_OUTPUT_CHARS = 8000
JUDGE = "import sys; sys.path.insert(0, sys.argv[1]); import pytest; sys.exit(pytest.main(sys.argv[2:]))"


class GradeError(Exception):
    """Grading could not start (bad arguments, an unreadable submission): one line."""


@dataclass
class Settings:
    """How to grade: ``budget`` seconds for the whole grading, ``call_timeout`` per call into
    student code, hidden tests or not."""

    hidden: bool = True
    budget: float = DEFAULT_TOTAL_S
    call_timeout: float = 20.0
    python: str = sys.executable
    extra_args: list[str] = field(default_factory=list)


@dataclass
class Graded:
    """One grading's result: the results.json document and what a gradebook needs."""

    doc: dict
    staged: Staged | None
    flags: list[integrity.Flag]
    status: str  # "graded", "partial" (stopped before the end) or "failed" (nothing graded)
    reason: str = ""
    log: str = ""


def judge_command(staged: Staged, outcomes: Path, settings: Settings) -> list[str]:
    return [
        settings.python,
        "-I",
        "-c",
        JUDGE,
        str(REPO_ROOT),
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "autograder.judge.options",
        "-p",
        "pytest_timeout",
        f"--rootdir={REPO_ROOT}",
        "-c",
        str(REPO_ROOT / "pyproject.toml"),
        "autograder",
        f"--impl={staged.root / staged.package}",
        f"--outcomes={outcomes}",
        f"--budget={settings.budget:g}",
        f"--call-timeout={settings.call_timeout:g}",
        *(["--hidden"] if settings.hidden else []),
        *settings.extra_args,
    ]


def run_judge(cmd: list[str], limit: float, log: Path) -> tuple[int | None, str]:
    """Run the judge in its own session, its output to ``log``; kill its whole group at ``limit``
    seconds. Returns (exit status or None when killed, why it was stopped)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k in ("PATH", "LANG", "LC_ALL", "HOME", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "CUDA_HOME", "TMPDIR")
    }
    env.update(
        PYTHONDONTWRITEBYTECODE="1",
        PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
        PYTHONHASHSEED="0",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )  # the judge's own compute is small; gradings side by side do not oversubscribe
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            return proc.wait(timeout=limit), ""
        except subprocess.TimeoutExpired:
            reason = f"the grading's time limit ({limit:.0f} s) was reached"
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
        return None, reason


def read_outcomes(path: Path) -> tuple[list[R.Outcome], bool, list[dict]]:
    """The collected tests with the outcome of every test that ended, whether the judge finished, and
    the leaderboard entries it recorded."""
    collected: dict[str, R.Outcome] = {}
    board: dict[str, dict] = {}
    finished = False
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return [], False, []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        if "collected" in record:
            collected = {d["nodeid"]: R.Outcome.from_dict(d) for d in record["collected"]}
        elif "outcome" in record and record["outcome"].get("nodeid") in collected:
            collected[record["outcome"]["nodeid"]] = R.Outcome.from_dict(record["outcome"])
        elif isinstance(record.get("leaderboard"), dict):
            entry = record["leaderboard"]
            if isinstance(entry.get("name"), str) and isinstance(entry.get("value"), (int, float)):
                board[entry["name"]] = {
                    "name": clean_line(entry["name"], 100),
                    "value": float(entry["value"]),
                    "order": "asc" if entry.get("order") == "asc" else "desc",
                }
        elif record.get("finished"):
            finished = True
    return list(collected.values()), finished, list(board.values())


def student_output(outcomes: list[R.Outcome], staged: Staged | None, note: str) -> str:
    """What the student reads at the top: files missing or refused, the score table (visible rows)."""
    lines = []
    for name in staged.missing if staged else []:
        lines.append(f"{name} was not in your submission: the tasks in it score 0 (the skeleton was used).")
    for name, why in (staged.rejected if staged else {}).items():
        lines.append(f"{name} was refused ({why}): the skeleton's was used.")
    if note:
        lines.append(note)
    visible = [o for o in outcomes if not o.hidden]
    lines += R.score_table(visible)
    if len(visible) < len(outcomes):
        lines.append("(the hidden tests' results are shown after the due date)")
    return clean("\n".join(lines), MAX_OUTPUT_CHARS)


def grade_submission(
    submission: Path, results_path: Path | None, settings: Settings | None = None, log_path: Path | None = None
) -> Graded:
    """Grade one submission (folder or zip); write results.json; always returns a valid document."""
    settings = settings or Settings()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pp-grade-") as tmp:
        private = Path(tmp)
        os.chmod(private, 0o700)
        try:
            staged = stage(Path(submission), private / "staged")
        except (StagingError, OSError) as exc:
            graded = _failed(f"the submission could not be read: {clean_line(exc)}", start)
            return _finish(graded, results_path)
        flags = integrity.scan_files(staged.sources)
        outcomes_file, judge_log = private / "outcomes.jsonl", private / "judge.log"
        code, stopped = run_judge(
            judge_command(staged, outcomes_file, settings), settings.budget + STOP_MARGIN_S, judge_log
        )
        outcomes, finished, board = read_outcomes(outcomes_file)
        log = judge_log.read_text(encoding="utf-8", errors="replace")[-200_000:]
        graded = _assemble(outcomes, finished, code, stopped, staged, flags, start, log, board)
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_text(clean(log, 200_000), encoding="utf-8")
    return _finish(graded, results_path)


def _assemble(
    outcomes: list[R.Outcome],
    finished: bool,
    code: int | None,
    stopped: str,
    staged: Staged,
    flags: list,
    start: float,
    log: str,
    board: list[dict],
) -> Graded:
    seconds = time.monotonic() - start
    if not outcomes:
        last = next((line for line in reversed(log.splitlines()) if line.strip()), "no output")
        return _failed(f"the autograder collected no test ({clean_line(last, 300)})", start, staged, flags)
    reason = ""
    if not finished:
        reason = stopped or f"the autograder stopped before the end (exit status {code})"
        for o in outcomes:
            if not o.ended:
                o.score, o.status, o.output = (
                    0.0,
                    "failed",
                    f"not graded: {reason}; the tests that ended keep their points",
                )
    note = f"Grading stopped early: {reason}." if reason else ""
    extra = {
        "integrity": [str(f) for f in flags][:200],
        "integrity_summary": integrity.summary(flags),
        "missing": staged.missing,
        "rejected": staged.rejected,
        "stopped": reason,
    }
    doc = R.results_document(outcomes, seconds, student_output(outcomes, staged, note), extra=extra, leaderboard=board)
    return Graded(doc, staged, flags, "partial" if reason else "graded", reason, log)


def _failed(reason: str, start: float, staged: Staged | None = None, flags: list | None = None) -> Graded:
    doc = {
        "score": 0.0,
        "execution_time": round(time.monotonic() - start, 3),
        "output": clean(
            f"Grading failed: {reason}\nYour submission could not be graded; contact the course staff if this persists."
        ),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": [],
    }
    return Graded(doc, staged, flags or [], "failed", clean_line(reason))


def _finish(graded: Graded, results_path: Path | None) -> Graded:
    try:
        R.validate(graded.doc)
    except Exception as exc:  # noqa: BLE001 - a bug of ours: still leave a valid file
        graded = Graded(
            _failed(f"internal error: {type(exc).__name__}", time.monotonic()).doc,
            graded.staged,
            graded.flags,
            "failed",
            "the results did not validate",
        )
    if results_path is not None:
        R.write_json(results_path, graded.doc)
    return graded

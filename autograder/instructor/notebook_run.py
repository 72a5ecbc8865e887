"""Autograde one student's notebook with nbgrader, in a sandboxed kernel, against the student's own code.

:func:`grade_student` stages the student's editable ``.py`` files (``judge.staging.stage``) next
to the public autograder in a fresh folder (:class:`StudentRun`), installs the kernelspec of
``autograder.harness.kernel`` (a private uid when root, Landlock, resource limits) in a private
``JUPYTER_PATH``, runs ``nbgrader autograde --student=ID``, and inspects the autograded notebook:
a setup cell that failed, never ran or did not import the student's package is an error, never a
silent zero. The course-level commands are in :mod:`.course`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .. import layout, practical
from ..harness import kernel
from ..judge import isolation, uids
from ..judge.sandbox import choose_identity
from ..judge.staging import Staged, StagingError, stage
from ..judge.text import clean_line
from .release import REPO_ROOT
from .toolenv import tool_env

ASSIGNMENT, NOTEBOOK, SETUP_CELL = practical.NOTEBOOK_ASSIGNMENT, practical.NOTEBOOK, "setup"
STUDENT_TIMEOUT_S = 1800
LIMITS = {"memory_bytes": 8 << 30, "file_bytes": 64 << 20, "max_processes": 256}


EXCEPTION_LINE = re.compile(r"^[\w.]*(Error|Exception|Exit|Interrupt)\b.*:")


STUDENT_ID = re.compile(r"[\w.@-]+")


def last_error(text: str) -> str:
    """The most telling line of a tool's output: its last exception line, else its last error line."""
    lines = [clean_line(line.strip(), 400) for line in text.splitlines() if line.strip()]
    for pick in (lambda line: EXCEPTION_LINE.match(line), lambda line: "error" in line.lower(), bool):
        found = [line for line in lines if pick(line)]
        if found:
            return found[-1]
    return "(no output)"


@dataclass
class Outcome:
    """What autograding one student's notebook gave: ``status`` is ``ok`` or ``error``."""

    student: str
    status: str = "ok"
    error: str = ""
    notes: list[str] = field(default_factory=list)
    kernel: str = ""


def _refused_entries(folder: Path) -> list[str]:
    """Links and special files: nbgrader would copy what a link points to, as root, into autograded/."""
    bad = []
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                bad.append(str(path.relative_to(folder)))
    return bad


def _identity() -> tuple[uids.UidLease | None, str]:
    """As root, the code sandbox's rule (``judge.sandbox.choose_identity``, Landlock on); else this user."""
    level = isolation.isolation_level()
    if not level.root:
        return None, "same"
    lease, identity, _ = choose_identity(level, confine=True)
    return lease, identity


class StudentRun:
    """One student's kernel sandbox, in a fresh folder of the grader's: the staged package next to
    the public autograder (``src/``, read-only), the uid's scratch folder, the kernel config and
    kernelspec. ``close()`` kills everything of the uid and removes its files and the folder."""

    def __init__(self, submission: Path, course: Path):
        self.submission, self.course = submission, course
        self.lease, self.identity = _identity()
        self.uid = self.lease.uid if self.lease else None
        self.base = Path(tempfile.mkdtemp(prefix="pp-notebook-"))
        self.staged: Staged | None = None

    def __enter__(self) -> StudentRun:
        try:
            os.chmod(self.base, 0o711)
            self.staged = stage(self.submission, self.base / "staged")
            src = self.base / "src"
            for rel in layout.files_for("students"):  # what every student has: no solutions, no hidden tests
                (src / "autograder" / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(layout.PACKAGE_DIR / rel, src / "autograder" / rel)
            shutil.copytree(
                self.staged.package_dir,
                src / self.staged.package,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )
            for root, _, files in os.walk(src):
                os.chmod(root, 0o755)
                for name in files:
                    os.chmod(os.path.join(root, name), 0o644)
            self._write_kernel(src)
        except BaseException:
            self.close()
            raise
        return self

    def _write_kernel(self, src: Path) -> None:
        scratch = isolation.prepare_private_dir(self.base / "home", self.uid, self.uid)
        config = kernel.KernelConfig(
            src=str(src),
            package=self.staged.package,
            scratch=str(scratch),
            notebook_dir=str(self.course / "autograded" / self.submission.parent.name / ASSIGNMENT),
            identity=self.identity,
            uid=self.uid,
            gid=self.uid,
            landlock=True,
            protect=[str(REPO_ROOT), str(self.course)],
            limits=dict(LIMITS),
        )
        if any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0")):
            config.limits["memory_bytes"] = None  # CUDA reserves far more address space than it uses
        if self.uid is None:  # our own uid: its other processes (threads, for RLIMIT_NPROC) count too
            config.limits["max_processes"] += sum(_threads(pid) for pid in uids.processes_of(os.geteuid()))
        kernel.install(str(self.base), str(src), config)
        (self.base / "runtime").mkdir(mode=0o700)

    def env(self) -> dict[str, str]:
        env = tool_env(JUPYTER_PATH=str(self.base / "jupyter"), JUPYTER_RUNTIME_DIR=str(self.base / "runtime"))
        return {k: v for k, v in env.items() if not k.startswith("PRACTICAL9_")}

    def close(self) -> None:
        if self.uid is not None:
            uids.kill_uid_processes(self.uid)
            uids.remove_files_of(self.uid)
        isolation.remove_tree(self.base)
        if self.lease is not None:
            self.lease.release()
            self.lease = None

    def __exit__(self, *exc) -> None:
        self.close()


def _threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 1


def _run_nbgrader(course: Path, student: str, run: StudentRun, log: Path, timeout: float) -> bool:
    """``nbgrader autograde`` for one student, output into ``log``; whether it ended well in time."""
    cmd = [
        sys.executable,
        "-m",
        "nbgrader",
        "autograde",
        ASSIGNMENT,
        f"--student={student}",
        "--force",
        f"--CourseDirectory.root={course}",
    ]
    with open(log, "w", encoding="utf-8") as f:
        proc = subprocess.Popen(
            cmd,
            cwd=course,
            env=run.env(),
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            return proc.wait(timeout=timeout) == 0
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            f.write(f"\nTimeoutError: autograde stopped after {timeout:g} s (the whole notebook's limit)\n")
            return False


def _kernel_line(log: Path) -> str:
    """The kernel's own report (the first line it writes, before any student code runs)."""
    prefix = f"{kernel.PREFIX}: "
    return next((line[len(prefix) :].strip() for line in _read(log).splitlines() if line.startswith(prefix)), "")


def _meta(cell: dict) -> dict:
    return (cell.get("metadata") or {}).get("nbgrader") or {}


def _cell_error(cell: dict) -> str:
    for output in cell.get("outputs") or []:
        if output.get("output_type") == "error":
            return clean_line(f"{output.get('ename', 'Error')}: {output.get('evalue', '')}", 300)
    return ""


def inspect_notebook(path: Path) -> tuple[str | None, list[str]]:
    """``(error, notes)`` of an autograded notebook: an error when its setup cell (cell id or grade id
    ``setup``) is missing, raised, never ran or did not import the staged package; notes for the
    provided (locked) code cells that raised."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError, AttributeError) as exc:
        return f"the autograded notebook cannot be read: {clean_line(exc, 200)}", []
    setup = next((c for c in cells if SETUP_CELL in (c.get("id"), _meta(c).get("grade_id"))), None)
    failed = "the notebook's setup cell failed: "
    if setup is None or setup.get("cell_type") != "code":
        return failed + "there is no setup cell (deleted from the submission?), so nothing ran the student's code", []
    if _cell_error(setup):
        return failed + _cell_error(setup), []
    if setup.get("execution_count") is None:
        return failed + "it never ran (the kernel died or was stopped before it)", []
    printed = "".join(
        "".join(o.get("text") or "") for o in setup.get("outputs") or [] if o.get("output_type") == "stream"
    )
    if f"(package '{practical.SUBMISSION_PACKAGE}')" not in printed:
        return failed + f"it did not import the student's package (it printed: {clean_line(printed, 200)})", []
    notes = [
        f"provided cell {_meta(c).get('grade_id') or c.get('id')} raised {_cell_error(c)}"
        for c in cells
        if c.get("cell_type") == "code" and _meta(c).get("locked") and not _meta(c).get("grade") and _cell_error(c)
    ]
    return None, notes


def _mark_gradebook(course: Path, student: str, *, failed: bool) -> None:
    """Mark-scheme cells (0-point task cells) need no grading; a failed notebook's autograded cells do
    (so the formgrader lists it for review)."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        try:
            submission = gradebook.find_submission(ASSIGNMENT, student)
        except MissingEntry:
            return
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                if grade.cell_type_taskcell is not None and not grade.max_score and grade.manual_score is None:
                    grade.needs_manual_grade = False
                elif failed and grade.cell_type == "code":
                    grade.needs_manual_grade = True
        gradebook.db.commit()


def grade_student(course: Path, student: str, logs: Path) -> Outcome:
    """Autograde one student's notebook in the sandboxed kernel; never raises for the student's faults."""
    outcome = Outcome(student)
    folder = course / "submitted" / student / ASSIGNMENT
    if not STUDENT_ID.fullmatch(student):
        return Outcome(
            student,
            "error",
            f"the id {clean_line(student, 80)!r} has characters nbgrader reads as a "
            f"pattern: rename submitted/{clean_line(student, 80)}",
        )
    bad = _refused_entries(folder)
    if bad:
        return Outcome(
            student,
            "error",
            f"the submission holds a link or special file ({clean_line(bad[0], 200)}): "
            f"links are never followed; remove it",
        )
    if not (folder / NOTEBOOK).is_file():
        return Outcome(student, "error", f"no {NOTEBOOK} in submitted/{student}/{ASSIGNMENT}/")
    log = logs / f"autograde-{student}.log"
    graded = course / "autograded" / student / ASSIGNMENT / NOTEBOOK
    graded.unlink(missing_ok=True)  # never inspect an earlier run's notebook
    try:
        with StudentRun(folder, course) as run:
            if run.staged.missing or run.staged.rejected:
                files = sorted(run.staged.missing + list(run.staged.rejected))
                outcome.notes.append(f"no usable {', '.join(files)} in the submission: the skeleton's were used")
            nbgrader_ok = _run_nbgrader(course, student, run, log, STUDENT_TIMEOUT_S)
    except StagingError as exc:
        return Outcome(student, "error", f"the submission cannot be staged: {exc}")
    outcome.kernel = _kernel_line(log)
    error, notes = inspect_notebook(graded) if graded.is_file() else (None, [])
    if not graded.is_file():
        detail = outcome.kernel if "cannot set up" in outcome.kernel else last_error(_read(log))
        error = (
            f"the notebook was not autograded (the kernel died or did not start, or nbgrader failed): {detail}; "
            f"see {log}"
        )
    elif not nbgrader_ok:
        notes.append(f"nbgrader reported an error: {last_error(_read(log))}")
    outcome.notes += notes
    if error:
        outcome.status, outcome.error = "error", error
    _mark_gradebook(course, student, failed=bool(error))
    return outcome


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""

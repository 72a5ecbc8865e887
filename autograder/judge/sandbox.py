"""The judge's side of the sandbox: one worker per grading, one confined process per call.

``Sandbox(staged).call(probe, kwargs, key=..., host=...)`` runs ``autograder.harness.probes``'s
``probe`` on the staged student package in a fresh, confined process (``autograder.harness.worker``)
and returns its raw data, or raises :class:`ProbeFailed` with one line for the student. Schedule
trials pass a stage ``host``: the call's stage requests (forwards, backwards) are answered by it in
this process, so the events that decide a grade are recorded here, out of the student's reach.

Per grading: a private folder ``src/`` (read-only copies of the sandbox's part of the autograder,
``autograder.layout.files_for("sandbox")``, and the staged package) and ``calls/``. When this
process is root, a private uid (``judge.uids.lease_uid``) is leased for the whole grading:
every call runs as that uid, so it cannot signal, trace or read this process or another grading,
and after every call everything of that uid is killed and its files in world-writable folders are
removed. Each call has its own empty folder (its HOME and TMPDIR), removed afterwards.

Limits per call: wall-clock time (``Limits.call_timeout``, shortened to what the grading's budget
has left), address space, file size (a print flood fails with EFBIG), processes. A call that
times out gets ``SIGUSR2`` first (a traceback says where it hung), then is killed. A student
function that timed out twice is not called again (its later tests fail at once), so a hanging
submission costs two time-outs per function, not one per test.

Elsewhere: the limits, errors and verdicts of calls (:mod:`.calls_outcome`, its names re-exported
here) and the conversation with a call (:mod:`.conversation`).
"""

from __future__ import annotations

import compileall
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import layout
from ..harness.worker import BOOTSTRAP, DUMP_SIGNAL, LOG
from . import access, isolation, uids
from .budget import Budget
from .calls_outcome import (
    BadData,
    CallOutcome,
    Limits,
    OutOfBudget,
    ProbeFailed,
    SandboxError,
    TimedOut,
    log_tail,
    verdict,
)
from .conversation import StageHost, converse
from .staging import REPO_ROOT, Staged

START_TIMEOUT_S = 180.0
REPEATED_TIMEOUTS = 2

__all__ = ["BadData", "Limits", "OutOfBudget", "ProbeFailed", "Sandbox", "SandboxError", "TimedOut", "choose_identity"]


def choose_identity(level: isolation.IsolationLevel, confine: bool) -> tuple[uids.UidLease | None, str, str]:
    """As root, who student code runs as: ``(lease, identity, note)``. A private uid when it can read
    the interpreter (``uid``); else, under Landlock, a private uid that keeps only the right to read
    files where Landlock allows (``uid-read``); else uid 0 without any capability (``nocaps``)."""
    lease = uids.lease_uid()
    blocked = access.unreadable_for(lease.uid, access.needed_paths())
    if not blocked:
        return lease, "uid", ""
    why = f"the interpreter's files ({blocked[0]}) are not readable by other users"
    if confine and level.landlock_abi >= 1:
        return lease, "uid-read", f"{why}: the private uid keeps the right to read files, only where Landlock allows"
    lease.release()
    return None, "nocaps", f"{why}, so calls run as uid 0 without any capability"


@dataclass
class Sandbox:
    """See the module docstring."""

    staged: Staged
    limits: Limits = field(default_factory=Limits)
    budget: Budget = field(default_factory=Budget)
    confine: bool = True
    private_uid: bool = True

    def __post_init__(self):
        self.level = isolation.isolation_level()
        self.lease, self.identity, self.note = None, "same", ""
        if self.level.root and self.private_uid:
            self.lease, self.identity, self.note = choose_identity(self.level, self.confine)
        self.uid = self.lease.uid if self.lease else None
        self._base = Path(tempfile.mkdtemp(prefix="pp-sandbox-"))
        self._src, self._calls = self._base / "src", self._base / "calls"
        self._worker: subprocess.Popen | None = None
        self._ctl: socket.socket | None = None
        self._buffer = b""
        self._count = 0
        self._timeouts: dict[str, int] = {}
        self.closed = False
        self.landlock = 0
        try:
            self._lay_out()
        except BaseException:
            self.close()
            raise

    def describe(self) -> str:
        """One line: how isolated student code is in this grading."""
        if self.identity == "uid":
            return self.level.describe()
        if self.identity == "uid-read":
            return f"{self.level.describe()} ({self.note})"
        landlock = f"Landlock ABI {self.landlock or self.level.landlock_abi}" if self.confine else "no Landlock"
        if self.identity == "nocaps":
            return f"reduced: {self.note}, confined by {landlock}; grade untrusted code in the Docker image"
        return self.level.describe()

    # -- layout and worker -----------------------------------------------------------------------
    def _lay_out(self) -> None:
        os.chmod(self._base, 0o711)
        target = self._src / "autograder"
        for rel in layout.files_for("sandbox"):
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(layout.PACKAGE_DIR / rel, target / rel)
        shutil.copytree(
            self.staged.package_dir,
            self._src / self.staged.package,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        compileall.compile_dir(self._src, quiet=2)  # calls run with -B: they read .pyc, never write
        for root, _dirs, files in os.walk(self._src):
            os.chmod(root, 0o755)
            for name in files:
                os.chmod(os.path.join(root, name), 0o644)
        self._calls.mkdir(mode=0o711)

    def _site_paths(self) -> list[str]:
        import site

        paths = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
        paths += [p for p in site.getsitepackages() if p not in paths]
        return [p for p in paths if os.path.isdir(p)]

    def _start(self) -> None:
        parent, child = socket.socketpair()
        config = {"ctl_fd": child.fileno()}
        env = {
            k: v
            for k, v in os.environ.items()
            if k in ("PATH", "LANG", "LC_ALL", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "CUDA_HOME")
        }
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0", PYTORCH_NVML_BASED_CUDA_CHECK="1")
        log = os.open(self._base / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            self._worker = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-S",
                    "-B",
                    "-c",
                    BOOTSTRAP,
                    str(self._src),
                    json.dumps(config),
                    json.dumps(self._site_paths()),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(child.fileno(),),
                cwd=self._base,
                env=env,
                start_new_session=True,
            )
        finally:
            os.close(log)
            child.close()
        self._ctl, self._buffer = parent, b""
        ready = self._read_ctl(time.monotonic() + START_TIMEOUT_S)
        if not ready or "ready" not in ready:
            tail = log_tail(self._base / "worker.log")
            self._stop_worker()
            raise SandboxError(f"the grading worker did not start; its output ends with: {tail or '(nothing)'}")
        self.landlock = int(ready.get("landlock", 0))

    def _read_ctl(self, deadline: float, call: int | None = None) -> dict | None:
        """The worker's next message (for ``call``, when given: a stale one about an earlier call is
        skipped); ``None`` at the deadline or when the worker is gone."""
        while True:
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or self._ctl is None:
                    return None
                ready, _, _ = select.select([self._ctl], [], [], left)
                if not ready:
                    continue
                chunk = self._ctl.recv(65536)
                if not chunk:
                    return None
                self._buffer += chunk
            line, self._buffer = self._buffer.split(b"\n", 1)
            message = json.loads(line)
            if call is None or (isinstance(message, dict) and message.get("call") == call):
                return message

    def _stop_worker(self) -> None:
        worker, self._worker = self._worker, None
        if self._ctl is not None:
            self._ctl.close()
            self._ctl = None
        if worker is not None:
            try:
                os.killpg(worker.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._clean_uid()

    def _clean_uid(self) -> None:
        if self.uid is not None:
            uids.kill_uid_processes(self.uid)
            uids.remove_files_of(self.uid)

    # -- calls -----------------------------------------------------------------------------------
    def call(self, probe: str, kwargs: dict[str, Any], *, key: str, host: StageHost | None = None) -> dict:
        """Run ``probe(**kwargs)`` in a fresh call process; return its data (see the module docstring).

        ``key`` names the student function the call exercises (for the repeated-timeout rule).
        """
        if self.closed:
            raise SandboxError("the sandbox is closed")
        if self._timeouts.get(key, 0) >= REPEATED_TIMEOUTS:
            raise TimedOut(f"not run: {key} already timed out {REPEATED_TIMEOUTS} times in this grading")
        timeout = self.budget.allow(self.limits.call_timeout)
        if timeout is None:
            raise OutOfBudget(self.budget.exhausted_message())
        if self._worker is None or self._worker.poll() is not None:
            self._stop_worker()
            self._start()
        outcome = self._run(probe, kwargs, timeout, host)
        try:
            return verdict(
                outcome, timeout, limit=self.limits.call_timeout, budget_s=self.budget.total, step=host is not None
            )
        except TimedOut:
            self._timeouts[key] = self._timeouts.get(key, 0) + 1
            raise

    def _run(self, probe: str, kwargs: dict, timeout: float, host: StageHost | None) -> CallOutcome:
        self._count += 1
        folder = self._calls / f"call-{self._count}"
        isolation.prepare_private_dir(folder, self.uid, self.uid)
        judge_end, child_end = socket.socketpair()
        started = time.monotonic()
        deadline = started + timeout
        request = {
            "call": self._count,
            "dir": str(folder),
            "package": self.staged.package,
            "identity": self.identity,
            "uid": self.uid,
            "gid": self.uid,
            "landlock": self.confine,
            "protect": [str(REPO_ROOT), str(self._base / "worker.log")],
            "limits": self._limit_values(),
        }
        try:
            socket.send_fds(self._ctl, [json.dumps(request).encode()], [child_end.fileno()])
        finally:
            child_end.close()
        call = self._count
        started_msg = self._read_ctl(time.monotonic() + 30, call)
        pid = started_msg.get("pid") if isinstance(started_msg, dict) else None
        envelope, how, value = None, "exit", 0
        try:
            if pid is not None:
                try:
                    envelope, finished = converse(judge_end, {"probe": probe, "kwargs": kwargs}, deadline, host)
                except BaseException:  # a malformed message: stop the call and take its end message
                    self._end_call(pid, call)
                    raise
                ended = self._read_ctl(time.monotonic() + 5, call) if finished else None
                if ended is None:  # past its time, or stuck after answering: stop it
                    how = "exit" if finished else "timeout"
                    ended = self._end_call(pid, call)
                if isinstance(ended, dict) and ended.get("how") and how != "timeout":
                    how, value = ended["how"], int(ended.get("value", 0))
        finally:
            judge_end.close()
            self._clean_uid()
            log = log_tail(folder / LOG)
            isolation.remove_tree(folder)
        return CallOutcome(how, value, envelope, log, time.monotonic() - started)

    def _end_call(self, pid: int, call: int) -> dict | None:
        """Stop a call's processes (a stack dump first) and return the worker's message about its end."""
        _signal_group(pid, DUMP_SIGNAL)
        time.sleep(0.3)
        _signal_group(pid, signal.SIGKILL)
        self._clean_uid()
        ended = self._read_ctl(time.monotonic() + 10, call)
        if ended is None:
            self._stop_worker()  # it did not report the end of the call: a fresh one next time
        return ended

    def _limit_values(self) -> dict:
        values = self.limits.values()
        if self.uid is None:  # our own uid: its processes outside the sandbox count too
            values["max_processes"] += len(uids.processes_of(os.geteuid()))
        return values

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._ctl is not None:
            try:
                socket.send_fds(self._ctl, [b'{"op": "stop"}'], [])
            except OSError:
                pass
        self._stop_worker()
        isolation.remove_tree(self._base)
        if self.lease is not None:
            self.lease.release()


def _signal_group(pid: int, sig: int) -> None:
    for kill in (lambda: os.killpg(pid, sig), lambda: os.kill(pid, sig)):
        try:
            kill()
        except OSError:
            pass

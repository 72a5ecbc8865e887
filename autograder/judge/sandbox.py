"""The judge's side of the sandbox: one worker per grading, one confined process per call.

``Sandbox(staged).call(probe, kwargs, key=..., host=...)`` runs ``autograder.harness.probes``'s
``probe`` on the staged student package in a fresh, confined process (``autograder.harness.worker``)
and returns its raw data, or raises :class:`ProbeFailed` with one line for the student. Schedule
trials pass a stage ``host``: the call's stage requests (forwards, backwards) are answered by it in
this process, so the events that decide a grade are recorded here, out of the student's reach.

Per grading: a private folder ``src/`` (read-only copies of the sandbox's part of the autograder,
``autograder.layout.files_for("sandbox")``, and the staged package) and ``calls/``. When this
process is root, a private uid (``judge.isolation.lease_uid``) is leased for the whole grading:
every call runs as that uid, so it cannot signal, trace or read this process or another grading,
and after every call everything of that uid is killed and its files in world-writable folders are
removed. Each call has its own empty folder (its HOME and TMPDIR), removed afterwards.

Limits per call: wall-clock time (``Limits.call_timeout``, shortened to what the grading's budget
has left), address space, file size (a print flood fails with EFBIG), processes. A call that
times out gets ``SIGUSR2`` first (a traceback says where it hung), then is killed. A student
function that timed out twice is not called again (its later tests fail at once), so a hanging
submission costs two time-outs per function, not one per test.
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
from typing import Any, Protocol

from .. import layout
from ..harness import wire
from ..harness.worker import BOOTSTRAP, DUMP_SIGNAL, LOG
from . import access, isolation
from .budget import Budget
from .staging import REPO_ROOT, Staged
from .text import clean_line

GIB, MIB = 1 << 30, 1 << 20
START_TIMEOUT_S = 180.0
MAX_CHILD_MESSAGE = 64 * MIB
LOG_TAIL = 4096
REPEATED_TIMEOUTS = 2


class ProbeFailed(Exception):
    """A call gave no usable data: it timed out, crashed, exited, or returned malformed data."""


class TimedOut(ProbeFailed):
    """The call ran past its time limit."""


class OutOfBudget(ProbeFailed):
    """The grading's time budget had no time left for this call."""


class BadData(ProbeFailed):
    """The call answered with data the judge cannot accept."""


class SandboxError(RuntimeError):
    """The sandbox itself could not run (the grader's fault, not the student's)."""


class StageHost(Protocol):
    def handle(self, request: dict) -> dict:
        """Answer one stage request of the call (see ``autograder.judge.host``)."""


@dataclass(frozen=True)
class Limits:
    """``call_timeout``: seconds per call; ``memory_gib``: address space of a call (not set when
    CUDA is available: its runtime reserves far more); ``file_mib``: largest file a call may write;
    ``max_processes``: processes of the private uid."""

    call_timeout: float = 20.0
    memory_gib: float | None = 6.0
    file_mib: float = 64.0
    max_processes: int = 128


@dataclass
class CallOutcome:
    """How a call ended: ``how`` is exit/signal/timeout, with the worker's value; ``log``: tail of output."""

    how: str
    value: int
    envelope: dict | None
    log: str
    seconds: float


def choose_identity(level: isolation.IsolationLevel, confine: bool) -> tuple[isolation.UidLease | None, str, str]:
    """As root, who student code runs as: ``(lease, identity, note)``. A private uid when it can read
    the interpreter (``uid``); else, under Landlock, a private uid that keeps only the right to read
    files where Landlock allows (``uid-read``); else uid 0 without any capability (``nocaps``)."""
    lease = isolation.lease_uid()
    blocked = access.unreadable_for(lease.uid, access.needed_paths())
    if not blocked:
        return lease, "uid", ""
    if confine and level.landlock_abi >= 1:
        return (
            lease,
            "uid-read",
            (
                f"the interpreter's files ({blocked[0]}) are not readable by other users: the "
                f"private uid keeps the right to read files, only where Landlock allows"
            ),
        )
    lease.release()
    return (
        None,
        "nocaps",
        (
            f"the interpreter's files ({blocked[0]}) are not readable by other users, so calls run "
            f"as uid 0 without any capability"
        ),
    )


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
            tail = _tail(self._base / "worker.log")
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
            isolation.kill_uid_processes(self.uid)
            isolation.remove_files_of(self.uid)

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
        if outcome.how == "timeout" and timeout < self.limits.call_timeout:
            raise OutOfBudget(
                f"stopped after {timeout:.3g} s: the grading's time budget ({self.budget.total:g} s) "
                f"had no more time left for this call; make your code faster to get it graded"
            )
        return self._verdict(outcome, key, timeout, step=host is not None)

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
                    envelope, finished = _converse(judge_end, {"probe": probe, "kwargs": kwargs}, deadline, host)
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
            log = _tail(folder / LOG)
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
        memory = None
        if self.limits.memory_gib and not _cuda_maybe():
            memory = int(self.limits.memory_gib * GIB)
        processes = self.limits.max_processes
        if self.uid is None:  # our own uid: its processes outside the sandbox count too
            processes += len(isolation.processes_of(os.geteuid()))
        return {"memory_bytes": memory, "file_bytes": int(self.limits.file_mib * MIB), "max_processes": processes}

    def _verdict(self, outcome: CallOutcome, key: str, timeout: float, step: bool = False) -> dict:
        envelope = outcome.envelope
        if outcome.how == "timeout":
            self._timeouts[key] = self._timeouts.get(key, 0) + 1
            where = _where(outcome.log)
            also = ", and does every micro-batch's backward run exactly once" if step else ""
            raise TimedOut(f"timed out after {timeout:.3g} s{where}: does every loop end{also}?")
        if isinstance(envelope, dict) and envelope.get("op") == "result":
            if envelope.get("ok") is True and isinstance(envelope.get("data"), dict):
                return envelope["data"]
            message = clean_line(str(envelope.get("message", "")))
            raise ProbeFailed(message or "the call failed")
        if outcome.how == "signal":
            name = _signal_name(outcome.value)
            hint = " (out of memory?)" if outcome.value == signal.SIGKILL else ""
            raise ProbeFailed(f"your code's process was killed by {name}{hint}")
        if _flooded(outcome.log):
            raise ProbeFailed(
                "your code printed more output than the grader keeps (the output file limit); "
                "remove the prints from your loop"
            )
        last = next((line for line in reversed(outcome.log.splitlines()) if line.strip()), "")
        detail = f"; its output ends with: {clean_line(last, 300)}" if last and outcome.value == 70 else ""
        raise ProbeFailed(f"your code ended the process (exit status {outcome.value}) before the step returned{detail}")

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


def _converse(sock: socket.socket, request: dict, deadline: float, host: StageHost | None) -> tuple[dict | None, bool]:
    """Send the request, answer stage requests, return the call's result envelope and whether it came."""
    try:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        wire.send(sock, request)
        while True:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            message = wire.recv(sock, MAX_CHILD_MESSAGE)
            if not isinstance(message, dict):
                raise BadData("the call sent a malformed message")
            op = message.get("op")
            if op == "result":
                return message, True
            if host is None:
                wire.send(sock, {"error": "this call has no stages"})
                continue
            try:
                answer = host.handle(message)
            except Exception as exc:  # noqa: BLE001 - a request the host could not answer: the student's error
                answer = {"error": clean_line(f"{type(exc).__name__}: {exc}", 300)}
            wire.send(sock, answer)
    except TimeoutError:
        return None, False
    except (EOFError, ConnectionError, wire.WireError, OSError):
        return None, True


def _signal_group(pid: int, sig: int) -> None:
    for kill in (lambda: os.killpg(pid, sig), lambda: os.kill(pid, sig)):
        try:
            kill()
        except OSError:
            pass


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - LOG_TAIL))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _where(log: str) -> str:
    """`` (at schedules.py:42 in gpipe_step)`` from a faulthandler dump, if it names student code."""
    frames = [line.strip() for line in log.splitlines() if line.strip().startswith("File ")]
    for line in frames:  # faulthandler lists the innermost frame first
        if "/submission/" in line or "/assignment/" in line:
            path = line.split('"')[1] if '"' in line else ""
            rest = line.split(", line ", 1)[-1]
            return f" (at {path.rsplit('/', 1)[-1]}:{clean_line(rest)})"
    return ""


def _flooded(log: str) -> bool:
    return "[Errno 27]" in log or "File too large" in log


def _signal_name(value: int) -> str:
    try:
        return signal.Signals(value).name
    except ValueError:
        return f"signal {value}"


def _cuda_maybe() -> bool:
    return any(os.path.exists(p) for p in ("/dev/nvidia0", "/dev/nvidiactl"))

"""The terms and the end of one sandbox call (:mod:`autograder.judge.sandbox`): limits, errors, verdict.

:class:`Limits` is what a call may use; :class:`CallOutcome` is how it ended, as the judge saw it
(with the tail of its output, :func:`log_tail`); :func:`verdict` turns that into the probe's data or
one of the errors below, with one line for the student: a time-out (and where the student's code
hung), a budget used up, the probe's own failure, a signal, a print flood, or an exit before the
step returned.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from .text import clean_line

GIB, MIB = 1 << 30, 1 << 20
LOG_TAIL = 4096


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


@dataclass(frozen=True)
class Limits:
    """``call_timeout``: seconds per call; ``memory_gib``: address space of a call (not set when
    CUDA is available: its runtime reserves far more); ``file_mib``: largest file a call may write;
    ``max_processes``: processes of the private uid."""

    call_timeout: float = 20.0
    memory_gib: float | None = 6.0
    file_mib: float = 64.0
    max_processes: int = 128

    def values(self) -> dict:
        """What the worker sets for a call: sizes in bytes (no address space limit where CUDA may run), processes."""
        memory = None
        if self.memory_gib and not _cuda_maybe():
            memory = int(self.memory_gib * GIB)
        return {"memory_bytes": memory, "file_bytes": int(self.file_mib * MIB), "max_processes": self.max_processes}


@dataclass
class CallOutcome:
    """How a call ended: ``how`` is exit/signal/timeout, with the worker's value; ``log``: tail of output."""

    how: str
    value: int
    envelope: dict | None
    log: str
    seconds: float


def verdict(outcome: CallOutcome, timeout: float, *, limit: float, budget_s: float, step: bool = False) -> dict:
    """The call's data, or the :class:`ProbeFailed` that says in one line why there is none.

    ``timeout``: the seconds the call was given, ``limit`` (``Limits.call_timeout``) unless the grading's
    budget of ``budget_s`` seconds had less left (then a time-out is :class:`OutOfBudget`, else
    :class:`TimedOut`); ``step``: the call ran a schedule's step (its time-out hint names backwards too).
    """
    envelope = outcome.envelope
    if outcome.how == "timeout" and timeout < limit:
        raise OutOfBudget(
            f"stopped after {timeout:.3g} s: the grading's time budget ({budget_s:g} s) "
            f"had no more time left for this call; make your code faster to get it graded"
        )
    if outcome.how == "timeout":
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


def log_tail(path: Path) -> str:
    """The last ``LOG_TAIL`` bytes of a log file, as text; empty when it cannot be read."""
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

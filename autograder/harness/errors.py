"""One line about an exception raised in student code: what, a hint for well-known torch errors,
and where in the student's package it happened (e.g. ``at submission/schedules.py:80``)."""

from __future__ import annotations

import errno
import traceback

KNOWN_ERRORS = {  # fragment of a torch error -> what it usually means in this practical
    "backward through the graph a second time": "a micro-batch's backward ran twice: call backward() once per "
    "micro-batch",
    "does not require grad and does not have a grad_fn": "the loss is cut off from the graph: do not detach "
    "activations or call .item() on them",
    "Expected all tensors to be on the same device": "move each activation (and the targets) to the stage's device "
    "with .to()",
    "graph is gone": "a micro-batch's backward ran twice: call backward() once per micro-batch",
}
MAX_LINE = 600


def first_line(exc: BaseException) -> str:
    """The first non-empty line of ``str(exc)`` (empty if none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def student_frames(exc: BaseException, package: str) -> list[str]:
    """``file:line`` of the traceback's frames inside the student's package, outermost first."""
    frames = []
    for frame in traceback.extract_tb(exc.__traceback__):
        path = frame.filename.replace("\\", "/")
        if f"/{package}/" in path:
            frames.append(f"{path.rsplit('/', 1)[-1]}:{frame.lineno}")
    return frames


def describe_exception(exc: BaseException, package: str | None = None) -> str:
    """``TypeName: message [hint] (at package/first.py:10 -> inner.py:20)``, at most 600 characters."""
    frames = student_frames(exc, package) if package else []
    where = ""
    if frames:
        chain = frames[0] if len(frames) == 1 else f"{frames[0]} -> {frames[-1]}"
        where = f" (at {package}/{chain})"
    message = first_line(exc)
    if isinstance(exc, MemoryError):
        message = message or "ran out of memory"
        hint = " [the call's memory limit: is a list growing without end, or a tensor far larger than the batch?]"
    elif isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        hint = " [your code printed or wrote more output than the grader keeps: remove the prints from your loop]"
    else:
        hint = next((f" [{h}]" for k, h in KNOWN_ERRORS.items() if k in message), "")
    return f"{type(exc).__name__}: {message}{hint}{where}"[:MAX_LINE]

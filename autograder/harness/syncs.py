"""Host synchronisations in a schedule: reading a tensor's value on the host during the step.

On a GPU, ``.item()``, ``float(t)``, ``bool(t)``, ``print(t)``, ``.cpu()`` and the like wait until the device
has finished all queued work, so the host cannot queue the next stage's work meanwhile: inside a
schedule's loop, they serialise the pipeline. :class:`SyncWatch` notes each such read, with where
in the student's code it happened, in the executor's event stream; the judge decides which ones
matter (those before the step's last backward).
"""

from __future__ import annotations

import contextlib
import threading
import traceback

from torch.overrides import TorchFunctionMode

SYNC_METHODS = {
    "item",
    "tolist",
    "numpy",
    "__float__",
    "__int__",
    "__bool__",
    "__index__",
    "__complex__",
    "__repr__",
    "__str__",
    "__format__",
    "equal",
    "allclose",
    "is_nonzero",
    "cpu",
}
# ``.to("cpu")`` is not in the list: on a CPU-only grader the stages' own devices are "cpu" too,
# so it cannot be told apart from moving an activation to the next stage.


_state = threading.local()


@contextlib.contextmanager
def internal():
    """Reads of tensor values by the harness itself (sending a tensor to the judge) are not the
    student's: ``with internal(): ...`` keeps :class:`SyncWatch` from counting them."""
    depth = getattr(_state, "depth", 0)
    _state.depth = depth + 1
    try:
        yield
    finally:
        _state.depth = depth


class SyncWatch(TorchFunctionMode):
    """While active, report every host read of a tensor value to ``executor.note("sync", where)``."""

    def __init__(self, executor, package: str):
        super().__init__()
        self.executor = executor
        self.package = package
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in SYNC_METHODS and not getattr(_state, "depth", 0):
            self.count += 1
            if self.count <= 50:
                self.executor.note("sync", f"{name} at {self._where()}")
        return func(*args, **(kwargs or {}))

    def _where(self) -> str:
        for frame in reversed(traceback.extract_stack()[:-2]):
            path = frame.filename.replace("\\", "/")
            if f"/{self.package}/" in path:
                return f"{path.rsplit('/', 1)[-1]}:{frame.lineno}"
        return "?"


def watching(executor, package: str) -> SyncWatch:
    """``with watching(executor, package): step(...)``."""
    return SyncWatch(executor, package)


__all__ = ["SYNC_METHODS", "SyncWatch", "internal", "watching"]

"""The grading's time budget: the whole grading gets ``total`` seconds, shared by its calls.

Every call's time limit is the per-call limit or what the budget has left, whichever is smaller.
When the budget is spent, later calls are not made: their tests fail saying so, and every test
that finished keeps its points. The default, 480 s, leaves two minutes of Gradescope's default
10-minute limit for starting up and writing results; the grading CLI stops the judge at
``total + STOP_MARGIN_S`` in any case and still writes a valid results.json.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

DEFAULT_TOTAL_S = 480.0
MIN_CALL_S = 1.0  # a call gets at least this much, or is not made
STOP_MARGIN_S = 30.0


@dataclass
class Budget:
    total: float = DEFAULT_TOTAL_S
    started: float = field(default_factory=time.monotonic)
    calls: int = 0
    denied: int = 0

    def remaining(self) -> float:
        return self.total - (time.monotonic() - self.started)

    def allow(self, limit: float) -> float | None:
        """Seconds the next call may take (at most ``limit``), or None when the budget is spent."""
        left = self.remaining()
        if left < MIN_CALL_S:
            self.denied += 1
            return None
        self.calls += 1
        return min(limit, left)

    def exhausted_message(self) -> str:
        used = time.monotonic() - self.started
        return (
            f"not run: the grading's time budget ({self.total:g} s) was used up after {used:.0f} s and "
            f"{self.calls} calls into your code (about {used / max(self.calls, 1):.1f} s each); make your "
            f"code faster to get these tests graded"
        )

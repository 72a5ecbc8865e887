"""The reference per-stage GPipe and 1F1B schedules (TA only: the student release leaves this module out).

They are the answers of Part 6 (``per_stage.py``: ``gpipe_actions`` and ``one_f_one_b_actions``) as
data, ``{stage: [Action, ...]}`` with stage s on rank s, written independently of ``solutions/``
so that the repository's tests can compare the two. Code that students receive (the figures, the
notebook, ``python -m autograder.runtime``) takes these lists from the student's own ``per_stage.py``
instead; ``tests/test_student_release.py`` checks that no released file defines or imports them.
"""
from __future__ import annotations

from ..schedules.actions import Action, Schedule, _check_pm

__all__ = ["gpipe_schedule", "one_f_one_b_schedule"]


def gpipe_schedule(p: int, m: int) -> Schedule:
    """GPipe (all forwards, then all backwards): stage s runs F0..F(m-1) then B0..B(m-1).
    Makespan (m + p - 1) * (F + B); every stage holds all m micro-batches at its peak."""
    p, m = _check_pm(p, m)
    return {s: [Action(s, "F", k) for k in range(m)] + [Action(s, "B", k) for k in range(m)]
            for s in range(p)}


def one_f_one_b_schedule(p: int, m: int) -> Schedule:
    """1F1B (PipeDream-flush). Stage s: warm-up with min(p - s - 1, m) forwards, then alternate
    one forward and one backward while forwards remain, then the remaining backwards.
    Same makespan as GPipe, but stage s holds at most min(p - s, m) micro-batches."""
    p, m = _check_pm(p, m)
    schedule: Schedule = {}
    for s in range(p):
        warmup = min(p - s - 1, m)
        actions = [Action(s, "F", k) for k in range(warmup)]
        backward = 0
        for forward in range(warmup, m):  # steady state: 1 forward, 1 backward
            actions += [Action(s, "F", forward), Action(s, "B", backward)]
            backward += 1
        actions += [Action(s, "B", k) for k in range(backward, m)]  # cool-down
        schedule[s] = actions
    return schedule

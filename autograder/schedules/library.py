"""Fixed schedules, one stage per rank (stage s on rank s): the naive pipeline (Option A, the
baseline of every speedup) and the per-stage order of the delayed-backward loop (Option C).

GPipe and 1F1B as per-stage lists are not here: writing them is Part 6 of the assignment
(``per_stage.py``); the reference lists are the instructor's (``autograder.instructor``).
"""

from __future__ import annotations

from .actions import Action, Schedule, _check_pm


def naive_schedule(p: int, m: int) -> Schedule:
    """No pipelining: micro-batch k goes forward and backward through every stage before k+1
    starts. Every stage runs F0 B0 F1 B1 ...; makespan m * p * (F + B)."""
    p, m = _check_pm(p, m)
    return {s: [Action(s, kind, k) for k in range(m) for kind in ("F", "B")] for s in range(p)}


def delayed_backward_schedule(p: int, m: int) -> Schedule:
    """Per-stage order of the single-process "delayed backward" loop::

        for i in range(m):
            forward micro-batch i through all stages
            if i > 0: backward micro-batch i - 1 through all stages (stage p-1 first)
        backward micro-batch m - 1

    Every stage runs F0 F1 B0 F2 B1 ... F(m-1) B(m-2) B(m-1).
    """
    p, m = _check_pm(p, m)
    schedule: Schedule = {}
    for s in range(p):
        actions = [Action(s, "F", 0)]
        for i in range(1, m):
            actions += [Action(s, "F", i), Action(s, "B", i - 1)]
        actions.append(Action(s, "B", m - 1))
        schedule[s] = actions
    return schedule

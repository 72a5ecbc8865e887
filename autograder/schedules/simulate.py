"""The cost model and the in-order device simulator.

:func:`simulate` runs a schedule on one in-order virtual device per rank: each action starts when
its rank's previous action and its :func:`dependencies` have ended. It gives a :class:`SimResult`
(makespan, bubble fraction, peak in-flight micro-batches per stage) or raises
:class:`~autograder.schedules.actions.DeadlockError` when no rank can make progress.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .actions import (
    KINDS,
    Action,
    DeadlockError,
    Schedule,
    ScheduleError,
    _is_int,
    num_stages_of,
    parse_action,
    parse_schedule,
)


def _check_cost(name: str, value: Any) -> None:
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not is_number or not math.isfinite(value) or value < 0:
        raise ScheduleError(f"Costs.{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class Costs:
    """Duration of each kind of action, in abstract time units (or seconds; any one unit).

    ``backward`` is a full ``B``; its halves ``input_grad`` (``I``) and ``weight_grad`` (``W``)
    default to ``backward / 2`` each. ``transfer`` is added between an action and a dependent
    action that runs on another rank (sending an activation or a gradient).

    ``rows``, when given, are the rows of each micro-batch (index = micro-batch): every action's
    cost is then scaled by ``rows[mb] / mean(rows)``, so uneven micro-batches take time in
    proportion to their size while the average micro-batch still costs ``forward`` / ``backward``.
    """

    forward: float = 1.0
    backward: float = 2.0
    input_grad: float | None = None
    weight_grad: float | None = None
    transfer: float = 0.0
    rows: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("forward", "backward", "transfer"):
            _check_cost(name, getattr(self, name))
        for name in ("input_grad", "weight_grad"):
            if getattr(self, name) is not None:
                _check_cost(name, getattr(self, name))
        if self.rows is not None:
            rows = tuple(self.rows)
            if not rows or not all(_is_int(r) and r > 0 for r in rows):
                raise ScheduleError(f"Costs.rows must be a non-empty sequence of ints > 0, got {self.rows!r}")
            object.__setattr__(self, "rows", tuple(int(r) for r in rows))

    def base(self, kind: str) -> float:
        """Cost of an average micro-batch's action of this kind (before ``rows`` scaling)."""
        if kind == "F":
            return float(self.forward)
        if kind == "B":
            return float(self.backward)
        if kind == "I":
            return float(self.backward / 2 if self.input_grad is None else self.input_grad)
        if kind == "W":
            return float(self.backward / 2 if self.weight_grad is None else self.weight_grad)
        raise ScheduleError(f"unknown action kind {kind!r}: expected one of {', '.join(KINDS)}")

    def cost(self, action: Any) -> float:
        """Duration of ``action`` (anything :func:`parse_action` accepts), in time units."""
        action = parse_action(action)
        value = self.base(action.kind)
        if self.rows is not None:
            if action.mb >= len(self.rows):
                raise ScheduleError(
                    f"Costs.rows has {len(self.rows)} entries (micro-batches 0..{len(self.rows) - 1}) "
                    f"but the schedule has {action}"
                )
            value *= self.rows[action.mb] * len(self.rows) / sum(self.rows)
        return value


def dependencies(action: Action, num_stages: int, present: Iterable[Action] = ()) -> list[Action]:
    """Actions that must have ended before ``action`` may start, most local first.

    * ``F(s, k)`` needs ``F(s-1, k)`` (for ``s > 0``);
    * ``B(s, k)`` and ``I(s, k)`` need ``F(s, k)`` and, for ``s < num_stages - 1``, the
      gradient from stage ``s+1``: ``I(s+1, k)`` if that is in ``present`` (the schedule's
      actions), else ``B(s+1, k)`` if present, else the same kind as ``action``;
    * ``W(s, k)`` needs ``I(s, k)``.
    """
    s, kind, k = action
    if kind == "F":
        return [Action(s - 1, "F", k)] if s > 0 else []
    if kind == "W":
        return [Action(s, "I", k)]
    deps = [Action(s, "F", k)]
    if s < num_stages - 1:
        present = present if isinstance(present, (set, frozenset, dict)) else set(present)
        for downstream_kind in ("I", "B"):
            if Action(s + 1, downstream_kind, k) in present:
                deps.append(Action(s + 1, downstream_kind, k))
                break
        else:
            deps.append(Action(s + 1, kind, k))
    return deps


@dataclass(frozen=True)
class SimResult:
    """What happened (or would happen) when a schedule ran on in-order devices.

    * ``intervals``: ``{rank: [(action, start, end), ...]}`` in the rank's execution order; times in
      the cost unit (seconds for measured timelines), the earliest start is 0;
    * ``makespan``: end of the last action (time units);
    * ``busy``: ``{rank: total duration of its actions}``;
    * ``bubble_fraction``: ``1 - sum(busy) / (num_ranks * makespan)``, in [0, 1] (0 when empty);
    * ``peak_in_flight``: ``{stage: max number of micro-batches held at once}``, a micro-batch
      being held on a stage from the start of its ``F`` until the end of its backward there
      (``B``, or ``W`` for a split backward), the memory cost of a schedule.
    """

    intervals: dict[int, list[tuple[Action, float, float]]]
    makespan: float
    busy: dict[int, float]
    bubble_fraction: float
    peak_in_flight: dict[int, int] = field(default_factory=dict)

    @property
    def num_ranks(self) -> int:
        return len(self.intervals)

    @property
    def schedule(self) -> Schedule:
        """The per-rank action order this result ran."""
        return {rank: [a for a, _, _ in rows] for rank, rows in self.intervals.items()}

    def span(self, action: Any) -> tuple[float, float]:
        """``(start, end)`` of ``action`` (first occurrence); KeyError if it never ran."""
        action = parse_action(action)
        for rows in self.intervals.values():
            for a, start, end in rows:
                if a == action:
                    return (start, end)
        raise KeyError(f"{action} is not in this result")

    def summary(self) -> str:
        """One line: makespan, bubble fraction and peak in-flight micro-batches per stage."""
        peaks = ", ".join(f"stage {s}: {n}" for s, n in sorted(self.peak_in_flight.items()))
        return (
            f"makespan {self.makespan:g}, bubble fraction {self.bubble_fraction:.3f}, "
            f"peak in-flight micro-batches {{{peaks}}}"
        )


def _holds(intervals: Mapping[int, list[tuple[Action, float, float]]]) -> dict[tuple[int, int], tuple[float, float]]:
    """``{(stage, mb): (F start, backward end)}``: when each micro-batch is held on each stage.

    The backward end is the end of ``B``, or of ``W`` for a split backward (``I`` alone does not
    release: ``W`` still needs the stage's saved inputs); ``inf`` when it never ends.
    """
    f_start: dict[tuple[int, int], float] = {}
    bwd_end: dict[tuple[int, int], float] = {}
    for rows in intervals.values():
        for a, start, end in rows:
            key = (a.stage, a.mb)
            if a.kind == "F":
                f_start[key] = min(start, f_start.get(key, start))
            elif a.kind in ("B", "W"):
                bwd_end[key] = max(end, bwd_end.get(key, end))
    return {key: (start, bwd_end.get(key, math.inf)) for key, start in f_start.items()}


def _max_overlap(spans: list[tuple[float, float]]) -> int:
    """Max number of half-open spans ``[start, end)`` covering one instant (0 for none)."""
    return max((sum(1 for s, e in spans if s <= t < e) for t, _ in spans), default=0)


def _peak_in_flight(intervals: Mapping[int, list[tuple[Action, float, float]]]) -> dict[int, int]:
    """Max over time of micro-batches held per stage; holds are half-open ``[F start, bwd end)``."""
    by_stage: dict[int, list[tuple[float, float]]] = {}
    for (stage, _), span in _holds(intervals).items():
        by_stage.setdefault(stage, []).append(span)
    return {stage: _max_overlap(spans) for stage, spans in sorted(by_stage.items())}


def _result(intervals: dict[int, list[tuple[Action, float, float]]]) -> SimResult:
    busy = {rank: sum(end - start for _, start, end in rows) for rank, rows in intervals.items()}
    makespan = max((end for rows in intervals.values() for _, _, end in rows), default=0.0)
    capacity = len(intervals) * makespan
    bubble = 1.0 - sum(busy.values()) / capacity if capacity > 0 else 0.0
    return SimResult(intervals, makespan, busy, bubble, _peak_in_flight(intervals))


def _locate(schedule: Schedule) -> dict[Action, tuple[int, int]]:
    """``{action: (rank, step)}``; raises ScheduleError on an action listed twice."""
    where: dict[Action, tuple[int, int]] = {}
    for rank, actions in schedule.items():
        for step, a in enumerate(actions):
            if a in where:
                r0, s0 = where[a]
                raise ScheduleError(
                    f"{a} appears twice (rank {r0} step {s0} and rank {rank} step {step}): "
                    f"each action must run exactly once"
                )
            where[a] = (rank, step)
    return where


def _deadlock_message(
    schedule: Schedule,
    pos: dict[int, int],
    ended: Mapping[Action, float],
    where: Mapping[Action, tuple[int, int]],
    num_stages: int,
) -> str:
    parts = []
    for rank, actions in schedule.items():
        if pos[rank] >= len(actions):
            continue
        stuck = actions[pos[rank]]
        waits = next(d for d in dependencies(stuck, num_stages, where) if d not in ended)
        if waits not in where:
            note = " (which no rank runs)"
        else:
            other_rank, other_step = where[waits]
            if other_step == pos[other_rank]:
                note = ""  # it is that rank's next action, itself stuck: named in its own clause
            else:
                note = f" (which rank {other_rank} runs after {schedule[other_rank][pos[other_rank]]})"
        parts.append(f"rank {rank} is stuck at {stuck} waiting for {waits}{note}")
    return "deadlock: " + "; ".join(parts)


def simulate(schedule: Any, costs: Costs = Costs()) -> SimResult:
    """Run ``schedule`` on in-order virtual devices, one per rank, and time it with ``costs``.

    Each rank runs its list in order; an action starts when the rank's previous action has ended
    and every one of its :func:`dependencies` has ended (plus ``costs.transfer`` when the
    dependency ran on another rank). Time starts at 0. Deterministic.

    Raises :class:`DeadlockError` (one line naming each stuck rank, its next action and what
    that waits for) when actions remain but no rank can start one, and :class:`ScheduleError`
    for an action listed twice.
    """
    schedule = parse_schedule(schedule)
    where = _locate(schedule)
    num_stages = num_stages_of(schedule)
    pos = {rank: 0 for rank in schedule}
    clock = {rank: 0.0 for rank in schedule}
    ended: dict[Action, float] = {}
    intervals: dict[int, list[tuple[Action, float, float]]] = {rank: [] for rank in schedule}
    progress = True
    while progress:
        progress = False
        for rank, actions in schedule.items():
            while pos[rank] < len(actions):
                action = actions[pos[rank]]
                deps = dependencies(action, num_stages, where)
                if any(d not in ended for d in deps):
                    break
                start = max([clock[rank]] + [ended[d] + (costs.transfer if where[d][0] != rank else 0.0) for d in deps])
                end = start + costs.cost(action)
                intervals[rank].append((action, start, end))
                ended[action] = clock[rank] = end
                pos[rank] += 1
                progress = True
    if any(pos[rank] < len(actions) for rank, actions in schedule.items()):
        stuck = {rank: actions[pos[rank]] for rank, actions in schedule.items() if pos[rank] < len(actions)}
        raise DeadlockError(_deadlock_message(schedule, pos, ended, where, num_stages), stuck)
    return _result(intervals)

"""Pipeline schedules as data.

An *action* is one unit of work of one pipeline stage on one micro-batch:

* ``F``: forward of the stage on the micro-batch;
* ``B``: full backward (input and weight gradients);
* ``I`` / ``W``: the input-gradient and weight-gradient halves of ``B`` (zero-bubble schedules).

It prints like torch.distributed.pipelining's ``_Action``: ``Action(1, "F", 0)`` is ``1F0``
(stage 1, forward, micro-batch 0). A *schedule* is one list of actions per rank (device), in the
order that rank executes them: ``{rank: [Action, ...]}``. For ordinary schedules rank ``r`` runs
stage ``r``; an interleaved schedule puts several stages on one rank (stage ``s`` on rank
``s % num_ranks``). The number of stages is the largest stage index plus one.

An *event* is an action that really ran, with start and end times in seconds, recorded by the
tracing harness (``autograder.tracing``) around the stages; student code never creates events.

What this module offers (pure Python, no torch):

* parsing: :func:`parse_action`, :func:`parse_schedule` (strings like ``"1F0"`` welcome);
* a cost model :class:`Costs` and an in-order device simulator :func:`simulate` giving a
  :class:`SimResult` (makespan, bubble fraction, peak in-flight micro-batches), which raises
  :class:`DeadlockError` when no rank can make progress;
* :func:`validate` (counts, placement, ordering) with a step x rank grid (:func:`format_grid`)
  marking the first offending action;
* replay of recorded events: :func:`schedule_from_events`, :func:`replay`,
  :func:`timeline_from_events`;
* two fixed schedules: :func:`naive_schedule` (Option A, the baseline) and
  :func:`delayed_backward_schedule` (the order of the Part 5 loop, Option C).

GPipe and 1F1B as per-stage lists are not here: writing them is Part 6 of the assignment
(``per_stage.py``: ``gpipe_actions`` and ``one_f_one_b_actions``).

Pictures of a :class:`SimResult` live in ``autograder.timeline``.
"""
from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional

KINDS = ("F", "B", "I", "W")


class Action(NamedTuple):
    stage: int
    kind: str
    mb: int

    def __str__(self) -> str:
        return f"{self.stage}{self.kind}{self.mb}"


class Event(NamedTuple):
    stage: int
    kind: str
    mb: int
    start: float
    end: float

    @property
    def action(self) -> Action:
        return Action(self.stage, self.kind, self.mb)

    def __str__(self) -> str:
        return f"{self.stage}{self.kind}{self.mb}"


KIND_NAMES = {"F": "forward", "B": "backward", "I": "input-grad", "W": "weight-grad"}

Schedule = dict[int, list[Action]]


class ScheduleError(ValueError):
    """A schedule (or an action in it) is malformed, incomplete or wrongly ordered.

    The message's first line says what is wrong; :func:`validate` appends a step x rank grid.
    """


class DeadlockError(ScheduleError):
    """No rank can start its next action: each one waits for an action that never comes.

    ``stuck`` maps each blocked rank to the action it is stuck at.
    """

    def __init__(self, message: str, stuck: Optional[Mapping[int, Action]] = None) -> None:
        super().__init__(message)
        self.stuck: dict[int, Action] = dict(stuck or {})


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------

_ACTION_RE = re.compile(r"^\s*(\d+)\s*([A-Za-z])\s*(\d+)\s*$")
_ACTION_HELP = "write actions as 'stageKINDmb' like '1F0', kind one of F, B, I, W"


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _check_index(value: Any, what: str, context: str) -> int:
    if not _is_int(value):
        raise ScheduleError(f"{context}{what} must be an int >= 0, got {value!r} ({type(value).__name__})")
    if value < 0:
        raise ScheduleError(f"{context}{what} must be an int >= 0, got {value!r}")
    return int(value)


def parse_action(x: Any, *, where: str = "") -> Action:
    """Turn ``x`` into an :class:`Action`.

    Accepts an ``Action`` (or an ``Event``, whose action is taken), a ``(stage, kind, mb)`` tuple
    or list, or a string like ``"1F0"`` / ``"12B3"``. Stage and micro-batch must be ints >= 0
    (``bool`` is refused), kind one of ``KINDS``. ``where`` (e.g. ``"rank 1, step 3: "``) is put
    in front of error messages. Raises :class:`ScheduleError` with a one-line message.
    """
    if isinstance(x, Event):
        x = x.action
    if isinstance(x, str):
        match = _ACTION_RE.match(x)
        if not match:
            raise ScheduleError(f"{where}cannot read action {x!r}: {_ACTION_HELP}")
        stage, kind, mb = int(match.group(1)), match.group(2), int(match.group(3))
    elif isinstance(x, (tuple, list)):
        if len(x) != 3:
            raise ScheduleError(f"{where}action {x!r} has {len(x)} fields, expected 3: "
                                f"(stage, kind, micro-batch), e.g. (1, 'F', 0)")
        stage, kind, mb = x
    else:
        raise ScheduleError(f"{where}cannot read action {x!r} ({type(x).__name__}): "
                            f"use Action(1, 'F', 0), (1, 'F', 0) or '1F0'")
    stage = _check_index(stage, "stage", f"{where}action {x!r}: ")
    mb = _check_index(mb, "micro-batch", f"{where}action {x!r}: ")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ScheduleError(
            f"{where}action {x!r}: kind {kind!r} is not one of {', '.join(KINDS)} "
            f"(forward, full backward, input-grad, weight-grad)")
    return Action(stage, kind, mb)


def _parse_rank_list(rank: int, actions: Any) -> list[Action]:
    if isinstance(actions, str):
        actions = actions.replace(",", " ").split()
    elif isinstance(actions, Action) or (
            isinstance(actions, tuple) and len(actions) == 3 and isinstance(actions[1], str)):
        raise ScheduleError(
            f"rank {rank}: expected a list of actions, got the single action {actions!r}; a schedule is "
            f"{{rank: [actions]}} or [[rank 0's actions], [rank 1's actions], ...]")
    if not isinstance(actions, Iterable):
        raise ScheduleError(
            f"rank {rank}: expected a list of actions, got {type(actions).__name__} {actions!r}")
    parsed = []
    for step, item in enumerate(actions):
        if item is None:  # torch.distributed.pipelining writes idle steps as None
            continue
        parsed.append(parse_action(item, where=f"rank {rank}, step {step}: "))
    return parsed


def parse_schedule(obj: Any) -> Schedule:
    """Turn ``obj`` into a schedule ``{rank: [Action, ...]}`` with ranks in increasing order.

    ``obj`` is a mapping ``{rank: actions}`` or a list of action lists (index = rank). Each rank's
    actions is an iterable of anything :func:`parse_action` accepts, or one string of actions
    separated by spaces or commas (``"0F0 0F1 0B0 0B1"``). ``None`` entries (torch's idle steps)
    are dropped. Ranks must be ints >= 0. Raises :class:`ScheduleError` naming the bad entry.
    """
    if isinstance(obj, Mapping):
        items = list(obj.items())
    elif isinstance(obj, (list, tuple)):
        items = list(enumerate(obj))
    else:
        raise ScheduleError(
            f"a schedule is a dict {{rank: [actions]}} or a list of per-rank action lists, "
            f"got {type(obj).__name__}")
    schedule: Schedule = {}
    for rank, actions in items:
        rank = _check_index(rank, "rank", "schedule: ")
        schedule[rank] = _parse_rank_list(rank, actions)
    return dict(sorted(schedule.items()))


def num_stages_of(schedule: Any) -> int:
    """Number of stages of a schedule: the largest stage index plus one (0 when empty)."""
    schedule = parse_schedule(schedule)
    return 1 + max((a.stage for actions in schedule.values() for a in actions), default=-1)


# --------------------------------------------------------------------------------------------
# Cost model
# --------------------------------------------------------------------------------------------

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
    input_grad: Optional[float] = None
    weight_grad: Optional[float] = None
    transfer: float = 0.0
    rows: Optional[tuple[int, ...]] = None

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
                    f"but the schedule has {action}")
            value *= self.rows[action.mb] * len(self.rows) / sum(self.rows)
        return value


# --------------------------------------------------------------------------------------------
# Dependencies and simulation
# --------------------------------------------------------------------------------------------

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
        return (f"makespan {self.makespan:g}, bubble fraction {self.bubble_fraction:.3f}, "
                f"peak in-flight micro-batches {{{peaks}}}")


def _peak_in_flight(intervals: Mapping[int, list[tuple[Action, float, float]]]) -> dict[int, int]:
    """Max over time of micro-batches held per stage; holds are half-open ``[F start, bwd end)``."""
    f_start: dict[tuple[int, int], float] = {}
    bwd_end: dict[tuple[int, int], float] = {}
    for rows in intervals.values():
        for a, start, end in rows:
            key = (a.stage, a.mb)
            if a.kind == "F":
                f_start[key] = min(start, f_start.get(key, start))
            elif a.kind in ("B", "W"):
                bwd_end[key] = max(end, bwd_end.get(key, end))
    holds: dict[int, list[tuple[float, float]]] = {}
    for key, start in f_start.items():
        holds.setdefault(key[0], []).append((start, bwd_end.get(key, math.inf)))
    peaks = {}
    for stage, spans in holds.items():
        peaks[stage] = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    return dict(sorted(peaks.items()))


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
                    f"each action must run exactly once")
            where[a] = (rank, step)
    return where


def _deadlock_message(schedule: Schedule, pos: dict[int, int], ended: Mapping[Action, float],
                      where: Mapping[Action, tuple[int, int]], num_stages: int) -> str:
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
                start = max([clock[rank]] + [
                    ended[d] + (costs.transfer if where[d][0] != rank else 0.0) for d in deps])
                end = start + costs.cost(action)
                intervals[rank].append((action, start, end))
                ended[action] = clock[rank] = end
                pos[rank] += 1
                progress = True
    if any(pos[rank] < len(actions) for rank, actions in schedule.items()):
        stuck = {rank: actions[pos[rank]] for rank, actions in schedule.items() if pos[rank] < len(actions)}
        raise DeadlockError(_deadlock_message(schedule, pos, ended, where, num_stages), stuck)
    return _result(intervals)


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------

def format_grid(schedule: Any, mark: Any = None) -> str:
    """The schedule as a step x rank grid, like torch.distributed.pipelining's pipeline order.

    Columns are ranks, rows are step indices (position in the rank's list), cells are actions.
    ``mark`` flags one cell with ``<-- ERROR HERE``: a ``(rank, step)`` pair of ints, or an
    action (anything :func:`parse_action` accepts; its first occurrence is marked).
    """
    schedule = parse_schedule(schedule)
    mark_at = _mark_position(schedule, mark)
    ranks = list(schedule)
    num_steps = max((len(actions) for actions in schedule.values()), default=0)
    step_labels = [f"step {i:0{len(str(max(num_steps - 1, 0)))}d}:" for i in range(num_steps)]
    label_width = max((len(label) for label in step_labels), default=len("step 0:"))
    cells = [[str(schedule[r][i]) if i < len(schedule[r]) else "" for r in ranks] for i in range(num_steps)]
    widths = [max([len(f"rank {r}")] + [len(row[j]) for row in cells]) for j, r in enumerate(ranks)]
    lines = [" " * label_width + "  " + "  ".join(f"{f'rank {r}':<{w}}" for r, w in zip(ranks, widths))]
    for i, (label, row) in enumerate(zip(step_labels, cells)):
        line = f"{label:<{label_width}}  " + "  ".join(f"{c:<{w}}" for c, w in zip(row, widths))
        if mark_at is not None and mark_at[1] == i:
            rank = mark_at[0]
            line += f"  <-- ERROR HERE (rank {rank}: {schedule[rank][i]})"
        lines.append(line.rstrip())
    return "\n".join(lines)


def _mark_position(schedule: Schedule, mark: Any) -> Optional[tuple[int, int]]:
    if mark is None:
        return None
    if isinstance(mark, tuple) and len(mark) == 2 and all(_is_int(x) for x in mark):
        rank, step = int(mark[0]), int(mark[1])
        if rank not in schedule or not 0 <= step < len(schedule[rank]):
            raise ScheduleError(f"format_grid: nothing at rank {rank}, step {step} to mark")
        return (rank, step)
    action = parse_action(mark)
    for rank, actions in schedule.items():
        if action in actions:
            return (rank, actions.index(action))
    raise ScheduleError(f"format_grid: {action} is not in the schedule, cannot mark it")


def _fail(schedule: Schedule, summary: str, mark: Optional[tuple[int, int]] = None) -> None:
    raise ScheduleError(f"{summary}\n{format_grid(schedule, mark)}")


def _check_count_arg(value: Any, name: str) -> Optional[int]:
    if value is None:
        return None
    if not _is_int(value) or value < 1:
        raise ScheduleError(f"validate: {name} must be an int >= 1, got {value!r}")
    return int(value)


def _first_local_violation(schedule: Schedule, num_stages: int, num_microbatches: int
                           ) -> Optional[tuple[str, tuple[int, int]]]:
    """Scan the grid row by row (step, then rank) for the first action wrong on its own:
    out of range, on the wrong rank, listed twice, mixing B with I/W, or running on its rank
    before the same-stage action it needs (F before B/I, I before W). Returns (summary, cell)."""
    where: dict[Action, tuple[int, int]] = {}
    for rank, actions in schedule.items():
        for step, a in enumerate(actions):
            where.setdefault(a, (rank, step))
    one_stage_per_rank = len(schedule) == num_stages
    seen: dict[Action, tuple[int, int]] = {}
    num_steps = max((len(actions) for actions in schedule.values()), default=0)
    for step in range(num_steps):
        for rank, actions in schedule.items():
            if step >= len(actions):
                continue
            a, cell = actions[step], (rank, step)
            if a.stage >= num_stages:
                return (f"{a}: stage {a.stage} is out of range, the pipeline has {num_stages} stages "
                        f"(0..{num_stages - 1})", cell)
            if a.mb >= num_microbatches:
                return (f"{a}: micro-batch {a.mb} is out of range, there are {num_microbatches} "
                        f"micro-batches (0..{num_microbatches - 1})", cell)
            if one_stage_per_rank and a.stage != rank:
                return (f"{a} is on rank {rank}, but with one stage per rank stage {a.stage} "
                        f"must run on rank {a.stage}", cell)
            if a in seen:
                r0, s0 = seen[a]
                return (f"{a} is listed twice (first at rank {r0}, step {s0}): each action runs exactly once",
                        cell)
            seen[a] = cell
            other_form = ("I", "W") if a.kind == "B" else ("B",) if a.kind in ("I", "W") else ()
            for kind in other_form:
                if Action(a.stage, kind, a.mb) in seen:
                    return (f"{a} mixes a full backward with a split one: stage {a.stage} micro-batch "
                            f"{a.mb} already has {Action(a.stage, kind, a.mb)}; use either B or I then W",
                            cell)
            need = {"B": "F", "I": "F", "W": "I"}.get(a.kind)
            if need:
                before = Action(a.stage, need, a.mb)
                if before in where and where[before][0] == rank and where[before][1] > step:
                    what = "its forward" if need == "F" else "its input-grad half"
                    return (f"{a} runs before {what} {before} on rank {rank} "
                            f"({before} is at step {where[before][1]})", cell)
    return None


def _first_count_violation(schedule: Schedule, num_stages: int, num_microbatches: int) -> Optional[str]:
    """First (stage, mb) without exactly one F and exactly one B or one I and one W."""
    present = {a for actions in schedule.values() for a in actions}
    for stage in range(num_stages):
        for mb in range(num_microbatches):
            has = {kind: Action(stage, kind, mb) in present for kind in KINDS}
            missing = []
            if not has["F"]:
                missing.append(Action(stage, "F", mb))
            if has["I"] or has["W"]:
                missing += [Action(stage, k, mb) for k in ("I", "W") if not has[k]]
            elif not has["B"]:
                missing.append(Action(stage, "B", mb))
            if missing:
                names = " and ".join(str(a) for a in missing)
                return (f"missing action {names}: every stage must run F and B (or I and W) exactly "
                        f"once for each of the {num_microbatches} micro-batches")
    return None


def validate(schedule: Any, num_stages: Optional[int] = None, num_microbatches: Optional[int] = None) -> None:
    """Check that ``schedule`` is a complete, correctly placed, deadlock-free pipeline schedule.

    ``num_stages`` / ``num_microbatches`` default to the largest stage / micro-batch index plus
    one. Checks, in this order, stopping at the first violation:

    1. each action, row by row: stage and micro-batch in range; stage ``s`` on rank ``s`` when
       there are as many ranks as stages; not listed twice; not mixing ``B`` with ``I``/``W``;
       not before the same-stage action it needs when that is on the same rank (``F`` before
       ``B``/``I``, ``I`` before ``W``);
    2. every (stage, micro-batch) has exactly one ``F`` and one ``B``, or one ``I`` and one ``W``;
    3. :func:`simulate` with unit costs, to find cross-rank ordering problems (deadlocks).

    Raises :class:`ScheduleError` (:class:`DeadlockError` for 3) whose message is one summary line
    followed by the step x rank grid, the offending action marked ``<-- ERROR HERE``.
    """
    schedule = parse_schedule(schedule)
    num_stages = _check_count_arg(num_stages, "num_stages") or num_stages_of(schedule)
    num_microbatches = _check_count_arg(num_microbatches, "num_microbatches") or (
        1 + max((a.mb for actions in schedule.values() for a in actions), default=-1))
    local = _first_local_violation(schedule, num_stages, num_microbatches)
    if local:
        _fail(schedule, *local)
    count = _first_count_violation(schedule, num_stages, num_microbatches)
    if count:
        _fail(schedule, count)
    try:
        simulate(schedule, Costs(forward=1.0, backward=1.0))
    except DeadlockError as err:
        rank = min(err.stuck, key=lambda r: (schedule[r].index(err.stuck[r]), r))
        mark = (rank, schedule[rank].index(err.stuck[rank]))
        raise DeadlockError(f"{err}\n{format_grid(schedule, mark)}", err.stuck) from None


# --------------------------------------------------------------------------------------------
# Recorded events
# --------------------------------------------------------------------------------------------

def _as_event(x: Any, index: int) -> Event:
    """An Event from an Event, a 5-tuple or a mapping with stage/kind/mb/start/end keys."""
    if isinstance(x, Mapping):
        try:
            x = tuple(x[k] for k in Event._fields)
        except KeyError as err:
            raise ScheduleError(f"event {index}: {x!r} lacks the key {err.args[0]!r}") from None
    if not isinstance(x, (tuple, list)) or len(x) != 5:
        raise ScheduleError(f"event {index}: expected (stage, kind, mb, start, end), got {x!r}")
    stage, kind, mb, start, end = x
    if _is_int(mb) and mb < 0:
        raise ScheduleError(
            f"event {index}: {stage}{kind}{mb} has micro-batch {mb}: the tracer could not tell which "
            f"micro-batch this activation was (see its notes)")
    action = parse_action((stage, kind, mb), where=f"event {index}: ")
    for name, t in (("start", start), ("end", end)):
        if not isinstance(t, numbers.Real) or isinstance(t, bool) or not math.isfinite(t):
            raise ScheduleError(f"event {index} ({action}): {name} time must be a finite number, got {t!r}")
    if end < start:
        raise ScheduleError(f"event {index} ({action}): ends at {end} before it starts at {start}")
    return Event(*action, float(start), float(end))


def _sorted_events(events: Iterable[Any]) -> list[Event]:
    parsed = [_as_event(x, i) for i, x in enumerate(events)]
    order = sorted(range(len(parsed)), key=lambda i: (parsed[i].start, parsed[i].end, i))
    return [parsed[i] for i in order]


def schedule_from_events(events: Iterable[Any]) -> Schedule:
    """The per-stage order recorded events ran in: ``{stage: [Action, ...]}`` (rank = stage).

    Each stage's actions are ordered by start time, ties by end time, then by position in
    ``events``. Events are :class:`Event` s, 5-tuples or mappings with the same fields.
    """
    schedule: Schedule = {}
    for e in _sorted_events(events):
        schedule.setdefault(e.stage, []).append(e.action)
    return dict(sorted(schedule.items()))


def replay(events: Iterable[Any], costs: Costs = Costs()) -> SimResult:
    """Simulate the order recorded ``events`` ran in, one in-order device per stage, with ``costs``.

    This is what the student's schedule would achieve on real pipeline hardware, whatever the
    machine it was recorded on (a single process runs every stage on one device).
    """
    return simulate(schedule_from_events(events), costs)


def timeline_from_events(events: Iterable[Any]) -> SimResult:
    """The measured timeline of ``events`` as a :class:`SimResult`, without simulation.

    Rank = stage; times (seconds) are shifted so the first start is 0; ``makespan`` is last end
    minus first start. Lets real runs and replays be drawn the same way (``autograder.timeline``).
    """
    ordered = _sorted_events(events)
    t0 = min((e.start for e in ordered), default=0.0)
    intervals: dict[int, list[tuple[Action, float, float]]] = {}
    for e in ordered:
        intervals.setdefault(e.stage, []).append((e.action, e.start - t0, e.end - t0))
    return _result(dict(sorted(intervals.items())))


# --------------------------------------------------------------------------------------------
# Fixed schedules (one stage per rank; stage s on rank s). GPipe and 1F1B: Part 6, per_stage.py
# --------------------------------------------------------------------------------------------

def _check_pm(p: Any, m: Any) -> tuple[int, int]:
    for name, value in (("p (number of stages)", p), ("m (number of micro-batches)", m)):
        if not _is_int(value) or value < 1:
            raise ScheduleError(f"{name} must be an int >= 1, got {value!r}")
    return int(p), int(m)


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

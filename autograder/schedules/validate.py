"""Validation of a schedule, with a step x rank grid marking the first offending action."""

from __future__ import annotations

from typing import Any, Optional

from .actions import KINDS, Action, DeadlockError, Schedule, ScheduleError, _is_int, num_stages_of, parse_action, parse_schedule
from .simulate import Costs, simulate

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



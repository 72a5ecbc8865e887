"""Validation of a schedule, with a step x rank grid marking the first offending action.

:func:`validate` checks any schedule (one stage per rank, or several: interleaved);
:func:`validate_interleaved` adds what Megatron-LM's interleaved 1F1B requires (looped placement,
micro-batches a multiple of the ranks). Every error is one summary line, then the grid.
"""

from __future__ import annotations

from typing import Any

from .actions import (
    KINDS,
    Action,
    DeadlockError,
    Schedule,
    ScheduleError,
    _is_int,
    interleaving_problem,
    num_stages_of,
    parse_action,
    parse_schedule,
)
from .simulate import Costs, simulate

PLACEMENTS = (None, "looped")


def format_grid(schedule: Any, mark: Any = None, window: int | None = None, label: str = "rank") -> str:
    """The schedule as a step x rank grid, like torch.distributed.pipelining's pipeline order.

    Columns are ranks (``label``: "rank", or "stage" for recorded per-stage orders), rows are step
    indices (position in the rank's list), cells are actions. ``mark`` flags one cell with
    ``<-- ERROR HERE``: a ``(rank, step)`` pair of ints, or an action (anything
    :func:`parse_action` accepts; its first occurrence is marked). ``window``: show only the rows
    within that many steps of the mark (all rows without a mark or a window), saying how many
    were left out; the marked row is always shown.
    """
    schedule = parse_schedule(schedule)
    mark_at = _mark_position(schedule, mark)
    ranks = list(schedule)
    num_steps = max((len(actions) for actions in schedule.values()), default=0)
    step_labels = [f"step {i:0{len(str(max(num_steps - 1, 0)))}d}:" for i in range(num_steps)]
    label_width = max((len(label) for label in step_labels), default=len("step 0:"))
    cells = [[str(schedule[r][i]) if i < len(schedule[r]) else "" for r in ranks] for i in range(num_steps)]
    widths = [max([len(f"rank {r}")] + [len(row[j]) for row in cells]) for j, r in enumerate(ranks)]
    widths = [max(len(f"{label} {r}"), w) for r, w in zip(ranks, widths)]
    lines = [" " * label_width + "  " + "  ".join(f"{f'{label} {r}':<{w}}" for r, w in zip(ranks, widths))]
    first, last = 0, num_steps
    if window is not None and mark_at is not None:
        first, last = max(0, mark_at[1] - window), min(num_steps, mark_at[1] + window + 1)
    if first:
        lines.append(f"{'':<{label_width}}  ... {first} step(s) above")
    for i in range(first, last):
        line = f"{step_labels[i]:<{label_width}}  " + "  ".join(f"{c:<{w}}" for c, w in zip(cells[i], widths))
        if mark_at is not None and mark_at[1] == i:
            rank = mark_at[0]
            line += f"  <-- ERROR HERE ({label} {rank}: {schedule[rank][i]})"
        lines.append(line.rstrip())
    if last < num_steps:
        lines.append(f"{'':<{label_width}}  ... {num_steps - last} step(s) below")
    return "\n".join(lines)


def _mark_position(schedule: Schedule, mark: Any) -> tuple[int, int] | None:
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


def _fail(schedule: Schedule, summary: str, mark: tuple[int, int] | None = None) -> None:
    raise ScheduleError(f"{summary}\n{format_grid(schedule, mark)}")


def _check_count_arg(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or value < 1:
        raise ScheduleError(f"validate: {name} must be an int >= 1, got {value!r}")
    return int(value)


Cell = tuple[int, int]  # (rank, step)


def _stage_homes(schedule: Schedule) -> dict[int, tuple[int, int, int]]:
    """``{stage: (rank, n, total)}``: the rank holding most of the stage's ``total`` actions (``n``
    of them; ties go to the lower rank), taken as where the stage lives."""
    counts: dict[int, dict[int, int]] = {}
    for rank, actions in schedule.items():
        for a in actions:
            per_rank = counts.setdefault(a.stage, {})
            per_rank[rank] = per_rank.get(rank, 0) + 1
    homes = {}
    for stage, per_rank in counts.items():
        rank = max(per_rank, key=lambda r: (per_rank[r], -r))
        homes[stage] = (rank, per_rank[rank], sum(per_rank.values()))
    return homes


def _placement_problem(
    a: Action, rank: int, placement: str | None, num_ranks: int, num_stages: int, homes: dict[int, tuple[int, int, int]]
) -> str | None:
    """Why ``a`` may not run on ``rank``, or None. ``homes``: :func:`_stage_homes`."""
    if placement == "looped" and a.stage % num_ranks != rank:
        return (
            f"{a} is on rank {rank}, but with looped placement over {num_ranks} ranks stage {a.stage} runs on "
            f"rank {a.stage % num_ranks} (stage s on rank s % {num_ranks}: rank r holds stages r, "
            f"r+{num_ranks}, ...)"
        )
    if placement is None and num_ranks == num_stages and a.stage != rank:
        return f"{a} is on rank {rank}, but with one stage per rank stage {a.stage} must run on rank {a.stage}"
    home, n, total = homes[a.stage]
    if home != rank:
        return (
            f"{a} is on rank {rank}, but stage {a.stage} runs on rank {home} ({n} of its {total} actions): "
            f"a stage's weights live on one rank, so all its actions go in that rank's list"
        )
    return None


def _order_problem(a: Action, rank: int, step: int, where: dict[Action, Cell], seen: dict[Action, Cell]) -> str | None:
    """Why ``a`` at (rank, step) is wrong given the actions ``seen`` so far, or None."""
    if a in seen:
        r0, s0 = seen[a]
        return f"{a} is listed twice (first at rank {r0}, step {s0}): each action runs exactly once"
    other_form = ("I", "W") if a.kind == "B" else ("B",) if a.kind in ("I", "W") else ()
    for kind in other_form:
        if Action(a.stage, kind, a.mb) in seen:
            return (
                f"{a} mixes a full backward with a split one: stage {a.stage} micro-batch "
                f"{a.mb} already has {Action(a.stage, kind, a.mb)}; use either B or I then W"
            )
    need = {"B": "F", "I": "F", "W": "I"}.get(a.kind)
    if need:
        before = Action(a.stage, need, a.mb)
        if before in where and where[before][0] == rank and where[before][1] > step:
            what = "its forward" if need == "F" else "its input-grad half"
            return f"{a} runs before {what} {before} on rank {rank} ({before} is at step {where[before][1]})"
    return None


def _first_local_violation(
    schedule: Schedule, num_stages: int, num_microbatches: int, placement: str | None = None
) -> tuple[str, Cell] | None:
    """Scan the grid row by row (step, then rank) for the first action wrong on its own:
    out of range, on the wrong rank, listed twice, mixing B with I/W, or running on its rank
    before the same-stage action it needs (F before B/I, I before W). Returns (summary, cell)."""
    where: dict[Action, Cell] = {}
    for rank, actions in schedule.items():
        for step, a in enumerate(actions):
            where.setdefault(a, (rank, step))
    seen: dict[Action, Cell] = {}
    homes = _stage_homes(schedule)
    num_steps = max((len(actions) for actions in schedule.values()), default=0)
    for step in range(num_steps):
        for rank, actions in schedule.items():
            if step >= len(actions):
                continue
            a, cell = actions[step], (rank, step)
            if a.stage >= num_stages:
                return (
                    f"{a}: stage {a.stage} is out of range, the pipeline has {num_stages} stages (0..{num_stages - 1})",
                    cell,
                )
            if a.mb >= num_microbatches:
                return (
                    f"{a}: micro-batch {a.mb} is out of range, there are {num_microbatches} "
                    f"micro-batches (0..{num_microbatches - 1})",
                    cell,
                )
            problem = _placement_problem(a, rank, placement, len(schedule), num_stages, homes) or _order_problem(
                a, rank, step, where, seen
            )
            if problem:
                return (problem, cell)
            seen[a] = cell
    return None


def _missing(present: set[Action], stage: int, mb: int) -> list[Action]:
    """The actions (stage, mb) lacks: F, and B or both of I and W."""
    has = {kind: Action(stage, kind, mb) in present for kind in KINDS}
    missing = [] if has["F"] else [Action(stage, "F", mb)]
    if has["I"] or has["W"]:
        missing += [Action(stage, k, mb) for k in ("I", "W") if not has[k]]
    elif not has["B"]:
        missing.append(Action(stage, "B", mb))
    return missing


def _first_count_violation(
    schedule: Schedule, num_stages: int, num_microbatches: int
) -> tuple[str, Cell | None] | None:
    """First (stage, mb) without exactly one F and exactly one B or one I and one W, as (summary,
    cell of the action it has that the missing one belongs with, e.g. the I of a missing W)."""
    where: dict[Action, Cell] = {}
    for rank, actions in schedule.items():
        for step, a in enumerate(actions):
            where.setdefault(a, (rank, step))
    for stage in range(num_stages):
        for mb in range(num_microbatches):
            missing = _missing(set(where), stage, mb)
            if not missing:
                continue
            partner = next((Action(stage, k, mb) for k in "IWFB" if Action(stage, k, mb) in where), None)
            cell = where[partner] if partner else None
            if [a.kind for a in missing] == ["W"]:
                return (
                    f"missing action {missing[0]}: {partner} (marked) has no weight-grad half; add "
                    f"{missing[0]} after it in rank {cell[0]}'s list (each micro-batch runs F, I and W "
                    f"on every stage)",
                    cell,
                )
            names = " and ".join(str(a) for a in missing)
            return (
                f"missing action {names}: every stage must run F and B (or I and W) exactly "
                f"once for each of the {num_microbatches} micro-batches",
                cell,
            )
    return None


def validate(
    schedule: Any, num_stages: int | None = None, num_microbatches: int | None = None, *, placement: str | None = None
) -> None:
    """Check that ``schedule`` is a complete, correctly placed, deadlock-free pipeline schedule.

    ``num_stages`` / ``num_microbatches`` default to the largest stage / micro-batch index plus
    one. ``placement``: ``None`` (stage ``s`` on rank ``s`` when there are as many ranks as
    stages; otherwise each stage on one rank, any) or ``"looped"`` (Megatron's interleaving:
    stage ``s`` on rank ``s % num_ranks``, ``num_ranks = len(schedule)``). Checks, in this
    order, stopping at the first violation:

    1. each action, row by row: stage and micro-batch in range; on the rank ``placement`` says,
       and every action of a stage on the same rank; not listed twice; not mixing ``B`` with
       ``I``/``W``; not before the same-stage action it needs when that is on the same rank
       (``F`` before ``B``/``I``, ``I`` before ``W``);
    2. every (stage, micro-batch) has exactly one ``F`` and one ``B``, or one ``I`` and one ``W``
       (the mark is on the action the missing one belongs with, e.g. the ``I`` of a missing ``W``);
    3. :func:`simulate` with unit costs, to find cross-rank ordering problems (deadlocks).

    Raises :class:`ScheduleError` (:class:`DeadlockError` for 3) whose message is one summary line
    followed by the step x rank grid, the offending action marked ``<-- ERROR HERE``.
    """
    if placement not in PLACEMENTS:
        raise ScheduleError(f"validate: placement must be None or 'looped', got {placement!r}")
    schedule = parse_schedule(schedule)
    num_stages = _check_count_arg(num_stages, "num_stages") or num_stages_of(schedule)
    num_microbatches = _check_count_arg(num_microbatches, "num_microbatches") or (
        1 + max((a.mb for actions in schedule.values() for a in actions), default=-1)
    )
    local = _first_local_violation(schedule, num_stages, num_microbatches, placement)
    if local:
        _fail(schedule, *local)
    count = _first_count_violation(schedule, num_stages, num_microbatches)
    if count:
        _fail(schedule, *count)
    try:
        simulate(schedule, Costs(forward=1.0, backward=1.0))
    except DeadlockError as err:
        stuck = err.stuck
        rank = min(stuck, key=lambda r: (schedule[r].index(stuck[r]), r))
        mark = (rank, schedule[rank].index(stuck[rank]))
        raise DeadlockError(f"{err}\n{format_grid(schedule, mark)}", stuck) from None


def validate_interleaved(schedule: Any, num_ranks: int, num_microbatches: int, stages_per_rank: int) -> None:
    """:func:`validate` for Megatron-LM's interleaved 1F1B: ``num_ranks`` lists (ranks ``0..p-1``),
    ``p * v`` stages with stage ``s`` on rank ``s % p`` (looped placement), and ``num_microbatches``
    a multiple of ``num_ranks`` when ``stages_per_rank >= 2``. Raises :class:`ScheduleError`, one
    summary line then the grid, like :func:`validate`.
    """
    schedule = parse_schedule(schedule)
    problem = interleaving_problem(num_ranks, num_microbatches, stages_per_rank)
    if problem:
        _fail(schedule, problem)
    if list(schedule) != list(range(num_ranks)):
        _fail(schedule, f"expected one list per rank 0..{num_ranks - 1} (p = {num_ranks}), got ranks {list(schedule)}")
    validate(schedule, num_ranks * stages_per_rank, num_microbatches, placement="looped")

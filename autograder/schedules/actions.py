"""Actions, events and schedules: the data of the schedule language, and their parsing.

An *action* is one unit of work of one pipeline stage on one micro-batch:

* ``F``: forward of the stage on the micro-batch;
* ``B``: full backward (input and weight gradients);
* ``I`` / ``W``: the input-gradient and weight-gradient halves of ``B`` (zero-bubble schedules).

It prints like torch.distributed.pipelining's ``_Action``: ``Action(1, "F", 0)`` is ``1F0``
(stage 1, forward, micro-batch 0). A *schedule* is one list of actions per rank (device), in the
order that rank executes them: ``{rank: [Action, ...]}``. For ordinary schedules rank ``r`` runs
stage ``r``; an interleaved schedule puts several stages (model chunks) on one rank, with Megatron-LM's
*looped* placement: with ``p`` ranks and ``v`` stages per rank, rank ``r`` holds stages ``r, r + p,
..., r + (v - 1) p`` (:func:`stages_of_rank`), i.e. stage ``s`` runs on rank ``s % p``. The number of
stages is the largest stage index plus one.

An *event* is an action that really ran, with start and end times in seconds, recorded by the
tracing harness around the stages; student code never creates events.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

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

    def __init__(self, message: str, stuck: Mapping[int, Action] | None = None) -> None:
        super().__init__(message)
        self.stuck: dict[int, Action] = dict(stuck or {})


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
            raise ScheduleError(
                f"{where}action {x!r} has {len(x)} fields, expected 3: (stage, kind, micro-batch), e.g. (1, 'F', 0)"
            )
        stage, kind, mb = x
    else:
        raise ScheduleError(
            f"{where}cannot read action {x!r} ({type(x).__name__}): use Action(1, 'F', 0), (1, 'F', 0) or '1F0'"
        )
    stage = _check_index(stage, "stage", f"{where}action {x!r}: ")
    mb = _check_index(mb, "micro-batch", f"{where}action {x!r}: ")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ScheduleError(
            f"{where}action {x!r}: kind {kind!r} is not one of {', '.join(KINDS)} "
            f"(forward, full backward, input-grad, weight-grad)"
        )
    return Action(stage, kind, mb)


def _parse_rank_list(rank: int, actions: Any) -> list[Action]:
    if isinstance(actions, str):
        actions = actions.replace(",", " ").split()
    elif isinstance(actions, Action) or (
        isinstance(actions, tuple) and len(actions) == 3 and isinstance(actions[1], str)
    ):
        raise ScheduleError(
            f"rank {rank}: expected a list of actions, got the single action {actions!r}; a schedule is "
            f"{{rank: [actions]}} or [[rank 0's actions], [rank 1's actions], ...]"
        )
    if not isinstance(actions, Iterable):
        raise ScheduleError(f"rank {rank}: expected a list of actions, got {type(actions).__name__} {actions!r}")
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
            f"a schedule is a dict {{rank: [actions]}} or a list of per-rank action lists, got {type(obj).__name__}"
        )
    schedule: Schedule = {}
    for rank, actions in items:
        rank = _check_index(rank, "rank", "schedule: ")
        schedule[rank] = _parse_rank_list(rank, actions)
    return dict(sorted(schedule.items()))


def num_stages_of(schedule: Any) -> int:
    """Number of stages of a schedule: the largest stage index plus one (0 when empty)."""
    schedule = parse_schedule(schedule)
    return 1 + max((a.stage for actions in schedule.values() for a in actions), default=-1)


def _check_pm(p: Any, m: Any) -> tuple[int, int]:
    for name, value in (("p (number of stages)", p), ("m (number of micro-batches)", m)):
        if not _is_int(value) or value < 1:
            raise ScheduleError(f"{name} must be an int >= 1, got {value!r}")
    return int(p), int(m)


def stages_of_rank(rank: int, num_ranks: int, stages_per_rank: int) -> list[int]:
    """The stages rank ``rank`` holds under looped placement: ``rank, rank + p, ..., rank + (v-1) p``.

    ``p = num_ranks``, ``v = stages_per_rank``; the pipeline has ``p * v`` stages and stage ``s``
    runs on rank ``s % p``. Chunk ``c`` of rank ``r`` is stage ``c * p + r``.
    """
    for name, value in (("num_ranks", num_ranks), ("stages_per_rank", stages_per_rank)):
        if not _is_int(value) or value < 1:
            raise ScheduleError(f"{name} must be an int >= 1, got {value!r}")
    if not _is_int(rank) or not 0 <= rank < num_ranks:
        raise ScheduleError(f"rank must be an int in 0..{num_ranks - 1}, got {rank!r}")
    return [chunk * num_ranks + rank for chunk in range(stages_per_rank)]


def interleaving_problem(num_ranks: int, num_microbatches: int, stages_per_rank: int) -> str | None:
    """Why Megatron-LM's interleaved 1F1B cannot run these sizes (one line), or None if it can.

    With ``stages_per_rank >= 2`` the micro-batches go through each rank's chunks in groups of
    ``num_ranks``, so ``num_microbatches`` must be a multiple of ``num_ranks`` (Megatron's
    constraint). ``stages_per_rank == 1`` is plain 1F1B, any ``num_microbatches``.
    """
    for name, value in (
        ("num_ranks (p)", num_ranks),
        ("num_microbatches (m)", num_microbatches),
        ("stages_per_rank (v)", stages_per_rank),
    ):
        if not _is_int(value) or value < 1:
            return f"{name} must be an int >= 1, got {value!r}"
    p, m = int(num_ranks), int(num_microbatches)
    if stages_per_rank == 1 or m % p == 0:
        return None
    options = " or ".join(f"m={k}" for k in sorted({m // p * p, (m // p + 1) * p}) if k > 0)
    return (
        f"interleaved 1F1B needs the number of micro-batches to be a multiple of the number of ranks "
        f"(Megatron's constraint), got m={m} with p={p} ranks: use {options}, or 1F1B / zero-bubble "
        f"(any m)"
    )

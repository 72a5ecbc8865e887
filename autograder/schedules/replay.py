"""Recorded events: the per-stage order they ran in, their replay on in-order devices, and the
measured timeline."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

from .actions import Action, Event, Schedule, ScheduleError, _is_int, parse_action
from .simulate import Costs, SimResult, _result, simulate


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
            f"micro-batch this activation was (see its notes)"
        )
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

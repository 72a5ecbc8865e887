"""Where a multi-process step's time goes, per action: waiting, messaging, Python, sleep overshoot.

Every rank records, for each action, four ``time.perf_counter()`` readings (seconds, shifted like
the events to the step's origin): ``waited`` (it starts waiting for the action's input), ``start``
(the input is there; the action starts), ``end`` (the action, emulated time included, is done)
and ``sent`` (its output has been handed to the process group). :func:`breakdown` turns them into
the costs that lengthen a step beyond the simulated ideal:

* ``hop``: from the end of the action that produced a message to the start of the action that
  needed it, when the receiver was already waiting (message latency: the sender's send call,
  transport, the receiver waking up);
* ``send``: ``sent - end``, the send call on the sender;
* ``between``: from ``sent`` of one action to ``waited`` of the next on the same rank (Python);
* ``over``: ``end - start - emulated``: how late an action ends (sleep overshoot, or compute
  longer than the emulated time).
"""

from __future__ import annotations

import statistics
from typing import Any, NamedTuple

from ..schedules import Action, Event, SimResult, timeline_from_events


class ActionTimes(NamedTuple):
    """One action's four clock readings on its rank (seconds since the step's origin)."""

    rank: int
    action: Action
    waited: float
    start: float
    end: float
    sent: float


def rank_timeline(events: list[Event], num_ranks: int) -> SimResult:
    """The measured timeline with one row per rank (stage ``s`` on rank ``s % num_ranks``)."""
    per_stage = timeline_from_events(events)
    intervals: dict[int, list] = {r: [] for r in range(num_ranks)}
    for stage, rows in per_stage.intervals.items():
        intervals[stage % num_ranks] += rows
    for rows in intervals.values():
        rows.sort(key=lambda row: (row[1], row[2]))
    busy = {r: sum(end - start for _, start, end in rows) for r, rows in intervals.items()}
    capacity = num_ranks * per_stage.makespan
    bubble = 1.0 - sum(busy.values()) / capacity if capacity > 0 else 0.0
    return SimResult(intervals, per_stage.makespan, busy, bubble, per_stage.peak_in_flight)


def _producer(a: Action, present: set[Action], num_stages: int) -> Action | None:
    """The action on another stage whose message ``a`` waits for, if any."""
    if a.kind == "F":
        return Action(a.stage - 1, "F", a.mb) if a.stage > 0 else None
    if a.kind in ("B", "I") and a.stage < num_stages - 1:
        nxt = Action(a.stage + 1, "I", a.mb)
        return nxt if nxt in present else Action(a.stage + 1, "B", a.mb)
    return None


def breakdown(profile: list[ActionTimes], emulated: dict[Action, float], num_ranks: int) -> dict[str, list[float]]:
    """Per-action costs of one step (seconds): ``{"hop", "send", "between", "over"}`` (see the module)."""
    by_action = {t.action: t for t in profile}
    num_stages = 1 + max(a.stage for a in by_action)
    out: dict[str, list[float]] = {"hop": [], "send": [], "between": [], "over": []}
    previous: dict[int, ActionTimes] = {}
    for t in sorted(profile, key=lambda t: (t.rank, t.waited)):
        out["send"].append(t.sent - t.end)
        out["over"].append(t.end - t.start - emulated.get(t.action, 0.0))
        if t.rank in previous:
            out["between"].append(t.waited - previous[t.rank].sent)
        previous[t.rank] = t
        src = _producer(t.action, set(by_action), num_stages)
        if src is not None and src.stage % num_ranks != t.rank and by_action[src].end > t.waited:
            out["hop"].append(t.start - by_action[src].end)
    return out


def summary(results: list[Any], skip: int = 1) -> str:
    """Lines for people: median / 90th percentile of each cost over the steps of ``results``
    (:class:`~autograder.dist.result.RunResult`), leaving out the first ``skip`` steps of each."""
    from .emulate import DeviceTime

    costs: dict[str, list[float]] = {"hop": [], "send": [], "between": [], "over": []}
    for result in results:
        spec = result.spec
        device = DeviceTime(spec.seconds_per_chunk, spec.batch_size)
        emulated = {
            a: device.seconds(a.kind, spec.sizes[a.mb]) if spec.seconds_per_batch else 0.0
            for acts in result.schedule.values()
            for a in acts
        }
        for profile in result.profile[skip:]:
            for name, values in breakdown(profile, emulated, spec.num_stages).items():
                costs[name] += values
    lines = []
    for name, values in costs.items():
        if values:
            values = sorted(values)
            lines.append(
                f"{name:8s} median {statistics.median(values) * 1e6:7.1f} us, "
                f"p90 {values[int(0.9 * (len(values) - 1))] * 1e6:7.1f} us ({len(values)} samples)"
            )
    return "\n".join(lines)

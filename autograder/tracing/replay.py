"""A traced step replayed on in-order devices: all the work it did, with the dependencies its data had.

:func:`autograder.schedules.replay` replays a schedule, one action per (stage, kind,
micro-batch). A traced step can do more work than its schedule: activation checkpointing runs a
stage's forward again before its backward, and a mistaken (or disguised) step runs forwards that
it throws away. All of that takes device time, so :func:`replay_trace` replays every recorded
event:

* each stage is one in-order device running its events in the order they were recorded (the
  judge's clock, never the student's);
* a forward of stage ``s`` on micro-batch ``k`` waits for the forward of stage ``s - 1`` on ``k``
  that last started before it: the one whose output it can have been given. A recomputation
  inside a backward (per-stage checkpointing) depends only on the stage's own saved input, so it
  waits for nothing new; a forward chain that is run again through every stage is serial again;
* a backward waits for the backward of stage ``s + 1`` on ``k`` that last started before it (its
  output gradient) and, being on the same device, for every earlier event of its stage;
* every event costs what its kind costs (``Costs``, scaled by the rows of its micro-batch).

So a schedule is credited with the overlap its data dependencies really allow, whatever the
student's code says about itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..schedules import Action, Costs, SimResult
from ..schedules.simulate import _result
from .recorder import TraceEvent


@dataclass(frozen=True)
class TraceReplay:
    """``result``: the replayed timeline (extra forwards are drawn as forwards again);
    ``timed``: every replayed event with its replayed ``(start, end)``; ``extra_forwards``:
    ``{(stage, micro-batch): forwards run beyond the first}``."""

    result: SimResult
    timed: list[tuple[TraceEvent, float, float]]
    extra_forwards: dict[tuple[int, int], int]

    def held_bytes(self) -> dict[int, int]:
        """Most bytes of saved activations each stage holds at once on the replayed timeline: the
        first forward of (stage, micro-batch) that kept a graph holds its ``saved_bytes`` from its
        start until that micro-batch's backward there ends."""
        graph_start: dict[tuple[int, int], tuple[float, int]] = {}
        spans: dict[int, list[tuple[float, float, int]]] = {}
        for event, start, end in self.timed:
            key = (event.stage, event.mb)
            if event.kind == "F" and event.graph:
                graph_start.setdefault(key, (start, event.saved_bytes))
            elif event.kind in ("B", "W") and key in graph_start:
                begin, size = graph_start.pop(key)
                spans.setdefault(event.stage, []).append((begin, end, size))
        return {
            stage: max(sum(b for s, e, b in held if s <= t < e) for t, _, _ in held)
            for stage, held in sorted(spans.items())
        }


def _waits_for(e: TraceEvent) -> list[tuple[int, str, int]]:
    """The (stage, kind, micro-batch) whose latest replayed end ``e`` waits for (its own stage's
    earlier events aside)."""
    if e.kind == "F":
        return [(e.stage - 1, "F", e.mb)]
    if e.kind == "W":
        return [(e.stage, "I", e.mb)]
    return [(e.stage + 1, "B", e.mb), (e.stage + 1, "I", e.mb)]  # B or I: the output gradient


def replay_trace(events: Iterable[TraceEvent], costs: Costs = Costs()) -> TraceReplay:
    """Replay every event of known micro-batch (see the module docstring). Deterministic."""
    ordered = sorted((e for e in events if e.mb >= 0), key=lambda e: (e.start, e.end))
    last_end: dict[tuple[int, str, int], float] = {}  # replayed end of the latest one of each
    clock: dict[int, float] = {}
    intervals: dict[int, list[tuple[Action, float, float]]] = {}
    timed: list[tuple[TraceEvent, float, float]] = []
    forwards: dict[tuple[int, int], int] = {}
    for e in ordered:
        start = max([clock.get(e.stage, 0.0)] + [last_end.get(key, 0.0) for key in _waits_for(e)])
        action = Action(e.stage, e.kind, e.mb)
        end = start + costs.cost(action)
        clock[e.stage] = last_end[(e.stage, e.kind, e.mb)] = end
        intervals.setdefault(e.stage, []).append((action, start, end))
        timed.append((e, start, end))
        if e.kind == "F":
            forwards[(e.stage, e.mb)] = forwards.get((e.stage, e.mb), 0) + 1
    extra = {key: n - 1 for key, n in sorted(forwards.items()) if n > 1}
    return TraceReplay(_result(dict(sorted(intervals.items()))), timed, extra)

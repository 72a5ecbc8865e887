"""Activation memory in bytes: what each forward saved for its backward, and the most a stage held.

A forward of stage s on micro-batch k saves ``saved_bytes`` of activations (the executor counts
them with saved-tensor hooks, parameters excluded); the stage holds them until that micro-batch's
backward there has ended. On a timeline (replayed or simulated), the bytes a stage holds at time t
are the sum over micro-batches in flight at t, so roughly *peak in flight x rows per micro-batch x
bytes per row*.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..schedules import SimResult
from .recorder import TraceEvent


def saved_bytes(events: Iterable[TraceEvent]) -> dict[tuple[int, int], int]:
    """``{(stage, micro-batch): bytes}`` saved by the first forward that kept a graph."""
    saved: dict[tuple[int, int], int] = {}
    for e in events:
        if e.kind == "F" and e.graph and e.mb >= 0:
            saved.setdefault((e.stage, e.mb), e.saved_bytes)
    return saved


def peak_held_bytes(result: SimResult, saved: Mapping[tuple[int, int], int]) -> dict[int, int]:
    """Most bytes of saved activations each stage holds at once on ``result``'s timeline (a
    micro-batch is held from the start of its forward to the end of its backward, ``B`` or ``W``)."""
    starts: dict[tuple[int, int], float] = {}
    spans: dict[int, list[tuple[float, float, int]]] = {}
    for rows in result.intervals.values():
        for action, start, end in rows:
            key = (action.stage, action.mb)
            if action.kind == "F":
                starts[key] = start
            elif action.kind in ("B", "W") and key in starts:
                spans.setdefault(action.stage, []).append((starts[key], end, saved.get(key, 0)))
    return {stage: max(sum(b for s, e, b in held if s <= t < e) for t, _, _ in held)
            for stage, held in sorted(spans.items())}

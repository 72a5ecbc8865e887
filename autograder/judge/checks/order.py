"""The order of forwards and backwards that a schedule trial recorded, against each option's rule.

The events come from the judge's stage host. :func:`canonical` reduces them to one ``F`` and one
``B`` per (stage, micro-batch):

* a stage may run a micro-batch's forward more than once: activation checkpointing runs it again
  inside the backward (after ``torch.no_grad()``, or with a graph both times), and a step may run
  a forward it throws away. The forward that counts is the last one that started before the
  micro-batch's backward began on a later stage (on the last stage: the first one). So per-stage
  checkpointing keeps the schedule's order, while a forward chain run again through the stages
  before the backward (a naive loop after thrown-away forwards, or one checkpoint around several
  stages) is the order it really runs in. Every extra forward is also work: the speed check
  replays them all (:mod:`autograder.tracing.replay`), with the dependencies their data had;
* two backwards of one micro-batch on one stage are the work done twice: a mistake.

Every stage's recorded order is shown as a grid (``autograder.schedules.format_grid``: one column
per stage, a window around the first wrong action, marked ``<-- ERROR HERE``), the same picture as
Part 6's lists.
"""

from __future__ import annotations

from ...schedules import Action, Event, delayed_backward_schedule, format_grid, schedule_from_events
from ...tracing import UNKNOWN_MB, TraceEvent
from ..trial import Trial
from .common import trial_failure

GRID_WINDOW = 5
LEGEND = (
    "Recorded order on each stage (F = forward, B = backward, stage then micro-batch: '1B3' is "
    "stage 1's backward of micro-batch 3):"
)


class Incomplete(Exception):
    """The trial's events are not one F and one B per (stage, micro-batch): the message says why."""


def canonical(trial: Trial) -> list[Event]:
    """One F and one B per (stage, micro-batch), in start order; raises :class:`Incomplete`."""
    p, m = trial.spec.num_stages, trial.spec.num_microbatches
    if trial.notes and any(e.mb == UNKNOWN_MB for e in trial.events):
        first = next(e for e in trial.events if e.mb == UNKNOWN_MB)
        raise Incomplete(_fail(trial, trial.notes[0], Event(first.stage, first.kind, first.mb, first.start, first.end)))
    forwards, backwards = _runs(trial)
    for (s, k), runs in sorted(backwards.items()):
        if len(runs) > 1:
            raise Incomplete(
                _fail(
                    trial,
                    f"the backward of micro-batch {k} ran twice on stage {s}: call backward once per micro-batch",
                    runs[1].event,
                )
            )
    kept = [_counted(runs, backwards, p).event for runs in forwards.values()]
    kept += [runs[0].event for runs in backwards.values()]
    kept.sort(key=lambda e: (e.start, e.end))
    for kind, what in (("F", "forward"), ("B", "backward")):
        table = forwards if kind == "F" else backwards
        for k in range(m):
            for s in range(p):
                if (s, k) not in table:
                    hint = " (is its loss.backward() missing?)" if kind == "B" else ""
                    raise Incomplete(_fail(trial, f"micro-batch {k} never ran {what} on stage {s}{hint}", None, kept))
    return kept


def _runs(trial: Trial) -> tuple[dict[tuple[int, int], list[TraceEvent]], dict[tuple[int, int], list[TraceEvent]]]:
    """The recorded forwards and backwards of each (stage, micro-batch), in recorded order."""
    forwards: dict[tuple[int, int], list[TraceEvent]] = {}
    backwards: dict[tuple[int, int], list[TraceEvent]] = {}
    for e in sorted(trial.events, key=lambda e: (e.start, e.end)):
        (forwards if e.kind == "F" else backwards).setdefault((e.stage, e.mb), []).append(e)
    return forwards, backwards


def recomputed(trial: Trial) -> list[tuple[int, int]]:
    """The (stage, micro-batch) pairs that ran their forward again after the one that counts: a
    recomputation (activation checkpointing), as opposed to forwards thrown away before it."""
    forwards, backwards = _runs(trial)
    p = trial.spec.num_stages
    return sorted(key for key, runs in forwards.items() if key[1] >= 0 and runs[-1] is not _counted(runs, backwards, p))


def _counted(runs: list[TraceEvent], backwards: dict[tuple[int, int], list[TraceEvent]], p: int) -> TraceEvent:
    """The forward of (stage, micro-batch) that counts among its ``runs`` (see the module docstring)."""
    s, k = runs[0].stage, runs[0].mb
    later = [b[0].start for (stage, mb), b in backwards.items() if mb == k and stage > s]
    if len(runs) == 1 or not later:
        return runs[0]
    before = [e for e in runs if e.start < min(later)]
    return before[-1] if before else runs[0]


def reran_forwards(trial: Trial) -> str:
    """A note naming the stages that ran a micro-batch's forward more than once ('' when none did)."""
    counts: dict[tuple[int, int], int] = {}
    for e in trial.events:
        if e.kind == "F" and e.mb >= 0:
            counts[(e.stage, e.mb)] = counts.get((e.stage, e.mb), 0) + 1
    again = sorted(key for key, n in counts.items() if n > 1)
    if not again:
        return ""
    s, k = again[0]
    more = f" (and {len(again) - 1} more stage and micro-batch pairs)" if len(again) > 1 else ""
    return (
        f"\nNote: stage {s} ran micro-batch {k}'s forward {counts[(s, k)]} times{more}. The forward that counts "
        f"is the last one before the micro-batch's backward began on a later stage: a forward thrown away "
        f"(under torch.no_grad()) earlier does not count, and activation checkpointing must wrap one stage at a "
        f"time to keep the schedule's order."
    )


def _fail(trial: Trial, summary: str, offending: Event | None, events: list[Event] | None = None) -> str:
    """``summary`` plus the per-stage grid of the recorded order, around ``offending``."""
    events = events if events is not None else trial.plain_events
    events = [e for e in events if e.mb >= 0]
    if offending is not None and offending.mb < 0:
        offending = None
    return f"{trial.spec}: {summary}\n" + grid(events, trial.spec.num_stages, offending)


def grid(events: list[Event], num_stages: int, offending: Event | None = None) -> str:
    """The per-stage recorded order as a grid, marking ``offending`` (a window around it)."""
    if not events:
        return "(no forward or backward of a stage was recorded)"
    schedule = schedule_from_events(events)
    for s in range(num_stages):
        schedule.setdefault(s, [])
    schedule = dict(sorted(schedule.items()))
    mark = None
    if offending is not None:
        actions = schedule.get(offending.stage, [])
        action = Action(offending.stage, offending.kind, offending.mb)
        positions = [i for i, a in enumerate(actions) if a == action]
        ordered = sorted((e for e in events if e.stage == offending.stage), key=lambda e: (e.start, e.end))
        index = next((i for i, e in enumerate(ordered) if e == offending), positions[0] if positions else None)
        mark = (offending.stage, index) if index is not None else None
    return LEGEND + "\n" + format_grid(schedule, mark, window=GRID_WINDOW if mark else 3 * GRID_WINDOW, label="stage")


def check_complete(trial: Trial) -> str | None:
    """Every (stage, micro-batch) ran one forward and one backward."""
    problem = trial_failure(trial)
    if problem:
        return problem
    try:
        canonical(trial)
    except Incomplete as exc:
        return str(exc)
    return None


def check_order(trial: Trial) -> str | None:
    """The schedule's own rule (naive, GPipe or the delayed-backward loop) on the canonical events."""
    problem = check_complete(trial)
    if problem:
        return problem
    events = canonical(trial)
    rule = {"naive": _naive, "gpipe": _gpipe, "delayed": _delayed}[trial.spec.schedule]
    problem = rule(trial, events)
    return problem + reran_forwards(trial) if problem else None


def _naive(trial: Trial, events: list[Event]) -> str | None:
    """Option A: one micro-batch at a time: a micro-batch starts only after the previous one has
    finished its backward on every stage (at most one micro-batch in the pipeline)."""
    spans: dict[int, list[float]] = {}
    for e in events:
        span = spans.setdefault(e.mb, [e.start, e.end])
        span[0], span[1] = min(span[0], e.start), max(span[1], e.end)
    order = sorted(spans, key=lambda k: spans[k][0])
    for before, after in zip(order, order[1:]):
        if spans[after][0] < spans[before][1]:
            offending = next(e for e in events if e.mb == after)
            return _fail(
                trial,
                f"{offending} started while micro-batch {before} was still in the pipeline: in the "
                f"naive schedule each micro-batch runs forward and backward through every stage "
                f"before the next one starts",
                offending,
                events,
            )
    return None


def _gpipe(trial: Trial, events: list[Event]) -> str | None:
    """Option B: on every stage, every forward before any backward."""
    last_forward = {}
    for e in events:
        if e.kind == "F":
            last_forward[e.stage] = e
    for e in events:
        if e.kind == "B" and e.start < last_forward[e.stage].end:
            return _fail(
                trial,
                f"{e} ran before {last_forward[e.stage]}: in GPipe every forward on a stage comes before "
                f"any backward (run the forward of every micro-batch first, keep their losses, then run "
                f"the backwards)",
                e,
                events,
            )
    return None


def _delayed(trial: Trial, events: list[Event]) -> str | None:
    """Option C: each stage runs F0 F1 B0 F2 B1 ... F(m-1) B(m-2) B(m-1): forward micro-batch i,
    then the backward of micro-batch i-1."""
    spec = trial.spec
    expected = delayed_backward_schedule(spec.num_stages, spec.num_microbatches)
    recorded = schedule_from_events(events)
    for s in range(spec.num_stages):
        for got, want in zip(recorded.get(s, []), expected[s]):
            if got != want:
                offending = next(e for e in events if (e.stage, e.kind, e.mb) == tuple(got))
                if want.kind == "B" and got.kind == "F":
                    why = (
                        f"stage {s} ran {got} where the loop runs {want}: after the forward of micro-batch "
                        f"{want.mb + 1}, run the backward of micro-batch {want.mb} before the next forward"
                    )
                else:
                    why = (
                        f"stage {s} ran {got} where the loop runs {want}: forward micro-batch i, then the backward "
                        f"of micro-batch i-1 (and the last micro-batch's backward after the loop)"
                    )
                return _fail(trial, why, offending, events)
    return None

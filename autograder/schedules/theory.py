"""Bubble and memory theory of pipeline schedules: the two bubble definitions, closed forms, helpers.

"The bubble" names two different numbers in the literature. Both measure the idle time of a step
(time in which a rank waits), against different denominators:

* **idle share** (:func:`idle_share`, also ``SimResult.bubble_fraction``): idle / (ranks x makespan),
  the share of the step's device time that is idle, in [0, 1). GPipe and 1F1B with p stages and m
  micro-batches: (p - 1) / (m + p - 1).
* **bubble ratio** (:func:`bubble_ratio`): idle / busy, the idle time over the ideal compute time:
  Megatron-LM's "bubble time fraction" (Narayanan et al., SC 2021) and the bubble rate of the
  zero-bubble paper (Qi et al., ICLR 2024). GPipe and 1F1B: (p - 1) / m; interleaved 1F1B with v
  chunks per rank: (p - 1) / (v m); ZB-H1 with F = I = W and m >= p: (p - 1) / (3 m).

One gives the other: share = r / (1 + r) for a ratio r, and r = share / (1 - share)
(:func:`share_from_ratio`, :func:`ratio_from_share`). Dividing the ratio by v does *not* divide the
share by v: interleaving takes 1F1B's share from (p - 1) / (m + p - 1) to (p - 1) / (v m + p - 1).

The closed forms (:func:`expected_bubble`, :func:`expected_peak_in_flight`, :func:`expected_messages`)
are for the schedule families of :data:`FAMILIES` on in-order devices (``simulate``) with no
transfer cost and even micro-batches; ``tests/unit/test_part7_schedules.py`` checks them against
the simulator. Costs are in the unit of :class:`~.simulate.Costs`; in-flight counts are micro-batches
(for an interleaved rank: chunk-micro-batches, one per chunk holding one micro-batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .actions import ScheduleError, _check_pm, _is_int, interleaving_problem, num_stages_of, parse_schedule
from .simulate import Costs, SimResult, _holds, _max_overlap, dependencies

FAMILIES = ("naive", "gpipe", "1f1b", "interleaved-1f1b", "zb-h1")


# -- the two definitions -----------------------------------------------------------------------------


def idle_share(result: SimResult) -> float:
    """Share of the step's device time that is idle: ``1 - sum(busy) / (ranks x makespan)``, in [0, 1].

    The same number as ``result.bubble_fraction``; 0 for an empty result.
    """
    capacity = result.num_ranks * result.makespan
    return 1.0 - sum(result.busy.values()) / capacity if capacity > 0 else 0.0


def bubble_ratio(result: SimResult) -> float:
    """Idle time over busy time, ``(ranks x makespan - sum(busy)) / sum(busy)``, in [0, inf).

    The papers' bubble: (p - 1) / m for GPipe / 1F1B with uniform costs. 0 for an empty result.
    """
    busy = sum(result.busy.values())
    return (result.num_ranks * result.makespan - busy) / busy if busy > 0 else 0.0


def share_from_ratio(ratio: float) -> float:
    """Idle share of a bubble ratio r: ``r / (1 + r)``."""
    if ratio < 0:
        raise ScheduleError(f"a bubble ratio is >= 0, got {ratio!r}")
    return ratio / (1.0 + ratio)


def ratio_from_share(share: float) -> float:
    """Bubble ratio of an idle share s: ``s / (1 - s)`` (s in [0, 1))."""
    if not 0 <= share < 1:
        raise ScheduleError(f"an idle share is in [0, 1), got {share!r}")
    return share / (1.0 - share)


# -- closed forms -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bubble:
    """One step of a schedule family in closed form, per rank (every rank of these families is
    equally busy). ``makespan`` and ``busy`` are in cost units; ``idle = makespan - busy``;
    ``ratio = idle / busy`` (the papers' bubble); ``share = idle / makespan`` (the idle share,
    ``SimResult.bubble_fraction``)."""

    makespan: float
    busy: float

    @property
    def idle(self) -> float:
        return self.makespan - self.busy

    @property
    def ratio(self) -> float:
        return self.idle / self.busy if self.busy > 0 else 0.0

    @property
    def share(self) -> float:
        return self.idle / self.makespan if self.makespan > 0 else 0.0


def _check_family(family: Any, p: Any, m: Any, v: Any) -> tuple[str, int, int, int]:
    if family not in FAMILIES:
        raise ScheduleError(f"unknown schedule family {family!r}: expected one of {', '.join(FAMILIES)}")
    p, m = _check_pm(p, m)
    if not _is_int(v) or v < 1:
        raise ScheduleError(f"v (stages per rank) must be an int >= 1, got {v!r}")
    if family != "interleaved-1f1b" and v != 1:
        raise ScheduleError(f"{family} has one stage per rank: v must be 1, got {v} (use 'interleaved-1f1b')")
    problem = interleaving_problem(p, m, v)
    if problem:
        raise ScheduleError(problem)
    if family == "interleaved-1f1b" and v == 1:
        family = "1f1b"  # one chunk per rank: Megatron runs plain 1F1B
    return family, p, m, int(v)


def expected_bubble(family: str, p: int, m: int, v: int = 1, costs: Costs = Costs()) -> Bubble:
    """The makespan and per-rank busy time of ``family`` in closed form (no transfer, even rows).

    ``costs`` are those of one rank's whole slice of the model (one stage when v = 1); an
    interleaved rank cuts its slice in v chunks of cost F / v and B / v. With F, B, I, W from
    ``costs`` (``Costs.base``):

    * ``naive``: makespan p m (F + B), busy m (F + B), so ratio p - 1;
    * ``gpipe``, ``1f1b``: (m + p - 1)(F + B), ratio (p - 1) / m, share (p - 1) / (m + p - 1);
    * ``interleaved-1f1b``: m (F + B) + (p - 1)(F + B) / v, ratio (p - 1) / (v m) (m a multiple
      of p when v >= 2, Megatron's constraint);
    * ``zb-h1``: busy m (F + I + W); makespan busy + (p - 1)(F + I - W) when m >= p, else
      (m + p - 1)(F + I) + W. Needs W <= min(F, I), where the deferred W's fill the cool-down;
      with F = I = W the ratio is (p - 1) / (3 m) for m >= p, a third of 1F1B's.

    Raises :class:`ScheduleError` (one line) outside these conditions: simulate the schedule then.
    """
    family, p, m, v = _check_family(family, p, m, v)
    if costs.transfer != 0 or costs.rows is not None:
        raise ScheduleError(
            "expected_bubble: the closed forms assume transfer = 0 and even micro-batches "
            "(rows=None); simulate the schedule instead"
        )
    f, b, i, w = (costs.base(kind) for kind in "FBIW")
    if family == "naive":
        return Bubble(p * m * (f + b), m * (f + b))
    if family in ("gpipe", "1f1b"):
        return Bubble((m + p - 1) * (f + b), m * (f + b))
    if family == "interleaved-1f1b":
        return Bubble(m * (f + b) + (p - 1) * (f + b) / v, m * (f + b))
    if w > min(f, i):
        raise ScheduleError(
            f"expected_bubble: ZB-H1's closed form needs W <= min(F, I), got F={f:g}, I={i:g}, "
            f"W={w:g}; simulate the schedule instead"
        )
    busy = m * (f + i + w)
    makespan = busy + (p - 1) * (f + i - w) if m >= p else (m + p - 1) * (f + i) + w
    return Bubble(makespan, busy)


def expected_peak_in_flight(family: str, p: int, m: int, v: int = 1) -> dict[int, int]:
    """Peak micro-batches in flight (F start to end of B, or of W) in closed form, any costs.

    One stage per rank, keyed by stage: ``naive`` 1, ``gpipe`` m, ``1f1b`` min(p - s, m) on stage
    s, ``zb-h1`` min(p, m) on *every* stage (its deferred W's keep micro-batches in flight longer
    on the later stages; stage 0 holds what 1F1B's stage 0 holds). ``interleaved-1f1b`` (v >= 2),
    keyed by **rank**, counting chunk-micro-batches over the rank's v chunks
    (:func:`peak_in_flight_by_rank`): Megatron-LM's rank r holds min(2 (p - r - 1) + (v - 1) p + 1,
    m v), i.e. (v - 1) p + 2 (p - r) - 1 chunk activations, each 1/v of a stage's.
    """
    family, p, m, v = _check_family(family, p, m, v)
    per_stage = {
        "naive": lambda s: 1,
        "gpipe": lambda s: m,
        "1f1b": lambda s: min(p - s, m),
        "zb-h1": lambda s: min(p, m),
        "interleaved-1f1b": lambda r: min(2 * (p - r - 1) + (v - 1) * p + 1, m * v),
    }[family]
    return {s: per_stage(s) for s in range(p)}


def expected_messages(p: int, m: int, v: int = 1) -> int:
    """Point-to-point messages of one step under looped placement: ``2 m (p v - 1)`` when p >= 2.

    Each micro-batch crosses the p v - 1 boundaries between consecutive stages once forward (an
    activation) and once backward (a gradient, sent by B or I; W sends nothing), and with p >= 2
    every boundary joins two ranks. So interleaving with v chunks multiplies 1F1B's 2 m (p - 1)
    messages by (p v - 1) / (p - 1). 0 for p = 1.
    """
    p, m = _check_pm(p, m)
    if not _is_int(v) or v < 1:
        raise ScheduleError(f"v (stages per rank) must be an int >= 1, got {v!r}")
    return 2 * m * (p * v - 1) if p >= 2 else 0


# -- measured on a schedule or a result -------------------------------------------------------------------


def peak_in_flight_by_rank(result: SimResult) -> dict[int, int]:
    """``{rank: max number of (stage, micro-batch) pairs held at once by the rank's stages}``.

    A pair is held from its ``F`` start to its ``B`` (or ``W``) end, like ``SimResult.peak_in_flight``
    (which is per stage, i.e. per model chunk); for one stage per rank the two agree. The activation
    memory of a rank: for an interleaved rank each pair is one chunk's activations (1/v of a stage's).
    """
    stage_rank = {a.stage: rank for rank, rows in result.intervals.items() for a, _, _ in rows if a.kind == "F"}
    spans: dict[int, list[tuple[float, float]]] = {rank: [] for rank in result.intervals}
    for (stage, _), span in _holds(result.intervals).items():
        spans[stage_rank[stage]].append(span)
    return {rank: _max_overlap(rank_spans) for rank, rank_spans in spans.items()}


def cross_rank_messages(schedule: Any) -> int:
    """Number of point-to-point messages ``schedule`` needs: dependencies (:func:`dependencies`)
    between two actions on different ranks, each one activation or one gradient sent."""
    schedule = parse_schedule(schedule)
    where = {a: rank for rank, actions in schedule.items() for a in actions}
    num_stages = num_stages_of(schedule)
    return sum(
        1
        for rank, actions in schedule.items()
        for a in actions
        for d in dependencies(a, num_stages, where)
        if d in where and where[d] != rank
    )

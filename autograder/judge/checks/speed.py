"""Speed and activation memory of a schedule trial, measured on emulated devices.

Real compute on a 2-core CPU shows no pipeline speedup, so speed is graded on a deterministic
replay (``autograder.schedules.replay``): each stage is a device with one in-order queue that runs
the stage's recorded actions in their recorded order, each waiting for what it depends on; a
forward costs the rows of its micro-batch, a backward twice that, transfers are free. Speedup =
serial work (the naive pipeline's makespan at the same p and m) / replayed makespan.

Thresholds (``practical.STEP_SCHEDULES``, checked against the replayed reference schedules by
``tests/unit/test_speed_thresholds.py``): GPipe's ideal is m p / (m + p - 1), 2.29x at p = 4,
m = 4 and 2.91x at m = 8, and it must reach 2.05x / 2.60x, about 10% under (backwards in any order
pass, a GPipe that runs each backward right after its forward replays to 1.0x). The delayed-backward
loop replays to 1.23x / 1.10x; it must reach 1.05x, halfway from the naive 1.0x. The replay is
exact (no noise), so the margins only separate schedules, not measurements.

A schedule that reads a tensor's value on the host inside its loop (``.item()``, ``float(t)``,
``print(t)``, ...) fails its speed test: on a GPU that read waits for every queued kernel, so the
host cannot queue the next stage's work and the pipeline serialises.
"""

from __future__ import annotations

from collections.abc import Iterable

from ... import practical
from ...schedules import Costs, naive_schedule, simulate
from ...schedules.timeline import ascii_gantt
from ...tracing.replay import TraceReplay, replay_trace
from ..trial import Trial
from .common import trial_failure
from .order import Incomplete, canonical, recomputed


def costs_for(trial: Trial) -> Costs:
    return Costs(forward=1.0, backward=2.0, rows=tuple(trial.spec.sizes))


def replayed(trial: Trial) -> TraceReplay:
    """The replay of every event of a complete trial, extra forwards included (raises :class:`Incomplete`)."""
    canonical(trial)
    return replay_trace(trial.events, costs_for(trial))


def serial_work(trial: Trial, recomputed: Iterable[tuple[int, int]] = ()) -> float:
    """The naive pipeline's makespan at the trial's p and m, plus one forward per (stage,
    micro-batch) in ``recomputed``: a schedule with per-stage activation checkpointing is compared
    with the naive pipeline doing the same recomputation. Forwards thrown away before the one that
    counts are never added: they only cost time."""
    spec, costs = trial.spec, costs_for(trial)
    naive = simulate(naive_schedule(spec.num_stages, spec.num_microbatches), costs).makespan
    return naive + sum(costs.cost((s, "F", k)) for s, k in recomputed)


def _measurable(trial: Trial) -> str | None:
    problem = trial_failure(trial)
    if problem:
        return problem
    try:
        canonical(trial)
    except Incomplete as exc:
        first = str(exc).split("\n", 1)[0].split(": ", 1)[-1]
        return f"{trial.spec}: not measured, the run is incomplete ({first}; the order test shows where)"
    return None


def syncs_in_loop(trial: Trial) -> list[str]:
    """Where the step read a tensor's value on the host before its last backward."""
    last_backward = max((i for i, e in enumerate(trial.events) if e.kind == "B"), default=-1)
    return [where for after, where in trial.syncs if after <= last_backward]


def check_speed(trial: Trial) -> str | None:
    problem = _measurable(trial)
    if problem:
        return problem
    spec = trial.spec
    inside = syncs_in_loop(trial)
    if inside:
        return (
            f"{spec}: your step reads a tensor's value on the host inside its loop ({inside[0]}"
            + (f", and {len(inside) - 1} more" if len(inside) > 1 else "")
            + "). On a GPU such a read (.item(), "
            "float(t), print(t), t.cpu(), if t > 0) waits until every queued kernel has finished, so the host "
            "cannot queue "
            "the next stage's work and the pipeline runs one stage at a time. Keep the losses as tensors and call "
            ".item() once, after the loop."
        )
    replay = replayed(trial)
    result = replay.result
    speedup = serial_work(trial, recomputed(trial)) / result.makespan
    need = practical.STEP_SCHEDULES[spec.schedule].speed[spec.num_microbatches]
    if speedup >= need:
        return None
    return (
        f"{spec}: replayed on {spec.num_stages} in-order devices your schedule takes {result.makespan:.1f} time "
        f"units, {speedup:.2f}x faster than the naive pipeline; at least {need:.2f}x is expected. Devices wait "
        f"on each other where the timeline shows '.'{_extra(replay)}:\n" + ascii_gantt(result, width=96)
    )


def _extra(replay: TraceReplay) -> str:
    """What the step's extra forwards cost, when it ran any."""
    if not replay.extra_forwards:
        return ""
    (s, k), n = next(iter(replay.extra_forwards.items()))
    more = len(replay.extra_forwards) - 1
    return (
        f". Your step also ran forwards beyond one per stage and micro-batch (stage {s} ran micro-batch {k}'s "
        f"forward {n + 1} times"
        + (f", and {more} more (stage, micro-batch) pairs" if more else "")
        + "): each one is device time, and a forward run again through several stages waits for the stage "
        "before it again. A recomputation after the forward that counts (activation checkpointing) is added to "
        "the naive pipeline's time too; a forward thrown away before it only costs time"
    )


def check_memory(trial: Trial) -> str | None:
    """Peak micro-batches in flight per stage: GPipe keeps all m, the delayed loop at most 2."""
    problem = _measurable(trial)
    if problem:
        return problem
    spec = trial.spec
    rule = practical.STEP_SCHEDULES[spec.schedule]
    replay = replayed(trial)
    peaks = replay.result.peak_in_flight
    want = rule.in_flight_limit(spec.num_stages, spec.num_microbatches)
    for s in range(spec.num_stages):
        got = peaks.get(s, 0)
        if (rule.exact_in_flight and got != want) or got > want:
            what = "exactly" if rule.exact_in_flight else "at most"
            held = replay.held_bytes()
            return (
                f"{spec}: stage {s} held {got} micro-batches in flight (forward started, backward not yet "
                f"ended); {rule.label} keeps {what} {want}. Peaks per stage: {dict(sorted(peaks.items()))}; "
                f"saved activations at the peak, per stage: {_kib(held)}."
            )
    return None


def _kib(held: dict[int, int]) -> str:
    return "{" + ", ".join(f"{s}: {b / 1024:.1f} KiB" for s, b in held.items()) + "}"


def replayed_speedup(trial: Trial) -> float | None:
    """The replayed speedup over naive of a complete trial (None when it is not measurable)."""
    if _measurable(trial):
        return None
    replay = replayed(trial)
    return serial_work(trial, recomputed(trial)) / replay.result.makespan


def check_pipeline(trial: Trial) -> str | None:
    """The replayed pipeline: no host synchronisation in the loop, the speedup, the peak in flight."""
    return check_speed(trial) or check_memory(trial)

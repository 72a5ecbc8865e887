"""Options A, B and C: gradients, loss, order of events, replayed speed and activation memory.

Each setting runs the student's step function once (the run is shared by the tests of that
setting) on stages that live in the judge's process: student code drives them through proxies,
whatever autograd API it uses, and every forward and backward is recorded where student code
cannot reach. The step gets the judge's own partition and micro-batching, so a Part 1 mistake
costs Part 1's points only.
"""

from __future__ import annotations

import pytest

from autograder.judge.calls import expect
from autograder.judge.checks.gradients import check_gradients, check_loss
from autograder.judge.checks.order import check_order
from autograder.judge.checks.speed import check_pipeline, replayed_speedup
from autograder.judge.trial import TrialSpec, reference
from autograder.practical import STEP_SCHEDULES

# (p, m, batch, kind, seed): even and uneven micro-batches, p = 1, m = 1, m = batch, a transformer.
GRADIENTS = [(2, 4, 8, "mlp", 0), (4, 8, 16, "mlp", 1), (3, 4, 10, "mlp", 2), (2, 3, 6, "transformer", 3)]
EDGES = [(1, 1, 4, "mlp", 4), (4, 5, 5, "mlp", 5)]
LOSS = [(3, 4, 10, "mlp", 2)]
ORDER = [(4, 8, 16, "mlp", 0), (3, 4, 10, "mlp", 2)]
PIPELINE = [(4, 8, 16, "mlp", 0), (4, 4, 16, "mlp", 1)]
ALL = tuple(STEP_SCHEDULES)
PIPELINED = ("gpipe", "delayed")


def spec(schedule: str, p: int, m: int, batch: int, kind: str = "mlp", seed: int = 0) -> TrialSpec:
    width, depth = (16, 4) if kind == "transformer" else (32, 8)
    return TrialSpec(schedule, p, m, batch, width=width, depth=depth, seed=seed, kind=kind)


def graded(points: float | dict[str, float], settings: list, schedules: tuple[str, ...] = ALL):
    """Parametrize over (schedule, setting), each worth ``points`` (or ``points[schedule]``) in its
    schedule's row."""
    return pytest.mark.parametrize(
        "schedule,setting",
        [
            pytest.param(
                s,
                setting,
                marks=pytest.mark.points(points[s] if isinstance(points, dict) else points, group=s),
                id=f"{s}-p{setting[0]}-m{setting[1]}-b{setting[2]}" + ("-tf" if setting[3] != "mlp" else ""),
            )
            for s in schedules
            for setting in settings
        ],
    )


@graded(2, GRADIENTS)
def test_gradients_match_reference(trials, schedule, setting):
    """accumulated gradients equal the single-device full-batch gradients"""
    s = spec(schedule, *setting)
    expect(check_gradients(trials(s), reference(s)))


@graded(1, EDGES)
def test_gradients_edge_cases(trials, schedule, setting):
    """gradients are right with one stage and one micro-batch, and with micro-batches of one row"""
    s = spec(schedule, *setting)
    expect(check_gradients(trials(s), reference(s)))


@graded(2, LOSS)
def test_returns_batch_loss(trials, schedule, setting):
    """returns the full-batch mean loss as a float"""
    s = spec(schedule, *setting)
    expect(check_loss(trials(s), reference(s)))


@graded({"naive": 1.5, "gpipe": 3, "delayed": 3}, ORDER)
def test_order_of_events(trials, schedule, setting):
    """forwards and backwards run in the schedule's order"""
    expect(check_order(trials(spec(schedule, *setting))))


@graded(3.5, PIPELINE, schedules=PIPELINED)
def test_replayed_pipeline(trials, leaderboard, schedule, setting):
    """replayed on p devices: the speedup over naive and the micro-batches in flight the schedule gives,
    with no host synchronisation inside the loop"""
    trial = trials(spec(schedule, *setting))
    problem = check_pipeline(trial)
    if problem is None and setting == PIPELINE[0]:
        label = STEP_SCHEDULES[schedule].label
        leaderboard.record(f"{label}: replayed speedup, p=4 m=8", replayed_speedup(trial), "desc")
    expect(problem)

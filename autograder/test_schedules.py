"""Options A, B and C: gradients, loss, order of events, replayed speed and activation memory.

Each test runs the student's step function once per setting under the tracing harness (the run is
shared by the tests of the same setting) and judges what was recorded.
"""
from __future__ import annotations

import pytest

from autograder import checks
from autograder.speed import SPEED_THRESHOLDS, replay_speedup
from autograder.trial import TrialSpec, reference

PARTS = {
    "naive": "Part 1 Option A: naive",
    "gpipe": "Part 2 Option B: GPipe",
    "delayed": "Part 3 Option C: delayed backward",
}
ORDER_CHECKS = {"naive": checks.check_naive_order, "gpipe": checks.check_gpipe_order,
                "delayed": checks.check_delayed_order}
# (p, m, batch, kind, seed): even and uneven micro-batches, p = 1, m = 1, m = batch, a transformer.
GRAD_SETTINGS = [(2, 4, 8, "mlp", 0), (4, 8, 16, "mlp", 1), (3, 4, 10, "mlp", 2), (2, 3, 6, "transformer", 3)]
ORDER_SETTINGS = [(4, 8, 16, "mlp", 0), (3, 4, 10, "mlp", 2)]
EDGE_SETTINGS = [(1, 1, 4, "mlp", 4), (4, 5, 5, "mlp", 5)]


def spec(schedule, p, m, batch, kind="mlp", seed=0) -> TrialSpec:
    width = 16 if kind == "transformer" else 32
    depth = 4 if kind == "transformer" else 8
    return TrialSpec(schedule, p, m, batch, width=width, depth=depth, seed=seed, kind=kind)


def graded(points, settings, schedules=tuple(PARTS)):
    """Parametrize over (schedule, setting) pairs, each worth ``points`` in its schedule's part."""
    return pytest.mark.parametrize("schedule,setting", [
        pytest.param(s, setting, marks=pytest.mark.points(points, part=PARTS[s]),
                     id=f"{s}-p{setting[0]}-m{setting[1]}-b{setting[2]}" + ("-tf" if setting[3] != "mlp" else ""))
        for s in schedules for setting in settings])


def expect(problem: str | None) -> None:
    if problem:
        pytest.fail(problem, pytrace=False)


@graded(2, GRAD_SETTINGS)
def test_gradients_match_reference(trials, schedule, setting):
    """accumulated gradients equal the single-device full-batch gradients"""
    s = spec(schedule, *setting)
    expect(checks.check_gradients(trials(s), reference(s)))


@graded(1, EDGE_SETTINGS)
def test_gradients_edge_cases(trials, schedule, setting):
    """gradients are right with one stage and one micro-batch, and with micro-batches of one row"""
    s = spec(schedule, *setting)
    expect(checks.check_gradients(trials(s), reference(s)))


@graded(2, [(3, 4, 10, "mlp", 2)])
def test_returns_batch_loss(trials, schedule, setting):
    """returns the full-batch mean loss as a float"""
    s = spec(schedule, *setting)
    expect(checks.check_loss(trials(s), reference(s)))


@graded(1.5, ORDER_SETTINGS)
def test_order_of_events(trials, schedule, setting):
    """forwards and backwards run in the schedule's order"""
    expect(ORDER_CHECKS[schedule](trials(spec(schedule, *setting))))


@graded(2.5, [(4, 8, 16, "mlp", 0), (4, 4, 16, "mlp", 1)], schedules=("gpipe", "delayed"))
def test_replayed_speedup(trials, schedule, setting):
    """on p in-order devices, the recorded schedule beats the naive pipeline by the expected margin"""
    trial = trials(spec(schedule, *setting))
    expect(checks.check_complete(trial))
    expect(replay_speedup(trial, SPEED_THRESHOLDS[schedule]))


@graded(5, [(4, 8, 16, "mlp", 0)], schedules=("gpipe", "delayed"))
def test_activation_memory(trials, schedule, setting):
    """peak micro-batches in flight per stage: m for GPipe, at most 2 for Option C"""
    trial = trials(spec(schedule, *setting))
    expect(checks.check_complete(trial))
    expect(checks.check_in_flight(trial))

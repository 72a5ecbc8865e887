"""Part 6: per-stage schedules as data (``gpipe_actions``, ``one_f_one_b_actions``).

The student's functions only *return lists*: the call hands them back as plain data, and the judge
parses, validates and simulates them (``autograder.schedules``). Graded, per function: the lists
are valid at every setting; simulated on in-order devices they take the schedule's step time; their
activation memory (peak micro-batches in flight per stage). A setting whose lists are not valid
costs only the validity test: the other two judge the valid settings (and fail when none is).

Not graded, because no list can make them fail or because they are wall-clock measurements: valid
lists run one process per stage by the judge's runtime (``autograder.dist``) always give the
single-device gradients and run in the declared order (the repository's tests check the runtime),
and their measured speedup is a benchmark (``python -m autograder.dist`` shows it for a student's
own lists, ``python -m autograder.bench`` for the runtime).
"""

from __future__ import annotations

import pytest

from autograder import practical
from autograder.judge.calls import expect
from autograder.judge.checks.lists import check_in_flight, check_makespan, check_valid, parsed_lists, valid_settings
from autograder.schedules import Costs, simulate

GROUP = "per_stage"
WHICH = ("gpipe", "1f1b")
# (p, m): m < p, m = 1, p = 1, m = p included.
LIST_SETTINGS = [(4, 8), (3, 5), (4, 2), (2, 1), (1, 3), (5, 7), (3, 3)]


def graded(points: float):
    return pytest.mark.parametrize(
        "which", [pytest.param(w, marks=pytest.mark.points(points, group=GROUP), id=w) for w in WHICH]
    )


@pytest.fixture(scope="module")
def lists(calls):
    """``lists(which, p, m)``: the student's lists for every stage, parsed (fails the test otherwise)."""

    def get(which: str, p: int, m: int):
        spec = practical.ACTION_LISTS[which]
        data = calls.get(
            "action_lists", spec.function, spec.function, which=which, cases=[list(c) for c in LIST_SETTINGS]
        )
        return parsed_lists(data, which, p, m, LIST_SETTINGS)

    return get


@graded(2.5)
def test_lists_are_valid(lists, which):
    """every stage's list is complete and the lists can run together (no deadlock)"""
    for p, m in LIST_SETTINGS:
        expect(check_valid(lists(which, p, m), which, p, m))


@graded(2.5)
def test_simulated_step_time(lists, which):
    """simulated on p in-order devices, the lists take the schedule's step time, also when m < p"""
    for p, m in valid_settings(lists, which, LIST_SETTINGS):
        expect(check_makespan(lists(which, p, m), which, p, m))


@graded(2.5)
def test_activation_memory(lists, leaderboard, which):
    """activation memory: the micro-batches in flight on each stage are what the schedule keeps"""
    for p, m in valid_settings(lists, which, LIST_SETTINGS):
        expect(check_in_flight(lists(which, p, m), which, p, m))
    if which == "1f1b" and (4, 8) in valid_settings(lists, which, LIST_SETTINGS):
        peak = max(simulate(lists(which, 4, 8), Costs(forward=1, backward=2)).peak_in_flight.values())
        leaderboard.record("1F1B lists: peak micro-batches in flight, p=4 m=8", peak, "asc")

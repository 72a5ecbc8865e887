"""Part 7 (bonus, extra credit): interleaved 1F1B and zero-bubble (ZB-H1) lists.

As in Part 6, the student's functions only return lists; the judge parses, validates and simulates
them. Graded per function: valid lists (and, for interleaving, a ValueError when m is not a multiple
of p); the simulated step time of the family (Megatron's interleaving with chunk costs 1/v of a
stage; ZB-H1 with F = I = W); activation memory no larger than the family's.

Not graded: the runtime (``autograder.dist``) runs valid lists one process per stage with the
single-device gradients whatever their order, and a measured speedup is a wall-clock number that
a shared grader cannot reproduce. ``python -m autograder.dist --schedule interleaved`` shows both
for a student's own lists; ``python -m autograder.bench`` measures them against PyTorch's runtime.
"""

from __future__ import annotations

import pytest

from autograder import practical
from autograder.judge.calls import expect
from autograder.judge.checks.lists import (
    check_bonus_memory,
    check_bonus_time,
    check_bonus_valid,
    parsed_lists,
)
from autograder.judge.checks.part1 import raised_value_error

GROUP = "bonus"
INTERLEAVED = [(2, 4, 2), (4, 8, 2), (3, 6, 3), (4, 4, 2), (2, 2, 3), (3, 5, 1)]
NOT_A_MULTIPLE = (4, 6, 2)
ZERO_BUBBLE = [(4, 8), (3, 5), (4, 2), (2, 1), (1, 3), (5, 7)]


@pytest.fixture(scope="module")
def bonus_lists(calls):
    def get(which: str, case: tuple):
        spec = practical.ACTION_LISTS[which]
        cases = INTERLEAVED if which == "interleaved" else ZERO_BUBBLE
        data = calls.get("action_lists", spec.function, spec.function, which=which, cases=[list(c) for c in cases])
        return parsed_lists(data, which, case[0], case[1], cases, case[2] if which == "interleaved" else None)

    return get


def _settings(which: str) -> list[tuple]:
    return INTERLEAVED if which == "interleaved" else ZERO_BUBBLE


def bonus(points: float):
    return pytest.mark.parametrize(
        "which",
        [pytest.param(w, marks=pytest.mark.points(points, group=GROUP), id=w) for w in ("interleaved", "zero_bubble")],
    )


@bonus(1)
def test_bonus_lists_are_valid(bonus_lists, calls, which):
    """every rank's list is complete and the lists run together (no deadlock)"""
    for case in _settings(which):
        expect(check_bonus_valid(bonus_lists(which, case), which, *case))
    if which == "interleaved":
        spec = practical.ACTION_LISTS[which]
        data = calls.get(
            "action_lists",
            spec.function,
            f"{spec.function} (m not a multiple of p)",
            which=which,
            cases=[list(NOT_A_MULTIPLE)],
        )
        outcome = data["cases"][0]
        if not raised_value_error(outcome):
            expect(
                f"{spec.function}(rank, 4, 6, 2): 6 micro-batches on 4 ranks cannot be interleaved; raise "
                f"ValueError with a one-line message (it "
                + ("returned lists)" if "value" in outcome else f"raised {outcome.get('message')})")
            )


@bonus(1)
def test_bonus_simulated_step_time(bonus_lists, which):
    """simulated on in-order devices, the lists take the step time of their schedule family"""
    for case in _settings(which):
        expect(check_bonus_time(bonus_lists(which, case), which, *case))


@bonus(1)
def test_bonus_activation_memory(bonus_lists, which):
    """no rank or stage holds more activations at once than the schedule family needs"""
    for case in _settings(which):
        expect(check_bonus_memory(bonus_lists(which, case), which, *case))

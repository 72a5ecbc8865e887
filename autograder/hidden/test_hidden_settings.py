"""Tests kept for grading: the same checks at settings students have not seen.

Other p, m, batch sizes (uneven), seeds and model widths, so code that special-cases the public
settings fails. The settings are fixed (not drawn at grading time) so that grading the same
submission twice gives the same score. Results are shown after the due date.
"""

from __future__ import annotations

import pytest

from autograder.judge.calls import expect
from autograder.judge.checks.gradients import check_gradients, check_loss
from autograder.judge.checks.order import check_order
from autograder.judge.trial import TrialSpec, reference

GROUP = "hidden"
# (schedule, p, m, batch, width, depth, seed)
SETTINGS = [
    ("naive", 3, 5, 11, 24, 6, 101),
    ("gpipe", 4, 6, 23, 40, 7, 102),
    ("gpipe", 2, 7, 7, 16, 5, 103),
    ("delayed", 3, 6, 17, 48, 9, 104),
    ("delayed", 4, 2, 9, 20, 4, 105),
]


def _spec(schedule, p, m, batch, width, depth, seed) -> TrialSpec:
    return TrialSpec(schedule, p, m, batch, width=width, depth=depth, seed=seed)


def _id(setting) -> str:
    return f"{setting[0]}-p{setting[1]}-m{setting[2]}-b{setting[3]}"


@pytest.mark.hidden
@pytest.mark.points(1, group=GROUP)
@pytest.mark.parametrize("setting", SETTINGS, ids=_id)
def test_hidden_gradients_and_loss(trials, setting):
    """gradients and loss equal the reference at an unseen setting"""
    spec = _spec(*setting)
    trial = trials(spec)
    expect(check_gradients(trial, reference(spec)) or check_loss(trial, reference(spec)))


@pytest.mark.hidden
@pytest.mark.points(1, group=GROUP)
@pytest.mark.parametrize("setting", SETTINGS, ids=_id)
def test_hidden_order(trials, setting):
    """the order of events is the schedule's at an unseen setting"""
    expect(check_order(trials(_spec(*setting))))

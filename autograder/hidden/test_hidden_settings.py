"""Tests kept for grading: the same checks at settings students have not seen.

Other p, m, batch sizes (uneven), seeds and model widths, so code that special-cases the public
settings fails. The settings are fixed (not drawn at grading time) so that grading the same
submission twice gives the same score. Results are shown after the due date.
"""
from __future__ import annotations

import pytest

from autograder import checks
from autograder.trial import TrialSpec, reference

PART = "Hidden: other settings"
# (schedule, p, m, batch, width, depth, seed)
SETTINGS = [
    ("naive", 3, 5, 11, 24, 6, 101),
    ("gpipe", 4, 6, 23, 40, 7, 102),
    ("gpipe", 2, 7, 7, 16, 5, 103),
    ("delayed", 3, 6, 17, 48, 9, 104),
    ("delayed", 4, 2, 9, 20, 4, 105),
]
ORDER = {"naive": checks.check_naive_order, "gpipe": checks.check_gpipe_order, "delayed": checks.check_delayed_order}


def _spec(s, p, m, batch, width, depth, seed):
    return TrialSpec(s, p, m, batch, width=width, depth=depth, seed=seed)


@pytest.mark.hidden
@pytest.mark.points(1, part=PART)
@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: f"{s[0]}-p{s[1]}-m{s[2]}-b{s[3]}")
def test_hidden_gradients_and_loss(trials, setting):
    """gradients and loss equal the reference at an unseen setting"""
    spec = _spec(*setting)
    trial = trials(spec)
    for problem in (checks.check_gradients(trial, reference(spec)), checks.check_loss(trial, reference(spec))):
        if problem:
            pytest.fail(problem, pytrace=False)


@pytest.mark.hidden
@pytest.mark.points(1, part=PART)
@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: f"{s[0]}-p{s[1]}-m{s[2]}-b{s[3]}")
def test_hidden_order(trials, setting):
    """the order of events is the schedule's at an unseen setting"""
    problem = ORDER[setting[0]](trials(_spec(*setting)))
    if problem:
        pytest.fail(problem, pytrace=False)

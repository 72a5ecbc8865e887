"""The replayed-speed thresholds of the registry sit between serialised and correct schedules.

Replayed with the graded costs (a forward costs its micro-batch's rows, a backward twice that) at
the graded settings (p = 4, batch 16, m in {4, 8}): each correct schedule must clear its threshold,
and the naive order (what a serialised GPipe or Option C replays to) must not.
"""

from __future__ import annotations

import pytest

from autograder.dist.model import split_sizes
from autograder.instructor.reference_schedules import gpipe_schedule
from autograder.practical import STEP_SCHEDULES
from autograder.schedules import Costs, delayed_backward_schedule, naive_schedule, simulate

CORRECT = {"gpipe": gpipe_schedule, "delayed": delayed_backward_schedule}


def speedup(make, p, m, batch=16):
    costs = Costs(forward=1.0, backward=2.0, rows=tuple(split_sizes(batch, m)))
    return simulate(naive_schedule(p, m), costs).makespan / simulate(make(p, m), costs).makespan


@pytest.mark.parametrize("schedule", sorted(CORRECT))
@pytest.mark.parametrize("m", [4, 8])
def test_thresholds_separate_correct_from_serialised(schedule, m):
    need = STEP_SCHEDULES[schedule].speed[m]
    assert speedup(CORRECT[schedule], 4, m) >= need * 1.04  # at least 4% headroom for correct code
    assert speedup(naive_schedule, 4, m) < need


def test_stated_reference_values():
    # The figures quoted in autograder/judge/checks/speed.py's docstring and in README.
    assert speedup(gpipe_schedule, 4, 8) == pytest.approx(32 / 11)
    assert speedup(gpipe_schedule, 4, 4) == pytest.approx(16 / 7)
    assert speedup(delayed_backward_schedule, 4, 8) == pytest.approx(32 / 29)
    assert speedup(delayed_backward_schedule, 4, 4) == pytest.approx(16 / 13)

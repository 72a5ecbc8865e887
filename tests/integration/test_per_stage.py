"""Part 6 per-stage lists: the reference solution, the skeleton, and the probe that carries lists to the judge."""

from __future__ import annotations

import inspect
import sys

import pytest

import assignment.per_stage as skeleton
import solutions.per_stage as ref
from autograder.harness.plain import plain_action
from autograder.harness.probes import CallContext, probe_action_lists
from autograder.instructor.reference_schedules import gpipe_schedule, one_f_one_b_schedule
from autograder.judge.staging import stage
from autograder.schedules import Action, Costs, parse_schedule, simulate, validate


def lists(fn, p, m):
    return {s: fn(s, p, m) for s in range(p)}


GRID = [(p, m) for p in range(1, 7) for m in range(1, 10)]


@pytest.mark.parametrize("p,m", GRID)
def test_reference_lists_validate_and_equal_the_judges_schedules(p, m):
    gpipe, ofob = lists(ref.gpipe_actions, p, m), lists(ref.one_f_one_b_actions, p, m)
    validate(gpipe, p, m)
    validate(ofob, p, m)
    assert gpipe == gpipe_schedule(p, m)  # two independent implementations agree
    assert ofob == one_f_one_b_schedule(p, m)
    assert all(isinstance(a, Action) for actions in ofob.values() for a in actions)


# Hand-computed makespans (F, B, transfer as in autograder.schedules.Costs).
# GPipe p=2 m=2 F=1 B=2 t=0.5: stage 0 F0 [0,1] F1 [1,2]; stage 1 F0 [1.5,2.5] F1 [2.5,3.5] B0 [3.5,5.5]
#   B1 [5.5,7.5]; stage 0 B0 [6,8] B1 [8,10] -> 10.
# 1F1B p=2 m=2 t=0.5: stage 1 runs F0 [1.5,2.5] B0 [2.5,4.5] F1 [4.5,5.5] B1 [5.5,7.5]; stage 0 runs
#   F0 F1 B0 [5,7] B1 [8,10] -> 10.
# Without transfers, both take (m + p - 1)(F + B): 3 x 3 = 9 at p=2, m=2; 11 x 3 = 33 at p=4, m=8;
#   m < p: p=4, m=2 -> 5 x 3 = 15; p=3, m=1 -> 3 x 3 = 9; with F = B = 1 at p=4, m=8: 11 x 2 = 22.
MAKESPANS = [
    (2, 2, Costs(1, 2), 9),
    (2, 2, Costs(1, 2, transfer=0.5), 10),
    (4, 8, Costs(1, 2), 33),
    (4, 2, Costs(1, 2), 15),
    (3, 1, Costs(1, 2), 9),
    (4, 8, Costs(1, 1), 22),
    (1, 5, Costs(1, 2), 15),
]


@pytest.mark.parametrize("fn", [ref.gpipe_actions, ref.one_f_one_b_actions], ids=["gpipe", "1f1b"])
@pytest.mark.parametrize("p,m,costs,makespan", MAKESPANS)
def test_reference_lists_simulate_to_hand_computed_makespans(fn, p, m, costs, makespan):
    assert simulate(lists(fn, p, m), costs).makespan == pytest.approx(makespan)


def test_peak_in_flight_of_the_reference_lists():
    assert simulate(lists(ref.one_f_one_b_actions, 4, 8)).peak_in_flight == {0: 4, 1: 3, 2: 2, 3: 1}
    assert simulate(lists(ref.one_f_one_b_actions, 4, 2)).peak_in_flight == {0: 2, 1: 2, 2: 2, 3: 1}
    assert simulate(lists(ref.gpipe_actions, 4, 8)).peak_in_flight == {0: 8, 1: 8, 2: 8, 3: 8}


def test_warm_up_and_short_warm_up():
    assert (
        " ".join(f"{a.kind}{a.mb}" for a in ref.one_f_one_b_actions(1, 4, 6)) == "F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 B4 B5"
    )
    # m <= p - s - 1: the warm-up is cut to m forwards, the list is GPipe's.
    assert ref.one_f_one_b_actions(0, 5, 3) == ref.gpipe_actions(0, 5, 3)
    assert ref.one_f_one_b_actions(4, 5, 3) == parse_schedule({4: "4F0 4B0 4F1 4B1 4F2 4B2"})[4]


@pytest.mark.parametrize(
    "name,task",
    [
        ("gpipe_actions", "part6.gpipe_actions"),
        ("one_f_one_b_actions", "part6.one_f_one_b_actions"),
        ("interleaved_actions", "part7.interleaved_actions"),
        ("zero_bubble_actions", "part7.zero_bubble_actions"),
    ],
)
def test_skeleton_raises_its_task_and_keeps_signature_and_docstring(name, task):
    args = (0, 2, 2, 2) if name == "interleaved_actions" else (0, 2, 2)
    with pytest.raises(NotImplementedError, match=f"^{task.replace('.', '[.]')}: "):
        getattr(skeleton, name)(*args)
    assert inspect.signature(getattr(skeleton, name)) == inspect.signature(getattr(ref, name))
    assert getattr(skeleton, name).__doc__ == getattr(ref, name).__doc__


def test_probe_returns_plain_lists_or_the_error():
    data = probe_action_lists(CallContext("solutions"), "1f1b", [[2, 2]])
    lists = data["cases"][0]["value"]
    assert lists == [
        [[0, "F", 0], [0, "F", 1], [0, "B", 0], [0, "B", 1]],
        [[1, "F", 0], [1, "B", 0], [1, "F", 1], [1, "B", 1]],
    ]
    assert parse_schedule(dict(enumerate(lists))) == one_f_one_b_schedule(2, 2)
    outcome = probe_action_lists(CallContext("assignment"), "gpipe", [[2, 2]])["cases"][0]
    assert outcome["raised"] == "NotImplementedError"
    assert outcome["message"].startswith("NotImplementedError: part6.gpipe_actions: ")
    assert "(at assignment/per_stage.py:" in outcome["message"]


def test_plain_action_keeps_only_plain_data():
    import numpy as np

    assert plain_action(Action(1, "F", 0)) == [1, "F", 0]
    assert plain_action((np.int64(2), "B", 3)) == [2, "B", 3]
    assert plain_action("1F0") == "1F0"
    assert plain_action((1, "F", 0.5)) == "(1, 'F', 0.5)"  # the judge's parser refuses it, with a message
    assert plain_action(object()).startswith("<object")
    assert plain_action((True, "F", 0)) == "(True, 'F', 0)"


def test_probe_refuses_non_lists_and_endless_generators(tmp_path, monkeypatch):
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "per_stage.py").write_text(
        "import itertools\n"
        "def gpipe_actions(stage, num_stages, num_microbatches):\n"
        "    return (stage, 'F', 0)  # a tuple, not a list of actions: iterable, but of ints\n"
        "def one_f_one_b_actions(stage, num_stages, num_microbatches):\n"
        "    return itertools.repeat((stage, 'F', 0))\n"
    )
    staged = stage(sub, tmp_path / "staged")
    monkeypatch.syspath_prepend(str(staged.root))
    ctx = CallContext(staged.package)
    outcome = probe_action_lists(ctx, "gpipe", [[2, 2]])["cases"][0]
    assert outcome["value"][0] == ["0", "F", "0"]  # refused later by parse_schedule
    outcome = probe_action_lists(ctx, "1f1b", [[2, 2]])["cases"][0]
    assert outcome["raised"] == "ValueError" and "more than 10000 actions" in outcome["message"]
    for name in [n for n in sys.modules if n == staged.package or n.startswith(staged.package + ".")]:
        monkeypatch.delitem(sys.modules, name)


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("m", list(range(1, 13)))
def test_bonus_solutions_equal_the_independent_reference_lists(p, m):
    """solutions/ and autograder/instructor/reference_schedules.py were written apart: they agree."""
    from autograder.instructor.reference_schedules import interleaved_1f1b_schedule, zero_bubble_h1_schedule

    assert lists(ref.zero_bubble_actions, p, m) == zero_bubble_h1_schedule(p, m)
    for v in (1, 2, 3):
        if v > 1 and m % p:
            with pytest.raises(ValueError, match="multiple of"):
                ref.interleaved_actions(0, p, m, v)
            continue
        assert {r: ref.interleaved_actions(r, p, m, v) for r in range(p)} == interleaved_1f1b_schedule(p, m, v)

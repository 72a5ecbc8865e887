"""The committed student skeleton: in sync with solutions/, importable, every task a clean stub."""

from __future__ import annotations

import importlib
import inspect

import pytest
import torch

from autograder.instructor import release
from autograder.practical import EDITABLE_FILES, TASKS
from tests.support import ROOT


def test_assignment_in_sync_with_solutions():
    assert release.check(ROOT / "solutions", ROOT / "assignment") == []


def test_editable_files_are_the_files_with_tasks():
    with_tasks = {t.path.split("/")[-1] for t in release.find_tasks(ROOT / "solutions")}
    assert with_tasks == set(EDITABLE_FILES)


def test_registry_names_every_task_of_the_skeleton():
    """The registry's tasks are the tasks marked in solutions/."""
    assert {t.task_id for t in release.find_tasks(ROOT / "solutions")} == {t.id for t in TASKS}


def test_no_solution_text_in_assignment():
    generated = release.read_tree(ROOT / "assignment")
    assert release.leaked_lines(generated, release.solution_regions(ROOT / "solutions")) == []


TASK_CALLS = {
    "part1.partition": lambda m: m.partition.partition(
        torch.nn.Sequential(torch.nn.Linear(2, 2)), 1, [torch.device("cpu")]
    ),
    "part1.split_microbatches": lambda m: m.microbatch.split_microbatches(torch.zeros(4, 2), torch.zeros(4), 2),
    "part1.microbatch_loss": lambda m: m.microbatch.microbatch_loss(
        torch.nn.MSELoss(), torch.zeros(2), torch.zeros(2), 4
    ),
    "part1.naive_step": lambda m: m.schedules.naive_step([], torch.zeros(4, 2), torch.zeros(4, 2), None, 2),
    "part2.gpipe_step": lambda m: m.schedules.gpipe_step([], torch.zeros(4, 2), torch.zeros(4, 2), None, 2),
    "part3.delayed_backward_step": lambda m: m.schedules.delayed_backward_step(
        [], torch.zeros(4, 2), torch.zeros(4, 2), None, 2
    ),
}


class _Modules:
    def __getattr__(self, name):
        return importlib.import_module(f"assignment.{name}")


@pytest.mark.parametrize("task", sorted(TASK_CALLS))
def test_each_task_raises_its_own_not_implemented(task):
    with pytest.raises(NotImplementedError, match=f"^{task.replace('.', '[.]')}: "):
        TASK_CALLS[task](_Modules())


def test_every_task_is_exercised_here():
    per_stage = {
        "part6.gpipe_actions",
        "part6.one_f_one_b_actions",
        "part7.interleaved_actions",
        "part7.zero_bubble_actions",
    }  # exercised in tests/integration/test_per_stage.py
    assert {t.task_id for t in release.find_tasks(ROOT / "solutions")} - per_stage <= set(TASK_CALLS)


def test_skeleton_keeps_signatures_and_docstrings():
    import assignment.schedules as a
    import solutions.schedules as s

    for name in ("naive_step", "gpipe_step", "delayed_backward_step"):
        assert inspect.signature(getattr(a, name)) == inspect.signature(getattr(s, name))
        assert getattr(a, name).__doc__ == getattr(s, name).__doc__

"""One name per concept: Option C is the delayed-backward loop, "1F1B" is the per-stage schedule.

The earlier name of Option C's function, ``one_f_one_b_step`` (task ``part3.one_f_one_b_step``),
survives only as a compatibility shim: the registry (``autograder/practical.py``) lists it as an
old name of ``part3.delayed_backward_step``, so a submission or notebook written against an
earlier skeleton still runs. This file tests the shim, and that the old names appear nowhere else.
"""

from __future__ import annotations

import re
import subprocess
import textwrap

import pytest

from autograder import practical
from autograder.student import steps, table
from tests.support import ROOT

OLD_FUNCTION, OLD_TASK = "one_f_one_b_step", "part3.one_f_one_b_step"
OLD_NAMES = re.compile(r"one_f_one_b_step|1F1B loop|Part 5 loop")
# Where the old names may stay: the shim (the registry), this test of it, and the changelog that
# records the rename for TAs.
SHIM = {"autograder/practical.py", "tests/integration/test_names.py", "CHANGELOG.md"}


def repository_files() -> list[str]:
    """Tracked and untracked files that git does not ignore (no .venv, no build outputs)."""
    proc = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [path for path in proc.stdout.splitlines() if (ROOT / path).is_file()]


def test_old_names_only_in_the_shim():
    found = []
    for path in repository_files():
        if path in SHIM:
            continue
        try:
            text = (ROOT / path).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        found += [f"{path}: {match.group(0)}" for match in OLD_NAMES.finditer(text)]
    assert not found, "old names outside the compatibility shim:\n" + "\n".join(found)


def test_the_shim_is_in_the_registry_only_as_an_old_name():
    task = practical.TASK["part3.delayed_backward_step"]
    assert task.function == "delayed_backward_step" and OLD_FUNCTION in task.old_functions
    assert practical.OLD_TASK_IDS == {OLD_TASK: "part3.delayed_backward_step"}
    assert practical.task_of_function(OLD_FUNCTION) is task
    assert practical.STEP_SCHEDULES["delayed"].old_functions == (OLD_FUNCTION,)
    assert OLD_FUNCTION not in {t.function for t in practical.TASKS}


def _package(tmp_path, name: str, schedules: str):
    """A copy of the reference package whose schedules.py is ``schedules``."""
    package = tmp_path / name
    package.mkdir()
    for path in (ROOT / "solutions").glob("*.py"):
        (package / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (package / "schedules.py").write_text(schedules, encoding="utf-8")
    return package


@pytest.fixture
def old_skeleton(tmp_path, monkeypatch):
    """A package written against an earlier skeleton: Option C's stub under its old name and task id."""
    text = (ROOT / "solutions" / "schedules.py").read_text(encoding="utf-8")
    head = text.split("def delayed_backward_step(")[0]
    stub = textwrap.dedent(f'''
        def {OLD_FUNCTION}(stages, inputs, targets, loss_fn, num_microbatches):
            """Option C."""
            raise NotImplementedError("{OLD_TASK}: the hint of an earlier release")
        ''')
    _package(tmp_path, "old_skeleton", head + stub)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "old_skeleton"


def test_the_student_tool_lists_an_old_stub_under_the_current_task_id(old_skeleton):
    todo = dict(table.todo_tasks(old_skeleton))
    assert "part3.delayed_backward_step" in todo and OLD_TASK not in todo


@pytest.fixture
def old_submission(tmp_path, monkeypatch):
    """A finished submission that still calls Option C by its old name."""
    text = (ROOT / "solutions" / "schedules.py").read_text(encoding="utf-8")
    _package(tmp_path, "old_submission", text.replace("def delayed_backward_step(", f"def {OLD_FUNCTION}("))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "old_submission"


def test_the_student_tool_runs_option_c_under_its_old_name(old_submission):
    from autograder.student import run

    args = run.build_parser(old_submission).parse_args(
        ["--steps", "1", "--warmup", "0", "--width", "16", "--batch", "8", "--budget", "0.05", "-m", "4"]
    )
    row = steps.run_schedule(old_submission, "delayed", args, 4)
    assert row["rel_diff"] <= practical.GRAD_RTOL and max(row["replayed"].peak_in_flight.values()) == 2

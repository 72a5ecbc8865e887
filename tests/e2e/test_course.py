"""The nbgrader course: ``course init``, ``course autograde`` in the sandboxed kernel, mark schemes.

The slow tests build one course with ``python -m autograder.instructor.course init`` and three
submissions: alice (the reference notebook and the reference code), bob (the same notebook with a
cell that points it at his laptop before the setup cell, ``microbatch.py`` raising at import,
``per_stage.py`` missing) and carol (a cell that kills the kernel). Alice's and bob's notebooks end
with a cell that tries to read and write outside the sandbox. One ``autograde`` run, about half a
minute on 2 CPU cores.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from autograder.harness.confine import landlock_abi
from autograder.instructor import course as course_tool
from autograder.instructor import notebook_run
from autograder.instructor.toolenv import tool_env
from tests.support import ROOT

SOURCE = ROOT / "solutions" / "practical9.ipynb"
STUDENT = ROOT / "assignment" / "practical9.ipynb"
CODE = ("partition.py", "microbatch.py", "schedules.py", "per_stage.py")
SCHEME_ITEM = re.compile(r"^- (\d+(?:\.\d+)?) points?: ", re.MULTILINE)
DENIED = (
    "read_reference",
    "read_other_student",
    "read_gradebook",
    "write_course",
    "write_notebook_folder",
    "write_tmp",
)


def _meta(cell: dict) -> dict:
    return cell["metadata"].get("nbgrader", {})


def _text(cell: dict) -> str:
    return "".join(cell["source"])


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


# ------------------------------------------------------------------------------ mark schemes (fast)


def test_every_written_answer_has_a_mark_scheme_worth_its_points():
    cells = _cells(SOURCE)
    answers = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and _meta(c).get("grade")]
    assert len(answers) == 17
    for i in answers:
        question, points = cells[i - 1], _meta(cells[i])["points"]
        assert _meta(question).get("task") and _meta(question)["points"] == 0 and _meta(question)["locked"]
        scheme = _text(question).split("### BEGIN MARK SCHEME\n", 1)[1].split("### END MARK SCHEME", 1)[0]
        items = [float(p) for p in SCHEME_ITEM.findall(scheme)]
        assert len(items) >= 2 and sum(items) == points, _meta(cells[i])["grade_id"]
        assert f"({points:g} point" in scheme.splitlines()[0], _meta(cells[i])["grade_id"]


def test_the_release_keeps_no_mark_scheme():
    student = "\n".join(_text(c) for c in _cells(STUDENT))
    schemes = [_text(c).split("### BEGIN MARK SCHEME\n", 1)[1] for c in _cells(SOURCE) if "MARK SCHEME" in _text(c)]
    assert len(schemes) == 17 and "MARK SCHEME" not in student and "Mark scheme" not in student
    lines = [line.strip() for scheme in schemes for line in scheme.splitlines() if len(line.strip()) >= 12]
    assert [line for line in lines if line in student] == []


def test_init_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    proc = subprocess.run(
        [sys.executable, "-m", "autograder.instructor.course", "init", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=tool_env(),
    )
    assert proc.returncode == 2 and (tmp_path / "notes.txt").read_text() == "mine"
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path} is not empty and was not made by 'course init' (no generated nbgrader_config.py): "
        "give a new or empty folder"
    ]


def _ran(cell_id: str, *outputs: dict, grade_id: str | None = None, count: int | None = 1) -> dict:
    meta = {"nbgrader": {"grade_id": grade_id, "locked": True}} if grade_id else {}
    return {
        "cell_type": "code",
        "id": cell_id,
        "metadata": meta,
        "execution_count": count,
        "outputs": list(outputs),
        "source": "",
    }


PRINTED = {"output_type": "stream", "name": "stdout", "text": ["practical: /x/submission (package 'submission')\n"]}
RAISED = {
    "output_type": "error",
    "ename": "ModuleNotFoundError",
    "evalue": "No module named 'submission'",
    "traceback": [],
}


@pytest.mark.parametrize(
    "cells, expected",
    [
        ([_ran("setup", PRINTED)], None),
        ([_ran("abc", PRINTED, grade_id="setup")], None),  # found by its grade id when the cell id changed
        (
            [_ran("setup", RAISED)],
            "the notebook's setup cell failed: ModuleNotFoundError: No module named 'submission'",
        ),
        ([_ran("setup", count=None)], "the notebook's setup cell failed: it never ran"),
        ([_ran("other", PRINTED)], "the notebook's setup cell failed: there is no setup cell"),
        (
            [_ran("setup", {**PRINTED, "text": "practical: /r/solutions (package 'solutions')\n"})],
            "the notebook's setup cell failed: it did not import the student's package",
        ),
    ],
    ids=["ok", "by-grade-id", "raised", "never-ran", "deleted", "other-package"],
)
def test_the_setup_cell_is_checked(tmp_path, cells, expected):
    path = tmp_path / "practical9.ipynb"
    path.write_text(json.dumps({"cells": [*cells, _ran("part1_run", RAISED, grade_id="part1_run")]}))
    error, notes = notebook_run.inspect_notebook(path)
    assert (error or "").startswith(expected or "") and (error is None) == (expected is None), error
    assert notes == (
        [] if expected else ["provided cell part1_run raised ModuleNotFoundError: No module named 'submission'"]
    )


# ------------------------------------------------------------------------------ the course (slow)


def _code_cell(cell_id: str, source: str) -> dict:
    return {
        "cell_type": "code",
        "execution_count": None,
        "id": cell_id,
        "metadata": {},
        "outputs": [],
        "source": source,
    }


def _snoop(course: Path, escape: Path) -> dict:
    """A cell that tries what the sandbox must refuse, and one write it must allow (in HOME)."""
    attempts = {
        "read_reference": f"open({str(ROOT / 'solutions' / 'partition.py')!r}).read()",
        "read_other_student": f"open({str(course / 'submitted' / 'carol' / 'practical9' / 'partition.py')!r}).read()",
        "read_gradebook": f"open({str(course / 'gradebook.db')!r}, 'rb').read(16)",
        "write_course": f"open({str(course / 'escaped.txt')!r}, 'w').write('x')",
        "write_notebook_folder": "open('escaped.txt', 'w').write('x')",
        "write_tmp": f"open({str(escape)!r}, 'w').write('x')",
        "write_home": "open(os.path.join(os.environ['HOME'], 'allowed.txt'), 'w').write('x')",
        "connect_tcp": "__import__('socket').create_connection(('127.0.0.1', 9), timeout=5)",
    }
    lines = ["import json, os", "seen = {}"]
    for name, code in attempts.items():
        lines += [
            "try:",
            f"    {code}",
            f"    seen[{name!r}] = 'allowed'",
            "except Exception as exc:",
            f"    seen[{name!r}] = type(exc).__name__",
        ]
    lines.append("print('SANDBOX ' + json.dumps(seen, sort_keys=True))")
    return _code_cell("snoop", "\n".join(lines) + "\n")


def _submit(course: Path, student: str, cells: list[dict], code: dict[str, str]) -> None:
    folder = course / "submitted" / student / "practical9"
    folder.mkdir(parents=True)
    nb = json.loads(SOURCE.read_text(encoding="utf-8"))
    nb["cells"] = cells
    (folder / "practical9.ipynb").write_text(json.dumps(nb, indent=1), encoding="utf-8")
    for name, text in code.items():
        (folder / name).write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """After one ``autograde`` run: (course, its output, its exit status, the escape path, run folders left)."""
    pytest.importorskip("nbgrader", reason='environment: nbgrader is not installed (pip install -e ".[ta]")')
    pytest.importorskip("ipykernel", reason="environment: autograding notebooks needs ipykernel")
    course = tmp_path_factory.mktemp("nbcourse") / "course"
    escape = Path(tempfile.gettempdir()) / f"pp-escape-{course.parent.name}"
    before = set(Path(tempfile.gettempdir()).glob("pp-notebook-*"))
    cli = [sys.executable, "-m", "autograder.instructor.course"]
    init = subprocess.run(
        [*cli, "init", str(course)], cwd=ROOT, capture_output=True, text=True, timeout=300, env=tool_env()
    )
    assert init.returncode == 0, init.stdout + init.stderr
    reference = _cells(SOURCE)
    solutions = {name: (ROOT / "solutions" / name).read_text(encoding="utf-8") for name in CODE}
    _submit(course, "alice", [*reference, _snoop(course, escape)], solutions)
    local = _code_cell("my_laptop", "import os\nos.environ['PRACTICAL9_ROOT'] = '/home/bob/practical9'\n")
    broken = {
        "partition.py": solutions["partition.py"],
        "schedules.py": solutions["schedules.py"],
        "microbatch.py": "raise ImportError('bob broke microbatch.py')\n",
    }
    _submit(course, "bob", [reference[0], local, *reference[1:], _snoop(course, escape)], broken)
    _submit(
        course, "carol", [*reference[:3], _code_cell("crash", "import os\nos._exit(3)\n"), *reference[3:]], solutions
    )
    proc = subprocess.run(
        [*cli, "autograde", str(course)], cwd=ROOT, capture_output=True, text=True, timeout=900, env=tool_env()
    )
    left = set(Path(tempfile.gettempdir()).glob("pp-notebook-*")) - before
    yield course, proc.stdout + proc.stderr, proc.returncode, escape, left
    escape.unlink(missing_ok=True)


def _snooped(course: Path, student: str) -> dict:
    cells = _cells(course / "autograded" / student / "practical9" / "practical9.ipynb")
    text = "".join("".join(o.get("text", "")) for c in cells if c.get("id") == "snoop" for o in c.get("outputs", []))
    assert "SANDBOX " in text, f"{student}'s snoop cell printed nothing: {text!r}"
    return json.loads(text.split("SANDBOX ", 1)[1].splitlines()[0])


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_init_makes_an_nbgrader_course(graded):
    course = graded[0]
    config = (course / "nbgrader_config.py").read_text(encoding="utf-8")
    assert config.startswith(course_tool.MARKER)
    assert 'c.Execute.kernel_name = "practical9-sandbox"' in config and "c.Execute.timeout = 300" in config
    assert (course / "source" / "practical9" / "practical9.ipynb").read_bytes() == SOURCE.read_bytes()
    assert (course / "release" / "practical9" / "practical9.ipynb").read_bytes() == STUDENT.read_bytes()
    readme = (course / "README.md").read_text(encoding="utf-8")
    assert "python -m autograder.instructor.course autograde" in readme and "partition.py" in readme


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_reference_gets_every_autograded_point(graded):
    course, out, status, _, _ = graded
    scores = course_tool.notebook_scores(course)
    alice = scores["alice"]
    assert (alice["autograded"], alice["max_autograded"], alice["max_manual"], alice["max"]) == (8, 8, 27, 35), out
    assert alice["status"] == "needs manual grading" and alice["error"] == "" and alice["manual"] is None
    assert alice["manual_pending"] == 17 and "ERROR alice" not in out and "NOTE alice" not in out
    summary = "alice: autograded 8/8, manual -/27, total max 35, needs manual grading"
    assert summary in out.splitlines(), out
    rows = {line.split(",")[0]: line for line in (course / "notebook_grades.csv").read_text().splitlines()}
    assert rows["student"].startswith("student,autograded,max_autograded,manual,max_manual,max,status,error")
    assert rows["alice"] == "alice,8,8,,27,35,needs manual grading,,"
    assert status == 1  # bob and carol


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_failed_setup_cell_is_a_loud_error_not_a_silent_zero(graded):
    course, out, _, _, _ = graded
    assert (
        "ERROR bob: the notebook's setup cell failed: RuntimeError: run this notebook inside the practical's "
        "repository (/home/bob/practical9 is not), or set PRACTICAL9_ROOT"
    ) in out.splitlines()
    assert "NOTE bob: no usable per_stage.py in the submission: the skeleton's were used" in out.splitlines()
    bob = course_tool.notebook_scores(course)["bob"]
    assert bob["status"] == "error" and "setup cell failed" in bob["error"] and bob["autograded"] < 8
    assert (
        "bob,3,8,,27,35,error,\"the notebook's setup cell failed: RuntimeError"
        in (course / "notebook_grades.csv").read_text()
    )
    carol = course_tool.notebook_scores(course)["carol"]
    assert carol["status"] == "error" and "DeadKernelError: Kernel died" in carol["error"], carol
    assert re.search(r"^ERROR carol: the notebook was not autograded \(the kernel died", out, re.MULTILINE), out
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:  # the formgrader lists bob for review
        grades = [g for nb in gradebook.find_submission("practical9", "bob").notebooks for g in nb.grades]
        assert all(g.needs_manual_grade for g in grades if g.cell_type == "code")
        assert not any(g.needs_manual_grade for g in grades if g.cell_type_taskcell is not None)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_graders_see_the_mark_schemes(graded):
    course = graded[0]
    cells = {c["id"]: c for c in _cells(course / "autograded" / "alice" / "practical9" / "practical9.ipynb")}
    assert "### BEGIN MARK SCHEME" in _text(cells["final_q3_question"])
    assert "**Mark scheme** (2 points" in _text(cells["final_q3_question"])


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_kernel_is_sandboxed(graded):
    course, out, _, escape, left = graded
    if landlock_abi() < 1:
        pytest.skip("environment: no Landlock, so the kernel's files are not confined here")
    assert re.search(r"^sandbox: package .*/submission; identity [\w-]+; landlock ABI \d", out, re.MULTILINE), out
    for student in ("alice", "bob"):
        seen = _snooped(course, student)
        assert {k: seen[k] for k in DENIED} == {k: "PermissionError" for k in DENIED}, (student, seen)
        assert seen["write_home"] == "allowed", (student, seen)
        if landlock_abi() >= 4:
            assert seen["connect_tcp"] == "PermissionError", (student, seen)
        assert not (course / "autograded" / student / "practical9" / "escaped.txt").exists()
    assert not (course / "escaped.txt").exists() and not escape.exists()
    assert left == set(), f"run folders left behind: {left}"
    assert not list((course / "autograded").rglob("allowed.txt"))

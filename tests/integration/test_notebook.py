"""The notebook: the nbgrader source solutions/practical9.ipynb and its release assignment/practical9.ipynb."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autograder.instructor import notebook, release
from autograder.instructor.toolenv import find_tool, tool_env
from tests.support import ROOT
from tests.support.course_text import ALL_QUESTIONS, AUTOGRADED, ORIGINAL_QUESTIONS, plain

SOURCE = ROOT / "solutions" / "practical9.ipynb"
STUDENT = ROOT / "assignment" / "practical9.ipynb"
NAME = "practical9.ipynb"

# Every question of the original handout (../shared/course/practical9.txt), by part, in its words.


def cells(path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def meta(cell: dict) -> dict:
    return cell["metadata"].get("nbgrader", {})


def notebook_regions() -> list[release.Region]:
    return [r for r in release.solution_regions(ROOT / "solutions") if r.path == NAME]


# ------------------------------------------------------------------------------ the release


def test_student_notebook_is_the_release_of_the_source():
    assert release.generate(ROOT / "solutions")[NAME] == STUDENT.read_bytes()


def test_release_is_deterministic():
    src = release.SourceFile(NAME, "solutions/" + NAME, SOURCE.read_bytes(), "solutions")
    first, second = notebook.release_notebook(src), notebook.release_notebook(src)
    assert first.content == second.content and first.regions == second.regions


def test_every_answer_is_a_region_and_none_is_left():
    regions = notebook_regions()
    solution_cells = [c for c in cells(SOURCE) if meta(c).get("solution")]
    assert len(regions) == len(solution_cells) == 21
    assert {r.task_id for r in regions} == {f"notebook.{meta(c)['grade_id']}" for c in solution_cells}
    student = STUDENT.read_bytes()
    assert release.leaked_lines({f"assignment/{NAME}": student}, release.solution_regions(ROOT / "solutions")) == []
    text = "\n".join(source(c) for c in cells(STUDENT))
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    for region in regions:  # stricter than the release's scan: every answer line of 12 characters or more
        for line in region.lines:  # (lines also outside the answers, like a template's, are public)
            if len(line.strip()) >= 12 and line.strip() not in region.shared:
                assert line.strip() not in text, f"{region.task_id}: {line.strip()!r} is in the student notebook"
    for cell in cells(STUDENT):
        if meta(cell).get("solution"):
            stub = "YOUR ANSWER HERE" if cell["cell_type"] == "markdown" else "raise NotImplementedError()"
            assert stub in source(cell), meta(cell)["grade_id"]
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


def test_notebook_answers_are_regions_not_code_tasks():
    assert not [t for t in release.find_tasks(ROOT / "solutions") if t.task_id.startswith("notebook.")]
    assert all(r.task_id.startswith("notebook.") for r in notebook_regions())


def test_grade_cells_keep_their_ids_and_points():
    keys = ("grade", "solution", "locked", "points", "grade_id", "schema_version")
    src = {c["id"]: c for c in cells(SOURCE)}
    out = {c["id"]: c for c in cells(STUDENT)}
    assert list(src) == list(out)
    for cell_id, cell in src.items():
        assert {k: meta(cell).get(k) for k in keys} == {k: meta(out[cell_id]).get(k) for k in keys}, cell_id
        assert out[cell_id]["cell_type"] == cell["cell_type"]
        if meta(cell).get("grade") or meta(cell).get("solution") or meta(cell).get("locked"):
            assert len(meta(out[cell_id])["checksum"]) == 32, cell_id
    points = {meta(c)["grade_id"]: meta(c)["points"] for c in cells(STUDENT) if meta(c).get("grade")}
    assert {k: v for k, v in points.items() if k in AUTOGRADED} == AUTOGRADED
    assert sum(points.values()) == 35 and len(points) == 17 + len(AUTOGRADED)


def test_locked_cells_stay_locked():
    for cell in cells(STUDENT):
        m, md = meta(cell), cell["metadata"]
        if m.get("solution"):  # answers: editable, not deletable
            assert md.get("deletable") is False and md.get("editable", True) is True, m["grade_id"]
        elif m.get("grade") or m.get("locked"):  # tests and instructions: read-only
            assert md.get("deletable") is False and md.get("editable") is False, m["grade_id"]
            assert m["locked"] is True
        else:
            pytest.fail(f"cell {cell['id']} has no nbgrader role")


@pytest.mark.parametrize("path", [SOURCE, STUDENT], ids=["source", "student"])
def test_every_original_question_is_asked_then_answered(path):
    nb = cells(path)
    for part, questions in ORIGINAL_QUESTIONS.items():
        for question in questions:
            where = [
                i for i, c in enumerate(nb) if c["cell_type"] == "markdown" and plain(question) in plain(source(c))
            ]
            assert len(where) == 1, f"{question!r} is asked {len(where)} times"
            asked, answer = nb[where[0]], nb[where[0] + 1]
            assert meta(asked)["locked"] and not meta(asked)["grade"], question
            assert answer["cell_type"] == "markdown" and meta(answer)["grade"] and meta(answer)["solution"], question
            assert meta(answer)["points"] >= 1 and meta(answer)["grade_id"].startswith(part), question


def test_every_question_has_a_reference_answer():
    regions = {r.task_id: r for r in notebook_regions()}
    nb = cells(SOURCE)
    for question in ALL_QUESTIONS:
        i = next(i for i, c in enumerate(nb) if plain(question) in plain(source(c)))
        answer = regions[f"notebook.{meta(nb[i + 1])['grade_id']}"]
        words = " ".join(answer.lines).split()
        assert len(words) >= 40, f"{question!r}: reference answer of {len(words)} words"


def test_reference_answers_agree_with_the_corrections():
    """The reference answers must not repeat what the measurements contradict."""
    text = plain(" ".join(" ".join(r.lines) for r in notebook_regions()))
    assert "(p-1)/(m+p-1)" in text and "same bubble" in text
    assert "1.23x" in text and "1.10x" in text and "2.91x" in text
    assert not re.search(r"1F1B (has|gives) (a )?(smaller|lower|fewer)", text)


# ------------------------------------------------------------------------------ nbgrader itself


def _nbgrader_cli() -> list[str]:
    pytest.importorskip("nbgrader", reason='environment: nbgrader is not installed (pip install -e ".[ta]")')
    return [sys.executable, "-m", "nbgrader"]


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """An nbgrader course directory with the source notebook, released by nbgrader generate_assignment."""
    cli = _nbgrader_cli()
    root = tmp_path_factory.mktemp("course")
    (root / "source" / "practical9").mkdir(parents=True)
    shutil.copy(SOURCE, root / "source" / "practical9" / NAME)
    proc = subprocess.run(
        [*cli, "generate_assignment", "practical9", "--force", f"--CourseDirectory.root={root}"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env=tool_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


def test_nbgrader_runs_without_the_environment_on_path(tmp_path):
    """A TA (or CI) who runs nbgrader with a venv's python that is not activated: nbgrader runs its
    database migrations with the ``alembic`` executable by name, found through tool_env()."""
    cli = _nbgrader_cli()
    bare = os.pathsep.join(p for p in ("/usr/local/bin", "/usr/bin", "/bin") if Path(p).is_dir())
    assert find_tool("alembic") is not None
    proc = subprocess.run(
        [*cli, "db", "student", "add", "someone", f"--CourseDirectory.root={tmp_path}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=tool_env({"HOME": str(tmp_path), "PATH": bare}),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "gradebook.db").is_file()


def test_release_equals_nbgrader_generate_assignment(course):
    assert (course / "release" / "practical9" / NAME).read_bytes() == STUDENT.read_bytes()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_nbgrader_autograde_gives_the_reference_every_autograded_point(course, tmp_path):
    from nbgrader.api import Gradebook

    cli = _nbgrader_cli()
    submitted = course / "submitted" / "ref" / "practical9"
    submitted.mkdir(parents=True)
    shutil.copy(SOURCE, submitted / NAME)
    env = tool_env(
        PRACTICAL9_ROOT=str(ROOT), PRACTICAL9_PACKAGE="solutions", PRACTICAL9_FIGURES=str(tmp_path / "figures")
    )
    for args in (["db", "student", "add", "ref"], ["autograde", "practical9", "--force"]):
        proc = subprocess.run(
            [*cli, *args, f"--CourseDirectory.root={course}"],
            cwd=course,
            env=env,
            capture_output=True,
            text=True,
            timeout=500,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        submission = gradebook.find_submission("practical9", "ref")
        assert (submission.code_score, submission.max_code_score) == (8, 8)
        assert submission.max_written_score == 27 and submission.needs_manual_grade


# ------------------------------------------------------------------------------ errors


def _package(tmp_path, nb: dict):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / NAME).write_text(json.dumps(nb), encoding="utf-8")
    return tmp_path / "pkg"


def _nb(*cell_list):
    return {
        "cells": list(cell_list),
        "metadata": {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _md(cell_id, text, **nbgrader):
    m = (
        {
            "nbgrader": {
                "schema_version": 3,
                "grade": False,
                "solution": False,
                "locked": False,
                "grade_id": cell_id,
                **nbgrader,
            }
        }
        if nbgrader
        else {}
    )
    return {"cell_type": "markdown", "id": cell_id, "metadata": m, "source": text}


def test_a_misspelt_marker_is_refused(tmp_path):
    pkg = _package(
        tmp_path, _nb(_md("a", "## Begin Solution\nthe answer\n## End Solution", grade=True, solution=True, points=1))
    )
    with pytest.raises(release.MarkerError, match="looks like a solution marker but is not one"):
        release.generate(pkg)


def test_an_answer_outside_a_solution_cell_is_refused(tmp_path):
    pkg = _package(tmp_path, _nb(_md("a", "### BEGIN SOLUTION\nthe answer\n### END SOLUTION")))
    with pytest.raises(release.ReleaseError, match="nbgrader refused the notebook: Solution region detected"):
        release.generate(pkg)


def test_cells_without_ids_are_refused(tmp_path):
    """nbformat would give them random ids, and the release would differ on every run."""
    cell = _md("a", "### BEGIN SOLUTION\nthe answer\n### END SOLUTION", grade=True, solution=True, points=1)
    del cell["id"]
    with pytest.raises(release.ReleaseError, match="cell 0 has no id"):
        release.generate(_package(tmp_path, _nb(cell)))


def test_without_nbgrader_the_release_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "nbgrader.preprocessors", None)  # as if nbgrader were not installed
    assert release.main(["--check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and 'pip install -e ".[ta]"' in err[0]


# ------------------------------------------------------------------------------ execution


def _client(nb, cwd):
    try:
        import ipykernel  # noqa: F401
        from nbclient import NotebookClient
    except ImportError as exc:
        pytest.skip(f"environment: executing the notebook needs nbclient and ipykernel ({exc})")
    return NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})


def _outputs(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o["output_type"] == "stream")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_solution_notebook_runs_end_to_end_in_two_minutes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="environment: executing the notebook needs nbformat")

    monkeypatch.setenv("PRACTICAL9_FIGURES", str(tmp_path / "figures"))
    monkeypatch.delenv("PRACTICAL9_PACKAGE", raising=False)
    monkeypatch.delenv("PRACTICAL9_ROOT", raising=False)
    nb = nbformat.read(SOURCE, as_version=4)
    client = _client(nb, SOURCE.parent)  # Jupyter's default: the notebook's own folder
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    assert elapsed <= 120, f"the notebook took {elapsed:.0f} s on this CPU (at most 120 s)"
    errors = [
        (c.id, o.get("ename"), o.get("evalue"))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]
    assert errors == []
    by_id = {c.id: c for c in nb.cells}
    assert "package 'solutions'" in _outputs(by_id["setup"])
    for grade_id in AUTOGRADED:
        assert _outputs(by_id[grade_id]).strip().endswith(": ok"), grade_id
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 7  # sweep, in-flight and five timelines
    assert "RuntimeError: Trying to backward through the graph a second time" in _outputs(by_id["part5_experiment"])
    sweep = json.loads((tmp_path / "figures" / "sweep.json").read_text())
    gpipe = {pt["m"]: pt for pt in sweep["schedules"]["gpipe"]["points"]}
    assert gpipe[8]["bubble"] == pytest.approx(3 / 11)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("where", ["root", "below the root"])
def test_notebook_finds_the_complete_package_from_the_repository(where, tmp_path, monkeypatch):
    """From the repository root (or a folder below it) the notebook picks the first package whose
    Parts 1-3 are done: here the skeleton assignment/ is not, so solutions/."""
    nbformat = pytest.importorskip("nbformat", reason="environment: executing the notebook needs nbformat")

    monkeypatch.delenv("PRACTICAL9_PACKAGE", raising=False)
    monkeypatch.delenv("PRACTICAL9_ROOT", raising=False)
    cwd = ROOT if where == "root" else ROOT / "autograder"
    nb = nbformat.read(STUDENT, as_version=4)
    nb.cells = [c for c in nb.cells if c.id == "setup"]
    _client(nb, cwd).execute()
    assert f"practical: {ROOT / 'solutions'} (package 'solutions')" in _outputs(nb.cells[0])

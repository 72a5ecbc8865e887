"""The student release: complete, runnable, and without solution text or hidden tests."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib

import pytest

from autograder import release, student_release
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    dest = tmp_path_factory.mktemp("student") / "repo"
    proc = subprocess.run([sys.executable, "-m", "autograder.release", "--student-repo", str(dest)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dest, proc.stdout


def test_release_proves_both_ends(released):
    _, out = released
    assert "solutions score" in out and "hidden included" in out
    assert "the skeleton scores 0/" in out and "every failure a NotImplementedError" in out


def test_release_contents(released):
    dest, _ = released
    paths = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert not any(p.startswith("solutions/") or "/hidden/" in p or p.startswith("tests/") for p in paths)
    assert {"README.md", "pyproject.toml", "assignment/schedules.py", "autograder/conftest.py"} <= paths
    assert "autograder/release.py" not in paths
    generated = release.read_tree(dest)
    assert release.leaked_lines(generated, release.solution_regions(ROOT / "solutions")) == []
    config = tomllib.loads((dest / "pyproject.toml").read_text())
    assert config["tool"]["setuptools"]["packages"]["find"]["include"] == ["assignment*", "autograder*"]
    readme = (dest / "README.md").read_text()
    assert "For students" in readme and "Grading and checks (TAs)" not in readme and "solutions" not in readme


def test_release_runs_students_main_job(released):
    dest, _ = released
    proc = subprocess.run([sys.executable, "-m", "assignment.run"], cwd=dest, capture_output=True, text=True)
    assert proc.returncode == 1 and "Still to implement" in proc.stdout and "Traceback" not in proc.stderr


def test_release_refuses_when_a_solution_fails(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info"))
    path = copy / "solutions" / "schedules.py"
    path.write_text(path.read_text().replace("    for loss in losses:\n        loss.backward()", "    pass"))
    with pytest.raises(student_release.ReleaseRefused, match="do not score full marks"):
        student_release.prove_reference(copy)


def test_release_never_overwrites_other_work(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(student_release.ReleaseRefused, match="not empty"):
        student_release.write_student_repo(tmp_path, {"a.txt": b"x"})
    assert (tmp_path / "notes.txt").read_text() == "mine"

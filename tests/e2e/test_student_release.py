"""The student release: complete, runnable, and without solution text or hidden tests."""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys

import pytest

from autograder.instructor import release, student_release
from tests.support import ROOT


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    dest = tmp_path_factory.mktemp("student") / "repo"
    proc = subprocess.run(
        [sys.executable, "-m", "autograder.release", "--student-repo", str(dest)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dest, proc.stdout


@pytest.mark.slow
def test_release_proves_both_ends(released):
    _, out = released
    assert "solutions score" in out and "hidden included" in out
    assert "the skeleton scores 0/" in out and "every failure a NotImplementedError" in out


@pytest.mark.slow
def test_release_contents(released):
    dest, _ = released
    paths = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert not any(p.startswith("solutions/") or "/hidden/" in p or p.startswith("tests/") for p in paths)
    assert {"README.md", "pyproject.toml", "assignment/schedules.py", "autograder/conftest.py"} <= paths
    assert "autograder/release.py" not in paths
    generated = release.read_tree(dest)
    assert release.leaked_lines(generated, release.solution_regions(ROOT / "solutions")) == []
    tomllib = pytest.importorskip("tomllib", reason="environment: tomllib needs Python 3.11")
    config = tomllib.loads((dest / "pyproject.toml").read_text())
    assert config["tool"]["setuptools"]["packages"]["find"]["include"] == ["assignment*", "autograder*"]
    readme = (dest / "README.md").read_text()
    assert "For students" in readme and "Grading and checks (TAs)" not in readme and "solutions" not in readme


@pytest.mark.slow
def test_release_runs_students_main_job(released):
    dest, _ = released
    proc = subprocess.run([sys.executable, "-m", "assignment.run"], cwd=dest, capture_output=True, text=True)
    assert proc.returncode == 1 and "Still to implement" in proc.stdout and "Traceback" not in proc.stderr


@pytest.mark.slow
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
        student_release.student_release(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_release_is_a_git_repository_with_one_commit(released):
    dest, out = released
    log = subprocess.run(["git", "-C", str(dest), "log", "--oneline"], capture_output=True, text=True, check=True)
    assert len(log.stdout.splitlines()) == 1 and "Pipeline Parallelism" in log.stdout
    status = subprocess.run(["git", "-C", str(dest), "status", "--porcelain"], capture_output=True, text=True)
    assert status.stdout == ""  # everything released is committed; the skeleton check left nothing behind
    assert f"wrote {dest}" in out


def test_a_failed_check_leaves_the_earlier_release_as_it_was(tmp_path, monkeypatch):
    dest = tmp_path / "release"
    dest.mkdir()
    (dest / student_release.MARKER_FILE).write_text("earlier\n")
    (dest / "README.md").write_text("the earlier release\n")
    monkeypatch.setattr(student_release, "prove_reference", lambda root: "proved")

    def skeleton_fails(built):
        assert (built / ".git").is_dir() and built.parent.parent == tmp_path  # built next to the destination
        raise student_release.ReleaseRefused("the untouched skeleton does not fail cleanly")

    monkeypatch.setattr(student_release, "check_skeleton_scores_zero", skeleton_fails)
    with pytest.raises(student_release.ReleaseRefused, match="skeleton"):
        student_release.student_release(dest)
    assert (dest / "README.md").read_text() == "the earlier release\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release"]  # no half-built folder left


# The reference GPipe and 1F1B lists are the answers of Part 6 (per_stage.py) as data: TA only.
PART6_ANSWERS = ("gpipe_schedule", "one_f_one_b_schedule")


def test_release_leaves_out_the_reference_gpipe_and_1f1b_lists():
    files = student_release.build_student_files()
    assert "autograder/reference_schedules.py" not in files and "autograder/bench.py" not in files
    for path, data in files.items():
        text = data.decode("utf-8", errors="replace")
        assert "reference_schedules" not in text, f"{path} names the TA-only module reference_schedules"
        for name in PART6_ANSWERS:
            assert f"def {name}" not in text, f"{path} defines {name}: the answer of Part 6"


def test_no_released_file_uses_the_reference_lists():
    """Code, notebook and documents students receive take GPipe and 1F1B from per_stage.py, never from the
    TAs' module."""
    files = student_release.build_student_files()
    for path, data in files.items():
        text = data.decode("utf-8", errors="replace")
        for name in PART6_ANSWERS:
            assert name not in text, f"{path} uses {name}, which the student release does not have"


def test_released_autograder_cannot_produce_the_1f1b_list(tmp_path):
    """Import every released autograder module (tests aside) in a copy of the release: none has the lists."""
    files = student_release.build_student_files()
    repo = tmp_path / "repo"
    student_release.write_student_repo(repo, files)
    modules = sorted(
        path[:-3].replace("/", ".").removesuffix(".__init__")
        for path in files
        if path.startswith("autograder/")
        and path.endswith(".py")
        and not path.rsplit("/", 1)[-1].startswith(("test_", "conftest", "__main__"))
    )
    probe = f"""
import importlib, importlib.util, sys
assert importlib.util.find_spec("autograder.instructor") is None, "autograder.instructor exists"
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    assert module.__file__.startswith({str(repo)!r}), (name, module.__file__)
    found = [answer for answer in {PART6_ANSWERS!r} if hasattr(module, answer)]
    assert not found, f"{{name}} has {{found}}"
print("imported", len(sys.argv) - 1)
"""
    # -S: no site processing, so an editable install of this repository (its .pth finder maps
    # autograder.* to this checkout) cannot supply modules the release does not have; torch and
    # the other dependencies come from the site-packages folders, put on the path as plain folders.
    path = os.pathsep.join([str(repo), *site.getsitepackages()])
    env = {**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, "-S", "-c", probe, *modules], cwd=repo, capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"imported {len(modules)}" in proc.stdout and len(modules) >= 10


def quick_start_commands(readme: str) -> str:
    """The first bash block after the README's "### Quick start" heading, verbatim."""
    section = readme.split("### Quick start", 1)[1]
    return section.split("```bash\n", 1)[1].split("```", 1)[0]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quick_start_runs_verbatim_in_a_fresh_environment(released, tmp_path):
    """The student README's quick start, copied as it is, in a fresh copy of the release with no
    environment activated: it installs, runs the main job and ends with the skeleton's score table."""
    dest, _ = released
    repo = tmp_path / "repo"
    shutil.copytree(dest, repo, ignore=shutil.ignore_patterns(".venv", "__pycache__", "*.egg-info"))
    script = quick_start_commands((repo / "README.md").read_text())
    assert "source .venv/bin/activate" in script and "python -m pytest autograder/" in script
    env = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "LC_ALL", "TMPDIR")}
    env["PATH"] = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if ".venv" not in p)
    proc = subprocess.run(["bash", "-c", script], cwd=repo, capture_output=True, text=True, timeout=880, env=env)
    out = proc.stdout + proc.stderr
    assert "Still to implement" in out, out[-3000:]
    assert re.search(r"Total\s+0/\d+", out), out[-3000:]
    assert "Traceback" not in out and "Warning" not in out, out[-3000:]

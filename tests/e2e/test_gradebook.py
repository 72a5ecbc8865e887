"""The TA's whole cycle on a Gradescope export: notebooks and code graded, one gradebook.

An export in Gradescope's layout (``submission_metadata.yml`` and one ``submission_<id>/`` per
submission) with four submissions: alice (the reference), bob (a ``microbatch.py`` that raises at
import: his notebook's setup cell fails), mallory (a hostile daemon that rewrites results.json) and
a group of two (carol and dan, late, no notebook). The course commands collect and autograde the
notebooks; ``autograder.grade --batch --jobs 2 --notebooks --deadline`` writes the gradebook.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import pytest

from autograder.practical import EDITABLE_FILES
from tests.support import ROOT
from tests.support.hostile import HOSTILE
from tests.support.submissions import build

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
QUICK = "returns_batch_loss or split_sizes_order_and_pairs or test_balanced"
METADATA = """\
submission_1001:
  :submitters:
  - :name: Alice Liddell
    :sid: '1001'
    :email: alice@example.edu
  :created_at: 2026-11-20 17:02:11.123456000 -08:00
submission_1002:
  :submitters:
  - :name: Bob Builder
    :sid: '1002'
    :email: bob@example.edu
  :created_at: 2026-11-21 23:58:59.000000000 -08:00
submission_1003:
  :submitters:
  - :name: Mallory Mint
    :sid: '1003'
    :email: mallory@example.edu
  :created_at: 2026-11-21 12:00:00.000000000 -08:00
submission_1004:
  :submitters:
  - :name: Carol Chen
    :sid: '1004'
    :email: carol@example.edu
  - :name: Dan Dunn
    :sid: '1005'
    :email: dan@example.edu
  :created_at: 2026-11-22 09:30:00.000000000 -08:00
"""


def _export(folder):
    notebook = ROOT / "solutions" / "practical9.ipynb"
    for sub, code in (("submission_1001", {}), ("submission_1002", {"microbatch.py": "raise ImportError('bob')\n"})):
        target = folder / sub
        target.mkdir(parents=True)
        for name in EDITABLE_FILES:
            (target / name).write_text(code.get(name) or (ROOT / "solutions" / name).read_text())
        shutil.copyfile(notebook, target / "practical9.ipynb")
    build(HOSTILE["daemon_and_proc_mem"].submission, folder / "submission_1003")
    shutil.copyfile(notebook, folder / "submission_1003" / "practical9.ipynb")
    (folder / "submission_1004").mkdir()
    for name in EDITABLE_FILES:
        shutil.copyfile(ROOT / "solutions" / name, folder / "submission_1004" / name)
    (folder / "submission_metadata.yml").write_text(METADATA)


def _run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_gradescope_export_to_one_gradebook(tmp_path):
    pytest.importorskip("nbgrader", reason='environment: nbgrader is not installed (pip install -e ".[ta]")')
    export, course = tmp_path / "export", tmp_path / "course"
    _export(export)
    assert _run("autograder.instructor.course", "init", str(course)).returncode == 0
    collected = _run("autograder.instructor.course", "collect", str(course), str(export))
    assert "collected 4 submissions" in collected.stdout, collected.stdout + collected.stderr
    assert "NOTE submission_1004: no practical9.ipynb in the submission" in collected.stdout
    graded = _run("autograder.instructor.course", "autograde", str(course))
    assert graded.returncode == 1, graded.stdout + graded.stderr  # bob's setup cell, the group's missing notebook
    assert "ERROR submission_1002: the notebook's setup cell failed: ImportError: bob" in graded.stdout

    out, gradebook = tmp_path / "results", tmp_path / "grades.csv"
    batch = _run(
        "autograder.grade",
        "--batch",
        str(export),
        "--csv",
        str(gradebook),
        "--out",
        str(out),
        "--jobs",
        "2",
        "--no-hidden",
        "--select",
        QUICK,
        "--notebooks",
        str(course),
        "--deadline",
        "2026-11-21T23:59:00-08:00",
    )
    assert batch.returncode == 0, batch.stdout[-2000:] + batch.stderr[-2000:]
    assert "about" in batch.stdout and "s left" in batch.stdout  # progress with an ETA
    rows = list(csv.DictReader(gradebook.open(encoding="utf-8")))
    by_sid = {r["sid"]: r for r in rows}
    assert sorted(by_sid) == ["1001", "1002", "1003", "1004", "1005"]
    alice, bob, mallory, carol, dan = (by_sid[s] for s in ("1001", "1002", "1003", "1004", "1005"))
    assert (alice["name"], alice["email"], alice["student"]) == (
        "Alice Liddell",
        "alice@example.edu",
        "submission_1001",
    )
    assert [r["late"] for r in (alice, bob, mallory, carol, dan)] == ["no", "no", "no", "yes", "yes"]
    assert alice["notebook_autograded"] == alice["notebook_max_autograded"] == "8"
    assert alice["notebook_status"] == "needs manual grading" and alice["notebook_manual"] == ""
    assert float(alice["total"]) == float(alice["code_total"]) + 8 and float(alice["code_total"]) > 0
    assert bob["notebook_status"].startswith("error: the notebook's setup cell failed: ImportError: bob")
    assert float(bob["code_total"]) < float(alice["code_total"])
    assert mallory["integrity"] != "none" and alice["integrity"] == "none"
    assert mallory["code_total"] == alice["code_total"]  # its daemon changed nothing
    assert carol["code_total"] == dan["code_total"] == alice["code_total"]  # the group's points, one row each
    assert carol["notebook_status"].startswith("error: no practical9.ipynb")
    for row in rows:
        assert row["status"] == "graded", row
    for sub in ("submission_1001", "submission_1002", "submission_1003", "submission_1004"):
        json.loads((out / f"{sub}.json").read_text())
        assert (out / f"{sub}.log").is_file()

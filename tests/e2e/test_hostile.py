"""Hostile submissions, graded as a course grades them: ``python -m autograder.grade`` with no extra
flags (as root on this machine, as on Gradescope). For each attack: a valid results.json, the score
a correct grader gives (never more), the grader's files unchanged, nothing left behind (no process,
no file in world-writable folders), and the text of results.json safe for any database."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from autograder.gradescope import results as R
from tests.support import ROOT, failing, grade_cli, sandbox_processes
from tests.support.hostile import HOSTILE
from tests.support.submissions import build

pytestmark = pytest.mark.slow
WATCHED = (
    "autograder/judge",
    "autograder/harness",
    "autograder/graded",
    "autograder/hidden",
    "autograder/practical.py",
    "solutions",
    "assignment",
)
LEFTOVERS = ("/tmp/pp-daemon-was-here", "/tmp/pp-carry-1", "/tmp/pp-carry-4", "/tmp/pp-carry-8")


def source_digest() -> str:
    digest = hashlib.sha256()
    for folder in WATCHED:
        paths = [ROOT / folder] if folder.endswith(".py") else sorted((ROOT / folder).rglob("*.py"))
        for path in paths:
            digest.update(path.read_bytes())
    return digest.hexdigest()


def check_expectations(doc: dict, fails: dict) -> None:
    failed = failing(doc)
    assert doc["tests"], doc["output"]
    for test in doc["tests"]:
        keys = [k for k in fails if k in test["name"]]
        if keys:
            assert test["name"] in failed, f"{test['name']} passed; it must fail"
            says = fails[keys[0]]
            assert says is None or says in test["output"], f"{test['name']}: {test['output'][:600]}"
        else:
            assert test["name"] not in failed, f"{test['name']} failed: {test['output'][:800]}"


def check_clean_text(doc: dict) -> None:
    text = json.dumps(doc, ensure_ascii=False)
    for bad in ("\x00", "\x1b", "\ud800"):
        assert bad not in text
    text.encode("utf-8")  # no lone surrogate survives
    assert all(len(t["output"]) <= R.MAX_TEST_OUTPUT for t in doc["tests"])


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_submission(name, tmp_path):
    spec = HOSTILE[name]
    marker = tmp_path / "conftest-ran"
    sub = build(spec.submission, tmp_path / "sub", MARKER=str(marker), REPO=str(ROOT))
    before_source, before_processes = source_digest(), set(sandbox_processes())
    doc, out = grade_cli(
        sub, tmp_path, "--no-hidden", "--select", spec.select, "--call-timeout", str(spec.call_timeout)
    )
    R.validate(doc)
    check_expectations(doc, spec.fails)
    check_clean_text(doc)
    assert not marker.exists(), "a file of the submission ran"
    assert source_digest() == before_source, "the grader's or the reference's source changed"
    assert set(sandbox_processes()) <= before_processes, "a process of the grading survived it"
    for path in LEFTOVERS:
        assert not Path(path).exists(), f"{path} was left behind"

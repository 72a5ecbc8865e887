"""Helpers shared by the repository's tests: grading in a subprocess, the way TAs and Gradescope do.

* :func:`grade_cli`: ``python -m autograder.grade`` on a submission; returns results.json and output;
* :func:`grade_pytest`: ``pytest autograder/ --impl ...`` (the students' and TAs' command);
* :func:`by_name`, :func:`failing`: look tests up in a results document.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from autograder.instructor.toolenv import tool_env

ROOT = Path(__file__).resolve().parents[2]
WORKER_MARK = "autograder.harness.worker"  # in the command line of every sandbox worker and call


def grade_cli(submission: Path, tmp_path: Path, *extra: str, timeout: float = 900) -> tuple[dict, str]:
    """Grade ``submission`` with ``python -m autograder.grade``; return (results.json, output)."""
    results = tmp_path / f"results-{abs(hash((str(submission), extra)))}.json"
    cmd = [sys.executable, "-m", "autograder.grade", str(submission), "--results", str(results), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=tool_env())
    assert results.exists(), f"no results.json; the grader said:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(results.read_text(encoding="utf-8")), proc.stdout + proc.stderr


def grade_pytest(impl: str | Path, tmp_path: Path, *extra: str, timeout: float = 900) -> tuple[dict, str]:
    """``pytest autograder --impl IMPL``; return (its results.json, its output)."""
    results = tmp_path / f"results-{abs(hash((str(impl), extra)))}.json"
    cmd = [sys.executable, "-m", "pytest", "autograder", f"--impl={impl}", "--results-json", str(results), "-q", *extra]
    env = tool_env(PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    assert results.exists(), f"no results.json; pytest said:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(results.read_text(encoding="utf-8")), proc.stdout + proc.stderr


def by_name(doc: dict) -> dict[str, dict]:
    return {t["name"]: t for t in doc["tests"]}


def failing(doc: dict) -> dict[str, str]:
    """``{test name: output}`` of the tests that did not pass."""
    return {t["name"]: t["output"] for t in doc["tests"] if t["status"] != "passed"}


def sandbox_processes() -> list[str]:
    """Command lines of sandbox workers (and calls forked from them) still running."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if WORKER_MARK in cmdline:
            found.append(f"{entry}: {cmdline[:200]}")
    return found

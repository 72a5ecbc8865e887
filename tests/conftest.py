"""Shared helpers for the repository's own tests."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def grade(impl: str | Path, tmp_path: Path, *extra: str, timeout: float = 600) -> tuple[dict, str]:
    """Run the autograder on ``impl`` in a subprocess; return (results.json, terminal output)."""
    results = tmp_path / f"results-{abs(hash((str(impl), extra)))}.json"
    cmd = [sys.executable, "-m", "pytest", "autograder", "--impl", str(impl), "--results-json", str(results),
           "-q", "-p", "no:cacheprovider", *extra]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    assert results.exists(), f"no results.json; pytest said:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(results.read_text()), proc.stdout + proc.stderr


def by_name(results: dict) -> dict[str, dict]:
    return {t["name"]: t for t in results["tests"]}


@pytest.fixture(scope="session")
def solutions_results(tmp_path_factory):
    return grade("solutions", tmp_path_factory.mktemp("grade"))


@pytest.fixture(scope="session")
def skeleton_results(tmp_path_factory):
    return grade("assignment", tmp_path_factory.mktemp("grade"))

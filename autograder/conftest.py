"""``pytest autograder/`` grades ``assignment/`` (``--impl solutions`` the reference, ``--impl PATH`` a
submission): see ``autograder.judge.plugin``. Only ``graded/`` and, with ``--hidden``, ``hidden/``
hold tests; student code never runs in this process."""

from __future__ import annotations

from pathlib import Path

from autograder.judge.options import pytest_addoption  # noqa: F401 - hooks pytest finds by name
from autograder.judge.plugin import calls, leaderboard, pytest_configure, sandbox, staged, trials  # noqa: F401

HERE = Path(__file__).resolve().parent
TEST_FOLDERS = ("graded", "hidden")


def pytest_ignore_collect(collection_path, config):
    path = Path(collection_path).resolve()
    if path == HERE or HERE not in path.parents:
        return None
    top = path.relative_to(HERE).parts[0]
    if top not in TEST_FOLDERS or (top == "hidden" and not config.getoption("--hidden")):
        return True
    return None

"""Fixtures shared by the repository's tests; helpers live in ``tests.support``."""

from __future__ import annotations

import pytest

from tests.support import ROOT, grade_pytest

__all__ = ["ROOT"]


@pytest.fixture(scope="session")
def solutions_results(tmp_path_factory):
    """``pytest autograder --impl solutions --hidden``: (results.json, output)."""
    return grade_pytest("solutions", tmp_path_factory.mktemp("grade"), "--hidden")


@pytest.fixture(scope="session")
def skeleton_results(tmp_path_factory):
    """``pytest autograder`` on the untouched skeleton: (results.json, output)."""
    return grade_pytest("assignment", tmp_path_factory.mktemp("grade"))

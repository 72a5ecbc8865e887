"""Correct submissions in other styles than the reference score full marks, hidden tests included.

Each submission of ``tests.support.variants.CORRECT`` rewrites whole task bodies the way other
students write them (other autograd APIs, detached per-stage backward, activation checkpointing,
global torch settings, other loops and data structures, lists of strings or tuples). Each is graded
as a course grades it (``python -m autograder.grade``, hidden tests on): every test must pass, so
the score is the maximum. Two gradings run at a time in the background, in test order.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from tests.support import failing, grade_cli
from tests.support.submissions import build
from tests.support.variants import CORRECT, STYLES

pytestmark = pytest.mark.slow
WORKERS = 2


@pytest.fixture(scope="module")
def graded(request, tmp_path_factory) -> Callable[[str], tuple[dict, str]]:
    """``graded(name)``: (results.json, output) of ``CORRECT[name]``, graded with hidden tests. The
    gradings of every selected test are queued on first use, in test order."""
    wanted = [
        item.callspec.params["name"]
        for item in request.session.items
        if getattr(item, "module", None) is request.module
        and "name" in getattr(getattr(item, "callspec", None), "params", {})
    ]
    pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="grade")
    futures: dict[str, Future] = {}

    def grade(name: str) -> tuple[dict, str]:
        tmp = tmp_path_factory.mktemp(f"variant-{name}")
        return grade_cli(build(CORRECT[name], tmp / "submission"), tmp)

    def get(name: str) -> tuple[dict, str]:
        for key in [*wanted, name]:
            if key not in futures:
                futures[key] = pool.submit(grade, key)
        return futures[name].result()

    yield get
    pool.shutdown(wait=True, cancel_futures=True)


def test_every_variant_names_its_styles():
    """Every correct submission says which style each of its tasks is written in."""
    assert sorted(STYLES) == sorted(CORRECT)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", list(CORRECT))
def test_correct_variant_scores_full_marks(graded, name):
    """A correct submission written in these styles passes every test, hidden ones included, and gets
    the maximum score; the grader cares what the contract asks for, not how the code is written."""
    doc, out = graded(name)
    styles = "\n".join(f"  {task}: {style}" for task, style in STYLES[name].items())
    failed = failing(doc)
    report = "\n\n".join(f"{n}:\n{o[:1500]}" for n, o in failed.items())
    assert not failed, f"{name} ({len(failed)} failing):\n{styles}\n\n{report}"
    assert any(t.get("visibility") == "after_due_date" for t in doc["tests"]), "the hidden tests did not run"
    best = sum(t["max_score"] for t in doc["tests"])
    assert doc["score"] == pytest.approx(best), f"{name}: {doc['score']} of {best}\n{out[-2000:]}"

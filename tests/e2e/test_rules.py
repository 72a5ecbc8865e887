"""Every row of the specification table (``autograder.rules.RULES``) is enforced as stated.

For each rule, its known-buggy variant (``tests.support.buggy.BUGS``, one realistic student mistake)
is graded the way students and TAs grade (``pytest autograder --impl ...``) with the rule's ``-k``
selection: the rule's own test must fail with the rule's message (``says``), and no selected test
outside the rule's row of the score table may fail. One grading of the reference proves that every
test the rules name passes on a correct submission. The gradings run two at a time in the
background, in the order the tests will ask for them, so the whole file takes about two minutes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from autograder.judge.plugin import display_name
from autograder.practical import GROUP
from autograder.rules import RULES, Rule
from tests.support import failing, grade_pytest
from tests.support.buggy import BUGS
from tests.support.submissions import build

REFERENCE = "reference"
WORKERS = 2  # the machine has 2 cores; a grading is mostly one busy process


def selection(rule: Rule) -> str:
    """The ``-k`` expression the rule's variant is graded with."""
    return rule.select or rule.test.split("::")[1]


def name_prefix(rule: Rule) -> str:
    """The name the grader gives the rule's test (``plugin.display_name``)."""
    module, function = rule.test.split("::")
    return display_name(getattr(importlib.import_module(f"autograder.graded.{module}"), function), rule.group)


def is_test_of(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + " [")


def _grade_reference(tmp: Path) -> tuple[dict, str]:
    union = " or ".join(f"({selection(rule)})" for rule in RULES)
    return grade_pytest("solutions", tmp, "-k", union)


def _grade_bug(rule: Rule, tmp: Path) -> tuple[dict, str]:
    return grade_pytest(build(BUGS[rule.id], tmp / "submission"), tmp, "-k", selection(rule))


@pytest.fixture(scope="module")
def graded(request, tmp_path_factory) -> Callable[[str], tuple[dict, str]]:
    """``graded(key)``: (results.json, output) of the reference (``REFERENCE``) or of a rule's buggy
    variant. Every grading this session's selected tests need is queued on first use, in test order."""
    wanted = []
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        key = REFERENCE if item.name == "test_reference_passes_every_rule_test" else params.get("rule_id")
        if getattr(item, "module", None) is request.module and key and key not in wanted:
            wanted.append(key)
    pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="grade")
    futures: dict[str, Future] = {}
    rules = {rule.id: rule for rule in RULES}

    def submit(key: str) -> None:
        if key not in futures:
            tmp = tmp_path_factory.mktemp(f"rule-{key}")
            futures[key] = (
                pool.submit(_grade_reference, tmp) if key == REFERENCE else pool.submit(_grade_bug, rules[key], tmp)
            )

    def get(key: str) -> tuple[dict, str]:
        for k in wanted:
            submit(k)
        submit(key)
        return futures[key].result()

    yield get
    pool.shutdown(wait=True, cancel_futures=True)


def test_every_rule_has_one_buggy_variant(tmp_path):
    """BUGS has exactly one variant per rule id, every variant builds from the current reference (its
    replaced text is still there), and every rule names a graded test that exists and a known row."""
    assert sorted(BUGS) == sorted(rule.id for rule in RULES)
    assert len({rule.id for rule in RULES}) == len(RULES), "rule ids must be unique"
    for rule in RULES:
        assert rule.group in GROUP, f"{rule.id}: unknown group {rule.group}"
        assert name_prefix(rule)  # the module and the function exist
        build(BUGS[rule.id], tmp_path / rule.id)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_reference_passes_every_rule_test(graded):
    """The reference passes every test a rule names (graded once, with every rule's selection)."""
    doc, out = graded(REFERENCE)
    assert doc["tests"], out[-3000:]
    assert not failing(doc), "\n\n".join(f"{n}: {o[:800]}" for n, o in failing(doc).items())
    names = [t["name"] for t in doc["tests"]]
    for rule in RULES:
        prefix = name_prefix(rule)
        assert any(is_test_of(n, prefix) for n in names), f"{rule.id}: no test {prefix!r} ran for the reference"


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("rule_id", [rule.id for rule in RULES])
def test_rule_is_enforced(graded, rule_id):
    """The rule's buggy variant fails the rule's test with the rule's message, and fails no selected
    test outside the rule's row of the score table (a mistake costs only its own part's points)."""
    rule = next(r for r in RULES if r.id == rule_id)
    doc, out = graded(rule_id)
    prefix, title = name_prefix(rule), GROUP[rule.group].title
    ran = [t["name"] for t in doc["tests"] if is_test_of(t["name"], prefix)]
    assert ran, f"-k {selection(rule)!r} selected no test {prefix!r}:\n{out[-3000:]}"
    failed = failing(doc)
    own = {n: o for n, o in failed.items() if is_test_of(n, prefix)}
    report = "\n\n".join(f"{n}:\n{o[:1200]}" for n, o in failed.items()) or "(no test failed)"
    assert own, f"{rule_id}: the buggy variant passes {prefix!r}.\n{report}"
    assert any(rule.says in o for o in own.values()), f"{rule_id}: no failure says {rule.says!r}.\n{report}"
    outside = [n for n in failed if not n.startswith(title + ": ")]
    assert not outside, f"{rule_id}: tests outside {title!r} failed: {outside}\n{report}"

"""The specification table prints one row per rule, each naming a graded test that exists."""

from __future__ import annotations

import importlib

from autograder.rules import RULES, markdown


def test_markdown_has_one_row_per_rule_and_every_test_exists():
    rows = markdown().splitlines()[2:]
    assert len(rows) == len(RULES)
    for rule, row in zip(RULES, rows):
        assert rule.rule.replace("|", "\\|") in row and rule.says in row
        module, function = rule.test.split("::")
        assert callable(getattr(importlib.import_module(f"autograder.graded.{module}"), function))

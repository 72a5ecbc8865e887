"""The autograder's command-line options for pytest, registered before pytest reads its arguments.

``pyproject.toml`` loads this module with ``-p autograder.judge.options`` (in ``addopts``), so
``pytest autograder/ --impl PATH`` always reads PATH as the option's value: never as a test path,
whose ``conftest.py`` pytest would import. ``autograder/conftest.py`` registers the same options
when pytest runs without that configuration; registering twice is harmless.
"""

from __future__ import annotations

from .budget import DEFAULT_TOTAL_S

OPTIONS = (
    (
        "--impl",
        dict(
            default="assignment",
            metavar="WHAT",
            help="what to grade: 'assignment' (default), 'solutions', or a submission folder or .zip "
            "(only its editable files are read)",
        ),
    ),
    (
        "--part",
        dict(
            action="append",
            type=int,
            default=None,
            metavar="N",
            help="only the tests of the handout's part N (repeat for several parts)",
        ),
    ),
    ("--hidden", dict(action="store_true", help="also run the tests kept for grading")),
    (
        "--budget",
        dict(
            type=float,
            default=DEFAULT_TOTAL_S,
            metavar="SECONDS",
            help=f"time budget of the whole grading (default {DEFAULT_TOTAL_S:g} s)",
        ),
    ),
    (
        "--call-timeout",
        dict(
            type=float, default=20.0, metavar="SECONDS", help="seconds one call into student code may take (default 20)"
        ),
    ),
    ("--trial-timeout", dict(type=float, default=None, help="old name of --call-timeout")),
    ("--results-json", dict(default=None, metavar="PATH", help="write Gradescope's results.json here")),
    (
        "--outcomes",
        dict(
            default=None,
            metavar="PATH",
            help="stream each test's outcome to this file as it ends (used by autograder.grade)",
        ),
    ),
    ("--isolate", dict(action="store_true", help="kept for compatibility: student code always runs isolated")),
    ("--sandbox-user", dict(default=None, help="kept for compatibility: a private uid is chosen per grading")),
)


def pytest_addoption(parser) -> None:
    group = parser.getgroup("autograder", "Practical 9 autograder")
    for name, kwargs in OPTIONS:
        try:
            group.addoption(name, **kwargs)
        except ValueError:  # already registered (this module and autograder/conftest.py both do it)
            return

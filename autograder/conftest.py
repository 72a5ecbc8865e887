"""pytest configuration of the autograder: ``pytest autograder/`` grades ``assignment/``.

Options: ``--impl assignment|solutions|PATH`` (what to grade), ``--isolate`` (run student code in
sandboxed child processes, as the grader does), ``--results-json PATH`` (write Gradescope's
results.json), ``--hidden`` (also run the tests kept for grading). Every graded test carries a
``points`` marker; the score table is printed at the end.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from autograder.impl import ImplError, resolve
from autograder.scoring import ScorePlugin
from autograder.trial import InProcessRunner, TimeoutBreaker, TrialSpec, run_trial

HERE = Path(__file__).resolve().parent
collect_ignore = []


def pytest_addoption(parser):
    group = parser.getgroup("autograder")
    group.addoption("--impl", default="assignment",
                    help="what to grade: 'assignment' (default), 'solutions', or a submission directory")
    group.addoption("--isolate", action="store_true",
                    help="run student code in sandboxed child processes (as grading does)")
    group.addoption("--results-json", default=None, help="write Gradescope results.json here")
    group.addoption("--hidden", action="store_true", help="also run the hidden tests kept for grading")
    group.addoption("--trial-timeout", type=float, default=20.0,
                    help="seconds one call into student code may take before it counts as hanging (after two "
                         "such timeouts, later calls get 5 s)")
    group.addoption("--sandbox-user", default=None,
                    help="with --isolate, run student code as this (unprivileged) user when running as root")


def pytest_ignore_collect(collection_path, config):
    if collection_path.name == "hidden" and collection_path.parent == HERE and not config.getoption("--hidden"):
        return True
    if collection_path.name == "gradescope" and collection_path.parent == HERE:
        return True
    return None


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n, part): points of a graded test and its part")
    config.addinivalue_line("markers", "hidden: a test that runs only when grading")
    check_impl_option(config)
    path = config.getoption("--results-json")
    config.pluginmanager.register(ScorePlugin(Path(path) if path else None), "autograder-score")


def check_impl_option(config) -> None:
    """Reject a bad ``--impl`` before any test runs: one line, not a setup error per test."""
    spec = config.getoption("--impl")
    if spec not in ("assignment", "solutions") and not Path(spec).expanduser().is_dir():
        raise pytest.UsageError(f"--impl {spec}: not 'assignment', 'solutions' or an existing directory")


@pytest.fixture(scope="session")
def runner(request, tmp_path_factory):
    try:
        impl = resolve(request.config.getoption("--impl"), tmp_path_factory.mktemp("impl"))
    except ImplError as exc:
        raise pytest.UsageError(str(exc)) from None
    if request.config.getoption("--isolate"):
        from autograder.sandbox import SandboxRunner
        r = SandboxRunner(impl, timeout=request.config.getoption("--trial-timeout"),
                          user=request.config.getoption("--sandbox-user"))
    else:
        r = InProcessRunner(impl, timeout=request.config.getoption("--trial-timeout"))
    r = TimeoutBreaker(r)
    yield r
    r.close()


@pytest.fixture(scope="session")
def trials(runner):
    """``trials(spec)``: the traced step for ``spec``, run once per session and shared by tests."""
    cache = {}

    def get(spec: TrialSpec):
        if spec not in cache:
            cache[spec] = run_trial(runner, spec)
        return cache[spec]

    return get

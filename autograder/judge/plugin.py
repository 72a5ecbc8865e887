"""The pytest plugin of ``pytest autograder/``: what to grade, the sandbox, points and the score table.

* ``--impl``: the implementation (``assignment``, ``solutions`` or a submission folder or zip) is
  staged (``judge.staging``: its editable files only) and graded in a sandbox (``judge.sandbox``);
  nothing of it is ever imported by this process.
* ``points(n, group)`` markers give each graded test its points and its row of the score table
  (``practical.GROUPS``); tests run and are numbered in handout order; ``--part N`` keeps one part.
* Each test's outcome is streamed to ``--outcomes`` as it ends, so a grading stopped half-way
  still reports every test that finished; ``--results-json`` writes Gradescope's results.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from .. import practical
from ..gradescope import results as R
from .budget import Budget
from .calls import Calls
from .sandbox import Limits, Sandbox
from .staging import REPO_ROOT, StagingError, stage
from .text import clean
from .trial import TrialSpec, run_trial

ENVIRONMENT_SKIP = "environment: "  # skip reasons that do not count against the student


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "points(n, group): points of a graded test and its row of the score table")
    config.addinivalue_line("markers", "hidden: a test that runs only when grading")
    config.pluginmanager.register(ScorePlugin(config), "autograder-score")


def impl_source(spec: str) -> Path:
    """The folder (or zip) ``--impl`` names."""
    if spec in (practical.PACKAGE, "solutions"):
        return REPO_ROOT / spec
    return Path(spec).expanduser()


@pytest.fixture(scope="session")
def staged(request, tmp_path_factory):
    try:
        return stage(impl_source(request.config.getoption("--impl")), tmp_path_factory.mktemp("staged") / "impl")
    except StagingError as exc:
        raise pytest.UsageError(f"--impl: {exc}") from None


@pytest.fixture(scope="session")
def sandbox(request, staged):
    config = request.config
    timeout = config.getoption("--trial-timeout") or config.getoption("--call-timeout")
    box = Sandbox(staged, Limits(call_timeout=timeout), Budget(config.getoption("--budget")))
    plugin = config.pluginmanager.get_plugin("autograder-score")
    if plugin is not None:
        plugin.isolation = box.describe()
    yield box
    box.close()


@pytest.fixture(scope="session")
def calls(sandbox):
    """``calls.get(probe, key, what, **kwargs)``: a probe's data, one call per distinct request."""
    return Calls(sandbox)


@pytest.fixture(scope="session")
def leaderboard(request):
    """``leaderboard.record(name, value, order)``: an entry of Gradescope's leaderboard."""
    return request.config.pluginmanager.get_plugin("autograder-score")


@pytest.fixture(scope="session")
def trials(sandbox):
    """``trials(spec)``: the traced step for ``spec``, run once per session and shared by tests."""
    cache: dict[TrialSpec, object] = {}

    def get(spec: TrialSpec):
        if spec not in cache:
            cache[spec] = run_trial(sandbox, spec)
        return cache[spec]

    return get


def display_name(function, group: str) -> str:
    """A graded test's name in results.json: its group's title and its docstring's first paragraph
    (``item.name``'s parameters are added after it, in brackets)."""
    doc = " ".join((getattr(function, "__doc__", None) or "").strip().split("\n\n", 1)[0].split())
    return f"{R._title(group)}: {doc or function.__name__}"


class ScorePlugin:
    """Points, order, the score table, results.json and the outcome stream."""

    def __init__(self, config):
        self.config = config
        self.outcomes: dict[str, R.Outcome] = {}
        self.started = time.monotonic()
        self.isolation = ""
        self.board: dict[str, dict] = {}
        path = config.getoption("--outcomes", None)
        self.stream = Path(path) if path else None

    # -- collection ---------------------------------------------------------------------------
    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session, config, items):
        parts = config.getoption("--part", None)
        kept, dropped = [], []
        for index, item in enumerate(items):
            marker = item.get_closest_marker("points")
            if marker is None:
                kept.append(item)
                continue
            group = marker.kwargs.get("group", "other")
            part = practical.GROUP[group].part if group in practical.GROUP else 0
            if parts and part not in parts:
                dropped.append(item)
                continue
            name = display_name(item.function, group)
            if "[" in item.name:
                name += " [" + item.name.split("[", 1)[1]
            self.outcomes[item.nodeid] = R.Outcome(
                item.nodeid,
                name,
                group,
                float(marker.args[0]),
                order=index,
                hidden=item.get_closest_marker("hidden") is not None,
            )
            kept.append(item)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        rank = {nodeid: (R.group_rank(o.group), o.order) for nodeid, o in self.outcomes.items()}
        kept.sort(key=lambda it: rank.get(it.nodeid, (len(practical.GROUPS) + 1, 0)))
        items[:] = kept
        self._write_stream({"collected": [o.to_dict() for o in self.outcomes.values()]}, mode="w")

    def pytest_deselected(self, items):
        for item in items:  # -k / -m / --part: what does not run is not scored
            self.outcomes.pop(item.nodeid, None)

    # -- outcomes -----------------------------------------------------------------------------
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = (yield).get_result()
        outcome = self.outcomes.get(item.nodeid)
        if outcome is None:
            return
        if report.when == "call" and report.passed:
            outcome.score, outcome.status, outcome.output = outcome.max_score, "passed", ""
        elif report.failed:
            outcome.score, outcome.status, outcome.output = 0.0, "failed", _message(report)
        elif report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            reason = reason.removeprefix("Skipped: ")
            outcome.score, outcome.status, outcome.output = 0.0, "failed", clean(reason)
            outcome.counted = not reason.startswith(ENVIRONMENT_SKIP)
        if report.when == "teardown" or (report.when != "call" and report.outcome != "passed"):
            if not outcome.ended:
                outcome.ended = True
                self._write_stream({"outcome": outcome.to_dict()})

    def record(self, name: str, value: float, order: str = "desc") -> None:
        """A leaderboard entry, computed by the judge from data it checked."""
        entry = {"name": clean(name, 100), "value": round(float(value), 4), "order": order}
        self.board[entry["name"]] = entry
        self._write_stream({"leaderboard": entry})

    def _write_stream(self, record: dict, mode: str = "a") -> None:
        if self.stream is None:
            return
        with open(self.stream, mode, encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()

    # -- the end ------------------------------------------------------------------------------
    def pytest_terminal_summary(self, terminalreporter):
        if not self.outcomes:
            return
        tr = terminalreporter
        tr.section("score")
        outcomes = list(self.outcomes.values())
        for line in R.score_table(outcomes):
            tr.write_line(line)
        not_counted = [o for o in outcomes if not o.counted]
        if not_counted:
            tr.write_line(f"({len(not_counted)} test(s) not counted on this machine: {not_counted[0].output})")
        if self.isolation:
            tr.write_line(f"isolation: {self.isolation}")

    def pytest_sessionfinish(self, session):
        path = self.config.getoption("--results-json", None)
        if path:
            outcomes = list(self.outcomes.values())
            R.write_json(
                Path(path),
                R.results_document(
                    outcomes,
                    time.monotonic() - self.started,
                    "\n".join(R.score_table(outcomes)),
                    leaderboard=list(self.board.values()),
                ),
            )
        self._write_stream({"finished": True})


def _message(report) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = report.longreprtext if crash is None else str(report.longrepr)
    return clean(text.removeprefix("Failed: "), R.MAX_TEST_OUTPUT)

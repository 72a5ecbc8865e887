"""Points: the ``points`` marker, the score table printed at the end, and results.json.

Every graded test carries ``@pytest.mark.points(n, part="...")``; a parametrized test is worth ``n``
for each of its parameter sets. A test scores ``n`` if it passes
and 0 otherwise (failed, errored, skipped on a broken submission or timed out). Tests skipped
because the machine lacks something (``skip_environment``) are not counted at all, so the total is
the same on every machine a student might use... except that GPU-only tests add to the total
where a GPU is present; the table says so.

results.json follows Gradescope's autograder specification: ``score``, ``execution_time``,
``output``, ``visibility``, ``stdout_visibility`` and ``tests[]`` with ``name``, ``number``,
``score``, ``max_score``, ``status``, ``output`` and ``visibility``.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PART_ORDER = (
    "Part 1 Partition and micro-batches",
    "Part 1 Option A: naive",
    "Part 2 Option B: GPipe",
    "Part 3 Option C: delayed backward",
    "Part 6 Per-stage schedules",
    "Hidden: other settings",
    "GPU (not scored)",
)
MAX_OUTPUT = 4000  # characters of failure message kept per test in results.json
ENVIRONMENT_SKIP = "environment: "  # prefix of skip reasons that do not count against the student


@dataclass
class Outcome:
    nodeid: str
    name: str
    part: str
    max_score: float
    score: float = 0.0
    status: str = "failed"
    output: str = ""
    visibility: str = "visible"
    counted: bool = True


@dataclass(eq=False)
class ScorePlugin:
    results_json: Path | None
    started: float = field(default_factory=time.monotonic)
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def pytest_collection_modifyitems(self, items):
        for item in items:
            marker = item.get_closest_marker("points")
            if marker is None:
                continue
            points = float(marker.args[0])
            part = marker.kwargs.get("part", "Other")
            doc = (getattr(item.function, "__doc__", None) or "").strip().splitlines()
            name = f"{part}: {doc[0] if doc else item.name}"
            if "[" in item.name:
                name += " [" + item.name.split("[", 1)[1]
            hidden = item.get_closest_marker("hidden") is not None
            self.outcomes[item.nodeid] = Outcome(item.nodeid, name, part, points,
                                                 visibility="after_due_date" if hidden else "visible")

    def pytest_deselected(self, items):
        for item in items:  # -k / -m: what does not run is not scored
            self.outcomes.pop(item.nodeid, None)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = (yield).get_result()
        outcome = self.outcomes.get(item.nodeid)
        if outcome is None:
            return
        if report.when == "call" and report.passed:
            outcome.score, outcome.status, outcome.output = outcome.max_score, "passed", ""
        elif report.failed:
            outcome.score, outcome.status = 0.0, "failed"
            outcome.output = _message(report)
        elif report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            reason = reason.removeprefix("Skipped: ")
            outcome.status, outcome.score, outcome.output = "failed", 0.0, reason
            if reason.startswith(ENVIRONMENT_SKIP):
                outcome.counted = False

    def counted(self) -> list[Outcome]:
        return [o for o in self.outcomes.values() if o.counted]

    def totals(self) -> tuple[float, float]:
        counted = self.counted()
        return sum(o.score for o in counted), sum(o.max_score for o in counted)

    def pytest_terminal_summary(self, terminalreporter):
        if not self.outcomes:
            return
        tr = terminalreporter
        tr.section("score")
        for line in score_table([(o.part, o.score, o.max_score) for o in self.counted()]):
            tr.write_line(line)
        not_counted = [o for o in self.outcomes.values() if not o.counted]
        if not_counted:
            tr.write_line(f"({len(not_counted)} test(s) not counted on this machine: {not_counted[0].output})")

    def pytest_sessionfinish(self, session):
        if self.results_json is not None:
            write_results(self.results_json, self, time.monotonic() - self.started)


def _num(x: float) -> str:
    return f"{x:g}"


def score_table(rows: list[tuple[str, float, float]]) -> list[str]:
    """Lines ``part  got/out_of`` in the practical's order, then the total, from (part, score, max) rows."""
    parts: dict[str, list[float]] = {}
    for part, score, max_score in rows:
        totals = parts.setdefault(part, [0.0, 0.0])
        totals[0] += score
        totals[1] += max_score
    order = sorted(parts, key=lambda p: PART_ORDER.index(p) if p in PART_ORDER else len(PART_ORDER))
    lines = [f"{part:<40} {_num(parts[part][0]):>5}/{_num(parts[part][1])}" for part in order]
    got, out_of = sum(s for _, s, _ in rows), sum(m for _, _, m in rows)
    lines.append(f"{'Total':<40} {_num(got):>5}/{_num(out_of)}")
    return lines


def _message(report) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = report.longreprtext if crash is None else str(report.longrepr)
    text = text.removeprefix("Failed: ")
    if len(text) > MAX_OUTPUT:
        text = text[:MAX_OUTPUT] + "\n... (truncated)"
    return text


def results_document(plugin: ScorePlugin, seconds: float) -> dict:
    score, total = plugin.totals()
    tests = []
    for number, o in enumerate(plugin.counted(), start=1):
        tests.append({"name": o.name, "number": str(number), "score": o.score, "max_score": o.max_score,
                      "status": o.status, "output": o.output, "tags": [o.part], "visibility": o.visibility})
    return {"score": score, "execution_time": round(seconds, 3),
            "output": f"Total {_num(score)}/{_num(total)}",
            "visibility": "visible", "stdout_visibility": "hidden", "tests": tests}


def write_results(path: Path, plugin: ScorePlugin, seconds: float) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(results_document(plugin, seconds), indent=2))
    tmp.replace(path)

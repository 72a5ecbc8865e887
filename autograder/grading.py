"""Helpers the graded tests share: probe calls that fail cleanly, and the judge's own answers."""
from __future__ import annotations

import pytest

from .trial import ProbeFailed, Runner


def call_probe(runner: Runner, probe: str, **kwargs) -> dict:
    """Run a probe; a timeout, crash or malformed result fails the test with a one-line message."""
    try:
        data = runner.call(probe, **kwargs)
    except ProbeFailed as exc:
        failure = f"{probe}({', '.join(f'{k}={v}' for k, v in kwargs.items())}): {exc}"
    else:
        failure = None
    if failure:  # outside the except block: no "During handling of the above exception" noise
        pytest.fail(failure, pytrace=False)
    if not isinstance(data, dict) or "error" not in data:
        pytest.fail(f"{probe}: the submission's process returned malformed data", pytrace=False)
    return data


def optimal_max_stage(sizes: list[int], num_stages: int) -> int:
    """Smallest possible largest-stage size over contiguous splits into ``num_stages`` non-empty stages.

    Binary search on the answer with a greedy feasibility test (independent of the reference
    solution's dynamic programme, so the two check each other).
    """
    def stages_needed(limit: int) -> int:
        count, current = 1, 0
        for size in sizes:
            if current + size > limit:
                count, current = count + 1, 0
            current += size
        return count

    lo, hi = max(sizes), sum(sizes)
    while lo < hi:
        mid = (lo + hi) // 2
        if stages_needed(mid) <= num_stages:
            hi = mid
        else:
            lo = mid + 1
    return lo


def expect_value_errors(bad: dict, call: str) -> None:
    """Fail unless every bad-argument call raised ValueError.

    ``bad``: a probe's ``{argument: {"raised": name or None, "message": str}}``; ``call``: the call
    with ``{}`` where the bad argument goes, e.g. ``"partition(model with 4 layers, num_stages={})"``.
    """
    for value, result in bad.items():
        if result["raised"] != "ValueError":
            did = "returned normally" if result["raised"] is None else f"raised {result['message']}"
            pytest.fail(f"{call.format(value)} {did}; it must raise ValueError with a message saying what "
                        f"is wrong", pytrace=False)

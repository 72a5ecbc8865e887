"""The step-time measurement of ``python -m assignment.run`` (autograder.student.measure).

What must hold for students to trust the table: rows are timed in turn (so a machine that slows
down mid-run slows every row, not the one that happened to run then), the reported median and
spread are those of the block medians, and a row whose speed moves during the run is flagged.
The steps run on a fake clock (each step advances it by its cost), so every assertion is exact
and the same on every machine.
"""

from __future__ import annotations

import types

import pytest

from autograder.student import measure
from autograder.student.measure import MIN_BLOCKS, STABLE_SPREAD, measure_rows, timing_of


def test_timing_of_is_the_median_and_quartiles_of_the_block_medians():
    blocks = [[1.0, 9.0, 2.0], [3.0, 3.0, 100.0], [4.0], [5.0, 6.0, 5.0], [7.0]]  # medians 2, 3, 4, 5, 7
    t = timing_of(blocks)
    assert (t.median, t.low, t.high, t.n, t.blocks) == (4.0, 3.0, 5.0, 11, 5)
    assert t.spread == (5.0 - 3.0) / 4.0 and not t.stable
    assert t.cell() == "4.00 (3.00-5.00)"
    few = timing_of([[2.0], [4.0]])  # under 4 blocks: lowest to highest
    assert (few.low, few.high) == (2.0, 4.0)


class Clock:
    """Stands in for ``time`` in the measured module: ``perf_counter`` reads the fake time."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def step(self, cost_s, log: list[str] | None = None, name: str = ""):
        """A (step, sync) pair that costs ``cost_s`` seconds (a number, or a function of the time)."""

        def run():
            if log is not None:
                log.append(name)
            self.now += cost_s(self.now) if callable(cost_s) else cost_s

        return run, lambda: None


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(measure, "time", types.SimpleNamespace(perf_counter=fake.perf_counter))
    return fake


def test_rows_are_timed_in_turn_in_blocks_with_the_order_rotated(clock):
    calls: list[str] = []
    timings = measure_rows([clock.step(0.002, calls, "a"), clock.step(0.001, calls, "b")], warmup=0)
    runs = [calls[0]]  # the names of consecutive runs of the same row
    for name in calls[1:]:
        if name != runs[-1]:
            runs.append(name)
    # calibration a, b; then blocks a b, b a, a b, ...: not one row's steps, then the other's
    assert runs[:6] == ["a", "b", "a", "b", "a", "b"] and len(runs) >= MIN_BLOCKS + 2, runs
    assert calls.count("a") == 1 + 25 * MIN_BLOCKS and calls.count("b") == 1 + 50 * MIN_BLOCKS  # ~50 ms blocks
    assert [(t.median, t.low, t.high, t.blocks) for t in timings] == [
        (pytest.approx(2.0), pytest.approx(2.0), pytest.approx(2.0), 5),
        (pytest.approx(1.0), pytest.approx(1.0), pytest.approx(1.0), 5),
    ]
    assert all(t.stable for t in timings)


def test_a_row_whose_speed_moves_during_the_run_is_flagged_and_a_steady_one_is_not(clock):
    def drifting(now: float) -> float:  # 1 ms and 3 ms in stretches of 0.13 s: a machine busy now and then
        return 0.003 if int(now / 0.13) % 2 else 0.001

    moving, still = measure_rows([clock.step(drifting), clock.step(0.002)], warmup=0, budget_s=1.0)
    assert moving.spread > STABLE_SPREAD and not moving.stable, moving
    assert moving.low == pytest.approx(1.0) and moving.high == pytest.approx(3.0) and moving.blocks > MIN_BLOCKS
    assert still.stable and still.median == pytest.approx(2.0), still
    assert 2.0 <= clock.now <= 2.2  # timing went on until the budget (1 s per row) ended

"""Step times students can trust: rows timed in turn, a stated spread, and a flag when it is too wide.

A single step of the course model takes milliseconds, and a laptop's other work makes any one
measurement noisy, and noisy in stretches: consecutive steps share the machine's state of the
moment, so two rows timed one after the other can differ only because the machine changed in
between (measured: medians 30% apart between two runs whose own interquartile ranges were under
10%). :func:`measure_rows` therefore times every row of the table **in turn**, in blocks of about
50 ms (the order rotated each round), so that every row sees the same machine. A row's time is the
median of its blocks' medians; its spread is the interquartile range of those block medians, which
grows when the machine's speed moves during the run. Rounds go on until every row has at least
``MIN_BLOCKS`` blocks and a spread within ``STABLE_SPREAD`` of its median, or the time budget ends;
:attr:`Timing.stable` says whether a row can be compared with the others.

Rows of one table compare fairly; absolute times still move between runs with the machine
(measured on an idle 2-core machine: the same row 3.5 and 3.6 ms in two runs, spreads about 1%).

Threads are pinned (``torch.set_num_threads``, 1 by default in ``run``) so that schedules compete
on equal terms: with several threads, one schedule's kernels can be faster or slower depending on
what else the machine does at that moment.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

STABLE_SPREAD = 0.10  # interquartile range of the block medians / median: a row is stable below it
MIN_BLOCKS = 5
BLOCK_S = 0.05  # seconds of steps per block
MAX_STEPS = 1000  # per row


@dataclass(frozen=True)
class Timing:
    """Milliseconds per step: ``median`` of the medians of ``blocks`` blocks (``n`` steps in all),
    ``low``/``high`` their quartiles (lowest and highest with fewer than 4 blocks)."""

    median: float
    low: float
    high: float
    n: int
    blocks: int

    @property
    def spread(self) -> float:
        """(high - low) / median (0 when the median is 0)."""
        return (self.high - self.low) / self.median if self.median > 0 else 0.0

    @property
    def stable(self) -> bool:
        return self.spread <= STABLE_SPREAD

    def cell(self) -> str:
        """``7.86 (7.70-8.02)``: the median and the interquartile range of the block medians, in ms."""
        return f"{self.median:.2f} ({self.low:.2f}-{self.high:.2f})"


def timing_of(blocks: list[list[float]]) -> Timing:
    """The timing of blocks of step times (ms), in the order they ran."""
    medians = [statistics.median(block) for block in blocks if block]
    if len(medians) < 4:
        low, high = min(medians), max(medians)
    else:
        low, _, high = statistics.quantiles(medians, n=4, method="inclusive")
    return Timing(statistics.median(medians), low, high, sum(map(len, blocks)), len(medians))


Step = tuple[Callable[[], object], Callable[[], None]]  # (one step, wait for the devices)


def _timed(step: Step) -> float:
    run, sync = step
    sync()
    t0 = time.perf_counter()
    run()
    sync()
    return (time.perf_counter() - t0) * 1e3


def measure_rows(steps: list[Step], *, warmup: int = 2, budget_s: float = 2.0, min_steps: int = 7) -> list[Timing]:
    """Time every ``(step, sync)`` in turn, block by block (see the module docstring), for at most
    ``budget_s`` seconds per row; at least ``min_steps`` steps and ``MIN_BLOCKS`` blocks per row
    unless the budget ends first."""
    if not steps:
        return []
    for step in steps:
        for _ in range(warmup):
            step[0]()
    cap = MAX_STEPS // MIN_BLOCKS  # a very short step still leaves room for MIN_BLOCKS blocks
    per_block = [min(cap, max(1, int(BLOCK_S * 1e3 / max(_timed(step), 1e-3)))) for step in steps]
    blocks: list[list[list[float]]] = [[] for _ in steps]
    deadline = time.perf_counter() + budget_s * len(steps)
    n = len(steps)
    for round_ in range(MAX_STEPS):
        for i in [(round_ + k) % n for k in range(n)]:  # rotated: no row always first after a pause
            blocks[i].append([_timed(steps[i]) for _ in range(per_block[i])])
        counts = [sum(map(len, b)) for b in blocks]
        enough = all(len(b) >= MIN_BLOCKS and c >= min_steps for b, c in zip(blocks, counts))
        if (enough and all(timing_of(b).stable for b in blocks)) or time.perf_counter() > deadline:
            break
        if min(counts) >= MAX_STEPS:
            break
    return [timing_of(b) for b in blocks]


@contextlib.contextmanager
def pinned_threads(count: int | None) -> Iterator[None]:
    """``torch.set_num_threads(count)`` for the block (unchanged when ``count`` is None)."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)

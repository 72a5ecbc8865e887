"""Step times students can trust: adaptive repetition, a stated spread, and a flag when it is too wide.

A single step of the course model takes milliseconds, and a laptop's other work makes any one
measurement noisy. :func:`measure` runs a step until the spread of the timings is small compared
with their median, or a time budget ends, and reports the median with its interquartile range
(IQR). :class:`Timing.stable` says whether the spread is small enough to compare two rows;
:func:`comparable` whether two rows' ranges are apart enough to call one faster.

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

STABLE_SPREAD = 0.10  # IQR / median under which a row is stable
MIN_STEPS = 7
MAX_STEPS = 1000


@dataclass(frozen=True)
class Timing:
    """Milliseconds per step: ``median``, quartiles ``q1``/``q3``, ``n`` timed steps."""

    median: float
    q1: float
    q3: float
    n: int

    @property
    def spread(self) -> float:
        """IQR / median (0 when the median is 0)."""
        return (self.q3 - self.q1) / self.median if self.median > 0 else 0.0

    @property
    def stable(self) -> bool:
        return self.spread <= STABLE_SPREAD

    def cell(self) -> str:
        """``7.86 (7.7-8.0)``: the median and the interquartile range, in ms."""
        return f"{self.median:.2f} ({self.q1:.2f}-{self.q3:.2f})"


def timing_of(samples_ms: list[float]) -> Timing:
    if len(samples_ms) == 1:
        return Timing(samples_ms[0], samples_ms[0], samples_ms[0], 1)
    q1, q2, q3 = statistics.quantiles(samples_ms, n=4, method="inclusive")
    return Timing(q2, q1, q3, len(samples_ms))


def measure(
    step: Callable[[], object],
    *,
    sync: Callable[[], None] | None = None,
    warmup: int = 2,
    budget_s: float = 2.0,
    min_steps: int = MIN_STEPS,
    max_steps: int = MAX_STEPS,
) -> Timing:
    """Time ``step`` (``sync`` waits for the device first and after) until its IQR is within
    ``STABLE_SPREAD`` of the median (after at least ``min_steps``), ``max_steps`` are timed, or
    ``budget_s`` seconds have passed."""
    sync = sync or (lambda: None)
    for _ in range(warmup):
        step()
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < max_steps:
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        samples.append((time.perf_counter() - t0) * 1e3)
        if len(samples) >= min_steps:
            if timing_of(samples).stable or time.perf_counter() - started > budget_s:
                break
    return timing_of(samples)


def comparable(a: Timing, b: Timing) -> bool:
    """Whether the two rows' interquartile ranges do not overlap (one is clearly faster)."""
    return a.q3 < b.q1 or b.q3 < a.q1


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

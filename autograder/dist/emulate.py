"""Emulated device time: make a stage take a known time, in proportion to its micro-batch.

On a 2-core CPU the course model computes in microseconds and every process competes for the same
two cores, so real compute never shows what a pipeline gains. Emulated time makes each stage
behave like a busy accelerator instead: the forward of a micro-batch with ``rows`` rows takes
``F = f x rows / batch_size`` seconds, its full backward ``B = 2F``, and the two halves of a split
backward ``I = W = B / 2`` (:class:`DeviceTime`). Waiting does not use the CPU, so p processes on
2 cores overlap their "device time" as p accelerators would.

* ``f`` (``seconds_per_batch``): seconds one stage's forward of the *whole batch* takes; a batch
  split into m equal micro-batches costs ``F = f / m`` per forward and ``B = 2 f / m`` per backward
  on each stage. The naive pipeline's step then takes ``p x 3f`` and an ideal GPipe or 1F1B step
  ``(m + p - 1) x 3f / m`` (:func:`ideal_step_time`); any other schedule's ideal is its simulated
  makespan with the same costs (:func:`simulated_step_time`). With ``v`` model chunks per rank
  (interleaving) each chunk is ``1/v`` of a stage of the non-interleaved model: pass ``f / v``.
* An action is busy for its emulated time *including* its real compute: it takes
  ``max(emulated, real)``. Two ways to get there:

  - the multi-process executor times each action itself: it notes the start, computes, and
    :func:`sleep_until` start + :meth:`DeviceTime.seconds` (the stages are the plain modules);
  - :class:`EmulatedTime` wraps a stage for executors that only call modules and autograd
    (torch.distributed.pipelining, the tracing harness, the single-process executor): autograd
    Functions at the stage's input and output wait inside the forward and the backward, so
    events recorded around the stage include the wait. A split backward tells it which half it
    runs with :func:`backward_pass`.
* Deterministic: the time depends only on ``rows``; :func:`device_sleep` sleeps to within a few
  microseconds: the process's timer slack is set to 1 ns (Linux) and the last :data:`SPIN_S`
  seconds are spun (a sleeping thread wakes ~50 us late on a virtual machine even then).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

SPIN_S = 7e-5  # the last 70 us of a wait are spun, not slept: a sleeper wakes ~50 us late on a VM
BACKWARD_FACTOR = 2.0
INPUT_FRACTION = 0.5  # I takes this fraction of B, W the rest
_SLACK: list[bool] = []


def precise_timers() -> None:
    """Set this process's timer slack to 1 ns (Linux ``prctl(PR_SET_TIMERSLACK)``; default 50 us),
    so that ``time.sleep`` wakes when asked; once per process, silently skipped elsewhere."""
    if _SLACK:
        return
    _SLACK.append(True)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK = 29
    except (OSError, AttributeError):  # pragma: no cover (not Linux)
        pass


def sleep_until(deadline: float) -> None:
    """Return at ``deadline`` (a ``time.perf_counter()`` value, seconds), never before: sleep, then
    spin the last :data:`SPIN_S`. Returns at once if the deadline has passed."""
    left = deadline - time.perf_counter()
    if left <= 0:
        return
    if not _SLACK:
        precise_timers()
    if left > SPIN_S:
        time.sleep(left - SPIN_S)
    while time.perf_counter() < deadline:
        pass


def device_sleep(seconds: float) -> None:
    """Wait ``seconds`` (>= 0) precisely (see :func:`sleep_until`)."""
    if seconds > 0:
        sleep_until(time.perf_counter() + seconds)


def _check_seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class DeviceTime:
    """Emulated durations of one stage's actions, in seconds.

    ``F = seconds_per_batch x rows / batch_size``, ``B = backward_factor x F``, ``I =
    input_fraction x B``, ``W = B - I``; so ``I + W = B`` for every micro-batch.
    """

    seconds_per_batch: float
    batch_size: int
    backward_factor: float = BACKWARD_FACTOR
    input_fraction: float = INPUT_FRACTION

    def __post_init__(self) -> None:
        _check_seconds("seconds_per_batch", self.seconds_per_batch)
        _check_seconds("backward_factor", self.backward_factor)
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {self.batch_size!r}")
        if not 0 <= _check_seconds("input_fraction", self.input_fraction) <= 1:
            raise ValueError(f"input_fraction must be in [0, 1], got {self.input_fraction!r}")

    def seconds(self, kind: str, rows: int) -> float:
        """Emulated time of an action of ``kind`` (F, B, I or W) on a micro-batch of ``rows`` rows."""
        forward = self.seconds_per_batch * rows / self.batch_size
        if kind == "F":
            return forward
        backward = self.backward_factor * forward
        if kind == "B":
            return backward
        if kind == "I":
            return self.input_fraction * backward
        if kind == "W":
            return backward - self.input_fraction * backward
        raise ValueError(f"unknown action kind {kind!r}: expected F, B, I or W")


class _Pass:
    """The backward pass an executor is running (``B`` unless it said otherwise) and, for ``W``,
    when that pass must end (a ``perf_counter`` value). One per process: executors are serial."""

    kind = "B"
    deadline = 0.0


_PASS = _Pass()


@contextlib.contextmanager
def backward_pass(kind: str) -> Iterator[None]:
    """Run a split backward half through :class:`EmulatedTime` stages: ``"I"`` (the input
    gradient: waits ``I`` after the gradient reached the stage) or ``"W"`` (the weight gradient:
    leaving the block waits until ``W`` after the gradient reached the stage)."""
    if kind not in ("I", "W"):
        raise ValueError(f"backward_pass: kind must be 'I' or 'W', got {kind!r}")
    _PASS.kind, _PASS.deadline = kind, 0.0
    try:
        yield
    finally:
        deadline, _PASS.kind, _PASS.deadline = _PASS.deadline, "B", 0.0
        if kind == "W":
            sleep_until(deadline)


class _Clock:
    """The backward start time of one call, shared by the two Functions around the stage."""

    __slots__ = ("backward_start",)

    def __init__(self) -> None:
        self.backward_start = None


class _EnterStage(torch.autograd.Function):
    """Identity on the stage input; its backward (the stage's backward is done) waits until the
    backward has taken ``B`` (``I`` in an input-gradient pass) since it started. ``anchor`` (a
    scalar that requires grad) keeps this node in the graph when the input needs no gradient."""

    @staticmethod
    def forward(ctx, x, anchor, clock, seconds):
        ctx.clock, ctx.seconds, ctx.input_requires_grad = clock, seconds, x.requires_grad
        return x.view_as(x) if x.requires_grad else x.detach().clone()

    @staticmethod
    def backward(ctx, grad):
        start = ctx.clock.backward_start
        if start is not None and _PASS.kind != "W":
            sleep_until(start + ctx.seconds[_PASS.kind])
        return (grad if ctx.input_requires_grad else None), None, None, None


class _LeaveStage(torch.autograd.Function):
    """Identity on the stage output; its forward waits until the forward has taken ``F`` since
    ``start``; its backward (the stage's backward begins) notes the time, and in a weight-gradient
    pass when that pass must end."""

    @staticmethod
    def forward(ctx, x, start, seconds, clock):
        ctx.clock, ctx.weight_s = clock, seconds["W"]
        sleep_until(start + seconds["F"])
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        now = ctx.clock.backward_start = time.perf_counter()
        if _PASS.kind == "W":
            _PASS.deadline = max(_PASS.deadline, now + ctx.weight_s)
        return grad, None, None, None


class EmulatedTime(nn.Module):
    """A stage that takes emulated device time (:class:`DeviceTime`) inside autograd.

    ``inner``: the stage (any module whose input has the micro-batch along dimension 0);
    ``seconds_per_batch``: ``f``, seconds of one forward of the whole batch on this stage;
    ``batch_size``: rows of the whole batch. Parameters, device and output are the inner stage's.

    The forward returns ``F`` after it started (or when the real compute ends, if later); a full
    backward ends ``B`` after the gradient reached the stage; inside :func:`backward_pass`, an
    input-gradient pass ends ``I`` and a weight-gradient pass ``W`` after it. With
    ``seconds_per_batch = 0`` it is a plain pass-through.
    """

    def __init__(
        self,
        inner: nn.Module,
        seconds_per_batch: float,
        batch_size: int,
        backward_factor: float = BACKWARD_FACTOR,
        input_fraction: float = INPUT_FRACTION,
    ):
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.inner = inner
        self.device_time = DeviceTime(
            _check_seconds("seconds_per_batch", seconds_per_batch), batch_size, backward_factor, input_fraction
        )
        object.__setattr__(self, "_anchor", torch.zeros((), requires_grad=True))  # not a parameter

    @property
    def seconds_per_batch(self) -> float:
        return self.device_time.seconds_per_batch

    @property
    def batch_size(self) -> int:
        return self.device_time.batch_size

    @property
    def backward_factor(self) -> float:
        return self.device_time.backward_factor

    def forward_seconds(self, rows: int) -> float:
        """Emulated forward time of a micro-batch of ``rows`` rows."""
        return self.device_time.seconds("F", rows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.seconds_per_batch == 0:
            return self.inner(x)
        start = time.perf_counter()
        rows = int(x.shape[0])
        seconds = {kind: self.device_time.seconds(kind, rows) for kind in "FBIW"}
        clock = _Clock()
        if torch.is_grad_enabled():
            x = _EnterStage.apply(x, self._anchor, clock, seconds)
        return _LeaveStage.apply(self.inner(x), start, seconds, clock)

    def extra_repr(self) -> str:
        t = self.device_time
        return (
            f"f={t.seconds_per_batch:g}s per batch of {t.batch_size}, backward x{t.backward_factor:g}, "
            f"input-grad {t.input_fraction:g} of it"
        )


def emulate(stages: list[nn.Module], seconds_per_batch: float, batch_size: int) -> list[nn.Module]:
    """Wrap every stage in :class:`EmulatedTime` (the stages themselves are not copied)."""
    return [EmulatedTime(stage, seconds_per_batch, batch_size) for stage in stages]


def find_emulated(module: nn.Module) -> EmulatedTime | None:
    """The :class:`EmulatedTime` in ``module`` (itself or a wrapped submodule), if any."""
    return next((m for m in module.modules() if isinstance(m, EmulatedTime)), None)


def ideal_step_time(num_stages: int, num_microbatches: int, seconds_per_batch: float) -> float:
    """Step time of GPipe / 1F1B without any overhead: ``(m + p - 1) (F + B)``, ``F = f/m``, ``B = 2F``."""
    per_mb = seconds_per_batch / num_microbatches
    return (num_microbatches + num_stages - 1) * (1 + BACKWARD_FACTOR) * per_mb


def naive_step_time(num_stages: int, seconds_per_batch: float) -> float:
    """Step time of the naive pipeline without overhead: ``p x (f + 2f)`` (one stage busy at a time)."""
    return num_stages * (1 + BACKWARD_FACTOR) * seconds_per_batch


def simulated_step_time(schedule: Any, seconds_per_batch: float, sizes: list[int], stages_per_rank: int = 1) -> float:
    """Step time of ``schedule`` without any overhead, in seconds: its makespan on in-order devices
    (``autograder.schedules.simulate``) with the emulated costs of :class:`DeviceTime`, each of the
    ``v = stages_per_rank`` chunks of a rank taking ``f / v``; ``sizes``: rows of each micro-batch.
    Equals :func:`ideal_step_time` for GPipe and 1F1B with even micro-batches."""
    from ..schedules import Costs, simulate

    m = len(sizes)
    forward = seconds_per_batch / stages_per_rank / m  # per average micro-batch; Costs scales by rows
    backward = BACKWARD_FACTOR * forward
    costs = Costs(
        forward=forward,
        backward=backward,
        input_grad=INPUT_FRACTION * backward,
        weight_grad=backward - INPUT_FRACTION * backward,
        rows=tuple(sizes),
    )
    return simulate(schedule, costs).makespan

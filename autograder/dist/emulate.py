"""Emulated device time: make a stage take a known time, in proportion to its micro-batch.

On a 2-core CPU the course model computes in microseconds and every process competes for the same
two cores, so real compute never shows what a pipeline gains. Wrapping each stage in
:class:`EmulatedTime` makes it behave like a busy accelerator instead: the forward of a micro-batch
with ``rows`` rows waits ``f x rows / batch_size`` seconds, its backward twice that. Waiting does
not use the CPU, so p processes on 2 cores overlap their "device time" as p accelerators would.

* ``f`` (``seconds_per_batch``): seconds one stage's forward of the *whole batch* takes; a batch
  split into m equal micro-batches costs ``F = f / m`` per forward and ``B = 2 f / m`` per backward
  on each stage. The naive pipeline's step then takes ``p x 3f`` and an ideal GPipe or 1F1B step
  ``(m + p - 1) x 3f / m`` (:func:`ideal_step_time`).
* The wait happens inside the stage (autograd Functions at the stage's input and output), so the
  tracing harness and the runtime's events include it in the stage's ``F`` and ``B`` events. The
  emulated time includes the stage's real compute: an action takes ``max(emulated, real)``.
* Deterministic: the time depends only on ``rows``; :func:`device_sleep` sleeps to within a few
  microseconds (``time.sleep`` alone overshoots by about 0.08 ms on Linux, which would add up
  along the pipeline's critical path), spinning for the last :data:`SPIN_S` seconds.
"""
from __future__ import annotations

import math
import time

import torch
from torch import nn

SPIN_S = 2e-4  # the last 0.2 ms of every wait is spun, not slept: sleep overshoots by ~0.08 ms
BACKWARD_FACTOR = 2.0


def device_sleep(seconds: float) -> None:
    """Wait ``seconds`` (>= 0) precisely: sleep most of it, spin the last :data:`SPIN_S`."""
    if seconds <= 0:
        return
    deadline = time.perf_counter() + seconds
    if seconds > SPIN_S:
        time.sleep(seconds - SPIN_S)
    while time.perf_counter() < deadline:
        pass


def _check_seconds(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


class _Clock:
    """The backward start time of one call, shared by the two Functions around the stage."""

    __slots__ = ("backward_start",)

    def __init__(self) -> None:
        self.backward_start = None


class _EnterStage(torch.autograd.Function):
    """Identity on the stage input; its backward (the stage's backward is done) waits until the
    backward has taken ``backward_s`` since it started. ``anchor`` (a scalar that requires grad)
    keeps this node in the graph when the input itself needs no gradient (stage 0)."""

    @staticmethod
    def forward(ctx, x, anchor, clock, backward_s):
        ctx.clock, ctx.backward_s, ctx.input_requires_grad = clock, backward_s, x.requires_grad
        return x.view_as(x) if x.requires_grad else x.detach().clone()

    @staticmethod
    def backward(ctx, grad):
        start = ctx.clock.backward_start
        if start is not None:
            device_sleep(start + ctx.backward_s - time.perf_counter())
        return (grad if ctx.input_requires_grad else None), None, None, None


class _LeaveStage(torch.autograd.Function):
    """Identity on the stage output; its forward waits until the forward has taken ``forward_s``
    since ``start``; its backward (the stage's backward begins) notes the time."""

    @staticmethod
    def forward(ctx, x, start, forward_s, clock):
        ctx.clock = clock
        device_sleep(start + forward_s - time.perf_counter())
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        ctx.clock.backward_start = time.perf_counter()
        return grad, None, None, None


class EmulatedTime(nn.Module):
    """A stage that takes emulated device time: ``f x rows / batch_size`` s forward, twice that backward.

    ``inner``: the stage (any module whose input has the micro-batch along dimension 0);
    ``seconds_per_batch``: ``f``, seconds of one forward of the whole batch on this stage;
    ``batch_size``: rows of the whole batch. Parameters, device and output are the inner stage's.

    Like a device, the stage is busy for the emulated time *including* its real compute: the
    forward returns ``F = f x rows / batch_size`` seconds after it started (or when the real compute
    ends, if that takes longer), and the backward ends ``B = 2F`` after the gradient reached the
    stage. So the real compute of the course model (a fraction of a millisecond on a CPU) does not
    add to the emulated time. With ``seconds_per_batch = 0`` it is a plain pass-through.
    """

    def __init__(self, inner: nn.Module, seconds_per_batch: float, batch_size: int,
                 backward_factor: float = BACKWARD_FACTOR):
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.inner = inner
        self.seconds_per_batch = _check_seconds("seconds_per_batch", seconds_per_batch)
        self.batch_size = batch_size
        self.backward_factor = _check_seconds("backward_factor", backward_factor)
        object.__setattr__(self, "_anchor", torch.zeros((), requires_grad=True))  # not a parameter

    def forward_seconds(self, rows: int) -> float:
        """Emulated forward time of a micro-batch of ``rows`` rows."""
        return self.seconds_per_batch * rows / self.batch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.seconds_per_batch == 0:
            return self.inner(x)
        start = time.perf_counter()
        t = self.forward_seconds(int(x.shape[0]))
        clock = _Clock()
        if torch.is_grad_enabled():
            x = _EnterStage.apply(x, self._anchor, clock, self.backward_factor * t)
        return _LeaveStage.apply(self.inner(x), start, t, clock)

    def extra_repr(self) -> str:
        return f"f={self.seconds_per_batch:g}s per batch of {self.batch_size}, backward x{self.backward_factor:g}"


def emulate(stages: list[nn.Module], seconds_per_batch: float, batch_size: int) -> list[nn.Module]:
    """Wrap every stage in :class:`EmulatedTime` (the stages themselves are not copied)."""
    return [EmulatedTime(stage, seconds_per_batch, batch_size) for stage in stages]


def ideal_step_time(num_stages: int, num_microbatches: int, seconds_per_batch: float) -> float:
    """Step time of GPipe / 1F1B without any overhead: ``(m + p - 1) (F + B)``, ``F = f/m``, ``B = 2F``."""
    per_mb = seconds_per_batch / num_microbatches
    return (num_microbatches + num_stages - 1) * (1 + BACKWARD_FACTOR) * per_mb


def naive_step_time(num_stages: int, seconds_per_batch: float) -> float:
    """Step time of the naive pipeline without overhead: ``p x (f + 2f)`` (one stage busy at a time)."""
    return num_stages * (1 + BACKWARD_FACTOR) * seconds_per_batch

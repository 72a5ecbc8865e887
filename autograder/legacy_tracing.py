"""The tracing harness: records every forward and backward of every stage as it really runs.

Each stage is wrapped in a :class:`TracedStage`. Its forward records an ``F`` event around the
stage's own forward. Two autograd Functions bracket the stage in the graph: one at the stage's
output, whose backward runs when the gradient reaches the stage (the ``B`` start), and one at the
stage's input, whose backward runs when the gradient has gone through the whole stage (the ``B``
end). Student code calls the wrapped stages like ordinary modules and never reports events.

Which micro-batch an activation belongs to is found from the data, not from call order: the
stage-0 input is matched to the rows of the batch, later inputs to the outputs the previous stage
produced (a fingerprint of the first row and the shape). So a schedule that runs micro-batches
out of order is traced correctly, and an activation that did not come from the previous stage is
reported in ``notes``.

Tampering: the tracer keeps its own clock reference and checks after the step that the functions
it relies on (and a few torch entry points) are still the originals. Code running in the same
process can defeat any in-process check; the grader therefore also runs student code in a child
process and judges only the data it returns (see ``autograder.sandbox``).
"""
from __future__ import annotations

import time

import torch
from torch import nn

from .schedules import Event

_clock = time.perf_counter
UNKNOWN_MB = -1


def _fingerprint(t: torch.Tensor) -> tuple:
    """Shape plus the values of the first row: identifies an activation across ``.to(device)``."""
    first = t.detach()[0].reshape(-1)
    return (tuple(t.shape), tuple(first.to("cpu", torch.float64).tolist()))


class _BackwardStart(torch.autograd.Function):
    """Identity on the stage output; its backward marks the start of the stage's backward."""

    @staticmethod
    def forward(ctx, x, tracer, stage, mb):
        ctx.info = (tracer, stage, mb)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        tracer, stage, mb = ctx.info
        tracer._backward_started(stage, mb)
        return grad, None, None, None


class _BackwardEnd(torch.autograd.Function):
    """Identity on the stage input; its backward marks the end of the stage's backward.

    ``anchor`` is a scalar that requires grad, so this node is in the graph even when the stage
    input (the batch itself, on stage 0) does not require grad.
    """

    @staticmethod
    def forward(ctx, x, anchor, tracer, stage, mb):
        ctx.info = (tracer, stage, mb)
        ctx.input_requires_grad = x.requires_grad
        return x.view_as(x) if x.requires_grad else x.detach().clone()

    @staticmethod
    def backward(ctx, grad):
        tracer, stage, mb = ctx.info
        tracer._backward_ended(stage, mb)
        return (grad if ctx.input_requires_grad else None), None, None, None, None


class TracedStage(nn.Module):
    """A pipeline stage that records its forward and backward events in a :class:`Tracer`.

    Behaves like the wrapped stage: same parameters, same device, same output.
    """

    def __init__(self, inner: nn.Module, stage: int, tracer: "Tracer"):
        super().__init__()
        self.inner = inner
        self.stage_index = stage
        object.__setattr__(self, "_tracer", tracer)  # not a submodule: keep it out of state_dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tracer, s = self._tracer, self.stage_index
        mb = tracer._identify(s, x)
        start = _clock()
        x = _BackwardEnd.apply(x, tracer._anchor, tracer, s, mb)
        out = self.inner(x)
        end = _clock()
        tracer._record(Event(s, "F", mb, start - tracer.t0, end - tracer.t0))
        tracer._remember_output(s, mb, out)
        return _BackwardStart.apply(out, tracer, s, mb)

    def extra_repr(self) -> str:
        return f"stage={self.stage_index}"


# Entry points a schedule has no business replacing; checked after every traced step.
def _guarded() -> dict[str, object]:
    return {
        "time.perf_counter": time.perf_counter,
        "torch.Tensor.backward": torch.Tensor.backward,
        "torch.autograd.backward": torch.autograd.backward,
        "torch.autograd.Function.apply": torch.autograd.Function.__dict__.get("apply"),
        "torch.nn.Module.__call__": nn.Module.__call__,
        "torch.tensor_split": torch.tensor_split,
        "TracedStage.forward": TracedStage.forward,
        "Tracer._record": Tracer._record,
        "Tracer._identify": Tracer._identify,
        "Tracer._backward_started": Tracer._backward_started,
        "Tracer._backward_ended": Tracer._backward_ended,
        "_BackwardStart.backward": _BackwardStart.backward,
        "_BackwardEnd.backward": _BackwardEnd.backward,
    }


class Tracer:
    """Collects the events of one traced step.

    ``inputs``: the whole batch given to the schedule; ``sizes``: the expected micro-batch sizes
    (in order), used to name micro-batches by the rows they hold.
    """

    def __init__(self, inputs: torch.Tensor, sizes: list[int]):
        self.t0 = _clock()
        self.events: list[Event] = []
        self.notes: list[str] = []
        self._anchor = torch.zeros((), requires_grad=True)
        self._row_to_mb: dict[tuple, int] = {}
        row = 0
        for mb, size in enumerate(sizes):
            self._row_to_mb[_fingerprint(inputs[row:row + size])[1]] = mb
            row += size
        self._sizes = sizes
        self._outputs: dict[tuple[int, tuple], int] = {}
        self._b_start: dict[tuple[int, int], list[float]] = {}
        self._snapshot = _guarded()

    def wrap(self, stages: list[nn.Module]) -> list[TracedStage]:
        return [TracedStage(stage, s, self) for s, stage in enumerate(stages)]

    def tampered(self) -> list[str]:
        """Names of guarded functions that are no longer the originals."""
        now = _guarded()
        return [name for name, fn in self._snapshot.items() if now[name] is not fn]

    # -- called from the wrapped stages and autograd Functions --------------------------------
    def _record(self, event: Event) -> None:
        self.events.append(event)

    def _identify(self, stage: int, x: torch.Tensor) -> int:
        if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.shape[0] == 0:
            self.notes.append(f"stage {stage} was called with {type(x).__name__} instead of a batch tensor")
            return UNKNOWN_MB
        shape, first_row = _fingerprint(x)
        if stage == 0:
            mb = self._row_to_mb.get(first_row, UNKNOWN_MB)
            if mb == UNKNOWN_MB:
                self.notes.append(
                    f"stage 0 received {shape[0]} rows that do not start one of the expected micro-batches "
                    f"(sizes {self._sizes}, in order): split the batch with split_microbatches")
            elif shape[0] != self._sizes[mb]:
                self.notes.append(
                    f"stage 0 received micro-batch {mb} with {shape[0]} rows, expected {self._sizes[mb]} "
                    f"(sizes {self._sizes}): check split_microbatches")
            return mb
        mb = self._outputs.get((stage - 1, (shape, first_row)), UNKNOWN_MB)
        if mb == UNKNOWN_MB:
            self.notes.append(
                f"stage {stage} received a tensor of shape {list(shape)} that is not an output of stage {stage - 1}: "
                f"pass each stage's output (moved to the next device) to the next stage")
        return mb

    def _remember_output(self, stage: int, mb: int, out: torch.Tensor) -> None:
        if isinstance(out, torch.Tensor) and out.dim() > 0 and out.shape[0] > 0:
            self._outputs[(stage, _fingerprint(out))] = mb

    def _backward_started(self, stage: int, mb: int) -> None:
        self._b_start.setdefault((stage, mb), []).append(_clock())

    def _backward_ended(self, stage: int, mb: int) -> None:
        starts = self._b_start.get((stage, mb))
        end = _clock()
        start = starts.pop(0) if starts else end
        self._record(Event(stage, "B", mb, start - self.t0, end - self.t0))

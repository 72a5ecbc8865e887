"""What a traced step did: every forward and backward of every stage, with its micro-batch.

Which micro-batch an activation belongs to is found from the data, never from call order: a
stage-0 input is matched to the rows of the micro-batches the batch was split into, a later
stage's input to the outputs the previous stage produced (shape and first row). So a schedule that
runs micro-batches in any order is traced correctly, and an activation that did not come from the
previous stage is reported in ``notes``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ..schedules import Event

UNKNOWN_MB = -1
MAX_NOTES = 20
clock = time.perf_counter


@dataclass(frozen=True)
class TraceEvent:
    """One forward (``F``) or backward (``B``) of one stage on one micro-batch.

    Times in seconds since the recorder started. ``graph``: a forward that kept its autograd
    graph (False under ``torch.no_grad()``, e.g. the first pass of activation checkpointing);
    ``saved_bytes``: bytes of activations the forward saved for its backward (parameters excluded);
    ``rows``: rows of the input.
    """

    stage: int
    kind: str
    mb: int
    start: float
    end: float
    graph: bool = True
    saved_bytes: int = 0
    rows: int = 0

    @property
    def event(self) -> Event:
        return Event(self.stage, self.kind, self.mb, self.start, self.end)


@dataclass(frozen=True)
class Note:
    """An observation in the event stream: ``after`` events had been recorded when it was made."""

    kind: str
    detail: str
    time: float
    after: int


def fingerprint(t: torch.Tensor) -> tuple:
    """Shape plus the values of the first row: identifies an activation across ``.to(device)``."""
    first = t.detach()[0].reshape(-1)
    return (tuple(t.shape), tuple(first.to("cpu", torch.float64).tolist()))


@dataclass
class Recorder:
    """Collects the events of one traced step.

    ``inputs``: the whole batch given to the schedule; ``sizes``: the micro-batch sizes, in order,
    that name micro-batches by the rows they hold.
    """

    inputs: torch.Tensor
    sizes: list[int]
    t0: float = field(default_factory=clock)
    events: list[TraceEvent] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    observations: list[Note] = field(default_factory=list)

    def __post_init__(self):
        self._first_rows: dict[tuple, int] = {}
        row = 0
        for mb, size in enumerate(self.sizes):
            self._first_rows[fingerprint(self.inputs[row : row + size])[1]] = mb
            row += size
        self._outputs: dict[tuple[int, tuple], int] = {}

    def now(self) -> float:
        return clock() - self.t0

    def note(self, text: str) -> None:
        if len(self.notes) < MAX_NOTES and text not in self.notes:
            self.notes.append(text)

    def observe(self, kind: str, detail: str) -> None:
        if len(self.observations) < 1000:
            self.observations.append(Note(kind, detail[:200], self.now(), len(self.events)))

    def identify(self, stage: int, x: torch.Tensor) -> int:
        """The micro-batch ``x`` holds (``UNKNOWN_MB`` and a note when it is none of them)."""
        if x.dim() == 0 or x.shape[0] == 0:
            self.note(f"stage {stage} was called with a tensor of shape {list(x.shape)} instead of a batch")
            return UNKNOWN_MB
        shape, first_row = fingerprint(x)
        if stage == 0:
            mb = self._first_rows.get(first_row, UNKNOWN_MB)
            if mb == UNKNOWN_MB:
                self.note(
                    f"stage 0 received {shape[0]} rows that do not start one of the micro-batches "
                    f"(sizes {self.sizes}, in order): give stage 0 the micro-batches of split_microbatches"
                )
            elif shape[0] != self.sizes[mb]:
                self.note(
                    f"stage 0 received micro-batch {mb} with {shape[0]} rows, expected {self.sizes[mb]} "
                    f"(sizes {self.sizes}): give stage 0 whole micro-batches"
                )
            return mb
        mb = self._outputs.get((stage - 1, (shape, first_row)), UNKNOWN_MB)
        if mb == UNKNOWN_MB:
            self.note(
                f"stage {stage} received a tensor of shape {list(shape)} that is not an output of stage "
                f"{stage - 1}: pass each stage's output (moved to the next device) to the next stage"
            )
        return mb

    def remember_output(self, stage: int, mb: int, out: torch.Tensor) -> None:
        if out.dim() > 0 and out.shape[0] > 0:
            self._outputs[(stage, fingerprint(out))] = mb

    def record(self, event: TraceEvent) -> None:
        self.events.append(event)

    def plain_events(self) -> list[Event]:
        """The events as :class:`~autograder.schedules.Event` (stage, kind, mb, start, end)."""
        return [e.event for e in self.events]

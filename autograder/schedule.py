"""Pipeline schedules as data.

An *action* is one unit of work of one pipeline stage on one micro-batch:

* ``F``: forward of the stage on the micro-batch;
* ``B``: full backward (input and weight gradients);
* ``I`` / ``W``: the input-gradient and weight-gradient halves of ``B`` (zero-bubble schedules).

It prints like torch.distributed.pipelining's ``_Action``: ``Action(1, "F", 0)`` is ``1F0``
(stage 1, forward, micro-batch 0). A *schedule* is one list of actions per stage, in the order
that stage executes them: ``{stage: [Action, ...]}``.

An *event* is an action that really ran, with start and end times in seconds, recorded by the
tracing harness (``autograder.tracing``) around the stages; student code never creates events.
"""
from __future__ import annotations

from typing import NamedTuple

KINDS = ("F", "B", "I", "W")


class Action(NamedTuple):
    stage: int
    kind: str
    mb: int

    def __str__(self) -> str:
        return f"{self.stage}{self.kind}{self.mb}"


class Event(NamedTuple):
    stage: int
    kind: str
    mb: int
    start: float
    end: float

    @property
    def action(self) -> Action:
        return Action(self.stage, self.kind, self.mb)

    def __str__(self) -> str:
        return f"{self.stage}{self.kind}{self.mb}"

"""Parts 1-3 and 5: the three single-process pipeline schedules.

Every step function has the same contract:

* ``stages``: the pipeline stages from ``partition`` (stage s lives on its own device, which you
  find with ``stage_device(stage)``); ``inputs``/``targets``: the whole batch, on the CPU;
  ``loss_fn``: a mean-reduced loss; ``num_microbatches``: m.
* Split the batch with ``split_microbatches`` and weight each micro-batch's loss with
  ``microbatch_loss`` so the accumulated gradients equal those of the full-batch mean loss.
* Move each activation to the next stage's device yourself (``x.to(stage_device(stage))``), and
  the targets to the last stage's device.
* Accumulate gradients into the stages' parameters: never zero them, never step an optimizer.
* Return the full-batch loss as a Python float. Call ``.item()`` once, at the end: on a GPU each
  ``.item()`` waits for the device, and waiting inside the loop would serialise the pipeline.
"""

from __future__ import annotations

import torch
from torch import nn

from .devices import stage_device
from .microbatch import microbatch_loss, split_microbatches


def forward_through(stages: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """Run ``x`` through every stage in order, moving it to each stage's device first (provided)."""
    for stage in stages:
        x = stage(x.to(stage_device(stage)))
    return x


def naive_step(
    stages: list[nn.Module], inputs: torch.Tensor, targets: torch.Tensor, loss_fn: nn.Module, num_microbatches: int
) -> float:
    """Option A: one micro-batch at a time.

    Micro-batch k goes forward through every stage and then backward through every stage before
    micro-batch k+1 starts, so at any moment only one stage is busy.
    """
    raise NotImplementedError("part1.naive_step: for each micro-batch, forward through all stages, then backward, before the next one starts")


def gpipe_step(
    stages: list[nn.Module], inputs: torch.Tensor, targets: torch.Tensor, loss_fn: nn.Module, num_microbatches: int
) -> float:
    """Option B (GPipe): every micro-batch forward through every stage, then every backward.

    Keep each micro-batch's loss until the backward phase. While stage s works on micro-batch k,
    stage s+1 can work on micro-batch k-1: the devices overlap except in the fill and drain.
    """
    raise NotImplementedError("part2.gpipe_step: first the forward of every micro-batch (keep their losses), then the backward of every micro-batch")


def delayed_backward_step(
    stages: list[nn.Module], inputs: torch.Tensor, targets: torch.Tensor, loss_fn: nn.Module, num_microbatches: int
) -> float:
    """Option C: the delayed-backward loop (the code of the handout's Part 5).

    For i in 0..m-1: forward micro-batch i through every stage; then, if i > 0, compute the loss of
    micro-batch i-1 and run its backward. After the loop, run the backward of the last micro-batch.
    At most two micro-batches are in flight (forward done, backward not yet) on any stage. Drop
    your reference to a micro-batch's output once its backward has run.
    """
    raise NotImplementedError("part3.delayed_backward_step: forward micro-batch i, then (if i > 0) backward micro-batch i-1; backward the last one after the loop")

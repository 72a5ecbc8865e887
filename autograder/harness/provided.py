"""The micro-batching that schedule trials use in place of the student's ``microbatch.py``.

Options A, B and C are graded on what the schedule does with correct micro-batches, so that a
mistake in Part 1's ``split_microbatches`` or ``microbatch_loss`` costs Part 1's points only (the
schedules also run on the judge's own partition). Both functions follow the contract stated in the
skeleton's docstrings: pieces of the sizes the judge sent (``torch.tensor_split``'s sizes), in
order, and each micro-batch's mean loss weighted by its share of the batch's rows.
"""

from __future__ import annotations

import types

import torch
from torch import nn


def make_module(sizes: list[int], name: str) -> types.ModuleType:
    """A module named ``name`` with ``split_microbatches`` and ``microbatch_loss`` for micro-batches
    of ``sizes`` rows."""
    module = types.ModuleType(name, __doc__)
    expected = list(sizes)

    def split_microbatches(
        inputs: torch.Tensor, targets: torch.Tensor, num_microbatches: int
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if num_microbatches != len(expected) or inputs.shape[0] != sum(expected):
            raise ValueError(
                f"this trial splits {sum(expected)} rows into {len(expected)} micro-batches, "
                f"not {inputs.shape[0]} rows into {num_microbatches}"
            )
        if targets.shape[0] != inputs.shape[0]:
            raise ValueError(f"{inputs.shape[0]} input rows and {targets.shape[0]} target rows: they must match")
        pieces, row = [], 0
        for size in expected:
            pieces.append((inputs[row : row + size], targets[row : row + size]))
            row += size
        return pieces

    def microbatch_loss(
        loss_fn: nn.Module, outputs: torch.Tensor, targets: torch.Tensor, batch_size: int
    ) -> torch.Tensor:
        share = outputs.shape[0] / batch_size
        return share * loss_fn(outputs, targets)

    module.split_microbatches = split_microbatches
    module.microbatch_loss = microbatch_loss
    return module

"""Part 1: micro-batching (tasks ``part1.split_microbatches`` and ``part1.microbatch_loss``)."""

from __future__ import annotations

import torch
from torch import nn


def split_microbatches(
    inputs: torch.Tensor, targets: torch.Tensor, num_microbatches: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Split a batch along dimension 0 into ``num_microbatches`` ``(inputs, targets)`` pairs.

    * In order: concatenating the micro-batches gives back the batch.
    * Sizes differ by at most one, larger ones first: a batch of 10 in 4 micro-batches has sizes
      3, 3, 2, 2 (``torch.tensor_split`` does this; ``torch.chunk`` does not: it gives 3, 3, 3, 1,
      and for 6 rows in 4 chunks it returns only 3 chunks).
    * ``num_microbatches < 1``, more micro-batches than rows, or ``inputs`` and ``targets`` with a
      different number of rows: raise ``ValueError`` saying what is wrong.
    """
    ### BEGIN SOLUTION part1.split_microbatches: split inputs and targets along dim 0 into m in-order pieces, sizes differing by at most one
    if num_microbatches < 1:
        raise ValueError(f"num_microbatches must be >= 1, got {num_microbatches}")
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(f"inputs have {inputs.shape[0]} rows but targets have {targets.shape[0]}")
    if num_microbatches > inputs.shape[0]:
        raise ValueError(f"cannot split a batch of {inputs.shape[0]} into {num_microbatches} non-empty micro-batches")
    return list(zip(torch.tensor_split(inputs, num_microbatches), torch.tensor_split(targets, num_microbatches)))
    ### END SOLUTION


def microbatch_loss(loss_fn: nn.Module, outputs: torch.Tensor, targets: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The micro-batch's share of the full-batch mean loss, as a tensor you can call ``.backward()`` on.

    ``loss_fn`` averages over its micro-batch (``reduction="mean"``). Summing the returned values
    over all micro-batches must give the full-batch mean loss, so that the gradients accumulated by
    one ``backward()`` per micro-batch equal those of one full-batch ``backward()``, also when the
    micro-batches have different sizes. ``batch_size`` is the number of rows of the whole batch.
    """
    ### BEGIN SOLUTION part1.microbatch_loss: weight the micro-batch's mean loss by its share of the batch (rows / batch_size)
    return loss_fn(outputs, targets) * (outputs.shape[0] / batch_size)
    ### END SOLUTION

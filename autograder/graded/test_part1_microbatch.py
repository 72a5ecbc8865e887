"""Part 1: ``split_microbatches`` and ``microbatch_loss``.

Each test gets the pieces (or values) the student's function returned and checks them against the
contract stated in the skeleton: sizes of ``torch.tensor_split`` (differing by at most one, larger
first), in order, each micro-batch with its own targets; losses weighted by rows / batch, with a
gradient, adding up to the full-batch mean loss.
"""

from __future__ import annotations

import pytest
import torch

from autograder.judge.calls import expect
from autograder.judge.checks.part1 import check_loss_parts, check_split, raised_value_error

GROUP = "part1"
SPLITS = [(8, 4), (10, 4), (6, 4), (5, 1), (7, 7)]
LOSS_SIZES = [[4, 4], [3, 3, 2, 2], [5, 1, 1], [6]]


def batch(rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs whose rows are all different, and targets that say which row they belong to."""
    inputs = torch.arange(rows * 3, dtype=torch.float32).reshape(rows, 3)
    return inputs, -torch.arange(rows, dtype=torch.float32).reshape(rows, 1)


@pytest.mark.points(1, group=GROUP)
@pytest.mark.parametrize("rows,m", SPLITS)
def test_split_sizes_order_and_pairs(calls, rows, m):
    """micro-batches are in order, paired with their targets, sizes differing by at most one"""
    inputs, targets = batch(rows)
    call = f"split_microbatches(batch of {rows}, num_microbatches={m})"
    data = calls.get("split", "split_microbatches", call, cases=[dict(inputs=inputs, targets=targets, m=m)])
    expect(check_split(data["cases"][0], inputs, targets, m, call))


@pytest.mark.points(1, group=GROUP)
def test_split_bad_arguments(calls):
    """m < 1, m larger than the batch, and inputs and targets of different lengths raise ValueError"""
    x4, y4 = batch(4)
    bad = [dict(inputs=x4, targets=y4, m=m) for m in (0, -2, 5)] + [dict(inputs=x4, targets=y4[:3], m=1)]
    data = calls.get("split", "split_microbatches", "split_microbatches with bad arguments", cases=[], bad=bad)
    names = [
        "split_microbatches(batch of 4, num_microbatches=0)",
        "split_microbatches(batch of 4, num_microbatches=-2)",
        "split_microbatches(batch of 4, num_microbatches=5)",
        "split_microbatches(4 input rows, 3 target rows, 1)",
    ]
    for call, outcome in zip(names, data["bad"]):
        if not raised_value_error(outcome):
            what = "returned normally" if "raised" not in outcome else f"raised {outcome.get('message')}"
            expect(f"{call} {what}; it must raise ValueError with a message saying what is wrong")


@pytest.mark.points(1, group=GROUP)
@pytest.mark.parametrize("sizes", LOSS_SIZES, ids=lambda s: "-".join(map(str, s)))
def test_microbatch_losses_add_up(calls, sizes):
    """each micro-batch's loss is its share of the full-batch mean loss (uneven sizes included)"""
    gen = torch.Generator().manual_seed(5 + 100 * len(sizes) + sum(sizes))
    outputs, targets = torch.randn(sum(sizes), 4, generator=gen), torch.randn(sum(sizes), 4, generator=gen)
    data = calls.get(
        "microbatch_loss",
        "microbatch_loss",
        f"microbatch_loss (micro-batch sizes {sizes})",
        outputs=outputs,
        targets=targets,
        sizes=sizes,
    )
    expect(check_loss_parts(data["parts"], outputs, targets, sizes))

"""Part 1: ``split_microbatches`` and ``microbatch_loss``."""
from __future__ import annotations

import pytest

from autograder.grading import call_probe, expect_value_errors
from autograder.probes import expected_sizes

PART = "Part 1 Partition and micro-batches"


@pytest.mark.points(1, part=PART)
@pytest.mark.parametrize("batch,m", [(8, 4), (10, 4), (6, 4), (5, 1), (7, 7)])
def test_split_sizes_and_order(runner, batch, m):
    """micro-batches are in order, paired with their targets, sizes differing by at most one"""
    data = call_probe(runner, "split", batch_size=batch, num_microbatches=m)
    call = f"split_microbatches(batch of {batch}, num_microbatches={m})"
    if data["error"]:
        pytest.fail(f"{call}: {data['error']}", pytrace=False)
    want = expected_sizes(batch, m)
    if data["sizes"] != want:
        hint = " (torch.chunk gives this; use torch.tensor_split)" if len(data["sizes"]) != m or \
            sorted(data["sizes"], reverse=True) != want else ""
        pytest.fail(f"{call} gave sizes {data['sizes']}, expected {want}{hint}", pytrace=False)
    if not data["in_order"]:
        pytest.fail(f"{call}: concatenating the micro-batches does not give back the batch in order", pytrace=False)
    if not data["paired"]:
        pytest.fail(f"{call}: some micro-batch's targets are not the targets of its own rows", pytrace=False)


@pytest.mark.points(1, part=PART)
def test_split_bad_arguments(runner):
    """m < 1, m larger than the batch, and mismatched inputs/targets raise ValueError"""
    data = call_probe(runner, "split", batch_size=4, num_microbatches=2, bad=(0, -2, 5))
    expect_value_errors(data["bad"], "split_microbatches(batch of 4, num_microbatches={})")
    if data["mismatched"]["raised"] != "ValueError":
        pytest.fail("split_microbatches(4 input rows, 3 target rows, 1) must raise ValueError", pytrace=False)


@pytest.mark.points(1, part=PART)
@pytest.mark.parametrize("sizes", [[4, 4], [3, 3, 2, 2], [5, 1, 1], [6]])
def test_microbatch_losses_sum_to_batch_loss(runner, sizes):
    """the micro-batch losses add up to the full-batch mean loss, uneven sizes included"""
    data = call_probe(runner, "microbatch_loss", sizes=sizes)
    if data["error"]:
        pytest.fail(f"microbatch_loss with micro-batch sizes {sizes}: {data['error']}", pytrace=False)
    total = sum(data["parts"])
    if abs(total - data["full"]) > 1e-5 * abs(data["full"]):
        pytest.fail(f"micro-batch losses {[round(x, 5) for x in data['parts']]} (sizes {sizes}) sum to {total:.6g}, "
                    f"but the full-batch mean loss is {data['full']:.6g}: multiply each micro-batch's mean loss by "
                    f"rows / batch_size", pytrace=False)

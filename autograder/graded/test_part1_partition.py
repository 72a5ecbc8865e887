"""Part 1: ``partition`` splits the model into contiguous, balanced stages on their devices.

The graded models are chains of ``nn.Linear`` layers of irregular sizes (``PARTITION_MODELS``), so
that splitting by layer count, or cutting where the running total passes k/p of the parameters,
is never optimal at a balance setting (``tests/unit/test_partition_cases.py`` checks this). Layers
are recognised by their parameter values, which the judge knows; devices are checked with the
``meta`` device, which a CPU-only grader can tell apart from ``cpu``.
"""

from __future__ import annotations

import pytest

from autograder.judge.calls import expect
from autograder.judge.checks.part1 import (
    check_bad_calls,
    check_balanced,
    check_cover,
    check_devices,
    check_shares_parameters,
    stage_layers,
)
from autograder.practical import PARTITION_MODELS

GROUP = "part1"
# (model, stage counts): each model at a middling p and at a p near its number of layers, where a
# split that does not force every stage to be non-empty (fixed-size chunks, a greedy fill up to the
# best largest stage) leaves one empty; p = 1 and p = layers included.
COVER = [("A", (3, 6)), ("C", (4, 8)), ("D", (5, 4)), ("E", (1, 5))]
BALANCE = [("A", 3), ("A", 4), ("B", 3)]
DEVICES = ["cpu", "meta", "meta"]  # asymmetric: a reversed or a constant placement is told apart
SEED = 7


def _call(model: str, stages: int) -> str:
    return f"partition(model {model}: {len(PARTITION_MODELS[model]) - 1} Linear layers, num_stages={stages})"


@pytest.fixture(scope="module")
def partitioned(calls):
    def get(model: str, stages: int, devices=None, backward=False, bad=None):
        widths = PARTITION_MODELS[model]
        return calls.get(
            "partition",
            "partition",
            _call(model, stages),
            widths=widths,
            num_stages=stages,
            devices=devices or ["cpu"] * stages,
            seed=SEED,
            backward=backward,
            bad=bad or [],
        )

    return get


@pytest.mark.points(1, group=GROUP)
@pytest.mark.parametrize("model,counts", COVER, ids=[f"{m}-{'-'.join(map(str, c))}" for m, c in COVER])
def test_contiguous_cover(partitioned, model, counts):
    """stages are contiguous, non-empty and hold every layer once, in order"""
    for stages in counts:  # the first stage count that fails is the message
        expect(check_cover(partitioned(model, stages), PARTITION_MODELS[model], stages, SEED, _call(model, stages)))


@pytest.mark.points(1, group=GROUP)
@pytest.mark.parametrize("model,stages", BALANCE)
def test_balanced(partitioned, model, stages):
    """the largest stage holds as few parameters as any contiguous split allows"""
    widths = PARTITION_MODELS[model]
    data = partitioned(model, stages)
    expect(check_cover(data, widths, stages, SEED, _call(model, stages)))
    expect(check_balanced(stage_layers(data, widths, SEED), widths, stages, _call(model, stages)))


@pytest.mark.points(1, group=GROUP)
def test_stages_share_the_models_parameters(partitioned):
    """a backward through the stages puts gradients into the model's own parameters (no copies)"""
    data = partitioned("A", 3, backward=True)
    expect(check_shares_parameters(data, _call("A", 3)))


@pytest.mark.points(1, group=GROUP)
def test_each_stage_on_its_device(partitioned):
    """stage s is moved to devices[s]"""
    data = partitioned("C", 3, devices=DEVICES)
    expect(check_devices(data, DEVICES, _call("C", 3)))


@pytest.mark.points(0.5, group=GROUP)
def test_bad_number_of_stages(partitioned):
    """num_stages < 1, or more stages than layers, raises ValueError"""
    layers = len(PARTITION_MODELS["E"]) - 1
    cases = [[0, []], [-1, []], [layers + 1, ["cpu"] * (layers + 1)]]
    data = partitioned("E", 2, bad=cases)
    expect(check_bad_calls(data, cases, "partition(model of {layers} layers, num_stages={stages})", layers))


@pytest.mark.points(0.5, group=GROUP)
def test_devices_list_of_the_wrong_length(partitioned):
    """a devices list whose length is not num_stages raises ValueError"""
    layers = len(PARTITION_MODELS["E"]) - 1
    cases = [[2, ["cpu"]], [2, ["cpu"] * 3]]
    data = partitioned("E", 2, bad=cases)
    expect(
        check_bad_calls(
            data, cases, "partition(model of {layers} layers, num_stages={stages}, devices of length {devices})", layers
        )
    )

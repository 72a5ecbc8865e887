"""Part 1: ``partition`` splits the model into contiguous, balanced stages on their devices."""
from __future__ import annotations

import pytest

from autograder.grading import call_probe, expect_value_errors, optimal_max_stage

PART = "Part 1 Partition and micro-batches"
CASES = [(8, 4), (7, 3), (5, 5), (6, 1)]  # (layers, stages): p = layers and p = 1 included


def _stages(runner, layers, stages):
    data = call_probe(runner, "partition", num_layers=layers, num_stages=stages)
    if data["error"]:
        pytest.fail(f"partition(model with {layers} layers, num_stages={stages}): {data['error']}", pytrace=False)
    return data


@pytest.mark.points(1, part=PART)
@pytest.mark.parametrize("layers,stages", CASES)
def test_contiguous_cover(runner, layers, stages):
    """stages are contiguous, non-empty and cover every layer once, in order"""
    data = _stages(runner, layers, stages)
    got = [st["layers"] for st in data["stages"]]
    where = f"partition(model with {layers} layers, num_stages={stages}) returned layers {got}"
    if len(got) != stages:
        pytest.fail(f"{where}: expected {stages} stages, got {len(got)}", pytrace=False)
    if any(-1 in g for g in got):
        pytest.fail(f"{where}: a stage holds a module that is not one of the model's layers (-1): "
                    f"build stages from the model's own layers, do not copy or create them", pytrace=False)
    if any(not g for g in got):
        pytest.fail(f"{where}: stage {[len(g) for g in got].index(0)} is empty; every stage needs a layer", pytrace=False)
    flat = [i for g in got for i in g]
    if flat != list(range(layers)):
        pytest.fail(f"{where}: concatenated, the stages must list layers 0..{layers - 1} once each, in order",
                    pytrace=False)


@pytest.mark.points(1, part=PART)
@pytest.mark.parametrize("layers,stages", [(8, 3), (7, 2), (9, 4)])
def test_balanced(runner, layers, stages):
    """the largest stage holds as few parameters as any contiguous split allows"""
    data = _stages(runner, layers, stages)
    sizes = data["layer_sizes"]
    stage_params = [sum(sizes[i] for i in st["layers"] if i >= 0) for st in data["stages"]]
    best = optimal_max_stage(sizes, stages)
    if max(stage_params) != best:
        pytest.fail(f"partition of layers with parameter counts {sizes} into {stages} stages gives stage sizes "
                    f"{stage_params} (largest {max(stage_params)}); the best contiguous split has largest stage "
                    f"{best}. Balance by parameter count, not by number of layers.", pytrace=False)


@pytest.mark.points(1, part=PART)
def test_devices_and_shared_parameters(runner):
    """each stage is on its device and uses the model's own parameters"""
    data = _stages(runner, 6, 3)
    for s, st in enumerate(data["stages"]):
        if st["foreign_params"]:
            pytest.fail(f"stage {s} has {st['foreign_params']} parameter(s) that are not the model's: do not "
                        f"deep-copy layers, or gradients never reach the model", pytrace=False)
        if st["devices"] != ["cpu"]:
            pytest.fail(f"stage {s} has parameters on {st['devices']}, expected its device cpu", pytrace=False)


@pytest.mark.points(2, part=PART)
def test_bad_num_stages(runner):
    """num_stages < 1 or more stages than layers raise ValueError"""
    data = call_probe(runner, "partition", num_layers=4, num_stages=2, bad=(0, -1, 5))
    expect_value_errors(data["bad"], "partition(model with 4 layers, num_stages={})")

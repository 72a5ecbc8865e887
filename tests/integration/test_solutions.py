"""The reference solutions: every schedule equals the single-device full-batch step."""

from __future__ import annotations

import pytest
import torch

from solutions import devices, model, partition, schedules
from solutions.microbatch import microbatch_loss, split_microbatches

STEPS = [schedules.naive_step, schedules.gpipe_step, schedules.delayed_backward_step]


def _grads_after(step, p, m, batch, seed, kind="mlp"):
    width, depth = (32, 8) if kind == "mlp" else (16, 4)
    ref = model.make_model(width, depth, seed=seed, kind=kind)
    net = model.make_model(width, depth, seed=seed, kind=kind)
    x, y = model.make_batch(batch, width, seed=seed, kind=kind)
    ref_loss = model.reference_step(ref, x, y, model.loss_function())
    loss = step(partition.partition(net, p, devices.stage_devices(p)), x, y, model.loss_function(), m)
    g_ref = max(q.grad.abs().max().item() for q in ref.parameters())
    diff = max((a.grad - b.grad).abs().max().item() for a, b in zip(ref.parameters(), net.parameters()))
    return diff / g_ref, loss, ref_loss


@pytest.mark.parametrize("step", STEPS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("p", [1, 2, 3, 4])
@pytest.mark.parametrize("m", [1, 2, 3, 4, 8])
def test_gradients_equal_reference(step, p, m):
    # batch 13: uneven micro-batches for every m > 1. Measured worst case 2.4e-7 (float32
    # summation order); the autograder's tolerance is 1e-3.
    rel, loss, ref_loss = _grads_after(step, p, m, batch=13, seed=p * 10 + m)
    assert rel <= 1e-6
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert isinstance(loss, float)


@pytest.mark.parametrize("step", STEPS, ids=lambda f: f.__name__)
def test_transformer_variant(step):
    rel, loss, ref_loss = _grads_after(step, p=2, m=3, batch=7, seed=3, kind="transformer")
    assert rel <= 1e-6 and loss == pytest.approx(ref_loss, rel=1e-5)


def test_steps_accumulate_and_do_not_step():
    net = model.make_model(16, 4, seed=0)
    x, y = model.make_batch(8, 16)
    before = [p.detach().clone() for p in net.parameters()]
    stages = partition.partition(net, 2, devices.stage_devices(2))
    schedules.gpipe_step(stages, x, y, model.loss_function(), 4)
    once = [p.grad.clone() for p in net.parameters()]
    schedules.gpipe_step(stages, x, y, model.loss_function(), 4)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert all(torch.allclose(p.grad, 2 * g, rtol=1e-6, atol=1e-9) for p, g in zip(net.parameters(), once))


def _layers(stages):
    return [len(list(s.children())) for s in stages]


@pytest.mark.parametrize("layers,p,want", [(8, 4, [2, 2, 2, 2]), (8, 8, [1] * 8), (8, 1, [8]), (7, 3, [3, 2, 2])])
def test_partition_sizes(layers, p, want):
    net = model.make_model(8, layers)
    stages = partition.partition(net, p, devices.stage_devices(p))
    assert sorted(_layers(stages), reverse=True) == sorted(want, reverse=True)
    assert max(_layers(stages)) == max(want)
    flat = [layer for s in stages for layer in s]
    assert all(a is b for a, b in zip(flat, net)) and len(flat) == layers


def test_partition_balances_parameters_not_layers():
    # Layer sizes 10, 10, 10, 30 (as Linear params): two stages -> [3 small], [1 big].
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 2), torch.nn.Linear(3, 2), torch.nn.Linear(3, 2), torch.nn.Linear(5, 5)
    )
    stages = partition.partition(net, 2, devices.stage_devices(2, "cpu"))
    assert _layers(stages) == [3, 1]


@pytest.mark.parametrize("p", [0, -1, 9])
def test_partition_bad_stage_count(p):
    with pytest.raises(ValueError, match="stage"):
        partition.partition(model.make_model(8, 8), p, [torch.device("cpu")] * max(p, 0))


def test_partition_needs_one_device_per_stage():
    with pytest.raises(ValueError, match="device"):
        partition.partition(model.make_model(8, 8), 2, [torch.device("cpu")])


@pytest.mark.parametrize("batch,m,want", [(10, 4, [3, 3, 2, 2]), (6, 4, [2, 2, 1, 1]), (5, 5, [1] * 5), (4, 1, [4])])
def test_split_sizes(batch, m, want):
    x, y = torch.arange(batch * 2.0).reshape(batch, 2), torch.arange(float(batch))
    pieces = split_microbatches(x, y, m)
    assert [len(a) for a, _ in pieces] == want
    assert torch.equal(torch.cat([a for a, _ in pieces]), x) and torch.equal(torch.cat([b for _, b in pieces]), y)


@pytest.mark.parametrize("m", [0, -3, 11])
def test_split_bad_counts(m):
    with pytest.raises(ValueError, match="micro"):
        split_microbatches(torch.zeros(10, 2), torch.zeros(10), m)


def test_split_mismatched_rows():
    with pytest.raises(ValueError, match="rows"):
        split_microbatches(torch.zeros(10, 2), torch.zeros(9), 2)


def test_microbatch_losses_sum_to_batch_loss_uneven():
    out, tgt = torch.randn(10, 3, generator=torch.Generator().manual_seed(0)), torch.zeros(10, 3)
    fn = torch.nn.MSELoss()
    parts = [microbatch_loss(fn, a, b, 10) for a, b in split_microbatches(out, tgt, 4)]
    assert float(sum(parts)) == pytest.approx(float(fn(out, tgt)), rel=1e-6)

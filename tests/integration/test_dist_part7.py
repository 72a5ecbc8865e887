"""autograder.dist with split backward (I/W) and several stages per rank (interleaving), in one
process and in one process per rank: gradients equal the single-device reference, each rank runs
exactly its list, emulated time is kept.

Lists come from PyTorch's own schedule classes (``ScheduleInterleaved1F1B``,
``ScheduleInterleavedZeroBubble``, via ``autograder.instructor.bench_torch.torch_pipeline_order``) and a
few written by hand, independent of ``autograder.instructor.reference_schedules``.
"""

from __future__ import annotations

import time

import pytest
import torch

from autograder import dist as R
from autograder.dist.emulate import DeviceTime, EmulatedTime, backward_pass, ideal_step_time
from autograder.dist.model import course_model, even_partition
from autograder.instructor.bench_torch import torch_pipeline_order
from autograder.instructor.reference_schedules import gpipe_schedule, one_f_one_b_schedule
from autograder.practical import GRAD_RTOL, LOSS_RTOL
from autograder.schedules import Action, parse_schedule

# Hand-written: stage 0 I before the downstream ones finish, W late; m < p; p = 1 with 3 chunks.
HAND = {
    "zb-by-hand p2 m2": (2, 1, parse_schedule({0: "0F0 0F1 0I0 0I1 0W1 0W0", 1: "1F0 1I0 1F1 1W0 1I1 1W1"})),
    "mixed B and I/W": (2, 1, parse_schedule({0: "0F0 0F1 0B0 0I1 0W1", 1: "1F0 1I0 1F1 1B1 1W0"})),
    "one rank, 3 chunks": (1, 3, parse_schedule({0: "0F0 1F0 2F0 0F1 1F1 2F1 2I1 2B0 1I1 1B0 0B0 2W1 1W1 0I1 0W1"})),
    "p4 v2 m1": (
        4,
        2,
        parse_schedule(
            {
                r: [
                    Action(r, "F", 0),
                    Action(r + 4, "F", 0),
                    Action(r + 4, "I", 0),
                    Action(r, "I", 0),
                    Action(r + 4, "W", 0),
                    Action(r, "W", 0),
                ]
                for r in range(4)
            }
        ),
    ),
}


def families(p: int, m: int) -> dict[str, tuple[int, dict]]:
    """``{name: (v, lists)}``: every schedule family at p ranks, m micro-batches."""
    out = {
        "gpipe": (1, gpipe_schedule(p, m)),
        "1f1b": (1, one_f_one_b_schedule(p, m)),
        "zb-h1 (torch)": (1, torch_pipeline_order("zb-h1", p, m)),
    }
    for v in (2, 3):
        if m % max(1, m // p) == 0:
            out[f"interleaved v={v} (torch)"] = (v, torch_pipeline_order("interleaved", p, m, v))
    out["zb v=2 (torch)"] = (2, torch_pipeline_order("zb-h1", p, m, 2))
    return out


def assert_matches_reference(spec: R.PipelineSpec, loss: float, grads: dict) -> None:
    ref_loss, ref_grads = R.reference_gradients(spec)
    assert set(grads) == set(ref_grads)
    assert R.max_relative_error(grads, ref_grads) <= GRAD_RTOL
    assert abs(loss - ref_loss) <= LOSS_RTOL * abs(ref_loss) + 1e-6


def single_step(lists: dict, spec: R.PipelineSpec, f: float = 0.0) -> tuple[float, dict]:
    """One step of ``run_actions_single`` on the course model cut into p x v stages."""
    M = course_model()
    n = spec.total_stages
    model = M.make_model(spec.width, spec.depth, seed=spec.seed, kind=spec.kind)
    inputs, targets = M.make_batch(spec.batch_size, spec.width, seed=spec.seed, kind=spec.kind)
    stages = even_partition(model, n, [torch.device("cpu")] * n)
    if f:
        stages = [EmulatedTime(s, f / spec.stages_per_rank, spec.batch_size) for s in stages]
    loss = R.run_actions_single(stages, inputs, targets, M.loss_function(), spec.num_microbatches, lists)
    return loss, {name: q.grad.clone() for name, q in model.named_parameters()}


# -- one process --------------------------------------------------------------------------------


@pytest.mark.parametrize("p,m,batch", [(1, 3, 7), (2, 3, 7), (2, 4, 9), (4, 2, 5), (4, 8, 11), (3, 5, 11)])
def test_single_process_every_family_gives_the_reference_gradients(p, m, batch):
    """m < p, uneven micro-batches (batch not divisible by m), 1 to 3 chunks per rank."""
    for _name, (v, lists) in families(p, m).items():
        spec = R.PipelineSpec(p, m, batch, depth=12, seed=p + m, stages_per_rank=v)
        loss, grads = single_step(lists, spec)
        assert_matches_reference(spec, loss, grads)


@pytest.mark.parametrize("name", sorted(HAND))
def test_single_process_hand_written_lists(name):
    p, v, lists = HAND[name]
    m = 1 + max(a.mb for acts in lists.values() for a in acts)
    spec = R.PipelineSpec(p, m, 5, seed=3, stages_per_rank=v)
    loss, grads = single_step(lists, spec)
    assert_matches_reference(spec, loss, grads)


def test_input_grad_leaves_weights_alone_and_weight_grad_completes_them():
    M = course_model()
    model = M.make_model(16, 4, seed=1)
    inputs, targets = M.make_batch(6, 16, seed=1)
    stage = even_partition(model, 2, [torch.device("cpu")] * 2)[1]
    work = R.StageWork(stage, 1, 2, M.loss_function(), 6, [targets])
    work.forward(0, inputs)
    grad_in = work.input_grad(0, None)
    assert grad_in is not None and grad_in.shape == inputs.shape
    assert all(q.grad is None for q in stage.parameters())  # I ran no weight-gradient node
    work.weight_grad(0)
    got = {n: q.grad.clone() for n, q in stage.named_parameters()}
    stage.zero_grad(set_to_none=True)
    x = inputs.clone().requires_grad_(True)
    M.loss_function()(stage(x), targets).backward()
    for n, q in stage.named_parameters():
        assert torch.allclose(got[n], q.grad, atol=1e-7)
    assert torch.allclose(grad_in, x.grad, atol=1e-7)


def test_emulated_split_backward_takes_half_of_b_each():
    t = DeviceTime(0.04, 8)
    assert (t.seconds("F", 2), t.seconds("B", 2), t.seconds("I", 2), t.seconds("W", 2)) == (0.01, 0.02, 0.01, 0.01)
    stage = EmulatedTime(torch.nn.Linear(4, 4), seconds_per_batch=0.04, batch_size=8)
    x = torch.randn(2, 4, requires_grad=True)
    out = stage(x)
    started = time.perf_counter()
    with backward_pass("I"):
        torch.autograd.grad(out, [x], torch.ones_like(out), retain_graph=True)
    took_i = time.perf_counter() - started
    started = time.perf_counter()
    with backward_pass("W"):
        torch.autograd.backward(out, torch.ones_like(out), inputs=list(stage.parameters()))
    took_w = time.perf_counter() - started
    assert 0.010 <= took_i < 0.018 and 0.010 <= took_w < 0.018  # upper bounds loose: loaded machines


def test_simulated_ideal_is_the_closed_form_for_gpipe_and_below_it_for_the_bonus_schedules():
    spec = R.PipelineSpec(4, 8, 16, seconds_per_batch=0.02)
    for lists in (gpipe_schedule(4, 8), one_f_one_b_schedule(4, 8)):
        assert spec.simulated_step_time(lists) == pytest.approx(ideal_step_time(4, 8, 0.02))
    zb = spec.simulated_step_time(torch_pipeline_order("zb-h1", 4, 8))
    interleaved = R.PipelineSpec(4, 8, 16, seconds_per_batch=0.02, stages_per_rank=2)
    assert zb == pytest.approx(27 / 33 * spec.ideal_step_time)  # F = I = W: bubble (p-1)F instead of 3(p-1)F
    assert interleaved.simulated_step_time(torch_pipeline_order("interleaved", 4, 8)) < spec.ideal_step_time


def test_check_schedule_accepts_split_and_interleaved_lists_and_refuses_misplaced_ones():
    lists = torch_pipeline_order("interleaved", 2, 4, 2)
    assert R.check_schedule(lists, 2, 4, stages_per_rank=2) == parse_schedule(lists)
    assert R.check_schedule(torch_pipeline_order("zb-h1", 2, 4), 2, 4)
    cases = [
        ({0: "0F0 0I0 0W0 2F0", 1: "1F0 1I0 1W0"}, 2, 1, 1, "2F0 names stage 2, there are 2"),
        ({0: "0F0 1F0", 1: "2F0 3F0"}, 2, 1, 2, "rank 0, step 1: 1F0 belongs to stage 1, which runs on rank 1"),
        ({0: "0F0 0I0"}, 2, 1, 1, "expected one list per rank: ranks 0..1"),
        ({0: "0F0 0I0 0B0", 1: "1F0 1B0"}, 2, 1, 1, "invalid schedule: 0B0 mixes a full backward with a split one"),
    ]
    for lists, p, m, v, message in cases:
        with pytest.raises(R.RuntimeInputError) as info:
            R.check_schedule(lists, p, m, stages_per_rank=v)
        assert message in str(info.value) and "\n" not in str(info.value), str(info.value)


# -- one process per rank -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool():
    with R.PipelinePool(4, backend="gloo", recv_timeout=20) as pool:
        yield pool


MP_GRID = [(4, 8, 11), (4, 2, 5), (2, 3, 7), (3, 5, 11), (1, 3, 7)]


def _check_run(pool, lists: dict, spec: R.PipelineSpec, **run) -> R.RunResult:
    result = pool.run(lists, spec, **run)
    assert_matches_reference(spec, result.loss, result.grads)
    assert result.executed == parse_schedule(lists)
    for rank, declared in parse_schedule(lists).items():  # the recorded order on each rank is its list
        ran = sorted((e for e in result.events if e.stage % spec.num_stages == rank), key=lambda e: e.start)
        assert [e.action for e in ran] == declared
    assert pool.startups == 1  # one process group for the whole module
    return result


@pytest.mark.slow
@pytest.mark.parametrize("p,m,batch", MP_GRID)
def test_multi_process_every_family_gives_the_reference_gradients(pool, p, m, batch):
    for name, (v, lists) in families(p, m).items():
        if name in ("gpipe", "1f1b") and p != 4:
            continue  # covered by tests/test_runtime.py
        spec = R.PipelineSpec(p, m, batch, depth=12, seed=10 * p + m, stages_per_rank=v)
        _check_run(pool, lists, spec)


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["shm", "p2p"])
def test_multi_process_both_transports_and_hand_written_lists(pool, transport):
    """Messages through shared memory and through the process group's send/recv (tags keep
    stage, micro-batch and direction apart: with p = 2 and v = 2 both ranks send both ways)."""
    for _name, (p, v, lists) in HAND.items():
        m = 1 + max(a.mb for acts in lists.values() for a in acts)
        _check_run(pool, lists, R.PipelineSpec(p, m, 5, seed=4, stages_per_rank=v), transport=transport)
    lists = torch_pipeline_order("interleaved", 2, 4, 2)
    result = _check_run(
        pool,
        lists,
        R.PipelineSpec(2, 4, 9, kind="transformer", width=16, depth=4, seed=2, stages_per_rank=2),
        transport=transport,
        steps=2,
    )
    assert len(result.step_times) == 2


@pytest.mark.slow
def test_multi_process_split_and_interleaved_keep_emulated_time(pool):
    f = 0.02
    for lists, v in ((torch_pipeline_order("zb-h1", 2, 4), 1), (torch_pipeline_order("interleaved", 2, 4), 2)):
        spec = R.PipelineSpec(2, 4, 8, seconds_per_batch=f, stages_per_rank=v)
        result = pool.run(lists, spec, steps=3)
        device = DeviceTime(f / v, spec.batch_size)
        for e in result.events:
            assert e.end - e.start >= 0.999 * device.seconds(e.kind, spec.sizes[e.mb])
        assert result.median_step_time >= 0.98 * spec.simulated_step_time(lists)
        assert result.median_step_time <= 1.6 * spec.simulated_step_time(lists)  # loose: a loaded machine
        assert len(result.profile) == 3 and len(result.profile[-1]) == sum(len(a) for a in lists.values())
        assert result.timeline().num_ranks == 2


@pytest.mark.slow
def test_multi_process_refuses_bad_interleaved_input_before_starting(pool):
    started = pool.startups
    with pytest.raises(R.RuntimeInputError, match="cannot run 4 ranks x 3 stages per rank = 12 stages"):
        pool.run(torch_pipeline_order("interleaved", 4, 4, 3), R.PipelineSpec(4, 4, 8, stages_per_rank=3))
    with pytest.raises(R.RuntimeInputError, match="transport must be one of auto, shm, p2p"):
        pool.run(gpipe_schedule(2, 2), R.PipelineSpec(2, 2, 4), transport="pigeon")
    assert pool.startups == started

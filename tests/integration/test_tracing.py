"""Tracing (``autograder/tracing`` and ``autograder/harness/stage.py``) records what really ran.

What this proves, in process, with :class:`LocalExecutor` and :class:`PipelineStage` over the
judge's course model (``course_model()`` and ``even_partition``): whichever autograd API drives the
stages (``loss.backward()``, ``torch.autograd.backward`` per stage on detached inputs,
``torch.autograd.grad`` plus manual accumulation, ``backward(inputs=...)``, ``retain_graph=True``,
non-reentrant and reentrant ``torch.utils.checkpoint``), the recorder holds one forward with a graph
and one backward per (stage, micro-batch) (reentrant checkpointing adds one forward without a
graph), each with the right micro-batch even when micro-batches run out of order; the executor's own
sum of parameter gradients equals the single-device full-batch gradient to 1e-6 of its size, as does
``.grad``; saved activation bytes grow with rows; activations that did not come from the previous
stage are noted; a stage run twice shows twice; the executor lets go of graphs the student dropped.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.checkpoint import checkpoint

from autograder.dist.model import course_model, even_partition, split_sizes
from autograder.harness.stage import PipelineStage
from autograder.judge.checks import order
from autograder.judge.trial import Trial, TrialSpec
from autograder.tracing import UNKNOWN_MB, LocalExecutor, Recorder, StageError
from autograder.tracing.replay import replay_trace

M = course_model()
CPU = torch.device("cpu")
RTOL = 1e-6


class Pipe:
    """The course model split into ``p`` traced stages, a batch, and its micro-batches."""

    def __init__(
        self, p: int = 3, batch: int = 10, m: int = 4, width: int = 16, depth: int = 6, kind: str = "mlp", seed: int = 1
    ):
        self.p, self.m, self.batch = p, m, batch
        self.model = M.make_model(width, depth, seed=seed, kind=kind)
        self.fresh = copy.deepcopy(self.model)  # for the single-device reference
        self.x, self.y = M.make_batch(batch, width, seed=seed, kind=kind)
        self.sizes = split_sizes(batch, m)
        self.modules = even_partition(self.model, p, [CPU] * p)
        self.recorder = Recorder(self.x, self.sizes)
        self.executor = LocalExecutor(self.modules, self.recorder)
        self.stages = [PipelineStage(self.executor, s, list(self.modules[s].parameters())) for s in range(p)]
        self.params = [q for stage in self.stages for q in stage.parameters()]
        self.loss_fn = M.loss_function()
        starts = [sum(self.sizes[:k]) for k in range(m)]
        self.mbs = [(self.x[a : a + n], self.y[a : a + n]) for a, n in zip(starts, self.sizes)]

    def weight(self, k: int) -> float:
        return self.sizes[k] / self.batch

    def loss(self, out: torch.Tensor, k: int) -> torch.Tensor:
        return self.loss_fn(out, self.mbs[k][1]) * self.weight(k)

    def reference(self) -> list[torch.Tensor]:
        self.fresh.zero_grad(set_to_none=True)
        self.loss_fn(self.fresh(self.x), self.y).backward()
        return [q.grad.detach().clone() for q in self.fresh.parameters()]

    def executor_grads(self) -> list[torch.Tensor | None]:
        return [g for stage in self.executor.param_grads for g in stage]

    def forward_keys(self, graph: bool = True) -> list[tuple[int, int]]:
        return [(e.stage, e.mb) for e in self.recorder.events if e.kind == "F" and e.graph == graph]

    def backward_keys(self) -> list[tuple[int, int]]:
        return [(e.stage, e.mb) for e in self.recorder.events if e.kind == "B"]


def assert_close_to(got: list[torch.Tensor | None], want: list[torch.Tensor], what: str) -> None:
    scale = max(w.abs().max().item() for w in want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g is not None, f"{what}: parameter {i} has no gradient"
        err = (g - w).abs().max().item()
        assert err <= RTOL * scale, f"{what}: parameter {i} differs by {err:.3g} (allowed {RTOL * scale:.3g})"


# -- the autograd styles a student may use ---------------------------------------------------------------


def style_backward(pipe: Pipe, k: int) -> None:
    h = pipe.mbs[k][0]
    for stage in pipe.stages:
        h = stage(h)
    pipe.loss(h, k).backward()


def style_autograd_backward_per_stage(pipe: Pipe, k: int) -> None:
    h, acts = pipe.mbs[k][0], []
    for s, stage in enumerate(pipe.stages):
        inp = h.detach().requires_grad_(s > 0)
        h = stage(inp)
        acts.append((inp, h))
    torch.autograd.backward([pipe.loss(h, k)])
    for s in reversed(range(pipe.p - 1)):
        torch.autograd.backward([acts[s][1]], grad_tensors=[acts[s + 1][0].grad])


def style_autograd_grad(pipe: Pipe, k: int) -> None:
    h = pipe.mbs[k][0]
    for stage in pipe.stages:
        h = stage(h)
    grads = torch.autograd.grad(pipe.loss(h, k), pipe.params)
    with torch.no_grad():
        for q, g in zip(pipe.params, grads):
            q.grad = g.clone() if q.grad is None else q.grad + g


def style_backward_inputs(pipe: Pipe, k: int) -> None:
    h = pipe.mbs[k][0]
    for stage in pipe.stages:
        h = stage(h)
    pipe.loss(h, k).backward(inputs=pipe.params)


def style_retain_graph(pipe: Pipe, k: int) -> None:
    h = pipe.mbs[k][0]
    for stage in pipe.stages:
        h = stage(h)
    pipe.loss(h, k).backward(retain_graph=True)


def style_checkpoint_nonreentrant(pipe: Pipe, k: int) -> None:
    h = pipe.mbs[k][0]
    for stage in pipe.stages:
        h = checkpoint(stage, h, use_reentrant=False)
    pipe.loss(h, k).backward()


def style_checkpoint_reentrant(pipe: Pipe, k: int) -> None:
    h = pipe.mbs[k][0].clone().requires_grad_(True)  # reentrant checkpointing needs an input that requires grad
    for stage in pipe.stages:
        h = checkpoint(stage, h, use_reentrant=True)
    pipe.loss(h, k).backward()


STYLES = {
    "backward": style_backward,
    "autograd.backward per stage": style_autograd_backward_per_stage,
    "autograd.grad": style_autograd_grad,
    "backward(inputs=params)": style_backward_inputs,
    "retain_graph": style_retain_graph,
    "checkpoint non-reentrant": style_checkpoint_nonreentrant,
    "checkpoint reentrant": style_checkpoint_reentrant,
}
ORDERS = {"in order": [0, 1, 2, 3], "out of order": [2, 0, 3, 1]}


@pytest.mark.parametrize("mb_order", list(ORDERS), ids=list(ORDERS))
@pytest.mark.parametrize("style", list(STYLES), ids=list(STYLES))
def test_every_autograd_style_is_traced_and_its_gradients_are_right(style, mb_order):
    pipe = Pipe()
    ks = ORDERS[mb_order]
    for k in ks:
        STYLES[style](pipe, k)
    expected_forwards = [(s, k) for k in ks for s in range(pipe.p)]
    recomputed = style == "checkpoint reentrant"  # forwards without a graph, recomputed with one in the backward
    assert pipe.forward_keys(graph=not recomputed) == expected_forwards
    assert sorted(pipe.forward_keys(graph=True)) == sorted(expected_forwards)
    assert pipe.forward_keys(graph=False) == (expected_forwards if recomputed else [])
    assert sorted(pipe.backward_keys()) == sorted(expected_forwards)
    assert [k for s, k in pipe.backward_keys() if s == 0] == ks
    assert UNKNOWN_MB not in {e.mb for e in pipe.recorder.events}
    assert pipe.recorder.notes == []
    reference = pipe.reference()
    assert_close_to(pipe.executor_grads(), reference, f"{style}: the executor's sum")
    assert_close_to([q.grad for q in pipe.params], reference, f"{style}: .grad")


@pytest.mark.parametrize("style", list(STYLES), ids=list(STYLES))
def test_every_autograd_style_gives_canonical_gpipe_events(style):
    """Run in GPipe order (every forward first, then every backward), the recorded events pass the
    judge's completeness and GPipe order checks."""
    pipe = Pipe(p=3, batch=10, m=4)
    if style in ("autograd.backward per stage", "autograd.grad", "checkpoint reentrant"):
        for k in range(4):
            STYLES[style](pipe, k)  # these drive a whole micro-batch at once: the naive order
        rule = "naive"
    else:
        losses = []
        for k in range(4):
            h = pipe.mbs[k][0].clone().requires_grad_(style.startswith("checkpoint"))
            for stage in pipe.stages:
                h = checkpoint(stage, h, use_reentrant=False) if style.startswith("checkpoint") else stage(h)
            losses.append(pipe.loss(h, k))
        for loss in reversed(losses):
            if style == "backward(inputs=params)":
                loss.backward(inputs=pipe.params)
            else:
                loss.backward(retain_graph=style == "retain_graph")
        rule = "gpipe"
    spec = TrialSpec(rule, 3, 4, 10, width=16, depth=6, seed=1)
    trial = Trial(spec, events=list(pipe.recorder.events), notes=list(pipe.recorder.notes))
    assert order.check_order(trial) is None


def test_transformer_stages_are_traced_and_their_gradients_are_right():
    pipe = Pipe(p=2, batch=6, m=3, width=16, depth=2, kind="transformer")
    for k in (1, 0, 2):
        style_backward(pipe, k)
    assert pipe.forward_keys() == [(s, k) for k in (1, 0, 2) for s in range(2)]
    assert_close_to(pipe.executor_grads(), pipe.reference(), "transformer")


def test_microbatches_are_identified_by_data_not_by_call_count():
    pipe = Pipe(p=2, batch=8, m=4)
    style_backward(pipe, 3)
    style_backward(pipe, 0)
    assert [e.mb for e in pipe.recorder.events] == [3, 3, 3, 3, 0, 0, 0, 0]


def test_activation_moved_or_copied_is_still_identified():
    pipe = Pipe(p=3, batch=10, m=4)
    h = pipe.mbs[1][0].clone()
    for stage in pipe.stages:
        h = stage(h.to(CPU).clone().contiguous())
    assert [e.mb for e in pipe.recorder.events] == [1, 1, 1]
    assert pipe.recorder.notes == []


def test_saved_bytes_grow_with_rows():
    pipe = Pipe(p=2, batch=10, m=4)  # sizes 3, 3, 2, 2
    for k in range(4):
        style_backward(pipe, k)
    saved = {(e.stage, e.rows): e.saved_bytes for e in pipe.recorder.events if e.kind == "F"}
    for s in range(2):
        assert saved[(s, 2)] > 0
        assert saved[(s, 3)] > saved[(s, 2)]
        assert saved[(s, 3)] * 2 == saved[(s, 2)] * 3  # proportional to rows: parameters are not counted


def test_saved_bytes_do_not_count_parameters():
    pipe = Pipe(p=1, batch=4, m=4, width=64, depth=2)
    style_backward(pipe, 0)
    forward = next(e for e in pipe.recorder.events if e.kind == "F")
    param_bytes = sum(q.numel() * q.element_size() for q in pipe.params)
    assert 0 < forward.saved_bytes < param_bytes


def test_forward_without_grad_saves_nothing_and_keeps_no_graph():
    pipe = Pipe(p=2, batch=8, m=4)
    with torch.no_grad():
        h = pipe.stages[0](pipe.mbs[0][0])
        pipe.stages[1](h)
    assert [(e.kind, e.mb, e.graph, e.saved_bytes) for e in pipe.recorder.events] == [("F", 0, False, 0)] * 2
    assert pipe.executor._kept == {}


def test_events_have_rows_and_ordered_times():
    pipe = Pipe(p=2, batch=10, m=4)
    for k in range(4):
        style_backward(pipe, k)
    events = pipe.recorder.events
    assert [e.rows for e in events if e.stage == 0 and e.kind == "F"] == pipe.sizes
    assert all(0 <= e.start <= e.end for e in events)
    assert all(a.start <= b.start for a, b in zip(events, events[1:]))


def test_tensor_that_is_not_the_previous_stage_output_is_noted():
    pipe = Pipe(p=3, batch=10, m=4)
    h = pipe.stages[0](pipe.mbs[0][0])
    pipe.stages[1](torch.randn_like(h))
    assert pipe.recorder.events[-1].mb == UNKNOWN_MB
    assert any("stage 1" in n and "not an output of stage 0" in n for n in pipe.recorder.notes)


def test_skipping_a_stage_is_noted():
    pipe = Pipe(p=3, batch=10, m=4, width=16)
    h = pipe.stages[0](pipe.mbs[0][0])
    pipe.stages[2](h)
    assert pipe.recorder.events[-1].mb == UNKNOWN_MB
    assert any("stage 2" in n for n in pipe.recorder.notes)


def test_stage0_input_that_is_not_a_microbatch_is_noted():
    pipe = Pipe(p=2, batch=10, m=4)
    pipe.stages[0](pipe.x[1:4])  # rows 1..3: no micro-batch starts at row 1
    assert pipe.recorder.events[-1].mb == UNKNOWN_MB
    assert any("do not start one of the micro-batches" in n for n in pipe.recorder.notes)


def test_stage0_input_with_part_of_a_microbatch_is_noted_but_identified():
    pipe = Pipe(p=2, batch=10, m=4)
    pipe.stages[0](pipe.x[3:5])  # micro-batch 1 holds rows 3..5
    assert pipe.recorder.events[-1].mb == 1
    assert any("expected 3" in n for n in pipe.recorder.notes)


def test_scalar_input_is_noted():
    pipe = Pipe(p=1, batch=4, m=2, width=1, depth=1)
    with pytest.raises(RuntimeError):  # the layer itself cannot run on a scalar
        pipe.stages[0](torch.tensor(1.0))
    assert any("instead of a batch" in n for n in pipe.recorder.notes)


def test_stage_called_twice_on_one_microbatch_records_two_forwards():
    pipe = Pipe(p=2, batch=8, m=4)
    x = pipe.mbs[2][0]
    a = pipe.stages[0](x)
    b = pipe.stages[0](x)
    assert torch.equal(a, b)
    assert pipe.forward_keys() == [(0, 2), (0, 2)]
    spec = TrialSpec("gpipe", 2, 4, 8, width=16, depth=6, seed=1)
    trial = Trial(spec, events=list(pipe.recorder.events))
    with pytest.raises(order.Incomplete, match="micro-batch 0 never ran forward on stage 0"):
        order.canonical(trial)  # the second forward is not another micro-batch's
    assert replay_trace(trial.events).extra_forwards == {(0, 2): 1}


def test_backward_run_twice_with_retain_graph_records_two_backwards_and_doubles_the_sum():
    pipe = Pipe(p=2, batch=8, m=1)
    h = pipe.mbs[0][0]
    for stage in pipe.stages:
        h = stage(h)
    loss = pipe.loss(h, 0)
    loss.backward(retain_graph=True)
    loss.backward()
    assert pipe.backward_keys() == [(1, 0), (0, 0), (1, 0), (0, 0)]
    assert_close_to(pipe.executor_grads(), [2 * g for g in pipe.reference()], "twice")


def test_backward_through_a_freed_graph_fails_in_autograd():
    pipe = Pipe(p=2, batch=8, m=1)
    h = pipe.mbs[0][0]
    for stage in pipe.stages:
        h = stage(h)
    loss = pipe.loss(h, 0)
    loss.backward()
    with pytest.raises(RuntimeError):
        loss.backward()
    assert len(pipe.backward_keys()) == 2


def test_executor_sum_ignores_what_student_code_does_to_grad():
    pipe = Pipe(p=2, batch=8, m=2)
    for k in range(2):
        style_backward(pipe, k)
    for q in pipe.params:
        q.grad.mul_(7.0)
    assert_close_to(pipe.executor_grads(), pipe.reference(), "after editing .grad")


def test_executor_lets_go_of_graphs_the_student_dropped():
    pipe = Pipe(p=3, batch=10, m=4)
    outs = []
    for k in range(4):
        h = pipe.mbs[k][0]
        for stage in pipe.stages:
            h = stage(h)
        outs.append(h)
    assert len(pipe.executor._kept) == 12
    del h, outs
    assert pipe.executor._kept == {}


def test_backward_on_a_released_handle_is_a_stage_error():
    pipe = Pipe(p=1, batch=4, m=1, depth=2)
    handle, out = pipe.executor.forward(0, pipe.x, True)
    pipe.executor.release(handle)
    with pytest.raises(StageError, match="graph is gone"):
        pipe.executor.backward(handle, torch.ones_like(out), True, True)


def test_gradient_of_the_wrong_shape_is_a_stage_error():
    pipe = Pipe(p=1, batch=4, m=1, depth=2)
    handle, out = pipe.executor.forward(0, pipe.x, True)
    with pytest.raises(StageError, match="has shape"):
        pipe.executor.backward(handle, torch.ones(1, 3), True, True)


def test_no_such_stage_is_a_stage_error():
    pipe = Pipe(p=2, batch=4, m=1)
    with pytest.raises(StageError, match="there is no stage 5"):
        pipe.executor.forward(5, pipe.x, True)


def test_pipeline_stage_refuses_copies_indexing_and_non_tensors():
    pipe = Pipe(p=2, batch=4, m=1)
    with pytest.raises(TypeError, match="cannot be copied"):
        copy.deepcopy(pipe.stages[0])
    with pytest.raises(TypeError, match="not indexable"):
        pipe.stages[0][0]
    with pytest.raises(TypeError, match="activation tensor"):
        pipe.stages[0]([1.0, 2.0])


def test_pipeline_stage_holds_the_parameters_it_was_given_not_the_executor():
    pipe = Pipe(p=2, batch=4, m=1)
    stage = pipe.stages[1]
    assert [id(q) for q in stage.parameters()] == [id(q) for q in pipe.modules[1].parameters()]
    assert "executor" not in dict(stage.named_children()) and not any("executor" in k for k in stage.state_dict())


def test_nonreentrant_checkpoint_recomputation_is_not_a_second_forward():
    pipe = Pipe(p=2, batch=8, m=2)
    for k in range(2):
        h = pipe.stages[0](pipe.mbs[k][0])
        loss = checkpoint(lambda a, k=k: pipe.loss(torch.relu(pipe.stages[1](a)), k), h, use_reentrant=False)
        loss.backward()
    spec = TrialSpec("naive", 2, 2, 8, width=16, depth=6, seed=1)
    kept = order.canonical(Trial(spec, events=list(pipe.recorder.events)))
    assert sorted((e.stage, e.kind, e.mb) for e in kept) == sorted(
        (s, kind, k) for s in range(2) for kind in "FB" for k in range(2)
    )

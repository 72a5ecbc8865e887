"""The single-process executor of per-stage action lists."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..schedules import Action, DeadlockError, ScheduleError, parse_schedule, simulate
from .emulate import EmulatedTime
from .model import course_model, even_partition
from .spec import PipelineSpec, RuntimeInputError, _is_int, check_schedule, check_spec
from .work import StageWork, _device_of


def _ranks_of(schedule: Any, num_stages: int) -> int:
    """How many ranks the lists are for: as many as lists, which must divide the stages."""
    try:
        ranks = len(parse_schedule(schedule))
    except ScheduleError as exc:
        raise RuntimeInputError(str(exc).splitlines()[0]) from None
    if ranks < 1 or num_stages % ranks:
        raise RuntimeInputError(
            f"the schedule has {ranks} list(s) for {num_stages} stages: expected one list per "
            f"rank, p ranks with p dividing the stages (stage s runs on rank s % p)"
        )
    return ranks


class _Board:
    """The single-process executor's state: the stages' works and the tensors in flight."""

    def __init__(
        self,
        stages: list[nn.Module],
        inputs: torch.Tensor,
        targets: torch.Tensor,
        loss_fn: nn.Module,
        num_microbatches: int,
    ):
        n, batch = len(stages), inputs.shape[0]
        ys = list(torch.tensor_split(targets, num_microbatches))
        self.xs = torch.tensor_split(inputs, num_microbatches)
        self.works = [
            StageWork(stage, s, n, loss_fn, batch, ys if s == n - 1 else None) for s, stage in enumerate(stages)
        ]
        self.devices = [_device_of(stage) for stage in stages]
        self.activations: dict[tuple[int, int], torch.Tensor] = {}  # (receiving stage, mb) -> input
        self.gradients: dict[tuple[int, int], torch.Tensor] = {}  # (receiving stage, mb) -> output grad

    def ready(self, a: Action) -> bool:
        """Whether ``a``'s input (the activation of F(s-1), the gradient of B/I(s+1)) is there."""
        if a.kind == "F":
            return a.stage == 0 or (a.stage, a.mb) in self.activations
        if a.kind == "W":
            return True
        return a.stage == len(self.works) - 1 or (a.stage, a.mb) in self.gradients

    def run(self, rank: int, a: Action) -> None:
        """Run ``a`` (ready) and put what it produces where the next stage will look."""
        s, k, work = a.stage, a.mb, self.works[a.stage]
        if a.kind == "F":
            x = self.xs[k] if s == 0 else self.activations.pop((s, k))
            out = work.forward(k, x.to(self.devices[s]))
            if out is not None:
                self.activations[(s + 1, k)] = out.to(self.devices[s + 1])
            return
        if a.kind == "W":
            if not work.has_input_grad(k):
                raise RuntimeInputError(f"rank {rank}: {a} runs before its input-grad half {s}I{k}")
            work.weight_grad(k)
            return
        if not work.has_forward(k):
            raise RuntimeInputError(f"rank {rank}: {a} runs before its forward {s}F{k}")
        grad = self.gradients.pop((s, k), None)
        grad_in = work.backward(k, grad) if a.kind == "B" else work.input_grad(k, grad)
        if grad_in is not None:
            self.gradients[(s - 1, k)] = grad_in.to(self.devices[s - 1])


def run_actions_single(
    stages: list[nn.Module],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: nn.Module,
    num_microbatches: int,
    schedule: Any,
    *,
    validate_first: bool = True,
) -> float:
    """Run every rank's action list in this process; return the full-batch loss.

    ``stages``: one module per stage (wrapped by the tracing harness or not), each on its own
    device; ``inputs``/``targets``: the whole batch; ``loss_fn``: a mean-reduced loss;
    ``schedule``: ``{rank: [actions]}`` for ``p`` ranks, ``p`` dividing the number of stages, stage
    ``s`` on rank ``s % p`` (several stages per rank: interleaving); kinds ``F``, ``B``, ``I``,
    ``W`` (:class:`~autograder.dist.work.StageWork` says what each computes). Gradients
    accumulate into the stages' parameters exactly as the single-device full-batch step would put
    them there.

    Issue order: round-robin over the ranks, one action of each rank per round, a rank skipping
    its turn while its next action's input (the activation of ``F(s-1, k)`` or the gradient of
    ``B``/``I(s+1, k)``) has not been produced. So each rank runs its own list in order, and ranks
    interleave like devices running in parallel. Raises :class:`RuntimeInputError` for bad input.
    """
    n = len(stages)
    if n < 1:
        raise RuntimeInputError("no stages to run")
    if not _is_int(num_microbatches) or num_microbatches < 1:
        raise RuntimeInputError(f"num_microbatches must be an int >= 1, got {num_microbatches!r}")
    batch = inputs.shape[0]
    if num_microbatches > batch:
        raise RuntimeInputError(f"cannot split a batch of {batch} rows into {num_microbatches} micro-batches")
    p = _ranks_of(schedule, n)
    schedule = check_schedule(schedule, p, num_microbatches, stages_per_rank=n // p, run_validate=validate_first)
    board = _Board(stages, inputs, targets, loss_fn, num_microbatches)
    pos = {rank: 0 for rank in schedule}
    remaining = sum(len(actions) for actions in schedule.values())
    while remaining:
        progressed = False
        for rank, actions in schedule.items():
            if pos[rank] >= len(actions) or not board.ready(actions[pos[rank]]):
                continue
            board.run(rank, actions[pos[rank]])
            pos[rank] += 1
            remaining -= 1
            progressed = True
        if not progressed:
            try:
                simulate(schedule)
            except DeadlockError as exc:
                raise RuntimeInputError(str(exc)) from None
            raise RuntimeInputError("no rank can make progress")  # pragma: no cover (simulate agrees)
    loss = board.works[-1].loss()
    if loss is None:
        raise RuntimeInputError("the last stage ran no forward: nothing to return")
    return loss.item()


def traced_single_step(schedule: Any, spec: PipelineSpec) -> dict:
    """One traced single-process step of ``schedule`` (F and B actions) on the course model of ``spec``.

    Returns ``{"loss", "grads" {name: tensor}, "events" [Event], "notes"}``: the events come from
    the tracing executor (``autograder.tracing``), so ``autograder.schedules.replay(events)`` shows
    this per-stage schedule on in-order devices next to the delayed-backward loop (Option C). (A
    split backward is traced as two backwards; the multi-process runtime records I and W itself.)
    """
    from ..harness.stage import PipelineStage
    from ..tracing import LocalExecutor, Recorder

    check_spec(spec)
    M = course_model()
    model = M.make_model(spec.width, spec.depth, seed=spec.seed, kind=spec.kind)
    inputs, targets = M.make_batch(spec.batch_size, spec.width, seed=spec.seed, kind=spec.kind)
    stages = even_partition(model, spec.num_stages, [torch.device("cpu")] * spec.num_stages)
    if spec.seconds_per_batch:
        stages = [EmulatedTime(s, spec.seconds_per_batch, spec.batch_size) for s in stages]
    recorder = Recorder(inputs, spec.sizes)
    executor = LocalExecutor(stages, recorder)
    proxies = [PipelineStage(executor, s, list(stage.parameters())) for s, stage in enumerate(stages)]
    loss = run_actions_single(proxies, inputs, targets, M.loss_function(), spec.num_microbatches, schedule)
    executor.close()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    return {"loss": loss, "grads": grads, "events": recorder.plain_events(), "notes": list(recorder.notes)}


def reference_gradients(spec: PipelineSpec) -> tuple[float, dict[str, torch.Tensor]]:
    """Single-device full-batch loss and gradients for ``spec``'s model and batch (from zero grads)."""
    M = course_model()
    model = M.make_model(spec.width, spec.depth, seed=spec.seed, kind=spec.kind)
    inputs, targets = M.make_batch(spec.batch_size, spec.width, seed=spec.seed, kind=spec.kind)
    loss = M.reference_step(model, inputs, targets, M.loss_function())
    return loss, {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def max_relative_error(grads: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> float:
    """``max |g - g_ref| / max |g_ref|`` over all parameters (the measure of ``autograder.checks``)."""
    names = sorted(ref)
    missing = [n for n in names if n not in grads or grads[n] is None]
    if missing:
        return math.inf
    err = max((grads[n].double() - ref[n].double()).abs().max().item() for n in names)
    scale = max(ref[n].double().abs().max().item() for n in names)
    return err / scale if scale else err

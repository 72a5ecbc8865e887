"""Executors of per-stage action lists: in one process, and one process per stage over torch.distributed.

A schedule is data (``autograder.schedule``): ``{rank: [Action, ...]}``, rank ``s`` running stage
``s``. This module runs such lists on the course model:

* :func:`run_actions_single` runs every rank's list in **one process**, issuing the actions in a
  dependency-respecting interleaving (round-robin over ranks: each rank's next action as soon as
  its input has been produced). The stages may be wrapped by the tracing harness, so a per-stage
  1F1B can be traced and replayed next to the Part 5 loop (:func:`traced_single_step`).
* :class:`PipelinePool` / :func:`launch` run it with **one process per stage** over
  torch.distributed (gloo on CPU, NCCL when every rank has its own GPU). Each rank builds the
  course model from the seed, keeps only its stage of the judge's even partition
  (``autograder.probes.even_partition``) and executes its own list: ``F`` receives the activation
  from the previous rank, runs the stage and sends its output on; ``B`` receives the gradient
  from the next rank, runs the stage's backward and sends the input gradient back. Messages are
  point-to-point (``isend``/``irecv``, tag = micro-batch and direction); every receive is posted
  when the step starts and waited for with a timeout, so a deadlocking list fails with a message
  naming the rank and the action it waited at, never hangs.
  The pool starts its processes once (``torch.multiprocessing``, fork server or spawn; the parent
  hosts the rendezvous store on a free loopback port) and keeps
  the process group up across runs and steps; a rank that is not needed by a run (p smaller
  than the pool) only joins the step barriers.
  With NCCL (GPUs, opt-in: ``backend="nccl"``, or the default when there is a GPU per rank) each
  receive is posted just before its action and ``TORCH_NCCL_BLOCKING_WAIT`` makes waits time out;
  that path has not been run on GPUs yet. Tests and the benchmark pin gloo.
* The same per-rank code runs under ``torchrun`` (``python -m autograder.runtime`` reads RANK,
  WORLD_SIZE, MASTER_ADDR and MASTER_PORT from the environment; events, loss and gradients are
  gathered to rank 0, which prints the summary).

Every rank records its events ``(stage, kind, mb, start, end)`` with ``time.perf_counter()``; a
barrier starts each step. On one machine all ranks read the same monotonic clock and times count
from the first rank to leave the barrier; across machines each rank counts from its own barrier
exit (the clocks then agree to within one barrier's latency, about a millisecond). Results come
back as a :class:`RunResult`.

Emulated device time (``PipelineSpec.seconds_per_batch``, see ``autograder.emulate``) makes each
stage take ``f x rows / batch`` seconds forward and twice that backward, so that p processes on a
2-core CPU overlap like p accelerators.

Bad input never starts a process: the lists are checked with ``autograder.schedule.validate``
first, and p larger than the model's layers, m < 1, more micro-batches than rows, a list with
I/W actions or with several stages per rank raise :class:`RuntimeInputError` with a one-line
message (the validator's marked grid is in its ``details``).
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import queue
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import torch
from torch import nn

from .emulate import EmulatedTime, ideal_step_time
from .probes import even_partition, expected_sizes
from .schedule import (Action, DeadlockError, Event, Schedule, ScheduleError, SimResult, parse_schedule,
                       simulate, timeline_from_events, validate)

DEFAULT_RECV_TIMEOUT = 30.0  # seconds a rank waits for one message before it reports a deadlock
DEFAULT_INIT_TIMEOUT = 120.0  # seconds to start the processes and join the process group


class RuntimeInputError(ValueError):
    """The run was refused before starting anything; the message is one line.

    ``details``: more to read, when there is any (the validator's step x rank grid).
    """

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details


class PipelineError(RuntimeError):
    """A multi-process run failed: a rank timed out waiting for a message, crashed or died.

    ``failures``: ``{rank: one-line message}`` of every rank that reported a problem.
    """

    def __init__(self, message: str, failures: Optional[dict[int, str]] = None):
        super().__init__(message)
        self.failures = dict(failures or {})


# --------------------------------------------------------------------------------------------
# What to run
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PipelineSpec:
    """The model, the batch and the pipeline shape of a run; every rank rebuilds the same from it.

    ``seconds_per_batch``: emulated device time ``f`` (0 = only the real compute).
    """

    num_stages: int
    num_microbatches: int
    batch_size: int
    width: int = 32
    depth: int = 8
    seed: int = 0
    kind: str = "mlp"
    seconds_per_batch: float = 0.0

    @property
    def sizes(self) -> list[int]:
        """Rows of each micro-batch (``torch.tensor_split``: larger ones first)."""
        return expected_sizes(self.batch_size, self.num_microbatches)

    @property
    def ideal_step_time(self) -> float:
        """``(m + p - 1)(F + B)`` of the emulated costs, in seconds (0 without emulated time)."""
        return ideal_step_time(self.num_stages, self.num_microbatches, self.seconds_per_batch)

    def __str__(self) -> str:
        f = f" f={self.seconds_per_batch * 1e3:g}ms" if self.seconds_per_batch else ""
        return (f"p={self.num_stages} m={self.num_microbatches} batch={self.batch_size} "
                f"{self.kind} width={self.width} depth={self.depth} seed={self.seed}{f}")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_spec(spec: PipelineSpec) -> None:
    """Raise :class:`RuntimeInputError` (one line) if ``spec`` cannot be run."""
    p, m, batch = spec.num_stages, spec.num_microbatches, spec.batch_size
    for name, value in (("num_stages (p)", p), ("num_microbatches (m)", m), ("batch_size", batch),
                        ("width", spec.width), ("depth", spec.depth)):
        if not _is_int(value) or value < 1:
            raise RuntimeInputError(f"{name} must be an int >= 1, got {value!r}")
    if p > spec.depth:
        raise RuntimeInputError(f"cannot run {p} stages: the model has only {spec.depth} layers "
                                f"(each stage needs at least one)")
    if m > batch:
        raise RuntimeInputError(f"cannot split a batch of {batch} rows into {m} non-empty micro-batches")
    f = spec.seconds_per_batch
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f) or f < 0:
        raise RuntimeInputError(f"seconds_per_batch must be a finite number >= 0, got {f!r}")
    if spec.kind not in ("mlp", "transformer"):
        raise RuntimeInputError(f"kind must be 'mlp' or 'transformer', got {spec.kind!r}")


def check_schedule(schedule: Any, num_stages: int, num_microbatches: int, *, run_validate: bool = True) -> Schedule:
    """Parse ``schedule`` and make sure these executors can run it; returns ``{rank: [Action]}``.

    With ``run_validate`` (the default) the lists go through ``autograder.schedule.validate``:
    complete, well placed and deadlock-free. Without it, only the checks the executors need
    (one stage per rank, kinds F and B, indices in range) are made, so a deadlocking list can
    be run on purpose to see the runtime's timeout.
    Raises :class:`RuntimeInputError` whose message is one line; ``details`` holds the grid.
    """
    try:
        parsed = parse_schedule(schedule)
    except ScheduleError as exc:
        raise RuntimeInputError(str(exc).splitlines()[0]) from None
    if sorted(parsed) != list(range(num_stages)):
        raise RuntimeInputError(
            f"the schedule has ranks {sorted(parsed)}, expected one list per stage: ranks 0..{num_stages - 1}")
    for rank, actions in parsed.items():
        for step, a in enumerate(actions):
            if a.kind not in ("F", "B"):
                raise RuntimeInputError(
                    f"rank {rank}, step {step}: {a} is a split backward ({a.kind}); these executors run F and B only")
            if a.stage != rank:
                raise RuntimeInputError(
                    f"rank {rank}, step {step}: {a} belongs to stage {a.stage}; these executors run stage s on "
                    f"rank s (one stage per rank, no interleaving)")
            if a.mb >= num_microbatches:
                raise RuntimeInputError(
                    f"rank {rank}, step {step}: {a} names micro-batch {a.mb}, there are {num_microbatches} "
                    f"(0..{num_microbatches - 1})")
    if run_validate:
        try:
            validate(parsed, num_stages, num_microbatches)
        except ScheduleError as exc:
            first, _, grid = str(exc).partition("\n")
            raise RuntimeInputError(f"invalid schedule: {first}", grid) from None
    return parsed


def _plain_schedule(schedule: Schedule) -> dict[int, list[str]]:
    return {rank: [str(a) for a in actions] for rank, actions in schedule.items()}


# --------------------------------------------------------------------------------------------
# One stage's work, shared by both executors
# --------------------------------------------------------------------------------------------

def _device_of(module: nn.Module) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


class StageWork:
    """What one stage keeps between its forward and its backward of each micro-batch.

    ``forward(mb, x)`` runs the stage on its input (for stage s > 0 the received activation, made a
    leaf that requires grad), keeps what the backward needs and returns the output to send on
    (``None`` on the last stage, which computes the micro-batch's weighted loss instead).
    ``backward(mb, grad)`` runs the stage's backward from the gradient of its output (``None`` on
    the last stage, which back-propagates its loss) and returns the gradient of its input to send
    back (``None`` on stage 0). The loss of micro-batch k is ``loss_fn(out, y_k) x rows_k / batch``
    so the accumulated gradients equal the full-batch mean loss's, also for uneven micro-batches.
    """

    def __init__(self, module: nn.Module, stage: int, num_stages: int, loss_fn: nn.Module,
                 batch_size: int, targets: Optional[list[torch.Tensor]] = None):
        self.module = module
        self.stage = stage
        self.last = stage == num_stages - 1
        self.loss_fn = loss_fn
        self.batch_size = batch_size
        self.targets = targets
        self.kept: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.losses: list[torch.Tensor] = []

    def forward(self, mb: int, x: torch.Tensor) -> Optional[torch.Tensor]:
        if self.stage > 0:
            x = x.detach().requires_grad_(True)
        out = self.module(x)
        if self.last:
            loss = self.loss_fn(out, self.targets[mb].to(out.device)) * (out.shape[0] / self.batch_size)
            self.kept[mb] = (x, loss)
            self.losses.append(loss.detach())
            return None
        self.kept[mb] = (x, out)
        return out.detach()

    def backward(self, mb: int, grad: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        x, out = self.kept.pop(mb)
        if self.last:
            out.backward()
        else:
            torch.autograd.backward(out, grad)
        return x.grad if self.stage > 0 else None

    def loss(self) -> Optional[torch.Tensor]:
        """Sum of the weighted micro-batch losses computed so far (last stage only)."""
        return torch.stack(self.losses).sum() if self.losses else None


# --------------------------------------------------------------------------------------------
# The single-process executor
# --------------------------------------------------------------------------------------------

def run_actions_single(stages: list[nn.Module], inputs: torch.Tensor, targets: torch.Tensor,
                       loss_fn: nn.Module, num_microbatches: int, schedule: Any, *,
                       validate_first: bool = True) -> float:
    """Run every rank's action list in this process; return the full-batch loss.

    ``stages``: one module per stage (wrapped by the tracing harness or not), each on its own
    device; ``inputs``/``targets``: the whole batch; ``loss_fn``: a mean-reduced loss;
    ``schedule``: ``{rank: [actions]}`` with stage s on rank s. Gradients accumulate into the
    stages' parameters exactly as the single-device full-batch step would put them there.

    Issue order: round-robin over the ranks, one action of each rank per round, a rank skipping
    its turn while its next action's input (the activation of ``F(s-1, k)`` or the gradient of
    ``B(s+1, k)``) has not been produced. So each rank runs its own list in order, and ranks
    interleave like devices running in parallel. Raises :class:`RuntimeInputError` for bad input.
    """
    p = len(stages)
    if p < 1:
        raise RuntimeInputError("no stages to run")
    if not _is_int(num_microbatches) or num_microbatches < 1:
        raise RuntimeInputError(f"num_microbatches must be an int >= 1, got {num_microbatches!r}")
    batch = inputs.shape[0]
    if num_microbatches > batch:
        raise RuntimeInputError(f"cannot split a batch of {batch} rows into {num_microbatches} micro-batches")
    schedule = check_schedule(schedule, p, num_microbatches, run_validate=validate_first)
    xs = torch.tensor_split(inputs, num_microbatches)
    ys = list(torch.tensor_split(targets, num_microbatches))
    works = [StageWork(stage, s, p, loss_fn, batch, ys if s == p - 1 else None) for s, stage in enumerate(stages)]
    devices = [_device_of(stage) for stage in stages]
    activations: dict[tuple[int, int], torch.Tensor] = {}  # (receiving stage, mb) -> input
    gradients: dict[tuple[int, int], torch.Tensor] = {}  # (receiving stage, mb) -> output grad
    pos = {rank: 0 for rank in schedule}
    remaining = sum(len(actions) for actions in schedule.values())
    while remaining:
        progressed = False
        for rank, actions in schedule.items():
            if pos[rank] >= len(actions):
                continue
            a = actions[pos[rank]]
            s, k = a.stage, a.mb
            if a.kind == "F":
                if s > 0 and (s, k) not in activations:
                    continue
                x = xs[k] if s == 0 else activations.pop((s, k))
                out = works[s].forward(k, x.to(devices[s]))
                if out is not None:
                    activations[(s + 1, k)] = out.to(devices[s + 1])
            else:
                if s < p - 1 and (s, k) not in gradients:
                    continue
                if k not in works[s].kept:
                    raise RuntimeInputError(f"rank {rank}: {a} runs before its forward {s}F{k}")
                grad_in = works[s].backward(k, gradients.pop((s, k), None))
                if grad_in is not None:
                    gradients[(s - 1, k)] = grad_in.to(devices[s - 1])
            pos[rank] += 1
            remaining -= 1
            progressed = True
        if not progressed:
            try:
                simulate(schedule)
            except DeadlockError as exc:
                raise RuntimeInputError(str(exc)) from None
            raise RuntimeInputError("no rank can make progress")  # pragma: no cover (simulate agrees)
    return works[-1].loss().item()


def traced_single_step(schedule: Any, spec: PipelineSpec) -> dict:
    """One traced single-process step of ``schedule`` on the course model described by ``spec``.

    Returns ``{"loss", "grads" {name: tensor}, "events" [Event], "notes"}``: the events come from
    the tracing harness (``autograder.tracing``), so ``autograder.schedule.replay(events)`` shows
    this per-stage schedule on in-order devices next to the Part 5 loop.
    """
    from .tracing import Tracer
    from .trial import provided_model

    check_spec(spec)
    M = provided_model()
    model = M.make_model(spec.width, spec.depth, seed=spec.seed, kind=spec.kind)
    inputs, targets = M.make_batch(spec.batch_size, spec.width, seed=spec.seed, kind=spec.kind)
    stages = even_partition(model, spec.num_stages, [torch.device("cpu")] * spec.num_stages)
    if spec.seconds_per_batch:
        stages = [EmulatedTime(s, spec.seconds_per_batch, spec.batch_size) for s in stages]
    tracer = Tracer(inputs, spec.sizes)
    loss = run_actions_single(tracer.wrap(stages), inputs, targets, M.loss_function(),
                              spec.num_microbatches, schedule)
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    return {"loss": loss, "grads": grads, "events": list(tracer.events), "notes": list(tracer.notes)}


def reference_gradients(spec: PipelineSpec) -> tuple[float, dict[str, torch.Tensor]]:
    """Single-device full-batch loss and gradients for ``spec``'s model and batch (from zero grads)."""
    from .trial import provided_model

    M = provided_model()
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


# --------------------------------------------------------------------------------------------
# One rank of the multi-process executor
# --------------------------------------------------------------------------------------------

class _RankFailure(Exception):
    """Raised on a rank when a message does not come in time or its peer is gone (one line)."""


def _tag(kind: str, mb: int) -> int:
    return 2 * mb + (0 if kind == "F" else 1)


def _wait(work, timeout: float, rank: int, step: int, action: Action, what: str, peer: int) -> None:
    """Wait for one message; a timeout or a lost peer raises :class:`_RankFailure` naming the action."""
    try:
        work.wait(datetime.timedelta(seconds=timeout))
    except RuntimeError as exc:
        text = str(exc)
        if "Timed out" in text or "timed out" in text or "Timeout" in text:
            raise _RankFailure(
                f"rank {rank} waited {timeout:g} s at step {step} ({action}) for {what} from rank {peer}, "
                f"which never came: is rank {peer} stuck too? (a deadlock: compare the order of the lists, "
                f"or run autograder.schedule.validate on them)") from None
        if "closed" in text or "Connection" in text or "pair" in text:
            raise _RankFailure(f"rank {rank} at step {step} ({action}) was waiting for {what} from rank {peer} "
                               f"when rank {peer} gave up or stopped (connection closed)") from None
        last = text.strip().splitlines()[-1][:200] if text.strip() else type(exc).__name__
        raise _RankFailure(f"rank {rank} at step {step} ({action}), waiting for {what} from rank {peer}: {last}") from None


def _execute_list(rank: int, num_stages: int, actions: list[Action], work: StageWork,
                  inputs: Optional[list[torch.Tensor]], sizes: list[int], in_shape: tuple, out_shape: tuple,
                  device: torch.device, recv_timeout: float) -> tuple[list[list], list[str]]:
    """Run one rank's list for one step; returns its events (``time.perf_counter()`` seconds) and
    the executed order."""
    import torch.distributed as dist

    s = rank
    clock = time.perf_counter

    def post(a: Action) -> tuple[Any, torch.Tensor]:
        if a.kind == "F":
            buf = torch.empty((sizes[a.mb], *in_shape), device=device)
            return dist.irecv(buf, s - 1, tag=_tag("F", a.mb)), buf
        buf = torch.empty((sizes[a.mb], *out_shape), device=device)
        return dist.irecv(buf, s + 1, tag=_tag("B", a.mb)), buf

    # gloo: post every receive of the step up front. Tags keep them apart, and a message that
    # arrives early waits in its buffer instead of delaying its sender. NCCL ignores tags and
    # runs a pair's operations in the order they were posted, so there each receive is posted
    # just before it is needed.
    up_front = dist.get_backend() != "nccl"
    recvs: dict[Action, tuple[Any, torch.Tensor]] = {}
    for a in actions if up_front else []:
        if (a.kind == "F" and s > 0) or (a.kind == "B" and s < num_stages - 1):
            recvs[a] = post(a)
    sends: list[tuple[Any, torch.Tensor, Action, int]] = []
    events: list[list] = []
    executed: list[str] = []
    for step, a in enumerate(actions):
        if a.kind == "F":
            if s == 0:
                x = inputs[a.mb].to(device)
            else:
                req, x = recvs.pop(a) if up_front else post(a)
                _wait(req, recv_timeout, rank, step, a, f"the activation of micro-batch {a.mb} ({s - 1}F{a.mb})", s - 1)
            start = clock()
            out = work.forward(a.mb, x)
            end = clock()
            if out is not None:
                out = out.contiguous()
                sends.append((dist.isend(out, s + 1, tag=_tag("F", a.mb)), out, a, s + 1))
        else:
            grad = None
            if s < num_stages - 1:
                req, grad = recvs.pop(a) if up_front else post(a)
                _wait(req, recv_timeout, rank, step, a, f"the gradient of micro-batch {a.mb} ({s + 1}B{a.mb})", s + 1)
            start = clock()
            grad_in = work.backward(a.mb, grad)
            end = clock()
            if grad_in is not None:
                grad_in = grad_in.contiguous()
                sends.append((dist.isend(grad_in, s - 1, tag=_tag("B", a.mb)), grad_in, a, s - 1))
        events.append([a.stage, a.kind, a.mb, start, end])
        executed.append(str(a))
        if len(sends) > 8:  # let finished sends go
            sends = [x for x in sends if not x[0].is_completed()]
    for req, _, a, peer in sends:
        what = "its activation" if a.kind == "F" else "its input gradient"
        _wait(req, recv_timeout, rank, len(actions), a, f"rank {peer} to take {what} of micro-batch {a.mb}", peer)
    return events, executed


def _host() -> str:
    """Which clock a rank's ``time.perf_counter()`` reads: the machine (and its boot)."""
    import socket
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


def _pack(t: Optional[torch.Tensor]):
    return None if t is None else t.detach().to("cpu", torch.float32).tolist()


_WARM = []


def _warm_up_autograd() -> None:
    """The first ``torch.autograd.backward(out, grad)`` of a process imports sympy (~0.3 s): do it
    before the first timed step, once per process."""
    if not _WARM:
        y = torch.ones(2, requires_grad=True) * 2
        torch.autograd.backward(y, torch.ones(2))
        _WARM.append(True)


def run_rank(rank: int, world_size: int, job: dict, device: Optional[torch.device] = None) -> dict:
    """Execute ``job`` (from :meth:`PipelinePool.run`) as ``rank`` of an initialised process group.

    Returns plain data: ``{"rank", "error", "events" [per step], "executed", "step_times",
    "loss", "grads" {name: nested list}}``. A rank beyond the pipeline's stages only joins the
    step barriers. Raises nothing: a failure is reported in ``"error"`` (one line).
    """
    import torch.distributed as dist

    from .trial import provided_model

    spec = PipelineSpec(**job["spec"])
    p, m, steps = spec.num_stages, spec.num_microbatches, job["steps"]
    result: dict = {"rank": rank, "job": job["id"], "error": None, "events": [], "executed": [],
                    "step_times": [], "loss": None, "grads": {}, "host": _host()}
    try:
        if rank >= p:
            for _ in range(steps):
                dist.barrier()
            return result
        device = device or torch.device("cpu")
        _warm_up_autograd()
        M = provided_model()
        model = M.make_model(spec.width, spec.depth, seed=spec.seed, kind=spec.kind)
        inputs, targets = M.make_batch(spec.batch_size, spec.width, seed=spec.seed, kind=spec.kind)
        stages = even_partition(model, p, [torch.device("cpu")] * p)
        shapes = []
        with torch.no_grad():
            x = inputs[:1]
            for stage in stages:
                shapes.append(tuple(x.shape[1:]))
                x = stage(x)
            shapes.append(tuple(x.shape[1:]))
        stage = stages[rank].to(device)
        names = {id(q): n for n, q in model.named_parameters()}
        params = [(names[id(q)], q) for q in stage.parameters()]
        module = EmulatedTime(stage, spec.seconds_per_batch, spec.batch_size) if spec.seconds_per_batch else stage
        mb_inputs = list(torch.tensor_split(inputs, m)) if rank == 0 else None
        mb_targets = [y.to(device) for y in torch.tensor_split(targets, m)] if rank == p - 1 else None
        actions = [Action(*_parse(a)) for a in job["schedule"][rank]]
        del model, stages
        loss = None
        for step in range(steps):
            for _, q in params:
                q.grad = None
            work = StageWork(module, rank, p, M.loss_function(), spec.batch_size, mb_targets)
            dist.barrier()
            t0 = time.perf_counter()
            events, executed = _execute_list(rank, p, actions, work, mb_inputs, spec.sizes, shapes[rank],
                                             shapes[rank + 1], device, job["recv_timeout"])
            result["step_times"].append([t0, time.perf_counter()])
            result["events"].append(events)
            result["executed"] = executed
            total = work.loss()
            loss = None if total is None else total.item()
        result["loss"] = loss
        result["grads"] = {n: _pack(q.grad) for n, q in params}
    except _RankFailure as exc:
        result["error"] = str(exc)
    except Exception as exc:  # a bug or a lost peer: report it, one line
        result["error"] = f"rank {rank}: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
    return result


def _parse(text: str) -> tuple[int, str, int]:
    from .schedule import parse_action
    a = parse_action(text)
    return a.stage, a.kind, a.mb


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------

@dataclass
class RunResult:
    """What a multi-process run did.

    ``steps``: the events of each step (seconds since that step's start barrier);
    ``step_times``: per step, the slowest rank's time from the barrier to the end of its list
    (its sends received); ``executed``: ``{rank: [Action]}`` in the order each rank ran them (last
    step); ``loss``: the full-batch loss of the last step; ``grads``: every parameter's gradient
    after the last step (each step starts from zero gradients), keyed like the model's
    ``named_parameters()``.
    """

    spec: PipelineSpec
    schedule: Schedule
    loss: float
    grads: dict[str, torch.Tensor]
    steps: list[list[Event]]
    step_times: list[float]
    executed: dict[int, list[Action]] = field(default_factory=dict)

    @property
    def events(self) -> list[Event]:
        """Events of the last step."""
        return self.steps[-1]

    @property
    def median_step_time(self) -> float:
        return statistics.median(self.step_times)

    def timeline(self, step: int = -1) -> SimResult:
        """The measured timeline of one step (``autograder.timeline`` draws it)."""
        return timeline_from_events(self.steps[step])


def _merge(spec: PipelineSpec, schedule: Schedule, per_rank: list[dict]) -> RunResult:
    """Combine the ranks' answers. On one machine every rank reads the same monotonic clock, so a
    step's times count from the earliest rank leaving the start barrier; across machines each
    rank's times count from its own barrier exit (skew: one barrier's latency)."""
    p = spec.num_stages
    ranks = sorted((r for r in per_rank if r["rank"] < p), key=lambda r: r["rank"])
    one_clock = len({r["host"] for r in ranks}) == 1
    steps, times = [], []
    for i in range(len(ranks[0]["step_times"])):
        base = min(r["step_times"][i][0] for r in ranks)
        evs, ends = [], []
        for r in ranks:
            t0, t_end = r["step_times"][i]
            origin = base if one_clock else t0
            evs += [Event(s, k, mb, a - origin, b - origin) for s, k, mb, a, b in r["events"][i]]
            ends.append(t_end - origin)
        evs.sort(key=lambda e: (e.start, e.end, e.stage))
        steps.append(evs)
        times.append(max(ends))
    grads = {n: torch.tensor(g, dtype=torch.float32) for r in ranks for n, g in r["grads"].items() if g is not None}
    executed = {r["rank"]: [Action(*_parse(a)) for a in r["executed"]] for r in ranks}
    loss = ranks[-1]["loss"]
    return RunResult(spec, schedule, float(loss) if loss is not None else math.nan, grads, steps, times, executed)


# --------------------------------------------------------------------------------------------
# The pool of processes (the launcher)
# --------------------------------------------------------------------------------------------

def default_backend(world_size: int) -> str:
    """``"nccl"`` when CUDA has a GPU for every rank, else ``"gloo"`` (CPU)."""
    if torch.cuda.is_available() and torch.cuda.device_count() >= world_size:
        return "nccl"
    return "gloo"


def _use_loopback(backend: str) -> None:
    """Every rank of a pool is on this machine: talk over the loopback interface (a machine whose
    host name does not resolve, or resolves to an unreachable address, still works). With NCCL,
    make ``wait(timeout)`` block the CPU so that a missing message times out."""
    import socket
    try:
        names = [name for _, name in socket.if_nameindex()]
    except (AttributeError, OSError):
        names = []
    loopback = next((n for n in ("lo", "lo0") if n in names), None)
    if loopback:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", loopback)
    if backend == "nccl":
        os.environ.setdefault("TORCH_NCCL_BLOCKING_WAIT", "1")


def default_start_method() -> str:
    """``"forkserver"`` where available, else ``"spawn"``.

    Both start clean processes (nothing inherited from the caller: no threads, no CUDA state, safe
    under pytest); the fork server imports torch once and forks every rank from it, so 4 ranks
    start in about 1 s on 2 cores instead of about 4 s for 4 spawned interpreters each importing
    torch. ``"fork"`` is faster still but copies the caller's threads and state.
    """
    import multiprocessing
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _rank_device(backend: str, local_rank: int) -> torch.device:
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _pool_worker(rank: int, world_size: int, port: int, backend: str, init_timeout: float,
                 jobs, results) -> None:
    """Body of one pool process: join the group, then run jobs until told to stop."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    _use_loopback(backend)
    try:
        store = dist.TCPStore("127.0.0.1", port, world_size, is_master=False,
                              timeout=datetime.timedelta(seconds=init_timeout))
        dist.init_process_group(backend, store=store, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=init_timeout))
        device = _rank_device(backend, rank)
        _warm_up_autograd()
        dist.barrier()
    except Exception as exc:
        results.put({"rank": rank, "job": None, "error": f"rank {rank} could not join the process group: "
                                                         f"{str(exc).strip().splitlines()[0][:300]}"})
        return
    results.put({"rank": rank, "job": None, "error": None})
    while True:
        job = jobs.get()
        if job is None:
            break
        out = run_rank(rank, world_size, job, device)
        results.put(out)
        if out["error"]:
            jobs.get()  # the group may be broken: wait to be stopped, keep connections open meanwhile
            break
    try:
        dist.destroy_process_group()
    finally:
        os._exit(0)  # skip the interpreter's slow teardown (seconds with torch loaded)


class PipelinePool:
    """``world_size`` processes, one per rank, in one process group kept up across runs.

    ``run(schedule, spec, steps)`` executes one schedule with ``spec.num_stages <= world_size``
    (ranks beyond it idle) and returns a :class:`RunResult`. Processes start on the first run
    (``start_method``: :func:`default_start_method`, about 1 s for 4 ranks on 2 cores; "spawn" about
    4 s). After a failed run (a timeout, a crash) the processes are stopped and the
    next run starts fresh ones. Use as a context manager, or call :meth:`close`.

    ``recv_timeout``: seconds a rank waits for one message before it reports the action it is
    stuck at; ``backend``: "gloo" or "nccl" (default: :func:`default_backend`).
    """

    def __init__(self, world_size: int, *, start_method: Optional[str] = None, backend: Optional[str] = None,
                 recv_timeout: float = DEFAULT_RECV_TIMEOUT, init_timeout: float = DEFAULT_INIT_TIMEOUT):
        if not _is_int(world_size) or world_size < 1:
            raise RuntimeInputError(f"world_size must be an int >= 1, got {world_size!r}")
        self.world_size = world_size
        self.start_method = start_method or default_start_method()
        self.backend = backend or default_backend(world_size)
        self.recv_timeout = float(recv_timeout)
        self.init_timeout = float(init_timeout)
        self.startups = 0  # how many times processes were started (tests check reuse)
        self._procs: list = []
        self._jobs: list = []
        self._results = None
        self._store = None
        self._next_id = 0

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return bool(self._procs)

    def start(self) -> None:
        """Start the processes and wait until every rank has joined the group."""
        if self.started:
            return
        import torch.distributed as dist
        import torch.multiprocessing as mp

        ctx = mp.get_context(self.start_method)
        if self.start_method == "forkserver":
            ctx.set_forkserver_preload(["autograder.runtime"])  # torch imported once, by the server
        # The parent hosts the rendezvous store on a free port (port 0: no race for the port).
        self._store = dist.TCPStore("127.0.0.1", 0, self.world_size + 1, is_master=True,
                                    wait_for_workers=False, timeout=datetime.timedelta(seconds=self.init_timeout))
        self._results = ctx.Queue()
        self._jobs = [ctx.Queue() for _ in range(self.world_size)]
        for rank in range(self.world_size):
            proc = ctx.Process(target=_pool_worker, daemon=True, name=f"pipeline-rank-{rank}",
                               args=(rank, self.world_size, self._store.port, self.backend, self.init_timeout,
                                     self._jobs[rank], self._results))
            proc.start()
            self._procs.append(proc)
        self.startups += 1
        ready = self._collect(None, time.monotonic() + self.init_timeout, "starting the processes")
        errors = {r["rank"]: r["error"] for r in ready if r["error"]}
        if errors:
            self._stop()
            raise PipelineError("; ".join(errors[r] for r in sorted(errors)), errors)

    def close(self) -> None:
        """Stop the processes (politely, then by force)."""
        for q in self._jobs:
            try:
                q.put(None)
            except Exception:
                pass
        deadline = time.monotonic() + 5
        for proc in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        self._stop()

    def _stop(self) -> None:
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self._procs:
            proc.join(2)
            if proc.is_alive():
                proc.kill()
                proc.join(2)
        for q in self._jobs + ([self._results] if self._results is not None else []):
            try:
                q.close()
                q.cancel_join_thread()
            except Exception:
                pass
        self._procs, self._jobs, self._results, self._store = [], [], None, None

    def __enter__(self) -> "PipelinePool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover (best effort)
        try:
            self._stop()
        except Exception:
            pass

    # -- running -----------------------------------------------------------------------------
    def _collect(self, job_id: Optional[int], deadline: float, doing: str) -> list[dict]:
        """One message per rank for ``job_id``; stops early (after a grace period) on an error."""
        got: dict[int, dict] = {}
        grace_until = None
        while len(got) < self.world_size:
            now = time.monotonic()
            if grace_until is not None and now > grace_until:
                break
            if now > deadline:
                missing = [r for r in range(self.world_size) if r not in got]
                got.update({r: {"rank": r, "job": job_id, "error": f"rank {r} gave no answer while {doing} "
                                                                    f"(limit reached)"} for r in missing})
                break
            try:
                msg = self._results.get(timeout=0.1)
            except queue.Empty:
                dead = [r for r, proc in enumerate(self._procs) if not proc.is_alive() and r not in got]
                for r in dead:
                    got[r] = {"rank": r, "job": job_id, "error": f"rank {r}'s process died (exit code "
                                                                 f"{self._procs[r].exitcode}) while {doing}"}
                    grace_until = grace_until or time.monotonic() + 1.0
                continue
            if msg.get("job") != job_id:
                continue  # a late answer to an earlier, failed job
            got[msg["rank"]] = msg
            if msg.get("error") and grace_until is None:
                # Others blocked on this rank fail within their own timeout: wait a little for them.
                grace_until = time.monotonic() + min(self.recv_timeout, 2.0) + 0.5
        return [got[r] for r in sorted(got)]

    def run(self, schedule: Any, spec: PipelineSpec, steps: int = 1, *, validate_first: bool = True,
            timeout: Optional[float] = None) -> RunResult:
        """Execute ``schedule`` for ``steps`` steps; each step starts from zero gradients.

        ``validate_first=False`` skips ``autograder.schedule.validate`` (to see the runtime's own
        deadlock timeout). ``timeout``: overall limit in seconds (default: generous, derived from
        ``recv_timeout``). Raises :class:`RuntimeInputError` before starting anything for bad input,
        :class:`PipelineError` when a rank fails (the message names each failing rank and the action
        it waited at).
        """
        check_spec(spec)
        if not _is_int(steps) or steps < 1:
            raise RuntimeInputError(f"steps must be an int >= 1, got {steps!r}")
        if spec.num_stages > self.world_size:
            raise RuntimeInputError(f"{spec.num_stages} stages need {spec.num_stages} processes, "
                                    f"this pool has {self.world_size}")
        parsed = check_schedule(schedule, spec.num_stages, spec.num_microbatches, run_validate=validate_first)
        self.start()
        self._next_id += 1
        job = {"id": self._next_id, "schedule": _plain_schedule(parsed), "spec": asdict(spec),
               "steps": steps, "recv_timeout": self.recv_timeout}
        for q in self._jobs:
            q.put(job)
        limit = timeout if timeout is not None else 60 + steps * (self.recv_timeout + 10)
        per_rank = self._collect(job["id"], time.monotonic() + limit, f"running {spec}")
        errors = {r["rank"]: r["error"] for r in per_rank if r.get("error")}
        if errors or len(per_rank) < self.world_size:
            self._stop()
            # The root cause first: a timed-out wait rather than the lost connections it caused.
            order = sorted(errors, key=lambda r: ("waited" not in errors[r], r))
            raise PipelineError("; ".join(errors[r] for r in order), errors)
        return _merge(spec, parsed, per_rank)


def launch(schedule: Any, spec: PipelineSpec, steps: int = 1, *, validate_first: bool = True,
           **pool_options) -> RunResult:
    """Start ``spec.num_stages`` processes, run ``schedule`` for ``steps`` steps, stop them.

    ``pool_options`` go to :class:`PipelinePool`. Bad input raises :class:`RuntimeInputError`
    before any process starts.
    """
    check_spec(spec)
    check_schedule(schedule, spec.num_stages, spec.num_microbatches, run_validate=validate_first)
    with PipelinePool(spec.num_stages, **pool_options) as pool:
        return pool.run(schedule, spec, steps, validate_first=validate_first)


# --------------------------------------------------------------------------------------------
# Command line: python -m autograder.runtime (also under torchrun)
# --------------------------------------------------------------------------------------------

SCHEDULE_NAMES = ("naive", "gpipe", "1f1b")
DEFAULT_IMPLS = ("solutions", "assignment")  # without --impl: the first of these packages that exists


def schedule_named(name: str, p: int, m: int, impl: Optional[str] = None) -> Schedule:
    """The schedule ``name``: ``naive`` (fixed), or ``gpipe`` / ``1f1b`` as a package's per-stage lists.

    ``gpipe`` and ``1f1b`` are Part 6 of the assignment: ``{s: gpipe_actions(s, p, m)}`` and
    ``{s: one_f_one_b_actions(s, p, m)}`` from ``<impl>/per_stage.py``. ``impl`` is ``assignment``,
    ``solutions`` or a submission directory; by default the first of :data:`DEFAULT_IMPLS` that
    this repository has (a student's repository has only ``assignment``). Raises
    NotImplementedError while the task is not done.
    """
    from .impl import REPO_ROOT, ImplError, resolve
    from .schedule import naive_schedule

    if name not in SCHEDULE_NAMES:
        raise RuntimeInputError(f"unknown schedule {name!r}: choose one of {', '.join(SCHEDULE_NAMES)}")
    if name == "naive":
        return naive_schedule(p, m)
    if impl is None:
        impl = next((n for n in DEFAULT_IMPLS if (REPO_ROOT / n / "per_stage.py").is_file()), DEFAULT_IMPLS[-1])
    try:
        mod = resolve(impl).module("per_stage")
    except ImplError as exc:
        raise RuntimeInputError(str(exc)) from None
    fn = {"gpipe": mod.gpipe_actions, "1f1b": mod.one_f_one_b_actions}[name]
    return parse_schedule({s: fn(s, p, m) for s in range(p)})


def summary(result: RunResult, width: int = 100) -> str:
    """A few lines for people: step times, measured/ideal, gradient error, the timeline."""
    from .timeline import ascii_gantt

    spec = result.spec
    loss, ref = reference_gradients(spec)
    err = max_relative_error(result.grads, ref)
    lines = [f"{spec}: {len(result.step_times)} step(s), median step {result.median_step_time * 1e3:.2f} ms"]
    if spec.seconds_per_batch:
        lines[-1] += f", ideal (m+p-1)(F+B) = {spec.ideal_step_time * 1e3:.2f} ms, " \
                     f"measured/ideal {result.median_step_time / spec.ideal_step_time:.3f}"
    lines.append(f"loss {result.loss:.6g} (reference {loss:.6g}); max |g - g_ref| / max |g_ref| = {err:.2e}")
    lines.append(ascii_gantt(result.timeline(), width=width))
    return "\n".join(lines)


def _arguments(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m autograder.runtime",
        description="Run a per-stage pipeline schedule with one process per stage (torch.distributed). "
                    "Starts its own processes, or runs as one rank under torchrun.")
    parser.add_argument("--schedule", default="1f1b", help="naive, gpipe or 1f1b (default 1f1b)")
    parser.add_argument("--impl", default=None,
                        help="take the gpipe/1f1b lists from this package's per_stage.py: assignment, solutions or "
                             "a submission directory (default: solutions if this repository has it, else assignment)")
    parser.add_argument("-p", "--stages", type=int, default=4)
    parser.add_argument("-m", "--microbatches", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--kind", default="mlp")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--f", type=float, default=0.02, help="emulated seconds per batch forward per stage")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--recv-timeout", type=float, default=DEFAULT_RECV_TIMEOUT)
    parser.add_argument("--backend", default=None, help="gloo or nccl (default: nccl if a GPU per rank)")
    return parser.parse_args(argv)


def _torchrun_main(args, schedule: Schedule, spec: PipelineSpec) -> int:
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if world < spec.num_stages:
        print(f"error: {spec.num_stages} stages need {spec.num_stages} ranks, torchrun started {world}",
              file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    backend = args.backend or ("nccl" if torch.cuda.is_available() and torch.cuda.device_count() > local_rank
                               else "gloo")
    if backend == "nccl":
        os.environ.setdefault("TORCH_NCCL_BLOCKING_WAIT", "1")
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=DEFAULT_INIT_TIMEOUT))
    job = {"id": 1, "schedule": _plain_schedule(schedule), "spec": asdict(spec), "steps": args.steps,
           "recv_timeout": args.recv_timeout}
    out = run_rank(rank, world, job, _rank_device(backend, local_rank))
    if out["error"]:
        print(f"error: {out['error']}", file=sys.stderr, flush=True)
        os._exit(1)  # the group may be broken: do not wait in a collective
    gathered = [None] * world if rank == 0 else None
    dist.gather_object(out, gathered, dst=0)
    if rank == 0:
        print(summary(_merge(spec, schedule, gathered)))
    dist.destroy_process_group()
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    args = _arguments(argv)
    spec = PipelineSpec(args.stages, args.microbatches, args.batch, width=args.width, depth=args.depth,
                        seed=args.seed, kind=args.kind, seconds_per_batch=args.f)
    try:
        check_spec(spec)
        schedule = check_schedule(schedule_named(args.schedule, args.stages, args.microbatches, args.impl),
                                  args.stages, args.microbatches)
        if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
            return _torchrun_main(args, schedule, spec)
        result = launch(schedule, spec, args.steps, recv_timeout=args.recv_timeout, backend=args.backend)
    except RuntimeInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.details:
            print(exc.details, file=sys.stderr)
        return 2
    except (PipelineError, NotImplementedError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

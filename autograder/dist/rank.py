"""One rank of the multi-process executor: run its own list, exchanging activations and gradients
with the ranks of the neighbouring stages point to point (:mod:`autograder.dist.p2p`).

The rank holds stages ``rank, rank + p, ..., rank + (v - 1) p`` of the judge's even partition into
``p x v`` stages. Each action is planned once per job (which message it waits for, where its
output goes, its emulated time), so that running a step does little Python per action:

    wait for the input -> start = clock() -> compute -> sleep until start + emulated -> end -> send

With emulated time the rank times the action itself (the stage modules are the plain ones): the
action is busy for ``max(emulated, compute)`` from the moment its input is there, like a device
whose kernels are queued as soon as the data is (see :mod:`autograder.dist.emulate`).
"""

from __future__ import annotations

import gc
import time
from typing import NamedTuple

import torch

from ..schedules import Action
from .emulate import DeviceTime, precise_timers, sleep_until
from .model import course_model, even_partition
from .p2p import BACKWARD, FORWARD, Key, Mailbox, RankFailure
from .shm import SETUP_BARRIERS, ShmMailbox
from .spec import PipelineSpec
from .work import StageWork


class _Step(NamedTuple):
    """One planned action: what it waits for, what it runs, where its output goes."""

    action: Action
    recv: Key | None  # message to wait for (None: the batch, a local hand-over, or nothing)
    local: Key | None  # tensor handed over in memory by a stage of this rank
    what: str  # the awaited tensor, for a timeout message
    send: Key | None  # message (or local hand-over) its output becomes
    dst: int  # rank of the stage that receives it (this rank: hand over in memory)
    seconds: float  # emulated time (0: only the real compute)


def _plan(
    rank: int, actions: list[Action], spec: PipelineSpec, present: set[Action], device_time: DeviceTime | None
) -> list[_Step]:
    p, n, sizes = spec.num_stages, spec.total_stages, spec.sizes
    plan = []
    for a in actions:
        s, k = a.stage, a.mb
        recv = local = send = None
        what, dst = "", rank
        if a.kind == "F" and s > 0:
            key = (FORWARD, s, k)
            recv, local = (None, key) if (s - 1) % p == rank else (key, None)
            what = f"the activation of micro-batch {k} ({s - 1}F{k})"
        elif a.kind in ("B", "I") and s < n - 1:
            key = (BACKWARD, s, k)
            recv, local = (None, key) if (s + 1) % p == rank else (key, None)
            producer = Action(s + 1, "I", k) if Action(s + 1, "I", k) in present else Action(s + 1, "B", k)
            what = f"the gradient of micro-batch {k} ({producer})"
        if a.kind == "F" and s < n - 1:
            send, dst = (FORWARD, s + 1, k), (s + 1) % p
        elif a.kind in ("B", "I") and s > 0:
            send, dst = (BACKWARD, s - 1, k), (s - 1) % p
        seconds = device_time.seconds(a.kind, sizes[k]) if device_time else 0.0
        plan.append(_Step(a, recv, local, what, send, dst, seconds))
    return plan


def _run_step(
    rank: int, plan: list[_Step], works: dict[int, StageWork], inputs: list[torch.Tensor] | None, mailbox: Mailbox
) -> tuple[list[list], list[list]]:
    """Run one step of the planned list; returns the events ``[stage, kind, mb, start, end]`` and the
    profile ``[waited from, input there, end, sent]`` of each action (``perf_counter`` seconds)."""
    clock = time.perf_counter
    handed: dict[Key, torch.Tensor] = {}
    events, profile = [], []
    for i, (a, recv, local, what, send, dst, seconds) in enumerate(plan):
        s, kind, k = a
        work = works[s]
        waited = clock()
        if recv is not None:
            x = mailbox.take(recv, i, a, what)
        elif local is not None:
            x = handed.pop(local)
        else:
            x = inputs[k] if kind == "F" and s == 0 else None
        start = clock()
        if kind == "F":
            out = work.forward(k, x)
        elif kind == "B":
            out = work.backward(k, x)
        elif kind == "I":
            out = work.input_grad(k, x)
        else:
            out = work.weight_grad(k)
        if seconds:
            sleep_until(start + seconds)
        end = clock()
        if send is not None:
            if dst == rank:
                handed[send] = out
            else:
                mailbox.send(out, dst, send, a)
        events.append([s, kind, k, start, end])
        profile.append([waited, start, end, clock()])
    mailbox.finish(len(plan))
    return events, profile


def _host() -> str:
    """Which clock a rank's ``time.perf_counter()`` reads: the machine (and its boot)."""
    import socket

    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


def _pack(t: torch.Tensor | None):
    return None if t is None else t.detach().to("cpu", torch.float32).tolist()


_WARM: list[bool] = []


def _warm_up_autograd() -> None:
    """The first backward of a process imports sympy (~0.3 s) and the first ``autograd.grad``
    sets up more: do both before the first timed step, once per process. Also sets the timer slack."""
    if not _WARM:
        precise_timers()
        w = torch.ones(2, requires_grad=True)
        y = (torch.ones(2, requires_grad=True) * 2) * w
        torch.autograd.grad(y, [w], torch.ones(2), retain_graph=True)
        torch.autograd.backward(y, torch.ones(2), inputs=[w])
        _WARM.append(True)


class _Job(NamedTuple):
    modules: dict[int, torch.nn.Module]  # stage -> module, this rank's stages
    names: dict[int, list[tuple[str, torch.nn.Parameter]]]
    shapes: list[tuple[int, ...]]  # input shape (without rows) of stage s; shapes[n] = model output
    inputs: list[torch.Tensor] | None
    targets: list[torch.Tensor] | None


def _build(spec: PipelineSpec, rank: int, device: torch.device) -> _Job:
    """The course model from the seed, split into ``p x v`` stages; keep this rank's."""
    M = course_model()
    p, n, m = spec.num_stages, spec.total_stages, spec.num_microbatches
    model = M.make_model(spec.width, spec.depth, seed=spec.seed, kind=spec.kind)
    inputs, targets = M.make_batch(spec.batch_size, spec.width, seed=spec.seed, kind=spec.kind)
    stages = even_partition(model, n, [torch.device("cpu")] * n)
    shapes = []
    with torch.no_grad():
        x = inputs[:1]
        for stage in stages:
            shapes.append(tuple(x.shape[1:]))
            x = stage(x)
        shapes.append(tuple(x.shape[1:]))
    names = {id(q): name for name, q in model.named_parameters()}
    mine = range(rank, n, p)
    modules = {s: stages[s].to(device) for s in mine}
    params = {s: [(names[id(q)], q) for q in modules[s].parameters()] for s in mine}
    xs = [x.to(device) for x in torch.tensor_split(inputs, m)] if rank == 0 else None
    ys = [y.to(device) for y in torch.tensor_split(targets, m)] if (n - 1) % p == rank else None
    return _Job(modules, params, shapes, xs, ys)


def _mailbox(
    rank: int, plan: list[_Step], spec: PipelineSpec, shapes: list, device: torch.device, job: dict
) -> Mailbox | ShmMailbox:
    """This rank's messages: through shared memory when the job says so (every rank on this
    machine, see :mod:`.shm`), else point to point over the process group."""
    import torch.distributed as dist

    p, sizes, timeout = spec.num_stages, spec.sizes, job["recv_timeout"]
    if job.get("transport") == "shm":
        peers = sorted({step.dst for step in plan if step.send is not None and step.dst != rank})
        return ShmMailbox(rank, p, spec.total_stages, sizes, shapes, job["token"], peers, dist.barrier, timeout)
    needs = []
    for step in plan:
        if step.recv is not None:
            direction, s, k = step.recv
            src = (s - 1) % p if direction == FORWARD else (s + 1) % p
            shape = shapes[s] if direction == FORWARD else shapes[s + 1]
            needs.append((step.recv, src, (sizes[k], *shape)))
    group = dist.distributed_c10d._get_default_group()
    return Mailbox(rank, spec.num_microbatches, needs, device, group, dist.get_backend() != "nccl", timeout)


def _one_step(rank: int, spec: PipelineSpec, built, plan, mailbox, loss_fn, result: dict) -> None:
    """One timed step of this rank's list; its events, profile, times and loss go into ``result``."""
    last = spec.total_stages - 1
    for params in built.names.values():
        for _, q in params:
            q.grad = None
    works = {
        s: StageWork(mod, s, spec.total_stages, loss_fn, spec.batch_size, built.targets if s == last else None)
        for s, mod in built.modules.items()
    }
    gc.disable()  # no collection in the middle of a step (autograd makes many small objects)
    try:
        mailbox.begin_step()
        t0, cpu0 = time.perf_counter(), time.thread_time()
        events, profile = _run_step(rank, plan, works, built.inputs, mailbox)
        result["step_times"].append([t0, time.perf_counter()])
        result["cpu_times"].append(time.thread_time() - cpu0)
    finally:
        gc.enable()
    result["events"].append(events)
    result["profile"].append(profile)
    total = works[last].loss() if last in works else None
    result["loss"] = None if total is None else total.item()


def run_rank(rank: int, world_size: int, job: dict, device: torch.device | None = None) -> dict:
    """Execute ``job`` (from :meth:`PipelinePool.run`) as ``rank`` of an initialised process group.

    Returns plain data: ``{"rank", "error", "events" [per step], "profile" [per step], "executed",
    "step_times", "cpu_times" (seconds of CPU the rank's thread used per step), "loss", "grads"
    {name: nested list}}``. A rank beyond the pipeline's ranks only
    joins the step barriers. Raises nothing: a failure is reported in ``"error"`` (one line).
    """
    import torch.distributed as dist

    spec = PipelineSpec(**job["spec"])
    p, steps = spec.num_stages, job["steps"]
    result: dict = {
        "rank": rank,
        "job": job["id"],
        "error": None,
        "events": [],
        "profile": [],
        "executed": [],
        "step_times": [],
        "cpu_times": [],
        "loss": None,
        "grads": {},
        "host": _host(),
    }
    try:
        if rank >= p:  # join the others' collective calls: the shared-memory set-up, or each step's start
            for _ in range(SETUP_BARRIERS if job.get("transport") == "shm" else steps):
                dist.barrier()
            return result
        device = device or torch.device("cpu")
        _warm_up_autograd()
        built = _build(spec, rank, device)
        actions = [Action(*_parse(a)) for a in job["schedule"][rank]]
        present = {Action(*_parse(a)) for acts in job["schedule"].values() for a in acts}
        timing = DeviceTime(spec.seconds_per_chunk, spec.batch_size) if spec.seconds_per_batch else None
        plan = _plan(rank, actions, spec, present, timing)
        mailbox = _mailbox(rank, plan, spec, built.shapes, device, job)
        loss_fn = course_model().loss_function()
        for _step in range(steps):
            _one_step(rank, spec, built, plan, mailbox, loss_fn, result)
        result["executed"] = [f"{s}{kind}{k}" for s, kind, k, _, _ in result["events"][-1]]  # as it ran
        result["grads"] = {name: _pack(q.grad) for params in built.names.values() for name, q in params}
    except RankFailure as exc:
        result["error"] = str(exc)
    except Exception as exc:  # a bug or a lost peer: report it, one line
        text = str(exc).strip()
        result["error"] = f"rank {rank}: {type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}"
    return result


def _parse(text: str) -> tuple[int, str, int]:
    from ..schedules import parse_action

    a = parse_action(text)
    return a.stage, a.kind, a.mb

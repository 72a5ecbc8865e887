"""Probes: the only code that calls student functions. They run in the sandbox's call process.

A probe calls one student function on data the judge sent and returns the *raw* results: tensors,
numbers, strings, lists (never a verdict, never a flag computed here). The judge checks their types
and shapes and computes every graded quantity itself (``autograder.judge``). Schedule trials run
the stages in the judge's process (:mod:`.remote`), so their events never exist here at all.
"""

from __future__ import annotations

import importlib
import itertools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import nn

from .. import practical
from . import provided
from .errors import describe_exception
from .plain import plain_action, plain_value
from .remote import RemoteExecutor
from .stage import PipelineStage
from .syncs import watching

MAX_ACTIONS = 10_000  # per list; a correct list has 2m or 3m actions


class ProbeError(Exception):
    """The student's module or function cannot be used (one line, e.g. a missing function)."""


@dataclass
class CallContext:
    """What a probe needs: the student package's name and the call's channel to the judge."""

    package: str
    channel: Any = None  # the call's socket

    def import_package(self, substitutes: dict[str, ModuleType] | None = None) -> ModuleType:
        """Import the student package, aliased as ``assignment`` for absolute imports, with
        ``substitutes`` (submodule name -> module) in place of the student's own modules."""
        for name, module in (substitutes or {}).items():
            for prefix in (self.package, practical.PACKAGE):
                sys.modules[f"{prefix}.{name}"] = module
        package = importlib.import_module(self.package)
        if self.package != practical.PACKAGE:
            sys.modules.setdefault(practical.PACKAGE, package)
        for name, module in (substitutes or {}).items():
            setattr(package, name, module)
        return package

    def function(self, task_id: str, substitutes: dict[str, ModuleType] | None = None) -> Callable:
        """The student's function of task ``task_id`` (an earlier name of it also counts)."""
        task = practical.TASK[task_id]
        self.import_package(substitutes)
        module = importlib.import_module(f"{self.package}.{task.file.removesuffix('.py')}")
        for name in (task.function, *task.old_functions):
            fn = getattr(module, name, None)
            if callable(fn):
                return fn
        raise ProbeError(f"{task.file} defines no function {task.function}")

    def describe(self, exc: BaseException) -> str:
        return describe_exception(exc, self.package)


def _outcome(ctx: CallContext, call: Callable[..., Any], *args: Any, keep: bool = True) -> dict:
    """``call(*args)`` as ``{"value": ...}`` (``None`` unless ``keep``: a call made only to see
    whether it raises) or ``{"raised": type name, "value_error": is it a ValueError (or a
    subclass), "message": one line}``."""
    try:
        value = call(*args)
        return {"value": value if keep else None}
    except Exception as exc:  # noqa: BLE001 - student code: any exception is a result
        return {"raised": type(exc).__name__, "value_error": isinstance(exc, ValueError), "message": ctx.describe(exc)}


# -- Part 1 ----------------------------------------------------------------------------------------


def probe_partition(
    ctx: CallContext,
    widths: list[int],
    num_stages: int,
    devices: list[str],
    seed: int,
    bad: list[list] | None = None,
    backward: bool = False,
) -> dict:
    """Partition ``Linear(widths[i], widths[i + 1])`` layers (seeded) into ``num_stages`` stages on
    ``devices``. Returns, per stage, its parameters (values on the CPU, ``None`` for meta tensors)
    and their devices; with ``backward``, the model's own gradients after one backward through the
    stages; ``bad``: what each call with ``[num_stages, devices]`` raised."""
    partition = ctx.function("part1.partition")
    model = _linear_chain(widths, seed)
    x = torch.randn(3, widths[0], generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    with torch.no_grad():
        expected = model(x)
    data: dict = {"error": None, "stages": None, "model_grads": None, "runs": None, "bad": []}
    try:
        stages = list(partition(model, num_stages, [torch.device(d) for d in devices]))
        data["stages"] = [_describe_stage(stage) for stage in stages]
        if all(d == "cpu" for d in devices):
            data["runs"] = _runs_in_order(ctx, stages, x, expected)
        if backward and data["runs"] is None:
            for stage in stages:
                x = stage(x)
            x.square().sum().backward()
            data["model_grads"] = [p.grad for p in model.parameters()]
    except Exception as exc:  # noqa: BLE001
        data["error"] = ctx.describe(exc)
    for stages_asked, devices_given in bad or []:
        fresh = _linear_chain(widths, seed)
        data["bad"].append(
            _outcome(ctx, partition, fresh, stages_asked, [torch.device(d) for d in devices_given], keep=False)
        )
    return data


def _linear_chain(widths: list[int], seed: int) -> nn.Sequential:
    """The judge's model: float32 whatever default dtype the student's module set."""
    torch.manual_seed(seed)
    return nn.Sequential(*[nn.Linear(a, b, dtype=torch.float32) for a, b in itertools.pairwise(widths)])


def _runs_in_order(ctx: CallContext, stages: list, x: torch.Tensor, expected: torch.Tensor) -> str | None:
    """``None`` when calling the stages one after the other gives the model's output; else why not."""
    with torch.no_grad():
        for i, stage in enumerate(stages):
            try:
                x = stage(x)
            except Exception as exc:  # noqa: BLE001 - student code
                return (
                    f"stage {i} (a {type(stage).__name__}) cannot be called on an activation ({ctx.describe(exc)}); "
                    f"make each stage an nn.Sequential of its layers, so that stage(x) runs them in order"
                )
    if not isinstance(x, torch.Tensor) or x.shape != expected.shape or not torch.allclose(x.float(), expected):
        return (
            "calling the stages one after the other does not give the model's output; each stage must be an "
            "nn.Sequential running its layers in the model's order"
        )
    return None


def _describe_stage(stage: Any) -> dict:
    if not isinstance(stage, nn.Module):
        return {"type": type(stage).__name__, "params": [], "devices": []}
    params = list(stage.parameters())
    return {
        "type": type(stage).__name__,
        "params": [None if p.device.type == "meta" else p.detach().to("cpu", copy=True) for p in params],
        "devices": [str(p.device) for p in params],
    }


def probe_split(ctx: CallContext, cases: list[dict], bad: list[dict] | None = None) -> dict:
    """``split_microbatches(inputs, targets, m)`` for each case; returns the pieces as they came."""
    split = ctx.function("part1.split_microbatches")
    results = []
    for case in cases:
        outcome = _outcome(ctx, split, case["inputs"], case["targets"], case["m"])
        if "value" in outcome:
            outcome["value"] = _pieces(outcome["value"])
        results.append(outcome)
    failures = [_outcome(ctx, split, b["inputs"], b["targets"], b["m"], keep=False) for b in bad or []]
    return {"error": None, "cases": results, "bad": failures}


def _pieces(value: Any) -> Any:
    if isinstance(value, torch.Tensor) or not hasattr(value, "__iter__"):
        return {"not_a_list": type(value).__name__}
    pieces = []
    for item in itertools.islice(iter(value), 10_000):
        if isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(t, torch.Tensor) for t in item):
            pieces.append([item[0].detach().cpu(), item[1].detach().cpu()])
        else:
            pieces.append({"not_a_pair": plain_value(item)})
    return pieces


def probe_microbatch_loss(ctx: CallContext, outputs: torch.Tensor, targets: torch.Tensor, sizes: list[int]) -> dict:
    """``microbatch_loss`` on each micro-batch of ``sizes`` rows; returns each value and its gradient
    with respect to the micro-batch's outputs (``None`` when it has none)."""
    mb_loss = ctx.function("part1.microbatch_loss")
    loss_fn, n, row, parts = nn.MSELoss(), sum(sizes), 0, []
    for size in sizes:
        out = outputs[row : row + size].clone().requires_grad_(True)

        def call(out=out, size=size, row=row):
            value = mb_loss(loss_fn, out, targets[row : row + size], n)
            if not isinstance(value, torch.Tensor):
                return {"value": plain_value(value), "grad": None}
            grad = None
            if value.numel() == 1 and value.requires_grad:
                (grad,) = torch.autograd.grad(value.sum(), out, allow_unused=True)
            return {"value": value.detach().cpu(), "grad": grad}

        parts.append(_outcome(ctx, call))
        row += size
    return {"error": None, "parts": parts}


# -- Options A, B, C ---------------------------------------------------------------------------------


def probe_schedule(
    ctx: CallContext,
    schedule: str,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    sizes: list[int],
    params: list[list[torch.Tensor]],
    sentinel: list[list[torch.Tensor]],
) -> dict:
    """One step of the student's schedule on remote stages (their work runs in the judge).

    ``params``/``sentinel``: per stage, the values and the gradients already present of the stage's
    parameters. Returns what the step returned, every parameter's ``.grad`` and value afterwards,
    and whether the stages still hold the same parameter objects.
    """
    executor = RemoteExecutor(ctx.channel)
    stages, shadows = [], []
    for s, (values, grads) in enumerate(zip(params, sentinel)):
        shadow = [nn.Parameter(v.clone()) for v in values]
        for q, g in zip(shadow, grads):
            q.grad = g.clone()
        shadows.append(shadow)
        stages.append(PipelineStage(executor, s, shadow))
    substitutes = {"microbatch": provided.make_module(sizes, f"{ctx.package}.microbatch")}
    data: dict = {"error": None, "returned": None}
    try:
        step = ctx.function(practical.STEP_SCHEDULES[schedule].task, substitutes)
        model = importlib.import_module(f"{ctx.package}.model")
        with watching(executor, ctx.package):
            returned = step(stages, inputs, targets, model.loss_function(), len(sizes))
        data["returned"] = plain_value(returned)
    except Exception as exc:  # noqa: BLE001 - student code: any exception is a result
        data["error"] = ctx.describe(exc)
    executor.flush()
    data["grads"] = [[q.grad for q in shadow] for shadow in shadows]
    data["values"] = [[q.detach() for q in shadow] for shadow in shadows]
    data["same_params"] = [
        list(stage.parameters()) == shadow and all(a is b for a, b in zip(stage.parameters(), shadow))
        for stage, shadow in zip(stages, shadows)
    ]
    return data


# -- Parts 6 and 7 -----------------------------------------------------------------------------------


def probe_action_lists(ctx: CallContext, which: str, cases: list[list[int]]) -> dict:
    """The student's list function for every stage (or rank) of each case ``[p, m]`` (``[p, m, v]``
    for interleaving); each list comes back as plain actions for the judge to parse."""
    spec = practical.ACTION_LISTS[which]
    fn = ctx.function(spec.task)
    results = []
    for case in cases:
        p = case[0]
        outcome = _outcome(ctx, _action_lists, fn, spec.function, case, p)
        results.append(outcome)
    return {"error": None, "cases": results}


def _action_lists(fn: Callable, name: str, case: list[int], ranks: int) -> list[list]:
    return [_action_list(fn, name, rank, case) for rank in range(ranks)]


def _action_list(fn: Callable, name: str, rank: int, case: list[int]) -> list:
    returned = fn(rank, *case)
    if isinstance(returned, (str, bytes)) or not hasattr(returned, "__iter__"):
        raise TypeError(
            f"{name}({rank}, ...) returned {type(returned).__name__}; return a list of Action(stage, kind, mb)"
        )
    items = list(itertools.islice(iter(returned), MAX_ACTIONS + 1))
    if len(items) > MAX_ACTIONS:
        raise ValueError(f"{name}({rank}, ...) returned more than {MAX_ACTIONS} actions")
    return [plain_action(item) for item in items]


# -- GPUs (0 points) ---------------------------------------------------------------------------------


def probe_cuda_step_times(
    ctx: CallContext,
    schedule: str,
    num_stages: int,
    num_microbatches: int,
    batch_size: int,
    width: int,
    depth: int,
    steps: int = 5,
    warmup: int = 2,
) -> dict:
    """Milliseconds of ``steps`` steps of the student's schedule on ``cuda:0..p-1`` (real modules, not
    proxies: this measures real overlap), each timed with CUDA events after synchronising every device."""
    model_module = importlib.import_module(f"{ctx.package}.model")
    model = model_module.make_model(width, depth, seed=0)
    inputs, targets = model_module.make_batch(batch_size, width, seed=0)
    devices = [torch.device("cuda", s) for s in range(num_stages)]
    layers, stages, start = list(model), [], 0
    base, extra = divmod(len(layers), num_stages)
    for s in range(num_stages):
        size = base + (1 if s < extra else 0)
        stages.append(nn.Sequential(*layers[start : start + size]).to(devices[s]))
        start += size
    sizes = [
        batch_size // num_microbatches + (1 if k < batch_size % num_microbatches else 0)
        for k in range(num_microbatches)
    ]
    substitutes = {"microbatch": provided.make_module(sizes, f"{ctx.package}.microbatch")}
    step = ctx.function(practical.STEP_SCHEDULES[schedule].task, substitutes)
    data: dict = {"error": None, "ms": []}
    try:
        for i in range(warmup + steps):
            for d in devices:
                torch.cuda.synchronize(d)
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record(torch.cuda.current_stream(devices[0]))
            step(stages, inputs, targets, model_module.loss_function(), num_microbatches)
            for d in devices:
                torch.cuda.synchronize(d)
            end.record(torch.cuda.current_stream(devices[0]))
            end.synchronize()
            if i >= warmup:
                data["ms"].append(float(begin.elapsed_time(end)))
    except Exception as exc:  # noqa: BLE001
        data["error"] = ctx.describe(exc)
    return data


PROBES: dict[str, Callable[..., dict]] = {
    "partition": probe_partition,
    "split": probe_split,
    "microbatch_loss": probe_microbatch_loss,
    "schedule": probe_schedule,
    "action_lists": probe_action_lists,
    "cuda_step_times": probe_cuda_step_times,
}

"""Probes: the only code that calls student functions.

A probe runs next to the student's code (in the grader's child process, or in-process for local
runs), calls one student function under the tracing harness and returns *plain data*: ints,
floats, strings, lists, dicts and CPU tensors. The judge (the tests) never looks at student
objects, only at this data, after checking its types (``autograder.trial``).

Schedule trials use the judge's own partition (an even split) and the judge's model, so a bug in
the student's ``partition`` costs only the partition tests.
"""
from __future__ import annotations

import traceback

import torch
from torch import nn

from .impl import Impl
from .tracing import Tracer

SCHEDULES = {"naive": "naive_step", "gpipe": "gpipe_step", "delayed": "one_f_one_b_step"}


def expected_sizes(batch_size: int, num_microbatches: int) -> list[int]:
    """Micro-batch sizes of ``torch.tensor_split``: differ by at most one, larger first."""
    base, extra = divmod(batch_size, num_microbatches)
    return [base + (1 if k < extra else 0) for k in range(num_microbatches)]


def even_partition(model: nn.Sequential, num_stages: int, devices: list[torch.device]) -> list[nn.Sequential]:
    """The judge's partition: contiguous stages, sizes differing by at most one layer."""
    layers, start, stages = list(model), 0, []
    for s, size in enumerate(expected_sizes(len(layers), num_stages)):
        stages.append(nn.Sequential(*layers[start:start + size]).to(devices[s]))
        start += size
    return stages


KNOWN_ERRORS = {  # fragment of a torch error -> what it usually means in this practical
    "backward through the graph a second time": "a micro-batch's backward ran twice: call backward() once per micro-batch",
    "does not require grad and does not have a grad_fn": "the loss is cut off from the graph: do not detach activations or call .item() on them",
    "Expected all tensors to be on the same device": "move each activation (and the targets) to the stage's device with .to()",
}


def describe_exception(exc: BaseException, impl: Impl | None = None) -> str:
    """One line: the exception, a hint for well-known torch errors, and where in the student's
    package it happened (first and innermost frame, e.g. ``at schedules.py:80 -> microbatch.py:40``)."""
    frames = []
    if impl is not None:
        for frame in traceback.extract_tb(exc.__traceback__):
            path = frame.filename.replace("\\", "/")
            if f"/{impl.name}/" in path:
                frames.append(f"{path.rsplit('/', 1)[-1]}:{frame.lineno}")
    where = ""
    if frames:
        chain = frames[0] if len(frames) == 1 else f"{frames[0]} -> {frames[-1]}"
        where = f" (at {impl.name}/{chain})"
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    hint = next((f" [{h}]" for k, h in KNOWN_ERRORS.items() if k in message), "")
    return f"{type(exc).__name__}: {message}{hint}{where}"[:600]


def sentinel_grads(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Gradients already present before the step, to check that the schedule accumulates."""
    gen = torch.Generator().manual_seed(20_000 + seed)
    return {name: 0.25 * torch.randn(p.shape, generator=gen) for name, p in model.named_parameters()}


def probe_schedule(impl: Impl, schedule: str, num_stages: int, num_microbatches: int, batch_size: int,
                   width: int, depth: int, seed: int, kind: str = "mlp", device: str = "cpu") -> dict:
    """Run one traced step of a student schedule; return loss, gradients, events and notes.

    ``device``: ``"cpu"`` by default, so a grade never depends on whether the grading machine has
    a GPU (GPU behaviour is checked by ``test_gpu.py``, worth 0 points).
    """
    model_mod = impl.module("model")
    devices_mod = impl.module("devices")
    model = model_mod.make_model(width, depth, seed=seed, kind=kind)
    inputs, targets = model_mod.make_batch(batch_size, width, seed=seed, kind=kind)
    devices = devices_mod.stage_devices(num_stages, device)
    stages = even_partition(model, num_stages, devices)
    params = dict(model.named_parameters())
    before = {name: p.detach().to("cpu", copy=True) for name, p in params.items()}
    for name, g in sentinel_grads(model, seed).items():
        params[name].grad = g.to(params[name].device)
    tracer = Tracer(inputs, expected_sizes(batch_size, num_microbatches))
    traced = tracer.wrap(stages)
    # A wrong return type costs only the loss test: "return_problem", not "error".
    data = {"error": None, "loss": None, "return_problem": None}
    try:
        step = getattr(impl.module("schedules"), SCHEDULES[schedule])
        loss = step(traced, inputs, targets, model_mod.loss_function(), num_microbatches)
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            data["return_problem"] = "returned a tensor; return the loss as a Python float (loss.item())"
        elif isinstance(loss, bool) or not isinstance(loss, (float, int)):
            data["return_problem"] = f"returned {type(loss).__name__}; return the batch loss as a Python float"
        else:
            data["loss"] = float(loss)
    except Exception as exc:  # student code: any exception is a result, not a crash
        data["error"] = describe_exception(exc, impl)
    now = dict(model.named_parameters())
    data["tampered"] = tracer.tampered()
    data["replaced"] = sorted(n for n in params if now.get(n) is not params[n])
    data["changed"] = sorted(n for n, p in now.items()
                             if n in before and not torch.equal(p.detach().cpu(), before[n]))
    data["grads"] = {n: (None if p.grad is None else p.grad.detach().to("cpu", torch.float32, copy=True))
                     for n, p in now.items()}
    data["events"] = [[e.stage, e.kind, e.mb, e.start, e.end] for e in tracer.events]
    data["notes"] = list(tracer.notes)
    return data


def _call_expecting_value_error(fn, *args) -> dict:
    try:
        fn(*args)
    except ValueError as exc:
        return {"raised": "ValueError", "message": str(exc)[:300]}
    except Exception as exc:
        return {"raised": type(exc).__name__, "message": describe_exception(exc)}
    return {"raised": None, "message": ""}


def probe_partition(impl: Impl, num_layers: int, num_stages: int, width: int = 8,
                    bad: tuple[int, ...] = ()) -> dict:
    """Call ``partition`` on a model whose layers have different sizes; describe the result.

    Returns for each stage the indices of the model's layers it holds (by identity), its
    parameter count and device; plus what each call with a bad ``num_stages`` raised.
    """
    partition = impl.module("partition").partition
    devices_mod = impl.module("devices")
    torch.manual_seed(0)
    widths = [width * (1 + (i % 3)) for i in range(num_layers + 1)]
    model = nn.Sequential(*[nn.Linear(widths[i], widths[i + 1]) for i in range(num_layers)])
    param_owner = {id(p): i for i, layer in enumerate(model) for p in layer.parameters()}
    layer_ids = {id(layer): i for i, layer in enumerate(model)}
    data: dict = {"error": None, "stages": None, "layer_sizes": [sum(p.numel() for p in l.parameters()) for l in model]}
    try:
        stages = partition(model, num_stages, devices_mod.stage_devices(num_stages, "cpu"))
        described = []
        for stage in stages:
            if not isinstance(stage, nn.Module):
                raise TypeError(f"partition returned a {type(stage).__name__} instead of an nn.Module stage")
            children = list(stage.children()) if isinstance(stage, nn.Sequential) else [stage]
            described.append({
                "layers": [layer_ids.get(id(c), -1) for c in children],
                "foreign_params": sum(1 for p in stage.parameters() if id(p) not in param_owner),
                "devices": sorted({str(p.device) for p in stage.parameters()}),
            })
        data["stages"] = described
    except Exception as exc:
        data["error"] = describe_exception(exc, impl)
    data["bad"] = {str(b): _call_expecting_value_error(
        partition, model, b, devices_mod.stage_devices(max(b, 1), "cpu")) for b in bad}
    return data


def probe_split(impl: Impl, batch_size: int, num_microbatches: int, bad: tuple[int, ...] = ()) -> dict:
    """Call ``split_microbatches``; return the pieces' sizes and whether they are in order."""
    split = impl.module("microbatch").split_microbatches
    inputs = torch.arange(batch_size * 3, dtype=torch.float32).reshape(batch_size, 3)
    targets = -torch.arange(batch_size, dtype=torch.float32).reshape(batch_size, 1)
    data: dict = {"error": None, "sizes": None, "in_order": None, "paired": None}
    try:
        pieces = list(split(inputs, targets, num_microbatches))
        xs, ys = [], []
        for piece in pieces:
            x, y = piece
            xs.append(x)
            ys.append(y)
        data["sizes"] = [int(x.shape[0]) for x in xs]
        data["in_order"] = bool(torch.equal(torch.cat(xs), inputs)) if xs else False
        data["paired"] = all(int(x.shape[0]) == int(y.shape[0]) and torch.equal(x[:, 0] / -3, y[:, 0])
                             for x, y in zip(xs, ys))
    except Exception as exc:
        data["error"] = describe_exception(exc, impl)
    data["bad"] = {str(b): _call_expecting_value_error(split, inputs, targets, b) for b in bad}
    data["mismatched"] = _call_expecting_value_error(split, inputs, targets[:-1], 1) if batch_size > 1 else None
    return data


def probe_microbatch_loss(impl: Impl, sizes: list[int], seed: int = 0) -> dict:
    """Sum ``microbatch_loss`` over micro-batches of the given sizes; compare with the batch loss."""
    mb_loss = impl.module("microbatch").microbatch_loss
    gen = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    outputs, targets = torch.randn(n, 4, generator=gen), torch.randn(n, 4, generator=gen)
    loss_fn = nn.MSELoss()
    data: dict = {"error": None, "parts": None, "full": float(loss_fn(outputs, targets))}
    try:
        parts, row = [], 0
        for size in sizes:
            value = mb_loss(loss_fn, outputs[row:row + size], targets[row:row + size], n)
            if not isinstance(value, torch.Tensor) or value.numel() != 1:
                raise TypeError(f"microbatch_loss returned {type(value).__name__}; return a scalar tensor")
            parts.append(float(value))
            row += size
        data["parts"] = parts
    except Exception as exc:
        data["error"] = describe_exception(exc, impl)
    return data


PER_STAGE = {"gpipe": "gpipe_actions", "1f1b": "one_f_one_b_actions"}
MAX_ACTIONS = 10_000  # per stage; a correct list has 2m


def _plain_action(item) -> list | str:
    """An action as plain data for the judge: ``[stage, kind, mb]`` from a tuple (``Action`` is one),
    the string itself, or a short ``repr`` the judge's parser will refuse with a message."""
    import numbers
    if isinstance(item, str):
        return item[:40]
    if isinstance(item, (tuple, list)) and len(item) == 3:
        out = []
        for x in item:
            if isinstance(x, numbers.Integral) and not isinstance(x, bool):
                out.append(int(x))
            elif isinstance(x, str):
                out.append(x[:10])
            else:
                return repr(item)[:60]
        return out
    return repr(item)[:60]


def probe_per_stage(impl: Impl, schedule: str, num_stages: int, num_microbatches: int) -> dict:
    """Call the student's per-stage list function for every stage; return the lists as plain data.

    ``schedule``: ``"gpipe"`` (``gpipe_actions``) or ``"1f1b"`` (``one_f_one_b_actions``). Returns
    ``{"error", "actions": [[action, ...] per stage]}``, each action ``[stage, kind, mb]`` or a string;
    the judge parses and validates them (``autograder.schedules``) and runs them in its own runtime.
    """
    import itertools
    data: dict = {"error": None, "actions": None}
    name = PER_STAGE[schedule]
    try:
        fn = getattr(impl.module("per_stage"), name)
        lists = []
        for stage in range(num_stages):
            returned = fn(stage, num_stages, num_microbatches)
            if isinstance(returned, (str, bytes)) or not hasattr(returned, "__iter__"):
                raise TypeError(f"{name}(stage={stage}, ...) returned {type(returned).__name__}; "
                                f"return a list of Action(stage, kind, mb)")
            items = list(itertools.islice(iter(returned), MAX_ACTIONS + 1))
            if len(items) > MAX_ACTIONS:
                raise ValueError(f"{name}(stage={stage}, ...) returned more than {MAX_ACTIONS} actions")
            lists.append([_plain_action(item) for item in items])
        data["actions"] = lists
    except Exception as exc:  # student code: any exception is a result, not a crash
        data["error"] = describe_exception(exc, impl)
    return data


PROBES = {
    "schedule": probe_schedule,
    "partition": probe_partition,
    "split": probe_split,
    "microbatch_loss": probe_microbatch_loss,
    "per_stage": probe_per_stage,
}


def probe_cuda_step_times(impl: Impl, schedule: str, num_stages: int, num_microbatches: int, batch_size: int,
                          width: int, depth: int, steps: int = 5, warmup: int = 2) -> dict:
    """Wall-clock milliseconds of ``steps`` steps of a student schedule on ``cuda:0..p-1``.

    Each step is timed with CUDA events on ``cuda:0``, after synchronising every stage's device, so
    the time covers all devices' work. Uses the judge's even partition and the course model.
    """
    model_mod = impl.module("model")
    model = model_mod.make_model(width, depth, seed=0)
    inputs, targets = model_mod.make_batch(batch_size, width, seed=0)
    devices = [torch.device("cuda", s) for s in range(num_stages)]
    stages = even_partition(model, num_stages, devices)
    step = getattr(impl.module("schedules"), SCHEDULES[schedule])
    data: dict = {"error": None, "ms": []}
    try:
        for i in range(warmup + steps):
            for d in devices:
                torch.cuda.synchronize(d)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(torch.cuda.current_stream(devices[0]))
            step(stages, inputs, targets, model_mod.loss_function(), num_microbatches)
            for d in devices:
                torch.cuda.synchronize(d)
            end.record(torch.cuda.current_stream(devices[0]))
            end.synchronize()
            if i >= warmup:
                data["ms"].append(float(start.elapsed_time(end)))
    except Exception as exc:
        data["error"] = describe_exception(exc, impl)
    return data


PROBES["cuda_step_times"] = probe_cuda_step_times

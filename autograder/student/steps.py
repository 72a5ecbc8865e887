"""What ``python -m assignment.run`` measures for one schedule and one m, on the student's own code.

* correctness: one step from zero gradients against the single-device reference (loss, gradients);
* time: the measured step time (:mod:`.measure`: every row timed in turn, median with its spread);
* order: one traced step (the stages wrapped by the tracing executor, as when grading), replayed on
  p in-order devices: speedup over naive, bubble, peak micro-batches in flight, and the bytes of
  activations each stage holds at its peak.

The per-stage 1F1B lists of Part 6 (the student's own, once written) are run the same way by the
single-process executor, so their memory and replay sit next to Options A, B and C.
"""

from __future__ import annotations

import importlib

import torch

from .. import practical
from ..dist import run_actions_single
from ..dist.model import even_partition, split_sizes
from ..harness.stage import PipelineStage
from ..schedules import Costs, naive_schedule, parse_schedule, simulate, validate
from ..tracing import LocalExecutor, Recorder
from ..tracing.replay import replay_trace
from .measure import measure_rows, pinned_threads


def module(package: str, name: str):
    return importlib.import_module(f"{package}.{name}")


def _sync(devices) -> None:
    for d in {d for d in devices if d.type == "cuda"}:
        torch.cuda.synchronize(d)


def _setting(package: str, args):
    model_mod, devices_mod = module(package, "model"), module(package, "devices")
    devices = devices_mod.stage_devices(args.stages, args.device)
    inputs, targets = model_mod.make_batch(args.batch, args.width, seed=args.seed, kind=args.model)
    return model_mod, devices, inputs, targets


def _replay_row(recorder: Recorder, p: int, sizes: list[int]) -> dict:
    costs = Costs(forward=1.0, backward=2.0, rows=tuple(sizes))
    events = recorder.plain_events()
    trace = replay_trace(recorder.events, costs)  # every forward, recomputations included
    replayed = trace.result
    serial = simulate(naive_schedule(p, len(sizes)), costs).makespan
    held = trace.held_bytes()
    return {
        "replayed": replayed,
        "speedup": serial / replayed.makespan,
        "events": events,
        "notes": recorder.notes,
        "held_bytes": [held.get(s, 0) for s in range(p)],
        "rows": sizes,
    }


def run_schedule(package: str, name: str, args, m: int) -> dict:
    """Check, time and replay schedule ``name`` (a key of ``practical.STEP_SCHEDULES``) at ``m``."""
    spec = practical.STEP_SCHEDULES[name]
    schedules = module(package, "schedules")
    step = getattr(schedules, spec.function, None) or next(
        getattr(schedules, n) for n in spec.old_functions if hasattr(schedules, n)
    )
    partition = module(package, "partition").partition
    split = module(package, "microbatch").split_microbatches
    model_mod, devices, inputs, targets = _setting(package, args)
    loss_fn = model_mod.loss_function()
    with pinned_threads(args.threads):
        reference = model_mod.make_model(args.width, args.depth, seed=args.seed, kind=args.model)
        ref_loss = model_mod.reference_step(reference, inputs, targets, loss_fn)
        model = model_mod.make_model(args.width, args.depth, seed=args.seed, kind=args.model)
        stages = partition(model, args.stages, devices)
        loss = step(stages, inputs, targets, loss_fn, m)
        if isinstance(loss, bool) or not isinstance(loss, (float, int)):
            raise TypeError(f"{spec.function} returned {type(loss).__name__}; return the batch loss as a Python float")
        g_ref = max(p.grad.abs().max().item() for p in reference.parameters())
        diff = max(
            (p.grad.cpu() - q.grad).abs().max().item() if p.grad is not None else float("inf")
            for p, q in zip(model.parameters(), reference.parameters())
        )
        sizes = [int(x.shape[0]) for x, _ in split(inputs, targets, m)]
        recorder = Recorder(inputs, sizes)
        executor = LocalExecutor(stages, recorder)
        step(
            [PipelineStage(executor, s, list(stage.parameters())) for s, stage in enumerate(stages)],
            inputs,
            targets,
            loss_fn,
            m,
        )
        executor.close()
    row = {
        "name": name,
        "m": m,
        "timing": None,  # set by time_rows, which times every row of the table in turn
        "ms": None,
        "timer": (lambda: step(stages, inputs, targets, loss_fn, m), lambda: _sync(devices)),
        "loss": loss,
        "ref_loss": ref_loss,
        "rel_diff": diff / g_ref if g_ref else diff,
    }
    row.update(_replay_row(recorder, args.stages, sizes))
    return row


def time_rows(rows: list[dict], args) -> None:
    """Time the rows that have a ``timer``, in turn (:func:`.measure.measure_rows`), with the
    threads pinned; each gets its ``timing`` and ``ms``."""
    timed = [r for r in rows if r.get("timer")]
    with pinned_threads(args.threads):
        timings = measure_rows(
            [r["timer"] for r in timed], warmup=args.warmup, budget_s=args.budget, min_steps=args.steps
        )
    for r, timing in zip(timed, timings):
        r["timing"], r["ms"] = timing, timing.median
        del r["timer"]


def run_one_f_one_b(package: str, args, m: int) -> dict:
    """The student's per-stage 1F1B lists (Part 6) run in one process on the same model, traced."""
    per_stage = module(package, "per_stage")
    p = args.stages
    lists = parse_schedule({s: per_stage.one_f_one_b_actions(s, p, m) for s in range(p)})
    validate(lists, p, m)
    model_mod, devices, inputs, targets = _setting(package, args)
    model = model_mod.make_model(args.width, args.depth, seed=args.seed, kind=args.model)
    stages = even_partition(model, p, devices)
    sizes = split_sizes(args.batch, m)
    recorder = Recorder(inputs, sizes)
    executor = LocalExecutor(stages, recorder)
    with pinned_threads(args.threads):
        run_actions_single(
            [PipelineStage(executor, s, list(st.parameters())) for s, st in enumerate(stages)],
            inputs,
            targets,
            model_mod.loss_function(),
            m,
            lists,
        )
    executor.close()
    row = {"name": "1f1b", "m": m, "timing": None, "ms": None, "loss": None, "ref_loss": None, "rel_diff": 0.0}
    row.update(_replay_row(recorder, p, sizes))
    return row

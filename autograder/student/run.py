"""Run and compare the schedules: ``python -m assignment.run`` (the students' main tool).

``assignment/run.py`` (and ``solutions/run.py``) are two lines that call :func:`main` with their
package, so the tool runs on the student's own code (or the reference).

For each schedule (Option A naive, Option B GPipe, Option C delayed backward) this times a few
training steps of the course model split into p stages with m micro-batches, checks the
gradients against the single-device reference, and replays the recorded order of forwards and
backwards on p emulated in-order devices (what p GPUs would do with it). Examples::

    python -m assignment.run                      # p=4, m=4 on the default device
    python -m assignment.run -p 2 -m 8 --timeline # and draw each schedule's timeline
    python -m assignment.run --sweep              # the Part 4 table: m = 2, 4, 8
    python -m assignment.run --trace-dir out/     # Chrome traces (and PNGs with matplotlib)
    python -m assignment.run --sweep --plot out/  # Part 4 figures: timelines, sweep, in-flight (+ JSON data)
"""
from __future__ import annotations

import argparse
import ast
import importlib
import re
import statistics
import sys
import time
from pathlib import Path

import torch

from ..harness.stage import PipelineStage
from ..schedules import Costs, naive_schedule, replay, simulate
from ..tracing import LocalExecutor, Recorder

PACKAGE = "assignment"  # the package main() runs; set by main(package=...)

SCHEDULES = {  # name -> (label, step function name in schedules.py)
    "naive": ("A naive", "naive_step"),
    "gpipe": ("B GPipe", "gpipe_step"),
    "delayed": ("C delayed backward", "delayed_backward_step"),
}
TODO_PATTERN = re.compile(r"(part\d+\.\w+): (.*)", re.DOTALL)  # the skeleton's NotImplementedError message


class Usage(Exception):
    """A bad command-line argument: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise Usage(message)


def _positive():
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
        return value
    return parse


def _module(name: str):
    """``<package>.<name>``: the student's (or the reference's) module."""
    return importlib.import_module(f"{PACKAGE}.{name}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=f"python -m {PACKAGE}.run", description=__doc__.split("\n\n")[0])
    p.add_argument("-p", "--stages", type=_positive(), default=4, help="pipeline stages (default 4)")
    p.add_argument("-m", "--microbatches", type=_positive(), default=4,
                   help="micro-batches per step (default 4)")
    p.add_argument("--batch", type=_positive(), default=64, help="rows per batch (default 64)")
    p.add_argument("--width", type=_positive(), default=256, help="model width (default 256)")
    p.add_argument("--depth", type=_positive(), default=8, help="model layers (default 8)")
    p.add_argument("--model", choices=["mlp", "transformer"], default="mlp", help="course model (default mlp)")
    p.add_argument("--schedule", choices=["all", *SCHEDULES], default="all", help="which schedule(s) to run")
    p.add_argument("--steps", type=_positive(), default=5, help="timed steps, median reported (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where stages run (default auto)")
    p.add_argument("--seed", type=int, default=0, help="model and data seed (default 0)")
    p.add_argument("--sweep", action="store_true", help="Part 4: print the table for m = 2, 4, 8 as Markdown")
    p.add_argument("--timeline", action="store_true", help="draw each schedule's replayed timeline (ASCII)")
    p.add_argument("--trace-dir", type=Path, default=None,
                   help="write each schedule's timeline as Chrome trace JSON (and PNG if matplotlib is installed)")
    p.add_argument("--plot", type=Path, default=None, metavar="DIR",
                   help="write the figures to DIR: timelines (replayed and measured), step time, speedup and "
                        "bubble against m, peak in-flight micro-batches; PNG (with matplotlib) and JSON data")
    return p


def check_args(args) -> None:
    if args.model == "transformer" and args.width % 4:
        raise Usage(f"argument --width: the transformer needs a multiple of 4, got {args.width}")
    if args.stages > args.depth:
        raise Usage(f"argument --stages: {args.stages} stages need at least {args.stages} layers, --depth is {args.depth}")
    for m in ([2, 4, 8] if args.sweep else [args.microbatches]):
        if m > args.batch:
            raise Usage(f"argument --microbatches: {m} micro-batches need at least {m} rows, --batch is {args.batch}")
    if args.warmup < 0:
        raise Usage(f"argument --warmup: must be >= 0, got {args.warmup}")


def todo_tasks() -> list[tuple[str, str]]:
    """``(task id, hint)`` of every function in this package whose body (after its docstring)
    starts with the skeleton's ``raise NotImplementedError("<task id>: <hint>")``.

    Read from the syntax tree, not the text: a raise kept as a comment, or left after a ``return``,
    does not count; a file that does not parse is reported as a task of its own.
    """
    found = []
    for path in sorted(Path(importlib.import_module(PACKAGE).__file__).parent.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except SyntaxError as exc:
            found.append((path.name, f"does not parse: {exc.msg} (line {exc.lineno})"))
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef) or not node.body:
                continue
            body = node.body[1:] if isinstance(node.body[0], ast.Expr) and isinstance(
                getattr(node.body[0], "value", None), ast.Constant) else node.body
            first = body[0] if body else None
            if (isinstance(first, ast.Raise) and isinstance(first.exc, ast.Call)
                    and getattr(first.exc.func, "id", None) == "NotImplementedError" and first.exc.args
                    and isinstance(first.exc.args[0], ast.Constant) and isinstance(first.exc.args[0].value, str)):
                match = TODO_PATTERN.fullmatch(first.exc.args[0].value)
                if match:
                    found.append(match.groups())
    return found


def _sync(devices) -> None:
    for d in {d for d in devices if d.type == "cuda"}:
        torch.cuda.synchronize(d)


def run_schedule(name: str, args, m: int) -> dict:
    """Time the schedule, check it against the reference, replay one traced step."""

    split_microbatches = _module("microbatch").split_microbatches
    partition = _module("partition").partition
    devices_mod, model_mod = _module("devices"), _module("model")
    step = getattr(_module("schedules"), SCHEDULES[name][1])
    devices = devices_mod.stage_devices(args.stages, args.device)
    loss_fn = model_mod.loss_function()
    inputs, targets = model_mod.make_batch(args.batch, args.width, seed=args.seed, kind=args.model)

    # Correctness: one step from zero gradients against the single-device reference.
    reference = model_mod.make_model(args.width, args.depth, seed=args.seed, kind=args.model)
    ref_loss = model_mod.reference_step(reference, inputs, targets, loss_fn)
    model = model_mod.make_model(args.width, args.depth, seed=args.seed, kind=args.model)
    stages = partition(model, args.stages, devices)
    loss = step(stages, inputs, targets, loss_fn, m)
    if isinstance(loss, bool) or not isinstance(loss, (float, int)):
        raise TypeError(f"{SCHEDULES[name][1]} returned {type(loss).__name__}; return the batch loss as a Python float")
    g_ref = max(p.grad.abs().max().item() for p in reference.parameters())
    diff = max((p.grad.cpu() - q.grad).abs().max().item() if p.grad is not None else float("inf")
               for p, q in zip(model.parameters(), reference.parameters()))

    # Timing: median over steps after warm-up (gradients keep accumulating; that costs nothing extra).
    times = []
    for i in range(args.warmup + args.steps):
        _sync(devices)
        start = time.perf_counter()
        step(stages, inputs, targets, loss_fn, m)
        _sync(devices)
        if i >= args.warmup:
            times.append(time.perf_counter() - start)

    # Replay: the order this schedule really ran in, on p emulated in-order devices.
    sizes = [int(x.shape[0]) for x, _ in split_microbatches(inputs, targets, m)]
    recorder = Recorder(inputs, sizes)
    executor = LocalExecutor(stages, recorder)
    step([PipelineStage(executor, s, list(stage.parameters())) for s, stage in enumerate(stages)],
         inputs, targets, loss_fn, m)
    executor.close()
    costs = Costs(forward=1.0, backward=2.0, rows=tuple(sizes))
    replayed = replay(recorder.plain_events(), costs)
    serial = simulate(naive_schedule(args.stages, m), costs).makespan
    return {"name": name, "m": m, "ms": 1000 * statistics.median(times), "loss": loss, "ref_loss": ref_loss,
            "rel_diff": diff / g_ref if g_ref else diff, "replayed": replayed, "speedup": serial / replayed.makespan,
            "events": recorder.plain_events(), "notes": recorder.notes, "rows": sizes}


def _row(r, args) -> str:
    ok = "ok" if r["rel_diff"] <= 1e-3 and abs(r["loss"] - r["ref_loss"]) <= 1e-4 * abs(r["ref_loss"]) + 1e-6 else "WRONG"
    peak = max(r["replayed"].peak_in_flight.values())
    return (f"| {SCHEDULES[r['name']][0]:<18} | {args.stages} | {r['m']:>2} | {r['ms']:>9.2f} | "
            f"{r['speedup']:>8.2f}x | {r['replayed'].bubble_fraction:>6.1%} | {peak:>4} | "
            f"{r['loss']:.6f} | {r['rel_diff']:.1e} {ok:<5} |")


HEADER = ("| schedule           | p |  m | step (ms) | replayed | bubble | peak | loss     | max dg/g_ref   |\n"
          "|--------------------|---|----|-----------|----------|--------|------|----------|----------------|")


def main(argv=None, package: str = "assignment") -> int:
    global PACKAGE
    PACKAGE = package
    try:
        args = build_parser().parse_args(argv)
        check_args(args)
        devices_mod = _module("devices")
        placement = devices_mod.describe_placement(devices_mod.stage_devices(args.stages, args.device))
    except (Usage, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    todo = todo_tasks()
    missing = {t for t, _ in todo}
    if todo:
        print(f"Still to implement ({len(todo)} task(s)):")
        for task, hint in todo:
            print(f"  {task:<26} {hint}")
    if missing & {"part1.partition", "part1.split_microbatches", "part1.microbatch_loss"}:
        print("Implement the part1 tasks first: every schedule needs them.")
        return 1
    names = list(SCHEDULES) if args.schedule == "all" else [args.schedule]
    print(f"{args.model} model: width {args.width}, depth {args.depth}, batch {args.batch}; {placement}.")
    print("step = measured median; replayed = speedup over naive on p emulated in-order devices "
          "(F = rows, B = 2 x rows); peak = most micro-batches in flight on a stage.\n")
    print(HEADER)
    failed = False
    results = []
    for m in ([2, 4, 8] if args.sweep else [args.microbatches]):
        for name in names:
            task = {"naive": "part1.naive_step", "gpipe": "part2.gpipe_step", "delayed": "part3.delayed_backward_step"}[name]
            if task in missing:
                print(f"| {SCHEDULES[name][0]:<18} | {args.stages} | {m:>2} | not implemented yet ({task})")
                continue
            try:
                r = run_schedule(name, args, m)
            except Exception as exc:  # a student's bug: one line, not a traceback
                failed = True
                print(f"| {SCHEDULES[name][0]:<18} | {args.stages} | {m:>2} | failed: {type(exc).__name__}: "
                      f"{str(exc).splitlines()[0] if str(exc) else ''}")
                continue
            results.append(r)
            print(_row(r, args))
            failed |= r["rel_diff"] > 1e-3
    try:
        write_pictures(results, args)
    except OSError as exc:  # e.g. --trace-dir names a file
        print(f"error: cannot write there: {exc}", file=sys.stderr)
        return 2
    return 1 if failed or todo else 0


def write_pictures(results: list[dict], args) -> None:
    """``--timeline`` (ASCII), ``--trace-dir`` (Chrome traces, PNGs) and ``--plot`` (figures)."""
    if args.timeline or args.trace_dir:
        from autograder.schedules.timeline import ascii_gantt, save_png, write_chrome_trace
        for r in results:
            title = f"{SCHEDULES[r['name']][0]}, p={args.stages}, m={r['m']} (replayed)"
            if args.timeline:
                print(f"\n{title}\n" + ascii_gantt(r["replayed"], width=96))
            if args.trace_dir:
                args.trace_dir.mkdir(parents=True, exist_ok=True)
                stem = args.trace_dir / f"{r['name']}-p{args.stages}-m{r['m']}"
                write_chrome_trace(r["replayed"], stem.with_suffix(".json"))
                try:
                    save_png(r["replayed"], stem.with_suffix(".png"), title=title)
                except RuntimeError as exc:
                    print(f"(no PNG: {exc})")
        if args.trace_dir:
            print(f"\nTimelines written to {args.trace_dir}/ (open the .json files in https://ui.perfetto.dev)")
    if args.plot and results:
        from .figures import write_figures
        written = write_figures(results, args, args.plot, package=PACKAGE)
        print(f"\nFigures written to {args.plot}/: {len(written)} files (PNG figures, JSON data, "
              f"Chrome traces for https://ui.perfetto.dev)")
    elif args.plot:
        print(f"\nNo figures written to {args.plot}/: no schedule ran")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

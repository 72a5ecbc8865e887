"""Command line: ``python -m autograder.dist`` (also under ``torchrun``; ``python -m
autograder.runtime`` is the old name)."""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from dataclasses import asdict

import torch

from ..schedules import Schedule, parse_schedule
from .pool import _rank_device, launch
from .rank import run_rank
from .result import RunResult, merge
from .single import max_relative_error, reference_gradients
from .spec import (
    DEFAULT_INIT_TIMEOUT,
    DEFAULT_RECV_TIMEOUT,
    PipelineError,
    PipelineSpec,
    RuntimeInputError,
    _plain_schedule,
    check_schedule,
    check_spec,
)

SCHEDULE_NAMES = ("naive", "gpipe", "1f1b", "interleaved", "zero_bubble")
DEFAULT_IMPLS = ("solutions", "assignment")  # without --impl: the first of these packages that exists


def schedule_named(name: str, p: int, m: int, impl: str | None = None, v: int = 1) -> Schedule:
    """The schedule ``name``: ``naive`` (fixed), or a package's per-stage lists.

    ``gpipe`` and ``1f1b`` are Part 6 of the assignment: ``{s: gpipe_actions(s, p, m)}`` and
    ``{s: one_f_one_b_actions(s, p, m)}`` from ``<impl>/per_stage.py``; ``interleaved`` (v chunks per
    rank) and ``zero_bubble`` are Part 7's. ``impl`` is ``assignment``,
    ``solutions`` or a submission directory; by default the first of :data:`DEFAULT_IMPLS` that
    this repository has (a student's repository has only ``assignment``). Raises
    NotImplementedError while the task is not done.
    """
    from ..schedules import naive_schedule

    if name not in SCHEDULE_NAMES:
        raise RuntimeInputError(f"unknown schedule {name!r}: choose one of {', '.join(SCHEDULE_NAMES)}")
    if name == "naive":
        return naive_schedule(p, m)
    mod = _per_stage_module(impl)
    if name == "interleaved":
        try:
            return parse_schedule({r: mod.interleaved_actions(r, p, m, v) for r in range(p)})
        except ValueError as exc:
            raise RuntimeInputError(f"interleaved_actions: {exc}") from None
    fn = {"gpipe": mod.gpipe_actions, "1f1b": mod.one_f_one_b_actions, "zero_bubble": mod.zero_bubble_actions}[name]
    return parse_schedule({s: fn(s, p, m) for s in range(p)})


def _per_stage_module(impl: str | None):
    """``<impl>/per_stage.py`` imported in this process (this is the student's own tool): a package of
    this repository, or a submission folder, staged first so that only its editable files are used."""
    import importlib
    import tempfile
    from pathlib import Path

    from ..judge.staging import REPO_ROOT, StagingError, stage

    if impl is None:
        impl = next((n for n in DEFAULT_IMPLS if (REPO_ROOT / n / "per_stage.py").is_file()), DEFAULT_IMPLS[-1])
    if impl in DEFAULT_IMPLS:
        return importlib.import_module(f"{impl}.per_stage")
    try:
        staged = stage(Path(impl), Path(tempfile.mkdtemp(prefix="pp-lists-")) / "impl")
    except StagingError as exc:
        raise RuntimeInputError(f"--impl {impl}: {exc}") from None
    sys.path.insert(0, str(staged.root))
    return importlib.import_module(f"{staged.package}.per_stage")


def summary(result: RunResult, width: int = 100) -> str:
    """A few lines for people: step times, measured/ideal, gradient error, the timeline."""
    from ..schedules.timeline import ascii_gantt

    spec = result.spec
    loss, ref = reference_gradients(spec)
    err = max_relative_error(result.grads, ref)
    lines = [f"{spec}: {len(result.step_times)} step(s), median step {result.median_step_time * 1e3:.2f} ms"]
    if spec.seconds_per_batch:
        ideal = spec.simulated_step_time(result.schedule)
        lines[-1] += (
            f", ideal (simulated makespan) = {ideal * 1e3:.2f} ms, measured/ideal {result.median_step_time / ideal:.3f}"
        )
    lines.append(f"loss {result.loss:.6g} (reference {loss:.6g}); max |g - g_ref| / max |g_ref| = {err:.2e}")
    lines.append(ascii_gantt(result.timeline(), width=width))
    return "\n".join(lines)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m autograder.dist",
        description="Run a per-stage pipeline schedule with one process per stage (torch.distributed). "
        "Starts its own processes, or runs as one rank under torchrun.",
    )
    parser.add_argument(
        "--schedule", default="1f1b", help=f"which lists to run: {', '.join(SCHEDULE_NAMES)} (default 1f1b)"
    )
    parser.add_argument("-v", "--stages-per-rank", type=int, default=1, help="model chunks per rank (interleaved)")
    parser.add_argument(
        "--impl",
        default=None,
        help="take the lists from this package's per_stage.py: assignment, solutions or "
        "a submission directory (default: solutions if this repository has it, else assignment)",
    )
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
        print(
            f"error: {spec.num_stages} stages need {spec.num_stages} ranks, torchrun started {world}", file=sys.stderr
        )
        return 2
    torch.set_num_threads(1)
    backend = args.backend or (
        "nccl" if torch.cuda.is_available() and torch.cuda.device_count() > local_rank else "gloo"
    )
    if backend == "nccl":
        os.environ.setdefault("TORCH_NCCL_BLOCKING_WAIT", "1")
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=DEFAULT_INIT_TIMEOUT))
    job = {
        "id": 1,
        "schedule": _plain_schedule(schedule),
        "spec": asdict(spec),
        "steps": args.steps,
        "recv_timeout": args.recv_timeout,
        "transport": "p2p",
    }  # ranks may be on several machines
    out = run_rank(rank, world, job, _rank_device(backend, local_rank))
    if out["error"]:
        print(f"error: {out['error']}", file=sys.stderr, flush=True)
        os._exit(1)  # the group may be broken: do not wait in a collective
    gathered = [None] * world if rank == 0 else None
    dist.gather_object(out, gathered, dst=0)
    if rank == 0:
        print(summary(merge(spec, schedule, gathered)))
    dist.destroy_process_group()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    v = args.stages_per_rank if args.schedule == "interleaved" else 1
    spec = PipelineSpec(
        args.stages,
        args.microbatches,
        args.batch,
        width=args.width,
        depth=args.depth,
        seed=args.seed,
        kind=args.kind,
        seconds_per_batch=args.f,
        stages_per_rank=v,
    )
    try:
        check_spec(spec)
        schedule = check_schedule(
            schedule_named(args.schedule, args.stages, args.microbatches, args.impl, v),
            args.stages,
            args.microbatches,
            stages_per_rank=v,
        )
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

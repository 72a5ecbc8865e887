"""Benchmark (not a test): this runtime against torch.distributed.pipelining, same model and emulated time.

    python -m autograder.bench                      # p=4, m=8, f=5 ms and 20 ms, 3 rounds x 10 timed steps
    python -m autograder.bench -p 2 -m 8 --f 0.01 --steps 20
    python -m autograder.bench --no-torch --profile  # where this runtime's time goes, per action

Both sides run one process per rank over gloo on the CPU, on the course model split by the judge's
even partition (into p x v stages for interleaving, stage s on rank s % p), with the same emulated
device time per action (``autograder.dist.emulate.DeviceTime``: forward ``F = f x rows / batch``
per stage of the non-interleaved model, ``f / v`` per chunk, backward ``B = 2F``, its halves
``I = W = F``), timed the same way on both sides: from the moment the runtime starts the action
(torch: ``forward_one_chunk`` plus the loss on the last stage, ``backward_one_chunk``,
``backward_weight_one_chunk``) to start + emulated, its real compute included. Each side starts its
processes once, runs ``--warmup`` untimed steps (torch.distributed.pipelining infers shapes on its
first step), then ``--steps`` timed steps; a step is timed from a barrier to the last rank's end,
on the machine's shared monotonic clock.

Schedules: naive (this runtime only), GPipe, 1F1B, interleaved 1F1B (v = 2) and ZB-H1. This
runtime runs the reference lists of ``autograder.instructor.reference_schedules``; torch runs its
own classes (``ScheduleGPipe``, ``Schedule1F1B``, ``ScheduleInterleaved1F1B``,
``ScheduleInterleavedZeroBubble`` with one stage per rank). The ideal of a row is the makespan of
the list it ran on in-order devices with the emulated costs (``autograder.schedules.simulate``):
``(m + p - 1)(F + B)`` for GPipe and 1F1B, ``p m (F + B)`` for naive.

The two runtimes take turns (``--rounds``, each side at each f per round) so that both see the
same machine load. Printed: a Markdown table with, per runtime and schedule, the median step time
over all rounds, the ideal, their ratio (1.00 = no overhead at all) and the range of the rounds'
ratios; then the machine it ran on.

A TA tool: the student release leaves it out (it runs the reference lists, the answers of Parts 6-7).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch

from ..dist import profile
from ..dist.emulate import naive_step_time, simulated_step_time
from ..dist.pool import PipelinePool
from ..dist.spec import PipelineSpec
from ..schedules import Schedule, naive_schedule
from .bench_torch import CHUNKS, TORCH_SCHEDULES, run_torch_pipelining, torch_pipeline_order
from .reference_schedules import (
    gpipe_schedule,
    interleaved_1f1b_schedule,
    one_f_one_b_schedule,
    zero_bubble_h1_schedule,
)

NAMES = {
    "naive": "naive (F0 B0 F1 B1 ... on every stage)",
    "gpipe": "GPipe",
    "1f1b": "1F1B",
    "interleaved": "interleaved 1F1B (v = 2)",
    "zb-h1": "ZB-H1",
}


def reference_lists(name: str, p: int, m: int) -> Schedule:
    """The list this runtime runs for ``name`` (see :data:`NAMES`)."""
    if name == "interleaved":
        return interleaved_1f1b_schedule(p, m, CHUNKS[name])
    makers = {
        "naive": naive_schedule,
        "gpipe": gpipe_schedule,
        "1f1b": one_f_one_b_schedule,
        "zb-h1": zero_bubble_h1_schedule,
    }
    return makers[name](p, m)


# -- this runtime ---------------------------------------------------------------------------------


def run_this_runtime(
    pool: PipelinePool, spec: PipelineSpec, names: list[str], warmup: int, steps: int, keep: list | None = None
) -> dict[str, list[float] | str]:
    """Step times (seconds) per schedule, or a one-line reason a schedule could not run; ``keep``
    collects each run's :class:`RunResult` (for the per-action profile)."""
    out: dict[str, list[float] | str] = {}
    for name in names:
        run_spec = PipelineSpec(**{**spec.__dict__, "stages_per_rank": CHUNKS[name]})
        try:
            lists = reference_lists(name, spec.num_stages, spec.num_microbatches)
        except ValueError as exc:
            out[name] = str(exc).splitlines()[0]
            continue
        result = pool.run(lists, run_spec, warmup + steps)
        out[name] = result.step_times[warmup:]
        if keep is not None:
            keep.append(result)
    return out


# -- report ---------------------------------------------------------------------------------------


def machine() -> str:
    """One line: CPU model, cores, OS, Python and torch versions."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return (
        f"{model}, {os.cpu_count()} logical CPU(s){gpu}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; torch {torch.__version__}"
    )


def ideal_time(runtime: str, name: str, spec: PipelineSpec) -> float:
    """Seconds: the simulated makespan of the list ``runtime`` runs for ``name`` (naive: ``p m (F + B)``)."""
    p, m, f = spec.num_stages, spec.num_microbatches, spec.seconds_per_batch
    if name == "naive":
        return naive_step_time(p, f)
    lists = torch_pipeline_order(name, p, m) if runtime.startswith("torch") else reference_lists(name, p, m)
    return simulated_step_time(lists, f, spec.sizes, CHUNKS[name])


def table(rows: dict[tuple[str, str, PipelineSpec], list[list[float]] | str]) -> str:
    """``rows``: (runtime, schedule, spec) -> the timed steps of each round, or why it could not run."""
    lines = [
        "| runtime | schedule | p | m | f (ms) | median step (ms) | ideal (ms) | measured / ideal "
        "| round medians / ideal |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (runtime, name, spec), rounds in rows.items():
        p, m, f = spec.num_stages, spec.num_microbatches, spec.seconds_per_batch
        head = f"| {runtime} | {NAMES[name]} | {p} | {m} | {f * 1e3:g} |"
        try:
            ideal = ideal_time(runtime, name, spec)
        except ValueError as exc:
            lines.append(f"{head} n/a | n/a | n/a | {str(exc).splitlines()[0]} |")
            continue
        if isinstance(rounds, str):
            lines.append(f"{head} n/a | {ideal * 1e3:.1f} | n/a | {rounds} |")
            continue
        med = statistics.median(t for times in rounds for t in times)
        per_round = sorted(statistics.median(times) / ideal for times in rounds)
        lines.append(
            f"{head} {med * 1e3:.1f} | {ideal * 1e3:.1f} | {med / ideal:.2f} | {per_round[0]:.2f}-{per_round[-1]:.2f} |"
        )
    return "\n".join(lines)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m autograder.bench", description=__doc__.splitlines()[0])
    parser.add_argument("-p", "--stages", type=int, default=4)
    parser.add_argument("-m", "--microbatches", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument(
        "--f",
        type=float,
        nargs="+",
        default=[0.005, 0.02],
        help="emulated seconds of forward per whole batch and stage (several allowed)",
    )
    parser.add_argument("--steps", type=int, default=10, help="timed steps per schedule and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, alternating the two runtimes")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument(
        "--schedules", nargs="+", default=list(NAMES), choices=list(NAMES), help="schedules to run (default: all)"
    )
    parser.add_argument("--no-torch", action="store_true", help="skip torch.distributed.pipelining")
    parser.add_argument(
        "--profile", action="store_true", help="also print where this runtime's time goes per action, at each f"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    specs = [
        PipelineSpec(
            args.stages, args.microbatches, args.batch, width=args.width, depth=args.depth, seconds_per_batch=f
        )
        for f in args.f
    ]
    ours = [n for n in NAMES if n in args.schedules and args.stages * CHUNKS[n] <= args.depth]
    theirs = [n for n in TORCH_SCHEDULES if n in ours and not args.no_torch]
    rows: dict = {}
    started = time.monotonic()
    print(
        f"benchmark: p={args.stages}, m={args.microbatches}, batch={args.batch}, f={args.f} s, "
        f"{args.rounds} round(s) of {args.warmup} warm-up + {args.steps} timed steps per schedule ...",
        file=sys.stderr,
        flush=True,
    )

    def add(key, times) -> None:
        if isinstance(times, str) or isinstance(rows.get(key), str):
            rows[key] = rows.get(key) if isinstance(rows.get(key), str) else times
        else:
            rows.setdefault(key, []).append(times)

    kept: dict[float, list] = {spec.seconds_per_batch: [] for spec in specs}
    with PipelinePool(args.stages, backend="gloo") as pool:
        # Both sides at one f, then the next f, round after round: they see the same machine load.
        for _ in range(args.rounds):
            for spec in specs:
                keep = kept[spec.seconds_per_batch] if args.profile else None
                for name, times in run_this_runtime(pool, spec, ours, args.warmup, args.steps, keep).items():
                    add(("this runtime (autograder.dist)", name, spec), times)
                if theirs:
                    got = run_torch_pipelining(spec, theirs, args.warmup, args.steps)
                    for name in theirs:
                        add(("torch.distributed.pipelining", name, spec), got if isinstance(got, str) else got[name])
    order = {name: i for i, name in enumerate(NAMES)}
    rows = dict(sorted(rows.items(), key=lambda kv: (kv[0][2].seconds_per_batch, order[kv[0][1]], kv[0][0])))
    print(table(rows))
    print()
    print(
        f"Machine: {machine()}. One process per rank, gloo on CPU (this runtime's messages: {pool.transport}), "
        f"emulated device time F = f/(v m), B = 2F, I = W = F per micro-batch and stage; ideal = simulated "
        f"makespan of each row's list ((m+p-1)(F+B) for GPipe and 1F1B, p m (F+B) naive); median of "
        f"{args.rounds} x {args.steps} steps, each round after {args.warmup} warm-up steps; "
        f"total {time.monotonic() - started:.0f} s."
    )
    for f, results in kept.items():
        if results:
            print(f"\nThis runtime, per action at f = {f * 1e3:g} ms (every schedule, warm-up steps left out):")
            print(profile.summary(results, skip=args.warmup))
    return 0


if __name__ == "__main__":
    sys.exit(main())

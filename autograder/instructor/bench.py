"""Benchmark (not a test): this runtime against torch.distributed.pipelining, same model and emulated time.

    python -m autograder.bench                      # p=4, m=8, f=5 ms and 20 ms, 3 rounds x 10 timed steps
    python -m autograder.bench -p 2 -m 8 --f 0.01 --steps 20

Both sides run one process per stage over gloo on the CPU, on the course model split by the judge's
even partition, every stage wrapped in the same emulated device time (``autograder.dist.emulate``:
forward ``F = f x rows / batch``, backward ``2F``, the stage's real compute included). Each side
starts its processes once, runs ``--warmup`` untimed steps (torch.distributed.pipelining infers
shapes on its first step), then ``--steps`` timed steps; a step is timed from a barrier to the
last rank's end, on the machine's shared monotonic clock.

The two runtimes take turns (``--rounds``, each side at each f per round) so that both see the
same machine load. Printed: a Markdown table with, per runtime and schedule, the median step time
over all rounds, the ideal ``(m + p - 1)(F + B)`` of the emulated costs (``p (F + B) m`` for the
naive schedule), their ratio (1.00 = no overhead at all) and the range of the rounds' ratios; then
the machine it ran on.

A TA tool: the student release leaves it out (it runs the reference GPipe and 1F1B lists of
``autograder.reference_schedules``, the answers of Part 6).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from typing import Optional

import torch

from ..dist.emulate import EmulatedTime, ideal_step_time, naive_step_time
from ..dist.model import course_model, even_partition
from ..dist.pool import PipelinePool, _use_loopback, default_start_method
from ..dist.spec import PipelineSpec
from ..schedules import naive_schedule
from .reference_schedules import gpipe_schedule, one_f_one_b_schedule


# -- torch.distributed.pipelining -----------------------------------------------------------------

def _torch_worker(rank: int, p: int, port: int, spec_fields: dict, schedules: list[str], warmup: int,
                  steps: int, results) -> None:
    """One rank of torch.distributed.pipelining: run each schedule, report [t0, t_end] per timed step."""
    import torch.distributed as dist
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

    torch.set_num_threads(1)
    _use_loopback("gloo")
    try:
        spec = PipelineSpec(**spec_fields)
        store = dist.TCPStore("127.0.0.1", port, p, is_master=False, timeout=datetime.timedelta(seconds=120))
        dist.init_process_group("gloo", store=store, rank=rank, world_size=p,
                                timeout=datetime.timedelta(seconds=120))
        M = course_model()
        model = M.make_model(spec.width, spec.depth, seed=spec.seed, kind=spec.kind)
        inputs, targets = M.make_batch(spec.batch_size, spec.width, seed=spec.seed, kind=spec.kind)
        stage_module = even_partition(model, p, [torch.device("cpu")] * p)[rank]
        module = EmulatedTime(stage_module, spec.seconds_per_batch, spec.batch_size)
        loss_fn = M.loss_function()
        makers = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}
        out = {"rank": rank, "error": None, "times": {}}
        for name in schedules:
            stage = PipelineStage(module, rank, p, torch.device("cpu"))
            schedule = makers[name](stage, spec.num_microbatches, loss_fn=loss_fn)
            times = []
            for i in range(warmup + steps):
                module.zero_grad(set_to_none=True)
                dist.barrier()
                t0 = time.perf_counter()
                if rank == 0:
                    schedule.step(inputs)
                elif rank == p - 1:
                    schedule.step(target=targets, losses=[])
                else:
                    schedule.step()
                if i >= warmup:
                    times.append([t0, time.perf_counter()])
            out["times"][name] = times
    except Exception as exc:  # report, do not hang the parent
        out = {"rank": rank, "error": f"{type(exc).__name__}: {str(exc).strip()[:300]}", "times": {}}
    results.put(out)
    try:
        dist.barrier()
        dist.destroy_process_group()
    finally:
        os._exit(0)


def run_torch_pipelining(spec: PipelineSpec, schedules: list[str], warmup: int, steps: int
                         ) -> dict[str, list[float]] | str:
    """Step times (seconds) per schedule for torch.distributed.pipelining, or a one-line reason it could not run."""
    try:
        import torch.distributed.pipelining  # noqa: F401
    except ImportError as exc:
        return f"torch.distributed.pipelining not importable in torch {torch.__version__}: {exc}"
    import queue

    import torch.distributed as dist
    import torch.multiprocessing as mp

    p = spec.num_stages
    method = default_start_method()
    ctx = mp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["autograder.bench"])
    store = dist.TCPStore("127.0.0.1", 0, p + 1, is_master=True, wait_for_workers=False)
    results = ctx.Queue()
    procs = [ctx.Process(target=_torch_worker, daemon=True,
                         args=(r, p, store.port, spec.__dict__, schedules, warmup, steps, results))
             for r in range(p)]
    for proc in procs:
        proc.start()
    got = {}
    deadline = time.monotonic() + 600
    while len(got) < p and time.monotonic() < deadline:
        try:
            msg = results.get(timeout=0.5)
            got[msg["rank"]] = msg
        except queue.Empty:
            if any(not proc.is_alive() for proc in procs) and results.empty():
                time.sleep(0.5)
                if results.empty():
                    break
    for proc in procs:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
    errors = [m["error"] for m in got.values() if m["error"]]
    if errors or len(got) < p:
        return "torch.distributed.pipelining failed: " + ("; ".join(errors) if errors else "a rank died")
    out = {}
    for name in schedules:
        per_step = zip(*(got[r]["times"][name] for r in range(p)))
        out[name] = [max(end for _, end in ranks) - min(start for start, _ in ranks) for ranks in per_step]
    return out


# -- this runtime ---------------------------------------------------------------------------------

def run_this_runtime(pool: PipelinePool, spec: PipelineSpec, warmup: int, steps: int) -> dict[str, list[float]]:
    makers = {"naive": naive_schedule, "gpipe": gpipe_schedule, "1f1b": one_f_one_b_schedule}
    out = {}
    for name, make in makers.items():
        result = pool.run(make(spec.num_stages, spec.num_microbatches), spec, warmup + steps)
        out[name] = result.step_times[warmup:]
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
    return (f"{model}, {os.cpu_count()} logical CPU(s){gpu}; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}; torch {torch.__version__}")


NAMES = {"naive": "naive (F0 B0 F1 B1 ... on every stage)", "gpipe": "GPipe", "1f1b": "1F1B"}


def table(rows: dict[tuple[str, str, PipelineSpec], list[list[float]] | str]) -> str:
    """``rows``: (runtime, schedule, spec) -> the timed steps of each round, or why it could not run."""
    lines = ["| runtime | schedule | p | m | f (ms) | median step (ms) | ideal (ms) | measured / ideal "
             "| round medians / ideal |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (runtime, name, spec), rounds in rows.items():
        p, m, f = spec.num_stages, spec.num_microbatches, spec.seconds_per_batch
        ideal = naive_step_time(p, f) if name == "naive" else ideal_step_time(p, m, f)
        head = f"| {runtime} | {NAMES[name]} | {p} | {m} | {f * 1e3:g} |"
        if isinstance(rounds, str):
            lines.append(f"{head} n/a | {ideal * 1e3:.1f} | n/a | {rounds} |")
            continue
        med = statistics.median(t for times in rounds for t in times)
        per_round = sorted(statistics.median(times) / ideal for times in rounds)
        lines.append(f"{head} {med * 1e3:.1f} | {ideal * 1e3:.1f} | {med / ideal:.2f} | "
                     f"{per_round[0]:.2f}-{per_round[-1]:.2f} |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.bench", description=__doc__.splitlines()[0])
    parser.add_argument("-p", "--stages", type=int, default=4)
    parser.add_argument("-m", "--microbatches", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--f", type=float, nargs="+", default=[0.005, 0.02],
                        help="emulated seconds of forward per whole batch and stage (several allowed)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per schedule and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, alternating the two runtimes")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--no-torch", action="store_true", help="skip torch.distributed.pipelining")
    args = parser.parse_args(argv)
    specs = [PipelineSpec(args.stages, args.microbatches, args.batch, width=args.width, depth=args.depth,
                          seconds_per_batch=f) for f in args.f]
    rows: dict = {}
    started = time.monotonic()
    print(f"benchmark: p={args.stages}, m={args.microbatches}, batch={args.batch}, f={args.f} s, "
          f"{args.rounds} round(s) of {args.warmup} warm-up + {args.steps} timed steps per schedule ...",
          file=sys.stderr, flush=True)

    def add(key, times) -> None:
        if isinstance(times, str) or isinstance(rows.get(key), str):
            rows[key] = rows.get(key) if isinstance(rows.get(key), str) else times
        else:
            rows.setdefault(key, []).append(times)

    with PipelinePool(args.stages, backend="gloo") as pool:
        # Both sides at one f, then the next f, round after round: they see the same machine load.
        for _ in range(args.rounds):
            for spec in specs:
                for name, times in run_this_runtime(pool, spec, args.warmup, args.steps).items():
                    add(("this runtime (autograder.dist)", name, spec), times)
                if not args.no_torch:
                    got = run_torch_pipelining(spec, ["gpipe", "1f1b"], args.warmup, args.steps)
                    for name in ("gpipe", "1f1b"):
                        add(("torch.distributed.pipelining", name, spec), got if isinstance(got, str) else got[name])
    order = {"naive": 0, "gpipe": 1, "1f1b": 2}
    rows = dict(sorted(rows.items(), key=lambda kv: (kv[0][2].seconds_per_batch, order[kv[0][1]], kv[0][0])))
    print(table(rows))
    print()
    print(f"Machine: {machine()}. One process per stage, gloo on CPU, emulated device time "
          f"F = f/m, B = 2F per micro-batch and stage; ideal = (m+p-1)(F+B) (naive: p m (F+B)); "
          f"median of {args.rounds} x {args.steps} steps, each round after {args.warmup} warm-up steps; "
          f"total {time.monotonic() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run and compare the schedules: ``python -m assignment.run`` (the students' main tool).

``assignment/run.py`` (and ``solutions/run.py``) are a few lines that call :func:`main` with their
package, so the tool runs on the student's own code (or the reference). For each schedule (Option A
naive, Option B GPipe, Option C the delayed-backward loop) it checks one step against the
single-device reference, times steps until their spread is small (or a time budget ends), and
replays the recorded order of forwards and backwards on p emulated in-order devices (what p GPUs
would do with it). Examples::

    python -m assignment.run                      # p=4, m=4 on the default device
    python -m assignment.run -p 2 -m 8 --timeline # and draw each schedule's timeline
    python -m assignment.run --sweep              # the Part 4 table: m = 2, 4, 8 (+ your per-stage 1F1B)
    python -m assignment.run --trace-dir out/     # Chrome traces (and PNGs with matplotlib)
    python -m assignment.run --sweep --plot out/  # Part 4 figures: timelines, sweep, memory (+ JSON data)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import practical
from ..harness.errors import first_line
from . import steps as S
from .table import render, todo_tasks, warnings

SWEEP_MS = (2, 4, 8)


class Usage(Exception):
    """A bad command-line argument: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise Usage(message)


def _positive(kind=int):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
        return value

    return parse


def build_parser(package: str = practical.PACKAGE) -> argparse.ArgumentParser:
    p = _Parser(prog=f"python -m {package}.run", description=__doc__.split("\n\n")[0])
    p.add_argument("-p", "--stages", type=_positive(), default=4, help="pipeline stages (default 4)")
    p.add_argument("-m", "--microbatches", type=_positive(), default=4, help="micro-batches per step (default 4)")
    p.add_argument("--batch", type=_positive(), default=64, help="rows per batch (default 64)")
    p.add_argument("--width", type=_positive(), default=256, help="model width (default 256)")
    p.add_argument("--depth", type=_positive(), default=8, help="model layers (default 8)")
    p.add_argument("--model", choices=["mlp", "transformer"], default="mlp", help="course model (default mlp)")
    p.add_argument(
        "--schedule", choices=["all", *practical.STEP_SCHEDULES], default="all", help="which schedule(s) to run"
    )
    p.add_argument("--steps", type=_positive(), default=7, help="timed steps at least (default 7)")
    p.add_argument(
        "--budget",
        type=_positive(float),
        default=2.0,
        help="seconds of timing per row at most; timing stops earlier once the spread is small",
    )
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads while timing (default 1: every schedule gets the same; 0 = torch's default)",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where stages run (default auto)")
    p.add_argument("--seed", type=int, default=0, help="model and data seed (default 0)")
    p.add_argument("--sweep", action="store_true", help="Part 4: the table for m = 2, 4, 8 as Markdown")
    p.add_argument("--timeline", action="store_true", help="draw each schedule's replayed timeline (ASCII)")
    p.add_argument(
        "--trace-dir",
        type=Path,
        default=None,
        help="write each schedule's timeline as Chrome trace JSON (and PNG if matplotlib is installed)",
    )
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="DIR",
        help="write the figures to DIR: timelines (replayed and measured), step time, speedup, bubble "
        "and activation memory against m; PNG (with matplotlib) and JSON data",
    )
    return p


def check_args(args) -> None:
    if args.model == "transformer" and args.width % 4:
        raise Usage(f"argument --width: the transformer needs a multiple of 4, got {args.width}")
    if args.stages > args.depth:
        raise Usage(
            f"argument --stages: {args.stages} stages need at least {args.stages} layers, --depth is {args.depth}"
        )
    for m in SWEEP_MS if args.sweep else [args.microbatches]:
        if m > args.batch:
            raise Usage(f"argument --microbatches: {m} micro-batches need at least {m} rows, --batch is {args.batch}")
    if args.warmup < 0 or args.threads < 0:
        raise Usage("arguments --warmup and --threads: must be >= 0")


def _rows(package: str, args, missing: set[str]) -> tuple[list[dict], list[str], bool]:
    """Run every (m, schedule), then time the rows together; returns the results, the lines to print,
    and whether one failed."""
    names = list(practical.STEP_SCHEDULES) if args.schedule == "all" else [args.schedule]
    results: list[dict] = []
    entries: list[dict | str] = []  # a result (rendered once timed) or a line
    failed = False
    for m in SWEEP_MS if args.sweep else [args.microbatches]:
        for name in names:
            spec = practical.STEP_SCHEDULES[name]
            if spec.task in missing:
                entries.append(f"| {spec.label:<18} | {args.stages} | {m:>2} | not implemented yet ({spec.task})")
                continue
            try:
                results.append(S.run_schedule(package, name, args, m))
            except Exception as exc:  # a student's bug: one line, not a traceback
                failed = True
                first = first_line(exc)
                entries.append(f"| {spec.label:<18} | {args.stages} | {m:>2} | failed: {type(exc).__name__}: {first}")
                continue
            entries.append(results[-1])
            failed |= results[-1]["rel_diff"] > practical.GRAD_RTOL
        if args.sweep and "part6.one_f_one_b_actions" not in missing:
            try:
                results.append(S.run_one_f_one_b(package, args, m))
                entries.append(results[-1])
            except Exception as exc:  # noqa: BLE001 - the student's lists: one line
                first = first_line(exc)
                row = f"| per-stage 1F1B     | {args.stages} | {m:>2} |"
                entries.append(f"{row} not run: {type(exc).__name__}: {first}")
    try:
        S.time_rows(results, args)
    except Exception as exc:  # noqa: BLE001 - a step that fails only when repeated: one line
        first = first_line(exc)
        entries.append(f"timing failed: {type(exc).__name__}: {first} (does a second step fail?)")
        for r in results:
            r.pop("timer", None)
        failed = True
    lines = [e if isinstance(e, str) else render(e, args.stages) for e in entries]
    return results, lines, failed


def main(argv: list[str] | None = None, package: str = practical.PACKAGE) -> int:
    try:
        args = build_parser(package).parse_args(argv)
        check_args(args)
        placement = S.module(package, "devices").describe_placement(
            S.module(package, "devices").stage_devices(args.stages, args.device)
        )
    except (Usage, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    todo = todo_tasks(package)
    missing = {t for t, _ in todo}
    if todo:
        print(f"Still to implement ({len(todo)} task(s)):")
        for task, hint in todo:
            print(f"  {task:<28} {hint}")
    if missing & set(practical.PART1_HELPERS):
        print("Implement the part1 tasks first: every schedule needs them.")
        return 1
    threads = f"{args.threads} thread(s)" if args.threads else "torch's default threads"
    print(f"{args.model} model: width {args.width}, depth {args.depth}, batch {args.batch}; {placement}; {threads}.")
    print(LEGEND)
    results, lines, failed = _rows(package, args, missing)
    print("\n".join([HEADER, *lines]))
    for line in warnings(results):
        print(line)
    try:
        write_pictures(results, args, package)
    except OSError as exc:  # e.g. --trace-dir names a file
        print(f"error: cannot write there: {exc}", file=sys.stderr)
        return 2
    return 1 if failed or todo else 0


LEGEND = (
    "step = measured ms per step, median (interquartile range) over blocks of steps, every row timed in turn; "
    "replayed = speedup over naive on p emulated in-order devices (F = rows, B = 2 x rows); "
    "bubble = idle share of the replayed step; peak = most micro-batches in flight on a stage; "
    "act. KiB = most saved activations a stage holds (replayed).\n"
)
HEADER = (
    "| schedule           | p |  m | step ms (range)       | replayed | bubble | peak | act. KiB | loss     "
    "| max dg/g_ref   |\n"
    "|--------------------|---|----|-----------------------|----------|--------|------|----------|----------"
    "|----------------|"
)


def write_pictures(results: list[dict], args, package: str) -> None:
    """``--timeline`` (ASCII), ``--trace-dir`` (Chrome traces, PNGs) and ``--plot`` (figures)."""
    from ..schedules.timeline import ascii_gantt, save_png, write_chrome_trace
    from .table import label

    if args.timeline or args.trace_dir:
        for r in results:
            title = f"{label(r['name'])}, p={args.stages}, m={r['m']} (replayed)"
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

        written = write_figures(results, args, args.plot)
        print(
            f"\nFigures written to {args.plot}/: {len(written)} files (PNG figures, JSON data, "
            f"Chrome traces for https://ui.perfetto.dev)"
        )
    elif args.plot:
        print(f"\nNo figures written to {args.plot}/: no schedule ran")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

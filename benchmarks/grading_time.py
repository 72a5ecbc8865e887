"""How long the public autograder takes against the reference solutions (a benchmark, not a test).

    python benchmarks/grading_time.py            # in-process, as students run it
    python benchmarks/grading_time.py --isolate  # sandboxed child processes, as grading runs it

Prints the wall time of each run and the machine it ran on. Target: at most 60 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--isolate", action="store_true", help="also time the sandboxed run")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each kind (default 1)")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}")
    modes = [[]] + ([["--isolate"]] if args.isolate else [])
    worst = 0.0
    for extra in modes:
        for _ in range(args.repeat):
            start = time.perf_counter()
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "autograder",
                    "--impl",
                    "solutions",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    *extra,
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            seconds = time.perf_counter() - start
            worst = max(worst, seconds)
            total = next((line for line in proc.stdout.splitlines() if line.startswith("Total")), "no score table")
            print(f"pytest autograder --impl solutions {' '.join(extra):<10} {seconds:6.1f} s   {total}")
            if proc.returncode != 0:
                print(proc.stdout[-2000:])
                return 1
    print(f"slowest run: {worst:.1f} s (target: at most 60 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

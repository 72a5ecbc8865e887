"""How long grading the reference takes (a benchmark, not a test).

    python benchmarks/grading_time.py [--repeat N]

Times the two ways the autograder runs on the reference solutions: ``python -m pytest autograder/
--impl solutions`` (what students run locally, public tests) and ``python -m autograder.grade
solutions`` (what Gradescope runs: hidden tests included, results.json written). Both run student
code in the sandbox. Prints each run's wall time, the score, and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(
            f"error: {' '.join(cmd)} exited with {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    return seconds, proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs of each kind (default 1)")
    args = parser.parse_args()
    import torch

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results.json"
        kinds = {
            "pytest autograder/ --impl solutions (students, public tests)": [
                sys.executable,
                "-m",
                "pytest",
                "autograder",
                "--impl",
                "solutions",
                "-q",
                "--results-json",
                str(results),
            ],
            "autograder.grade solutions (Gradescope, hidden included)": [
                sys.executable,
                "-m",
                "autograder.grade",
                "solutions",
                "--results",
                str(results),
            ],
        }
        for label, cmd in kinds.items():
            for _ in range(args.repeat):
                seconds, _ = timed(cmd)
                score = json.loads(results.read_text())["score"]
                print(f"{label}: {seconds:.1f} s, score {score:g}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Every CUDA path of the practical in one run, one table at the end (for a machine with CUDA GPUs).

    bash benchmarks/gpu_check.sh            # or: python benchmarks/gpu_check.py [--quick]

1. the graded GPU tests (``autograder/graded/test_gpu.py``: real speedups of the student's
   single-process schedules on 2+ GPUs, timed with CUDA events; 0 points) on the reference;
2. the students' tool on CUDA: ``python -m solutions.run --device cuda --sweep`` (step times with
   their spread, replayed speedups, activation bytes) on as many GPUs as there are, up to 4;
3. the multi-process runtime over NCCL (one process per GPU) for every per-stage schedule: the
   gradients against the single-device reference and the measured / ideal step on emulated time.

Each check prints what it ran; the summary table lists each row's result. A check that needs
more GPUs than the machine has is reported as skipped, never failed. Exit status 1 if any check
failed. Nothing here is a repository test: it is the first thing to run on a machine with GPUs.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCHEDULES = ("naive", "gpipe", "1f1b", "interleaved", "zero_bubble")


def run(cmd: list[str], timeout: float) -> tuple[int, str, float]:
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout:g} s", timeout
    out = proc.stdout + proc.stderr
    print(out[-4000:], flush=True)
    return proc.returncode, out, time.perf_counter() - start


def gpu_tests(python: str) -> list[tuple[str, str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results.json"
        cmd = [
            python,
            "-m",
            "pytest",
            "autograder",
            "--impl",
            "solutions",
            "-k",
            "gpu",
            "-q",
            "--results-json",
            str(results),
        ]
        code, out, seconds = run(cmd, 1800)
        if not results.is_file():
            return [("graded GPU tests", "FAILED", f"no results.json ({out.strip().splitlines()[-1:]})")]
        tests = json.loads(results.read_text())["tests"]
    rows = []
    for t in tests:
        status = {"passed": "ok", "skipped": "skipped"}.get(t.get("status", ""), "FAILED")
        rows.append((t["name"], status, " ".join(t.get("output", "").split())[:160]))
    why = re.search(r"not counted on this machine: (.*)\)", out)
    return rows or [("graded GPU tests", "skipped", why.group(1) if why else f"none ran ({seconds:.0f} s)")]


def student_tool(python: str, gpus: int, quick: bool, device: str) -> list[tuple[str, str, str]]:
    p = max(2, min(gpus, 4))
    cmd = [python, "-m", "solutions.run", "--device", device, "-p", str(p), "--sweep"]
    cmd += ["--steps", "3", "--budget", "5"] if quick else []
    code, out, seconds = run(cmd, 1800)
    table = [line for line in out.splitlines() if line.startswith("|")]
    detail = f"p={p}, {len(table) - 2} rows, {seconds:.0f} s" if table else out.strip().splitlines()[-1:]
    return [(f"solutions.run --device {device} --sweep", "ok" if code == 0 else "FAILED", str(detail))]


def runtime(python: str, gpus: int, backend: str) -> list[tuple[str, str, str]]:
    rows = []
    for schedule in SCHEDULES:
        p = 2 if schedule == "interleaved" else min(gpus, 4)
        label = f"autograder.dist {schedule} over {backend}"
        if gpus < 2:
            rows.append((label, "skipped", f"needs 2+ GPUs (found {gpus})"))
            continue
        cmd = [
            python,
            "-m",
            "autograder.dist",
            "--schedule",
            schedule,
            "-p",
            str(p),
            "-m",
            "8",
            "--backend",
            backend,
            "--steps",
            "5",
            "--f",
            "0.02",
        ]
        cmd += ["-v", "2"] if schedule == "interleaved" else []
        code, out, _ = run(cmd, 900)
        ratio = re.search(r"measured/ideal ([0-9.]+)", out)
        grads = re.search(r"max \|g - g_ref\| / max \|g_ref\| = ([0-9.e+-]+)", out)
        ok = code == 0 and grads is not None and float(grads.group(1)) <= 1e-3
        detail = (
            f"p={p}: measured/ideal {ratio.group(1) if ratio else '?'}, grad rel err {grads.group(1) if grads else '?'}"
        )
        rows.append((label, "ok" if ok else "FAILED", detail))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed steps in the sweep")
    parser.add_argument("--cpu", action="store_true", help="smoke-test this script without a GPU (gloo, CPU)")
    args = parser.parse_args()
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    names = sorted({torch.cuda.get_device_name(i) for i in range(gpus)})
    if args.cpu:
        gpus, names = 4, ["CPU smoke test: 4 emulated devices"]
    print(
        f"machine: {platform.node()}, Python {platform.python_version()}, torch {torch.__version__}, "
        f"CUDA {torch.version.cuda}, {gpus} GPU(s) {names}",
        flush=True,
    )
    if gpus == 0 and not args.cpu:
        print(
            "error: no CUDA device is visible (torch.cuda.is_available() is False): run this on a GPU machine",
            file=sys.stderr,
        )
        return 2
    python = sys.executable
    device, backend = ("cpu", "gloo") if args.cpu else ("cuda", "nccl")
    rows = gpu_tests(python) + student_tool(python, gpus, args.quick, device) + runtime(python, gpus, backend)
    print("\n| check | result | detail |\n|---|---|---|")
    for name, status, detail in rows:
        print(f"| {name} | {status} | {detail} |")
    return 1 if any(status == "FAILED" for _, status, _ in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Hostile submissions: the reference solutions with code that attacks the grader, not the task.

Each submission is built from ``solutions/`` text at test time: ``inject`` puts lines at the start
of a function's body (right after its ``### BEGIN SOLUTION`` marker; the build fails loudly if the
marker is gone), ``replace`` swaps an exact piece of text. ``PIDDIR`` in the injected code becomes a
directory where the submission records the processes it starts, so the tests can check that none
survives.

``expect`` says how grading must score the submission, rule by rule: every graded test whose name
contains ``match`` must fail with ``says`` in its output; every other selected test must pass.
``select`` is the ``-k`` expression that keeps the run short (``None``: every test); ``timeout`` is
the ``--trial-timeout``. The attacks sit in Parts 1-3; the other editable files are the reference's.

Write them all out for a manual look with ``python -m tests.hostile OUTDIR``, then e.g.
``python -m pytest autograder/ --isolate --impl OUTDIR/hangs``.
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent

NAIVE, GPIPE, DELAYED = "part1.naive_step", "part2.gpipe_step", "part3.one_f_one_b_step"
PARTITION, SPLIT = "part1.partition", "part1.split_microbatches"

# Words of the test names (their docstrings), to tell Part 1's partition tests from its micro-batch tests.
PARTITION_TESTS = ("stages are contiguous", "largest stage", "on its device", "num_stages < 1")
MICROBATCH_TESTS = ("micro-batches are in order", "m < 1", "micro-batch losses")
SCHEDULE_PARTS = {"naive": "Option A: naive", "gpipe": "Option B: GPipe", "delayed": "Option C: delayed backward"}

FORK_SLEEPERS = """\
import os, time
for _ in range(20):
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    open(os.path.join(PIDDIR, f"pid-{pid}"), "w").close()
"""

FORGE_RESULTS = """\
import json, os, time
forged = json.dumps({"score": 1000.0, "tests": [], "forged": True})
open("results.json", "w").write(forged)
paths, pid = [], os.getpid()
while pid > 1:  # find the grader's --results-json in the command lines of our ancestors
    try:
        args = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")
        pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        break
    paths += [args[i + 1].decode() for i, a in enumerate(args[:-1]) if a == b"--results-json"]
open(os.path.join(PIDDIR, "paths"), "w").write("\\n".join(paths))
for path in paths:
    try:
        open(path, "w").write(forged)
    except OSError:
        pass
middle = os.fork()
if middle == 0:  # a daemon: new session, double fork, writes again after grading has ended
    os.setsid()
    if os.fork() == 0:
        open(os.path.join(PIDDIR, f"pid-{os.getpid()}"), "w").close()
        time.sleep(3)
        for path in paths:
            open(path, "w").write(forged)
        open(os.path.join(PIDDIR, "daemon-wrote"), "w").close()
    os._exit(0)
os.waitpid(middle, 0)
"""

MULTIPROCESSING_CHILD = """\
import multiprocessing, os, time
proc = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
proc.start()
open(os.path.join(PIDDIR, f"pid-{proc.pid}"), "w").close()
"""

FAKE_EVENTS = """\
import gc
from autograder.schedules import Event
for obj in gc.get_objects():
    if type(obj).__name__ == "Tracer":
        obj.events.append(Event(0, "F", 0, 0.0, 0.0))
"""

PATCH_BACKWARD = """\
_backward = torch.Tensor.backward
torch.Tensor.backward = lambda self, *args, **kwargs: _backward(self, *args, **kwargs)
"""

PATCH_AUTOGRADER = """\
import autograder.probes
autograder.probes.expected_sizes = lambda batch_size, num_microbatches: [batch_size]
"""

FLOOD = """\
while True:
    print("flood " * 200)
"""

DEADLOCK = """\
import threading
lock = threading.Lock()
lock.acquire()
lock.acquire()
"""

QUICK = "returns_batch_loss or part1"  # one trial per schedule, and all of Part 1

HOSTILE = {
    # Crashes: each costs one fork, so all of Parts 1-3 run. Graded twice to check determinism.
    "crashes": dict(
        inject={GPIPE: "import sys\nsys.exit(3)\n",
                DELAYED: "import ctypes\nctypes.string_at(0)\n",
                PARTITION: "import os\nos._exit(4)\n"},
        select="part1 or test_schedules", timeout=10,
        expect=[(SCHEDULE_PARTS["gpipe"], "ended the grading process (exit status 3) during gpipe_step"),
                (SCHEDULE_PARTS["delayed"], "SIGSEGV"),
                *[(t, "ended the grading process (exit status 4) during partition") for t in PARTITION_TESTS]],
    ),
    "hangs": dict(
        inject={NAIVE: FLOOD, GPIPE: "while True:\n    pass\n", DELAYED: DEADLOCK,
                PARTITION: "hog = bytearray(8 * 2**30)\n"},
        select=QUICK, timeout=2,
        expect=[(SCHEDULE_PARTS["naive"], "printed more than 64 MiB"),
                (SCHEDULE_PARTS["gpipe"], "timed out after 2 s during gpipe_step (at submission/schedules.py:"),
                (SCHEDULE_PARTS["delayed"], "timed out after 2 s during one_f_one_b_step (at submission/schedules.py:"),
                *[(t, "ran out of memory (limit 6 GiB) during partition") for t in PARTITION_TESTS]],
    ),
    # Forks, daemons and forged results: everything is right, nothing may survive or count.
    "processes": dict(
        inject={PARTITION: FORK_SLEEPERS, GPIPE: FORGE_RESULTS, DELAYED: MULTIPROCESSING_CHILD},
        select="returns_batch_loss or part1_partition", timeout=10,
        expect=[],
    ),
    "tampering": dict(
        inject={NAIVE: 'return "a string"\n', GPIPE: PATCH_BACKWARD, DELAYED: FAKE_EVENTS,
                PARTITION: PATCH_AUTOGRADER},
        select=QUICK, timeout=10,
        expect=[(SCHEDULE_PARTS["naive"], "returned str"),
                (SCHEDULE_PARTS["gpipe"], "torch.Tensor.backward"),
                (SCHEDULE_PARTS["delayed"], "modified the autograder or torch during one_f_one_b_step"),
                *[(t, "modified the autograder or torch during partition (autograder.probes.expected_sizes")
                  for t in PARTITION_TESTS]],
    ),
    "broken_imports": dict(
        inject={PARTITION: "import torch as _torch\n_torch.empty(2**34)\n"},
        replace={"schedules.py": [("\n\ndef naive_step(", "\n\ndef broken(:\n    pass\n\n\ndef naive_step(")],
                 "microbatch.py": [("\nimport torch\n", "\nimport torch\nimport requests_not_here\n")]},
        select=QUICK, timeout=10,
        expect=[*[(part, "SyntaxError") for part in SCHEDULE_PARTS.values()],
                *[(t, "No module named 'requests_not_here'") for t in MICROBATCH_TESTS],
                *[(t, "ran out of memory (limit 6 GiB) during partition") for t in PARTITION_TESTS]],
    ),
}


def _indent(code: str, prefix: str = "    ") -> str:
    return "".join(prefix + line if line.strip() else line for line in code.splitlines(keepends=True))


def build(name: str, dest: Path, piddir: Path | None = None) -> Path:
    """Write hostile submission ``name`` (all editable files of the reference, attacked) into ``dest``."""
    spec = HOSTILE[name]
    dest.mkdir(parents=True, exist_ok=True)
    piddir = piddir or dest / "pids"
    piddir.mkdir(parents=True, exist_ok=True)
    injected = set()
    for path in sorted((ROOT / "solutions").glob("*.py")):
        text = path.read_text()
        for task, code in spec.get("inject", {}).items():
            marker = f"### BEGIN SOLUTION {task}:"
            if marker not in text:
                continue
            assert text.count(marker) == 1, f"{marker} appears more than once in solutions/{path.name}"
            line_end = text.index("\n", text.index(marker)) + 1
            code = code.replace("PIDDIR", repr(str(piddir)))
            text = text[:line_end] + _indent(code) + text[line_end:]
            injected.add(task)
        for old, new in spec.get("replace", {}).get(path.name, []):
            assert text.count(old) == 1, f"hostile {name}: {old!r} is not in solutions/{path.name} exactly once"
            text = text.replace(old, new)
        (dest / path.name).write_text(text)
    missing = set(spec.get("inject", {})) - injected
    assert not missing, f"hostile {name}: no '### BEGIN SOLUTION' marker for {sorted(missing)} in solutions/"
    return dest


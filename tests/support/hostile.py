"""Hostile submissions: the reference (or the skeleton) with code that attacks the grader.

Each entry names the attack class of the grading-trust issue it belongs to, what to select for a
short grading (``-k``), and what a correct grader gives: the tests whose names contain a key of
``fails`` must fail (with the value in their output, when given), and every other selected test
must pass. None of the attacks may raise the score above that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.support.submissions import Submission

NAIVE, GPIPE, DELAYED = "part1.naive_step", "part2.gpipe_step", "part3.delayed_backward_step"
PARTITION, SPLIT, LOSS = "part1.partition", "part1.split_microbatches", "part1.microbatch_loss"
GPIPE_ROW, DELAYED_ROW = "Part 2 Option B: GPipe", "Part 3 Option C: delayed backward"
NAIVE_ROW, PART1_ROW = "Part 1 Option A: naive", "Part 1 Partition and micro-batches"

CONFTEST = """\
import json, os
open(MARKER, "w").write("conftest ran")
def pytest_sessionfinish(session):
    open(MARKER, "w").write("conftest ran")
"""

# Runs the naive order for real, then drives the stages' executor by hand in GPipe order with zero
# gradients, hoping the recorded order shows GPipe: the judge records every request it serves.
FORGE_ORDER = """\
batch_size = inputs.shape[0]
last = stage_device(stages[-1])
total = torch.zeros(())
for x, y in split_microbatches(inputs, targets, num_microbatches):
    loss = microbatch_loss(loss_fn, forward_through(stages, x), y.to(last), batch_size)
    loss.backward()
    total += loss.detach()
executor = stages[0].executor
handles = []
for x, _ in split_microbatches(inputs, targets, num_microbatches):
    for stage in stages:
        h, x = executor.forward(stage.index, x, True)
        handles.append((stage.index, h, x))
for s, h, out in reversed(handles):
    executor.backward(h, torch.zeros_like(out), True, True)
import gc
for obj in gc.get_objects():
    if isinstance(obj, list) and obj and type(obj[0]).__name__ in ("Event", "TraceEvent"):
        obj.sort(key=lambda e: e.kind)
return total.item()
"""

KILL_EVERYTHING = """\
import os, signal
for sig in (signal.SIGKILL, signal.SIGTERM):
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        pids = list(range(1, 5000))
    for pid in [os.getppid(), *pids]:
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, sig)
        except OSError:
            pass
    try:
        os.kill(-1, sig)
    except OSError:
        pass
"""

DAEMON = """\
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for _ in range(600):
            for name in ("results.json", "/tmp/pp-daemon-was-here"):
                try:
                    open(name, "w").write('{"score": 1000}')
                except OSError:
                    pass
            time.sleep(0.05)
    os._exit(0)
"""

PROC_MEM = """\
import os
for pid in (os.getppid(), 1):
    for name in ("mem", "environ", "cmdline"):
        try:
            with open(f"/proc/{pid}/{name}", "r+b") as f:
                f.seek(4096)
                f.write(b"\\0" * 64)
        except (OSError, ValueError):
            pass
"""

EDIT_GRADER = """\
import os
for path in [REPO + "/autograder/judge/checks/gradients.py", REPO + "/autograder/practical.py",
             REPO + "/solutions/schedules.py"]:
    try:
        open(path, "a").write("\\n# edited by a submission\\n")
    except OSError:
        pass
"""

STEAL_SOLUTIONS = """\
import importlib, sys
for name in ("solutions.partition", "autograder.hidden.test_hidden_settings", "autograder.instructor"):
    try:
        importlib.import_module(name)
        raise RuntimeError("imported " + name)
    except ImportError:
        pass
for path in (REPO + "/solutions/partition.py", REPO + "/autograder/hidden/test_hidden_settings.py"):
    try:
        text = open(path).read()
        raise RuntimeError("read " + path)
    except OSError:
        pass
"""

TMP_CARRY = """\
import os, glob
for folder in ("/tmp", "/var/tmp", "/dev/shm"):
    try:
        open(os.path.join(folder, "pp-carry-" + str(num_microbatches)), "w").write(repr(inputs.shape))
    except OSError:
        pass
seen = sorted(glob.glob("/tmp/pp-carry-*"))
if seen:
    raise RuntimeError("carried from an earlier call: " + ", ".join(seen))
"""

NASTY_TEXT = 'raise ValueError("\\x00 nul \\ud800 lone \\x1b[31mred\\x1b[0m =cmd|\' " + "x" * 100000)\n'

CRASH_EXIT = "import sys\nsys.exit(3)\n"
CRASH_SEGV = "import ctypes\nctypes.string_at(0)\n"
HANG = "while True:\n    pass\n"
FLOOD = "while True:\n    print('flood ' * 200)\n"
MEMORY = "hog = bytearray(16 * 2**30)\n"
FORK_BOMB = """\
import os, time
for _ in range(100000):
    try:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
    except OSError:
        break
"""
PATCH_TORCH = """\
import torch
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.Tensor.backward = lambda self, *a, **k: None
import autograder.judge
"""


@dataclass(frozen=True)
class Hostile:
    attack: str
    submission: Submission
    select: str
    fails: dict[str, str | None] = field(default_factory=dict)
    call_timeout: float = 10.0


QUICK = "returns_batch_loss or split_sizes_order_and_pairs"

HOSTILE = {
    "conftest_and_extras": Hostile(
        "a submission's conftest.py, __init__.py, model.py and pytest.ini",
        Submission(
            skeleton=True,
            extra={
                "conftest.py": CONFTEST,
                "__init__.py": CONFTEST,
                "model.py": "raise SystemExit(0)\n",
                "pytest.ini": "[pytest]\naddopts = -p no:autograder\n",
                "assignment/conftest.py": CONFTEST,
            },
        ),
        select=QUICK,
        fails={"": "NotImplementedError"},
    ),
    "forged_order": Hostile(
        "events and order forged in the student's process",
        Submission(
            replace={
                "schedules.py": [
                    (
                        """    batch_size = inputs.shape[0]
    last = stage_device(stages[-1])
    losses = [
""",
                        "    "
                        + FORGE_ORDER.replace("\n", "\n    ").rstrip()
                        + """
    batch_size = inputs.shape[0]
    last = stage_device(stages[-1])
    losses = [
""",
                    )
                ]
            }
        ),
        select="gpipe and (order_of_events or activation_memory or replayed_speedup or gradients_match)",
        fails={
            "Option B: GPipe: forwards and backwards": "ran twice",
            "Option B: GPipe: on p": "ran twice",
            "Option B: GPipe: micro-batches in flight": "ran twice",
        },
    ),
    "kill_everything": Hostile(
        "killing the judge, the CLI, other gradings (kill -1)",
        Submission(inject={GPIPE: KILL_EVERYTHING, SPLIT: KILL_EVERYTHING}),
        select=QUICK,
    ),
    "daemon_and_proc_mem": Hostile(
        "a daemon that rewrites results.json; writing the judge's memory through /proc",
        Submission(inject={GPIPE: DAEMON, DELAYED: PROC_MEM}),
        select=QUICK,
    ),
    "edit_and_steal": Hostile(
        "editing the grader's source; importing or reading the reference and hidden tests",
        Submission(inject={GPIPE: EDIT_GRADER, DELAYED: STEAL_SOLUTIONS, NAIVE: STEAL_SOLUTIONS}),
        select=QUICK,
    ),
    "tmp_carry": Hostile(
        "files carried from one call to the next",
        Submission(inject={GPIPE: TMP_CARRY, DELAYED: TMP_CARRY}),
        select=QUICK,
    ),
    "nasty_text": Hostile(
        "NUL, lone surrogates, terminal escapes, formula cells, 100 kB messages",
        Submission(inject={GPIPE: NASTY_TEXT, SPLIT: NASTY_TEXT}),
        select=QUICK,
        fails={"Option B: GPipe": "ValueError", "micro-batches are in order": "ValueError"},
    ),
    "crashes": Hostile(
        "exit, segfault, hang, print flood, memory bomb, fork bomb",
        Submission(
            inject={
                GPIPE: CRASH_EXIT,
                DELAYED: CRASH_SEGV,
                NAIVE: HANG,
                SPLIT: FLOOD,
                PARTITION: MEMORY,
                LOSS: FORK_BOMB,
            }
        ),
        select=QUICK + " or test_balanced or losses_add_up",
        call_timeout=3,
        fails={
            "Option B: GPipe": "exit(3)",
            "Option C": "SIGSEGV",
            "Option A": "timed out after 3 s",
            "micro-batches are in order": "File too large",
            "largest stage": "MemoryError",
        },
    ),
    "monkeypatch": Hostile(
        "replacing torch's functions and importing the judge",
        Submission(inject={GPIPE: PATCH_TORCH}),
        select=QUICK,
        fails={"Option B: GPipe": None},
    ),
}

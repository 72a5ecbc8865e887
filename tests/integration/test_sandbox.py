"""The sandbox (``autograder/judge/sandbox.py`` with the harness's worker and probes) against real processes.

What this proves, with real student code staged from ``solutions/`` and made hostile: a call
returns the probe's raw data; a student function that raises gives a result with its message;
``sys.exit``, ``os._exit``, a segfault, an infinite loop, a print flood and a memory bomb each end in
:class:`ProbeFailed` with one line naming the cause, and the next call works; a function that
timed out twice is not called a third time; a spent :class:`Budget` refuses a call without making
it; no process of the sandbox survives ``close()`` and a call leaves no file in /tmp; a call can
neither read the reference solutions nor open the grader's source for writing; a schedule trial on
the reference records GPipe's per-stage order and gradients equal to the single-device reference.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest
import torch

from autograder.harness import confine
from autograder.judge import isolation, uids
from autograder.judge.budget import Budget
from autograder.judge.checks.gradients import check_gradients, check_loss
from autograder.judge.checks.order import check_order
from autograder.judge.sandbox import Limits, OutOfBudget, ProbeFailed, Sandbox, SandboxError, TimedOut
from autograder.judge.staging import stage
from autograder.judge.trial import TrialSpec, reference, run_trial
from autograder.schedules import schedule_from_events
from tests.support import ROOT
from tests.support.submissions import Submission, build

SPLIT, PARTITION = "part1.split_microbatches", "part1.partition"
needs_landlock = pytest.mark.skipif(
    confine.landlock_abi() < 1,
    reason="environment: no Landlock in this kernel: only file permissions keep a call from the repository",
)
needs_confinement = pytest.mark.skipif(
    confine.landlock_abi() < 1 and not isolation.isolation_level().root,
    reason="environment: neither Landlock nor root: calls may write anywhere",
)
no_memory_limit = pytest.mark.skipif(
    any(os.path.exists(p) for p in ("/dev/nvidia0", "/dev/nvidiactl")),
    reason="environment: CUDA present: calls run without an address-space limit",
)

# The student's split_microbatches misbehaves according to the number of micro-batches asked for.
HOSTILE_SPLIT = """\
import os, sys, time
if num_microbatches == 101:
    sys.exit(3)
if num_microbatches == 102:
    os._exit(5)
if num_microbatches == 103:
    import ctypes
    ctypes.string_at(0)
if num_microbatches == 104:
    while True:
        pass
if num_microbatches == 105:
    raise ValueError("boom from student code")
if num_microbatches == 106:
    report = []
    for what, attempt in (("read", lambda: open(REPO + "/solutions/schedules.py").read()),
                          ("write", lambda: os.close(os.open(REPO + "/autograder/practical.py",
                                                             os.O_WRONLY | os.O_APPEND))),
                          ("tmp", lambda: open("/tmp/" + TOKEN, "w").write("left behind")),
                          ("home", lambda: open(os.path.join(os.environ["HOME"], "scratch"), "w").write("ok"))):
        try:
            attempt()
            report.append(what + ":ok")
        except OSError as exc:
            report.append(what + ":" + type(exc).__name__)
    raise RuntimeError("report " + " ".join(report))
if num_microbatches == 107:
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        os._exit(0)
    time.sleep(0.2)
    raise RuntimeError("spawned")
"""
# Student code that finds its call's socket to the judge and writes to it directly.
RAW_CHANNEL = """\
import struct, sys, time
if num_microbatches in (120, 121, 122):
    frame = sys._getframe()
    while frame is not None and not hasattr(frame.f_locals.get("ctx"), "channel"):
        frame = frame.f_back
    sock = frame.f_locals["ctx"].channel
    H = struct.Struct(">Q")
    if num_microbatches == 120:  # a document nested 200000 deep
        doc = b"[" * 200000 + b"]" * 200000
        payload = H.pack(2) + b"[]" + H.pack(len(doc)) + doc
    elif num_microbatches == 121:  # a head length past ssize_t
        payload = H.pack(2**63) + b"[]"
    else:  # a well-formed message that is not a dict
        doc = b"[1,2,3]"
        payload = H.pack(2) + b"[]" + H.pack(len(doc)) + doc
    sock.sendall(H.pack(len(payload)) + payload)
    time.sleep(1)
"""
FLOOD = "from __future__ import annotations\nwhile True:\n    print('flood ' * 200)\n"
MEMORY = "from __future__ import annotations\nhog = bytearray(16 * 2**30)\n"
TOP = "from __future__ import annotations\n"


def staged_submission(tmp: Path, spec: Submission, **placeholders: str):
    folder = build(spec, tmp / "submission", **placeholders)
    return stage(folder, tmp / "staged")


def split_kwargs(m: int, rows: int = 6) -> dict:
    x = torch.arange(rows * 2, dtype=torch.float32).reshape(rows, 2)
    return {"cases": [{"inputs": x, "targets": -x, "m": m}]}


def split_call(box: Sandbox, m: int, key: str = "split_microbatches") -> dict:
    return box.call("split", split_kwargs(m), key=key)


def assert_works(box: Sandbox) -> None:
    """A normal call right after a failed one returns the right data."""
    data = split_call(box, 3)
    pieces = data["cases"][0]["value"]
    x = split_kwargs(3)["cases"][0]["inputs"]
    assert [torch.equal(a, b) for (a, _), b in zip(pieces, torch.tensor_split(x, 3))] == [True] * 3


def failure(box: Sandbox, m: int, key: str) -> str:
    start = time.monotonic()
    with pytest.raises(ProbeFailed) as excinfo:
        split_call(box, m, key)
    message = str(excinfo.value)
    assert message and "\n" not in message, repr(message)
    assert time.monotonic() - start < 15
    return message


def own_processes(box: Sandbox) -> list[str]:
    """Live processes started for this sandbox (workers and calls carry its folder on their command line)."""
    mark, found = str(box._src).encode(), []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if mark in f.read():
                    found.append(entry)
        except OSError:
            continue
    if box.uid is not None:
        found += [str(pid) for pid in uids.processes_of(box.uid)]
    return found


@pytest.fixture(scope="module")
def token() -> str:
    return f"pp-sandbox-test-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, token):
    tmp = tmp_path_factory.mktemp("hostile")
    spec = Submission(
        inject={SPLIT: HOSTILE_SPLIT}, replace={"partition.py": [(TOP, FLOOD)], "per_stage.py": [(TOP, MEMORY)]}
    )
    box = Sandbox(staged_submission(tmp, spec, REPO=str(ROOT), TOKEN=token), Limits(call_timeout=2, file_mib=1))
    yield box
    box.close()


# -- data and results ---------------------------------------------------------------------------------------


def test_call_returns_the_probes_raw_data(hostile):
    data = split_call(hostile, 3)
    assert set(data) == {"error", "cases", "bad"} and data["error"] is None
    pieces = data["cases"][0]["value"]
    x = split_kwargs(3)["cases"][0]["inputs"]
    assert len(pieces) == 3
    for (got_x, got_y), want in zip(pieces, torch.tensor_split(x, 3)):
        assert isinstance(got_x, torch.Tensor) and torch.equal(got_x, want) and torch.equal(got_y, -want)


def test_student_function_that_raises_gives_a_result_with_its_message(hostile):
    outcome = split_call(hostile, 105)["cases"][0]
    assert outcome["raised"] == "ValueError"
    assert "boom from student code" in outcome["message"] and "microbatch.py" in outcome["message"]


# -- crashes ---------------------------------------------------------------------------------------------------


def test_sys_exit_is_a_probe_failure_naming_exit(hostile):
    assert "exit(3)" in failure(hostile, 101, "exit")
    assert_works(hostile)


def test_os_exit_is_a_probe_failure_naming_the_status(hostile):
    message = failure(hostile, 102, "_exit")
    assert "exit status 5" in message
    assert_works(hostile)


def test_segfault_is_a_probe_failure_naming_the_signal(hostile):
    assert "SIGSEGV" in failure(hostile, 103, "segv")
    assert_works(hostile)


def test_print_flood_is_a_probe_failure_naming_the_output_limit(hostile):
    with pytest.raises(ProbeFailed) as excinfo:
        hostile.call(
            "partition", {"widths": [4, 4, 4], "num_stages": 2, "devices": ["cpu", "cpu"], "seed": 0}, key="partition"
        )
    message = str(excinfo.value)
    assert "\n" not in message
    assert "File too large" in message or "printed more output" in message
    assert_works(hostile)


@no_memory_limit
def test_memory_bomb_is_a_probe_failure_naming_memory(hostile):
    with pytest.raises(ProbeFailed) as excinfo:
        hostile.call("action_lists", {"which": "gpipe", "cases": [[2, 2]]}, key="gpipe_actions")
    message = str(excinfo.value)
    assert "\n" not in message and ("MemoryError" in message or "out of memory" in message)
    assert_works(hostile)


@pytest.mark.slow
def test_infinite_loop_times_out_twice_then_is_not_called_again(hostile):
    for _ in range(2):
        start = time.monotonic()
        with pytest.raises(TimedOut) as excinfo:
            split_call(hostile, 104, key="loop")
        message = str(excinfo.value)
        assert "timed out after 2 s" in message and "\n" not in message
        assert "microbatch.py" in message  # where it hung, from the faulthandler dump
        assert 1.5 < time.monotonic() - start < 12
        assert_works(hostile)
    start = time.monotonic()
    with pytest.raises(TimedOut, match="already timed out 2 times"):
        split_call(hostile, 104, key="loop")
    assert time.monotonic() - start < 1.0
    assert_works(hostile)  # another key still runs


# -- confinement ---------------------------------------------------------------------------------------------


@needs_landlock
def test_call_cannot_read_the_reference_or_open_the_grader_for_writing(hostile, token):
    before = (ROOT / "autograder" / "practical.py").stat()
    message = split_call(hostile, 106)["cases"][0]["message"]
    report = dict(item.split(":") for item in message.split("report ", 1)[1].split(" (at")[0].split())
    assert report["read"] != "ok", message
    assert report["write"] != "ok", message
    assert report["tmp"] != "ok", message
    assert report["home"] == "ok", message  # its own folder is writable
    after = (ROOT / "autograder" / "practical.py").stat()
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)
    assert not (Path("/tmp") / token).exists()


@needs_confinement
def test_call_leaves_no_file_in_tmp_and_its_folder_is_removed(hostile, token):
    split_call(hostile, 106)
    assert not (Path("/tmp") / token).exists()
    assert list(hostile._calls.iterdir()) == []


def test_processes_spawned_by_a_call_do_not_outlive_it(hostile):
    assert "spawned" in split_call(hostile, 107)["cases"][0]["message"]
    time.sleep(0.2)
    leftover = [pid for pid in own_processes(hostile) if pid != str(hostile._worker.pid)]
    assert leftover == []


def test_no_process_survives_close_and_nothing_is_left_in_tmp(tmp_path):
    spec = Submission(inject={SPLIT: HOSTILE_SPLIT})
    box = Sandbox(staged_submission(tmp_path, spec, REPO=str(ROOT), TOKEN="x"), Limits(call_timeout=10))
    base = box._base
    split_call(box, 107)
    assert_works(box)
    assert own_processes(box), "the worker should be running before close()"
    box.close()
    deadline = time.monotonic() + 5
    while own_processes(box) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert own_processes(box) == []
    assert not base.exists()
    with pytest.raises(SandboxError):
        split_call(box, 3)
    box.close()  # a second close is harmless


# -- a call that writes garbage to its channel --------------------------------------------------------------------


@pytest.fixture
def raw_channel(tmp_path):
    box = Sandbox(staged_submission(tmp_path, Submission(inject={SPLIT: RAW_CHANNEL})), Limits(call_timeout=10))
    yield box
    box.close()


@pytest.mark.parametrize("m", [120, 121], ids=["nested 200000 deep", "head length 2**63"])
def test_malformed_frame_from_a_call_is_a_probe_failure(raw_channel, m):
    with pytest.raises(ProbeFailed):
        split_call(raw_channel, m)


def test_next_call_works_after_a_call_sent_a_message_that_is_not_a_dict(raw_channel):
    assert_works(raw_channel)
    with pytest.raises(ProbeFailed, match="malformed"):
        split_call(raw_channel, 122)
    assert_works(raw_channel)


# -- the time budget ----------------------------------------------------------------------------------------------


def test_spent_budget_refuses_the_call_without_making_it(tmp_path):
    box = Sandbox(stage(ROOT / "solutions", tmp_path / "x"), budget=Budget(total=0.5))
    try:
        start = time.monotonic()
        with pytest.raises(OutOfBudget) as excinfo:
            split_call(box, 3)
        assert time.monotonic() - start < 1.0
        assert "budget" in str(excinfo.value) and "\n" not in str(excinfo.value)
        assert box._worker is None  # no process was started
        assert (box.budget.calls, box.budget.denied) == (0, 1)
    finally:
        box.close()


@pytest.mark.slow
def test_call_cut_short_by_the_budget_is_out_of_budget_not_a_timeout(tmp_path):
    spec = Submission(inject={SPLIT: HOSTILE_SPLIT})
    box = Sandbox(
        staged_submission(tmp_path, spec, REPO=str(ROOT), TOKEN="x"), Limits(call_timeout=30), Budget(total=12)
    )
    try:
        assert_works(box)  # starts the worker
        box.budget.started = time.monotonic() - (box.budget.total - 2.5)  # 2.5 s left
        with pytest.raises(OutOfBudget, match="budget"):
            split_call(box, 104, key="loop")
        assert box._timeouts.get("loop", 0) == 0  # not held against the function
    finally:
        box.close()


# -- a schedule trial on the reference ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_box(tmp_path_factory):
    box = Sandbox(stage(ROOT / "solutions", tmp_path_factory.mktemp("ref") / "x"))
    yield box
    box.close()


@pytest.mark.slow
def test_gpipe_trial_on_the_reference_records_gpipe_order_and_right_gradients(reference_box):
    spec = TrialSpec("gpipe", 3, 4, 10, width=16, depth=6, seed=2)
    trial = run_trial(reference_box, spec)
    assert trial.failure is None and trial.error is None and trial.notes == []
    per_stage = schedule_from_events(trial.plain_events)
    for s in range(3):
        kinds = [(a.kind, a.mb) for a in per_stage[s]]
        assert kinds[:4] == [("F", k) for k in range(4)]
        assert sorted(kinds[4:]) == [("B", k) for k in range(4)]
    assert check_order(trial) is None
    ref = reference(spec)
    assert check_gradients(trial, ref) is None and check_loss(trial, ref) is None
    scale = max(d.abs().max().item() for d in ref.delta.values())
    for name, delta in ref.delta.items():
        assert (trial.computed[name].double() - delta.double()).abs().max().item() <= 1e-5 * scale, name
        assert torch.allclose(trial.grads[name], (ref.sentinel[name] + trial.computed[name]).double(), atol=1e-6)
    assert trial.changed == [] and not trial.replaced


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["naive", "delayed"])
def test_other_trials_on_the_reference_pass_their_order_and_gradients(reference_box, schedule):
    spec = TrialSpec(schedule, 2, 3, 7, width=16, depth=4, seed=1)
    trial = run_trial(reference_box, spec)
    assert trial.failure is None and trial.error is None
    assert check_order(trial) is None
    assert check_gradients(trial, reference(spec)) is None

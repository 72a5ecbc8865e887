"""The sandbox (``--isolate``): hostile submissions are graded right, and leave nothing behind.

Two levels:

* ``SandboxRunner`` directly, with a partition that misbehaves according to ``num_stages``
  (exit, segfault, hang, forks, killing the worker, a forged result file): the message of each
  failure, worker reuse and restart, no process left after a call or after ``close()``.
* ``pytest autograder/ --isolate`` on the hostile submissions of ``tests/hostile`` in a
  subprocess: the run ends, results.json is the grader's, the tests of what the submission did
  right pass and the tests of what it broke fail with the expected message.
"""
from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from autograder.impl import Impl, overlay
from autograder.probes import PROBES
from autograder.sandbox import SandboxRunner
from autograder.trial import BadData, ProbeFailed
from tests.hostile import HOSTILE, build

ROOT = Path(__file__).resolve().parent.parent

# -- helpers -------------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def recorded_pids(piddir: Path) -> list[int]:
    return [int(p.name.removeprefix("pid-")) for p in piddir.glob("pid-*")]


def grade_isolated(impl: Path | str, tmp_path: Path, select: str | None, timeout: float,
                   tag: str = "") -> tuple[dict, str, Path]:
    """``pytest autograder/ --isolate`` on ``impl`` in a subprocess: (results.json, output, its path)."""
    results = tmp_path / f"results{tag}.json"
    cmd = [sys.executable, "-m", "pytest", "autograder", "--impl", str(impl), "--isolate",
           "--trial-timeout", str(timeout), "--results-json", str(results), "-p", "no:cacheprovider", "-q"]
    if select:
        cmd += ["-k", select]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240, env=env)
    output = proc.stdout + proc.stderr
    assert results.exists(), f"no results.json; pytest said:\n{output[-3000:]}"
    return json.loads(results.read_text()), output, results


def check_expectations(name: str, results: dict, output: str) -> None:
    """Tests matching a rule of ``HOSTILE[name]["expect"]`` score 0 with its message; all others pass."""
    rules = HOSTILE[name]["expect"]
    assert results["tests"], f"{name}: no graded test ran:\n{output[-2000:]}"
    used = set()
    for t in results["tests"]:
        hits = [(match, says) for match, says in rules if match in t["name"]]
        if hits:
            used.update(match for match, _ in hits)
            assert t["score"] == 0 and t["status"] == "failed", f"{name}: {t['name']} should fail"
            assert any(says in t["output"] for _, says in hits), \
                f"{name}: {t['name']}: expected {[s for _, s in hits]} in:\n{t['output']}"
        else:
            assert t["status"] == "passed" and t["score"] == t["max_score"], \
                f"{name}: {t['name']} should pass:\n{t['output']}"
    assert used == {match for match, _ in rules}, f"{name}: rules that matched no test: {set(m for m, _ in rules) - used}"
    assert results["score"] == sum(t["score"] for t in results["tests"])
    assert "INTERNALERROR" not in output


# -- SandboxRunner directly ------------------------------------------------------------------------

MISBEHAVING_PARTITION = '''
import ctypes, os, signal, sys, time
import torch
from torch import nn


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def partition(model, num_stages, devices):
    if num_stages == 2:
        print("about to leave")
        sys.exit(5)
    if num_stages == 3:
        ctypes.string_at(0)
    if num_stages == 4:
        while True:
            pass
    if num_stages == 5:
        for _ in range(5):
            pid = os.fork()
            if pid == 0:
                os.setsid()  # leaves the call's process group
                time.sleep(60)
                os._exit(0)
            open(os.path.join(PIDDIR, f"pid-{pid}"), "w").close()
    if num_stages == 6:
        pid = os.fork()
        if pid == 0:  # a daemon in its own session, then the worker (its subreaper) is killed
            os.setsid()
            time.sleep(60)
            os._exit(0)
        open(os.path.join(PIDDIR, f"daemon-{pid}"), "w").close()
        os.kill(os.getppid(), signal.SIGKILL)  # the worker
        time.sleep(60)
    if num_stages == 7:
        torch.save({"ok": True, "data": {"error": None, "stages": Evil()}}, "result.pt")
        os._exit(0)
    if num_stages == 8:
        try:
            open(WRITE_TARGET, "w").write("forged")
            wrote = "yes"
        except OSError as exc:
            wrote = type(exc).__name__
        raise ValueError(f"uid={os.getuid()} wrote={wrote} cwd={os.getcwd()}")
    layers, stages, start = list(model), [], 0
    for s in range(num_stages):
        size = len(layers) // num_stages + (1 if s < len(layers) % num_stages else 0)
        stages.append(nn.Sequential(*layers[start:start + size]).to(devices[s]))
        start += size
    return stages
'''


@pytest.fixture
def misbehaving(tmp_path) -> tuple[Impl, Path]:
    piddir = tmp_path / "pids"
    piddir.mkdir()
    submission = tmp_path / "submission"
    submission.mkdir()
    code = MISBEHAVING_PARTITION.replace("PIDDIR", repr(str(piddir)))
    code = code.replace("WRITE_TARGET", repr(str(tmp_path / "parent-only" / "results.json")))
    (submission / "partition.py").write_text(code)
    return overlay(submission, tmp_path / "impl"), piddir


def partition_call(runner, num_stages: int) -> dict:
    return runner.call("partition", num_layers=8, num_stages=num_stages)


def test_runner_failures_reuse_and_cleanup(misbehaving):
    impl, piddir = misbehaving
    runner = SandboxRunner(impl, timeout=2)
    try:
        data = partition_call(runner, 1)
        assert data["error"] is None and [s["layers"] for s in data["stages"]] == [list(range(8))]
        worker = runner._worker.pid

        with pytest.raises(ProbeFailed, match=r"ended the grading process \(exit status 5\) during partition "
                                              r"\(at submission/partition\.py:\d+\): do not call sys\.exit") as exc:
            partition_call(runner, 2)
        assert "Last output: 'about to leave'" in str(exc.value) and "\n" not in str(exc.value)

        with pytest.raises(ProbeFailed, match=r"crashed the grading process with SIGSEGV \(segmentation fault\) "
                                              r"during partition \(at submission/partition\.py:\d+\)"):
            partition_call(runner, 3)

        started = time.monotonic()
        with pytest.raises(ProbeFailed, match=r"timed out after 2 s during partition \(at submission/partition\.py:"):
            partition_call(runner, 4)
        assert time.monotonic() - started < 6

        data = partition_call(runner, 5)  # forks five daemons that leave the process group, then works
        assert data["error"] is None
        pids = recorded_pids(piddir)
        assert len(pids) == 5 and not [p for p in pids if alive(p)], "processes survived the call"

        with pytest.raises(BadData, match="could not be read safely"):
            partition_call(runner, 7)  # a result file with a pickled object in it

        assert runner._worker.pid == worker, "the worker should survive its calls' failures"
        with pytest.raises(ProbeFailed, match="stopped answering during partition"):
            partition_call(runner, 6)  # kills the worker, after starting a daemon in a new session
        daemons = [int(p.name.removeprefix("daemon-")) for p in piddir.glob("daemon-*")]
        assert len(daemons) == 1 and not alive(worker) and not alive(daemons[0])
        assert partition_call(runner, 1)["error"] is None  # a new worker
        worker = runner._worker.pid
    finally:
        base = runner._base
        runner.close()
    assert not alive(worker) and not base.exists()
    with pytest.raises(Exception, match="closed"):
        partition_call(runner, 1)


def test_runner_returns_what_the_probe_returns():
    impl = Impl("solutions", ROOT)
    runner = SandboxRunner(impl, timeout=30)
    try:
        for probe, kwargs in [("split", dict(batch_size=10, num_microbatches=4, bad=(0, 11))),
                              ("partition", dict(num_layers=7, num_stages=3, bad=(0,))),
                              ("microbatch_loss", dict(sizes=[3, 3, 2]))]:
            assert runner.call(probe, **kwargs) == PROBES[probe](impl, **kwargs), probe
        kwargs = dict(schedule="gpipe", num_stages=3, num_microbatches=4, batch_size=10, width=32, depth=8, seed=2)
        first, second = runner.call("schedule", **kwargs), runner.call("schedule", **kwargs)
        here = PROBES["schedule"](impl, **kwargs)
        for data in (first, second):
            assert data["error"] is None and data["tampered"] == [] and data["notes"] == []
            assert [e[:3] for e in data["events"]] == [e[:3] for e in here["events"]]
            assert data["loss"] == pytest.approx(here["loss"], rel=1e-6)
            for name, g in data["grads"].items():
                assert type(g) is torch.Tensor and torch.allclose(g, here["grads"][name], rtol=1e-5, atol=1e-7)
        assert first["loss"] == second["loss"]  # same process state and seed: bit for bit
        assert all(torch.equal(first["grads"][n], second["grads"][n]) for n in first["grads"])
    finally:
        runner.close()


def _unprivileged_user() -> tuple[str, int] | None:
    """A user that can run this interpreter with torch (``None`` if there is none, or we are not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("student", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        try:
            ok = subprocess.run([sys.executable, "-I", "-c", "import torch"], user=entry.pw_uid,
                                group=entry.pw_gid, extra_groups=[], capture_output=True, timeout=120,
                                cwd="/").returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        if ok:
            return name, entry.pw_uid
    return None


def test_runner_drops_privileges(misbehaving, tmp_path):
    found = _unprivileged_user()
    if found is None:
        pytest.skip("environment: needs root and an unprivileged user ('student' or 'nobody') that can run "
                    f"{sys.executable} with torch")
    user, uid = found
    impl, _ = misbehaving
    protected = tmp_path / "parent-only"
    protected.mkdir(mode=0o755)
    runner = SandboxRunner(impl, timeout=30, user=user)
    try:
        error = partition_call(runner, 8)["error"]
        assert f"uid={uid} wrote=PermissionError" in error, error
        assert partition_call(runner, 1)["error"] is None
        owner = runner._work.stat().st_uid
    finally:
        runner.close()
    assert owner == uid and not (protected / "results.json").exists()


# -- pytest autograder/ --isolate on hostile submissions ------------------------------------------

@pytest.fixture(scope="module")
def graded_crashes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("crashes")
    submission = build("crashes", tmp / "submission")
    return grade_isolated(submission, tmp, HOSTILE["crashes"]["select"], HOSTILE["crashes"]["timeout"])


def test_solutions_full_marks_isolated(tmp_path):
    # Every probe through the sandbox; Part 6's multi-process runs happen in the judge, not the
    # sandbox, and take long, so they are left to tests/test_autograder.py.
    results, output, _ = grade_isolated("solutions", tmp_path,
                                        "not multiprocess and not real_speedup and not executed_order", 60)
    assert results["tests"] and all(t["status"] == "passed" for t in results["tests"]), output[-3000:]
    assert results["score"] == sum(t["max_score"] for t in results["tests"])


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_submission(name, tmp_path, request):
    spec = HOSTILE[name]
    piddir = tmp_path / "pids"
    submission = build(name, tmp_path / "submission", piddir)
    stray = ROOT / "results.json"
    existed = stray.exists()
    started = time.monotonic()
    if name == "crashes":  # graded once for this test and the determinism test
        results, output, path = request.getfixturevalue("graded_crashes")
    else:
        results, output, path = grade_isolated(submission, tmp_path, spec["select"], spec["timeout"])
    check_expectations(name, results, output)
    assert existed or not stray.exists(), "a results.json appeared in the repository"
    if name == "processes":
        # It found the real results path and wrote a forged file there during grading, and left a
        # daemon to write it again after grading: the grader's file must be the one that stays.
        assert str(path) in (piddir / "paths").read_text()
        assert len(recorded_pids(piddir)) > 20
        time.sleep(max(0.0, 4.5 - (time.monotonic() - started)))
        assert not (piddir / "daemon-wrote").exists(), "a daemon outlived the grading"
        survivors = [p for p in recorded_pids(piddir) if alive(p)]
        assert not survivors, f"processes left behind: {survivors}"
        final = json.loads(path.read_text())
        assert "forged" not in final and final == results


def test_grading_twice_gives_the_same_scores(graded_crashes, tmp_path):
    first, _, _ = graded_crashes
    second, output, _ = grade_isolated(build("crashes", tmp_path / "submission"), tmp_path,
                                       HOSTILE["crashes"]["select"], HOSTILE["crashes"]["timeout"])
    assert [(t["name"], t["score"], t["status"]) for t in first["tests"]] == \
        [(t["name"], t["score"], t["status"]) for t in second["tests"]], output[-2000:]
    assert 0 < first["score"] == second["score"]

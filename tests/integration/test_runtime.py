"""autograder.emulate and autograder.runtime: emulated device time, the single-process and the
multi-process executors of per-stage action lists."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from autograder import dist as R
from autograder.dist.emulate import EmulatedTime, device_sleep, ideal_step_time, naive_step_time
from autograder.instructor.reference_schedules import gpipe_schedule, one_f_one_b_schedule
from autograder.practical import GRAD_RTOL, LOSS_RTOL
from autograder.schedules import (
    Action,
    Costs,
    delayed_backward_schedule,
    naive_schedule,
    parse_schedule,
    replay,
    schedule_from_events,
    timeline_from_events,
)
from tests.support import ROOT

SCHEDULES = {
    "naive": naive_schedule,
    "gpipe": gpipe_schedule,
    "1f1b": one_f_one_b_schedule,
    "delayed": delayed_backward_schedule,
}
DEADLOCK = parse_schedule({0: "0F0 0B0 0F1 0B1", 1: "1F0 1F1 1B0 1B1"})  # 0 waits for 1B0, 1 for 0F1


def assert_matches_reference(spec: R.PipelineSpec, loss: float, grads: dict) -> None:
    ref_loss, ref_grads = R.reference_gradients(spec)
    assert set(grads) == set(ref_grads)
    assert R.max_relative_error(grads, ref_grads) <= GRAD_RTOL
    assert abs(loss - ref_loss) <= LOSS_RTOL * abs(ref_loss) + 1e-6


# -- emulated device time -------------------------------------------------------------------------


def test_device_sleep_is_precise():
    """Never short; typically within a few microseconds (plain time.sleep overshoots by 60-80 us on
    this 2-core machine). The bound on the median is loose on purpose (2 ms, 25 times the plain
    overshoot): a loaded CI machine can wake a sleeper late now and then; the benchmark measures
    the real precision."""
    for seconds in (0.0005, 0.002):
        took = []
        for _ in range(15):
            t = time.perf_counter()
            device_sleep(seconds)
            took.append(time.perf_counter() - t)
        assert min(took) >= seconds
        assert sorted(took)[7] < seconds + 0.002


def test_emulated_stage_takes_f_rows_over_batch_forward_and_twice_backward():
    torch.manual_seed(0)
    inner = torch.nn.Linear(4, 4)
    stage = EmulatedTime(inner, seconds_per_batch=0.04, batch_size=8)
    x = torch.randn(2, 4, requires_grad=True)  # 2 rows of 8: F = 10 ms, B = 20 ms
    inner(x).sum().backward()  # a process's first backward starts autograd's threads: not timed
    x.grad = None
    inner.zero_grad(set_to_none=True)
    t = time.perf_counter()
    out = stage(x)
    t_forward = time.perf_counter() - t
    t = time.perf_counter()
    out.sum().backward()
    t_backward = time.perf_counter() - t
    assert 0.010 <= t_forward < 0.025 and 0.020 <= t_backward < 0.050  # upper bounds loose: loaded machines
    assert torch.equal(out, inner(x))
    ref = torch.autograd.grad(inner(x).sum(), [x, inner.weight])
    assert torch.allclose(x.grad, ref[0]) and torch.allclose(inner.weight.grad, ref[1])
    assert [n for n, _ in stage.named_parameters()] == ["inner.weight", "inner.bias"]  # no extra parameter


def test_emulated_stage_0_input_without_grad_still_waits_in_backward():
    stage = EmulatedTime(torch.nn.Linear(4, 4), seconds_per_batch=0.02, batch_size=1)
    out = stage(torch.randn(1, 4))  # like the batch on stage 0: requires no grad
    t = time.perf_counter()
    out.sum().backward()
    assert time.perf_counter() - t >= 0.04


def test_emulate_arguments_and_ideal_times():
    inner = torch.nn.Linear(2, 2)
    assert torch.equal(EmulatedTime(inner, 0, 4)(torch.ones(1, 2)), inner(torch.ones(1, 2)))
    for bad in (-1, float("nan"), "1", True):
        with pytest.raises(ValueError, match="seconds_per_batch"):
            EmulatedTime(inner, bad, 4)
    with pytest.raises(ValueError, match="batch_size"):
        EmulatedTime(inner, 0.1, 0)
    assert ideal_step_time(4, 8, 0.02) == pytest.approx(11 * 3 * 0.02 / 8)
    assert naive_step_time(4, 0.02) == pytest.approx(4 * 3 * 0.02)


# -- the single-process executor ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("p,m", [(1, 1), (1, 3), (2, 3), (2, 8), (4, 1), (4, 3), (4, 8)])
def test_single_process_gradients_equal_the_reference(name, p, m):
    spec = R.PipelineSpec(p, m, 11, seed=p + m)  # 11 rows: uneven micro-batches for m = 3 and 8
    out = R.traced_single_step(SCHEDULES[name](p, m), spec)
    assert out["notes"] == []
    assert_matches_reference(spec, out["loss"], out["grads"])
    # The tracing harness saw each stage run exactly its list, in order.
    assert schedule_from_events(out["events"]) == SCHEDULES[name](p, m)


def test_single_process_1f1b_replays_next_to_the_delayed_backward_loop():
    """What the traced single-process run shows: the per-stage 1F1B reaches the ideal on in-order
    devices, the delayed-backward loop of Option C (every stage driven by one loop) does not."""
    spec = R.PipelineSpec(4, 8, 16)
    costs = Costs(1, 2, rows=tuple(spec.sizes))
    ofob = replay(R.traced_single_step(one_f_one_b_schedule(4, 8), spec)["events"], costs)
    loop = replay(R.traced_single_step(delayed_backward_schedule(4, 8), spec)["events"], costs)
    assert ofob.makespan == pytest.approx(33) and ofob.peak_in_flight == {0: 4, 1: 3, 2: 2, 3: 1}
    assert loop.makespan > 1.1 * ofob.makespan


def test_single_process_executor_issues_actions_round_robin():
    """With the tracing harness and no emulated time, events come in issue order: one action per
    rank per round, a rank skipping its turn while its next action's input is missing."""
    spec = R.PipelineSpec(2, 2, 4)
    events = sorted(R.traced_single_step(gpipe_schedule(2, 2), spec)["events"], key=lambda e: e.start)
    assert [str(e) for e in events] == ["0F0", "1F0", "0F1", "1F1", "1B0", "0B0", "1B1", "0B1"]


def test_single_process_errors_are_one_line():
    from assignment.model import make_batch, make_model

    model = make_model(8, 4)
    stages = [torch.nn.Sequential(*list(model)[:2]), torch.nn.Sequential(*list(model)[2:])]
    x, y = make_batch(4, 8)
    loss_fn = torch.nn.MSELoss()
    cases = [
        (DEADLOCK, 2, "deadlock: rank 0 is stuck at 0B0 waiting for 1B0"),
        ({0: "0F0 0W0 0I0", 1: "1F0 1B0"}, 1, "invalid schedule: 0W0 runs before its input-grad half 0I0"),
        ({0: "0F0 0B0 1F0 1B0", 1: ""}, 1, "1F0 belongs to stage 1, which runs on rank 1"),
        (gpipe_schedule(2, 2), 0, "num_microbatches must be an int >= 1"),
        (gpipe_schedule(2, 5), 5, "cannot split a batch of 4 rows into 5"),
        (gpipe_schedule(3, 2), 2, "the schedule has 3 list(s) for 2 stages"),
        ({0: "0F0 0B0", 1: "1F0"}, 1, "invalid schedule: missing action 1B0"),
    ]
    for schedule, m, message in cases:
        with pytest.raises(R.RuntimeInputError) as info:
            R.run_actions_single(stages, x, y, loss_fn, m, schedule)
        assert message in str(info.value) and "\n" not in str(info.value), str(info.value)
    with pytest.raises(R.RuntimeInputError, match="deadlock: rank 0 is stuck at 0B0"):
        R.run_actions_single(stages, x, y, loss_fn, 2, DEADLOCK, validate_first=False)
    with pytest.raises(R.RuntimeInputError, match="rank 0: 0W0 runs before its input-grad half 0I0"):
        R.run_actions_single(stages, x, y, loss_fn, 1, {0: "0F0 0W0 0I0", 1: "1F0 1B0"}, validate_first=False)


# -- the multi-process executor -------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool():
    with R.PipelinePool(4, backend="gloo", recv_timeout=20) as pool:
        yield pool


MP_GRID = [(p, m, name) for p in (1, 2, 4) for m in (1, 3, 8) for name in ("gpipe", "1f1b")]


@pytest.mark.parametrize("p,m,name", MP_GRID)
def test_multi_process_gradients_equal_the_reference(pool, p, m, name):
    spec = R.PipelineSpec(p, m, 11, seed=10 * p + m)  # uneven micro-batches for m = 3 and 8; m < p at p = 4
    schedule = SCHEDULES[name](p, m)
    result = pool.run(schedule, spec)
    assert_matches_reference(spec, result.loss, result.grads)
    assert result.executed == schedule
    assert sorted(str(e) for e in result.events) == sorted(str(a) for acts in schedule.values() for a in acts)
    assert schedule_from_events(result.events) == schedule  # one clock for all ranks: order is consistent
    assert pool.startups == 1  # one process group for the whole module


def test_multi_process_transformer_and_three_stages(pool):
    for spec in (
        R.PipelineSpec(3, 5, 13, width=16, depth=4, kind="transformer", seed=7),
        R.PipelineSpec(3, 4, 9, width=24, depth=7, seed=8),
    ):
        for name in ("gpipe", "1f1b"):
            result = pool.run(SCHEDULES[name](3, spec.num_microbatches), spec)
            assert_matches_reference(spec, result.loss, result.grads)
    single = R.traced_single_step(
        one_f_one_b_schedule(3, 5), R.PipelineSpec(3, 5, 13, width=16, depth=4, kind="transformer", seed=7)
    )
    assert_matches_reference(
        R.PipelineSpec(3, 5, 13, width=16, depth=4, kind="transformer", seed=7), single["loss"], single["grads"]
    )


def test_multi_process_memory_and_order_on_the_real_timeline(pool):
    for name, peaks in (("1f1b", {0: 4, 1: 3, 2: 2, 3: 1}), ("gpipe", {s: 8 for s in range(4)})):
        result = pool.run(SCHEDULES[name](4, 8), R.PipelineSpec(4, 8, 16), steps=2)
        assert len(result.steps) == 2 and len(result.step_times) == 2
        assert timeline_from_events(result.events).peak_in_flight == peaks
        for e in result.events:  # a dependency ends before its dependant starts, on the shared clock
            if e.kind == "F" and e.stage > 0:
                prev = next(x for x in result.events if x.action == Action(e.stage - 1, "F", e.mb))
                assert prev.end <= e.start


def test_multi_process_emulated_time_is_never_beaten_and_pipelining_pays(pool):
    spec = R.PipelineSpec(2, 4, 8, seconds_per_batch=0.02)
    naive = pool.run(naive_schedule(2, 4), spec, steps=3)
    ofob = pool.run(one_f_one_b_schedule(2, 4), spec, steps=3)
    assert naive.median_step_time >= 0.98 * naive_step_time(2, 0.02)
    assert ofob.median_step_time >= 0.98 * spec.ideal_step_time
    assert naive.median_step_time / ofob.median_step_time > 1.2  # ideal: 8 / 5 = 1.6
    for e in ofob.events:
        want = 0.02 * spec.sizes[e.mb] / spec.batch_size * (1 if e.kind == "F" else 2)
        assert e.end - e.start >= 0.99 * want


def test_bad_input_is_refused_before_any_process_starts():
    fresh = R.PipelinePool(2, backend="gloo")
    cases = [
        (gpipe_schedule(9, 2), R.PipelineSpec(9, 2, 4), "cannot run 9 stages: the model has only 8 layers"),
        (gpipe_schedule(2, 2), R.PipelineSpec(2, 0, 4), "num_microbatches (m) must be an int >= 1, got 0"),
        (gpipe_schedule(2, 5), R.PipelineSpec(2, 5, 4), "cannot split a batch of 4 rows into 5"),
        (gpipe_schedule(3, 2), R.PipelineSpec(3, 2, 4), "3 stages need 3 processes, this pool has 2"),
        (DEADLOCK, R.PipelineSpec(2, 2, 4), "invalid schedule: deadlock: rank 0 is stuck at 0B0"),
        ({0: "0F0 0B0", 1: "1F0"}, R.PipelineSpec(2, 1, 4), "invalid schedule: missing action 1B0"),
        ({0: "0F0 0W0 0I0", 1: "1F0 1B0"}, R.PipelineSpec(2, 1, 4), "0W0 runs before its input-grad half 0I0"),
        (
            gpipe_schedule(2, 2),
            R.PipelineSpec(2, 2, 4, stages_per_rank=5),
            "cannot run 2 ranks x 5 stages per rank = 10 stages: the model has only 8 layers",
        ),
        (
            {0: "0F0 0B0 2F0 2B0", 1: "1F0 1B0 3F0 3B0"},
            R.PipelineSpec(2, 1, 4, stages_per_rank=2),
            "invalid schedule: deadlock",
        ),
        (
            {0: "0F0 1F0 1B0 0B0", 1: "2F0 3F0 3B0 2B0"},
            R.PipelineSpec(2, 1, 4, stages_per_rank=2),
            "rank 0, step 1: 1F0 belongs to stage 1, which runs on rank 1",
        ),
        ({0: "0F0 0B0", 1: "1F0 1B0 1F3"}, R.PipelineSpec(2, 1, 4), "names micro-batch 3, there are 1"),
        ("not a schedule", R.PipelineSpec(2, 1, 4), "a schedule is a dict"),
        (gpipe_schedule(2, 2), R.PipelineSpec(2, 2, 4, seconds_per_batch=-1), "seconds_per_batch must be"),
    ]
    for schedule, spec, message in cases:
        with pytest.raises(R.RuntimeInputError) as info:
            fresh.run(schedule, spec)
        assert message in str(info.value) and "\n" not in str(info.value), str(info.value)
    with pytest.raises(R.RuntimeInputError) as info:
        fresh.run(DEADLOCK, R.PipelineSpec(2, 2, 4))
    assert "<-- ERROR HERE (rank 0: 0B0)" in info.value.details
    with pytest.raises(R.RuntimeInputError, match="steps must be an int >= 1"):
        fresh.run(gpipe_schedule(2, 2), R.PipelineSpec(2, 2, 4), steps=0)
    with pytest.raises(R.RuntimeInputError, match="cannot run 9 stages"):
        R.launch(gpipe_schedule(9, 2), R.PipelineSpec(9, 2, 4))
    assert not fresh.started and fresh.startups == 0


@pytest.mark.parametrize("transport", ["shm", "p2p"])
def test_deadlocking_list_fails_naming_rank_and_action_and_the_pool_recovers(transport):
    with R.PipelinePool(2, backend="gloo", recv_timeout=2, transport=transport) as pool:
        started = time.monotonic()
        with pytest.raises(R.PipelineError) as info:
            pool.run(DEADLOCK, R.PipelineSpec(2, 2, 4), validate_first=False)
        assert time.monotonic() - started < 30
        message = str(info.value)
        # shm: both ranks time out. p2p: whichever rank times out first closes the connection; the other
        # reports that. "rank 0 waited 2 s at step 1 (0B0) for the gradient of micro-batch 0 (1B0) from
        # rank 1, which never came: ...; rank 1 ... at step 1 (1F1) ... waiting for ... (0F1) ..."
        assert "\n" not in message and message.split(" waited 2 s at step 1 ")[0] in ("rank 0", "rank 1"), message
        assert set(info.value.failures) == {0, 1}
        assert "(0B0)" in info.value.failures[0] and "(1B0) from rank 1" in info.value.failures[0]
        assert "(1F1)" in info.value.failures[1] and "(0F1) from rank 0" in info.value.failures[1]
        assert not pool.started  # stopped: a failed run's processes are not reused
        result = pool.run(one_f_one_b_schedule(2, 2), R.PipelineSpec(2, 2, 4))
        assert_matches_reference(R.PipelineSpec(2, 2, 4), result.loss, result.grads)
        assert pool.startups == 2


def _python(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def test_command_line_launches_and_reports():
    proc = _python(
        "-m",
        "autograder.runtime",
        "--schedule",
        "1f1b",
        "-p",
        "2",
        "-m",
        "3",
        "--batch",
        "7",
        "--f",
        "0.004",
        "--steps",
        "2",
    )
    assert proc.returncode == 0, proc.stderr
    assert "p=2 m=3 batch=7" in proc.stdout and "measured/ideal" in proc.stdout and "stage 1 |" in proc.stdout
    error = float(proc.stdout.split("max |g - g_ref| / max |g_ref| = ")[1].split()[0])
    assert error <= GRAD_RTOL


def test_command_line_errors_are_one_line():
    proc = _python("-m", "autograder.runtime", "--schedule", "zigzag")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: unknown schedule 'zigzag': choose one of naive, gpipe, 1f1b, interleaved, zero_bubble"
    ]
    proc = _python("-m", "autograder.runtime", "--impl", "assignment", "--schedule", "gpipe")
    assert proc.returncode == 1 and "NotImplementedError: part6.gpipe_actions" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_same_code_runs_under_torchrun():
    proc = _python(
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "autograder.runtime",
        "--schedule",
        "gpipe",
        "-p",
        "2",
        "-m",
        "4",
        "--batch",
        "10",
        "--f",
        "0",
        "--steps",
        "1",
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.count("max |g - g_ref|") == 1  # printed by rank 0 only
    error = float(proc.stdout.split("max |g - g_ref| / max |g_ref| = ")[1].split()[0])
    assert error <= GRAD_RTOL


@pytest.mark.slow
def test_benchmark_prints_a_markdown_table_and_the_machine():
    proc = _python(
        "-m",
        "autograder.bench",
        "-p",
        "2",
        "-m",
        "2",
        "--batch",
        "4",
        "--f",
        "0.002",
        "--steps",
        "1",
        "--warmup",
        "1",
        "--rounds",
        "1",
        "--profile",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("| runtime | schedule |") and lines[1].startswith("|---")
    rows = [line for line in lines if line.startswith("| this runtime") or line.startswith("| torch.distributed")]
    # naive, GPipe, 1F1B, interleaved 1F1B (v = 2), ZB-H1 here; all but naive with torch.distributed.pipelining
    assert len(rows) == 9, proc.stdout
    assert all(" n/a " not in line for line in rows), proc.stdout
    assert any(line.startswith("Machine: ") and "torch " in line for line in lines)
    # --profile: where this runtime's time goes per action (message hop, send, Python, overshoot)
    assert "This runtime, per action at f = 2 ms" in proc.stdout
    costs = [line.split()[0] for line in lines if " median " in line and " us, p90 " in line]
    assert costs == ["hop", "send", "between", "over"], proc.stdout

"""Part 6: per-stage schedules as data (``gpipe_actions``, ``one_f_one_b_actions``).

The student's functions only *return lists*: the call hands them back as plain data, and the judge
parses, validates and simulates them (``autograder.schedules``) and runs them in its own runtime,
one process per stage over torch.distributed (``autograder.dist``), so no student code runs in the
judge's processes. Graded: the lists are valid; simulated on in-order devices they take the
schedule's step time; their activation memory (peak micro-batches in flight per stage); run for
real, they give the single-device gradients, each rank running exactly its list.

The measured speedup of a real run (emulated device time) is not graded: a wall-clock measurement
on a shared grader is not reproducible enough to decide a grade. ``python -m autograder.dist``
shows it for a student's own lists, and ``python -m autograder.bench`` measures the runtime.
"""

from __future__ import annotations

import pytest

from autograder import practical
from autograder.dist import PipelineError, PipelinePool, PipelineSpec, RuntimeInputError
from autograder.judge.calls import expect
from autograder.judge.checks.gradients import check_gradients
from autograder.judge.checks.lists import check_in_flight, check_makespan, check_valid, parsed_lists
from autograder.judge.trial import Trial, TrialSpec, reference

GROUP = "per_stage"
WHICH = ("gpipe", "1f1b")
# (p, m): m < p, m = 1, p = 1, m = p included.
LIST_SETTINGS = [(4, 8), (3, 5), (4, 2), (2, 1), (1, 3), (5, 7), (3, 3)]
# (p, m, batch, seed): m < p with uneven micro-batches (4, 3, 3 rows), and m > p uneven (3, 3, 3, 2, 2).
GRAD_SETTINGS = [(4, 3, 10, 1), (3, 5, 13, 2)]
POOL_SIZE = 4


def graded(points: float):
    return pytest.mark.parametrize("which", [pytest.param(w, marks=pytest.mark.points(points, group=GROUP), id=w)
                                             for w in WHICH])


@pytest.fixture(scope="module")
def lists(calls):
    """``lists(which, p, m)``: the student's lists for every stage, parsed (fails the test otherwise)."""
    def get(which: str, p: int, m: int):
        spec = practical.ACTION_LISTS[which]
        cases = LIST_SETTINGS + [(g[0], g[1]) for g in GRAD_SETTINGS]
        data = calls.get("action_lists", spec.function, spec.function, which=which, cases=[list(c) for c in cases])
        return parsed_lists(data, which, p, m, cases)
    return get


@graded(2)
def test_lists_are_valid(lists, which):
    """every stage's list is complete and the lists can run together (no deadlock)"""
    for p, m in LIST_SETTINGS:
        expect(check_valid(lists(which, p, m), which, p, m))


@graded(2)
def test_simulated_step_time(lists, which):
    """simulated on p in-order devices, the lists take the schedule's step time, also when m < p"""
    for p, m in LIST_SETTINGS:
        expect(check_makespan(lists(which, p, m), which, p, m))


@graded(1.5)
def test_activation_memory(lists, which):
    """activation memory: the micro-batches in flight on each stage are what the schedule keeps"""
    for p, m in LIST_SETTINGS:
        expect(check_in_flight(lists(which, p, m), which, p, m))


@pytest.fixture(scope="module")
def pool():
    """The runtime's processes, started on first use and shared by this module's tests."""
    pool = PipelinePool(POOL_SIZE, backend="gloo", recv_timeout=20.0)
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def run_lists(pool):
    """``run_lists(schedule, spec, steps, key)``: a run's result, or fails the test with the error."""
    cache: dict = {}

    def run(schedule, spec: PipelineSpec, steps: int = 1, key=None):
        key = key or (spec, steps, repr(sorted(schedule.items())))
        if key not in cache:
            try:
                cache[key] = pool.run(schedule, spec, steps)
            except (RuntimeInputError, PipelineError) as exc:
                cache[key] = f"one process per stage, {spec}: {exc}"
        if isinstance(cache[key], str):
            pytest.fail(cache[key], pytrace=False)
        return cache[key]

    return run


def _grad_run(lists, run_lists, which, p, m, batch, seed):
    schedule = lists(which, p, m)
    expect(check_valid(schedule, which, p, m))
    return schedule, run_lists(schedule, PipelineSpec(p, m, batch, seed=seed))


@graded(1.5)
def test_real_run_gradients(lists, run_lists, which):
    """run with one process per stage, the lists give the single-device gradients"""
    for p, m, batch, seed in GRAD_SETTINGS:
        _, result = _grad_run(lists, run_lists, which, p, m, batch, seed)
        tspec = TrialSpec(which, p, m, batch, seed=seed)
        ref = reference(tspec)
        computed = {n: result.grads.get(n) for n in ref.expected}
        grads = {n: None if g is None else g + ref.sentinel[n] for n, g in computed.items()}
        expect(check_gradients(Trial(tspec, grads=grads, computed=computed), ref))


@graded(0.5)
def test_each_rank_runs_its_list(lists, run_lists, which):
    """each process runs exactly its declared list, in order"""
    for p, m, batch, seed in GRAD_SETTINGS:
        schedule, result = _grad_run(lists, run_lists, which, p, m, batch, seed)
        for rank, declared in schedule.items():
            ran = result.executed.get(rank, [])
            if ran != declared:
                step = next((i for i, (a, b) in enumerate(zip(ran, declared)) if a != b), min(len(ran), len(declared)))
                expect(f"{practical.ACTION_LISTS[which].function}(stage, {p}, {m}): rank {rank} ran "
                       f"{' '.join(map(str, ran))} but its list is {' '.join(map(str, declared))} (first difference "
                       f"at step {step})")

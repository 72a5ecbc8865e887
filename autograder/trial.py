"""The judge's side of a trial: run a probe, check the returned data, compute the reference.

``Runner.call(probe, **kwargs)`` runs a probe (``autograder.probes``) against the implementation
being graded and returns its data. ``InProcessRunner`` calls it directly (fast local feedback);
the grader's ``SandboxRunner`` (``autograder.sandbox``) runs it in a child process. Whichever ran
it, the data goes through ``check_*`` functions that accept only the expected types, so a probe's
result is never trusted beyond its shape.
"""
from __future__ import annotations

import abc
import functools
import math
import signal
import threading
from dataclasses import dataclass, field

import torch

from .impl import REPO_ROOT, Impl
from .probes import PROBES, even_partition, expected_sizes, sentinel_grads
from .schedules import Event


class ProbeFailed(Exception):
    """A probe gave no usable data: it timed out, its process died, or its data was malformed.

    The message is one line for the student (what happened, during which call).
    """


class TimedOut(ProbeFailed):
    """The probe ran past the runner's time limit (a hang, a deadlock, an endless loop)."""


class BadData(ProbeFailed):
    """A probe returned data of the wrong shape or type (a crash or tampering in the child)."""


class Runner(abc.ABC):
    """Runs probes against one implementation; ``call`` returns the probe's data or raises ProbeFailed."""

    impl: Impl
    timeout: float

    @abc.abstractmethod
    def call(self, probe: str, **kwargs) -> dict:
        """Run ``PROBES[probe](impl, **kwargs)`` somewhere and return its data."""

    def close(self) -> None:
        """Release what the runner holds (processes, directories)."""


class _Timeout(BaseException):
    """Raised inside student code by the in-process alarm (a BaseException: ``except Exception`` in a
    student's loop cannot swallow it)."""


class InProcessRunner(Runner):
    """Calls probes in this process: fastest, used by ``pytest autograder/`` on a student's machine.

    A probe that runs longer than ``timeout`` seconds is interrupted (SIGALRM, main thread only).
    """

    def __init__(self, impl: Impl, timeout: float = 60.0):
        self.impl = impl
        self.timeout = timeout

    def call(self, probe: str, **kwargs) -> dict:
        use_alarm = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
        if not use_alarm:
            return PROBES[probe](self.impl, **kwargs)

        def on_alarm(signum, frame):
            raise _Timeout()

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, self.timeout)
        try:
            return PROBES[probe](self.impl, **kwargs)
        except _Timeout:
            raise TimedOut(f"timed out after {self.timeout:g} s: does every loop end, and does every "
                              f"micro-batch's backward run exactly once?") from None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


class TimeoutBreaker(Runner):
    """Wraps a runner: after ``limit`` timeouts, later calls get ``short`` seconds.

    A function that hangs (say ``split_microbatches``) is called by dozens of probes; without this,
    grading would wait the full timeout for each, past any sensible overall limit. Correct code
    finishes a probe in well under a second, so the short limit only shortens hangs.
    """

    def __init__(self, runner: Runner, limit: int = 2, short: float = 5.0):
        self.runner, self.impl, self.limit, self.short = runner, runner.impl, limit, short
        self.timeouts = 0

    def call(self, probe: str, **kwargs) -> dict:
        try:
            return self.runner.call(probe, **kwargs)
        except TimedOut:
            self.timeouts += 1
            if self.timeouts >= self.limit:
                self.runner.timeout = min(self.runner.timeout, self.short)
            raise

    def close(self) -> None:
        self.runner.close()


# -- schedule trials ------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrialSpec:
    """One traced step: ``schedule`` in ``naive``, ``gpipe``, ``delayed``; sizes; model; seed."""

    schedule: str
    num_stages: int
    num_microbatches: int
    batch_size: int
    width: int = 32
    depth: int = 8
    seed: int = 0
    kind: str = "mlp"

    def __str__(self) -> str:
        return (f"{self.schedule} p={self.num_stages} m={self.num_microbatches} batch={self.batch_size} "
                f"width={self.width} depth={self.depth} seed={self.seed}")

    @property
    def sizes(self) -> list[int]:
        return expected_sizes(self.batch_size, self.num_microbatches)


@dataclass
class Trial:
    """What one traced step did, as checked data."""

    spec: TrialSpec
    error: str | None
    loss: float | None
    grads: dict[str, torch.Tensor | None]
    events: list[Event]
    notes: list[str] = field(default_factory=list)
    tampered: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    return_problem: str | None = None  # the step returned something other than a float


def _expect(cond: bool, what: str) -> None:
    if not cond:
        raise BadData(f"probe returned malformed data: {what}")


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _str_list(x, what: str) -> list[str]:
    _expect(isinstance(x, list) and all(isinstance(s, str) for s in x), what)
    return [s[:500] for s in x[:50]]


def check_schedule_data(spec: TrialSpec, data: dict, param_shapes: dict[str, tuple]) -> Trial:
    """Turn a schedule probe's data into a :class:`Trial`, accepting only the expected types."""
    _expect(isinstance(data, dict), "not a dict")
    error = data.get("error")
    _expect(error is None or isinstance(error, str), "error")
    loss = data.get("loss")
    _expect(loss is None or isinstance(loss, float), "loss")
    return_problem = data.get("return_problem")
    _expect(return_problem is None or isinstance(return_problem, str), "return_problem")
    grads = data.get("grads")
    _expect(isinstance(grads, dict) and set(grads) == set(param_shapes), "grads keys")
    for name, g in grads.items():
        _expect(g is None or (isinstance(g, torch.Tensor) and g.dtype == torch.float32
                              and tuple(g.shape) == param_shapes[name]), f"grad of {name}")
    raw = data.get("events")
    _expect(isinstance(raw, list) and len(raw) <= 100_000, "events")
    events = []
    for e in raw:
        _expect(isinstance(e, list) and len(e) == 5 and isinstance(e[0], int) and e[1] in ("F", "B")
                and isinstance(e[2], int) and _is_num(e[3]) and _is_num(e[4]) and e[3] <= e[4], f"event {e!r:.80}")
        events.append(Event(int(e[0]), e[1], int(e[2]), float(e[3]), float(e[4])))
    return Trial(spec, error[:500] if error else None, loss, grads, events,
                 notes=_str_list(data.get("notes"), "notes"),
                 tampered=_str_list(data.get("tampered"), "tampered"),
                 replaced=_str_list(data.get("replaced"), "replaced"),
                 changed=_str_list(data.get("changed"), "changed"),
                 return_problem=return_problem[:300] if return_problem else None)


def run_trial(runner: Runner, spec: TrialSpec) -> Trial:
    """Run one traced step of the implementation's schedule and return checked data."""
    ref = reference(spec)
    try:
        data = runner.call("schedule", schedule=spec.schedule, num_stages=spec.num_stages,
                       num_microbatches=spec.num_microbatches, batch_size=spec.batch_size,
                           width=spec.width, depth=spec.depth, seed=spec.seed, kind=spec.kind)
        return check_schedule_data(spec, data, {n: tuple(g.shape) for n, g in ref.expected.items()})
    except ProbeFailed as exc:
        return Trial(spec, str(exc), None, {}, [])


# -- the reference, computed by the judge ---------------------------------------------------------

@dataclass(frozen=True)
class Reference:
    """Single-device float32 ground truth for one trial.

    ``expected``: each parameter's gradient after the step (sentinel + full-batch gradient);
    ``sentinel``: the gradients present before the step; ``per_mb``: each parameter's gradient of
    micro-batch k's *unweighted* mean loss (for diagnosing wrong weights); ``stage_of``: the stage
    (of the judge's even partition) each parameter belongs to.
    """

    loss: float
    expected: dict[str, torch.Tensor]
    sentinel: dict[str, torch.Tensor]
    per_mb: list[dict[str, torch.Tensor]]
    stage_of: dict[str, int]


def provided_model():
    """The judge's model module: the pristine ``assignment/model.py`` of this repository.

    Never the graded implementation's copy: a submission cannot change the ground truth.
    """
    return Impl("assignment", REPO_ROOT).module("model")


@functools.lru_cache(maxsize=64)
def reference(spec: TrialSpec) -> Reference:
    M = provided_model()
    model = M.make_model(spec.width, spec.depth, seed=spec.seed, kind=spec.kind)
    inputs, targets = M.make_batch(spec.batch_size, spec.width, seed=spec.seed, kind=spec.kind)
    loss_fn = M.loss_function()
    sentinel = sentinel_grads(model, spec.seed)
    for name, p in model.named_parameters():
        p.grad = sentinel[name].clone()
    loss = M.reference_step(model, inputs, targets, loss_fn)
    expected = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    per_mb = []
    row = 0
    for size in spec.sizes:
        model.zero_grad(set_to_none=True)
        loss_fn(model(inputs[row:row + size]), targets[row:row + size]).backward()
        per_mb.append({n: p.grad.detach().clone() for n, p in model.named_parameters()})
        row += size
    stage_of = {}
    for s, stage in enumerate(even_partition(model, spec.num_stages, [torch.device("cpu")] * spec.num_stages)):
        for p in stage.parameters():
            stage_of[next(n for n, q in model.named_parameters() if q is p)] = s
    return Reference(loss, expected, sentinel, per_mb, stage_of)

"""Schedule trials: one traced step of a student's schedule, judged from data the judge checked.

:func:`run_trial` runs the step in the sandbox with the stages in a :class:`~.host.TrialHost` here,
checks the types and shapes of everything the call returned, and gives a :class:`Trial`: the
events the host recorded, the gradients the stages really computed (the host's sum), and the
``.grad`` the student's step left on the parameters it was given. :func:`reference` computes the
single-device float32 ground truth from the provided model, never from the submission.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import torch

from .. import practical
from ..dist.model import course_model, even_partition, split_sizes
from ..tracing import TraceEvent
from .host import TrialHost
from .sandbox import BadData, ProbeFailed, Sandbox
from .text import clean_line


@dataclass(frozen=True)
class TrialSpec:
    """One traced step: ``schedule`` (a key of ``practical.STEP_SCHEDULES``), sizes, model, seed."""

    schedule: str
    num_stages: int
    num_microbatches: int
    batch_size: int
    width: int = 32
    depth: int = 8
    seed: int = 0
    kind: str = "mlp"

    def __str__(self) -> str:
        return (
            f"{self.schedule} p={self.num_stages} m={self.num_microbatches} batch={self.batch_size} "
            f"width={self.width} depth={self.depth} seed={self.seed}" + ("" if self.kind == "mlp" else " " + self.kind)
        )

    @property
    def sizes(self) -> list[int]:
        return split_sizes(self.batch_size, self.num_microbatches)


@dataclass
class Trial:
    """What one traced step did, as checked data (``failure``: the call gave no data, one line)."""

    spec: TrialSpec
    failure: str | None = None
    error: str | None = None  # the step raised
    returned: object = None
    events: list[TraceEvent] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    syncs: list[tuple[int, str]] = field(default_factory=list)  # (events before it, where)
    grads: dict[str, torch.Tensor | None] = field(default_factory=dict)  # the student's .grad after the step
    computed: dict[str, torch.Tensor | None] = field(default_factory=dict)  # what the stages computed
    changed: list[str] = field(default_factory=list)  # parameters whose values the step changed
    replaced: bool = False  # the stages no longer hold the parameters they were given

    @property
    def plain_events(self):
        return [e.event for e in self.events]


@dataclass(frozen=True)
class Reference:
    """Single-device float32 ground truth for one trial.

    ``expected``: each parameter's gradient after the step (sentinel + full-batch gradient);
    ``sentinel``: gradients present before the step (a step must add to them); ``per_mb``: each
    parameter's gradient of micro-batch k's *unweighted* mean loss (to diagnose wrong weights);
    ``stage_of``: the stage (of the judge's even partition) each parameter belongs to.
    """

    loss: float
    expected: dict[str, torch.Tensor]
    sentinel: dict[str, torch.Tensor]
    per_mb: list[dict[str, torch.Tensor]]
    stage_of: dict[str, int]

    @property
    def delta(self) -> dict[str, torch.Tensor]:
        return {n: self.expected[n] - self.sentinel[n] for n in self.expected}


def sentinel_grads(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Gradients already present before the step, to check that the schedule accumulates."""
    gen = torch.Generator().manual_seed(20_000 + seed)
    return {name: 0.25 * torch.randn(p.shape, generator=gen) for name, p in model.named_parameters()}


@functools.lru_cache(maxsize=64)
def reference(spec: TrialSpec) -> Reference:
    M = course_model()
    model = M.make_model(spec.width, spec.depth, seed=spec.seed, kind=spec.kind)
    inputs, targets = M.make_batch(spec.batch_size, spec.width, seed=spec.seed, kind=spec.kind)
    loss_fn = M.loss_function()
    sentinel = sentinel_grads(model, spec.seed)
    for name, p in model.named_parameters():
        p.grad = sentinel[name].clone()
    loss = M.reference_step(model, inputs, targets, loss_fn)
    expected = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    per_mb, row = [], 0
    for size in spec.sizes:
        model.zero_grad(set_to_none=True)
        loss_fn(model(inputs[row : row + size]), targets[row : row + size]).backward()
        per_mb.append({n: p.grad.detach().clone() for n, p in model.named_parameters()})
        row += size
    names = {id(p): n for n, p in model.named_parameters()}
    stages = even_partition(model, spec.num_stages, [torch.device("cpu")] * spec.num_stages)
    stage_of = {names[id(p)]: s for s, stage in enumerate(stages) for p in stage.parameters()}
    return Reference(loss, expected, sentinel, per_mb, stage_of)


def run_trial(sandbox: Sandbox, spec: TrialSpec) -> Trial:
    """Run one traced step of the student's schedule (see the module docstring)."""
    host = TrialHost(spec)
    names = {id(p): n for n, p in host.model.named_parameters()}
    stage_names = [[names[id(p)] for p in ps] for ps in host.executor.params]
    sentinel = sentinel_grads(host.model, spec.seed)
    kwargs = {
        "schedule": spec.schedule,
        "inputs": host.inputs,
        "targets": host.targets,
        "sizes": spec.sizes,
        "params": [[p.detach() for p in ps] for ps in host.executor.params],
        "sentinel": [[sentinel[n] for n in ns] for ns in stage_names],
    }
    try:
        data = sandbox.call("schedule", kwargs, key=practical.STEP_SCHEDULES[spec.schedule].function, host=host)
        trial = _check(spec, data, stage_names, kwargs["params"])
    except ProbeFailed as exc:
        trial = Trial(spec, failure=str(exc))
    finally:
        host.close()
    trial.events = list(host.recorder.events)
    trial.notes = list(host.recorder.notes)
    trial.syncs = [(o.after, o.detail) for o in host.recorder.observations if o.kind == "sync"]
    trial.computed = {n: g for ns, gs in zip(stage_names, host.param_grads()) for n, g in zip(ns, gs)}
    return trial


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise BadData(f"the call returned malformed data ({what})")


def _check(spec: TrialSpec, data: dict, stage_names: list[list[str]], given: list[list[torch.Tensor]]) -> Trial:
    """Accept the schedule probe's data only in the expected types and shapes."""
    error = data.get("error")
    _expect(error is None or isinstance(error, str), "error")
    grads, values, same = data.get("grads"), data.get("values"), data.get("same_params")
    _expect(
        isinstance(grads, list)
        and isinstance(values, list)
        and isinstance(same, list)
        and len(grads) == len(values) == len(same) == len(stage_names),
        "per-stage lists",
    )
    trial = Trial(spec, error=clean_line(error) if error else None, returned=data.get("returned"))
    for s, names in enumerate(stage_names):
        _expect(
            isinstance(grads[s], list)
            and isinstance(values[s], list)
            and len(grads[s]) == len(values[s]) == len(names),
            f"stage {s}",
        )
        for name, g, v, ref in zip(names, grads[s], values[s], given[s]):
            _expect(g is None or (isinstance(g, torch.Tensor) and g.shape == ref.shape), f"grad of {name}")
            _expect(isinstance(v, torch.Tensor) and v.shape == ref.shape, f"value of {name}")
            trial.grads[name] = None if g is None else g.to(torch.float64)
            if not torch.equal(v.to(ref.dtype), ref):
                trial.changed.append(name)
    trial.replaced = not all(x is True for x in same)
    return trial


def returned_loss(trial: Trial) -> tuple[float | None, str | None]:
    """The loss the step returned as a float, or why it is not one (one line)."""
    value = trial.returned
    if isinstance(value, bool) or value is None:
        return None, f"returned {value!r}; return the batch loss as a Python float"
    if isinstance(value, (int, float)):
        return (float(value), None) if math.isfinite(value) else (None, f"returned {value}, not a finite loss")
    if isinstance(value, dict) and "tensor" in value:
        return None, "returned a tensor; return the loss as a Python float (loss.item(), once, at the end)"
    kind = value.get("type") if isinstance(value, dict) else type(value).__name__
    return None, f"returned a {kind or 'str'}; return the batch loss as a Python float"

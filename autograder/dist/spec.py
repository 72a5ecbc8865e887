"""What a multi-process run executes: the pipeline's shape (:class:`PipelineSpec`), the lists'
checks, and the runtime's errors."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..schedules import Action, Schedule, ScheduleError, parse_schedule, validate
from .emulate import ideal_step_time, simulated_step_time
from .model import split_sizes

DEFAULT_RECV_TIMEOUT = 30.0  # seconds a rank waits for one message before it reports a deadlock
DEFAULT_INIT_TIMEOUT = 120.0  # seconds to start the processes and join the process group


class RuntimeInputError(ValueError):
    """The run was refused before starting anything; the message is one line.

    ``details``: more to read, when there is any (the validator's step x rank grid).
    """

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details


class PipelineError(RuntimeError):
    """A multi-process run failed: a rank timed out waiting for a message, crashed or died.

    ``failures``: ``{rank: one-line message}`` of every rank that reported a problem.
    """

    def __init__(self, message: str, failures: dict[int, str] | None = None):
        super().__init__(message)
        self.failures = dict(failures or {})


@dataclass(frozen=True)
class PipelineSpec:
    """The model, the batch and the pipeline shape of a run; every rank rebuilds the same from it.

    ``num_stages``: ``p``, the number of ranks (processes); ``stages_per_rank``: ``v``, model chunks
    per rank (interleaving): the model is split into ``p x v`` stages by the judge's even partition
    and stage ``s`` runs on rank ``s % p``. ``seconds_per_batch``: emulated device time ``f`` of one
    stage of the non-interleaved model (0 = only the real compute); each chunk takes ``f / v``.
    """

    num_stages: int
    num_microbatches: int
    batch_size: int
    width: int = 32
    depth: int = 8
    seed: int = 0
    kind: str = "mlp"
    seconds_per_batch: float = 0.0
    stages_per_rank: int = 1

    @property
    def num_ranks(self) -> int:
        """``p``: processes, one list of actions each (the same as ``num_stages``)."""
        return self.num_stages

    @property
    def total_stages(self) -> int:
        """``p x v``: pieces of the model, stage ``s`` on rank ``s % p``."""
        return self.num_stages * self.stages_per_rank

    @property
    def seconds_per_chunk(self) -> float:
        """``f / v``: emulated seconds of one stage's forward of the whole batch."""
        return self.seconds_per_batch / self.stages_per_rank

    @property
    def sizes(self) -> list[int]:
        """Rows of each micro-batch (``torch.tensor_split``: larger ones first)."""
        return split_sizes(self.batch_size, self.num_microbatches)

    @property
    def ideal_step_time(self) -> float:
        """``(m + p - 1)(F + B)`` of the emulated costs, in seconds (0 without emulated time): the
        ideal of GPipe and 1F1B; see :meth:`simulated_step_time` for any schedule."""
        return ideal_step_time(self.num_stages, self.num_microbatches, self.seconds_per_batch)

    def simulated_step_time(self, schedule: Any) -> float:
        """Makespan of ``schedule`` on in-order devices with this spec's emulated costs, in seconds."""
        return simulated_step_time(schedule, self.seconds_per_batch, self.sizes, self.stages_per_rank)

    def __str__(self) -> str:
        f = f" f={self.seconds_per_batch * 1e3:g}ms" if self.seconds_per_batch else ""
        v = f" v={self.stages_per_rank}" if self.stages_per_rank != 1 else ""
        return (
            f"p={self.num_stages}{v} m={self.num_microbatches} batch={self.batch_size} "
            f"{self.kind} width={self.width} depth={self.depth} seed={self.seed}{f}"
        )


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_spec(spec: PipelineSpec) -> None:
    """Raise :class:`RuntimeInputError` (one line) if ``spec`` cannot be run."""
    p, m, batch, v = spec.num_stages, spec.num_microbatches, spec.batch_size, spec.stages_per_rank
    for name, value in (
        ("num_stages (p)", p),
        ("num_microbatches (m)", m),
        ("batch_size", batch),
        ("width", spec.width),
        ("depth", spec.depth),
        ("stages_per_rank (v)", v),
    ):
        if not _is_int(value) or value < 1:
            raise RuntimeInputError(f"{name} must be an int >= 1, got {value!r}")
    if p * v > spec.depth:
        what = f"{p} stages" if v == 1 else f"{p} ranks x {v} stages per rank = {p * v} stages"
        raise RuntimeInputError(
            f"cannot run {what}: the model has only {spec.depth} layers (each stage needs at least one)"
        )
    if m > batch:
        raise RuntimeInputError(f"cannot split a batch of {batch} rows into {m} non-empty micro-batches")
    f = spec.seconds_per_batch
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f) or f < 0:
        raise RuntimeInputError(f"seconds_per_batch must be a finite number >= 0, got {f!r}")
    if spec.kind not in ("mlp", "transformer"):
        raise RuntimeInputError(f"kind must be 'mlp' or 'transformer', got {spec.kind!r}")


def _check_action(rank: int, step: int, a: Action, p: int, v: int, m: int) -> None:
    """One action's placement and indices (stage ``s`` on rank ``s % p``)."""
    if a.stage >= p * v:
        raise RuntimeInputError(
            f"rank {rank}, step {step}: {a} names stage {a.stage}, there are {p * v} (0..{p * v - 1}; "
            f"{p} rank(s) x {v} stage(s) per rank)"
        )
    if a.stage % p != rank:
        where = f"rank {a.stage % p}" if v > 1 else f"rank {a.stage}"
        raise RuntimeInputError(
            f"rank {rank}, step {step}: {a} belongs to stage {a.stage}, which runs on {where} "
            f"(stage s runs on rank s % p, p = {p})"
        )
    if a.mb >= m:
        raise RuntimeInputError(f"rank {rank}, step {step}: {a} names micro-batch {a.mb}, there are {m} (0..{m - 1})")


def check_schedule(
    schedule: Any, num_stages: int, num_microbatches: int, *, stages_per_rank: int = 1, run_validate: bool = True
) -> Schedule:
    """Parse ``schedule`` and make sure these executors can run it; returns ``{rank: [Action]}``.

    ``num_stages``: ``p``, the ranks (one list each); ``stages_per_rank``: ``v``; the lists hold
    ``F``, ``B``, ``I`` and ``W`` actions of stages ``0..p*v-1``, stage ``s`` on rank ``s % p``.
    With ``run_validate`` (the default) the lists go through ``autograder.schedules.validate``:
    complete, well placed and deadlock-free. Without it, only the checks the executors need
    (placement, indices in range) are made, so a deadlocking list can be run on purpose to see
    the runtime's timeout.
    Raises :class:`RuntimeInputError` whose message is one line; ``details`` holds the grid.
    """
    p, v = num_stages, stages_per_rank
    try:
        parsed = parse_schedule(schedule)
    except ScheduleError as exc:
        raise RuntimeInputError(str(exc).splitlines()[0]) from None
    if sorted(parsed) != list(range(p)):
        raise RuntimeInputError(
            f"the schedule has ranks {sorted(parsed)}, expected one list per rank: ranks 0..{p - 1}"
        )
    for rank, actions in parsed.items():
        for step, a in enumerate(actions):
            _check_action(rank, step, a, p, v, num_microbatches)
    if run_validate:
        try:
            validate(parsed, p * v, num_microbatches)
        except ScheduleError as exc:
            first, _, grid = str(exc).partition("\n")
            raise RuntimeInputError(f"invalid schedule: {first}", grid) from None
    return parsed


def _plain_schedule(schedule: Schedule) -> dict[int, list[str]]:
    return {rank: [str(a) for a in actions] for rank, actions in schedule.items()}

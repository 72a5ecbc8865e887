"""Executors of per-stage action lists (the package ``autograder.dist``): in one process, and one
process per rank over torch.distributed.

A schedule is data (``autograder.schedules``): ``{rank: [Action, ...]}`` with kinds ``F``
(forward), ``B`` (full backward), ``I`` (input gradient) and ``W`` (weight gradient). With ``p``
ranks and ``v`` stages per rank (``PipelineSpec.stages_per_rank``; interleaving when ``v > 1``)
the course model is cut into ``p x v`` stages by the judge's even partition
(``autograder.dist.model.even_partition``) and stage ``s`` runs on rank ``s % p``.
:class:`~autograder.dist.work.StageWork` says what each kind computes (``I``: only the input
gradient, keeping the graph; ``W``: the weight gradients, later).

* :func:`run_actions_single` runs every rank's list in **one process**, issuing the actions in a
  dependency-respecting interleaving (round-robin over ranks: each rank's next action as soon as
  its input has been produced). The stages may be wrapped by the tracing harness, so a per-stage
  schedule can be traced and replayed next to the delayed-backward loop, Option C
  (:func:`traced_single_step`).
* :class:`PipelinePool` / :func:`launch` run it with **one process per rank**. Each rank builds
  the course model from the seed, keeps its stages and executes its own list
  (:mod:`autograder.dist.rank`): ``F`` waits for the activation of ``F(s-1)``, runs the stage and
  hands its output on; ``B``/``I`` wait for the gradient of ``B``/``I(s+1)`` and hand the input
  gradient back; ``W`` needs nothing from other ranks. Between stages of one rank tensors are
  handed over in memory; between ranks they travel point to point, a message named by (receiving
  stage, micro-batch, direction): through shared memory when every rank is on this x86-64 Linux
  machine (:mod:`autograder.dist.shm`, the pool's default with gloo), else with the process
  group's send/recv (:mod:`autograder.dist.p2p`: gloo, or NCCL when every rank has a GPU; that
  path has not been run on GPUs yet). Every wait has a timeout, so a deadlocking list fails with
  a message naming the rank and the action it waited at, never hangs.
  The pool starts its processes once (``torch.multiprocessing``, fork server or spawn; the parent
  hosts the rendezvous store on a free loopback port) and keeps the process group up across runs
  and steps; a rank that is not needed by a run (p smaller than the pool) only joins the
  collective calls.
* The same per-rank code runs under ``torchrun`` (``python -m autograder.dist`` reads RANK,
  WORLD_SIZE, MASTER_ADDR and MASTER_PORT from the environment; events, loss and gradients are
  gathered to rank 0, which prints the summary).

Every rank records its events ``(stage, kind, mb, start, end)`` and a per-action profile
(:mod:`autograder.dist.profile`) with ``time.perf_counter()``; a barrier starts each step. On one
machine all ranks read the same monotonic clock and times count from the first rank to leave the
barrier; across machines each rank counts from its own barrier exit (the clocks then agree to
within one barrier's latency, about a millisecond). Results come back as a :class:`RunResult`.

Emulated device time (``PipelineSpec.seconds_per_batch``, see ``autograder.dist.emulate``) makes
each stage take ``f x rows / batch`` seconds forward (``f / v`` per chunk when interleaving),
twice that for ``B`` and half of ``B`` for each of ``I`` and ``W``, so that p processes on a
2-core CPU overlap like p accelerators.

Bad input never starts a process: the lists are checked with ``autograder.schedules.validate``
first, and p x v larger than the model's layers, m < 1, more micro-batches than rows, an action
on the wrong rank raise :class:`RuntimeInputError` with a one-line message (the validator's
marked grid is in its ``details``).
"""

from .emulate import (
    DeviceTime,
    EmulatedTime,
    backward_pass,
    device_sleep,
    ideal_step_time,
    naive_step_time,
    simulated_step_time,
)
from .pool import PipelinePool, default_backend, default_start_method, launch
from .result import RunResult
from .single import max_relative_error, reference_gradients, run_actions_single, traced_single_step
from .spec import PipelineError, PipelineSpec, RuntimeInputError, check_schedule, check_spec
from .work import StageWork

__all__ = [
    "DeviceTime",
    "EmulatedTime",
    "PipelineError",
    "PipelinePool",
    "PipelineSpec",
    "RunResult",
    "RuntimeInputError",
    "StageWork",
    "backward_pass",
    "check_schedule",
    "check_spec",
    "default_backend",
    "default_start_method",
    "device_sleep",
    "ideal_step_time",
    "launch",
    "max_relative_error",
    "naive_step_time",
    "reference_gradients",
    "run_actions_single",
    "simulated_step_time",
    "traced_single_step",
]

"""The pool of processes, one per rank, in one process group kept up across runs (the launcher)."""

from __future__ import annotations

import datetime
import os
import queue
import time
from dataclasses import asdict
from typing import Any

import torch

from .rank import _warm_up_autograd, run_rank
from .result import RunResult, merge
from .shm import available as shm_available
from .spec import (
    DEFAULT_INIT_TIMEOUT,
    DEFAULT_RECV_TIMEOUT,
    PipelineError,
    PipelineSpec,
    RuntimeInputError,
    _is_int,
    _plain_schedule,
    check_schedule,
    check_spec,
)

# --------------------------------------------------------------------------------------------
# The pool of processes (the launcher)
# --------------------------------------------------------------------------------------------

TRANSPORTS = ("auto", "shm", "p2p")


def default_backend(world_size: int) -> str:
    """``"nccl"`` when CUDA has a GPU for every rank, else ``"gloo"`` (CPU)."""
    if torch.cuda.is_available() and torch.cuda.device_count() >= world_size:
        return "nccl"
    return "gloo"


def _use_loopback(backend: str) -> None:
    """Every rank of a pool is on this machine: talk over the loopback interface (a machine whose
    host name does not resolve, or resolves to an unreachable address, still works). With NCCL,
    make ``wait(timeout)`` block the CPU so that a missing message times out."""
    import socket

    try:
        names = [name for _, name in socket.if_nameindex()]
    except (AttributeError, OSError):
        names = []
    loopback = next((n for n in ("lo", "lo0") if n in names), None)
    if loopback:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", loopback)
    if backend == "nccl":
        os.environ.setdefault("TORCH_NCCL_BLOCKING_WAIT", "1")


def default_start_method() -> str:
    """``"forkserver"`` where available, else ``"spawn"``.

    Both start clean processes (nothing inherited from the caller: no threads, no CUDA state, safe
    under pytest); the fork server imports torch once and forks every rank from it, so 4 ranks
    start in about 1 s on 2 cores instead of about 4 s for 4 spawned interpreters each importing
    torch. ``"fork"`` is faster still but copies the caller's threads and state.
    """
    import multiprocessing

    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _rank_device(backend: str, local_rank: int) -> torch.device:
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _pool_worker(rank: int, world_size: int, port: int, backend: str, init_timeout: float, jobs, results) -> None:
    """Body of one pool process: join the group, then run jobs until told to stop."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    _use_loopback(backend)
    try:
        store = dist.TCPStore(
            "127.0.0.1", port, world_size, is_master=False, timeout=datetime.timedelta(seconds=init_timeout)
        )
        dist.init_process_group(
            backend, store=store, rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=init_timeout)
        )
        device = _rank_device(backend, rank)
        _warm_up_autograd()
        dist.barrier()
    except Exception as exc:
        results.put(
            {
                "rank": rank,
                "job": None,
                "error": f"rank {rank} could not join the process group: {str(exc).strip().splitlines()[0][:300]}",
            }
        )
        return
    results.put({"rank": rank, "job": None, "error": None})
    while True:
        job = jobs.get()
        if job is None:
            break
        out = run_rank(rank, world_size, job, device)
        results.put(out)
        if out["error"]:
            jobs.get()  # the group may be broken: wait to be stopped, keep connections open meanwhile
            break
    try:
        dist.destroy_process_group()
    finally:
        os._exit(0)  # skip the interpreter's slow teardown (seconds with torch loaded)


class PipelinePool:
    """``world_size`` processes, one per rank, in one process group kept up across runs.

    ``run(schedule, spec, steps)`` executes one schedule with ``spec.num_stages <= world_size``
    (ranks beyond it idle) and returns a :class:`RunResult`. Processes start on the first run
    (``start_method``: :func:`default_start_method`, about 1 s for 4 ranks on 2 cores; "spawn" about
    4 s). After a failed run (a timeout, a crash) the processes are stopped and the
    next run starts fresh ones. Use as a context manager, or call :meth:`close`.

    ``recv_timeout``: seconds a rank waits for one message before it reports the action it is
    stuck at; ``backend``: "gloo" or "nccl" (default: :func:`default_backend`); ``transport``: how
    activations and gradients travel: ``"shm"`` (shared memory, :mod:`autograder.dist.shm`),
    ``"p2p"`` (the process group's send/recv, :mod:`autograder.dist.p2p`) or ``"auto"`` (the
    default: shared memory with gloo where the machine allows it, else p2p).
    """

    def __init__(
        self,
        world_size: int,
        *,
        start_method: str | None = None,
        backend: str | None = None,
        recv_timeout: float = DEFAULT_RECV_TIMEOUT,
        init_timeout: float = DEFAULT_INIT_TIMEOUT,
        transport: str = "auto",
    ):
        if not _is_int(world_size) or world_size < 1:
            raise RuntimeInputError(f"world_size must be an int >= 1, got {world_size!r}")
        self.world_size = world_size
        self.start_method = start_method or default_start_method()
        self.backend = backend or default_backend(world_size)
        self.recv_timeout = float(recv_timeout)
        self.init_timeout = float(init_timeout)
        self.transport = self._transport(transport)
        self.startups = 0  # how many times processes were started (tests check reuse)
        self._procs: list = []
        self._jobs: list = []
        self._results = None
        self._store = None
        self._next_id = 0

    def _transport(self, transport: str) -> str:
        """``"shm"`` or ``"p2p"`` for ``transport`` (``"auto"``: shm with gloo where available)."""
        if transport not in TRANSPORTS:
            raise RuntimeInputError(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
        if transport == "auto":
            return "shm" if self.backend == "gloo" and shm_available() else "p2p"
        if transport == "shm" and (self.backend != "gloo" or not shm_available()):
            raise RuntimeInputError("transport 'shm' needs gloo on x86-64 Linux with /dev/shm: use 'p2p' here")
        return transport

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return bool(self._procs)

    def start(self) -> None:
        """Start the processes and wait until every rank has joined the group."""
        if self.started:
            return
        import torch.distributed as dist
        import torch.multiprocessing as mp

        ctx = mp.get_context(self.start_method)
        if self.start_method == "forkserver":
            ctx.set_forkserver_preload(["autograder.dist.pool"])  # torch imported once, by the server
        # The parent hosts the rendezvous store on a free port (port 0: no race for the port).
        self._store = dist.TCPStore(
            "127.0.0.1",
            0,
            self.world_size + 1,
            is_master=True,
            wait_for_workers=False,
            timeout=datetime.timedelta(seconds=self.init_timeout),
        )
        self._results = ctx.Queue()
        self._jobs = [ctx.Queue() for _ in range(self.world_size)]
        for rank in range(self.world_size):
            proc = ctx.Process(
                target=_pool_worker,
                daemon=True,
                name=f"pipeline-rank-{rank}",
                args=(
                    rank,
                    self.world_size,
                    self._store.port,
                    self.backend,
                    self.init_timeout,
                    self._jobs[rank],
                    self._results,
                ),
            )
            proc.start()
            self._procs.append(proc)
        self.startups += 1
        ready = self._collect(None, time.monotonic() + self.init_timeout, "starting the processes")
        errors = {r["rank"]: r["error"] for r in ready if r["error"]}
        if errors:
            self._stop()
            raise PipelineError("; ".join(errors[r] for r in sorted(errors)), errors)

    def close(self) -> None:
        """Stop the processes (politely, then by force)."""
        for q in self._jobs:
            try:
                q.put(None)
            except Exception:
                pass
        deadline = time.monotonic() + 5
        for proc in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        self._stop()

    def _stop(self) -> None:
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self._procs:
            proc.join(2)
            if proc.is_alive():
                proc.kill()
                proc.join(2)
        for q in self._jobs + ([self._results] if self._results is not None else []):
            try:
                q.close()
                q.cancel_join_thread()
            except Exception:
                pass
        self._procs, self._jobs, self._results, self._store = [], [], None, None

    def __enter__(self) -> PipelinePool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover (best effort)
        try:
            self._stop()
        except Exception:
            pass

    # -- running -----------------------------------------------------------------------------
    def _collect(self, job_id: int | None, deadline: float, doing: str) -> list[dict]:
        """One message per rank for ``job_id``; stops early (after a grace period) on an error."""
        got: dict[int, dict] = {}
        grace_until = None
        while len(got) < self.world_size:
            now = time.monotonic()
            if grace_until is not None and now > grace_until:
                break
            if now > deadline:
                missing = [r for r in range(self.world_size) if r not in got]
                got.update(
                    {
                        r: {"rank": r, "job": job_id, "error": f"rank {r} gave no answer while {doing} (limit reached)"}
                        for r in missing
                    }
                )
                break
            try:
                msg = self._results.get(timeout=0.1)
            except queue.Empty:
                dead = [r for r, proc in enumerate(self._procs) if not proc.is_alive() and r not in got]
                for r in dead:
                    got[r] = {
                        "rank": r,
                        "job": job_id,
                        "error": f"rank {r}'s process died (exit code {self._procs[r].exitcode}) while {doing}",
                    }
                    grace_until = grace_until or time.monotonic() + 1.0
                continue
            if msg.get("job") != job_id:
                continue  # a late answer to an earlier, failed job
            got[msg["rank"]] = msg
            if msg.get("error") and grace_until is None:
                # Others blocked on this rank fail within their own timeout: wait a little for them.
                grace_until = time.monotonic() + min(self.recv_timeout, 2.0) + 0.5
        return [got[r] for r in sorted(got)]

    def run(
        self,
        schedule: Any,
        spec: PipelineSpec,
        steps: int = 1,
        *,
        validate_first: bool = True,
        timeout: float | None = None,
        transport: str | None = None,
    ) -> RunResult:
        """Execute ``schedule`` for ``steps`` steps; each step starts from zero gradients.

        ``validate_first=False`` skips ``autograder.schedules.validate`` (to see the runtime's own
        deadlock timeout). ``timeout``: overall limit in seconds (default: generous, derived from
        ``recv_timeout``). ``transport``: ``"shm"`` or ``"p2p"`` for this run (default: the
        pool's). Raises :class:`RuntimeInputError` before starting anything for bad input,
        :class:`PipelineError` when a rank fails (the message names each failing rank and the action
        it waited at).
        """
        check_spec(spec)
        if not _is_int(steps) or steps < 1:
            raise RuntimeInputError(f"steps must be an int >= 1, got {steps!r}")
        if spec.num_stages > self.world_size:
            what = "stages" if spec.stages_per_rank == 1 else "ranks"
            raise RuntimeInputError(
                f"{spec.num_stages} {what} need {spec.num_stages} processes, this pool has {self.world_size}"
            )
        parsed = check_schedule(
            schedule,
            spec.num_stages,
            spec.num_microbatches,
            stages_per_rank=spec.stages_per_rank,
            run_validate=validate_first,
        )
        transport = self._transport(transport or self.transport)
        self.start()
        self._next_id += 1
        job = {
            "id": self._next_id,
            "schedule": _plain_schedule(parsed),
            "spec": asdict(spec),
            "steps": steps,
            "recv_timeout": self.recv_timeout,
            "transport": transport,
            "token": f"{os.getpid()}-{id(self):x}-{self._next_id}",
        }
        for q in self._jobs:
            q.put(job)
        limit = timeout if timeout is not None else 60 + steps * (self.recv_timeout + 10)
        per_rank = self._collect(job["id"], time.monotonic() + limit, f"running {spec}")
        errors = {r["rank"]: r["error"] for r in per_rank if r.get("error")}
        if errors or len(per_rank) < self.world_size:
            self._stop()
            # The root cause first: a timed-out wait rather than the lost connections it caused.
            order = sorted(errors, key=lambda r: ("waited" not in errors[r], r))
            raise PipelineError("; ".join(errors[r] for r in order), errors)
        return merge(spec, parsed, per_rank)


def launch(
    schedule: Any, spec: PipelineSpec, steps: int = 1, *, validate_first: bool = True, **pool_options
) -> RunResult:
    """Start ``spec.num_stages`` processes, run ``schedule`` for ``steps`` steps, stop them.

    ``pool_options`` go to :class:`PipelinePool`. Bad input raises :class:`RuntimeInputError`
    before any process starts.
    """
    check_spec(spec)
    check_schedule(
        schedule,
        spec.num_stages,
        spec.num_microbatches,
        stages_per_rank=spec.stages_per_rank,
        run_validate=validate_first,
    )
    with PipelinePool(spec.num_stages, **pool_options) as pool:
        return pool.run(schedule, spec, steps, validate_first=validate_first)

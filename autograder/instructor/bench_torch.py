"""The benchmark's other side: ``torch.distributed.pipelining`` on the same model, partition and
emulated device time as this runtime (see :mod:`autograder.instructor.bench`, which runs both).

``torch_pipeline_order`` gives torch's own per-rank order of a schedule as ``{rank: [Action]}``
(checked against the reference lists by ``tests/integration/test_dist_part7.py``);
``run_torch_pipelining`` runs torch's schedule classes, one process per rank over gloo, and
returns the step times.
"""

from __future__ import annotations

import datetime
import os
import time

import torch

from ..dist.emulate import DeviceTime, sleep_until
from ..dist.model import course_model, even_partition
from ..dist.pool import _use_loopback, default_start_method
from ..dist.spec import PipelineSpec
from ..schedules import Action, Schedule
from .reference_schedules import gpipe_schedule, one_f_one_b_schedule

CHUNKS = {"naive": 1, "gpipe": 1, "1f1b": 1, "interleaved": 2, "zb-h1": 1}  # v of each schedule
TORCH_SCHEDULES = ("gpipe", "1f1b", "interleaved", "zb-h1")
TORCH_CLASSES = {
    "gpipe": "ScheduleGPipe",
    "1f1b": "Schedule1F1B",
    "interleaved": "ScheduleInterleaved1F1B",
    "zb-h1": "ScheduleInterleavedZeroBubble",
}


def torch_pipeline_order(name: str, p: int, m: int, v: int | None = None) -> Schedule:
    """torch.distributed.pipelining's own order for ``name`` (interleaved: ``ScheduleInterleaved1F1B``,
    zb-h1: ``ScheduleInterleavedZeroBubble``), as ``{rank: [Action]}`` with kinds F, B, I, W.

    Built without processes or stages: the class's per-rank order code runs on a bare instance
    (``v`` chunks per rank, default :data:`CHUNKS`); idle steps (``None``) are dropped.
    """
    from torch.distributed.pipelining import schedules as S

    v = CHUNKS[name] if v is None else v
    if name in ("gpipe", "1f1b"):
        return {"gpipe": gpipe_schedule, "1f1b": one_f_one_b_schedule}[name](p, m)  # torch's equal ours
    cls = getattr(S, TORCH_CLASSES[name])
    bare = cls.__new__(cls)
    bare.pp_group_size, bare.n_local_stages, bare._n_microbatches = p, v, m
    bare.number_of_rounds = max(1, m // p)
    bare.microbatches_per_round = m // bare.number_of_rounds
    if m % bare.number_of_rounds:
        raise ValueError(f"{cls.__name__} needs m a multiple of max(1, m // p), got m={m}, p={p}")
    bare.pipeline_order = {rank: bare._calculate_single_rank_operations(rank) for rank in range(p)}
    if name == "zb-h1":
        bare.pipeline_order = bare._add_bubbles_to_actions(p * v)
    return {
        rank: [
            Action(a.stage_index, str(a.computation_type.value), a.microbatch_index) for a in actions if a is not None
        ]
        for rank, actions in bare.pipeline_order.items()
    }


# -- torch.distributed.pipelining -----------------------------------------------------------------


def _timed_stage_class():
    """``PipelineStage`` whose actions take the emulated time, measured like this runtime's."""
    from torch.distributed.pipelining import PipelineStage

    class TimedStage(PipelineStage):
        def __init__(self, module, stage_index, num_stages, device, device_time: DeviceTime, sizes: list[int]):
            super().__init__(module, stage_index, num_stages, device)
            self.device_time, self.sizes, self.loss_deadline = device_time, sizes, 0.0

        def forward_one_chunk(self, fwd_chunk_id, *args, **kwargs):
            start = time.perf_counter()
            out = super().forward_one_chunk(fwd_chunk_id, *args, **kwargs)
            deadline = start + self.device_time.seconds("F", self.sizes[fwd_chunk_id])
            if self.is_last:
                self.loss_deadline = deadline  # the loss (computed next by the schedule) is in the window
            else:
                sleep_until(deadline)
            return out

        def backward_one_chunk(self, bwd_chunk_id, loss=None, full_backward=True, last_backward=False):
            start = time.perf_counter()
            super().backward_one_chunk(
                bwd_chunk_id, loss=loss, full_backward=full_backward, last_backward=last_backward
            )
            sleep_until(start + self.device_time.seconds("B" if full_backward else "I", self.sizes[bwd_chunk_id]))

        def backward_weight_one_chunk(self, bwd_chunk_id, last_backward=False):
            start = time.perf_counter()
            super().backward_weight_one_chunk(bwd_chunk_id, last_backward=last_backward)
            sleep_until(start + self.device_time.seconds("W", self.sizes[bwd_chunk_id]))

    return TimedStage


def _torch_schedule(name: str, rank: int, spec: PipelineSpec, loss_fn):
    """The torch schedule object of ``name`` for ``rank`` (its stages built from the seed)."""
    from torch.distributed.pipelining import schedules as S

    p, v = spec.num_stages, CHUNKS[name]
    M = course_model()
    model = M.make_model(spec.width, spec.depth, seed=spec.seed, kind=spec.kind)
    modules = even_partition(model, p * v, [torch.device("cpu")] * (p * v))
    device_time = DeviceTime(spec.seconds_per_batch / v, spec.batch_size)
    stage_class = _timed_stage_class()
    stages = [
        stage_class(modules[s], s, p * v, torch.device("cpu"), device_time, spec.sizes) for s in range(rank, p * v, p)
    ]
    last = next((st for st in stages if st.is_last), None)

    def timed_loss(output, target):
        loss = loss_fn(output, target)
        sleep_until(last.loss_deadline)
        return loss

    cls = getattr(S, TORCH_CLASSES[name])
    first = stages if issubclass(cls, S.PipelineScheduleMulti) else stages[0]
    return cls(first, spec.num_microbatches, loss_fn=timed_loss), stages


def _torch_worker(
    rank: int, p: int, port: int, spec_fields: dict, schedules: list[str], warmup: int, steps: int, results
) -> None:
    """One rank of torch.distributed.pipelining: run each schedule, report [t0, t_end] per timed step."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    _use_loopback("gloo")
    try:
        spec = PipelineSpec(**spec_fields)
        store = dist.TCPStore("127.0.0.1", port, p, is_master=False, timeout=datetime.timedelta(seconds=120))
        dist.init_process_group("gloo", store=store, rank=rank, world_size=p, timeout=datetime.timedelta(seconds=120))
        M = course_model()
        inputs, targets = M.make_batch(spec.batch_size, spec.width, seed=spec.seed, kind=spec.kind)
        out = {"rank": rank, "error": None, "times": {}}
        for name in schedules:
            schedule, stages = _torch_schedule(name, rank, spec, M.loss_function())
            times = []
            for i in range(warmup + steps):
                for stage in stages:
                    stage.submod.zero_grad(set_to_none=True)
                dist.barrier()
                t0 = time.perf_counter()
                kwargs = {"target": targets, "losses": []} if any(st.is_last for st in stages) else {}
                schedule.step(*([inputs] if rank == 0 else []), **kwargs)
                if i >= warmup:
                    times.append([t0, time.perf_counter()])
            out["times"][name] = times
    except Exception as exc:  # report, do not hang the parent
        out = {"rank": rank, "error": f"{type(exc).__name__}: {str(exc).strip()[:300]}", "times": {}}
    results.put(out)
    results.close()
    results.join_thread()  # flushed before os._exit, which would drop a message still in the feeder thread
    try:
        dist.barrier()
        dist.destroy_process_group()
    finally:
        os._exit(0)


def run_torch_pipelining(
    spec: PipelineSpec, schedules: list[str], warmup: int, steps: int
) -> dict[str, list[float]] | str:
    """Step times (seconds) per schedule for torch.distributed.pipelining, or a one-line reason it could not run."""
    try:
        import torch.distributed.pipelining  # noqa: F401
    except ImportError as exc:
        return f"torch.distributed.pipelining not importable in torch {torch.__version__}: {exc}"
    import queue

    import torch.distributed as dist
    import torch.multiprocessing as mp

    p = spec.num_stages
    method = default_start_method()
    ctx = mp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["autograder.bench"])
    store = dist.TCPStore("127.0.0.1", 0, p + 1, is_master=True, wait_for_workers=False)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_torch_worker, daemon=True, args=(r, p, store.port, spec.__dict__, schedules, warmup, steps, results)
        )
        for r in range(p)
    ]
    for proc in procs:
        proc.start()
    got = {}
    deadline = time.monotonic() + 600
    while len(got) < p and time.monotonic() < deadline:
        try:
            msg = results.get(timeout=0.5)
            got[msg["rank"]] = msg
        except queue.Empty:
            # a rank that ended without sending its result died; one that sent it may end early
            if any(not proc.is_alive() and r not in got for r, proc in enumerate(procs)) and results.empty():
                time.sleep(0.5)
                if results.empty():
                    break
    for proc in procs:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
    errors = [m["error"] for m in got.values() if m["error"]]
    if errors or len(got) < p:
        return "torch.distributed.pipelining failed: " + ("; ".join(errors) if errors else "a rank died")
    out = {}
    for name in schedules:
        per_step = zip(*(got[r]["times"][name] for r in range(p)))
        out[name] = [max(end for _, end in ranks) - min(start for start, _ in ranks) for ranks in per_step]
    return out

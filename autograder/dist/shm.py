"""Point-to-point messages through shared memory, for ranks on one x86-64 Linux machine.

The same messages as :mod:`autograder.dist.p2p` (keys ``(direction, receiving stage, mb)``), for
the usual case of the pool: every rank on this machine. Over gloo each message costs ~50 us in the
sender's ``send`` call (the loopback TCP stack runs in it) and ~60-100 us more until the receiver,
woken by gloo's socket thread and then by a condition variable, runs; here a message is a copy into
the receiver's buffer, a store of a sequence number and a futex wake (~5 us in all, measured alone),
and a waiting receiver wakes in ~10 us (more when both cores are busy). Nothing spins: a receiver
that spun would take a core from the ranks that compute (4 processes share 2 cores here; tried, it
made every schedule slower).

Layout: each rank owns one segment (``/dev/shm``) holding a slot for every message it can receive,
in a fixed order computed from the spec alone, so a sender finds the slot without asking: a 64-byte
header (int32 sequence number, the futex word) then the float32 payload, 64-byte aligned. The
sequence number is the job's step counter (1, 2, ...): the receiver waits until its slot holds
the current step. A slot is rewritten only in the next step, after the start barrier, which the
receiver reaches when it no longer needs the slot (the stage input is a view of it, no copy).
The start barrier also goes through shared memory (words at the start of rank 0's segment): every
rank notes its arrival, rank 0 waits for all of them and releases the others, so rank 0, which
starts the pipeline, leaves first and a step's clock starts when its first action can.

Ordering: the payload is stored before the sequence number, and the receiver reads the number
before the payload; x86-64 keeps stores in order and loads in order (TSO), which is why the
executor uses this only there (elsewhere: :mod:`.p2p`). Wake-ups cannot be lost: the waiter passes
the number it read to ``FUTEX_WAIT``, which sleeps only if the word still holds it.

Segments are created, then attached by every peer (a barrier between), then unlinked at once:
nothing is left in ``/dev/shm`` even if a process is killed; memory goes with the last mapping.
"""

from __future__ import annotations

import ctypes
import math
import mmap
import os
import platform
import time

import torch

from ..schedules import Action
from .p2p import BACKWARD, FORWARD, Key, RankFailure, timeout_message

HEADER = 64
SETUP_BARRIERS = 2  # barrier() calls ShmMailbox makes while it sets up (ranks without a stage join them)
SHM_DIR = "/dev/shm"
_SYS_FUTEX = 202  # x86-64
_FUTEX_WAIT, _FUTEX_WAKE = 0, 1
_WAIT_CHUNK_S = 0.25  # a futex wait returns at least this often, to check the deadline


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def available() -> bool:
    """Whether this machine can use shared-memory messages (x86-64 Linux with ``/dev/shm``)."""
    return platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64") and os.path.isdir(SHM_DIR)


def layout(
    rank: int, num_ranks: int, num_stages: int, sizes: list[int], shapes: list[tuple[int, ...]]
) -> tuple[dict[Key, tuple[int, tuple[int, ...]]], int]:
    """``({key: (offset of its header, payload shape)}, total bytes)`` of the messages ``rank`` can
    receive: the activation of every stage it holds but 0 and the gradient of every one but the
    last, when the neighbour stage is on another rank. ``shapes[s]``: input shape of stage s.
    Rank 0's segment starts with the step barrier's words (:meth:`ShmMailbox.begin_step`)."""
    slots, offset = {}, (HEADER * (num_ranks + 1) if rank == 0 else 0)
    for s in range(rank, num_stages, num_ranks):
        for direction, neighbour, shape in ((FORWARD, s - 1, shapes[s]), (BACKWARD, s + 1, shapes[s + 1])):
            if not 0 <= neighbour < num_stages or neighbour % num_ranks == rank:
                continue
            for k, rows in enumerate(sizes):
                full = (rows, *shape)
                slots[(direction, s, k)] = (offset, full)
                offset += HEADER + 64 * math.ceil(4 * math.prod(full) / 64)
    return slots, max(offset, HEADER)


class _Futex:
    """``FUTEX_WAIT`` / ``FUTEX_WAKE`` on int32 words of shared memory (x86-64 Linux syscall 202)."""

    def __init__(self) -> None:
        self._call = ctypes.CDLL(None, use_errno=True).syscall
        self._call.argtypes = [
            ctypes.c_long,
            ctypes.c_void_p,
            ctypes.c_long,
            ctypes.c_long,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_long,
        ]
        self._pause = _Timespec(0, int(_WAIT_CHUNK_S * 1e9))
        self._pause_address = ctypes.addressof(self._pause)

    def wait_for(self, word: ctypes.c_int, want: int, timeout: float, failure) -> None:
        """Return once ``word`` holds ``want``; after ``timeout`` seconds raise :class:`RankFailure`
        with the line ``failure()`` gives."""
        deadline = time.perf_counter() + timeout
        address = ctypes.addressof(word)
        while True:
            value = word.value
            if value == want:
                return
            if time.perf_counter() > deadline:
                raise RankFailure(failure())
            self._call(_SYS_FUTEX, address, _FUTEX_WAIT, value, self._pause_address, None, 0)

    def publish(self, word: ctypes.c_int, value: int, waiters: int = 1) -> None:
        """Store ``value`` in ``word`` and wake up to ``waiters`` processes waiting on it."""
        word.value = value
        self._call(_SYS_FUTEX, ctypes.addressof(word), _FUTEX_WAKE, waiters, None, None, 0)


class _Segment:
    """One rank's mapped segment: slot tensors and futex words, by key."""

    def __init__(self, mm: mmap.mmap, slots: dict[Key, tuple[int, tuple[int, ...]]]):
        self.mm = mm
        self.words = {key: ctypes.c_int.from_buffer(mm, off) for key, (off, _) in slots.items()}
        self.tensors = {
            key: torch.frombuffer(mm, dtype=torch.float32, count=math.prod(shape), offset=off + HEADER).view(shape)
            for key, (off, shape) in slots.items()
        }


def _name(token: str, rank: int) -> str:
    return os.path.join(SHM_DIR, f"pipeline-{token}-r{rank}")


def _map(path: str, size: int, create: bool) -> mmap.mmap:
    flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
    fd = os.open(path, flags, 0o600)
    try:
        if create:
            os.ftruncate(fd, size)
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


class ShmMailbox:
    """Shared-memory messages of one rank for one job; the interface of :class:`.p2p.Mailbox`.

    ``token``: the same on every rank of the job (names the segments); ``peers``: the ranks this
    rank sends to; ``barrier``: a callable every rank of the job calls at the same points (while
    setting up: :data:`SETUP_BARRIERS` times).
    """

    def __init__(
        self,
        rank: int,
        num_ranks: int,
        num_stages: int,
        sizes: list[int],
        shapes: list,
        token: str,
        peers: list[int],
        barrier,
        timeout: float,
    ):
        self.rank, self.num_ranks, self.timeout, self.step_no = rank, num_ranks, timeout, 0
        self.futex = _Futex()
        own, size = layout(rank, num_ranks, num_stages, sizes, shapes)
        path = _name(token, rank)
        mine = _map(path, size, create=True)
        try:
            barrier()  # every segment exists
            self.peers = {}
            for peer in sorted(set(peers) | ({0} if rank else set())):  # rank 0's holds the step barrier
                slots, peer_size = layout(peer, num_ranks, num_stages, sizes, shapes)
                self.peers[peer] = _Segment(_map(_name(token, peer), peer_size, create=False), slots)
            barrier()  # every segment is mapped by its senders
        finally:
            os.unlink(path)
        self.own = _Segment(mine, own)
        self.source = {key: (key[1] - 1 if key[0] == FORWARD else key[1] + 1) % num_ranks for key in own}
        step_words = self.own.mm if rank == 0 else self.peers[0].mm
        self.arrived = [ctypes.c_int.from_buffer(step_words, HEADER * r) for r in range(num_ranks)]
        self.go = ctypes.c_int.from_buffer(step_words, HEADER * num_ranks)

    def begin_step(self) -> None:
        """Start the next step together: every rank notes its arrival, rank 0 waits for all of them
        and releases the others (rank 0, which starts the pipeline, leaves first)."""
        self.step_no += 1
        step = self.step_no
        if self.rank:
            self.futex.publish(self.arrived[self.rank], step)
            self.futex.wait_for(self.go, step, self.timeout, lambda: self._late(0))
            return
        for r in range(1, self.num_ranks):
            self.futex.wait_for(self.arrived[r], step, self.timeout, lambda r=r: self._late(r))
        self.futex.publish(self.go, step, waiters=self.num_ranks)

    def _late(self, peer: int) -> str:
        return (
            f"rank {self.rank} waited {self.timeout:g} s for rank {peer} to start step {self.step_no} "
            f"of the job: did rank {peer} stop?"
        )

    def take(self, key: Key, step: int, action: Action, what: str) -> torch.Tensor:
        """The received tensor ``key``, a view of its slot (waiting for it)."""
        word = self.own.words[key]
        if word.value != self.step_no:
            self.futex.wait_for(
                word,
                self.step_no,
                self.timeout,
                lambda: timeout_message(self.rank, self.timeout, step, action, what, self.source[key]),
            )
        return self.own.tensors[key]

    def send(self, tensor: torch.Tensor, dst: int, key: Key, action: Action) -> None:
        """Copy ``tensor`` into rank ``dst``'s slot ``key``, publish it, wake the receiver."""
        segment = self.peers[dst]
        segment.tensors[key].copy_(tensor)
        self.futex.publish(segment.words[key], self.step_no)

    def finish(self, step: int) -> None:
        """Nothing to wait for: a send is complete when :meth:`send` returns."""

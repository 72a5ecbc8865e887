"""Point-to-point messages of one rank: activations forward, gradients backward, between stages.

A message is named by the stage that receives it, its micro-batch and its direction:
``("A", s, k)`` is the activation of ``F(s-1, k)`` for ``F(s, k)``; ``("G", s, k)`` the input
gradient of ``B``/``I(s+1, k)`` for the backward of ``(s, k)``. Its tag is
``2 (s m + k) + direction``, so (stage, micro-batch, direction) never collide, also when several
stages share a rank (interleaving). Between stages on the same rank (one rank, several stages)
nothing is sent: the tensor is handed over in memory.

Costs per message, kept off the critical path where possible:

* receive buffers are allocated once per job (their shapes are known from the spec) and reused
  every step; the stage input is a view of its buffer (no copy);
* with gloo every receive of a step is posted before the step's start barrier: gloo's sender
  waits for the receiver's "ready" note, which is then long there; a message that arrives early
  waits in its buffer. NCCL ignores tags and matches a pair's operations in the order they are
  posted, so there each receive is posted just before it is needed;
* sends and receives go to the process group object directly (``ProcessGroup.send``/``recv``),
  skipping ``torch.distributed``'s Python checks; a send is waited for at the end of the step
  (gloo's ``is_completed`` stays False until ``wait``), its tensor kept alive until then.
"""

from __future__ import annotations

import datetime
from typing import Any

import torch

from ..schedules import Action

FORWARD, BACKWARD = "A", "G"
Key = tuple[str, int, int]  # (direction, receiving stage, micro-batch)


class RankFailure(Exception):
    """Raised on a rank when a message does not come in time or its peer is gone (one line)."""


def tag_of(key: Key, num_microbatches: int) -> int:
    """The message tag of ``key``: distinct for every (direction, stage, micro-batch)."""
    direction, stage, mb = key
    return 2 * (stage * num_microbatches + mb) + (0 if direction == FORWARD else 1)


def timeout_message(rank: int, timeout: float, step: int, action: Action, what: str, peer: int) -> str:
    """The one line a rank reports when a message did not come within ``timeout`` seconds."""
    return (
        f"rank {rank} waited {timeout:g} s at step {step} ({action}) for {what} from rank {peer}, "
        f"which never came: is rank {peer} stuck too? (a deadlock: compare the order of the lists, "
        f"or run autograder.schedules.validate on them)"
    )


def wait_for(work: Any, timeout: float, rank: int, step: int, action: Action, what: str, peer: int) -> None:
    """Wait for one message; a timeout or a lost peer raises :class:`RankFailure` naming the action."""
    try:
        work.wait(datetime.timedelta(seconds=timeout))
    except RuntimeError as exc:
        text = str(exc)
        if "Timed out" in text or "timed out" in text or "Timeout" in text:
            raise RankFailure(timeout_message(rank, timeout, step, action, what, peer)) from None
        if "closed" in text or "Connection" in text or "pair" in text:
            raise RankFailure(
                f"rank {rank} at step {step} ({action}) was waiting for {what} from rank {peer} "
                f"when rank {peer} gave up or stopped (connection closed)"
            ) from None
        last = text.strip().splitlines()[-1][:200] if text.strip() else type(exc).__name__
        raise RankFailure(
            f"rank {rank} at step {step} ({action}), waiting for {what} from rank {peer}: {last}"
        ) from None


class Mailbox:
    """One rank's messages for one job: preallocated receive buffers, posted receives, sends.

    ``needs``: the messages this rank's list receives, in the order its actions need them, each
    ``(key, source rank, shape)`` (shape with the micro-batch's rows). ``group``: the process
    group; ``post_early``: post every receive before the step (gloo) or each just before use (NCCL).
    """

    def __init__(
        self,
        rank: int,
        num_microbatches: int,
        needs: list[tuple[Key, int, tuple[int, ...]]],
        device: torch.device,
        group: Any,
        post_early: bool,
        timeout: float,
    ):
        self.rank, self.m, self.group, self.timeout = rank, num_microbatches, group, timeout
        self.post_early = post_early
        self.source = {key: src for key, src, _ in needs}
        self.buffers = {key: torch.empty(shape, device=device) for key, _, shape in needs}
        self.posted: dict[Key, Any] = {}
        self.sends: list[tuple[Any, torch.Tensor, Action, int]] = []

    def _post(self, key: Key) -> Any:
        return self.group.recv([self.buffers[key]], self.source[key], tag_of(key, self.m))

    def begin_step(self) -> None:
        """Post this step's receives (gloo: all of them), then wait at the start barrier."""
        import torch.distributed as dist

        if self.post_early:
            self.posted = {key: self._post(key) for key in self.buffers}
        dist.barrier()

    def take(self, key: Key, step: int, action: Action, what: str) -> torch.Tensor:
        """The received tensor ``key`` (waiting for it); ``what`` names it in a timeout message."""
        work = self.posted.pop(key) if self.post_early else self._post(key)
        wait_for(work, self.timeout, self.rank, step, action, what, self.source[key])
        return self.buffers[key]

    def send(self, tensor: torch.Tensor, dst: int, key: Key, action: Action) -> None:
        """Send ``tensor`` (contiguous) as message ``key`` to rank ``dst``; completes by :meth:`finish`."""
        if not tensor.is_contiguous():
            tensor = tensor.contiguous()
        self.sends.append((self.group.send([tensor], dst, tag_of(key, self.m)), tensor, action, dst))

    def finish(self, step: int) -> None:
        """Wait until every send of the step has been taken (a peer that never receives times out)."""
        sends, self.sends = self.sends, []
        for work, _, a, peer in sends:
            what = "its activation" if a.kind == "F" else "its input gradient"
            wait_for(work, self.timeout, self.rank, step, a, f"rank {peer} to take {what} of micro-batch {a.mb}", peer)

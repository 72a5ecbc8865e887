"""The student's side of the remote stages: an executor that forwards every request to the judge.

:class:`RemoteExecutor` implements :class:`autograder.harness.stage.StageExecutor` over the call's
socket. The judge's stage host runs the stages, records the events and answers with the output (or
the gradients). Releases and notes (host synchronisations) are queued and sent with the next
request, so they keep their place in the event stream without a round trip of their own.
"""

from __future__ import annotations

import socket
import threading

import torch

from . import wire
from .syncs import internal


class StageFailed(RuntimeError):
    """The judge refused or could not run a stage request (its one-line reason)."""


class RemoteExecutor:
    """Sends stage requests over ``sock`` (see the module docstring). Thread-safe."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._lock = threading.Lock()
        self._pending: list[list] = []

    def _ask(self, request: dict) -> dict:
        with self._lock, internal():
            request["pending"], self._pending = self._pending, []
            wire.send(self.sock, request)
            reply = wire.recv(self.sock)
        if not isinstance(reply, dict):
            raise StageFailed("the autograder's stage host sent a malformed reply")
        if reply.get("error"):
            raise StageFailed(str(reply["error"]))
        return reply

    def forward(self, stage: int, x: torch.Tensor, keep_graph: bool) -> tuple[int, torch.Tensor]:
        reply = self._ask(
            {
                "op": "F",
                "stage": int(stage),
                "x": x.detach(),
                "graph": bool(keep_graph),
                "requires_grad": bool(x.requires_grad),
            }
        )
        out = reply["out"]
        return int(reply["handle"]), out.to(x.device) if out.device != x.device else out

    def backward(
        self, handle: int, grad: torch.Tensor | None, need_input: bool, need_params: bool
    ) -> tuple[torch.Tensor | None, list[torch.Tensor | None]]:
        reply = self._ask(
            {
                "op": "B",
                "handle": int(handle),
                "grad": None if grad is None else grad.detach(),
                "need_input": bool(need_input),
                "need_params": bool(need_params),
            }
        )
        return reply.get("grad_input"), list(reply.get("grad_params") or [])

    def release(self, handle: int) -> None:
        self._pending.append(["release", int(handle)])  # no lock: called from __del__, appended atomically

    def note(self, kind: str, detail: str) -> None:
        self._pending.append(["note", str(kind)[:40], str(detail)[:200]])

    def flush(self) -> None:
        """Send what is queued (at the end of a step)."""
        if self._pending:
            self._ask({"op": "flush"})

"""The judge's side of one sandbox call's conversation (:mod:`autograder.judge.sandbox`).

Over the call's own socket (:mod:`autograder.harness.wire`), :func:`converse` sends the probe's
request, answers the call's stage requests with a :class:`StageHost` (a schedule trial's stages,
run in the judge's process), and returns the call's result envelope.
"""

from __future__ import annotations

import socket
import time
from typing import Protocol

from ..harness import wire
from .calls_outcome import BadData
from .text import clean_line

MAX_CHILD_MESSAGE = 64 << 20  # bytes: the largest message a call may send


class StageHost(Protocol):
    def handle(self, request: dict) -> dict:
        """Answer one stage request of the call (see ``autograder.judge.host``)."""


def converse(sock: socket.socket, request: dict, deadline: float, host: StageHost | None) -> tuple[dict | None, bool]:
    """Send the request, answer stage requests, return the call's result envelope and whether it came.

    No envelope and ``False``: the deadline passed. No envelope and ``True``: the call hung up or sent
    something unreadable. A message that is not a mapping raises :class:`BadData`.
    """
    try:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        wire.send(sock, request)
        while True:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            message = wire.recv(sock, MAX_CHILD_MESSAGE)
            if not isinstance(message, dict):
                raise BadData("the call sent a malformed message")
            op = message.get("op")
            if op == "result":
                return message, True
            if host is None:
                wire.send(sock, {"error": "this call has no stages"})
                continue
            try:
                answer = host.handle(message)
            except Exception as exc:  # noqa: BLE001 - a request the host could not answer: the student's error
                answer = {"error": clean_line(f"{type(exc).__name__}: {exc}", 300)}
            wire.send(sock, answer)
    except TimeoutError:
        return None, False
    except (EOFError, ConnectionError, wire.WireError, OSError):
        return None, True

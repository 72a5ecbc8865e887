"""The only data format that crosses the sandbox boundary: JSON plus raw tensor bytes, never pickle.

A message is a JSON document followed by the bytes of the tensors it names. Tensors are dense CPU
tensors of a few dtypes, written as ``{"__tensor__": index, "dtype": "float32", "shape": [..]}``;
non-finite floats as ``{"__float__": "nan" | "inf" | "-inf"}``. Decoding accepts exactly these forms,
bounded in size and depth, and rebuilds tensors with ``torch.frombuffer`` on a private copy of the
bytes, so a message can describe data but never run code in the process that reads it.

Framing on a stream socket: an 8-byte big-endian length, then ``len(json) (8 bytes) + json + blobs``.
"""

from __future__ import annotations

import json
import math
import socket
import struct
from typing import Any

import torch

DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "bool": torch.bool,
}
NAMES = {dtype: name for name, dtype in DTYPES.items()}
MAX_MESSAGE_BYTES = 256 << 20
MAX_DEPTH = 12
MAX_ITEMS = 200_000
_HEADER = struct.Struct(">Q")


class WireError(ValueError):
    """A message that is not in the format (one line)."""


def _plain(obj: Any, blobs: list[bytes], depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise WireError("message nested too deeply")
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}
    if isinstance(obj, torch.Tensor):
        return _tensor(obj, blobs)
    if isinstance(obj, (list, tuple)):
        return [_plain(x, blobs, depth + 1) for x in obj]
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj) or obj.keys() & {"__tensor__", "__float__"}:
            raise WireError("dict keys must be strings other than __tensor__ and __float__")
        return {k: _plain(v, blobs, depth + 1) for k, v in obj.items()}
    raise WireError(f"cannot send a {type(obj).__name__}")


def _tensor(t: torch.Tensor, blobs: list[bytes]) -> dict:
    if t.dtype not in NAMES:
        raise WireError(f"cannot send a tensor of dtype {t.dtype}")
    t = t.detach()
    if t.layout != torch.strided:
        t = t.to_dense()
    t = t.to("cpu").resolve_conj().resolve_neg()
    flat = torch.empty(t.numel(), dtype=t.dtype).copy_(t.reshape(-1))  # fresh strides, whatever t's were
    data = flat.view(torch.uint8).numpy().tobytes() if t.numel() else b""
    blobs.append(data)
    return {"__tensor__": len(blobs) - 1, "dtype": NAMES[t.dtype], "shape": list(t.shape)}


def encode(obj: Any) -> bytes:
    """``obj`` (None, bool, int, float, str, list, tuple, dict with str keys, tensors) as bytes."""
    blobs: list[bytes] = []
    doc = json.dumps(_plain(obj, blobs, 0), separators=(",", ":"), allow_nan=False).encode()
    sizes = [len(b) for b in blobs]
    head = json.dumps(sizes).encode()
    return b"".join([_HEADER.pack(len(head)), head, _HEADER.pack(len(doc)), doc, *blobs])


class _Decoder:
    def __init__(self, blobs: list[bytes]):
        self.blobs = blobs
        self.items = 0

    def value(self, obj: Any, depth: int) -> Any:
        self.items += 1
        if self.items > MAX_ITEMS or depth > MAX_DEPTH:
            raise WireError("message too large or nested too deeply")
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        if isinstance(obj, list):
            return [self.value(x, depth + 1) for x in obj]
        if not isinstance(obj, dict):
            raise WireError(f"unexpected {type(obj).__name__} in a message")
        if "__tensor__" in obj:
            return self.tensor(obj)
        if "__float__" in obj:
            text = obj["__float__"]
            if text not in ("nan", "inf", "-inf"):
                raise WireError("bad non-finite float")
            return float(text)
        return {str(k): self.value(v, depth + 1) for k, v in obj.items()}

    def tensor(self, obj: dict) -> torch.Tensor:
        index, dtype, shape = obj.get("__tensor__"), obj.get("dtype"), obj.get("shape")
        if (
            not isinstance(index, int)
            or isinstance(index, bool)
            or not 0 <= index < len(self.blobs)
            or dtype not in DTYPES
            or not isinstance(shape, list)
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
            or len(shape) > 8
        ):
            raise WireError("bad tensor description")
        kind = DTYPES[dtype]
        count = math.prod(shape)
        data = self.blobs[index]
        if len(data) != count * torch.empty((), dtype=kind).element_size():
            raise WireError("tensor bytes do not match its shape")
        if count == 0:
            return torch.empty(shape, dtype=kind)
        return torch.frombuffer(bytearray(data), dtype=kind).reshape(shape)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"bare {name} in a message")


def decode(data: bytes) -> Any:
    """Inverse of :func:`encode`; raises :class:`WireError` for anything else."""
    try:
        (n_head,) = _HEADER.unpack_from(data, 0)
        if n_head > len(data):
            raise ValueError("head length past the message")
        head_end = 8 + n_head
        sizes = json.loads(data[8:head_end], parse_constant=_refuse_constant)
        (n_doc,) = _HEADER.unpack_from(data, head_end)
        if n_doc > len(data):
            raise ValueError("document length past the message")
        doc_end = head_end + 8 + n_doc
        doc = json.loads(data[head_end + 8 : doc_end], parse_constant=_refuse_constant)
    except (struct.error, ValueError, UnicodeDecodeError, RecursionError, OverflowError, MemoryError) as exc:
        raise WireError(f"unreadable message ({type(exc).__name__})") from None
    if not isinstance(sizes, list) or not all(isinstance(n, int) and n >= 0 for n in sizes):
        raise WireError("bad blob sizes")
    if doc_end + sum(sizes) != len(data):
        raise WireError("message length does not match its contents")
    blobs, offset = [], doc_end
    for n in sizes:
        blobs.append(data[offset : offset + n])
        offset += n
    return _Decoder(blobs).value(doc, 0)


def send(sock: socket.socket, obj: Any) -> None:
    """Send one framed message."""
    payload = encode(obj)
    if len(payload) > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {len(payload)} bytes is over the {MAX_MESSAGE_BYTES} limit")
    sock.sendall(_HEADER.pack(len(payload)) + payload)


def _recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv(sock: socket.socket, limit: int = MAX_MESSAGE_BYTES) -> Any:
    """Receive one framed message; ``EOFError`` when the peer closed the socket."""
    head = _recv_exactly(sock, 8)
    if head is None:
        raise EOFError("the other end closed the connection")
    (size,) = _HEADER.unpack(head)
    if size > limit:
        raise WireError(f"message of {size} bytes is over the {limit} limit")
    payload = _recv_exactly(sock, size)
    if payload is None:
        raise EOFError("the other end closed the connection in the middle of a message")
    return decode(payload)

"""Student values as plain data the judge can check: nothing of a student's object crosses over
but numbers, short strings, tensors and the names of types."""

from __future__ import annotations

import numbers
from typing import Any

import torch

MAX_TEXT = 200


def plain_value(value: Any) -> Any:
    """A returned value as data: a bool, int, float or short str as itself; a small tensor as a
    CPU copy (``{"tensor": t}``); anything else as ``{"type": name}``."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, torch.Tensor):
        t = value.detach()
        return {
            "tensor": t.to("cpu", copy=True) if t.numel() <= 4096 else None,
            "shape": list(t.shape),
            "dtype": str(t.dtype).removeprefix("torch."),
        }
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        return {"str": value[:MAX_TEXT]}
    return {"type": type(value).__name__[:MAX_TEXT]}


def plain_action(item: Any) -> list | str:
    """An action as data: ``[stage, kind, mb]`` from a 3-tuple (``Action`` is one), a string as it
    is, or a short ``repr`` the judge's parser will refuse with a message."""
    if isinstance(item, str):
        return item[:40]
    if isinstance(item, (tuple, list)) and len(item) == 3:
        out: list = []
        for x in item:
            if isinstance(x, numbers.Integral) and not isinstance(x, bool):
                out.append(int(x))
            elif isinstance(x, str):
                out.append(x[:10])
            else:
                return repr(item)[:60]
        return out
    return repr(item)[:60]

"""Which device each pipeline stage runs on (provided code).

* p stages and at least p GPUs: stage s on ``cuda:s`` (real pipeline parallelism).
* fewer GPUs than stages: every stage on ``cuda:0`` (the schedule runs, stages take turns).
* no GPU: every stage on the CPU.

The fallback keeps every schedule correct on any machine; only speed needs several GPUs.
"""

from __future__ import annotations

import torch
from torch import nn


def stage_devices(num_stages: int, device: str = "auto") -> list[torch.device]:
    """The device of each of ``num_stages`` stages.

    ``device``: ``"auto"`` (GPUs if any, else CPU), ``"cpu"`` or ``"cuda"``.
    """
    if num_stages < 1:
        raise ValueError(f"num_stages must be >= 1, got {num_stages}")
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    gpus = torch.cuda.device_count() if device != "cpu" else 0
    if device == "cuda" and gpus == 0:
        raise ValueError("device='cuda' asked for, but no CUDA GPU is visible (try device='cpu')")
    if gpus == 0:
        return [torch.device("cpu")] * num_stages
    if gpus >= num_stages:
        return [torch.device("cuda", s) for s in range(num_stages)]
    return [torch.device("cuda", 0)] * num_stages


def describe_placement(devices: list[torch.device]) -> str:
    """One line saying where the stages run, e.g. ``4 stages on cuda:0..3`` or ``4 stages on cpu``."""
    names = [str(d) for d in devices]
    if len(set(names)) == 1:
        return f"{len(names)} stage(s) on {names[0]}" + (" (shared)" if len(names) > 1 else "")
    return f"{len(names)} stages on " + ", ".join(names)


def stage_device(stage: nn.Module) -> torch.device:
    """The device a stage's parameters live on (the CPU for a stage without parameters)."""
    for p in stage.parameters():
        return p.device
    return torch.device("cpu")

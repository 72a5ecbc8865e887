"""Part 1: partition the model into pipeline stages (task ``part1.partition``)."""

from __future__ import annotations

import torch
from torch import nn


def partition(model: nn.Sequential, num_stages: int, devices: list[torch.device]) -> list[nn.Sequential]:
    """Split ``model`` into ``num_stages`` contiguous, non-empty stages, stage s on ``devices[s]``.

    * Stage s is an ``nn.Sequential`` of consecutive layers of ``model``; stage 0 starts with
      layer 0, the last stage ends with the last layer, and every layer is in exactly one stage.
    * Balance by parameter count: choose the split that makes the largest stage's parameter
      count as small as possible (with equal layers, that is an even split).
    * Move each stage to its device with ``.to(device)``; do not copy the layers (the stages share
      the model's parameters, so gradients land in ``model``'s parameters).
    * ``num_stages < 1`` or more stages than layers: raise ``ValueError`` with a message that says
      what is wrong. ``len(devices)`` must equal ``num_stages`` (``ValueError`` otherwise).

    Example: 8 equal layers, 3 stages -> layers [0,1,2], [3,4,5], [6,7] (or another split whose
    largest stage has 3 layers).
    """
    ### BEGIN SOLUTION part1.partition: split layers into contiguous stages (balance parameter counts), move each to its device
    layers = list(model)
    if num_stages < 1:
        raise ValueError(f"num_stages must be >= 1, got {num_stages}")
    if num_stages > len(layers):
        raise ValueError(f"cannot split {len(layers)} layers into {num_stages} non-empty stages")
    if len(devices) != num_stages:
        raise ValueError(f"need one device per stage: {num_stages} stages, {len(devices)} devices")
    sizes = [sum(p.numel() for p in layer.parameters()) for layer in layers]
    bounds = _balanced_bounds(sizes, num_stages)
    return [nn.Sequential(*layers[a:b]).to(dev) for (a, b), dev in zip(bounds, devices)]


def _balanced_bounds(sizes: list[int], num_stages: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, end)`` layer ranges minimising the largest stage's total size.

    Dynamic programme over (layers used, stages used); ties go to the earliest cut, so the
    result is deterministic.
    """
    n = len(sizes)
    prefix = [0]
    for s in sizes:
        prefix.append(prefix[-1] + s)
    inf = float("inf")
    # best[k][i]: smallest possible largest-stage size covering layers [0, i) with k stages.
    best = [[inf] * (n + 1) for _ in range(num_stages + 1)]
    cut = [[0] * (n + 1) for _ in range(num_stages + 1)]
    best[0][0] = 0
    for k in range(1, num_stages + 1):
        for i in range(k, n - (num_stages - k) + 1):
            for j in range(k - 1, i):
                cost = max(best[k - 1][j], prefix[i] - prefix[j])
                if cost < best[k][i]:
                    best[k][i], cut[k][i] = cost, j
    bounds, end = [], n
    for k in range(num_stages, 0, -1):
        start = cut[k][end]
        bounds.append((start, end))
        end = start
    return bounds[::-1]
    ### END SOLUTION

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
    raise NotImplementedError("part1.partition: split layers into contiguous stages (balance parameter counts), move each to its device")

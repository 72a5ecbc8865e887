"""The course model as the judge and the runtimes see it: the pristine provided ``model.py`` and
the judge's own even partition.

Never the graded implementation's copy: a submission cannot change the ground truth.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_FILE = REPO_ROOT / "assignment" / "model.py"


@functools.lru_cache(maxsize=1)
def course_model() -> ModuleType:
    """The provided ``model.py`` of this repository's ``assignment/`` (make_model, make_batch,
    loss_function, reference_step), loaded on its own under a private name."""
    name = "autograder._course_model"
    spec = importlib.util.spec_from_file_location(name, MODEL_FILE)
    if spec is None or not MODEL_FILE.is_file():
        raise FileNotFoundError(f"{MODEL_FILE} not found: run python -m autograder.release")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def split_sizes(total: int, parts: int) -> list[int]:
    """``parts`` sizes that add up to ``total``, differing by at most one, larger first."""
    base, extra = divmod(total, parts)
    return [base + (1 if k < extra else 0) for k in range(parts)]


def even_partition(model: nn.Sequential, num_stages: int, devices: list[torch.device]) -> list[nn.Sequential]:
    """The judge's partition: contiguous stages, sizes differing by at most one layer."""
    layers, start, stages = list(model), 0, []
    for s, size in enumerate(split_sizes(len(layers), num_stages)):
        stages.append(nn.Sequential(*layers[start : start + size]).to(devices[s]))
        start += size
    return stages

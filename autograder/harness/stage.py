"""Pipeline stages as student code sees them: modules whose work is done by an *executor*.

A :class:`PipelineStage` is called like the stage module it stands for (``y = stage(x)``) and has
that stage's parameters (``stage.parameters()``), but the forward and the backward run in the
executor, which records every forward and backward of every stage as it really runs:

* when grading, a *remote* executor (:mod:`autograder.harness.remote`): the stages live in the
  judge's process, and student code drives them through these proxies, as a real pipeline drives
  remote stages. Nothing the judge records can be rewritten by code in the student's process;
* in the students' own tools, a local executor (:mod:`autograder.tracing.executor`) running the
  real modules in the same process.

The stage is one node of the student's autograd graph (:class:`_StageFunction`), with the input
activation and the parameters as its inputs. So the backward of a stage is recorded whatever API
the student uses: ``loss.backward()``, ``torch.autograd.backward`` with gradient tensors,
``torch.autograd.grad`` with respect to activations or parameters, ``backward(inputs=...)``,
``retain_graph``, activation checkpointing. The executor returns the parameters' gradients to the
autograd engine, which accumulates them into ``.grad`` or returns them, exactly as it would for a
local module.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn


class StageExecutor(Protocol):
    """Runs the stages' forwards and backwards (see the module docstring)."""

    def forward(self, stage: int, x: torch.Tensor, keep_graph: bool) -> tuple[int, torch.Tensor]:
        """Run stage ``stage`` on ``x``; return a handle of the kept graph and the output (detached)."""

    def backward(
        self, handle: int, grad: torch.Tensor | None, need_input: bool, need_params: bool
    ) -> tuple[torch.Tensor | None, list[torch.Tensor | None]]:
        """Backward of the forward ``handle`` from the output gradient ``grad``; returns the input's
        gradient (or None) and one gradient (or None) per parameter of the stage."""

    def release(self, handle: int) -> None:
        """The student's graph no longer refers to the forward ``handle``: free what it kept."""

    def note(self, kind: str, detail: str) -> None:
        """Record an observation in the event stream (e.g. a host synchronisation)."""


class _Release:
    """Lives on the autograd node; tells the executor when autograd frees the node."""

    __slots__ = ("executor", "handle")

    def __init__(self, executor: StageExecutor, handle: int):
        self.executor, self.handle = executor, handle

    def __del__(self):
        try:
            self.executor.release(self.handle)
        except Exception:  # noqa: BLE001 - at interpreter shutdown the executor may be gone
            pass


class _StageFunction(torch.autograd.Function):
    """One stage as one autograd node: inputs (x, *params), output the stage's output."""

    @staticmethod
    def forward(ctx, stage: PipelineStage, x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        handle, out = stage.executor.forward(stage.index, x, True)
        ctx.executor, ctx.handle = stage.executor, handle
        ctx.release = _Release(stage.executor, handle)
        ctx.num_params = len(params)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        need_input = bool(ctx.needs_input_grad[1])
        need_params = any(ctx.needs_input_grad[2:])
        grad_input, grad_params = ctx.executor.backward(ctx.handle, grad, need_input, need_params)
        if len(grad_params) != ctx.num_params:
            grad_params = [None] * ctx.num_params
        return (None, grad_input if need_input else None, *grad_params)


class PipelineStage(nn.Module):
    """A pipeline stage: call it on an activation; its work happens in ``executor``.

    ``params``: the stage's parameters as student code sees them (the model's own parameters in
    the students' tools; copies that receive the judge's gradients when grading), on ``device``.
    """

    def __init__(self, executor: StageExecutor, index: int, params: list[nn.Parameter], name: str = ""):
        super().__init__()
        object.__setattr__(self, "executor", executor)  # not a submodule, not in state_dict
        self.index = index
        self.stage_params = nn.ParameterList(params)
        self._name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"stage {self.index} was called with a {type(x).__name__}; pass it the activation tensor")
        params = list(self.stage_params)
        if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params)):
            return _StageFunction.apply(self, x, *params)
        _, out = self.executor.forward(self.index, x, False)
        return out

    def __deepcopy__(self, memo):
        raise TypeError(
            "a pipeline stage cannot be copied: the stages hold the model's parameters, and a copy "
            "would never pass its gradients back (do not copy.deepcopy stages)"
        )

    def __getitem__(self, index):
        raise TypeError(f"stage {self.index} is not indexable here: call the stage on its input, stage(x)")

    def extra_repr(self) -> str:
        return f"stage={self.index}" + (f", {self._name}" if self._name else "")

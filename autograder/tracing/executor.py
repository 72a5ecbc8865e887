"""The local executor: runs the stage modules in this process and records what they do.

It implements :class:`autograder.harness.stage.StageExecutor`. The judge's stage host runs one for
the student's remote proxies (the stages live in the judge's process); the students' own tools run
one next to their code. Each forward runs the stage on a detached copy of its input under its own
autograd graph, kept until the student's graph no longer refers to it; each backward runs
``torch.autograd.grad`` on that graph and hands the gradients back, so the autograd engine on the
student's side accumulates them (``.backward()``) or returns them (``torch.autograd.grad``).
The executor also keeps its own sum of the parameter gradients it computed: the gradients the
stages really produced, whatever student code later does with ``.grad``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .recorder import Recorder, TraceEvent, clock


class StageError(RuntimeError):
    """A stage was driven in a way it cannot run (one line, shown to the student)."""


class _Kept:
    __slots__ = ("stage", "mb", "x", "out")

    def __init__(self, stage: int, mb: int, x: torch.Tensor, out: torch.Tensor):
        self.stage, self.mb, self.x, self.out = stage, mb, x, out


class LocalExecutor:
    """Runs ``modules[s]`` for stage ``s`` and records every forward and backward in ``recorder``.

    ``prepare(stage, x)``: optional check/conversion of each input before it runs (the judge uses it
    to validate tensors that come from the sandbox); it returns the tensor to run or raises
    :class:`StageError`.
    """

    def __init__(
        self,
        modules: list[nn.Module],
        recorder: Recorder,
        prepare: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
    ):
        self.modules = list(modules)
        self.params = [list(m.parameters()) for m in self.modules]
        self.recorder = recorder
        self.prepare = prepare
        self.param_grads: list[list[torch.Tensor | None]] = [[None] * len(p) for p in self.params]
        self._kept: dict[int, _Kept] = {}
        self._next = 0
        self._param_ptrs = {p.data_ptr() for ps in self.params for p in ps}

    # -- StageExecutor ---------------------------------------------------------------------------
    def forward(self, stage: int, x: torch.Tensor, keep_graph: bool) -> tuple[int, torch.Tensor]:
        if not 0 <= stage < len(self.modules):
            raise StageError(f"there is no stage {stage} (stages 0..{len(self.modules) - 1})")
        if self.prepare is not None:
            x = self.prepare(stage, x)
        mb = self.recorder.identify(stage, x)
        leaf = x.detach()
        if keep_graph:
            leaf.requires_grad_(x.requires_grad)
        saved = _SavedBytes(self._param_ptrs)
        start = clock()
        if keep_graph:
            with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack):
                out = self.modules[stage](leaf)
        else:
            with torch.no_grad():
                out = self.modules[stage](leaf)
        end = clock()
        if not isinstance(out, torch.Tensor):
            raise StageError(f"stage {stage} returned a {type(out).__name__}, not a tensor")
        t0 = self.recorder.t0
        self.recorder.record(
            TraceEvent(stage, "F", mb, start - t0, end - t0, keep_graph, saved.total, int(x.shape[0]) if x.dim() else 0)
        )
        self.recorder.remember_output(stage, mb, out)
        self._next += 1
        if keep_graph:
            self._kept[self._next] = _Kept(stage, mb, leaf, out)
        return self._next, out.detach()

    def backward(
        self, handle: int, grad: torch.Tensor | None, need_input: bool, need_params: bool
    ) -> tuple[torch.Tensor | None, list[torch.Tensor | None]]:
        kept = self._kept.get(handle)
        if kept is None:
            raise StageError(
                "a backward reached a stage whose forward graph is gone (was the graph freed "
                "by an earlier backward? call backward once per micro-batch)"
            )
        params = self.params[kept.stage]
        wanted = [i for i, p in enumerate(params) if need_params and p.requires_grad]
        targets = ([kept.x] if need_input and kept.x.requires_grad else []) + [params[i] for i in wanted]
        if grad is not None:
            if tuple(grad.shape) != tuple(kept.out.shape):
                raise StageError(
                    f"the gradient sent back to stage {kept.stage}'s output has shape {list(grad.shape)}, "
                    f"its output has {list(kept.out.shape)}"
                )
            grad = grad.to(kept.out.device, kept.out.dtype)
        start = clock()
        grads = (
            torch.autograd.grad(kept.out, targets, grad_outputs=grad, retain_graph=True, allow_unused=True)
            if targets and kept.out.requires_grad
            else ()
        )
        end = clock()
        t0 = self.recorder.t0
        self.recorder.record(
            TraceEvent(kept.stage, "B", kept.mb, start - t0, end - t0, rows=int(kept.x.shape[0]) if kept.x.dim() else 0)
        )
        grads = list(grads) or [None] * len(targets)
        grad_input = grads.pop(0) if targets and targets[0] is kept.x else None
        grad_params: list[torch.Tensor | None] = [None] * len(params)
        for i, g in zip(wanted, grads):
            grad_params[i] = g
            if g is not None:
                total = self.param_grads[kept.stage][i]
                self.param_grads[kept.stage][i] = g.detach().clone() if total is None else total + g.detach()
        return grad_input, grad_params

    def release(self, handle: int) -> None:
        self._kept.pop(handle, None)

    def note(self, kind: str, detail: str) -> None:
        self.recorder.observe(kind, detail)

    def close(self) -> None:
        self._kept.clear()


class _SavedBytes:
    """Saved-tensor hooks that add up the bytes a forward keeps for its backward (not parameters)."""

    def __init__(self, param_ptrs: set[int]):
        self.param_ptrs = param_ptrs
        self.seen: set[tuple[int, int]] = set()
        self.total = 0

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        key = (t.data_ptr(), t.numel())
        if t.data_ptr() not in self.param_ptrs and key not in self.seen:
            self.seen.add(key)
            self.total += t.numel() * t.element_size()
        return t

    @staticmethod
    def unpack(t: torch.Tensor) -> torch.Tensor:
        return t

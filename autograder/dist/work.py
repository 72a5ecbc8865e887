"""One stage's work between its forward and its backward, shared by both executors."""

from __future__ import annotations

import torch
from torch import nn

from .emulate import backward_pass, device_sleep, find_emulated

try:  # the engine call behind torch.autograd.backward/grad, without their Python argument handling
    from torch.autograd.graph import _engine_run_backward
except ImportError:  # pragma: no cover (older torch)
    _engine_run_backward = None


def _device_of(module: nn.Module) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _has_hooks(module: nn.Module) -> bool:
    return any(
        getattr(module, name, None)
        for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    )


def _leaves(module: nn.Module) -> list[nn.Module] | None:
    """The modules an ``nn.Sequential`` tree chains, in order, if calling them one after the other
    is the same as calling the tree (no hooks on any container); None otherwise."""
    if not isinstance(module, nn.Sequential):
        return [module]
    if _has_hooks(module):
        return None
    out: list[nn.Module] = []
    for child in module:
        inner = _leaves(child)
        if inner is None:
            return None
        out += inner
    return out


def _caller(module: nn.Module):
    """``module.__call__``, or, for a plain ``nn.Sequential`` tree, a loop over its leaves (the same
    result without one ``__call__`` per container: ~6 us less per forward of the course model)."""
    from torch.nn.modules import module as module_globals

    leaves = _leaves(module)
    if (
        leaves is None
        or len(leaves) == 1
        or any(getattr(module_globals, name, None) for name in ("_global_forward_hooks", "_global_forward_pre_hooks"))
    ):
        return module

    def chain(x: torch.Tensor) -> torch.Tensor:
        for leaf in leaves:
            x = leaf(x)
        return x

    return chain


def _backward(outputs: torch.Tensor, grad: torch.Tensor, inputs: tuple = (), retain: bool = False) -> None:
    """``torch.autograd.backward(outputs, grad, inputs=inputs, retain_graph=retain)``."""
    if _engine_run_backward is None:  # pragma: no cover
        torch.autograd.backward(outputs, grad, inputs=list(inputs) or None, retain_graph=retain)
        return
    _engine_run_backward((outputs,), (grad,), retain, False, inputs, allow_unreachable=True, accumulate_grad=True)


def _grad(outputs: torch.Tensor, grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``torch.autograd.grad(outputs, [x], grad, retain_graph=True)[0]``."""
    if _engine_run_backward is None:  # pragma: no cover
        return torch.autograd.grad(outputs, [x], grad, retain_graph=True)[0]
    return _engine_run_backward((outputs,), (grad,), True, False, (x,), allow_unreachable=True, accumulate_grad=False)[
        0
    ]


class StageWork:
    """What one stage keeps between the actions of each micro-batch: ``F``, then ``B`` or ``I``
    then ``W``.

    * ``forward(mb, x)`` runs the stage on its input (for stage s > 0 a leaf that requires grad,
      detached from the received tensor), keeps what the backward needs and returns the output
      to send on (``None`` on the last stage, which computes the micro-batch's weighted loss).
    * ``backward(mb, grad)`` (``B``): one autograd pass from the gradient of the output (``None``
      on the last stage: its loss) to the input and the parameters; returns the input gradient
      to send back (``None`` on stage 0).
    * ``input_grad(mb, grad)`` (``I``): ``torch.autograd.grad(out, [x], grad, retain_graph=True)``,
      only the input gradient (the engine runs no weight-gradient node), returned like
      ``backward``'s; the graph and ``grad`` stay for ``W``. Stage 0 has no input gradient to send:
      its ``I`` computes nothing (``W`` does its whole backward, as torch.distributed.pipelining does).
    * ``weight_grad(mb)`` (``W``): ``torch.autograd.backward(out, grad, inputs=params)``:
      accumulates the parameters' gradients and frees the graph. It goes through the stage again
      from its output (recomputing the input-side gradients inside the stage: ~20 us of CPU for a
      course-model stage, and inside the emulated time); the alternative, torch's saving of
      intermediate gradients during ``I``, walks the graph in Python on every ``I``.

    The autograd calls go to the engine directly (``_engine_run_backward``, what
    ``torch.autograd.backward``/``grad`` call after checking their arguments: ~15 us less per
    backward), and a plain ``nn.Sequential`` stage is called leaf by leaf (see :func:`_caller`).
    The loss of micro-batch k is ``loss_fn(out, y_k) x rows_k / batch`` so the accumulated
    gradients equal the full-batch mean loss's, also for uneven micro-batches. Emulated time comes
    from :class:`~autograder.dist.emulate.EmulatedTime` stages (told which half of a split
    backward runs; stage 0's ``I``, which computes nothing, waits ``I`` itself) or from the
    executor. Errors (a ``B`` before its ``F``...) are the executors' to prevent: they check the
    lists first.
    """

    def __init__(
        self,
        module: nn.Module,
        stage: int,
        num_stages: int,
        loss_fn: nn.Module,
        batch_size: int,
        targets: list[torch.Tensor] | None = None,
    ):
        self.module = module
        self.stage = stage
        self.last = stage == num_stages - 1
        self.loss_fn = loss_fn
        self.batch_size = batch_size
        self.targets = targets
        self.params = tuple(q for q in module.parameters() if q.requires_grad)
        self.emulated = find_emulated(module)
        self.call = _caller(module)
        self.kept: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # mb -> (input, output or loss)
        self.split: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}  # mb -> (output or loss, grad)
        self.losses: list[torch.Tensor] = []

    def forward(self, mb: int, x: torch.Tensor) -> torch.Tensor | None:
        if self.stage > 0:
            x = x.detach().requires_grad_(True)
        out = self.call(x)
        if self.last:
            loss = self.loss_fn(out, self.targets[mb].to(out.device)) * (out.shape[0] / self.batch_size)
            self.kept[mb] = (x, loss)
            self.losses.append(loss.detach())
            return None
        self.kept[mb] = (x, out)
        return out.detach()

    def backward(self, mb: int, grad: torch.Tensor | None) -> torch.Tensor | None:
        x, out = self.kept.pop(mb)
        _backward(out, torch.ones_like(out) if grad is None else grad)
        return x.grad if self.stage > 0 else None

    def input_grad(self, mb: int, grad: torch.Tensor | None) -> torch.Tensor | None:
        x, out = self.kept.pop(mb)
        self.split[mb] = (out, grad)
        if self.stage == 0:
            if self.emulated is not None:  # no compute, but the device is busy for I all the same
                device_sleep(self.emulated.device_time.seconds("I", int(x.shape[0])))
            return None
        grad = torch.ones_like(out) if grad is None else grad
        if self.emulated is None:
            return _grad(out, grad, x)
        with backward_pass("I"):
            return _grad(out, grad, x)

    def weight_grad(self, mb: int) -> None:
        out, grad = self.split.pop(mb)
        grad = torch.ones_like(out) if grad is None else grad
        if self.params and self.emulated is None:
            _backward(out, grad, self.params)
        elif self.params:
            with backward_pass("W"):
                _backward(out, grad, self.params)

    def has_forward(self, mb: int) -> bool:
        """Whether ``F`` of ``mb`` ran and neither ``B`` nor ``I`` has yet."""
        return mb in self.kept

    def has_input_grad(self, mb: int) -> bool:
        """Whether ``I`` of ``mb`` ran and ``W`` has not yet."""
        return mb in self.split

    def loss(self) -> torch.Tensor | None:
        """Sum of the weighted micro-batch losses computed so far (last stage only)."""
        return torch.stack(self.losses).sum() if self.losses else None

"""The stage host: the stages of one schedule trial, run in the judge's process.

Student code drives them through proxies (``autograder.harness.stage``); each request arrives here
as data (:mod:`autograder.harness.wire`), is checked (a tensor of the stage's input width, float,
at most a batch of rows), runs on the judge's own model and partition, and is recorded by a
:class:`~autograder.tracing.Recorder` that lives in this process only. The host also keeps the sum
of the parameter gradients its stages computed: the gradients the schedule really produced.
"""

from __future__ import annotations

import torch

from ..dist.model import course_model, even_partition
from ..harness.errors import first_line
from ..tracing import LocalExecutor, Recorder, StageError
from .text import clean_line

MAX_REQUESTS = 20_000


class TrialHost:
    """Answers one call's stage requests for ``spec`` (an ``autograder.judge.trial.TrialSpec``)."""

    def __init__(self, spec):
        M = course_model()
        self.model = M.make_model(spec.width, spec.depth, seed=spec.seed, kind=spec.kind)
        self.inputs, self.targets = M.make_batch(spec.batch_size, spec.width, seed=spec.seed, kind=spec.kind)
        self.modules = even_partition(self.model, spec.num_stages, [torch.device("cpu")] * spec.num_stages)
        self.input_shapes = self._input_shapes()
        self.batch_size = spec.batch_size
        self.recorder = Recorder(self.inputs, spec.sizes)
        self.executor = LocalExecutor(self.modules, self.recorder, prepare=self._check_input)
        self.requests = 0

    def _input_shapes(self) -> list[tuple[int, ...]]:
        shapes, x = [], self.inputs[:1]
        with torch.no_grad():
            for module in self.modules:
                shapes.append(tuple(x.shape[1:]))
                x = module(x)
        return shapes

    def _check_input(self, stage: int, x: torch.Tensor) -> torch.Tensor:
        want = self.input_shapes[stage]
        if not x.is_floating_point():
            raise StageError(
                f"stage {stage} received a {str(x.dtype).removeprefix('torch.')} tensor; pass it the float activations"
            )
        if x.dim() != len(want) + 1 or tuple(x.shape[1:]) != want or not 1 <= x.shape[0] <= self.batch_size:
            raise StageError(
                f"stage {stage} received a tensor of shape {list(x.shape)}; it takes "
                f"(rows, {', '.join(map(str, want))}) with 1 to {self.batch_size} rows"
            )
        return x.to(torch.float32)

    def handle(self, message: dict) -> dict:
        """One request: ``F`` (forward), ``B`` (backward), ``flush``; the answer or ``{"error": ...}``."""
        self.requests += 1
        if self.requests > MAX_REQUESTS:
            return {"error": f"more than {MAX_REQUESTS} stage requests in one step"}
        for item in message.get("pending") or []:
            if isinstance(item, list) and item[:1] == ["release"] and len(item) == 2 and isinstance(item[1], int):
                self.executor.release(item[1])
            elif isinstance(item, list) and item[:1] == ["note"] and len(item) == 3:
                self.executor.note(clean_line(item[1], 40), clean_line(item[2], 200))
        try:
            return self._answer(message)
        except StageError as exc:
            return {"error": clean_line(exc)}
        except (RuntimeError, ValueError, TypeError) as exc:
            return {"error": clean_line(f"{type(exc).__name__}: {first_line(exc)}")}

    def _answer(self, message: dict) -> dict:
        op = message.get("op")
        if op == "flush":
            return {}
        if op == "F":
            stage, x = message.get("stage"), message.get("x")
            if not isinstance(stage, int) or not isinstance(x, torch.Tensor):
                raise StageError("malformed forward request")
            x.requires_grad_(bool(message.get("requires_grad")) and x.is_floating_point())
            handle, out = self.executor.forward(stage, x, bool(message.get("graph")))
            return {"handle": handle, "out": out}
        if op == "B":
            handle, grad = message.get("handle"), message.get("grad")
            if not isinstance(handle, int) or not (grad is None or isinstance(grad, torch.Tensor)):
                raise StageError("malformed backward request")
            if isinstance(grad, torch.Tensor) and not grad.is_floating_point():
                raise StageError("the gradient of a stage's output must be a float tensor")
            grad_input, grad_params = self.executor.backward(
                handle, grad, bool(message.get("need_input")), bool(message.get("need_params"))
            )
            return {"grad_input": grad_input, "grad_params": grad_params}
        raise StageError(f"unknown stage request {op!r}")

    def param_grads(self) -> list[list[torch.Tensor | None]]:
        """Per stage, per parameter: the sum of the gradients the stages computed (None: never)."""
        return self.executor.param_grads

    def close(self) -> None:
        self.executor.close()

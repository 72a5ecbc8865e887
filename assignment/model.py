"""The course model, a synthetic batch and the single-device reference step (provided code).

Everything here is deterministic given a seed, so a pipeline run and the reference see the
same weights and the same data.
"""

from __future__ import annotations

import torch
from torch import nn

DEFAULT_WIDTH = 64
DEFAULT_DEPTH = 8


class TransformerBlock(nn.Module):
    """A small pre-norm transformer block: ``x + attn(ln(x))`` then ``x + mlp(ln(x))``.

    Input and output shape: ``(batch, seq, width)``. ``width`` must be divisible by ``heads``.
    """

    def __init__(self, width: int, heads: int = 4):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


def make_model(
    width: int = DEFAULT_WIDTH, depth: int = DEFAULT_DEPTH, seed: int = 0, kind: str = "mlp"
) -> nn.Sequential:
    """Build the course model as an ``nn.Sequential`` of ``depth`` layers, on the CPU, in float32.

    ``kind="mlp"``: layers ``0..depth-2`` are ``Linear(width, width) + ReLU``, the last is a plain
    ``Linear(width, width)``; input and output shape ``(batch, width)``.
    ``kind="transformer"``: ``depth`` :class:`TransformerBlock` layers; shape ``(batch, seq, width)``.

    Every layer has the same number of parameters, so a balanced partition splits layers evenly.
    """
    if width < 1 or depth < 1:
        raise ValueError(f"width and depth must be >= 1, got width={width}, depth={depth}")
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        if kind == "mlp":
            layers = [nn.Sequential(nn.Linear(width, width), nn.ReLU()) for _ in range(depth - 1)]
            layers.append(nn.Linear(width, width))
        elif kind == "transformer":
            layers = [TransformerBlock(width) for _ in range(depth)]
        else:
            raise ValueError(f"kind must be 'mlp' or 'transformer', got {kind!r}")
    finally:
        torch.random.set_rng_state(gen_state)
    return nn.Sequential(*layers)


def make_batch(
    batch_size: int, width: int = DEFAULT_WIDTH, seed: int = 0, kind: str = "mlp", seq_len: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """A synthetic regression batch ``(inputs, targets)``, float32, on the CPU.

    Shapes: ``(batch_size, width)`` for the MLP, ``(batch_size, seq_len, width)`` for the transformer.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    gen = torch.Generator().manual_seed(10_000 + seed)
    shape = (batch_size, width) if kind == "mlp" else (batch_size, seq_len, width)
    inputs = torch.randn(shape, generator=gen)
    targets = torch.randn(shape, generator=gen)
    return inputs, targets


def loss_function() -> nn.Module:
    """The course loss: mean squared error averaged over every element of the batch."""
    return nn.MSELoss()


def reference_step(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: nn.Module) -> float:
    """One single-device, full-batch forward and backward: the ground truth for every schedule.

    Accumulates into ``param.grad`` (does not zero or step) and returns the mean loss.
    """
    device = next(model.parameters()).device
    loss = loss_fn(model(inputs.to(device)), targets.to(device))
    loss.backward()
    return loss.item()

"""Gradients and the returned loss of a schedule trial, with diagnoses.

Two questions, in this order, each answered from data the judge holds:

1. *The contract of a step function*: after the step, each parameter's ``.grad`` must be what was
   there before (the judge's sentinel gradients) plus what the stages computed (the host's own sum).
   A step that zeroes ``.grad``, drops what ``torch.autograd.grad`` returned, or edits ``.grad``
   afterwards fails here, with that named.
2. *Correctness*: what the stages computed must equal the single-device full-batch gradient, to
   ``GRAD_RTOL`` of its largest entry. When it does not, the computed gradient of each stage is
   fitted as a weighted sum of the micro-batches' own gradients; the weights name the mistake
   (a micro-batch missing, counted twice, weighted wrongly, everything scaled by a factor), judged
   relative to the gradients' own size.
"""

from __future__ import annotations

import torch

from ...practical import GRAD_RTOL, LOSS_RTOL
from ..trial import Reference, Trial, returned_loss
from .common import fmt_weights, trial_failure


def _flat(grads: dict[str, torch.Tensor | None], names: list[str], like: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat(
        [(grads[n] if grads.get(n) is not None else torch.zeros_like(like[n])).reshape(-1).double() for n in names]
    )


def check_gradients(trial: Trial, ref: Reference) -> str | None:
    """``None`` if the step's gradients are right; else one message for the student."""
    problem = trial_failure(trial)
    if problem:
        return problem
    spec = trial.spec
    if trial.replaced:
        return (
            f"{spec}: the stages no longer hold the parameters they were given: a step function must not "
            f"replace, copy or re-create the stages' parameters"
        )
    if trial.changed:
        return (
            f"{spec}: parameter values changed during the step ({', '.join(trial.changed[:3])}): a step "
            f"function only accumulates gradients; do not call optimizer.step() or modify the weights"
        )
    missing = [n for n, g in trial.grads.items() if g is None]
    if missing:
        return (
            f"{spec}: {missing[0]} has no gradient at all (.grad is None): .grad was cleared "
            f"(zero_grad(set_to_none=True) or .grad = None); a step function must add to .grad, never clear it"
        )
    names = list(ref.expected)
    scale = _flat(ref.delta, names, ref.expected).abs().max().item()
    problem = _contract(trial, ref, names, scale)
    if problem:
        return f"{spec}: {problem}"
    computed = _flat(trial.computed, names, ref.expected)
    err = (computed - _flat(ref.delta, names, ref.expected)).abs().max().item()
    if err <= GRAD_RTOL * scale:
        return None
    return (
        f"{spec}: gradients differ from the single-device reference: max |dg| = {err:.3g} (allowed "
        f"{GRAD_RTOL:g} x max |g_ref| = {GRAD_RTOL * scale:.3g}). " + diagnose(trial, ref)
    )


def _contract(trial: Trial, ref: Reference, names: list[str], scale: float) -> str | None:
    """Is ``.grad`` = sentinel + what the stages computed? If not, say which mistake it looks like."""
    grads = _flat(trial.grads, names, ref.expected)
    sentinel = _flat(ref.sentinel, names, ref.expected)
    computed = _flat(trial.computed, names, ref.expected)
    tol = GRAD_RTOL * max(scale, 1e-12)
    if (grads - sentinel - computed).abs().max().item() <= tol:
        return None
    if computed.abs().max().item() > tol and (grads - computed).abs().max().item() <= tol:
        return (
            "the gradients that were already in .grad before the step are gone: your code zeroed them "
            "(zero_grad() or .grad = None). A step function must accumulate into .grad, never clear it."
        )
    if computed.abs().max().item() > tol and (grads - sentinel).abs().max().item() <= tol:
        return (
            "your stages computed gradients, but none of them reached .grad: when you use "
            "torch.autograd.grad(...), add what it returns to each parameter's .grad (p.grad += g)"
        )
    diff = (grads - sentinel - computed).abs().max().item()
    return (
        f".grad is not the gradient your stages computed added to what was there before (differs by up to "
        f"{diff:.3g}): do not scale, replace or edit .grad after the backward"
    )


def diagnose(trial: Trial, ref: Reference) -> str:
    """Explain a gradient mismatch by fitting each stage's computed gradient to the micro-batches'."""
    spec = trial.spec
    expected_w = [size / spec.batch_size for size in spec.sizes]
    by_stage: dict[int, list[str]] = {}
    for name, s in ref.stage_of.items():
        by_stage.setdefault(s, []).append(name)
    found = []
    for s in sorted(by_stage):
        names = by_stage[s]
        delta = _flat(trial.computed, names, ref.expected)
        basis = torch.stack([_flat(g, names, ref.expected) for g in ref.per_mb], dim=1)
        if delta.abs().max() <= 1e-9 * (basis.abs().max() + 1e-30):
            found.append((s, "none", None))
            continue
        weights = torch.linalg.lstsq(basis, delta.unsqueeze(1)).solution.squeeze(1)
        residual = (basis @ weights - delta).norm() / delta.norm()
        found.append((s, "weights", [float(w) for w in weights]) if residual <= 1e-3 else (s, "other", None))
    return _explain(found, expected_w, spec.sizes)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-3 * max(1.0, abs(b))


def _explain(found: list, expected_w: list[float], sizes: list[int]) -> str:
    kinds = {kind for _, kind, _ in found}
    none = [s for s, kind, _ in found if kind == "none"]
    if kinds == {"none"}:
        return "No stage computed any gradient: did each micro-batch's backward run?"
    if none:
        return (
            f"Stage(s) {none} computed no gradient while later stages did: the activation was detached "
            f"(or re-created) between stages; pass each stage's output, moved with .to(), to the next stage."
        )
    if "other" in kinds:
        return (
            "The gradients are not a weighted sum of the micro-batches' own gradients: check that each "
            "micro-batch's loss uses its own outputs and targets, and that each stage gets its input from "
            "the previous stage."
        )
    weights = [w for _, _, w in found]
    first = weights[0]
    same = all(max(abs(a - b) for a, b in zip(first, w)) < 1e-3 * max(1.0, max(map(abs, first))) for w in weights)
    note = "" if same else " (the weights differ between stages: check how activations flow between stages)"
    return _explain_weights(first, expected_w, sizes) + note


def _explain_weights(w: list[float], expected_w: list[float], sizes: list[int]) -> str:
    m = len(w)
    ratios = [x / e for x, e in zip(w, expected_w)]
    if m > 1 and all(_close(x, 1.0) for x in w):
        return (
            f"Each micro-batch's loss counted with weight 1, so the gradients are about {m}x too large: "
            f"weight each micro-batch's mean loss by rows/batch (microbatch_loss)."
        )
    if m > 1 and len(set(sizes)) > 1 and all(_close(x, 1 / m) for x in w):
        return (
            f"Micro-batches weighted equally (1/m) but their sizes differ ({sizes}): weight each by "
            f"rows/batch = {fmt_weights(expected_w)} (microbatch_loss)."
        )
    if all(_close(r, ratios[0]) for r in ratios) and not _close(ratios[0], 1.0) and abs(ratios[0]) > 1e-6:
        return (
            f"Every micro-batch's gradient is scaled by {ratios[0]:.4g}: the loss or the gradients are "
            f"multiplied by an extra factor (check the weights of microbatch_loss and any scaling of .grad)."
        )
    lines = []
    for k, (x, want) in enumerate(zip(w, expected_w)):
        if _close(x, want):
            continue
        if abs(x) <= 1e-3 * want:
            lines.append(f"micro-batch {k} never ran backward (it contributed no gradient)")
        elif _close(x, 2 * want):
            lines.append(f"micro-batch {k}'s backward ran twice")
        else:
            lines.append(f"micro-batch {k} counted with weight {x:.3g} instead of {want:.3g}")
    return "; ".join(lines) + f". Fitted weights {fmt_weights(w)}, expected rows/batch {fmt_weights(expected_w)}."


def check_loss(trial: Trial, ref: Reference) -> str | None:
    """The returned value is the full-batch mean loss, as a float."""
    problem = trial_failure(trial)
    if problem:
        return problem
    loss, why = returned_loss(trial)
    if why:
        return f"{trial.spec}: {why}"
    if abs(loss - ref.loss) <= LOSS_RTOL * abs(ref.loss) + 1e-6:
        return None
    m = trial.spec.num_microbatches
    ratio = loss / ref.loss if ref.loss else float("nan")
    hint = ""
    if m > 1 and abs(ratio - m) < 0.05 * m:
        hint = " (about m times too large: weight each micro-batch's loss with microbatch_loss)"
    elif m > 1 and abs(ratio * m - 1) < 0.05:
        hint = " (about m times too small: did you return only one micro-batch's loss?)"
    return (
        f"{trial.spec}: returned loss {loss:.6g}, the full-batch mean loss is {ref.loss:.6g}{hint}; return the "
        f"sum over micro-batches of their weighted losses"
    )

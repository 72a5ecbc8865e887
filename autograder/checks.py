"""What the judge concludes from a trial: gradient, loss and event-order checks with diagnoses.

Each check returns ``None`` when it passes or a message written for the student: what is wrong,
where (stage, micro-batch), and what to look at. Tolerances:

* Gradients: max |g - g_ref| <= GRAD_RTOL x max |g_ref| over all parameters. Correct schedules
  differ from the float32 single-device reference only by summation order, measured at most
  2.4e-7 x max |g_ref| (tests/test_solutions.py); 1e-3 leaves over three orders of magnitude of headroom
  while a missing or doubled micro-batch moves gradients by >= 1/m of their size.
* Loss: |loss - loss_ref| <= LOSS_RTOL x |loss_ref| + 1e-6.
"""
from __future__ import annotations

import torch

from .schedules import Event
from .trial import Reference, Trial

GRAD_RTOL = 1e-3
LOSS_RTOL = 1e-4


def _flat(grads: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    return torch.cat([grads[n].reshape(-1).double() for n in names])


def _fmt(ws) -> str:
    return "[" + ", ".join("0" if abs(w) < 1e-4 else f"{w:.3g}" for w in ws) + "]"


def check_error(trial: Trial) -> str | None:
    """The step raised (or returned the wrong type): report it first, with the trial."""
    if trial.tampered:
        return (f"{trial.spec}: your code replaced functions the autograder relies on "
                f"({', '.join(trial.tampered)}); a schedule must not monkeypatch torch or the harness")
    if trial.error:
        return f"{trial.spec}: {trial.error}"
    return None


def check_loss(trial: Trial, ref: Reference) -> str | None:
    problem = check_error(trial)
    if problem:
        return problem
    if trial.return_problem:
        return f"{trial.spec}: {trial.return_problem}"
    if abs(trial.loss - ref.loss) <= LOSS_RTOL * abs(ref.loss) + 1e-6:
        return None
    ratio = trial.loss / ref.loss if ref.loss else float("nan")
    hint = ""
    if abs(ratio - trial.spec.num_microbatches) < 0.05 * trial.spec.num_microbatches:
        hint = " (about m times too large: weight each micro-batch's loss with microbatch_loss)"
    elif trial.spec.num_microbatches > 1 and abs(ratio * trial.spec.num_microbatches - 1) < 0.05:
        hint = " (about m times too small: did you return only one micro-batch's loss?)"
    return (f"{trial.spec}: returned loss {trial.loss:.6g}, the full-batch mean loss is {ref.loss:.6g}{hint}; "
            f"return the sum over micro-batches of their weighted losses")


def check_gradients(trial: Trial, ref: Reference) -> str | None:
    """Compare every parameter's gradient with the reference; diagnose the usual mistakes."""
    problem = check_error(trial)
    if problem:
        return problem
    spec = trial.spec
    if trial.replaced:
        return (f"{spec}: parameters were replaced ({', '.join(trial.replaced[:3])}...): the stages must keep "
                f"the model's own parameters; do not copy stages or assign new parameters")
    if trial.changed:
        return (f"{spec}: parameter values changed during the step ({', '.join(trial.changed[:3])}): a step "
                f"function only accumulates gradients; do not call optimizer.step() or modify weights")
    missing = [n for n, g in trial.grads.items() if g is None]
    if missing:
        return (f"{spec}: no gradient at all for {', '.join(missing[:3])}: gradients were set to None "
                f"(zero_grad(set_to_none=True)?); a step function must accumulate into .grad, never clear it")
    names = list(ref.expected)
    got = _flat(trial.grads, names)
    want = _flat(ref.expected, names)
    scale = (want - _flat(ref.sentinel, names)).abs().max().item()  # max |g_ref|
    err = (got - want).abs().max().item()
    if err <= GRAD_RTOL * scale:
        return None
    return f"{spec}: gradients differ from the single-device reference: max |dg| = {err:.3g} " \
           f"(allowed {GRAD_RTOL:g} x max |g_ref| = {GRAD_RTOL * scale:.3g}). " + diagnose_gradients(trial, ref)


def diagnose_gradients(trial: Trial, ref: Reference) -> str:
    """Explain a gradient mismatch by fitting it to the micro-batches' own gradients.

    The schedule's contribution (gradient after the step minus the gradient before it) should be
    ``sum_k w_k g_k`` with ``g_k`` the gradient of micro-batch k's mean loss and ``w_k = rows_k / batch``.
    A least-squares fit of the weights, per stage, names the mistake: unscaled losses (w = 1),
    equal weights on uneven micro-batches (w = 1/m), a micro-batch whose backward never ran
    (w = 0) or ran twice (w = 2 rows/batch), gradients zeroed during the step, or a stage that
    received no gradient (activation detached between stages).
    """
    spec = trial.spec
    m, sizes = spec.num_microbatches, spec.sizes
    expected_w = [size / spec.batch_size for size in sizes]
    by_stage: dict[int, list[str]] = {}
    for name, s in ref.stage_of.items():
        by_stage.setdefault(s, []).append(name)
    found = []
    for s in sorted(by_stage):
        names = by_stage[s]
        delta = _flat(trial.grads, names) - _flat(ref.sentinel, names)
        basis = torch.stack([_flat(g, names) for g in ref.per_mb], dim=1)
        if delta.abs().max() <= 1e-9 * (basis.abs().max() + 1e-30):
            found.append((s, "no gradient", None))
            continue
        w = torch.linalg.lstsq(basis, delta.unsqueeze(1)).solution.squeeze(1)
        resid = (basis @ w - delta).norm() / delta.norm()
        if resid > 1e-3:
            zeroed = _flat(trial.grads, names) - basis @ torch.tensor(expected_w, dtype=torch.float64)
            if zeroed.abs().max() <= 1e-4 * basis.abs().max():
                found.append((s, "zeroed", None))
            else:
                found.append((s, "other", None))
            continue
        found.append((s, "weights", [float(x) for x in w]))
    return _explain(found, expected_w, sizes, m)


def _explain(found, expected_w, sizes, m) -> str:
    kinds = {k for _, k, _ in found}
    no_grad = [s for s, k, _ in found if k == "no gradient"]
    if no_grad and len(no_grad) < len(found):
        return (f"Stage(s) {no_grad} received no gradient while later stages did: the activation was "
                f"detached (or re-created) between stages; pass each stage's output, moved with .to(), to the next stage.")
    if kinds == {"no gradient"}:
        return ("No gradient reached any parameter: did each micro-batch's loss.backward() run? Or do the "
                "stages hold copies of the model's layers (copy.deepcopy)?")
    if "zeroed" in kinds:
        return ("The gradients that were already in .grad before the step are gone: your code zeroed them "
                "(zero_grad() or .grad = None). A step function must accumulate into .grad, never clear it.")
    weights = [w for _, k, w in found if k == "weights"]
    if not weights or "other" in kinds:
        return ("The gradients are not a weighted sum of the micro-batches' gradients: check that every stage "
                "gets its input from the previous stage and that each micro-batch's loss uses its own targets.")
    w = weights[0]
    consistent = all(max(abs(a - b) for a, b in zip(w, other)) < 1e-3 for other in weights)
    stage_note = "" if consistent else " (the weights differ between stages: check how activations flow between stages)"
    close = lambda a, b: abs(a - b) <= 1e-3 * max(1.0, abs(b))  # noqa: E731
    if m > 1 and all(close(x, 1.0) for x in w):
        return (f"Each micro-batch's loss counted with weight 1, so gradients are about {m}x too large: "
                f"multiply each micro-batch's mean loss by rows/batch (microbatch_loss).{stage_note}")
    if m > 1 and len(set(sizes)) > 1 and all(close(x, 1 / m) for x in w):
        return (f"Micro-batches weighted equally (1/m) but their sizes differ ({sizes}): weight each by "
                f"rows/batch = {_fmt(expected_w)} (microbatch_loss).{stage_note}")
    lines = []
    for k, (x, want) in enumerate(zip(w, expected_w)):
        if close(x, want):
            continue
        if close(x, 0.0):
            lines.append(f"micro-batch {k} never ran backward (it contributed no gradient)")
        elif close(x, 2 * want):
            lines.append(f"micro-batch {k}'s backward ran twice")
        else:
            lines.append(f"micro-batch {k} counted with weight {x:.3g} instead of {want:.3g}")
    return ("; ".join(lines) + f". Fitted weights {_fmt(w)}, expected rows/batch {_fmt(expected_w)}."
            + stage_note)


# -- the order of events --------------------------------------------------------------------------

def event_grid(events: list[Event], num_stages: int, mark: int | None = None, max_rows: int = 40) -> str:
    """The recorded events in start order, one per row, in their stage's column.

    ``mark``: index (in start order) of the event to flag with ``<-- ERROR HERE``. Long grids stop a
    few rows after the mark (or after ``max_rows``) and say how many rows were left out.
    """
    ordered = sorted(events, key=lambda e: (e.start, e.end))
    width = 7
    lines = ["step  " + "".join(f"stage {s}".ljust(width + 2) for s in range(num_stages)).rstrip()]
    last = max_rows if mark is None else max(mark + 6, max_rows // 2)
    for i, e in enumerate(ordered[:last]):
        cells = [(str(e) if e.stage == s else "").ljust(width + 2) for s in range(num_stages)]
        flag = "  <-- ERROR HERE" if i == mark else ""
        lines.append(f"{i:>4}  " + "".join(cells).rstrip() + flag)
    if len(ordered) > last:
        lines.append(f"   ... {len(ordered) - last} more event(s)")
    return "\n".join(lines)


def _ordered(events: list[Event]) -> list[Event]:
    return sorted(events, key=lambda e: (e.start, e.end))


def _fail(trial: Trial, events: list[Event], offending: Event | None, summary: str) -> str:
    ordered = _ordered(events)
    mark = ordered.index(offending) if offending is not None and offending in ordered else None
    return (f"{trial.spec}: {summary}\nRecorded order (F = forward, B = backward, stage then micro-batch; "
            f"'1B3' is stage 1's backward of micro-batch 3):\n"
            + event_grid(events, trial.spec.num_stages, mark))


def check_complete(trial: Trial) -> str | None:
    """Every (stage, micro-batch) has exactly one F and one B, in a dependency-respecting order."""
    problem = check_error(trial)
    if problem:
        return problem
    p, m = trial.spec.num_stages, trial.spec.num_microbatches
    events = trial.events
    if trial.notes:
        return _fail(trial, events, next((e for e in _ordered(events) if e.mb < 0), None), trial.notes[0])
    seen: dict[tuple[str, int, int], Event] = {}
    for e in _ordered(events):
        key = (e.kind, e.stage, e.mb)
        if key in seen:
            what = "forward" if e.kind == "F" else "backward"
            return _fail(trial, events, e, f"the {what} of micro-batch {e.mb} ran twice on stage {e.stage}")
        seen[key] = e
    for kind, what in (("F", "forward"), ("B", "backward")):
        for k in range(m):
            for s in range(p):
                if (kind, s, k) not in seen:
                    return _fail(trial, events, None,
                                 f"micro-batch {k} never ran {what} on stage {s}" +
                                 (" (is its loss.backward() missing?)" if kind == "B" else ""))
    for e in _ordered(events):
        deps = []
        if e.kind == "F" and e.stage > 0:
            deps.append(seen[("F", e.stage - 1, e.mb)])
        if e.kind == "B":
            deps.append(seen[("F", e.stage, e.mb)])
            if e.stage < p - 1:
                deps.append(seen[("B", e.stage + 1, e.mb)])
        for d in deps:
            if d.end > e.start:
                return _fail(trial, events, e, f"{e} started before {d}, which it depends on")
    return None


def check_naive_order(trial: Trial) -> str | None:
    """Option A: micro-batch k+1 starts only after micro-batch k's backward is complete."""
    problem = check_complete(trial)
    if problem:
        return problem
    ordered = _ordered(trial.events)
    current, done_b = 0, 0
    for e in ordered:
        if e.mb != current:
            if e.mb == current + 1 and done_b == trial.spec.num_stages:
                current, done_b = e.mb, 0
            else:
                return _fail(trial, trial.events, e,
                             f"{e} started before micro-batch {current} finished its backward on every stage: "
                             f"in the naive schedule each micro-batch runs forward and backward before the next starts")
        if e.kind == "B":
            done_b += 1
    return None


def check_gpipe_order(trial: Trial) -> str | None:
    """Option B: on every stage, all forwards come before any backward."""
    problem = check_complete(trial)
    if problem:
        return problem
    last_f: dict[int, Event] = {}
    for e in _ordered(trial.events):
        if e.kind == "F":
            last_f[e.stage] = e
    for e in _ordered(trial.events):
        if e.kind == "B" and e.start < last_f[e.stage].end:
            return _fail(trial, trial.events, e,
                         f"{e} ran before {last_f[e.stage]}: in GPipe every forward on a stage comes before any backward "
                         f"(run the forward of all micro-batches first, keep their losses, then call backward)")
    return None


def check_delayed_order(trial: Trial) -> str | None:
    """Option C: backward of micro-batch i-1 after forward of micro-batch i, before forward of i+1."""
    problem = check_complete(trial)
    if problem:
        return problem
    p, m = trial.spec.num_stages, trial.spec.num_microbatches
    ev = {(e.kind, e.stage, e.mb): e for e in trial.events}
    for i in range(1, m):
        first_b, last_f = ev[("B", p - 1, i - 1)], ev[("F", p - 1, i)]
        if first_b.start < last_f.end:
            return _fail(trial, trial.events, first_b,
                         f"the backward of micro-batch {i - 1} started before the forward of micro-batch {i} finished: "
                         f"delay each backward by one step (forward i, then backward i-1)")
        if i + 1 < m:
            last_b, next_f = ev[("B", 0, i - 1)], ev[("F", 0, i + 1)]
            if next_f.start < last_b.end:
                return _fail(trial, trial.events, next_f,
                             f"the forward of micro-batch {i + 1} started before the backward of micro-batch {i - 1} "
                             f"finished: run backward i-1 right after forward i, inside the loop")
    return None


def check_in_flight(trial: Trial) -> str | None:
    """Activation memory: peak micro-batches in flight per stage (forward started, backward not ended).

    GPipe keeps all m in flight on every stage; the Part 5 loop at most 2; the naive pipeline 1.
    Counted on the replay of the recorded per-stage order (``autograder.speed.replayed``).
    """
    from .speed import replayed

    spec = trial.spec
    peaks = replayed(trial).peak_in_flight
    limits = {"naive": 1, "delayed": min(2, spec.num_microbatches), "gpipe": spec.num_microbatches}
    want = limits[spec.schedule]
    exact = spec.schedule == "gpipe"
    for s in range(spec.num_stages):
        got = peaks.get(s, 0)
        if (exact and got != want) or got > want:
            what = "exactly" if exact else "at most"
            return (f"{spec}: stage {s} had {got} micro-batches in flight (forward done, backward not yet); "
                    f"{spec.schedule} keeps {what} {want}. Peaks per stage: {dict(sorted(peaks.items()))}\n"
                    + event_grid(trial.events, spec.num_stages))
    return None

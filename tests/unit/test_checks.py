"""The judge's verdicts (``autograder/judge/checks``) on synthetic trials, without a sandbox.

What this proves: from a :class:`Trial` built here (events, ``.grad``, what the stages computed)
and the real single-device :func:`reference`, each check accepts correct data and names the cause
of each classic mistake: gradients (unscaled losses, equal weights on uneven micro-batches, a
missing or doubled micro-batch, gradients scaled by 0.5, the sentinel zeroed, gradients computed
but never accumulated, ``.grad`` edited afterwards, a stage without gradient, parameters replaced
or changed); order (naive, GPipe, delayed backward: the right orders pass, including GPipe with
backwards in any micro-batch order and reentrant checkpointing's recomputation; wrong ones fail
with a grid whose ``<-- ERROR HERE`` row is always shown, even far down a long grid); speed (a host
sync before the last backward fails, one after passes; thresholds come from
``practical.STEP_SCHEDULES``); Part 1's and Part 6's checks on a few cases; and the trial data the
judge accepts from a schedule call (well-formed, or refused as :class:`BadData`).
"""

from __future__ import annotations

import pytest
import torch

from autograder import practical
from autograder.judge.checks import gradients, lists, order, part1, speed
from autograder.judge.trial import Trial, TrialSpec, reference
from autograder.tracing import UNKNOWN_MB, TraceEvent

ERROR_ROW = "<-- ERROR HERE"


# -- building trials ---------------------------------------------------------------------------------------


def make_spec(schedule: str = "gpipe", p: int = 3, m: int = 4, batch: int = 10, depth: int = 6) -> TrialSpec:
    return TrialSpec(schedule, p, m, batch, width=8, depth=depth, seed=3)


def naive_order(p: int, m: int) -> list[tuple]:
    seq = []
    for k in range(m):
        seq += [(s, "F", k) for s in range(p)] + [(s, "B", k) for s in reversed(range(p))]
    return seq


def gpipe_order(p: int, m: int, backwards=None) -> list[tuple]:
    seq = [(s, "F", k) for k in range(m) for s in range(p)]
    for k in backwards if backwards is not None else range(m):
        seq += [(s, "B", k) for s in reversed(range(p))]
    return seq


def delayed_order(p: int, m: int) -> list[tuple]:
    seq = []
    for i in range(m):
        seq += [(s, "F", i) for s in range(p)]
        if i > 0:
            seq += [(s, "B", i - 1) for s in reversed(range(p))]
    return seq + [(s, "B", m - 1) for s in reversed(range(p))]


def reentrant(seq: list[tuple]) -> list[tuple]:
    """Reentrant checkpointing of every stage: each forward runs without a graph, and each backward
    is preceded by the recomputation of its forward, with a graph."""
    out = []
    for s, kind, k in seq:
        out += [(s, "F", k, False)] if kind == "F" else [(s, "F", k, True), (s, "B", k)]
    return out


def events(seq: list[tuple], sizes: list[int]) -> list[TraceEvent]:
    """One process ran ``seq`` one action at a time (as the judge's stage host records it)."""
    out = []
    for i, (s, kind, k, *graph) in enumerate(seq):
        rows = sizes[k] if k >= 0 else 1
        out.append(
            TraceEvent(
                s, kind, k, float(i), i + 0.5, graph[0] if graph else True, 4 * rows * 100 if kind == "F" else 0, rows
            )
        )
    return out


def trial_of(spec: TrialSpec, seq: list[tuple], **kw) -> Trial:
    return Trial(spec, events=events(seq, spec.sizes), returned=kw.pop("returned", 1.0), **kw)


def grads_with(ref, weights, stages: dict[int, list[float]] | None = None) -> dict[str, torch.Tensor]:
    """What the stages computed if micro-batch k's mean loss had weight ``weights[k]``; ``stages``
    overrides the weights per stage ([] for a stage that computed nothing)."""
    out = {}
    for name in ref.expected:
        w = (stages or {}).get(ref.stage_of[name], weights)
        out[name] = (
            sum((wk * g[name] for wk, g in zip(w, ref.per_mb)), torch.zeros_like(ref.expected[name])) if w else None
        )
    return out


def grad_trial(spec: TrialSpec, computed: dict, grads: dict | None = None, **kw) -> Trial:
    """A GPipe-ordered trial whose stages computed ``computed`` and whose ``.grad`` is ``grads``
    (default: the sentinel plus ``computed``, as a correct step leaves it)."""
    ref = reference(spec)
    if grads is None:
        grads = {n: ref.sentinel[n] + (computed[n] if computed[n] is not None else 0) for n in ref.expected}
    return trial_of(
        spec,
        gpipe_order(spec.num_stages, spec.num_microbatches),
        computed=computed,
        grads={n: g.double() if g is not None else None for n, g in grads.items()},
        **kw,
    )


def right_weights(spec: TrialSpec) -> list[float]:
    return [size / spec.batch_size for size in spec.sizes]


UNEVEN = make_spec(m=4, batch=10)  # sizes 3, 3, 2, 2
EVEN = make_spec(m=4, batch=12)  # sizes 3, 3, 3, 3


# -- gradients ---------------------------------------------------------------------------------------------


def test_reference_per_microbatch_gradients_add_up_to_the_full_batch_gradient():
    ref = reference(UNEVEN)
    computed = grads_with(ref, right_weights(UNEVEN))
    for name, delta in ref.delta.items():
        torch.testing.assert_close(computed[name], delta, rtol=1e-5, atol=1e-7)
    assert sorted(set(ref.stage_of.values())) == [0, 1, 2]


@pytest.mark.parametrize(
    "spec", [UNEVEN, EVEN, make_spec(m=1, batch=5), make_spec(p=1, m=3, batch=7, depth=2)], ids=str
)
def test_correct_gradients_pass(spec):
    ref = reference(spec)
    assert gradients.check_gradients(grad_trial(spec, grads_with(ref, right_weights(spec))), ref) is None


def test_float32_summation_noise_passes():
    ref = reference(UNEVEN)
    computed = {n: (g.double() * (1 + 1e-6)).float() for n, g in grads_with(ref, right_weights(UNEVEN)).items()}
    assert gradients.check_gradients(grad_trial(UNEVEN, computed), ref) is None


def diagnosis(spec: TrialSpec, weights=None, stages=None) -> str:
    ref = reference(spec)
    message = gradients.check_gradients(grad_trial(spec, grads_with(ref, weights, stages)), ref)
    assert message is not None and message.startswith(str(spec))
    assert "differ from the single-device reference" in message
    return message


@pytest.mark.parametrize("spec", [UNEVEN, EVEN], ids=["uneven", "even"])
def test_unscaled_losses_are_named(spec):
    message = diagnosis(spec, [1.0] * 4)
    assert "weight 1" in message and "4x too large" in message


def test_equal_weights_on_uneven_sizes_are_named():
    message = diagnosis(UNEVEN, [0.25] * 4)
    assert "weighted equally" in message and "[3, 3, 2, 2]" in message


@pytest.mark.parametrize("k", [0, 3])
def test_missing_microbatch_is_named(k):
    weights = right_weights(UNEVEN)
    weights[k] = 0.0
    message = diagnosis(UNEVEN, weights)
    assert f"micro-batch {k} never ran backward" in message
    assert sum(f"micro-batch {j} " in message for j in range(4)) == 1


@pytest.mark.parametrize("k", [1, 2])
def test_doubled_microbatch_is_named(k):
    weights = right_weights(UNEVEN)
    weights[k] *= 2
    message = diagnosis(UNEVEN, weights)
    assert f"micro-batch {k}'s backward ran twice" in message


def test_gradients_scaled_by_a_half_are_named():
    message = diagnosis(UNEVEN, [0.5 * w for w in right_weights(UNEVEN)])
    assert "scaled by 0.5" in message


def test_a_microbatch_with_a_wrong_weight_is_named_with_its_weight():
    weights = right_weights(EVEN)
    weights[2] = 0.1
    message = diagnosis(EVEN, weights)
    assert "micro-batch 2 counted with weight 0.1 instead of 0.25" in message


def test_stage_without_gradient_is_named_as_detached_activations():
    message = diagnosis(UNEVEN, right_weights(UNEVEN), stages={0: []})
    assert "Stage(s) [0] computed no gradient" in message and "detached" in message


def test_no_stage_with_gradient_is_named():
    message = diagnosis(UNEVEN, right_weights(UNEVEN), stages={0: [], 1: [], 2: []})
    assert "No stage computed any gradient" in message


def test_weights_that_differ_between_stages_are_flagged():
    wrong = [1.0] * 4
    message = diagnosis(UNEVEN, right_weights(UNEVEN), stages={2: wrong, 1: wrong, 0: [0.5] * 4})
    assert "weights differ between stages" in message


def test_gradient_that_is_no_weighted_sum_is_named():
    ref = reference(UNEVEN)
    computed = {n: torch.randn(g.shape, generator=torch.Generator().manual_seed(5)) for n, g in ref.delta.items()}
    message = gradients.check_gradients(grad_trial(UNEVEN, computed), ref)
    assert "not a weighted sum of the micro-batches' own gradients" in message


def test_zeroed_sentinel_is_named():
    ref = reference(UNEVEN)
    computed = grads_with(ref, right_weights(UNEVEN))
    message = gradients.check_gradients(grad_trial(UNEVEN, computed, grads=computed), ref)
    assert "already in .grad before the step are gone" in message and "zero" in message


def test_grad_set_to_none_is_named():
    ref = reference(UNEVEN)
    computed = grads_with(ref, right_weights(UNEVEN))
    grads = {n: ref.sentinel[n] + g for n, g in computed.items()}
    first = next(iter(grads))
    grads[first] = None
    message = gradients.check_gradients(grad_trial(UNEVEN, computed, grads=grads), ref)
    assert f"{first} has no gradient at all" in message


def test_gradients_computed_but_never_accumulated_are_named():
    ref = reference(UNEVEN)
    computed = grads_with(ref, right_weights(UNEVEN))
    message = gradients.check_gradients(grad_trial(UNEVEN, computed, grads=dict(ref.sentinel)), ref)
    assert "none of them reached .grad" in message and "torch.autograd.grad" in message


@pytest.mark.parametrize("edit", ["scale", "add", "clip"])
def test_grad_edited_after_the_backward_is_named(edit):
    ref = reference(UNEVEN)
    computed = grads_with(ref, right_weights(UNEVEN))
    right = {n: ref.sentinel[n] + g for n, g in computed.items()}
    grads = {
        "scale": lambda: {n: 0.5 * g for n, g in right.items()},
        "add": lambda: {n: g + 0.01 for n, g in right.items()},
        "clip": lambda: {n: g.clamp(-0.05, 0.05) for n, g in right.items()},
    }[edit]()
    message = gradients.check_gradients(grad_trial(UNEVEN, computed, grads=grads), ref)
    assert "do not scale, replace or edit .grad" in message


def test_replaced_parameters_are_named():
    ref = reference(UNEVEN)
    trial = grad_trial(UNEVEN, grads_with(ref, right_weights(UNEVEN)), replaced=True)
    assert "no longer hold the parameters" in gradients.check_gradients(trial, ref)


def test_changed_parameter_values_are_named():
    ref = reference(UNEVEN)
    names = list(ref.expected)[:4]
    trial = grad_trial(UNEVEN, grads_with(ref, right_weights(UNEVEN)), changed=names)
    message = gradients.check_gradients(trial, ref)
    assert "parameter values changed" in message and "optimizer.step()" in message
    assert ", ".join(names[:3]) in message and names[3] not in message


def test_failed_call_or_raising_step_is_reported_before_anything_else():
    ref = reference(UNEVEN)
    failed = Trial(UNEVEN, failure="timed out after 2 s")
    assert gradients.check_gradients(failed, ref) == f"{UNEVEN}: timed out after 2 s"
    raised = grad_trial(UNEVEN, grads_with(ref, [1.0] * 4), error="ValueError: boom")
    assert gradients.check_gradients(raised, ref) == f"{UNEVEN}: ValueError: boom"


def test_returned_loss_is_checked():
    ref = reference(UNEVEN)
    ok = grad_trial(UNEVEN, grads_with(ref, right_weights(UNEVEN)), returned=ref.loss)
    assert gradients.check_loss(ok, ref) is None
    assert gradients.check_loss(Trial(UNEVEN, returned=ref.loss * (1 + 1e-6)), ref) is None
    assert "m times too large" in gradients.check_loss(Trial(UNEVEN, returned=ref.loss * 4), ref)
    assert "only one micro-batch" in gradients.check_loss(Trial(UNEVEN, returned=ref.loss / 4), ref)
    assert "full-batch mean loss is" in gradients.check_loss(Trial(UNEVEN, returned=ref.loss * 1.5), ref)


@pytest.mark.parametrize(
    "returned,words",
    [
        ({"tensor": torch.tensor(1.0), "shape": [], "dtype": "float32"}, "tensor"),
        (None, "None"),
        (True, "True"),
        ({"str": "1.0"}, "str"),
        ({"type": "list"}, "list"),
        (float("nan"), "not a finite"),
    ],
)
def test_returned_loss_of_the_wrong_kind_is_named(returned, words):
    ref = reference(UNEVEN)
    trial = Trial(UNEVEN, returned=returned)
    message = gradients.check_loss(trial, ref)
    assert message is not None and words in message


# -- order ---------------------------------------------------------------------------------------------------

RULES = {"naive": naive_order, "gpipe": gpipe_order, "delayed": delayed_order}


@pytest.mark.parametrize("schedule", sorted(RULES))
@pytest.mark.parametrize("p,m", [(1, 1), (1, 4), (3, 1), (3, 4), (4, 8)])
def test_each_rule_accepts_its_own_order(schedule, p, m):
    spec = make_spec(schedule, p, m, batch=16, depth=8)
    assert order.check_order(trial_of(spec, RULES[schedule](p, m))) is None


@pytest.mark.parametrize("schedule", sorted(RULES))
def test_each_rule_accepts_reentrant_checkpoint_recomputation(schedule):
    spec = make_spec(schedule, 3, 4)
    trial = trial_of(spec, reentrant(RULES[schedule](3, 4)))
    assert sum(e.kind == "F" for e in trial.events) == 2 * 3 * 4
    assert order.check_order(trial) is None
    kept = order.canonical(trial)
    assert len(kept) == 2 * 3 * 4
    assert all(e.kind == "B" or not next(t for t in trial.events if t.event == e).graph for e in kept)


@pytest.mark.parametrize("backwards", [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]], ids=["in order", "reverse", "mixed"])
def test_gpipe_accepts_backwards_in_any_microbatch_order(backwards):
    spec = make_spec("gpipe", 3, 4)
    assert order.check_order(trial_of(spec, gpipe_order(3, 4, backwards))) is None


def test_naive_accepts_microbatches_one_at_a_time_in_any_order():
    spec = make_spec("naive", 3, 4)
    seq = [a for k in (2, 0, 3, 1) for a in naive_order(3, 4) if a[2] == k]
    assert order.check_order(trial_of(spec, seq)) is None


def rejected(schedule: str, seq: list[tuple], p: int = 3, m: int = 4, batch: int = 10) -> str:
    spec = make_spec(schedule, p, m, batch=batch, depth=max(p, 6))
    message = order.check_order(trial_of(spec, seq))
    assert message is not None and message.startswith(str(spec))
    assert message.count(ERROR_ROW) == 1, message
    return message


@pytest.mark.parametrize(
    "schedule,wrong",
    [
        ("naive", "gpipe"),
        ("naive", "delayed"),
        ("gpipe", "naive"),
        ("gpipe", "delayed"),
        ("delayed", "naive"),
        ("delayed", "gpipe"),
    ],
)
def test_each_rule_rejects_the_other_orders_with_a_marked_grid(schedule, wrong):
    message = rejected(schedule, RULES[wrong](3, 4))
    assert order.LEGEND in message


def test_naive_rejection_names_the_overlapping_microbatches():
    message = rejected("naive", gpipe_order(3, 4))
    assert "still in the pipeline" in message and "micro-batch 0" in message


def test_gpipe_rejection_names_the_early_backward():
    message = rejected("gpipe", delayed_order(3, 4))
    assert "every forward on a stage comes before any backward" in message
    marked = next(line for line in message.splitlines() if ERROR_ROW in line)
    assert "B" in marked.split(ERROR_ROW)[1]


def test_delayed_rejection_names_what_the_loop_runs_instead():
    message = rejected("delayed", gpipe_order(3, 4))
    assert "where the loop runs" in message


def test_delayed_rejects_microbatches_out_of_order():
    seq = [(s, k, {0: 1, 1: 0}.get(mb, mb)) for s, k, mb in delayed_order(2, 4)]
    assert "where the loop runs" in rejected("delayed", seq, p=2)


def _long_marked(message: str) -> str:
    lines = message.splitlines()
    marked = [line for line in lines if ERROR_ROW in line]
    assert len(marked) == 1, message
    assert any("step(s) above" in line for line in lines), "the window should have left out the top of the grid"
    return marked[0]


def test_error_row_is_shown_far_down_a_long_delayed_grid():
    p, m = 2, 40
    seq = delayed_order(p, m)
    i = seq.index((0, "F", 36))  # 0F36 1F36 1B35 0B35 -> 1B35 0B35 0F36 1F36
    seq[i : i + 4] = seq[i + 2 : i + 4] + seq[i : i + 2]
    marked = _long_marked(rejected("delayed", seq, p, m, batch=40))
    assert "step 71" in marked and "0B35" in marked


def test_error_row_is_shown_far_down_a_long_gpipe_grid():
    p, m = 2, 40
    seq = gpipe_order(p, m)
    b0 = [(1, "B", 0), (0, "B", 0)]
    seq = [a for a in seq if a not in b0]
    at = seq.index((0, "F", 39))
    seq = seq[:at] + b0 + seq[at:]
    marked = _long_marked(rejected("gpipe", seq, p, m, batch=40))
    assert "B0" in marked and "step 39" in marked


def test_error_row_is_shown_far_down_a_long_naive_grid():
    p, m = 2, 40
    seq = naive_order(p, m)
    f39 = [(0, "F", 39), (1, "F", 39)]
    seq = [a for a in seq if a not in f39]
    at = seq.index((1, "B", 38))
    seq = seq[:at] + f39 + seq[at:]
    marked = _long_marked(rejected("naive", seq, p, m, batch=40))
    assert "F39" in marked


def test_forward_run_again_is_not_in_the_order_but_is_replayed_as_work():
    spec = make_spec("gpipe", 4, 8, batch=16)
    seq = gpipe_order(4, 8)
    seq.insert(seq.index((1, "B", 2)), (1, "F", 2))  # stage 1 recomputes micro-batch 2's forward before its backward
    trial = trial_of(spec, seq)
    assert order.check_order(trial) is None  # the first forward is the micro-batch's forward
    replay = speed.replayed(trial)
    assert replay.extra_forwards == {(1, 2): 1}
    plain = speed.replayed(trial_of(spec, gpipe_order(4, 8)))
    extra = speed.costs_for(trial).cost((1, "F", 2))  # one more forward on stage 1, on the critical path
    assert replay.result.makespan == pytest.approx(plain.result.makespan + extra)
    assert speed.check_speed(trial) is None  # one forward more does not cost GPipe its speedup


@pytest.mark.parametrize("schedule", ["gpipe", "delayed"])
def test_naive_step_disguised_by_thrown_away_forwards_fails_order_and_speed(schedule):
    """Forwards of every micro-batch thrown away in the schedule's order, then the naive loop: the
    forwards that count are the naive loop's, and the replay sees its serial chain."""
    p, m = 4, 8
    spec = make_spec(schedule, p, m, batch=16)
    thrown = [(s, "F", k, False) for k in range(m) for s in range(p)]
    trial = trial_of(spec, thrown + naive_order(p, m))
    message = order.check_order(trial)
    assert message is not None and "ran micro-batch 0's forward 2 times" in message
    message = speed.check_speed(trial)
    assert message is not None and "ran micro-batch 0's forward 2 times" in message
    assert speed.replayed_speedup(trial) < 1.05  # credited with nothing for the thrown-away forwards


@pytest.mark.parametrize("schedule", ["gpipe", "delayed"])
@pytest.mark.parametrize("m", [4, 8])
def test_per_stage_checkpointing_keeps_order_speed_and_memory(schedule, m):
    spec = TrialSpec(schedule, 4, m, 16, width=8, depth=8)
    trial = trial_of(spec, reentrant(RULES[schedule](4, m)))
    assert order.check_order(trial) is None
    assert speed.check_pipeline(trial) is None


def test_backward_run_twice_is_rejected_with_a_marked_grid():
    spec = make_spec("naive", 3, 4)
    seq = naive_order(3, 4) + [(0, "B", 3)]
    message = order.check_order(trial_of(spec, seq))
    assert "backward of micro-batch 3 ran twice on stage 0" in message
    assert message.count(ERROR_ROW) == 1


def test_missing_backward_is_incomplete():
    spec = make_spec("gpipe", 3, 4)
    seq = [a for a in gpipe_order(3, 4) if a[2] != 2 or a[1] == "F"]
    message = order.check_complete(trial_of(spec, seq))
    assert "micro-batch 2 never ran backward on stage 0" in message and "loss.backward() missing" in message
    assert order.LEGEND in message
    assert order.check_order(trial_of(spec, seq)) == message


def test_missing_forward_is_incomplete():
    spec = make_spec("naive", 3, 2)
    seq = [a for a in naive_order(3, 2) if a != (2, "F", 1)]
    assert "micro-batch 1 never ran forward on stage 2" in order.check_complete(trial_of(spec, seq))


def test_unidentified_activation_is_incomplete_with_the_recorder_note():
    spec = make_spec("gpipe", 3, 4)
    seq = gpipe_order(3, 4)
    seq[seq.index((1, "F", 1))] = (1, "F", UNKNOWN_MB)
    note = "stage 1 received a tensor of shape [3, 8] that is not an output of stage 0"
    message = order.check_complete(trial_of(spec, seq, notes=[note]))
    assert note in message


def test_no_events_at_all_is_incomplete():
    message = order.check_complete(Trial(make_spec("gpipe", 3, 4)))
    assert "never ran forward" in message and "no forward or backward" in message


def test_failed_trial_is_reported_by_order_checks():
    trial = Trial(make_spec("gpipe"), failure="your code's process was killed by SIGSEGV")
    assert order.check_order(trial).endswith("killed by SIGSEGV")


# -- speed and memory -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["gpipe", "delayed"])
@pytest.mark.parametrize("m", [4, 8])
def test_correct_schedules_pass_speed_and_memory(schedule, m):
    spec = TrialSpec(schedule, 4, m, 16, width=8, depth=8)
    trial = trial_of(spec, RULES[schedule](4, m))
    assert speed.check_pipeline(trial) is None
    assert (
        speed.serial_work(trial) / speed.replayed(trial).result.makespan >= practical.STEP_SCHEDULES[schedule].speed[m]
    )


@pytest.mark.parametrize("schedule", ["gpipe", "delayed"])
@pytest.mark.parametrize("m", [4, 8])
def test_serialised_order_fails_speed_with_the_registry_threshold(schedule, m):
    spec = TrialSpec(schedule, 4, m, 16, width=8, depth=8)
    message = speed.check_speed(trial_of(spec, naive_order(4, m)))
    need = practical.STEP_SCHEDULES[schedule].speed[m]
    assert message is not None and f"at least {need:.2f}x" in message and "1.00x" in message


def test_threshold_is_read_from_the_registry(monkeypatch):
    spec = TrialSpec("gpipe", 4, 4, 16, width=8, depth=8)
    trial = trial_of(spec, gpipe_order(4, 4))
    assert speed.check_speed(trial) is None
    monkeypatch.setitem(practical.STEP_SCHEDULES["gpipe"].speed, 4, 2.5)  # above GPipe's ideal 16/7
    assert "at least 2.50x" in speed.check_speed(trial)


def test_gpipe_with_backwards_in_reverse_passes_speed():
    spec = TrialSpec("gpipe", 4, 8, 16, width=8, depth=8)
    assert speed.check_pipeline(trial_of(spec, gpipe_order(4, 8, range(7, -1, -1)))) is None


def test_reentrant_checkpointed_gpipe_passes_speed_and_memory():
    spec = TrialSpec("gpipe", 4, 4, 16, width=8, depth=8)
    assert speed.check_pipeline(trial_of(spec, reentrant(gpipe_order(4, 4)))) is None


def test_sync_before_the_last_backward_fails_speed():
    spec = TrialSpec("gpipe", 4, 4, 16, width=8, depth=8)
    seq = gpipe_order(4, 4)
    trial = trial_of(spec, seq, syncs=[(len(seq) - 1, "item at schedules.py:42")])
    message = speed.check_speed(trial)
    assert message is not None and "item at schedules.py:42" in message and ".item()" in message


def test_syncs_in_the_loop_are_counted():
    spec = TrialSpec("gpipe", 4, 4, 16, width=8, depth=8)
    seq = gpipe_order(4, 4)
    trial = trial_of(
        spec,
        seq,
        syncs=[
            (3, "item at schedules.py:40"),
            (9, "__float__ at schedules.py:41"),
            (len(seq), "item at schedules.py:50"),
        ],
    )
    assert speed.syncs_in_loop(trial) == ["item at schedules.py:40", "__float__ at schedules.py:41"]
    assert "and 1 more" in speed.check_speed(trial)


def test_sync_after_the_last_backward_passes_speed():
    spec = TrialSpec("gpipe", 4, 4, 16, width=8, depth=8)
    seq = gpipe_order(4, 4)
    trial = trial_of(spec, seq, syncs=[(len(seq), "item at schedules.py:50")])
    assert speed.syncs_in_loop(trial) == []
    assert speed.check_speed(trial) is None


def test_incomplete_trial_is_not_measured():
    spec = TrialSpec("gpipe", 4, 4, 16, width=8, depth=8)
    seq = [a for a in gpipe_order(4, 4) if a != (0, "B", 3)]
    assert "not measured, the run is incomplete" in speed.check_speed(trial_of(spec, seq))
    assert "not measured" in speed.check_memory(trial_of(spec, seq))


def test_gpipe_that_does_not_keep_every_microbatch_in_flight_fails_memory():
    spec = TrialSpec("gpipe", 4, 4, 16, width=8, depth=8)
    message = speed.check_memory(trial_of(spec, delayed_order(4, 4)))
    assert "keeps exactly 4" in message and "KiB" in message


def test_delayed_loop_holding_more_than_two_fails_memory():
    spec = TrialSpec("delayed", 4, 4, 16, width=8, depth=8)
    message = speed.check_memory(trial_of(spec, gpipe_order(4, 4)))
    assert "keeps at most 2" in message


def test_peak_bytes_add_up_the_saved_activations_in_flight():
    spec = TrialSpec("gpipe", 2, 4, 16, width=8, depth=4)
    trial = trial_of(spec, gpipe_order(2, 4))
    peaks = speed.replayed(trial).held_bytes()
    assert peaks == {0: 4 * 16 * 100, 1: 4 * 16 * 100}  # every micro-batch's bytes at once


# -- Part 1 and Part 6 ------------------------------------------------------------------------------------------


def _split_outcome(pieces):
    return {"value": [[x, y] for x, y in pieces]}


def test_split_check_accepts_tensor_split_and_names_torch_chunk():
    x, y = torch.arange(20.0).reshape(10, 2), -torch.arange(20.0).reshape(10, 2)
    good = list(zip(torch.tensor_split(x, 4), torch.tensor_split(y, 4)))
    assert part1.check_split(_split_outcome(good), x, y, 4, "split") is None
    chunked = list(zip(torch.chunk(x, 4), torch.chunk(y, 4)))
    assert "torch.chunk" in part1.check_split(_split_outcome(chunked), x, y, 4, "split")
    swapped = [(a, b) for (a, _), (_, b) in zip(good, good[1:] + good[:1])]
    assert "targets" in part1.check_split(_split_outcome(swapped), x, y, 4, "split")
    assert "ValueError" in part1.check_split({"raised": "ValueError", "message": "ValueError: no"}, x, y, 4, "split")


def _stages_data(widths, groups, seed=0, copy_layer=None):
    model = part1.judge_model(tuple(widths), seed)
    stages = []
    for group in groups:
        params = [p.detach().clone() + (1.0 if i == copy_layer else 0.0) for i in group for p in model[i].parameters()]
        stages.append({"type": "Sequential", "params": params, "devices": ["cpu"] * len(params)})
    return {"error": None, "stages": stages}


@pytest.mark.parametrize(
    "groups,words",
    [
        ([[0, 1], [2, 3], [4, 5, 6, 7]], None),
        ([[0, 1], [3], [4, 5, 6, 7]], "layer(s) [2] are in no stage"),
        ([[0, 1, 2], [2, 3], [4, 5, 6, 7]], "layer 2 is in more than one stage"),
        ([[0, 1], [4, 5, 6, 7], [2, 3]], "not contiguous and in order"),
        ([[0, 1], [2, 3]], "returned 2 stage(s); expected 3"),
    ],
)
def test_partition_cover_check(groups, words):
    widths = practical.PARTITION_MODELS["A"]
    message = part1.check_cover(_stages_data(widths, groups), widths, 3, 0, "partition(model A, 3)")
    assert message is None if words is None else words in message


def test_partition_cover_check_names_copied_layers():
    widths = practical.PARTITION_MODELS["A"]
    data = _stages_data(widths, [[0, 1], [2, 3], [4, 5, 6, 7]], copy_layer=2)
    assert "none of the model's (-1)" in part1.check_cover(data, widths, 3, 0, "partition")


def test_partition_balance_check_names_the_best_largest_stage():
    widths = practical.PARTITION_MODELS["A"]
    sizes = part1.layer_sizes(widths)
    best = part1.optimal_max_stage(sizes, 3)
    by_count = [[0, 1, 2], [3, 4, 5], [6, 7]]
    message = part1.check_balanced(by_count, widths, 3, "partition")
    assert message is not None and f"largest stage of {best}" in message and "even split by layer count" in message


def test_action_list_validity_check_marks_the_first_wrong_action():
    good = {0: ["0F0", "0B0"], 1: ["1F0", "1B0"]}
    assert lists.check_valid(good, "gpipe", 2, 1) is None
    bad = {0: ["0F0", "0B0"], 1: ["1B0", "1F0"]}
    message = lists.check_valid(bad, "gpipe", 2, 1)
    assert message is not None and ERROR_ROW in message


# -- trial data: what the judge accepts from a schedule call ---------------------------------------------------


def _probe_data(spec: TrialSpec):
    """Per-stage parameter names and values as ``run_trial`` sends them, and well-formed probe data."""
    from autograder.judge.host import TrialHost

    host = TrialHost(spec)
    names = {id(q): n for n, q in host.model.named_parameters()}
    stage_names = [[names[id(q)] for q in ps] for ps in host.executor.params]
    given = [[q.detach() for q in ps] for ps in host.executor.params]
    data = {
        "error": None,
        "returned": 1.25,
        "grads": [[torch.ones_like(v) for v in vs] for vs in given],
        "values": [[v.clone() for v in vs] for vs in given],
        "same_params": [True] * len(given),
    }
    return stage_names, given, data


def test_trial_accepts_well_formed_probe_data():
    from autograder.judge.trial import _check

    spec = make_spec("gpipe", 3, 4)
    stage_names, given, data = _probe_data(spec)
    trial = _check(spec, data, stage_names, given)
    assert trial.error is None and trial.returned == 1.25 and trial.changed == [] and not trial.replaced
    assert set(trial.grads) == {n for ns in stage_names for n in ns}
    assert all(g.dtype == torch.float64 for g in trial.grads.values())


def test_trial_notes_changed_values_replaced_parameters_and_cleans_the_error():
    from autograder.judge.trial import _check

    spec = make_spec("gpipe", 3, 4)
    stage_names, given, data = _probe_data(spec)
    data["values"][1][0] = data["values"][1][0] + 1
    data["same_params"][2] = False
    data["error"] = "ValueError: \x1b[31mbad\x1b[0m\nsecond line"
    trial = _check(spec, data, stage_names, given)
    assert trial.changed == [stage_names[1][0]] and trial.replaced
    assert trial.error == "ValueError: bad second line"


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda d: d.update(grads=d["grads"][:-1]),
        lambda d: d["grads"][0].append(None),
        lambda d: d["grads"][0].__setitem__(0, torch.zeros(3)),
        lambda d: d["grads"][0].__setitem__(0, "not a tensor"),
        lambda d: d["values"][1].__setitem__(0, None),
        lambda d: d.update(same_params="yes"),
        lambda d: d.update(error=42),
        lambda d: d.pop("values"),
    ],
    ids=["stages", "params", "grad shape", "grad type", "value", "same_params", "error", "no values"],
)
def test_trial_refuses_malformed_probe_data(corrupt):
    from autograder.judge.sandbox import BadData
    from autograder.judge.trial import _check

    spec = make_spec("gpipe", 3, 4)
    stage_names, given, data = _probe_data(spec)
    corrupt(data)
    with pytest.raises(BadData, match="malformed"):
        _check(spec, data, stage_names, given)


def test_reference_is_deterministic_and_sized_by_the_spec():
    spec = make_spec("naive", 3, 4, batch=10)
    assert spec.sizes == [3, 3, 2, 2]
    ref = reference(spec)
    again = reference.__wrapped__(spec)
    assert ref.loss == again.loss and len(ref.per_mb) == 4
    for name in ref.expected:
        assert torch.equal(ref.expected[name], again.expected[name])
        assert torch.equal(ref.sentinel[name], again.sentinel[name])
    assert set(ref.stage_of) == set(ref.expected)

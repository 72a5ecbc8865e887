"""Known-buggy submissions, made from the reference by one textual change each.

Each bug names the file it changes, the exact reference text it replaces (the test fails loudly if
the reference changes so the bug no longer applies), and what grading must say: for every test
whose name contains a key, the failure output must contain the value (or one of the values, for a
tuple); every other test must pass. ``select`` (a pytest ``-k`` expression) limits grading to the
tests a bug can affect, to keep the suite fast.
"""
from __future__ import annotations

from pathlib import Path

from tests.conftest import ROOT

BUGS = {
    "unscaled_loss": dict(
        file="microbatch.py",
        old="return loss_fn(outputs, targets) * (outputs.shape[0] / batch_size)",
        new="return loss_fn(outputs, targets)",
        fails={
            "micro-batch losses add up": "multiply each micro-batch's mean loss by rows / batch_size",
            "gradients equal the single-device": "weight 1, so gradients are about",
            "gradients are right with one stage": "gradients are about 5x too large",
            "returns the full-batch mean loss": "about m times too large",
        },
        passes_with=["[sizes3]", "p1-m1"],  # m = 1: nothing to scale
        select="not part6",
    ),
    "gpipe_backward_per_microbatch": dict(
        file="schedules.py",
        old="""    losses = [microbatch_loss(loss_fn, forward_through(stages, x), y.to(last), batch_size)
              for x, y in split_microbatches(inputs, targets, num_microbatches)]
    for loss in losses:
        loss.backward()""",
        new="""    losses = []
    for x, y in split_microbatches(inputs, targets, num_microbatches):
        losses.append(microbatch_loss(loss_fn, forward_through(stages, x), y.to(last), batch_size))
        losses[-1].backward()""",
        fails={
            "Option B: GPipe: forwards and backwards run in the schedule's order": "every forward on a stage comes before any backward",
            "Option B: GPipe: on p in-order devices": "1.00x faster than the naive pipeline",
            "Option B: GPipe: peak micro-batches": "keeps exactly",
        },
        passes_with=["p1-m1"],
        select="gpipe and not part6",
    ),
    "delayed_without_final_backward": dict(
        file="schedules.py",
        old="    backward_of(len(microbatches) - 1)\n",
        new="",
        fails={
            "Option C: delayed backward: accumulated gradients": "never ran backward",
            "Option C: delayed backward: gradients are right": ("never ran backward", "No gradient reached any"),
            "Option C: delayed backward: returns": "full-batch mean loss is",
            "Option C: delayed backward: forwards and backwards": "never ran backward on stage",
            "Option C: delayed backward: on p in-order": "never ran backward on stage",
            "Option C: delayed backward: peak": "never ran backward on stage",
        },
        select="delayed and not part6",
    ),
    "delayed_without_guard": dict(
        file="schedules.py",
        old="        if i > 0:\n            backward_of(i - 1)",
        new="        backward_of(i - 1)",
        fails={"Option C: delayed backward:": "submission/schedules.py"},
        select="delayed and not part6",
    ),
    "naive_skips_a_microbatch": dict(
        file="schedules.py",
        old="    for x, y in split_microbatches(inputs, targets, num_microbatches):\n        loss = microbatch_loss",
        new="    for x, y in split_microbatches(inputs, targets, num_microbatches)[1:]:\n        loss = microbatch_loss",
        fails={
            "Option A: naive: accumulated gradients": "micro-batch 0 never ran backward",
            "Option A: naive: gradients are right": ("micro-batch 0 never ran backward", "No gradient reached any"),
            "Option A: naive: returns": "full-batch mean loss is",
            "Option A: naive: forwards and backwards": "micro-batch 0 never ran forward",
        },
        select="naive and not part6",
    ),
    "one_f_one_b_without_warmup": dict(
        file="per_stage.py",
        old="    warmup = min(num_stages - stage - 1, num_microbatches)\n",
        new="    warmup = 0\n",
        # Every stage runs F0 B0 F1 B1 ...: valid, correct gradients, little memory, but the naive
        # pipeline's timeline (each stage waits for the whole pipeline after every forward).
        fails={
            "the lists take (m + p - 1)(F + B), also when m < p [1f1b]":
                "Each stage s must start with min(p - s - 1, m) forwards",
            "one process per stage beats the naive pipeline (1.7x at p=4, 1.25x at p=2) [1f1b":
                "x is expected (ideal",
        },
    ),
    "one_f_one_b_warmup_reversed": dict(
        file="per_stage.py",
        old="    warmup = min(num_stages - stage - 1, num_microbatches)\n",
        new="    warmup = min(stage, num_microbatches)\n",
        # Stage 0 runs F0 B0 while stage 1 runs F0 F1 B0: each waits for the other. The judge's
        # validator finds the deadlock before anything runs; the runtime never sees the lists.
        fails={"Part 6 Per-stage schedules: ": "deadlock: rank 0 is stuck at 0B0 waiting for 1B0"},
        passes_with=["[gpipe"],
    ),
    "gpipe_zeroes_gradients": dict(
        file="schedules.py",
        old="""    ### BEGIN SOLUTION part2.gpipe_step: first the forward of every micro-batch (keep their losses), then the backward of every micro-batch
    batch_size = inputs.shape[0]""",
        new="""    ### BEGIN SOLUTION part2.gpipe_step: first the forward of every micro-batch (keep their losses), then the backward of every micro-batch
    for stage in stages:
        stage.zero_grad()
    batch_size = inputs.shape[0]""",
        fails={"Option B: GPipe: accumulated gradients": "your code zeroed them",
               "Option B: GPipe: gradients are right": "your code zeroed them"},
        select="gpipe and not part6",
    ),
    "naive_steps_the_weights": dict(
        file="schedules.py",
        old="""        total += loss.detach()
    return total.item()
    ### END SOLUTION


def gpipe_step""",
        new="""        total += loss.detach()
    torch.optim.SGD([p for stage in stages for p in stage.parameters()], lr=0.1).step()
    return total.item()
    ### END SOLUTION


def gpipe_step""",
        fails={"Option A: naive: accumulated gradients": "parameter values changed during the step",
               "Option A: naive: gradients are right": "parameter values changed during the step"},
        select="naive and not part6",
    ),
    "activations_detached_between_stages": dict(
        file="schedules.py",
        old="        x = stage(x.to(stage_device(stage)))\n",
        new="        x = stage(x.to(stage_device(stage)).detach())\n",
        fails={
            "accumulated gradients": "received no gradient while later stages did",
            "gradients are right with one stage": "received no gradient while later stages did",
            "forwards and backwards run": "never ran backward on stage",
            "on p in-order devices": "never ran backward on stage",
            "peak micro-batches": "never ran backward on stage",
        },
        passes_with=["p1-m1"],  # one stage: nothing to detach
        select="not part6 and not Partition and not microbatch",
    ),
    "delayed_backward_runs_twice": dict(
        file="schedules.py",
        old="""        loss.backward()
        total += loss.detach()
        forward_outputs[k] = None""",
        new="""        loss.backward(retain_graph=True)
        loss.backward()
        total += loss.detach()
        forward_outputs[k] = None""",
        fails={
            "Option C: delayed backward: accumulated gradients": "backward ran twice",
            "Option C: delayed backward: gradients are right": "backward ran twice",
            "Option C: delayed backward: forwards and backwards": "ran twice on stage",
            "Option C: delayed backward: on p in-order": "ran twice on stage",
            "Option C: delayed backward: peak": "ran twice on stage",
        },
        select="delayed and not part6",
    ),
}


def make_submission(name: str, dest: Path) -> Path:
    """Write the submission ``name`` of BUGS or VARIANTS (all editable files, one changed) into ``dest``."""
    bug = BUGS[name] if name in BUGS else VARIANTS[name]
    dest.mkdir(parents=True, exist_ok=True)
    for path in (ROOT / "solutions").glob("*.py"):
        text = path.read_text()
        if path.name == bug["file"]:
            assert bug["old"] in text, f"bug {name} no longer applies to solutions/{path.name}"
            text = text.replace(bug["old"], bug["new"])
        (dest / path.name).write_text(text)
    return dest


# Correct code written differently: must score full marks on the tests it touches.
VARIANTS = {
    "absolute_imports": dict(  # what IDEs write; the grader renames the package, so it must alias it
        file="schedules.py",
        old="from .devices import stage_device\nfrom .microbatch import microbatch_loss, split_microbatches\n",
        new="from assignment.devices import stage_device\nfrom assignment.microbatch import microbatch_loss, "
            "split_microbatches\n",
    ),
}

"""Known-buggy submissions: one realistic student mistake per rule of ``autograder.rules.RULES``.

``BUGS[rule.id]`` is the reference with exactly one mistake that breaks that rule (and, as far as
one mistake can, nothing outside the rule's own part). ``tests/e2e/test_rules.py`` grades each one
and checks that the rule's test fails with the rule's message (``python -m autograder.rules`` prints
the table).
"""

from __future__ import annotations

from tests.support.submissions import Submission

PARTITION, MICROBATCH, SCHEDULES, PER_STAGE = "partition.py", "microbatch.py", "schedules.py", "per_stage.py"

# The reference's bodies, as the replacements below quote them.
_NAIVE_LOOP = """\
    for x, y in split_microbatches(inputs, targets, num_microbatches):
        loss = microbatch_loss(loss_fn, forward_through(stages, x), y.to(last), batch_size)
        loss.backward()
        total += loss.detach()
    return total.item()
    ### END SOLUTION


def gpipe_step"""
_GPIPE_BODY = """\
    losses = [
        microbatch_loss(loss_fn, forward_through(stages, x), y.to(last), batch_size)
        for x, y in split_microbatches(inputs, targets, num_microbatches)
    ]
    for loss in losses:
        loss.backward()
    return torch.stack([loss.detach() for loss in losses]).sum().item()
"""
_EVEN_BY_COUNT = """\
    base, extra = divmod(len(layers), num_stages)
    bounds, start = [], 0
    for s in range(num_stages):
        end = start + base + (1 if s < extra else 0)
        bounds.append((start, end))
        start = end
"""
_GREEDY_FILL = """\
    best = max(sum(sizes[a:b]) for a, b in _balanced_bounds(sizes, num_stages))
    bounds, start, total = [], 0, 0
    for i, size in enumerate(sizes):
        if i > start and total + size > best:
            bounds.append((start, i))
            start, total = i, 0
        total += size
    bounds.append((start, len(sizes)))
    bounds += [(len(sizes), len(sizes))] * (num_stages - len(bounds))
"""
_ONE_F_ONE_B_TAIL = '    actions = [Action(stage, "F", k) for k in range(warmup)]\n    oldest = 0'
_ONE_F_ONE_B_WARMUP = "    warmup = min(num_stages - stage - 1, num_microbatches)\n" + _ONE_F_ONE_B_TAIL


def _warmup(expression: str) -> dict[str, list[tuple[str, str]]]:
    """Replace 1F1B's warm-up count (in one_f_one_b_actions only) with ``expression``."""
    return {PER_STAGE: [(_ONE_F_ONE_B_WARMUP, f"    warmup = {expression}\n" + _ONE_F_ONE_B_TAIL)]}


def _naive_loop(body: str) -> list[tuple[str, str]]:
    """Replace the naive loop (and its return) with ``body`` (indented as the function body)."""
    return [(_NAIVE_LOOP, body + "    ### END SOLUTION\n\n\ndef gpipe_step")]


BUGS: dict[str, Submission] = {
    # Part 1: partition ----------------------------------------------------------------------------
    # Inclusive/exclusive confusion: the cuts are traced back from layer n - 1, so the last layer is dropped.
    "partition-cover": Submission(replace={PARTITION: [("bounds, end = [], n\n", "bounds, end = [], n - 1\n")]}),
    # Finds the best largest-stage size, then fills stages greedily up to it: when fewer stages reach
    # it than asked for (p near the number of layers), the last stages are left empty.
    "partition-non-empty": Submission(
        replace={PARTITION: [("    bounds = _balanced_bounds(sizes, num_stages)\n", _GREEDY_FILL)]}
    ),
    # Returns each stage as a plain Python list of layers instead of wrapping it in nn.Sequential.
    "partition-sequential": Submission(
        replace={
            PARTITION: [
                (
                    "return [nn.Sequential(*layers[a:b]).to(dev) for (a, b), dev in zip(bounds, devices)]",
                    "return [[layer.to(dev) for layer in layers[a:b]] for (a, b), dev in zip(bounds, devices)]",
                )
            ]
        }
    ),
    # Splits by layer count (an even split), ignoring that the layers have different sizes.
    "partition-balance": Submission(
        replace={PARTITION: [("    bounds = _balanced_bounds(sizes, num_stages)\n", _EVEN_BY_COUNT)]}
    ),
    # Forgets .to(device): every stage stays where the model was.
    "partition-device": Submission(
        replace={PARTITION: [("nn.Sequential(*layers[a:b]).to(dev)", "nn.Sequential(*layers[a:b])")]}
    ),
    # Deep-copies each stage's layers ("so the stages are independent"): gradients never reach the model.
    "partition-no-copies": Submission(
        replace={
            PARTITION: [
                ("import torch\n", "import copy\n\nimport torch\n"),
                ("nn.Sequential(*layers[a:b]).to(dev)", "nn.Sequential(*copy.deepcopy(layers[a:b])).to(dev)"),
            ]
        }
    ),
    # Checks num_stages < 1 but forgets the upper bound (more stages than layers).
    "partition-bad-stages": Submission(
        replace={
            PARTITION: [
                (
                    "    if num_stages > len(layers):\n"
                    '        raise ValueError(f"cannot split {len(layers)} layers into {num_stages} non-empty stages")\n',
                    "",
                )
            ]
        }
    ),
    # Never checks len(devices): zip() silently drops stages or devices.
    "partition-bad-devices": Submission(
        replace={
            PARTITION: [
                (
                    "    if len(devices) != num_stages:\n"
                    '        raise ValueError(f"need one device per stage: {num_stages} stages, {len(devices)} devices")\n',
                    "",
                )
            ]
        }
    ),
    # Part 1: micro-batches ------------------------------------------------------------------------
    # Uses torch.chunk (sizes 3, 3, 3, 1; fewer pieces for 6 rows in 4) instead of torch.tensor_split.
    "split-sizes": Submission(
        replace={
            MICROBATCH: [
                (
                    "torch.tensor_split(inputs, num_microbatches), torch.tensor_split(targets, num_microbatches)",
                    "torch.chunk(inputs, num_microbatches), torch.chunk(targets, num_microbatches)",
                )
            ]
        }
    ),
    # Deals rows out round-robin (inputs[k::m]): the right sizes and pairs, but rows out of order.
    "split-order": Submission(
        replace={
            MICROBATCH: [
                (
                    "    return list(zip(torch.tensor_split(inputs, num_microbatches), "
                    "torch.tensor_split(targets, num_microbatches)))\n",
                    "    m = num_microbatches\n    return [(inputs[k::m], targets[k::m]) for k in range(m)]\n",
                )
            ]
        }
    ),
    # Copy-paste slip: splits the inputs twice, so each micro-batch's "targets" are its own inputs.
    "split-pairs": Submission(
        replace={
            MICROBATCH: [
                ("torch.tensor_split(targets, num_microbatches)))", "torch.tensor_split(inputs, num_microbatches)))")
            ]
        }
    ),
    # Never checks that inputs and targets have the same number of rows.
    "split-bad-arguments": Submission(
        replace={
            MICROBATCH: [
                (
                    "    if inputs.shape[0] != targets.shape[0]:\n"
                    '        raise ValueError(f"inputs have {inputs.shape[0]} rows but targets have {targets.shape[0]}")\n',
                    "",
                )
            ]
        }
    ),
    # Returns the micro-batch's plain mean loss, unweighted by rows / batch_size.
    "loss-weight": Submission(
        replace={
            MICROBATCH: [
                (
                    "return loss_fn(outputs, targets) * (outputs.shape[0] / batch_size)",
                    "return loss_fn(outputs, targets)",
                )
            ]
        }
    ),
    # Turns the loss into a number and back into a tensor: the value is right, the graph is gone.
    "loss-graph": Submission(
        replace={
            MICROBATCH: [
                (
                    "return loss_fn(outputs, targets) * (outputs.shape[0] / batch_size)",
                    "return torch.tensor(loss_fn(outputs, targets).item() * outputs.shape[0] / batch_size)",
                )
            ]
        }
    ),
    # Options A, B, C: gradients and loss -----------------------------------------------------------
    # Calls zero_grad() at the start of gpipe_step, as a training loop would: the earlier gradients are lost.
    "accumulate": Submission(
        replace={SCHEDULES: [(_GPIPE_BODY, "    for stage in stages:\n        stage.zero_grad()\n" + _GPIPE_BODY)]}
    ),
    # Steps an SGD optimizer at the end of naive_step ("a training step").
    "no-step": Submission(
        replace={
            SCHEDULES: _naive_loop("""\
    for x, y in split_microbatches(inputs, targets, num_microbatches):
        loss = microbatch_loss(loss_fn, forward_through(stages, x), y.to(last), batch_size)
        loss.backward()
        total += loss.detach()
    torch.optim.SGD([p for stage in stages for p in stage.parameters()], lr=0.01).step()
    return total.item()
""")
        }
    ),
    # The delayed loop backpropagates each micro-batch's unscaled mean loss (loss_fn instead of microbatch_loss).
    "weights": Submission(
        replace={
            SCHEDULES: [
                (
                    "        loss = microbatch_loss(loss_fn, forward_outputs[k], microbatches[k][1].to(last), batch_size)\n",
                    "        loss = loss_fn(forward_outputs[k], microbatches[k][1].to(last))\n",
                )
            ]
        }
    ),
    # Off by one: the naive loop stops one micro-batch early (range(num_microbatches - 1)).
    "every-microbatch": Submission(
        replace={
            SCHEDULES: _naive_loop("""\
    microbatches = split_microbatches(inputs, targets, num_microbatches)
    for k in range(num_microbatches - 1):
        x, y = microbatches[k]
        loss = microbatch_loss(loss_fn, forward_through(stages, x), y.to(last), batch_size)
        loss.backward()
        total += loss.detach()
    return total.item()
""")
        }
    ),
    # GPipe returns the summed loss tensor, forgetting .item().
    "return-float": Submission(
        replace={
            SCHEDULES: [
                (
                    "    return torch.stack([loss.detach() for loss in losses]).sum().item()\n",
                    "    return torch.stack([loss.detach() for loss in losses]).sum()\n",
                )
            ]
        }
    ),
    # The delayed loop "averages" the already-weighted micro-batch losses: m times too small.
    "return-loss-value": Submission(
        replace={
            SCHEDULES: [
                (
                    "    backward_of(len(microbatches) - 1)\n    return total.item()\n",
                    "    backward_of(len(microbatches) - 1)\n    return total.item() / num_microbatches\n",
                )
            ]
        }
    ),
    # Options A, B, C: order and speed --------------------------------------------------------------
    # "Naive" written as forward-all-then-backward-all (it is GPipe): several micro-batches in the pipeline.
    "naive-order": Submission(
        replace={
            SCHEDULES: _naive_loop("""\
    losses = [
        microbatch_loss(loss_fn, forward_through(stages, x), y.to(last), batch_size)
        for x, y in split_microbatches(inputs, targets, num_microbatches)
    ]
    for loss in losses:
        loss.backward()
        total += loss.detach()
    return total.item()
""")
        }
    ),
    # GPipe that runs each micro-batch's backward right after its forward.
    "gpipe-order": Submission(
        replace={
            SCHEDULES: [
                (
                    _GPIPE_BODY,
                    """\
    losses = []
    for x, y in split_microbatches(inputs, targets, num_microbatches):
        loss = microbatch_loss(loss_fn, forward_through(stages, x), y.to(last), batch_size)
        loss.backward()
        losses.append(loss)
    return torch.stack([loss.detach() for loss in losses]).sum().item()
""",
                )
            ]
        }
    ),
    # The delayed loop without the delay: backward of micro-batch i right after its forward (no `i > 0`).
    "delayed-order": Submission(
        replace={
            SCHEDULES: [
                (
                    "        if i > 0:\n            backward_of(i - 1)\n    backward_of(len(microbatches) - 1)\n",
                    "        backward_of(i)\n",
                )
            ]
        }
    ),
    # GPipe adds up the loss with .item() inside its backward loop (a host sync per micro-batch).
    "no-sync-in-loop": Submission(
        replace={
            SCHEDULES: [
                (
                    "    for loss in losses:\n        loss.backward()\n"
                    "    return torch.stack([loss.detach() for loss in losses]).sum().item()\n",
                    "    total = 0.0\n    for loss in losses:\n        loss.backward()\n        total += loss.item()\n"
                    "    return total\n",
                )
            ]
        }
    ),
    # Part 6: per-stage lists -----------------------------------------------------------------------
    # 1F1B warm-up counted from the wrong end (stage s warms up s forwards): stage 0 waits for B0 forever.
    "lists-valid": Submission(replace=_warmup("min(stage, num_microbatches)")),
    # 1F1B without the warm-up phase: F0 B0 F1 B1 ... on every stage (the naive order, valid but slow).
    "lists-step-time": Submission(replace=_warmup("0")),
    # 1F1B warm-up of p - s forwards (forgets the -1): one micro-batch more in flight than needed.
    "lists-memory": Submission(replace=_warmup("min(num_stages - stage, num_microbatches)")),
}

"""Correct submissions written in other styles than the reference: each must score full marks.

``CORRECT[name]`` is the reference with whole task bodies rewritten the way other students write
them (``tests/e2e/test_variants.py`` grades each, hidden tests included). A submission bundles
several styles, one per task, so one grading covers them; ``STYLES[name]`` says which task holds
which style. The grader must not care how the autograd API is called, how the data is sliced, or
what global torch settings a step function touches, only what the contract asks for.
"""

from __future__ import annotations

import re

from tests.support.submissions import ROOT, Submission

PARTITION, MICROBATCH, SCHEDULES, PER_STAGE = "partition.py", "microbatch.py", "schedules.py", "per_stage.py"


def _body(file: str, task: str) -> str:
    """The reference's body of ``task`` in ``file``: the lines between its BEGIN and END markers."""
    text = (ROOT / "solutions" / file).read_text()
    found = re.search(rf"### BEGIN SOLUTION {re.escape(task)}:[^\n]*\n(.*?)    ### END SOLUTION", text, re.S)
    assert found, f"no solution block {task} in solutions/{file}"
    return found.group(1)


def body(file: str, task: str, new: str) -> tuple[str, str]:
    """A ``replace`` pair that swaps the reference body of ``task`` for ``new``."""
    return _body(file, task), new


def imports(file_text_anchor: str, extra: str) -> tuple[str, str]:
    """A ``replace`` pair that adds import lines after ``file_text_anchor`` (a line of the file)."""
    return file_text_anchor, file_text_anchor + extra


# -- Part 1 -----------------------------------------------------------------------------------------

# Binary search on the largest stage's size, with a greedy packing as the feasibility test; the
# cuts leave at least one layer for every later stage, so exactly num_stages non-empty stages.
PARTITION_BINARY_SEARCH = """\
    layers = list(model.children())
    n = len(layers)
    if num_stages < 1 or num_stages > n:
        raise ValueError(f"num_stages must be between 1 and the number of layers ({n}), got {num_stages}")
    if len(devices) != num_stages:
        raise ValueError(f"expected {num_stages} devices, got {len(devices)}")
    sizes = [sum(p.numel() for p in layer.parameters()) for layer in layers]

    def stages_needed(cap):
        count, current = 1, 0
        for size in sizes:
            if current + size > cap:
                count, current = count + 1, 0
            current += size
        return count

    lo, hi = max(sizes), sum(sizes)
    while lo < hi:
        mid = (lo + hi) // 2
        if stages_needed(mid) <= num_stages:
            hi = mid
        else:
            lo = mid + 1
    groups, current, total = [], [], 0
    for i, (layer, size) in enumerate(zip(layers, sizes)):
        stages_left = num_stages - len(groups)  # counting the one being filled
        if current and (total + size > lo or n - i < stages_left):
            groups.append(current)
            current, total = [], 0
        current.append(layer)
        total += size
    groups.append(current)
    stages = []
    for group, device in zip(groups, devices):
        stages.append(nn.Sequential(*group).to(device))
    return stages
"""

# Explicit slicing with a generator of (start, stop) row ranges.
SPLIT_SLICING = """\
    rows = len(inputs)
    if num_microbatches <= 0:
        raise ValueError("num_microbatches must be positive")
    if rows != len(targets):
        raise ValueError(f"{rows} inputs but {len(targets)} targets")
    if num_microbatches > rows:
        raise ValueError(f"cannot make {num_microbatches} non-empty micro-batches out of {rows} rows")
    base, extra = divmod(rows, num_microbatches)

    def bounds():
        start = 0
        for k in range(num_microbatches):
            stop = start + base + (1 if k < extra else 0)
            yield start, stop
            start = stop

    return [(inputs[a:b], targets[a:b]) for a, b in bounds()]
"""

LOSS_DIVIDE = """\
    rows = outputs.size(0)
    return loss_fn(outputs, targets) * rows / batch_size
"""

# -- Options A, B, C: autograd.grad with manual accumulation, sum of losses, a deque -----------------

NAIVE_AUTOGRAD_GRAD = """\
    params = [p for stage in stages for p in stage.parameters()]
    last = stage_device(stages[-1])
    losses = []
    for x, y in split_microbatches(inputs, targets, num_microbatches):
        out = forward_through(stages, x)
        loss = microbatch_loss(loss_fn, out, y.to(last), inputs.shape[0])
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        with torch.no_grad():
            for p, g in zip(params, grads):
                if g is None:
                    continue
                if p.grad is None:
                    p.grad = g.clone()
                else:
                    p.grad += g
        losses.append(loss.detach())
    return float(sum(losses))
"""

GPIPE_SUM_ONCE = """\
    last = stage_device(stages[-1])
    losses = []
    for x, y in split_microbatches(inputs, targets, num_microbatches):
        losses.append(microbatch_loss(loss_fn, forward_through(stages, x), y.to(last), len(inputs)))
    total = sum(losses)
    total.backward()
    return total.item()
"""

DELAYED_DEQUE = """\
    last = stage_device(stages[-1])
    waiting = deque()  # (output, targets) of micro-batches whose backward has not run yet

    def finish_oldest():
        out, y = waiting.popleft()
        loss = microbatch_loss(loss_fn, out, y.to(last), inputs.shape[0])
        loss.backward()
        return loss.detach()

    losses = []
    for x, y in split_microbatches(inputs, targets, num_microbatches):
        waiting.append((forward_through(stages, x), y))
        if len(waiting) == 2:
            losses.append(finish_oldest())
    while waiting:
        losses.append(finish_oldest())
    return torch.stack(losses).sum().item()
"""

# -- Part 6: lists of strings ------------------------------------------------------------------------

GPIPE_STRINGS = """\
    return [f"{stage}F{k}" for k in range(num_microbatches)] + [f"{stage}B{k}" for k in range(num_microbatches)]
"""

ONE_F_ONE_B_STRINGS = """\
    m = num_microbatches
    warmup = min(num_stages - stage - 1, m)
    todo_f, todo_b = list(range(m)), list(range(m))
    out = [f"{stage}F{todo_f.pop(0)}" for _ in range(warmup)]
    while todo_f:
        out.append(f"{stage}F{todo_f.pop(0)}")
        out.append(f"{stage}B{todo_b.pop(0)}")
    out.extend(f"{stage}B{k}" for k in todo_b)
    return out
"""

# -- Options A, B, C: per-stage backward with detached stage inputs ------------------------------------

PER_STAGE_HELPERS = '''

def _forward_detached(stages, x):
    """Forward through every stage, each stage's input detached (a leaf), as real pipelines do.
    Returns the stage inputs and outputs."""
    ins, outs = [], []
    for s, stage in enumerate(stages):
        x = x.to(stage_device(stage)).detach()
        if s > 0:
            x.requires_grad_(True)
        ins.append(x)
        x = stage(x)
        outs.append(x)
    return ins, outs


def _backward_detached(ins, outs, loss):
    """Backward stage by stage: the loss into the last stage, then each stage's output gradient."""
    torch.autograd.backward(loss)
    for s in range(len(outs) - 2, -1, -1):
        grad = ins[s + 1].grad.to(outs[s].device)
        torch.autograd.backward([outs[s]], grad_tensors=[grad])
'''

NAIVE_PER_STAGE = """\
    last = stage_device(stages[-1])
    losses = []
    for x, y in split_microbatches(inputs, targets, num_microbatches):
        ins, outs = _forward_detached(stages, x)
        loss = microbatch_loss(loss_fn, outs[-1], y.to(last), inputs.shape[0])
        _backward_detached(ins, outs, loss)
        losses.append(loss.detach())
    return torch.stack(losses).sum().item()
"""

GPIPE_PER_STAGE_REVERSED = """\
    last = stage_device(stages[-1])
    runs = []
    for x, y in split_microbatches(inputs, targets, num_microbatches):
        ins, outs = _forward_detached(stages, x)
        runs.append((ins, outs, microbatch_loss(loss_fn, outs[-1], y.to(last), inputs.shape[0])))
    for ins, outs, loss in reversed(runs):  # the backward phase, last micro-batch first
        _backward_detached(ins, outs, loss)
    return sum(loss.detach() for _, _, loss in runs).item()
"""

# torch.autograd.grad per stage, with respect to the stage's input and its parameters, added to .grad by hand.
DELAYED_PER_STAGE_GRAD = """\
    last = stage_device(stages[-1])
    microbatches = split_microbatches(inputs, targets, num_microbatches)
    runs = {}
    losses = []

    def backward(k):
        ins, outs = runs.pop(k)
        loss = microbatch_loss(loss_fn, outs[-1], microbatches[k][1].to(last), inputs.shape[0])
        losses.append(loss.detach())
        grad_out = None
        for s in range(len(stages) - 1, -1, -1):
            params = list(stages[s].parameters())
            wrt = ([ins[s]] if s > 0 else []) + params
            if grad_out is None:
                grads = torch.autograd.grad(loss, wrt)
            else:
                grads = torch.autograd.grad(outs[s], wrt, grad_outputs=grad_out)
            if s > 0:
                grad_out, grads = grads[0].to(outs[s - 1].device), grads[1:]
            for p, g in zip(params, grads):
                if p.grad is None:
                    p.grad = g.detach().clone()
                else:
                    p.grad.add_(g)

    for i, (x, _) in enumerate(microbatches):
        runs[i] = _forward_detached(stages, x)
        if i > 0:
            backward(i - 1)
    backward(num_microbatches - 1)
    return sum(l.item() for l in losses)
"""

# -- Options A, B, C: activation checkpointing ---------------------------------------------------------

NAIVE_CHECKPOINT = """\
    last = stage_device(stages[-1])
    total = torch.zeros((), device=last)
    for x, y in split_microbatches(inputs, targets, num_microbatches):
        for stage in stages:
            x = checkpoint(stage, x.to(stage_device(stage)), use_reentrant=False)
        loss = microbatch_loss(loss_fn, x, y.to(last), inputs.shape[0])
        loss.backward()
        total += loss.detach()
    return total.item()
"""

CHECKPOINTED_FORWARD = '''

def _checkpointed(stages, x, reentrant):
    """Forward through every stage under activation checkpointing (activations recomputed in backward)."""
    for stage in stages:
        x = x.to(stage_device(stage))
        if reentrant and not x.requires_grad:
            x = x.detach().requires_grad_(True)  # reentrant checkpointing needs an input that requires grad
        x = checkpoint(stage, x, use_reentrant=reentrant)
    return x
'''

GPIPE_CHECKPOINT_REENTRANT = """\
    last = stage_device(stages[-1])
    losses = [microbatch_loss(loss_fn, _checkpointed(stages, x, True), y.to(last), inputs.shape[0])
              for x, y in split_microbatches(inputs, targets, num_microbatches)]
    for loss in losses:
        loss.backward()
    return torch.stack(losses).detach().sum().item()
"""

DELAYED_CHECKPOINT_REENTRANT = """\
    last = stage_device(stages[-1])
    microbatches = split_microbatches(inputs, targets, num_microbatches)
    outputs = [None] * len(microbatches)
    total = torch.zeros((), device=last)
    for i, (x, _) in enumerate(microbatches):
        outputs[i] = _checkpointed(stages, x, True)
        if i > 0:
            loss = microbatch_loss(loss_fn, outputs[i - 1], microbatches[i - 1][1].to(last), inputs.shape[0])
            loss.backward()
            total += loss.detach()
            outputs[i - 1] = None
    loss = microbatch_loss(loss_fn, outputs[-1], microbatches[-1][1].to(last), inputs.shape[0])
    loss.backward()
    total += loss.detach()
    return total.item()
"""

# -- Options A, B, C: backward(inputs=...), retain_graph, global torch settings -----------------------

SETTINGS = """\
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
"""

NAIVE_BACKWARD_INPUTS = (
    SETTINGS
    + """\
    params = [p for stage in stages for p in stage.parameters()]
    last = stage_device(stages[-1])
    total = torch.tensor(0.0)
    for x, y in split_microbatches(inputs, targets, num_microbatches):
        loss = microbatch_loss(loss_fn, forward_through(stages, x), y.to(last), inputs.shape[0])
        loss.backward(inputs=params)
        total = total + loss.detach().cpu()
    return total.item()
"""
)

GPIPE_RETAIN_GRAPH = (
    SETTINGS
    + """\
    last = stage_device(stages[-1])
    losses = []
    for x, y in split_microbatches(inputs, targets, num_microbatches):
        losses.append(microbatch_loss(loss_fn, forward_through(stages, x), y.to(last), inputs.shape[0]))
    for loss in losses:
        loss.backward(retain_graph=True)
    return float(torch.stack(losses).sum())
"""
)

DELAYED_AUTOGRAD_BACKWARD = (
    SETTINGS
    + """\
    last = stage_device(stages[-1])
    microbatches = split_microbatches(inputs, targets, num_microbatches)
    previous = None
    total = 0
    for x, y in microbatches:
        out = forward_through(stages, x)
        if previous is not None:
            prev_out, prev_y = previous
            loss = microbatch_loss(loss_fn, prev_out, prev_y.to(last), inputs.shape[0])
            torch.autograd.backward([loss], grad_tensors=[torch.ones_like(loss)])
            total = total + loss.detach()
        previous = (out, y)
    loss = microbatch_loss(loss_fn, previous[0], previous[1].to(last), inputs.shape[0])
    torch.autograd.backward(loss)
    total = total + loss.detach()
    return total.item()
"""
)

# -- Part 1 again: recursion with a cache, torch.split with sizes, tuples ------------------------------

# Recursive minimax with functools.lru_cache; the stages are slices of the model (model[a:b]).
PARTITION_RECURSIVE = """\
    n = len(model)
    if not 1 <= num_stages <= n:
        raise ValueError(f"need 1 <= num_stages <= {n} (the number of layers), got {num_stages}")
    if len(devices) != num_stages:
        raise ValueError(f"got {len(devices)} devices for {num_stages} stages")
    sizes = [sum(p.numel() for p in model[i].parameters()) for i in range(n)]

    @functools.lru_cache(maxsize=None)
    def best(start, stages):
        \"\"\"(largest stage, end of the first stage) for layers start.. in ``stages`` stages.\"\"\"
        if stages == 1:
            return sum(sizes[start:]), n
        options = []
        for end in range(start + 1, n - stages + 2):
            rest, _ = best(end, stages - 1)
            options.append((max(sum(sizes[start:end]), rest), end))
        return min(options)

    result, start = [], 0
    for s in range(num_stages, 0, -1):
        _, end = best(start, s)
        result.append(model[start:end].to(devices[len(result)]))
        start = end
    return result
"""

SPLIT_TORCH_SPLIT = """\
    n = inputs.size(0)
    if not isinstance(num_microbatches, int) or num_microbatches < 1:
        raise ValueError(f"num_microbatches must be a positive int, got {num_microbatches!r}")
    if targets.size(0) != n:
        raise ValueError("inputs and targets must have the same number of rows")
    if num_microbatches > n:
        raise ValueError(f"{num_microbatches} micro-batches but only {n} rows")
    sizes = [n // num_microbatches + (k < n % num_microbatches) for k in range(num_microbatches)]
    return list(zip(inputs.split(sizes), targets.split(sizes)))
"""

LOSS_LEN = """\
    return loss_fn(outputs, targets) * (len(outputs) / batch_size)
"""

GPIPE_TUPLES = """\
    return [(stage, "F", k) for k in range(num_microbatches)] + [(stage, "B", k) for k in range(num_microbatches)]
"""

ONE_F_ONE_B_TUPLES = """\
    warmup = min(num_stages - 1 - stage, num_microbatches)
    order = [(stage, "F", k) for k in range(warmup)]
    forwards, backwards = iter(range(warmup, num_microbatches)), iter(range(num_microbatches))
    for k in forwards:
        order += [(stage, "F", k), (stage, "B", next(backwards))]
    return order + [(stage, "B", k) for k in backwards]
"""

# -- Options A, B, C: stage-major loops, one backward call for many losses -----------------------------

NAIVE_WHILE = """\
    pieces = split_microbatches(inputs, targets, num_microbatches)
    total, k = None, 0
    while k < len(pieces):
        x, y = pieces[k]
        for stage in stages:
            x = stage(x.to(stage_device(stage)))
        loss = microbatch_loss(loss_fn, x, y.to(x.device), len(inputs))
        torch.autograd.backward(loss)
        total = loss.detach() if total is None else total + loss.detach()
        k += 1
    return total.item()
"""

# The forward phase loops stage by stage (every micro-batch through stage 0, then stage 1, ...).
GPIPE_STAGE_MAJOR = """\
    pieces = split_microbatches(inputs, targets, num_microbatches)
    acts = [x for x, _ in pieces]
    for stage in stages:
        device = stage_device(stage)
        acts = [stage(a.to(device)) for a in acts]
    last = stage_device(stages[-1])
    losses = [microbatch_loss(loss_fn, a, y.to(last), inputs.shape[0]) for a, (_, y) in zip(acts, pieces)]
    torch.autograd.backward(losses)
    return torch.stack([l.detach() for l in losses]).sum().item()
"""

# Each loss is computed right after its forward; only its backward waits one iteration.
DELAYED_LOSS_FIRST = """\
    last = stage_device(stages[-1])
    pending = None
    total = torch.zeros((), device=last)
    for x, y in split_microbatches(inputs, targets, num_microbatches):
        loss = microbatch_loss(loss_fn, forward_through(stages, x), y.to(last), inputs.shape[0])
        if pending is not None:
            pending.backward()
        pending = loss
        total = total + loss.detach()
    pending.backward()
    del pending
    return total.item()
"""

NAIVE, GPIPE, DELAYED = "part1.naive_step", "part2.gpipe_step", "part3.delayed_backward_step"
SCHED_IMPORTS = "from torch import nn\n"

CORRECT: dict[str, Submission] = {
    "grad-sum-deque": Submission(
        replace={
            PARTITION: [body(PARTITION, "part1.partition", PARTITION_BINARY_SEARCH)],
            MICROBATCH: [
                body(MICROBATCH, "part1.split_microbatches", SPLIT_SLICING),
                body(MICROBATCH, "part1.microbatch_loss", LOSS_DIVIDE),
            ],
            SCHEDULES: [
                imports(SCHED_IMPORTS, "from collections import deque\n"),
                body(SCHEDULES, NAIVE, NAIVE_AUTOGRAD_GRAD),
                body(SCHEDULES, GPIPE, GPIPE_SUM_ONCE),
                body(SCHEDULES, DELAYED, DELAYED_DEQUE),
            ],
            PER_STAGE: [
                body(PER_STAGE, "part6.gpipe_actions", GPIPE_STRINGS),
                body(PER_STAGE, "part6.one_f_one_b_actions", ONE_F_ONE_B_STRINGS),
            ],
        }
    ),
    "per-stage-backward": Submission(
        replace={
            SCHEDULES: [
                ("\n\ndef naive_step(", PER_STAGE_HELPERS + "\n\ndef naive_step("),
                body(SCHEDULES, NAIVE, NAIVE_PER_STAGE),
                body(SCHEDULES, GPIPE, GPIPE_PER_STAGE_REVERSED),
                body(SCHEDULES, DELAYED, DELAYED_PER_STAGE_GRAD),
            ]
        }
    ),
    "checkpointing": Submission(
        replace={
            SCHEDULES: [
                imports(SCHED_IMPORTS, "from torch.utils.checkpoint import checkpoint\n"),
                ("\n\ndef naive_step(", CHECKPOINTED_FORWARD + "\n\ndef naive_step("),
                body(SCHEDULES, NAIVE, NAIVE_CHECKPOINT),
                body(SCHEDULES, GPIPE, GPIPE_CHECKPOINT_REENTRANT),
                body(SCHEDULES, DELAYED, DELAYED_CHECKPOINT_REENTRANT),
            ]
        }
    ),
    "settings-inputs-retain": Submission(
        replace={
            SCHEDULES: [
                body(SCHEDULES, NAIVE, NAIVE_BACKWARD_INPUTS),
                body(SCHEDULES, GPIPE, GPIPE_RETAIN_GRAPH),
                body(SCHEDULES, DELAYED, DELAYED_AUTOGRAD_BACKWARD),
            ]
        }
    ),
    "recursive-split-stage-major": Submission(
        replace={
            PARTITION: [
                imports("from __future__ import annotations\n", "\nimport functools\n"),
                body(PARTITION, "part1.partition", PARTITION_RECURSIVE),
            ],
            MICROBATCH: [
                body(MICROBATCH, "part1.split_microbatches", SPLIT_TORCH_SPLIT),
                body(MICROBATCH, "part1.microbatch_loss", LOSS_LEN),
            ],
            SCHEDULES: [
                body(SCHEDULES, NAIVE, NAIVE_WHILE),
                body(SCHEDULES, GPIPE, GPIPE_STAGE_MAJOR),
                body(SCHEDULES, DELAYED, DELAYED_LOSS_FIRST),
            ],
            PER_STAGE: [
                body(PER_STAGE, "part6.gpipe_actions", GPIPE_TUPLES),
                body(PER_STAGE, "part6.one_f_one_b_actions", ONE_F_ONE_B_TUPLES),
            ],
        }
    ),
    "own-errors-float64": Submission(
        replace={
            PARTITION: [
                (
                    "from torch import nn\n",
                    "from torch import nn\n\ntorch.set_default_dtype(torch.float64)  # at import\n",
                ),
                (
                    "\n\ndef partition(",
                    '\n\nclass PartitionError(ValueError):\n    """No such partition."""\n\n\ndef partition(',
                ),
                *[
                    (f'raise ValueError(f"{m}', f'raise PartitionError(f"{m}')
                    for m in ("num_stages must be", "cannot split", "need one device")
                ],
            ],
            MICROBATCH: [
                (
                    "\n\ndef split_microbatches(",
                    '\n\nclass SplitError(ValueError):\n    """No such split."""\n\n\ndef split_microbatches(',
                ),
                *[
                    (f'raise ValueError(f"{m}', f'raise SplitError(f"{m}')
                    for m in ("num_microbatches must be", "inputs have", "cannot split a batch")
                ],
            ],
        }
    ),
}

# Which style each submission's tasks are written in (the report of a failing grading names them).
STYLES: dict[str, dict[str, str]] = {
    "grad-sum-deque": {
        "partition": "binary search on the largest stage size, greedy packing",
        "split_microbatches": "explicit slicing over a generator of row ranges",
        "microbatch_loss": "loss * rows / batch_size",
        "naive_step": "torch.autograd.grad(loss, params) + manual p.grad += g (None handled)",
        "gpipe_step": "all losses, then sum(losses).backward() once",
        "delayed_backward_step": "a collections.deque of pending micro-batches",
        "per_stage": "actions as strings '1F0'",
    },
    "per-stage-backward": {
        "naive_step": "detached stage inputs, torch.autograd.backward(outputs, grad_tensors) per stage",
        "gpipe_step": "detached stage inputs, per-stage backward, backward phase in reverse micro-batch order",
        "delayed_backward_step": "detached stage inputs, torch.autograd.grad(out, [input, *params]) per stage, "
        "manual accumulation",
    },
    "checkpointing": {
        "naive_step": "torch.utils.checkpoint, non-reentrant, around each stage",
        "gpipe_step": "torch.utils.checkpoint, reentrant, around each stage",
        "delayed_backward_step": "torch.utils.checkpoint, reentrant, around each stage",
    },
    "settings-inputs-retain": {
        "all steps": "set_default_dtype(float64), manual_seed, use_deterministic_algorithms(True), "
        "set_num_threads(1) at the top",
        "naive_step": "loss.backward(inputs=params)",
        "gpipe_step": "loss.backward(retain_graph=True); float(tensor) at the end",
        "delayed_backward_step": "torch.autograd.backward([loss], grad_tensors=[ones])",
    },
    "recursive-split-stage-major": {
        "partition": "recursive minimax with functools.lru_cache, stages as model[a:b]",
        "split_microbatches": "Tensor.split with a list of sizes",
        "microbatch_loss": "loss * (len(outputs) / batch_size)",
        "naive_step": "a while loop, torch.autograd.backward(loss), targets moved to the output's device",
        "gpipe_step": "stage-major forward loop, one torch.autograd.backward(losses) for all",
        "delayed_backward_step": "each loss computed right after its forward, its backward one iteration later",
        "per_stage": "actions as (stage, kind, mb) tuples",
    },
    "own-errors-float64": {
        "partition": "torch.set_default_dtype(torch.float64) when the module is imported; a ValueError subclass",
        "split_microbatches": "a ValueError subclass for bad arguments",
    },
}

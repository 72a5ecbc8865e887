"""Part 1's checks: ``partition``, ``split_microbatches`` and ``microbatch_loss``, from raw data.

The probes return what the student's functions returned (parameter values and devices, tensors,
exception names); every conclusion here is drawn by the judge: which model layer a stage holds
(by its parameter values, which the judge rebuilds from the seed), sizes, order, pairing, sums.
"""

from __future__ import annotations

import functools
import itertools

import torch
from torch import nn

from ..sandbox import BadData

# -- partition -------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def judge_model(widths: tuple[int, ...], seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(*[nn.Linear(a, b) for a, b in itertools.pairwise(widths)])


def layer_sizes(widths) -> list[int]:
    return [a * b + b for a, b in itertools.pairwise(widths)]


def stage_layers(data: dict, widths, seed: int) -> list[list[int]]:
    """For each returned stage, the model layers its parameters belong to, in order (-1: a
    parameter that is none of the model's)."""
    model = judge_model(tuple(widths), seed)
    owners = [(i, p.detach()) for i, layer in enumerate(model) for p in layer.parameters()]
    stages = []
    for stage in data.get("stages") or []:
        params = stage.get("params") if isinstance(stage, dict) else None
        if not isinstance(params, list):
            raise BadData("the call returned malformed data (stage parameters)")
        found: list[int] = []
        for value in params:
            owner = next(
                (
                    i
                    for i, ref in owners
                    if isinstance(value, torch.Tensor) and value.shape == ref.shape and torch.equal(value, ref)
                ),
                -1,
            )
            if not found or found[-1] != owner:
                found.append(owner)
        stages.append(found)
    return stages


def check_cover(data: dict, widths, stages: int, seed: int, call: str) -> str | None:
    if data.get("error"):
        return f"{call}: {data['error']}"
    returned = data.get("stages") or []
    kinds = [s.get("type") for s in returned]
    if len(returned) != stages:
        return f"{call} returned {len(returned)} stage(s); expected {stages}"
    layers = stage_layers(data, widths, seed)
    where = f"{call} returned stages holding layers {layers}"
    flat = [i for ls in layers for i in ls]
    count = len(widths) - 1
    empty = next((i for i, s in enumerate(returned) if not (isinstance(s, dict) and s.get("params"))), None)
    if empty is not None and kinds[empty] != "Sequential":
        return f"{where}: stage {empty} is a {kinds[empty]}, not a module with layers; every stage is an nn.Sequential"
    if -1 in flat:
        return (
            f"{where}: a stage holds parameters that are none of the model's (-1): build the stages from the "
            f"model's own layers, do not copy or create layers"
        )
    if sorted(flat) != list(range(count)) and len(set(flat)) == len(flat):  # a missing layer explains empties
        missing = sorted(set(range(count)) - set(flat))
        return f"{where}: layer(s) {missing} are in no stage; every layer of the model must be in one stage"
    if empty is not None:
        hint = ""
        if all(not s.get("params") for s in returned[empty:]):
            hint = (
                " (the stages after the last layer are left over: when you fill stages in turn, leave at least one "
                "layer for each stage still to come)"
            )
        return f"{where}: stage {empty} is empty; every stage is an nn.Sequential of at least one layer{hint}"
    if len(set(flat)) != len(flat):
        twice = next(i for i in flat if flat.count(i) > 1)
        return f"{where}: layer {twice} is in more than one stage; each layer belongs to exactly one stage"
    if flat != list(range(count)):
        return (
            f"{where}: the stages are not contiguous and in order: concatenated they must list layers "
            f"0..{count - 1} in order"
        )
    if data.get("runs"):
        return f"{call}: {data['runs']}"
    return None


def optimal_max_stage(sizes: list[int], num_stages: int) -> int:
    """Smallest possible largest-stage size over contiguous splits into ``num_stages`` non-empty stages."""
    n = len(sizes)
    prefix = [0, *itertools.accumulate(sizes)]

    @functools.cache
    def best(i: int, k: int) -> int:
        if k == 1:
            return prefix[n] - prefix[i]
        return min(max(prefix[j] - prefix[i], best(j, k - 1)) for j in range(i + 1, n - k + 2))

    return best(0, num_stages)


def check_balanced(layers: list[list[int]], widths, stages: int, call: str) -> str | None:
    sizes = layer_sizes(widths)
    stage_params = [sum(sizes[i] for i in ls) for ls in layers]
    best = optimal_max_stage(sizes, stages)
    if max(stage_params) <= best:
        return None
    counts = [len(ls) for ls in layers]
    hint = " (an even split by layer count; the layers have different sizes)" if max(counts) - min(counts) <= 1 else ""
    return (
        f"{call}: with layers of {sizes} parameters your stages hold {stage_params} (largest "
        f"{max(stage_params)}); the best contiguous split has a largest stage of {best}{hint}. Choose the cuts "
        f"that make the largest stage's parameter count as small as possible."
    )


def check_shares_parameters(data: dict, call: str) -> str | None:
    if data.get("error"):
        return f"{call}: {data['error']}"
    grads = data.get("model_grads")
    if not isinstance(grads, list):
        return f"{call}: the stages could not be run one after the other on a batch"
    missing = [i for i, g in enumerate(grads) if not isinstance(g, torch.Tensor) or not bool(g.abs().sum() > 0)]
    if missing:
        return (
            f"{call}: after a backward through the stages, {len(missing)} of the model's {len(grads)} parameters "
            f"have no gradient: the stages hold copies of layers (copy.deepcopy, new nn.Linear); build them "
            f"from the model's own layers so that gradients land in the model"
        )
    return None


def check_devices(data: dict, devices: list[str], call: str) -> str | None:
    if data.get("error"):
        return f"{call} with devices {devices}: {data['error']}"
    got = [sorted(set(s.get("devices") or [])) for s in data.get("stages") or []]
    want = [[d] for d in devices]
    if got != want:
        return (
            f"{call} with devices {devices}: the stages' parameters are on {got}; stage s must be moved to "
            f"devices[s] (stage.to(devices[s]))"
        )
    return None


def raised_value_error(outcome: object) -> bool:
    """The call raised ValueError or a subclass of it (ScheduleError, a student's own error class)."""
    return isinstance(outcome, dict) and outcome.get("value_error") is True


def check_bad_calls(data: dict, cases: list, template: str, layers: int) -> str | None:
    for (stages, devices), outcome in zip(cases, data.get("bad") or []):
        call = template.format(layers=layers, stages=stages, devices=len(devices))
        raised = outcome.get("raised") if isinstance(outcome, dict) else None
        if not raised_value_error(outcome):
            what = "returned normally" if raised is None else f"raised {outcome.get('message') or raised}"
            return f"{call} {what}; it must raise ValueError with a message saying what is wrong"
    return None


# -- micro-batches ---------------------------------------------------------------------------------


def tensor_split_sizes(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if k < extra else 0) for k in range(parts)]


def check_split(outcome: dict, inputs: torch.Tensor, targets: torch.Tensor, m: int, call: str) -> str | None:
    """Sizes (torch.tensor_split's), order, and each piece's targets paired with its inputs."""
    if "raised" in outcome:
        return f"{call}: {outcome.get('message') or outcome['raised']}"
    pieces = outcome.get("value")
    if not isinstance(pieces, list):
        kind = pieces.get("not_a_list") if isinstance(pieces, dict) else type(pieces).__name__
        return f"{call} returned a {kind}; return a list of (inputs, targets) pairs"
    bad = next((p for p in pieces if not isinstance(p, list)), None)
    if bad is not None:
        return f"{call}: every item must be an (inputs, targets) pair of tensors, got {bad.get('not_a_pair')!r}"
    sizes = [int(x.shape[0]) if x.dim() else 0 for x, _ in pieces]
    want = tensor_split_sizes(inputs.shape[0], m)
    if sizes != want:
        return (
            f"{call} gave micro-batches of sizes {sizes}; expected {want}{_size_hint(sizes, want, inputs.shape[0], m)}"
        )
    xs, ys = [x for x, _ in pieces], [y for _, y in pieces]
    if not torch.equal(torch.cat(xs), inputs):
        if sorted(torch.cat(xs)[:, 0].tolist()) == sorted(inputs[:, 0].tolist()):
            return (
                f"{call}: every row is there, but not in order: concatenated, the micro-batches must give the "
                f"batch back"
            )
        return f"{call}: the micro-batches do not hold the batch's rows (rows missing, repeated or changed)"
    if any(y.shape[0] != x.shape[0] for x, y in pieces) or not torch.equal(torch.cat(ys), targets):
        return f"{call}: some micro-batch's targets are not the targets of its own rows"
    return None


def _size_hint(sizes: list[int], want: list[int], rows: int, m: int) -> str:
    chunk = -(-rows // m)
    chunks = [min(chunk, rows - i) for i in range(0, rows, chunk)]
    if sizes == chunks:
        return " (that is what torch.chunk gives; torch.tensor_split gives sizes that differ by at most one)"
    if sorted(sizes) == sorted(want):
        return " (the right sizes in the wrong order: larger micro-batches first)"
    if sum(sizes) != rows:
        return f" (they add up to {sum(sizes)} rows; the batch has {rows})"
    return ""


def check_loss_parts(parts: list, outputs: torch.Tensor, targets: torch.Tensor, sizes: list[int]) -> str | None:
    """Each value is the micro-batch's mean loss times rows/batch, a scalar tensor with a gradient,
    and the values add up to the full-batch mean loss."""
    n, row, values = sum(sizes), 0, []
    loss_fn = nn.MSELoss()
    full = float(loss_fn(outputs, targets))
    for k, (size, part) in enumerate(zip(sizes, parts)):
        call = f"microbatch_loss(micro-batch {k} of sizes {sizes})"
        if "raised" in part:
            return f"{call}: {part.get('message') or part['raised']}"
        value = part["value"].get("value")
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            return f"{call} returned {_kind(value)}; return the weighted loss as a scalar tensor"
        out, tgt = outputs[row : row + size].clone().requires_grad_(True), targets[row : row + size]
        want = loss_fn(out, tgt) * (size / n)
        (want_grad,) = torch.autograd.grad(want, out)
        grad = part["value"].get("grad")
        if not isinstance(grad, torch.Tensor):
            return f"{call} returned a tensor with no gradient: keep it in the graph (no .item(), no .detach())"
        if not torch.allclose(grad.to(want_grad.dtype), want_grad, rtol=1e-4, atol=1e-7):
            ratio = float(value) / float(want) if float(want) else float("nan")
            return (
                f"{call} returned {float(value):.6g}; its share of the full-batch mean loss is {float(want):.6g} "
                f"(your value is {ratio:.3g} times that): multiply the micro-batch's mean loss by rows / batch_size"
            )
        values.append(float(value))
        row += size
    if abs(sum(values) - full) > 1e-5 * abs(full):
        rounded = [round(v, 5) for v in values]
        return f"the micro-batch losses {rounded} sum to {sum(values):.6g}, not the full-batch {full:.6g}"
    return None


def _kind(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {list(value.shape)}"
    if isinstance(value, dict) and "type" in value:
        return f"a {value['type']}"
    return f"a {type(value).__name__} ({value!r})"

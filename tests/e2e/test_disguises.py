"""Wrong submissions that look right to a shallow check: each must lose exactly the points it should.

Every case here once got a wrong verdict (found by grading unseen submissions):

* a naive loop after forwards thrown away under ``torch.no_grad()`` in GPipe's order (or the
  delayed loop's): the forwards that count are the naive loop's, and the replay charges every
  forward with the dependencies its data had, so order and replayed pipeline fail;
* stages returned as ``nn.ModuleList``, which hold the right layers but cannot be called;
* ``.cpu()`` on each loss inside GPipe's backward loop, a host synchronisation on a GPU.

The correct counterparts (per-stage activation checkpointing, a ``ValueError`` subclass, a module
that sets float64 as the default dtype) are in ``tests/support/variants.py``: they score full marks.
"""

from __future__ import annotations

import pytest

from tests.support import by_name, grade_pytest
from tests.support.submissions import Submission, build
from tests.support.variants import PARTITION, SCHEDULES, body

pytestmark = pytest.mark.slow

THROWN_AWAY_GPIPE = """\
    last = stage_device(stages[-1])
    microbatches = split_microbatches(inputs, targets, num_microbatches)
    with torch.no_grad():  # "the forward phase": every micro-batch through every stage, thrown away
        for x, _ in microbatches:
            forward_through(stages, x)
    total = torch.zeros((), device=last)
    for x, y in microbatches:  # then the naive loop
        loss = microbatch_loss(loss_fn, forward_through(stages, x), y.to(last), inputs.shape[0])
        loss.backward()
        total += loss.detach()
    return total.item()
"""

THROWN_AWAY_DELAYED = """\
    last = stage_device(stages[-1])
    microbatches = split_microbatches(inputs, targets, num_microbatches)
    total = torch.zeros((), device=last)

    def run(x, y):
        loss = microbatch_loss(loss_fn, forward_through(stages, x), y.to(last), inputs.shape[0])
        loss.backward()
        return loss.detach()

    for i, (x, y) in enumerate(microbatches):
        with torch.no_grad():
            forward_through(stages, x)  # "the forward of micro-batch i", thrown away
        if i > 0:
            total += run(*microbatches[i - 1])
    total += run(*microbatches[-1])
    return total.item()
"""

DISGUISED = Submission(
    replace={
        SCHEDULES: [
            body(SCHEDULES, "part2.gpipe_step", THROWN_AWAY_GPIPE),
            body(SCHEDULES, "part3.delayed_backward_step", THROWN_AWAY_DELAYED),
        ],
        PARTITION: [
            (
                "return [nn.Sequential(*layers[a:b]).to(dev) for (a, b), dev in zip(bounds, devices)]",
                "return [nn.ModuleList(layers[a:b]).to(dev) for (a, b), dev in zip(bounds, devices)]",
            )
        ],
    }
)

CPU_IN_LOOP = Submission(
    replace={
        SCHEDULES: [
            (
                "    for loss in losses:\n        loss.backward()\n"
                "    return torch.stack([loss.detach() for loss in losses]).sum().item()\n",
                "    values = []\n    for loss in losses:\n        loss.backward()\n"
                "        values.append(loss.detach().cpu())\n"
                "    return float(sum(values))\n",
            )
        ]
    }
)


def _graded(tmp_path, submission: Submission, selection: str) -> dict[str, dict]:
    doc, out = grade_pytest(build(submission, tmp_path / "submission"), tmp_path, "-k", selection)
    assert doc["tests"], out[-3000:]
    return by_name(doc)


def _status(tests: dict[str, dict], prefix: str) -> dict[str, str]:
    found = {name: t["status"] for name, t in tests.items() if name.startswith(prefix)}
    assert found, f"no test named {prefix!r}: {sorted(tests)}"
    return found


def test_thrown_away_forwards_and_uncallable_stages_lose_their_points(tmp_path):
    tests = _graded(tmp_path, DISGUISED, "gpipe or delayed or contiguous_cover")
    for option in ("Part 2 Option B: GPipe", "Part 3 Option C: delayed backward"):
        assert set(_status(tests, f"{option}: accumulated gradients").values()) == {"passed"}  # they are right
        assert set(_status(tests, f"{option}: forwards and backwards").values()) == {"failed"}
        assert set(_status(tests, f"{option}: replayed on p devices").values()) == {"failed"}
    order = next(t for n, t in tests.items() if n.startswith("Part 2 Option B: GPipe: forwards and backwards"))
    assert "forward 2 times" in order["output"] and "torch.no_grad()" in order["output"]
    cover = "Part 1 Partition and micro-batches: stages are contiguous"
    assert set(_status(tests, cover).values()) == {"failed"}
    message = next(t["output"] for n, t in tests.items() if n.startswith(cover))
    assert "ModuleList" in message and "nn.Sequential" in message


def test_cpu_copy_inside_the_backward_loop_is_a_host_sync(tmp_path):
    tests = _graded(tmp_path, CPU_IN_LOOP, "gpipe and replayed")
    outputs = [t["output"] for n, t in tests.items() if n.startswith("Part 2 Option B: GPipe: replayed")]
    assert outputs and all("cpu at schedules.py:" in o for o in outputs), outputs

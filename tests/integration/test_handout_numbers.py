"""Every number HANDOUT.md states comes from a command it names, and is checked against that command.

A number is anything with ``x`` or ``%`` after it (``1.20x``, ``40.0%``), a decimal point
(``0.400``) or a slash between digits (``12/30``). Each must be a key of :data:`CHECKED`, which
says which command of the handout produces it and checks it: the command's output on the reference
code, or the same computation through the project's simulator. A number added to the handout
without an entry here fails :func:`test_every_number_in_the_handout_is_checked`.

The claims of Part 7 that carry no digits ("a third of 1F1B's idle time", "divided by v",
"min(p, m) on every stage", more messages) are checked on the reference lists at the end.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable
from functools import cache

import pytest

from autograder.schedules import (
    Costs,
    bubble_ratio,
    cross_rank_messages,
    delayed_backward_schedule,
    peak_in_flight_by_rank,
    simulate,
)
from autograder.student import run
from solutions.per_stage import interleaved_actions, one_f_one_b_actions, zero_bubble_actions
from tests.support import ROOT

HANDOUT = (ROOT / "HANDOUT.md").read_text(encoding="utf-8")
NUMBER = re.compile(
    r"(?<![\w.])\d+(?:\.\d+)?(?:x|%)(?!\w)"  # 1.20x, 40.0%, 75%
    r"|(?<![\w./])\d+\.\d+(?![\w.])"  # 0.400
    r"|(?<![\w./])\d+/\d+(?![\w/])"  # 12/30
)


def numbers_in(text: str) -> set[str]:
    return set(NUMBER.findall(text))


# -- the commands ---------------------------------------------------------------------------------

WORKED_EXAMPLE = "delayed_backward_schedule(2, 3), Costs(forward=1, backward=2)"  # in the handout's Python block
RUN_P2_M3 = "python -m assignment.run --schedule delayed -p 2 -m 3 --batch 60"


@cache
def worked_example_output() -> str:
    """What the worked example's Python block prints (it uses the simulator only)."""
    code = next(b for b in re.findall(r"```python\n(.*?)```", HANDOUT, flags=re.S) if WORKED_EXAMPLE in b)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "HANDOUT.md", "exec"), {})
    return out.getvalue()


def worked_example_counts() -> str:
    """The worked example's idle slots, counted by the simulator: 'idle/capacity idle/busy'."""
    result = simulate(delayed_backward_schedule(2, 3), Costs(forward=1, backward=2))
    busy = sum(result.busy.values())
    capacity = result.num_ranks * result.makespan
    return f"{capacity - busy:g}/{capacity:g} {capacity - busy:g}/{busy:g}"


@cache
def run_p2_m3_output() -> str:
    """``python -m assignment.run --schedule delayed -p 2 -m 3 --batch 60`` on the reference code."""
    args = RUN_P2_M3.split()[3:] + ["--steps", "1", "--warmup", "0", "--budget", "0.05"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run.main(args, package="solutions") == 0
    return out.getvalue()


def bubble_column(output: str) -> str:
    row = next(line for line in output.splitlines() if line.startswith("| C delayed backward"))
    return row.split("|")[6].strip()


# number -> (the command the handout names for it, what that command gives)
CHECKED: dict[str, tuple[str, Callable[[], str]]] = {
    "0.400": (WORKED_EXAMPLE, worked_example_output),  # idle share
    "0.667": (WORKED_EXAMPLE, worked_example_output),  # bubble ratio
    "0.333": (WORKED_EXAMPLE, worked_example_output),  # the time one column of the chart stands for
    "12/30": (WORKED_EXAMPLE, worked_example_counts),  # idle units over p x step
    "12/18": (WORKED_EXAMPLE, worked_example_counts),  # idle units over busy units
    "40.0%": (RUN_P2_M3, lambda: bubble_column(run_p2_m3_output())),  # the bubble column of that run
}


def test_every_number_in_the_handout_is_checked():
    unchecked = numbers_in(HANDOUT) - set(CHECKED)
    assert not unchecked, (
        f"HANDOUT.md states {sorted(unchecked)}: name the command that produces each and add it to "
        "CHECKED in tests/integration/test_handout_numbers.py"
    )
    assert set(CHECKED) <= numbers_in(HANDOUT), f"no longer in HANDOUT.md: {sorted(set(CHECKED) - numbers_in(HANDOUT))}"


@pytest.mark.parametrize("number", sorted(CHECKED))
def test_each_number_is_what_its_command_gives(number):
    command, produce = CHECKED[number]
    assert command in HANDOUT, f"HANDOUT.md does not name the command of {number}: {command}"
    assert number in produce(), f"{number}: {command} gives {produce()!r}"


def test_the_number_pattern():
    text = "1.20x and 40.0% of 0.400, 12/30; not 1e-3, cuda:0, F0, 1F1B, -m 8, p·v − 1, out/part4, 2 × 15"
    assert numbers_in(text) == {"1.20x", "40.0%", "0.400", "12/30"}


# -- the claims of Part 7 ---------------------------------------------------------------------------


def idle(result) -> float:
    return result.num_ranks * result.makespan - sum(result.busy.values())


CLAIMS = [
    "the idle time is divided by v, and so is the bubble ratio (exactly; the\nidle share falls by less",
    "the idle time is a third of 1F1B's (so is the bubble ratio",
    "our reference ZB-H1 holds min(p, m) micro-batches in flight on\nevery stage",
    "p·v − 1 stage boundaries instead of p − 1",
    "so there are more\nmessages between ranks; and a rank holds more chunk activations in flight",
]


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_part7_claims_are_in_the_handout():
    for claim in CLAIMS:
        assert _flat(claim) in _flat(HANDOUT), claim


@pytest.mark.parametrize("p", [2, 3, 4])
def test_part7_claims_hold_on_the_reference_lists(p):
    costs = Costs(forward=1, backward=2)  # I = W = 1: F, I and W of equal cost
    for m in (p, 2 * p, 3 * p):
        ofob_lists = {s: one_f_one_b_actions(s, p, m) for s in range(p)}
        ofob = simulate(ofob_lists, costs)
        zb = simulate({s: zero_bubble_actions(s, p, m) for s in range(p)}, costs)
        assert idle(zb) * 3 == pytest.approx(idle(ofob))  # m >= p: a third of 1F1B's idle time
        assert bubble_ratio(zb) * 3 == pytest.approx(bubble_ratio(ofob))
        assert zb.bubble_fraction * 3 > ofob.bubble_fraction  # the share falls by less
        assert zb.peak_in_flight == dict.fromkeys(range(p), min(p, m))
        assert max(zb.peak_in_flight.values()) == max(ofob.peak_in_flight.values())  # the paper's H1 memory
        for v in (2, 3):
            lists = {r: interleaved_actions(r, p, m, v) for r in range(p)}
            inter = simulate(lists, Costs(forward=1 / v, backward=2 / v))
            assert idle(inter) * v == pytest.approx(idle(ofob))
            assert bubble_ratio(inter) * v == pytest.approx(bubble_ratio(ofob))
            assert inter.bubble_fraction * v > ofob.bubble_fraction
            assert cross_rank_messages(lists) == 2 * m * (p * v - 1) > cross_rank_messages(ofob_lists)
            assert cross_rank_messages(ofob_lists) == 2 * m * (p - 1)
            # more chunk activations in flight on a rank (each 1/v of a stage's): at least 1F1B's bytes
            chunks = max(peak_in_flight_by_rank(inter).values())
            assert chunks > max(ofob.peak_in_flight.values()) and chunks / v >= max(ofob.peak_in_flight.values())


def test_worked_example_counts_are_the_simulators():
    """The prose of the worked example: a 15-unit step, 9 busy units per stage, and the idle gaps
    stage 0 "waits twice for 3 units, stage 1 for 1, 3 and 2"."""
    result = simulate(delayed_backward_schedule(2, 3), Costs(forward=1, backward=2))
    assert result.makespan == 15 and result.busy == {0: 9, 1: 9}
    gaps = {}
    for rank, rows in result.intervals.items():
        ends = [0.0, *(end for _, _, end in sorted(rows, key=lambda r: r[1]))]
        starts = [start for _, start, _ in sorted(rows, key=lambda r: r[1])] + [result.makespan]
        gaps[rank] = [b - a for a, b in zip(ends, starts) if b > a]
    assert gaps == {0: [3, 3], 1: [1, 3, 2]}
    for words in [
        "The step takes 15 units",
        "busy 3 × (1 + 2) = 9 units, so it is idle 6",
        "waits twice for 3 units",
        "stage 1 for 1, 3 and 2",
        "12 of the 2 × 15 = 30 device",
    ]:
        assert words in _flat(HANDOUT), words

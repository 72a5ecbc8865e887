"""Parts 6 and 7: a student's per-stage (or per-rank) action lists, parsed, validated, simulated.

The probe returns each list as plain data (``[stage, kind, mb]`` or a string); here the judge
parses it (``autograder.schedules.parse_schedule``), validates it (a grid marks the first wrong
action), simulates it on in-order devices and compares step time and activation memory with what
the schedule family gives (``autograder.schedules.theory``).
"""

from __future__ import annotations

import pytest

from ... import practical
from ...schedules import Costs, ScheduleError, format_grid, parse_schedule, simulate, validate
from ...schedules.timeline import ascii_gantt


def call_name(which: str, p: int, m: int, v: int | None = None) -> str:
    spec = practical.ACTION_LISTS[which]
    first = "rank" if spec.per_rank else "stage"
    extra = f", stages_per_rank={v}" if v is not None else ""
    return f"{spec.function}({first}, {p}, {m}{extra})"


def parsed_lists(data: dict, which: str, p: int, m: int, cases: list, v: int | None = None):
    """The lists of setting (p, m[, v]) from the probe's data, parsed; fails the test otherwise."""
    key = (p, m) if v is None else (p, m, v)
    outcome = data["cases"][[tuple(c) for c in cases].index(key)]
    call = call_name(which, p, m, v)
    if "raised" in outcome:
        pytest.fail(f"{call}: {outcome.get('message') or outcome['raised']}", pytrace=False)
    lists = outcome.get("value")
    if not isinstance(lists, list) or len(lists) != p:
        pytest.fail(f"{call}: the call returned malformed data", pytrace=False)
    try:
        return parse_schedule({rank: items for rank, items in enumerate(lists)})
    except ScheduleError as exc:
        pytest.fail(f"{call} returned something that is not a list of actions: {exc}", pytrace=False)


def valid_settings(lists, which: str, settings: list) -> list:
    """The settings whose lists are valid; fails the test (one line) when none is."""
    valid = [s for s in settings if check_valid(lists(which, *s), which, *s) is None]
    if not valid:
        pytest.fail(
            f"{practical.ACTION_LISTS[which].function}: no setting gives valid lists (see the validity "
            f"test), so this cannot be judged",
            pytrace=False,
        )
    return valid


def check_valid(schedule, which: str, p: int, m: int) -> str | None:
    try:
        validate(schedule, p, m)
    except ScheduleError as exc:
        return (
            f"{call_name(which, p, m)} for stage = 0..{p - 1} gives lists that cannot run: {exc}\n"
            f"(columns: the list of each stage; '1B0' is stage 1's backward of micro-batch 0)"
        )
    return None


def check_makespan(schedule, which: str, p: int, m: int) -> str | None:
    """GPipe and 1F1B both take (m + p - 1)(F + B) on in-order devices, whatever F and B cost."""
    problem = check_valid(schedule, which, p, m)
    if problem:
        return problem
    for costs in (Costs(forward=1, backward=2), Costs(forward=1, backward=1)):
        result = simulate(schedule, costs)
        ideal = (m + p - 1) * (costs.forward + costs.backward)
        if abs(result.makespan - ideal) > 1e-9:
            return (
                f"{call_name(which, p, m)}: simulated with F = {costs.forward:g}, B = {costs.backward:g} your "
                f"lists take {result.makespan:g} time units; {practical.ACTION_LISTS[which].label} takes "
                f"{ideal:g}. Where a stage waits ('.') its list asks for work whose input cannot have "
                f"arrived yet:\n" + ascii_gantt(result, width=100) + "\nYour lists:\n" + format_grid(schedule)
            )
    return None


def check_in_flight(schedule, which: str, p: int, m: int) -> str | None:
    """GPipe keeps all m micro-batches in flight on every stage; 1F1B no more on a stage than it needs."""
    problem = check_valid(schedule, which, p, m)
    if problem:
        return problem
    peaks = simulate(schedule, Costs(forward=1, backward=2)).peak_in_flight
    for s in range(p):
        got = peaks.get(s, 0)
        want = m if which == "gpipe" else min(p - s, m)
        if (which == "gpipe" and got != want) or got > want:
            what = "all m =" if which == "gpipe" else "at most"
            return (
                f"{call_name(which, p, m)}: stage {s} holds {got} micro-batches in flight at its peak (forward "
                f"started, backward not finished); {practical.ACTION_LISTS[which].label} holds {what} {want} "
                f"there. Peaks per stage: {dict(sorted(peaks.items()))}\n" + format_grid(schedule)
            )
    return None


# -- Part 7 (bonus) ----------------------------------------------------------------------------------


def bonus_costs(which: str, v: int = 1) -> Costs:
    """Interleaved: each chunk costs 1/v of a stage (F = 1, B = 2 per stage). Zero bubble: F = I = W = 1."""
    if which == "interleaved":
        return Costs(forward=1 / v, backward=2 / v)
    return Costs(forward=1, backward=2, input_grad=1, weight_grad=1)


def check_bonus_valid(schedule, which: str, p: int, m: int, v: int = 1) -> str | None:
    from ...schedules import validate_interleaved

    try:
        if which == "interleaved":
            validate_interleaved(schedule, p, m, v)
        else:
            validate(schedule, p, m)
    except ScheduleError as exc:
        return f"{call_name(which, p, m, v if which == 'interleaved' else None)} gives lists that cannot run: {exc}"
    return None


def check_bonus_time(schedule, which: str, p: int, m: int, v: int = 1) -> str | None:
    """The simulated step takes no longer than the family's (Megatron's interleaving, ZB-H1)."""
    from ...schedules.theory import expected_bubble

    problem = check_bonus_valid(schedule, which, p, m, v)
    if problem:
        return problem
    family = "interleaved-1f1b" if which == "interleaved" else "zb-h1"
    whole = Costs(forward=1, backward=2) if which == "interleaved" else bonus_costs(which)
    target = expected_bubble(family, p, m, v, whole).makespan
    result = simulate(schedule, bonus_costs(which, v))
    if result.makespan <= target + 1e-9:
        return None
    call = call_name(which, p, m, v if which == "interleaved" else None)
    return (
        f"{call}: simulated ({_costs_text(which, v)}) your lists take {result.makespan:.4g} time units; "
        f"{practical.ACTION_LISTS[which].label} takes {target:.4g}. Timeline ('.' = waiting):\n"
        + ascii_gantt(result, width=100)
    )


def check_bonus_memory(schedule, which: str, p: int, m: int, v: int = 1) -> str | None:
    from ...schedules.theory import expected_peak_in_flight, peak_in_flight_by_rank

    problem = check_bonus_valid(schedule, which, p, m, v)
    if problem:
        return problem
    result = simulate(schedule, bonus_costs(which, v))
    if which == "interleaved":
        got, limit, unit = peak_in_flight_by_rank(result), expected_peak_in_flight("interleaved-1f1b", p, m, v), "rank"
    else:
        got, limit, unit = result.peak_in_flight, {s: min(p, m) for s in range(p)}, "stage"
    for key in sorted(limit):
        if got.get(key, 0) > limit[key]:
            call = call_name(which, p, m, v if which == "interleaved" else None)
            return (
                f"{call}: {unit} {key} holds {got[key]} micro-batches' activations at once; "
                f"{practical.ACTION_LISTS[which].label} holds at most {limit[key]} there. Peaks: {got}"
            )
    return None


def _costs_text(which: str, v: int) -> str:
    return f"each chunk F = 1/{v}, B = 2/{v} of a stage" if which == "interleaved" else "F = I = W = 1"

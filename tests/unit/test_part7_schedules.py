"""Part 7 (bonus) on the schedule-language side: the reference interleaved 1F1B and ZB-H1 lists,
the two bubble definitions and their closed forms, per-rank memory, message counts, validation
messages and the ASCII timeline of split backwards and interleaved ranks.

Every expected number comes from a formula written in the test (p stages or ranks, m micro-batches,
v chunks per rank, costs F, B = I + W), never from the simulator's own output.
"""

from __future__ import annotations

import re

import pytest

from autograder.instructor.reference_schedules import (
    interleaved_1f1b_schedule,
    interleaved_actions,
    one_f_one_b_schedule,
    zero_bubble_actions,
    zero_bubble_h1_schedule,
)
from autograder.schedules import (
    Action,
    Costs,
    DeadlockError,
    ScheduleError,
    bubble_ratio,
    cross_rank_messages,
    dependencies,
    expected_bubble,
    expected_messages,
    expected_peak_in_flight,
    format_grid,
    idle_share,
    peak_in_flight_by_rank,
    ratio_from_share,
    share_from_ratio,
    simulate,
    stages_of_rank,
    validate,
    validate_interleaved,
)
from autograder.schedules.timeline import ascii_gantt

A = Action
# The grid of the brief: p in {2, 3, 4}, m in {p, 2p, 8}, v in {2, 3}; interleaving needs p | m.
PMV = sorted({(p, m, v) for p in (2, 3, 4) for m in (p, 2 * p, 8) for v in (2, 3)})
INTERLEAVED = [(p, m, v) for p, m, v in PMV if m % p == 0]
NOT_MULTIPLE = sorted({(p, m) for p, m, v in PMV if m % p})  # only (3, 8)
ZB_PM = sorted({(p, m) for p in (2, 3, 4) for m in (1, 2, p, 2 * p, 8)})  # m < p included


def chunk_costs(forward: float, backward: float, v: int, transfer: float = 0.0) -> Costs:
    """A rank's slice costs F and B; cut in v chunks, each chunk costs F / v and B / v."""
    return Costs(forward=forward / v, backward=backward / v, transfer=transfer)


# -- PyTorch's validator and schedule generators, as an independent check ------------------------------


def torch_schedules():
    return pytest.importorskip("torch.distributed.pipelining.schedules")


def to_torch(schedule):
    S = torch_schedules()
    return {
        rank: [S._Action(a.stage, S._ComputationType(a.kind), a.mb) for a in actions]
        for rank, actions in schedule.items()
    }


def torch_rank_order(class_name: str, p: int, m: int, v: int, rank: int) -> list[Action]:
    """The rank's compute actions as torch's schedule class computes them (idle steps dropped),
    without a process group: only the attributes ``_calculate_single_rank_operations`` reads."""
    cls = getattr(torch_schedules(), class_name)
    obj = object.__new__(cls)
    rounds = max(1, m // p)
    obj.pp_group_size, obj.n_local_stages, obj._n_microbatches = p, v, m
    obj.number_of_rounds, obj.microbatches_per_round = rounds, m // rounds
    try:
        ops = obj._calculate_single_rank_operations(rank)
    except AttributeError as exc:  # a torch whose schedule internals moved
        pytest.skip(f"torch's {class_name} internals changed: {exc}")
    return [A(a.stage_index, a.computation_type.value, a.microbatch_index) for a in ops if a is not None]


# -- the reference lists ----------------------------------------------------------------------------------


@pytest.mark.parametrize("p, m, v", INTERLEAVED)
def test_interleaved_lists_are_valid_for_us_and_for_torch(p, m, v):
    schedule = interleaved_1f1b_schedule(p, m, v)
    validate_interleaved(schedule, p, m, v)
    validate(schedule, p * v, m)
    placement = torch_schedules()._validate_schedule(to_torch(schedule), p, p * v, m)
    assert placement == {s: s % p for s in range(p * v)}  # looped: rank r holds r, r + p, ...
    for rank, actions in schedule.items():
        assert sorted({a.stage for a in actions}) == stages_of_rank(rank, p, v) == list(range(rank, p * v, p))
        assert len(actions) == 2 * m * v and {a.kind for a in actions} == {"F", "B"}


@pytest.mark.parametrize("p, m, v", INTERLEAVED)
def test_interleaved_order_is_megatrons_as_torch_computes_it(p, m, v):
    for rank in range(p):
        assert interleaved_actions(rank, p, m, v) == torch_rank_order("ScheduleInterleaved1F1B", p, m, v, rank)


def test_interleaved_by_hand_p2_m2_v2():
    # rank 0: warm-up 2 (p - 1) + (v - 1) p = 4 forwards: micro-batches 0, 1 through chunk 0 (stage 0),
    # then chunk 1 (stage 2); backwards in reverse chunk order. Rank 1: warm-up 2.
    assert {r: " ".join(map(str, a)) for r, a in interleaved_1f1b_schedule(2, 2, 2).items()} == {
        0: "0F0 0F1 2F0 2F1 2B0 2B1 0B0 0B1",
        1: "1F0 1F1 3F0 3B0 3F1 3B1 1B0 1B1",
    }


@pytest.mark.parametrize("p, m", [(2, 3), (4, 2), (4, 5)])
def test_one_chunk_per_rank_is_plain_1f1b_for_any_m(p, m):
    assert interleaved_1f1b_schedule(p, m, 1) == one_f_one_b_schedule(p, m)


@pytest.mark.parametrize("p, m", NOT_MULTIPLE + [(4, 6), (4, 2), (2, 5)])
def test_interleaved_refuses_m_not_a_multiple_of_p_in_one_line(p, m):
    for v in (2, 3):
        with pytest.raises(ScheduleError) as info:
            interleaved_1f1b_schedule(p, m, v)
        message = str(info.value)
        assert "\n" not in message
        assert f"multiple of the number of ranks (Megatron's constraint), got m={m} with p={p}" in message
        lower, upper = m // p * p, (m // p + 1) * p
        assert f"m={upper}" in message and (f"m={lower}" in message) == (lower > 0)
        assert "1F1B / zero-bubble (any m)" in message


@pytest.mark.parametrize("p, m", ZB_PM)
def test_zero_bubble_lists_are_valid_for_us_and_for_torch(p, m):
    schedule = zero_bubble_h1_schedule(p, m)
    validate(schedule, p, m)
    assert torch_schedules()._validate_schedule(to_torch(schedule), p, p, m) == {s: s for s in range(p)}
    for stage, actions in schedule.items():
        assert sorted(actions) == sorted(A(stage, kind, k) for kind in "FIW" for k in range(m))
        assert actions == torch_rank_order("ScheduleInterleavedZeroBubble", p, m, 1, stage)


def test_zero_bubble_by_hand_p3_m4():
    # warm-up min(p - s - 1, m) forwards as in 1F1B; stage s runs W(k) right after I(k + s)
    assert {s: " ".join(map(str, zero_bubble_actions(s, 3, 4))) for s in range(3)} == {
        0: "0F0 0F1 0F2 0I0 0W0 0F3 0I1 0W1 0I2 0W2 0I3 0W3",
        1: "1F0 1F1 1I0 1F2 1I1 1W0 1F3 1I2 1W1 1I3 1W2 1W3",
        2: "2F0 2I0 2F1 2I1 2F2 2I2 2W0 2F3 2I3 2W1 2W2 2W3",
    }


# -- the two bubble definitions ---------------------------------------------------------------------------


@pytest.mark.parametrize("p, m", [(2, 2), (4, 8), (4, 2), (3, 7), (1, 4)])
def test_idle_share_and_bubble_ratio_of_1f1b(p, m):
    result = simulate(one_f_one_b_schedule(p, m), Costs(forward=1, backward=2))
    assert idle_share(result) == pytest.approx(result.bubble_fraction)
    assert idle_share(result) == pytest.approx((p - 1) / (m + p - 1))
    assert bubble_ratio(result) == pytest.approx((p - 1) / m)
    assert share_from_ratio(bubble_ratio(result)) == pytest.approx(idle_share(result))
    assert ratio_from_share(idle_share(result)) == pytest.approx(bubble_ratio(result))


def test_bubble_definitions_of_nothing_and_their_domains():
    empty = simulate({})
    assert idle_share(empty) == 0 and bubble_ratio(empty) == 0
    assert share_from_ratio(1.0) == 0.5 and ratio_from_share(0.5) == 1.0
    with pytest.raises(ScheduleError, match=r"idle share is in \[0, 1\)"):
        ratio_from_share(1.0)
    with pytest.raises(ScheduleError, match="bubble ratio is >= 0"):
        share_from_ratio(-0.1)


@pytest.mark.parametrize("forward, backward", [(1, 2), (1, 1), (2, 1), (1, 3)])
@pytest.mark.parametrize("p, m", [(1, 3), (2, 1), (3, 2), (4, 4), (4, 8), (5, 7)])
def test_closed_forms_of_naive_gpipe_and_1f1b(p, m, forward, backward):
    from autograder.instructor.reference_schedules import gpipe_schedule
    from autograder.schedules import naive_schedule

    costs = Costs(forward=forward, backward=backward)
    for family, make in (("naive", naive_schedule), ("gpipe", gpipe_schedule), ("1f1b", one_f_one_b_schedule)):
        result, bubble = simulate(make(p, m), costs), expected_bubble(family, p, m, costs=costs)
        assert bubble.makespan == pytest.approx(result.makespan)
        assert bubble.share == pytest.approx(idle_share(result)) and bubble.ratio == pytest.approx(bubble_ratio(result))
    assert expected_bubble("1f1b", p, m, costs=costs).ratio == pytest.approx((p - 1) / m)
    assert expected_bubble("naive", p, m, costs=costs).ratio == pytest.approx(p - 1)


# -- interleaving divides the bubble ratio by v ---------------------------------------------------------


@pytest.mark.parametrize("forward, backward", [(1, 2), (1, 1), (2, 1)])
@pytest.mark.parametrize("p, m, v", INTERLEAVED + [(1, 3, 2), (2, 4, 4)])
def test_interleaving_divides_the_bubble_ratio_by_v_exactly(p, m, v, forward, backward):
    result = simulate(interleaved_1f1b_schedule(p, m, v), chunk_costs(forward, backward, v))
    assert result.busy == pytest.approx({r: m * (forward + backward) for r in range(p)})  # the same work
    assert bubble_ratio(result) == pytest.approx((p - 1) / (v * m), abs=1e-12)
    assert idle_share(result) == pytest.approx((p - 1) / (v * m + p - 1), abs=1e-12)  # not share / v
    bubble = expected_bubble("interleaved-1f1b", p, m, v, Costs(forward=forward, backward=backward))
    assert (
        result.makespan
        == pytest.approx(bubble.makespan)
        == pytest.approx(m * (forward + backward) + (p - 1) * (forward + backward) / v)
    )
    plain = expected_bubble("1f1b", p, m, costs=Costs(forward=forward, backward=backward))
    assert bubble.ratio == pytest.approx(plain.ratio / v)


def test_transfer_cost_eats_the_gain_of_interleaving():
    """Deviation from (p - 1) / (v m): every chunk boundary is a message, so with transfer > 0 the
    ratio is above the formula, and for an expensive transfer more chunks get slower."""
    p, m = 4, 8
    for transfer in (0.1, 0.5):
        ratios = {
            v: bubble_ratio(simulate(interleaved_1f1b_schedule(p, m, v), chunk_costs(1, 2, v, transfer)))
            for v in (1, 2, 3)
        }
        assert all(ratios[v] > (p - 1) / (v * m) for v in ratios)
    makespans = {v: simulate(interleaved_1f1b_schedule(p, m, v), chunk_costs(1, 2, v, 0.5)).makespan for v in (2, 3)}
    assert makespans[3] > makespans[2]
    with pytest.raises(ScheduleError, match="transfer = 0"):
        expected_bubble("interleaved-1f1b", p, m, 2, Costs(transfer=0.5))


# -- ZB-H1: a third of 1F1B's bubble ratio, at 1F1B's peak memory ---------------------------------------


def test_zero_bubble_p4_m8_is_a_third_of_1f1b_by_ratio_not_by_share():
    p, m, f = 4, 8, 1.0  # Costs(): F = 1, B = 2 so I = W = 1 = F
    zb, ofob = simulate(zero_bubble_h1_schedule(p, m)), simulate(one_f_one_b_schedule(p, m))
    assert zb.makespan == m * 3 * f + (p - 1) * f  # 27 = m (F + I + W) + (p - 1)(F + I - W)
    assert ofob.makespan == (m + p - 1) * 3 * f  # 33
    assert bubble_ratio(zb) == pytest.approx((p - 1) / (3 * m))  # 1/8
    assert bubble_ratio(zb) / bubble_ratio(ofob) == pytest.approx(1 / 3)
    share = (p - 1) / (3 * m + p - 1)  # 1/9 against 1F1B's 3/11: 11/27 of it, not a third
    assert idle_share(zb) == pytest.approx(share)
    assert idle_share(zb) / idle_share(ofob) == pytest.approx(share / ((p - 1) / (m + p - 1)))


COSTS_W_AT_MOST_F_AND_I = [(1, 1, 1), (1, 1, 0.5), (2, 1, 1), (1, 2, 1), (1, 0.5, 0.5)]


@pytest.mark.parametrize("forward, input_grad, weight_grad", COSTS_W_AT_MOST_F_AND_I)
@pytest.mark.parametrize("p, m", ZB_PM)
def test_zero_bubble_closed_form(p, m, forward, input_grad, weight_grad):
    f, i, w = forward, input_grad, weight_grad
    costs = Costs(forward=f, backward=i + w, input_grad=i, weight_grad=w)
    result = simulate(zero_bubble_h1_schedule(p, m), costs)
    makespan = m * (f + i + w) + (p - 1) * (f + i - w) if m >= p else (m + p - 1) * (f + i) + w
    assert result.makespan == pytest.approx(makespan)
    assert expected_bubble("zb-h1", p, m, costs=costs).makespan == pytest.approx(makespan)
    assert bubble_ratio(result) == pytest.approx(expected_bubble("zb-h1", p, m, costs=costs).ratio)


def test_zero_bubble_closed_form_refuses_w_above_f_or_i():
    costs = Costs(forward=1, backward=3, input_grad=1, weight_grad=2)
    with pytest.raises(ScheduleError, match=r"needs W <= min\(F, I\), got F=1, I=1, W=2"):
        expected_bubble("zb-h1", 4, 8, costs=costs)
    # the deferred W's no longer fit the cool-down: the simulator is slower than the formula would say
    assert simulate(zero_bubble_h1_schedule(4, 8), costs).makespan > 8 * 4 + 3 * (1 + 1 - 2)


@pytest.mark.parametrize("p, m", ZB_PM)
def test_zero_bubble_peak_in_flight_is_1f1b_stage_0_peak_on_every_stage(p, m):
    zb = simulate(zero_bubble_h1_schedule(p, m)).peak_in_flight
    ofob = simulate(one_f_one_b_schedule(p, m)).peak_in_flight
    assert zb == {s: min(p, m) for s in range(p)} == expected_peak_in_flight("zb-h1", p, m)
    assert ofob == {s: min(p - s, m) for s in range(p)} == expected_peak_in_flight("1f1b", p, m)
    assert max(zb.values()) == max(ofob.values())  # the paper's claim: 1F1B's peak memory


def capped_split_1f1b(p: int, m: int) -> dict[int, list[Action]]:
    """1F1B with B split into I then W at once; only the cool-down runs its I's before its W's.
    It keeps 1F1B's per-stage peaks p - s, the alternative the ZB-H1 paper does not take."""
    schedule = {}
    for s in range(p):
        warmup = min(p - s - 1, m)
        actions = [A(s, "F", k) for k in range(warmup)]
        for k in range(m - warmup):
            actions += [A(s, "F", warmup + k), A(s, "I", k), A(s, "W", k)]
        schedule[s] = (
            actions + [A(s, "I", k) for k in range(m - warmup, m)] + [A(s, "W", k) for k in range(m - warmup, m)]
        )
    return schedule


@pytest.mark.parametrize("p, m", [(3, 6), (4, 8), (4, 4)])
def test_keeping_1f1b_peaks_per_stage_loses_most_of_the_gain(p, m):
    capped = simulate(capped_split_1f1b(p, m))
    validate(capped_split_1f1b(p, m))
    assert capped.peak_in_flight == {s: p - s for s in range(p)}
    zb, ofob = simulate(zero_bubble_h1_schedule(p, m)), simulate(one_f_one_b_schedule(p, m))
    assert zb.makespan < capped.makespan < ofob.makespan
    assert bubble_ratio(capped) > 2 * bubble_ratio(zb)


# -- memory and messages of interleaving --------------------------------------------------------------------


@pytest.mark.parametrize("p, m, v", INTERLEAVED)
def test_interleaved_peaks_per_rank_and_per_chunk(p, m, v):
    result = simulate(interleaved_1f1b_schedule(p, m, v), chunk_costs(1, 2, v))
    expected = {r: min(2 * (p - r - 1) + (v - 1) * p + 1, m * v) for r in range(p)}  # warm-up + 1
    assert peak_in_flight_by_rank(result) == expected == expected_peak_in_flight("interleaved-1f1b", p, m, v)
    assert sorted(result.peak_in_flight) == list(range(p * v))  # per stage, i.e. per chunk
    for rank in range(p):
        chunks = [result.peak_in_flight[s] for s in stages_of_rank(rank, p, v)]
        assert max(chunks) <= expected[rank] <= sum(chunks)
    ofob = simulate(one_f_one_b_schedule(p, m))
    assert peak_in_flight_by_rank(ofob) == ofob.peak_in_flight  # one stage per rank: the same numbers


@pytest.mark.parametrize("p, m, v", INTERLEAVED)
def test_interleaving_multiplies_the_messages(p, m, v):
    assert cross_rank_messages(interleaved_1f1b_schedule(p, m, v)) == 2 * m * (p * v - 1) == expected_messages(p, m, v)
    assert cross_rank_messages(one_f_one_b_schedule(p, m)) == 2 * m * (p - 1) == expected_messages(p, m)
    assert cross_rank_messages(zero_bubble_h1_schedule(p, m)) == 2 * m * (p - 1)  # W sends nothing


def test_split_backward_across_chunk_boundaries():
    # p = 2, v = 2: stage 1 (rank 1) takes its input gradient from stage 2 (rank 0, chunk 1)
    assert dependencies(A(1, "I", 0), 4, {A(2, "I", 0)}) == [A(1, "F", 0), A(2, "I", 0)]
    assert dependencies(A(1, "W", 0), 4) == [A(1, "I", 0)]
    split = {
        r: [x for a in acts for x in ([a] if a.kind == "F" else [A(a.stage, "I", a.mb), A(a.stage, "W", a.mb)])]
        for r, acts in interleaved_1f1b_schedule(2, 4, 2).items()
    }
    validate_interleaved(split, 2, 4, 2)
    torch_schedules()._validate_schedule(to_torch(split), 2, 4, 4)
    result = simulate(split, chunk_costs(1, 2, 2))
    assert result.busy == {0: 12, 1: 12}  # I + W = B: the same work ...
    assert result.makespan <= simulate(interleaved_1f1b_schedule(2, 4, 2), chunk_costs(1, 2, 2)).makespan


def test_closed_forms_refuse_what_they_do_not_cover():
    with pytest.raises(ScheduleError, match="unknown schedule family 'zb-h2'"):
        expected_bubble("zb-h2", 4, 8)
    with pytest.raises(ScheduleError, match="one stage per rank: v must be 1"):
        expected_bubble("1f1b", 4, 8, 2)
    with pytest.raises(ScheduleError, match="multiple of the number of ranks"):
        expected_peak_in_flight("interleaved-1f1b", 3, 8, 2)
    assert expected_bubble("interleaved-1f1b", 3, 8, 1) == expected_bubble("1f1b", 3, 8)


# -- validation messages ------------------------------------------------------------------------------------


def errors(call) -> list[str]:
    with pytest.raises(ScheduleError) as info:
        call()
    lines = str(info.value).splitlines()
    assert lines[1].split()[:2] == ["rank", "0"], "the grid follows the summary line"
    return lines


def marked(lines: list[str]) -> list[str]:
    return [line for line in lines if "<-- ERROR HERE" in line]


def edit(schedule, rank: int, old: str, new: str | None):
    """A copy of ``schedule`` with action ``old`` of ``rank`` replaced by ``new`` (None: removed)."""
    out = {r: list(a) for r, a in schedule.items()}
    i = out[rank].index(Action(int(old[0]), old[1], int(old[2:])))
    out[rank][i : i + 1] = [] if new is None else [Action(int(new[0]), new[1], int(new[2:]))]
    return out


def test_missing_w_marks_its_i():
    lines = errors(lambda: validate(edit(zero_bubble_h1_schedule(3, 4), 1, "1W2", None)))
    assert lines[0] == (
        "missing action 1W2: 1I2 (marked) has no weight-grad half; add 1W2 after it in "
        "rank 1's list (each micro-batch runs F, I and W on every stage)"
    )
    assert [line.split("<--")[1] for line in marked(lines)] == [" ERROR HERE (rank 1: 1I2)"]


def test_w_before_its_i_and_i_before_its_f():
    zb = zero_bubble_h1_schedule(3, 4)  # stage 2: 2F0 2I0 2F1 2I1 2F2 2I2 2W0 ...
    swapped = {**zb, 2: [A(2, "F", 0), A(2, "W", 0)] + [a for a in zb[2][2:] if a != A(2, "W", 0)] + [A(2, "I", 0)]}
    lines = errors(lambda: validate(swapped))
    assert lines[0].startswith("2W0 runs before its input-grad half 2I0 on rank 2")
    assert marked(lines)[0].endswith("(rank 2: 2W0)")
    early_i = {**zb, 0: [A(0, "I", 0)] + [a for a in zb[0] if a != A(0, "I", 0)]}
    lines = errors(lambda: validate(early_i))
    assert lines[0] == "0I0 runs before its forward 0F0 on rank 0 (0F0 is at step 1)"
    assert marked(lines)[0].endswith("(rank 0: 0I0)")


def test_chunk_on_the_wrong_rank():
    # rank 0 runs stage 3's forward of micro-batch 0 (stage 3 = chunk 1 of rank 1 when p = 2)
    schedule = edit(interleaved_1f1b_schedule(2, 2, 2), 0, "2F0", "3F0")
    lines = errors(lambda: validate_interleaved(schedule, 2, 2, 2))
    assert lines[0] == (
        "3F0 is on rank 0, but with looped placement over 2 ranks stage 3 runs on rank 1 "
        "(stage s on rank s % 2: rank r holds stages r, r+2, ...)"
    )
    assert marked(lines) == ["step 2:  3F0     3F0     <-- ERROR HERE (rank 0: 3F0)"]
    lines = errors(lambda: validate(schedule))  # any placement, but a stage lives on one rank
    assert lines[0] == (
        "3F0 is on rank 0, but stage 3 runs on rank 1 (4 of its 5 actions): a stage's weights "
        "live on one rank, so all its actions go in that rank's list"
    )
    assert marked(lines) == ["step 2:  3F0     3F0     <-- ERROR HERE (rank 0: 3F0)"]


def test_contiguous_placement_is_not_the_looped_one():
    # a common slip: rank r holding stages r v .. r v + v - 1 instead of r, r + p, ...
    p, m, v = 2, 4, 2
    contiguous = {
        r: [A((a.stage % p) * v + a.stage // p, a.kind, a.mb) for a in acts]
        for r, acts in interleaved_1f1b_schedule(p, m, v).items()
    }
    lines = errors(lambda: validate_interleaved(contiguous, p, m, v))
    # rank 1's first action is now 2F0 (its chunk 0 renumbered 1 v + 0 = 2), where rank 0 should be
    assert lines[0].startswith("2F0 is on rank 1, but with looped placement over 2 ranks stage 2 runs on rank 0")
    assert marked(lines) == ["step 00:  0F0     2F0     <-- ERROR HERE (rank 1: 2F0)"]  # 16 steps


def test_interleaving_m_not_a_multiple_of_p():
    p, m, v = 4, 6, 2
    schedule = {r: [a for a in acts if a.mb < m] for r, acts in interleaved_1f1b_schedule(p, 8, v).items()}
    lines = errors(lambda: validate_interleaved(schedule, p, m, v))
    assert lines[0].startswith(
        "interleaved 1F1B needs the number of micro-batches to be a multiple of the "
        "number of ranks (Megatron's constraint), got m=6 with p=4 ranks: use m=4 or m=8"
    )
    assert marked(lines) == []  # no single action is at fault
    lines = errors(lambda: validate_interleaved(interleaved_1f1b_schedule(2, 2, 2), 3, 2, 2))
    assert lines[0].startswith("interleaved 1F1B needs") and "got m=2 with p=3 ranks: use m=3" in lines[0]


def test_interleaved_deadlock_is_marked():
    # rank 0 starts with chunk 1 (stage 2), whose forward needs stage 1's, which needs 0F0: after it
    schedule = interleaved_1f1b_schedule(2, 2, 2)
    schedule[0] = [A(2, "F", 0)] + [a for a in schedule[0] if a != A(2, "F", 0)]
    with pytest.raises(DeadlockError) as info:
        validate_interleaved(schedule, 2, 2, 2)
    lines = str(info.value).splitlines()
    assert lines[0].startswith("deadlock: rank 0 is stuck at 2F0 waiting for 1F0")
    assert marked(lines) == ["step 0:  2F0     1F0     <-- ERROR HERE (rank 0: 2F0)"]


def test_interleaved_grid_prints_each_ranks_chunks():
    assert format_grid(interleaved_1f1b_schedule(2, 2, 2)).splitlines()[:4] == [
        "         rank 0  rank 1",
        "step 0:  0F0     1F0",
        "step 1:  0F1     1F1",
        "step 2:  2F0     3F0",
    ]


# -- the ASCII timeline ---------------------------------------------------------------------------------------


def test_ascii_gantt_draws_i_and_w_boxes():
    result = simulate(zero_bubble_h1_schedule(4, 8))
    chart = ascii_gantt(result, width=100)
    rows = [line for line in chart.splitlines() if line.endswith("|")]
    for stage, actions in result.schedule.items():
        assert re.findall(r"[FIW]\d+", rows[stage]) == [f"{a.kind}{a.mb}" for a in actions]
    assert "I input-grad, W weight-grad" in chart.replace("\n", " ")


@pytest.mark.parametrize("width", [100, 200])
def test_ascii_gantt_interleaved_ranks_show_every_boxs_chunk(width):
    p, m, v = 4, 8, 2
    result = simulate(interleaved_1f1b_schedule(p, m, v), chunk_costs(1, 2, v))
    lines = ascii_gantt(result, width=width).splitlines()
    assert all(len(line) <= width for line in lines)
    for rank, actions in result.schedule.items():
        row = next(line for line in lines if line.startswith(f"rank {rank} (stages {rank},{rank + p}) |"))
        chunk_line = lines[lines.index(row) + 1]
        assert chunk_line.split()[0] == "chunk"
        boxes = [c for c in row.split("|")[1] if c in "FB"]
        assert "".join(boxes) == "".join(a.kind for a in actions)  # every action has its box, in order
        assert "".join(chunk_line.split()[1:]) == "".join(str(a.stage // p) for a in actions)

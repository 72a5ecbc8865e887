"""Tests of autograder.schedules and autograder.reference_schedules: parsing, cost model, simulator, validator,
replay, the fixed and the reference schedules.

Every number here is computed by hand (uniform costs F = 1, B = 2, transfer 0 unless stated), with
the timeline drawn in a comment where it is not a textbook formula. Time runs left to right; each
character of a drawing is one time unit.
"""

from __future__ import annotations

import pytest

from autograder.instructor.reference_schedules import gpipe_schedule, one_f_one_b_schedule
from autograder.schedules import (
    Action,
    Costs,
    DeadlockError,
    Event,
    ScheduleError,
    SimResult,
    delayed_backward_schedule,
    dependencies,
    format_grid,
    naive_schedule,
    parse_action,
    parse_schedule,
    replay,
    schedule_from_events,
    simulate,
    timeline_from_events,
    validate,
)

A = Action
REFERENCE_SCHEDULES = [naive_schedule, gpipe_schedule, one_f_one_b_schedule, delayed_backward_schedule]


def spans(result: SimResult) -> dict[int, list[tuple[str, float, float]]]:
    """``{rank: [("1F0", start, end), ...]}``: easy to compare with a hand-drawn timeline."""
    return {rank: [(str(a), s, e) for a, s, e in rows] for rank, rows in result.intervals.items()}


# ------------------------------------------------------------------------------------------------
# Parsing
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("x", ["1F0", " 1F0 ", A(1, "F", 0), (1, "F", 0), [1, "F", 0], Event(1, "F", 0, 0, 1)])
def test_parse_action_accepts_every_spelling(x):
    assert parse_action(x) == A(1, "F", 0)


def test_parse_action_reads_multi_digit_indices():
    assert parse_action("12B3") == A(12, "B", 3)
    assert str(parse_action("12W30")) == "12W30"


@pytest.mark.parametrize(
    "bad, named",
    [
        ("1X0", "'1X0'"),
        ("F0", "'F0'"),
        ("1f0", "'1f0'"),
        ((1, "F", -1), "-1"),
        ((True, "F", 0), "True"),
        ((1, "F", 0.0), "0.0"),
        (("1", "F", 0), "'1'"),
        ((1, "Q", 0), "'Q'"),
        ((1, "F"), "(1, 'F')"),
        (5, "5"),
        (None, "None"),
    ],
)
def test_parse_action_rejects_bad_values_with_one_line_naming_them(bad, named):
    with pytest.raises(ScheduleError) as info:
        parse_action(bad)
    message = str(info.value)
    assert named in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_parse_schedule_from_lists_mappings_and_strings():
    expected = {0: [A(0, "F", 0), A(0, "B", 0)], 1: [A(1, "F", 0), A(1, "B", 0)]}
    assert parse_schedule([["0F0", "0B0"], [(1, "F", 0), A(1, "B", 0)]]) == expected
    assert parse_schedule({1: "1F0 1B0", 0: "0F0, 0B0"}) == expected
    assert list(parse_schedule({1: [], 0: []})) == [0, 1]  # ranks come out sorted
    assert parse_schedule({0: ["0F0", None, "0B0"]}) == {0: expected[0]}  # torch's idle steps dropped


def test_parse_schedule_errors_say_where():
    with pytest.raises(ScheduleError, match=r"rank 1, step 2: action '1Z1': kind 'Z' is not one of F, B, I"):
        parse_schedule({0: "0F0", 1: ["1F0", "1F1", "1Z1"]})
    with pytest.raises(ScheduleError, match="rank must be an int >= 0, got -1"):
        parse_schedule({-1: []})
    with pytest.raises(ScheduleError, match="rank must be an int >= 0, got True"):
        parse_schedule({True: []})
    with pytest.raises(ScheduleError, match="got set"):
        parse_schedule({"0F0"})
    with pytest.raises(ScheduleError, match="rank 0: expected a list of actions, got int 7"):
        parse_schedule({0: 7})
    with pytest.raises(ScheduleError, match=r"rank 0: expected a list of actions, got the single action"):
        parse_schedule([A(0, "F", 0), A(0, "B", 0)])  # one rank's list passed as the whole schedule


# ------------------------------------------------------------------------------------------------
# Cost model
# ------------------------------------------------------------------------------------------------


def test_costs_defaults_split_backward_in_halves():
    c = Costs()
    assert [c.cost(f"0{k}0") for k in "FBIW"] == [1.0, 2.0, 1.0, 1.0]
    c = Costs(forward=2.0, backward=5.0, input_grad=3.0)
    assert [c.cost(f"0{k}0") for k in "FBIW"] == [2.0, 5.0, 3.0, 2.5]


def test_costs_rows_scale_by_rows_over_mean_rows():
    c = Costs(rows=[2, 6])  # mean 4: micro-batch 0 is half the average, 1 is one and a half
    assert c.rows == (2, 6)
    assert [c.cost(a) for a in ("0F0", "0F1", "1B0", "1B1", "0W1")] == [0.5, 1.5, 1.0, 3.0, 1.5]
    with pytest.raises(ScheduleError, match=r"Costs.rows has 2 entries .* 0F2"):
        c.cost("0F2")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"forward": -1.0},
        {"backward": float("nan")},
        {"transfer": float("inf")},
        {"input_grad": -0.5},
        {"forward": True},
        {"rows": ()},
        {"rows": (3, 0)},
        {"rows": (2.5,)},
    ],
)
def test_costs_reject_nonsense(kwargs):
    with pytest.raises(ScheduleError, match="Costs"):
        Costs(**kwargs)


# ------------------------------------------------------------------------------------------------
# Dependencies
# ------------------------------------------------------------------------------------------------


def test_dependencies_follow_the_pipeline():
    assert dependencies(A(0, "F", 3), 4) == []
    assert dependencies(A(2, "F", 3), 4) == [A(1, "F", 3)]
    assert dependencies(A(3, "B", 1), 4) == [A(3, "F", 1)]  # the last stage starts the backward
    assert dependencies(A(1, "B", 1), 4) == [A(1, "F", 1), A(2, "B", 1)]
    assert dependencies(A(1, "I", 1), 4) == [A(1, "F", 1), A(2, "I", 1)]
    assert dependencies(A(1, "W", 1), 4) == [A(1, "I", 1)]
    # a full B may follow a split stage and vice versa: whichever form stage s+1 uses
    assert dependencies(A(1, "B", 1), 4, {A(2, "I", 1)}) == [A(1, "F", 1), A(2, "I", 1)]
    assert dependencies(A(1, "I", 1), 4, {A(2, "B", 1)}) == [A(1, "F", 1), A(2, "B", 1)]


# ------------------------------------------------------------------------------------------------
# Simulation: textbook numbers
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p, m", [(1, 1), (2, 3), (4, 8), (3, 2)])
def test_naive_makespan_is_m_p_times_f_plus_b(p, m):
    result = simulate(naive_schedule(p, m))
    assert result.makespan == m * p * 3
    assert result.busy == {s: 3 * m for s in range(p)}


@pytest.mark.parametrize("p, m", [(1, 4), (2, 2), (4, 8), (4, 2), (3, 7), (5, 1)])
@pytest.mark.parametrize("make", [gpipe_schedule, one_f_one_b_schedule])
def test_gpipe_and_1f1b_makespan_is_m_plus_p_minus_1_times_f_plus_b(make, p, m):
    assert simulate(make(p, m)).makespan == (m + p - 1) * 3


def test_gpipe_bubble_and_speedup_at_p4_m8():
    gpipe, naive = simulate(gpipe_schedule(4, 8)), simulate(naive_schedule(4, 8))
    assert gpipe.makespan == 33 and naive.makespan == 96
    assert gpipe.bubble_fraction == pytest.approx(3 / 11)  # (p - 1) / (m + p - 1)
    assert naive.makespan / gpipe.makespan == pytest.approx(32 / 11)  # ~2.91
    assert naive.bubble_fraction == pytest.approx(3 / 4)  # one stage busy at a time


def test_gpipe_timeline_p2_m2_by_hand():
    #   stage 0: F0 F1 .  .  .  .  B0 B0 B1 B1      F=1 column, B=2 columns
    #   stage 1: .  F0 F1 B0 B0 B1 B1 .  .
    result = simulate(gpipe_schedule(2, 2))
    assert spans(result) == {
        0: [("0F0", 0, 1), ("0F1", 1, 2), ("0B0", 5, 7), ("0B1", 7, 9)],
        1: [("1F0", 1, 2), ("1F1", 2, 3), ("1B0", 3, 5), ("1B1", 5, 7)],
    }
    assert result.span("1B0") == (3, 5)
    assert result.bubble_fraction == pytest.approx(1 - 12 / 18)


@pytest.mark.parametrize("p, m", [(4, 8), (4, 2), (3, 3), (1, 5)])
def test_peak_in_flight_gpipe_holds_all_1f1b_holds_p_minus_s(p, m):
    assert simulate(gpipe_schedule(p, m)).peak_in_flight == {s: m for s in range(p)}
    assert simulate(one_f_one_b_schedule(p, m)).peak_in_flight == {s: min(p - s, m) for s in range(p)}
    assert simulate(naive_schedule(p, m)).peak_in_flight == {s: 1 for s in range(p)}


def test_one_f_one_b_lists_when_fewer_microbatches_than_stages():
    # p=3, m=2: warm-up min(p - s - 1, m) = 2, 1, 0 forwards
    assert parse_schedule(one_f_one_b_schedule(3, 2)) == parse_schedule(
        {
            0: "0F0 0F1 0B0 0B1",
            1: "1F0 1F1 1B0 1B1",
            2: "2F0 2B0 2F1 2B1",
        }
    )
    assert one_f_one_b_schedule(2, 4)[0] == parse_schedule(["0F0 0F1 0B0 0F2 0B1 0F3 0B2 0B3"])[0]


# ------------------------------------------------------------------------------------------------
# The single-process "delayed backward" loop (Option C) on pipelined devices
# ------------------------------------------------------------------------------------------------


def test_delayed_backward_lists():
    assert delayed_backward_schedule(2, 1)[1] == parse_schedule(["1F0 1B0"])[0]
    assert delayed_backward_schedule(3, 4)[2] == parse_schedule(["2F0 2F1 2B0 2F2 2B1 2F3 2B2 2B3"])[0]


def test_delayed_backward_p2_m2_by_hand():
    # Each stage runs F0 F1 B0 B1, the same as GPipe for m = 2:
    #   stage 0: F0 F1 .  .  .  B0 B0 B1 B1          makespan 9
    #   stage 1: .  F0 F1 B0 B0 B1 B1 .  .
    result = simulate(delayed_backward_schedule(2, 2))
    assert spans(result) == {
        0: [("0F0", 0, 1), ("0F1", 1, 2), ("0B0", 5, 7), ("0B1", 7, 9)],
        1: [("1F0", 1, 2), ("1F1", 2, 3), ("1B0", 3, 5), ("1B1", 5, 7)],
    }


def test_delayed_backward_p2_m3_by_hand():
    # Each stage runs F0 F1 B0 F2 B1 B2. 0F2 must wait for 0B0, which waits for 1B0:
    #   t  0  1  2  3  4  5  6  7  8  9 10 11 12 13 14
    #   0: F0 F1 .  .  .  B0 B0 F2 .  .  .  B1 B1 B2 B2     makespan 15
    #   1: .  F0 F1 B0 B0 .  .  .  F2 B1 B1 B2 B2 .  .
    result = simulate(delayed_backward_schedule(2, 3))
    assert spans(result) == {
        0: [("0F0", 0, 1), ("0F1", 1, 2), ("0B0", 5, 7), ("0F2", 7, 8), ("0B1", 11, 13), ("0B2", 13, 15)],
        1: [("1F0", 1, 2), ("1F1", 2, 3), ("1B0", 3, 5), ("1F2", 8, 9), ("1B1", 9, 11), ("1B2", 11, 13)],
    }
    assert result.bubble_fraction == pytest.approx(1 - 18 / 30)
    assert result.peak_in_flight == {0: 2, 1: 2}  # mb i+1 enters before mb i leaves
    assert simulate(naive_schedule(2, 3)).makespan / result.makespan == pytest.approx(18 / 15)


@pytest.mark.parametrize("p", [2, 3, 4, 5])
@pytest.mark.parametrize("m", [2, 3, 4, 8])
def test_delayed_backward_makespan_closed_form(p, m):
    # Stage 0 runs F(i+1) only after B(i-1), and B(i-1) needs F(i) to reach the last stage first
    # (p units) and then B(i-1) to come back (2p units): 3p per micro-batch, so only (p - 1)(F + B)
    # is saved over naive, at the start and the end: makespan 3 (p m - p + 1) for m >= 2.
    assert simulate(delayed_backward_schedule(p, m)).makespan == 3 * (p * m - p + 1)


def test_delayed_backward_speedup_over_naive_at_p4():
    naive4, delayed4 = simulate(naive_schedule(4, 4)), simulate(delayed_backward_schedule(4, 4))
    naive8, delayed8 = simulate(naive_schedule(4, 8)), simulate(delayed_backward_schedule(4, 8))
    assert (naive4.makespan, delayed4.makespan) == (48, 39)
    assert (naive8.makespan, delayed8.makespan) == (96, 87)
    assert naive4.makespan / delayed4.makespan == pytest.approx(16 / 13)  # ~1.23
    assert naive8.makespan / delayed8.makespan == pytest.approx(32 / 29)  # ~1.10, vs 2.91 for GPipe


# ------------------------------------------------------------------------------------------------
# Transfer costs, interleaving, uneven micro-batches, split backward
# ------------------------------------------------------------------------------------------------


def test_transfer_is_added_between_ranks_only():
    # Interleaved: rank 0 holds stages 0 and 2, rank 1 holds stages 1 and 3; transfer 0.5.
    #   0F0 [0, 1]  -> 1F0 [1.5, 2.5] -> 2F0 [3, 4] -> 3F0 [4.5, 5.5]
    #   3B0 [5.5, 7.5] (needs 3F0 on its own rank: no transfer) -> 2B0 [8, 10] -> 1B0 [10.5, 12.5]
    #   -> 0B0 [13, 15]
    result = simulate({0: "0F0 2F0 2B0 0B0", 1: "1F0 3F0 3B0 1B0"}, Costs(transfer=0.5))
    assert spans(result) == {
        0: [("0F0", 0, 1), ("2F0", 3, 4), ("2B0", 8, 10), ("0B0", 13, 15)],
        1: [("1F0", 1.5, 2.5), ("3F0", 4.5, 5.5), ("3B0", 5.5, 7.5), ("1B0", 10.5, 12.5)],
    }
    assert result.peak_in_flight == {0: 1, 1: 1, 2: 1, 3: 1}  # keyed by stage, not rank
    assert simulate(gpipe_schedule(2, 1), Costs(transfer=0.5)).makespan == 1 + 0.5 + 1 + 2 + 0.5 + 2


def test_rows_scaled_costs():
    # GPipe p=2, m=2 with micro-batches of 1 and 3 rows (mean 2): F0 = 0.5, F1 = 1.5, B0 = 1, B1 = 3.
    #   stage 0: F0 [0, .5]  F1 [.5, 2]                     B0 [4.5, 5.5]  B1 [7.5, 10.5]
    #   stage 1:   F0 [.5, 1]   F1 [2, 3.5]  B0 [3.5, 4.5]  B1 [4.5, 7.5]
    result = simulate(gpipe_schedule(2, 2), Costs(rows=(1, 3)))
    assert spans(result) == {
        0: [("0F0", 0, 0.5), ("0F1", 0.5, 2), ("0B0", 4.5, 5.5), ("0B1", 7.5, 10.5)],
        1: [("1F0", 0.5, 1), ("1F1", 2, 3.5), ("1B0", 3.5, 4.5), ("1B1", 4.5, 7.5)],
    }
    assert result.busy == {0: 6, 1: 6}  # same work as two even micro-batches ...
    assert result.makespan == 10.5  # ... but 1.5 later than the even split's 9
    assert result.bubble_fraction == pytest.approx(1 - 12 / 21)


ZERO_BUBBLE_P2_M2 = {0: "0F0 0F1 0I0 0W0 0I1 0W1", 1: "1F0 1I0 1F1 1I1 1W0 1W1"}


def test_split_backward_lets_w_fill_the_bubble():
    # B = 2 is split into I = 1 and W = 1. Stage 1 sends I back first and defers its W; stage 0
    # does W0 while it waits for 1I1 (the gap 1F1 B0 leaves in 1F1B):
    #   t  0  1  2  3  4  5  6                 1F1B (makespan 9):
    #   0: F0 F1 .  I0 W0 I1 W1                0: F0 F1 .  .  B0 B0 .  B1 B1
    #   1: .  F0 I0 F1 I1 W0 W1                1: .  F0 B0 B0 F1 B1 B1 .  .
    split = simulate(ZERO_BUBBLE_P2_M2)
    assert spans(split) == {
        0: [("0F0", 0, 1), ("0F1", 1, 2), ("0I0", 3, 4), ("0W0", 4, 5), ("0I1", 5, 6), ("0W1", 6, 7)],
        1: [("1F0", 1, 2), ("1I0", 2, 3), ("1F1", 3, 4), ("1I1", 4, 5), ("1W0", 5, 6), ("1W1", 6, 7)],
    }
    assert split.makespan == 7 and simulate(one_f_one_b_schedule(2, 2)).makespan == 9
    assert split.bubble_fraction == pytest.approx(1 - 12 / 14)
    assert split.peak_in_flight == {0: 2, 1: 2}  # a micro-batch is held until its W ends
    validate(ZERO_BUBBLE_P2_M2)


def test_w_waits_for_i_on_its_own_rank():
    result = simulate({0: "0F0 0I0 0W0"}, Costs(forward=1, input_grad=3, weight_grad=0.5, transfer=9))
    assert spans(result) == {0: [("0F0", 0, 1), ("0I0", 1, 4), ("0W0", 4, 4.5)]}


def test_empty_schedule_simulates_to_nothing():
    result = simulate({})
    assert (result.makespan, result.bubble_fraction, result.intervals) == (0, 0, {})
    assert result.peak_in_flight == {}


# ------------------------------------------------------------------------------------------------
# Deadlocks
# ------------------------------------------------------------------------------------------------


def test_deadlock_names_each_stuck_rank_and_what_it_waits_for():
    # rank 1 starts with micro-batch 1, whose forward rank 0 only runs after 0B0, which needs 1B0.
    with pytest.raises(DeadlockError) as info:
        simulate({0: "0F0 0B0 0F1 0B1", 1: "1F1 1F0 1B0 1B1"})
    assert str(info.value) == (
        "deadlock: rank 0 is stuck at 0B0 waiting for 1B0 (which rank 1 runs after 1F1); "
        "rank 1 is stuck at 1F1 waiting for 0F1 (which rank 0 runs after 0B0)"
    )
    assert info.value.stuck == {0: A(0, "B", 0), 1: A(1, "F", 1)}
    assert isinstance(info.value, ScheduleError)


def test_deadlock_on_an_action_no_rank_runs():
    with pytest.raises(DeadlockError) as info:
        simulate({0: "0F0 0B0", 1: "1F0"})  # rank 1 forgot 1B0; rank 1 itself finished
    assert str(info.value) == "deadlock: rank 0 is stuck at 0B0 waiting for 1B0 (which no rank runs)"


def test_deadlock_when_a_rank_waits_for_itself():
    with pytest.raises(DeadlockError) as info:
        simulate({0: "0B0 0F0"})
    assert str(info.value) == "deadlock: rank 0 is stuck at 0B0 waiting for 0F0 (which rank 0 runs after 0B0)"


def test_deadlock_waiting_for_another_ranks_next_action_needs_no_note():
    # 1B0 is rank 1's very next action (stuck itself), so its own clause already says where it is.
    with pytest.raises(DeadlockError) as info:
        simulate({0: "0F0 0B0 0F1 0B1", 1: "1B0 1F0 1F1 1B1"})
    assert str(info.value) == (
        "deadlock: rank 0 is stuck at 0B0 waiting for 1B0; "
        "rank 1 is stuck at 1B0 waiting for 1F0 (which rank 1 runs after 1B0)"
    )


def test_simulate_refuses_an_action_listed_twice():
    with pytest.raises(ScheduleError, match=r"0F0 appears twice \(rank 0 step 0 and rank 0 step 1\)"):
        simulate({0: "0F0 0F0 0B0"})


# ------------------------------------------------------------------------------------------------
# Validation and the step x rank grid
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", REFERENCE_SCHEDULES)
@pytest.mark.parametrize("p, m", [(1, 1), (2, 3), (4, 8), (4, 2)])
def test_reference_schedules_are_valid(make, p, m):
    validate(make(p, m), num_stages=p, num_microbatches=m)


def test_validate_accepts_interleaved_placement():
    validate({0: "0F0 2F0 2B0 0B0", 1: "1F0 3F0 3B0 1B0"})


def test_format_grid_layout_and_marks():
    schedule = {0: "0F0 0F1 0B0 0B1", 1: "1F0 1B0 1F1 1B1"}
    assert format_grid(schedule) == (
        "         rank 0  rank 1\n"
        "step 0:  0F0     1F0\n"
        "step 1:  0F1     1B0\n"
        "step 2:  0B0     1F1\n"
        "step 3:  0B1     1B1"
    )
    marked = format_grid(schedule, mark="1F1").splitlines()
    assert marked[3] == "step 2:  0B0     1F1     <-- ERROR HERE (rank 1: 1F1)"
    assert format_grid(schedule, mark=(0, 3)).splitlines()[4].endswith("<-- ERROR HERE (rank 0: 0B1)")
    assert sum("ERROR HERE" in line for line in marked) == 1
    with pytest.raises(ScheduleError, match="1F7 is not in the schedule"):
        format_grid(schedule, mark="1F7")


def test_format_grid_pads_step_numbers_and_ragged_ranks():
    lines = format_grid([[f"0F{k}" for k in range(11)], ["1F0"]]).splitlines()
    assert lines[1] == "step 00:  0F0     1F0"
    assert lines[11] == "step 10:  0F10"


def validation_error(schedule, **kwargs) -> list[str]:
    with pytest.raises(ScheduleError) as info:
        validate(schedule, **kwargs)
    return str(info.value).splitlines()


def test_validate_deadlock_message_is_summary_then_marked_grid():
    with pytest.raises(DeadlockError) as info:
        validate({0: "0F0 0B0 0F1 0B1", 1: "1F1 1F0 1B0 1B1"})
    assert str(info.value) == (
        "deadlock: rank 0 is stuck at 0B0 waiting for 1B0 (which rank 1 runs after 1F1); "
        "rank 1 is stuck at 1F1 waiting for 0F1 (which rank 0 runs after 0B0)\n"
        "         rank 0  rank 1\n"
        "step 0:  0F0     1F1     <-- ERROR HERE (rank 1: 1F1)\n"
        "step 1:  0B0     1F0\n"
        "step 2:  0F1     1B0\n"
        "step 3:  0B1     1B1"
    )


def test_validate_names_a_missing_action():
    lines = validation_error({0: "0F0 0F1 0B0 0B1", 1: "1F0 1B0 1F1"})
    assert lines[0] == (
        "missing action 1B1: every stage must run F and B (or I and W) exactly once for each of the 2 micro-batches"
    )
    assert lines[1].split() == ["rank", "0", "rank", "1"]  # the grid follows
    # the mark is on the action the missing one belongs with: 1F1, whose backward never runs
    assert [line for line in lines if "ERROR HERE" in line] == ["step 2:  0B0     1F1     <-- ERROR HERE (rank 1: 1F1)"]
    lines = validation_error({0: "0F0 0F1 0B0 0B1", 1: "1F0 1B0"})  # nothing of (1, 1) to mark
    assert lines[0].startswith("missing action 1F1 and 1B1:")
    assert not any("ERROR HERE" in line for line in lines)


def test_validate_counts_against_the_requested_sizes():
    lines = validation_error(gpipe_schedule(2, 2), num_microbatches=3)
    assert lines[0].startswith("missing action 0F2 and 0B2:")
    lines = validation_error(gpipe_schedule(2, 2), num_stages=3)
    assert lines[0].startswith("missing action 2F0 and 2B0:")
    lines = validation_error(gpipe_schedule(2, 2), num_microbatches=1)
    assert lines[0] == "0F1: micro-batch 1 is out of range, there are 1 micro-batches (0..0)"
    assert lines[3].endswith("<-- ERROR HERE (rank 0: 0F1)")
    with pytest.raises(ScheduleError, match="num_stages must be an int >= 1, got 0"):
        validate(gpipe_schedule(2, 2), num_stages=0)


def test_validate_marks_a_duplicate_at_its_second_occurrence():
    lines = validation_error({0: "0F0 0F1 0B0 0F1 0B1", 1: "1F0 1F1 1B0 1B1"})
    assert lines[0] == "0F1 is listed twice (first at rank 0, step 1): each action runs exactly once"
    assert lines[5] == "step 3:  0F1     1B1     <-- ERROR HERE (rank 0: 0F1)"


def test_validate_rejects_a_stage_on_the_wrong_rank():
    lines = validation_error({0: "1F0 1B0", 1: "0F0 0B0"})
    assert lines[0] == "1F0 is on rank 0, but with one stage per rank stage 1 must run on rank 1"
    assert lines[2].endswith("<-- ERROR HERE (rank 0: 1F0)")


def test_validate_rejects_backward_before_forward_on_the_same_rank():
    lines = validation_error({0: "0F0 0B1 0B0 0F1", 1: "1F0 1F1 1B0 1B1"})
    assert lines[0] == "0B1 runs before its forward 0F1 on rank 0 (0F1 is at step 3)"
    assert lines[3].endswith("<-- ERROR HERE (rank 0: 0B1)")


def test_validate_rejects_w_before_i_and_mixed_backward_forms():
    lines = validation_error({0: "0F0 0W0 0I0"})
    assert lines[0] == "0W0 runs before its input-grad half 0I0 on rank 0 (0I0 is at step 2)"
    lines = validation_error({0: "0F0 0B0 0I0 0W0"})
    assert lines[0].startswith("0I0 mixes a full backward with a split one: stage 0 micro-batch 0 already has 0B0")
    lines = validation_error({0: "0F0 0I0"})
    assert lines[0].startswith("missing action 0W0:")


# ------------------------------------------------------------------------------------------------
# Recorded events: order, replay, measured timeline
# ------------------------------------------------------------------------------------------------

# GPipe p=2, m=2 run in ONE process (one device, so nothing overlaps), 100 s after the clock's zero.
SERIAL_GPIPE_EVENTS = [
    Event(0, "F", 0, 100, 101),
    Event(1, "F", 0, 101, 102),
    Event(0, "F", 1, 102, 103),
    Event(1, "F", 1, 103, 104),
    Event(1, "B", 0, 104, 106),
    Event(0, "B", 0, 106, 108),
    Event(1, "B", 1, 108, 110),
    Event(0, "B", 1, 110, 112),
]


def test_schedule_from_events_orders_each_stage_by_start():
    shuffled = SERIAL_GPIPE_EVENTS[::-1]
    assert schedule_from_events(shuffled) == parse_schedule(gpipe_schedule(2, 2))


def test_schedule_from_events_breaks_ties_by_end_then_list_order():
    events = [Event(0, "F", 2, 0, 1), Event(0, "F", 1, 0, 0.5), Event(0, "F", 0, 0, 1)]
    assert [str(a) for a in schedule_from_events(events)[0]] == ["0F1", "0F2", "0F0"]
    as_dicts = [e._asdict() for e in events]
    assert schedule_from_events(as_dicts) == schedule_from_events(events)


def test_replay_simulates_the_recorded_order_on_pipelined_devices():
    result = replay(SERIAL_GPIPE_EVENTS)
    assert result.makespan == 9  # GPipe's (m + p - 1)(F + B), not the 12 s the serial run took
    # With transfer 1 the critical path 0F0 > 1F0 1F1 1B0 1B1 > 0B1 crosses ranks twice:
    #   0: F0 F1 .  .  .  .  .  B0 B0 B1 B1
    #   1: .  .  F0 F1 B0 B0 B1 B1 .  .  .
    assert spans(replay(SERIAL_GPIPE_EVENTS, Costs(transfer=1))) == {
        0: [("0F0", 0, 1), ("0F1", 1, 2), ("0B0", 7, 9), ("0B1", 9, 11)],
        1: [("1F0", 2, 3), ("1F1", 3, 4), ("1B0", 4, 6), ("1B1", 6, 8)],
    }


def test_timeline_from_events_keeps_measured_times_shifted_to_zero():
    result = timeline_from_events(SERIAL_GPIPE_EVENTS)
    assert result.makespan == 12
    assert result.span("1B0") == (4, 6)
    assert result.busy == {0: 6, 1: 6}
    assert result.bubble_fraction == pytest.approx(0.5)
    assert result.peak_in_flight == {0: 2, 1: 2}
    assert timeline_from_events([]).makespan == 0


def test_events_with_unknown_microbatch_or_bad_times_are_refused():
    with pytest.raises(ScheduleError, match="micro-batch -1: the tracer could not tell"):
        schedule_from_events([Event(0, "F", -1, 0, 1)])
    with pytest.raises(ScheduleError, match=r"event 1 \(0B0\): ends at 1 before it starts at 2"):
        schedule_from_events([Event(0, "F", 0, 0, 1), Event(0, "B", 0, 2, 1)])
    with pytest.raises(ScheduleError, match="event 0: .* lacks the key 'end'"):
        schedule_from_events([{"stage": 0, "kind": "F", "mb": 0, "start": 0}])

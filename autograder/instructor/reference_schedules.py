"""The reference schedules (TA only: the student release leaves this module out).

* Part 6 (``per_stage.py``: ``gpipe_actions`` and ``one_f_one_b_actions``): GPipe and 1F1B as data,
  ``{stage: [Action, ...]}`` with stage s on rank s, written independently of ``solutions/`` so
  that the repository's tests can compare the two;
* Part 7, the bonus: Megatron-LM's interleaved 1F1B (``interleaved_actions``, several stages per
  rank) and ZB-H1, the memory-efficient zero-bubble schedule of Qi et al. (ICLR 2024)
  (``zero_bubble_actions``, backward split into ``I`` and ``W``).

Code that students receive (the figures, the notebook, ``python -m autograder.runtime``) takes
these lists from the student's own ``per_stage.py`` instead; ``tests/test_student_release.py``
checks that no released file defines or imports them.
"""

from __future__ import annotations

from ..schedules.actions import (
    Action,
    Schedule,
    ScheduleError,
    _check_pm,
    _is_int,
    interleaving_problem,
    stages_of_rank,
)

__all__ = [
    "gpipe_schedule",
    "interleaved_1f1b_schedule",
    "interleaved_actions",
    "one_f_one_b_schedule",
    "zero_bubble_actions",
    "zero_bubble_h1_schedule",
]


def gpipe_schedule(p: int, m: int) -> Schedule:
    """GPipe (all forwards, then all backwards): stage s runs F0..F(m-1) then B0..B(m-1).
    Makespan (m + p - 1) * (F + B); every stage holds all m micro-batches at its peak."""
    p, m = _check_pm(p, m)
    return {s: [Action(s, "F", k) for k in range(m)] + [Action(s, "B", k) for k in range(m)] for s in range(p)}


def one_f_one_b_schedule(p: int, m: int) -> Schedule:
    """1F1B (PipeDream-flush). Stage s: warm-up with min(p - s - 1, m) forwards, then alternate
    one forward and one backward while forwards remain, then the remaining backwards.
    Same makespan as GPipe, but stage s holds at most min(p - s, m) micro-batches."""
    p, m = _check_pm(p, m)
    schedule: Schedule = {}
    for s in range(p):
        warmup = min(p - s - 1, m)
        actions = [Action(s, "F", k) for k in range(warmup)]
        backward = 0
        for forward in range(warmup, m):  # steady state: 1 forward, 1 backward
            actions += [Action(s, "F", forward), Action(s, "B", backward)]
            backward += 1
        actions += [Action(s, "B", k) for k in range(backward, m)]  # cool-down
        schedule[s] = actions
    return schedule


# -- Part 7: interleaved 1F1B (Megatron-LM) ----------------------------------------------------------


def interleaved_actions(rank: int, num_ranks: int, num_microbatches: int, stages_per_rank: int) -> list[Action]:
    """Megatron-LM's interleaved 1F1B for one rank (Narayanan et al., SC 2021; ``megatron.core``
    ``forward_backward_pipelining_with_interleaving``; torch's ``ScheduleInterleaved1F1B`` gives the
    same order when m is a multiple of p).

    p = ``num_ranks`` ranks, v = ``stages_per_rank`` chunks each: rank r holds stages r, r + p, ...,
    r + (v - 1) p (chunk c is stage c p + r). The rank runs m v forwards and m v backwards. The k-th
    forward (k = 0 .. m v - 1) is of chunk ``(k mod p v) // p`` and micro-batch ``(k // p v) p + k mod p``:
    groups of p micro-batches go through chunk 0, then chunk 1, ...; the k-th backward is the same with
    the chunks in reverse order (the last chunk first). Warm-up: ``w = min(2 (p - r - 1) + (v - 1) p,
    m v)`` forwards; steady state: forward w + i, then backward i; cool-down: the remaining backwards.
    Needs m a multiple of p when v >= 2 (ScheduleError otherwise); v = 1 is plain 1F1B, any m.
    Rank r then holds at most ``min(2 (p - r - 1) + (v - 1) p + 1, m v)`` chunk-micro-batches at once.
    """
    stages = stages_of_rank(rank, num_ranks, stages_per_rank)  # checks the arguments
    problem = interleaving_problem(num_ranks, num_microbatches, stages_per_rank)
    if problem:
        raise ScheduleError(problem)
    p, m, v = num_ranks, num_microbatches, stages_per_rank
    if v == 1:
        return one_f_one_b_schedule(p, m)[rank]
    total = m * v
    warmup = min(2 * (p - rank - 1) + (v - 1) * p, total)

    def nth(k: int, kind: str) -> Action:
        group, offset = divmod(k, p * v)
        chunk = offset // p if kind == "F" else v - 1 - offset // p
        return Action(stages[chunk], kind, group * p + offset % p)

    actions = [nth(k, "F") for k in range(warmup)]
    for i in range(total - warmup):  # steady state: one forward, one backward
        actions += [nth(warmup + i, "F"), nth(i, "B")]
    actions += [nth(k, "B") for k in range(total - warmup, total)]  # cool-down
    return actions


def interleaved_1f1b_schedule(p: int, m: int, v: int) -> Schedule:
    """Interleaved 1F1B, ``{rank: interleaved_actions(rank, p, m, v)}``: p ranks, p v stages.

    With chunk costs F / v and B / v (a rank's share of the model cut in v chunks) and no transfer
    cost the step takes m (F + B) + (p - 1)(F + B) / v: the bubble of 1F1B divided by v.
    """
    p, m = _check_pm(p, m)
    return {rank: interleaved_actions(rank, p, m, v) for rank in range(p)}


# -- Part 7: ZB-H1 (zero bubble, 1F1B memory) --------------------------------------------------------


def zero_bubble_actions(stage: int, num_stages: int, num_microbatches: int) -> list[Action]:
    """ZB-H1 (Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024, section 2.1) for one stage.

    1F1B with every backward split into ``I`` (input gradient: the next stage down waits for it)
    and ``W`` (weight gradient: nobody waits for it). Stage s runs a warm-up of
    ``w = min(p - s - 1, m)`` forwards, then, while forwards remain, one forward and one ``I`` (the
    oldest micro-batch), then the remaining ``I`` s; the ``W`` of micro-batch k comes right after
    the ``I`` of micro-batch k + s (stage s lags its ``W`` s micro-batches behind its ``I``), the
    last s ``W`` s at the end. So every stage holds at most min(p, m) micro-batches in flight
    (F start to W end), 1F1B's peak on stage 0, and with F = I = W, m >= p the bubble is
    (p - 1) F per stage, a third of 1F1B's (p - 1)(F + B). Same order as torch's
    ``ScheduleInterleavedZeroBubble`` with one stage per rank.
    """
    p, m = _check_pm(num_stages, num_microbatches)
    if not _is_int(stage) or not 0 <= stage < p:
        raise ScheduleError(f"stage must be an int in 0..{p - 1}, got {stage!r}")
    warmup = min(p - stage - 1, m)
    actions = [Action(stage, "F", k) for k in range(warmup)]
    for k in range(m):  # the k-th input-grad, with the forward that comes before it in steady state
        if warmup + k < m:
            actions.append(Action(stage, "F", warmup + k))
        actions.append(Action(stage, "I", k))
        if k >= stage:
            actions.append(Action(stage, "W", k - stage))
    actions += [Action(stage, "W", k) for k in range(max(m - stage, 0), m)]
    return actions


def zero_bubble_h1_schedule(p: int, m: int) -> Schedule:
    """ZB-H1, ``{stage: zero_bubble_actions(stage, p, m)}``, stage s on rank s; any m >= 1."""
    p, m = _check_pm(p, m)
    return {s: zero_bubble_actions(s, p, m) for s in range(p)}

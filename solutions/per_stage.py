"""Part 6: per-stage schedules as data (tasks ``part6.gpipe_actions`` and ``part6.one_f_one_b_actions``).

The Part 5 loop drives every stage from one process, so a stage must finish a backward before the
loop can give it the next forward: it gains little over the naive pipeline. Large-scale systems
(Megatron-LM, DeepSpeed, ``torch.distributed.pipelining``) run **one process per stage**, and each
process follows its *own* list of actions. This part writes those lists.

An action is ``Action(stage, kind, mb)``, printed ``"1F0"``: stage 1, forward, micro-batch 0.
``kind`` is ``"F"`` (forward) or ``"B"`` (backward). Stage s's process runs its list in order.
``F`` on stage s > 0 first waits for the activation from stage s-1; ``B`` on stage s < p-1 first
waits for the gradient from stage s+1. Nothing else synchronises the stages.

A micro-batch is **in flight** on stage s from the start of its forward until the end of its
backward there: the stage must keep its activations for the backward, so the peak number in
flight is the stage's activation memory.

Check your lists without torch (``autograder.schedules``)::

    from autograder.schedules import validate, simulate, Costs, format_grid
    lists = {s: one_f_one_b_actions(s, 4, 8) for s in range(4)}
    print(format_grid(lists))       # the step x stage grid
    validate(lists, 4, 8)           # raises with the first wrong action marked
    print(simulate(lists, Costs(forward=1, backward=2)).summary())

and run them with one process per stage: ``python -m autograder.runtime --impl assignment``.
"""
from __future__ import annotations

from autograder.schedules import Action


def gpipe_actions(stage: int, num_stages: int, num_microbatches: int) -> list[Action]:
    """GPipe for one stage: the forward of every micro-batch, then the backward of every micro-batch.

    Returns ``[F0, F1, ..., F(m-1), B0, B1, ..., B(m-1)]`` of stage ``stage`` (``m`` is
    ``num_microbatches``), as ``Action(stage, "F", k)`` / ``Action(stage, "B", k)``.

    With p stages and forward/backward costs F and B, the step takes (m + p - 1)(F + B): the pipeline
    fills for p - 1 forward slots and drains for p - 1 backward slots. Every stage keeps all m
    micro-batches in flight before its first backward: the memory cost of GPipe.
    """
    ### BEGIN SOLUTION part6.gpipe_actions: all m forwards of this stage in order, then all m backwards in order
    forwards = [Action(stage, "F", k) for k in range(num_microbatches)]
    backwards = [Action(stage, "B", k) for k in range(num_microbatches)]
    return forwards + backwards
    ### END SOLUTION


def one_f_one_b_actions(stage: int, num_stages: int, num_microbatches: int) -> list[Action]:
    """1F1B (PipeDream-flush) for one stage: warm-up forwards, then one forward / one backward, then cool-down.

    With p stages, stage s (0-based) runs

    * **warm-up**: the forwards of micro-batches ``0 .. w-1``, ``w = min(p - s - 1, m)``;
    * **steady state**: while forwards remain, one forward (the next micro-batch) then one backward
      (the oldest micro-batch still in flight);
    * **cool-down**: the backwards that remain, oldest first.

    Why ``p - s - 1``: the backward of micro-batch 0 can start on stage s only after micro-batch 0 has
    gone forward through the p - s - 1 later stages and its gradient has come back. Stage s fills
    that wait with as many forwards as it can, no more: the last stage needs none (it runs ``F0 B0
    F1 B1 ...``), stage 0 needs p - 1. One more forward would only add a micro-batch in flight; one
    fewer would leave the stage idle while it waits.

    So stage s holds at most ``p - s`` micro-batches in flight (GPipe: all m), and the step still takes
    (m + p - 1)(F + B), like GPipe. When m < p the warm-up is cut to m forwards: the list is then
    all m forwards followed by all m backwards.

    Example, p = 4, m = 6, stage 1: ``F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 B4 B5``.
    """
    ### BEGIN SOLUTION part6.one_f_one_b_actions: warm-up min(p-s-1, m) forwards; then forward k, backward k-warmup while forwards remain; then the remaining backwards
    warmup = min(num_stages - stage - 1, num_microbatches)
    actions = [Action(stage, "F", k) for k in range(warmup)]
    oldest = 0  # the oldest micro-batch still in flight on this stage
    for k in range(warmup, num_microbatches):  # steady state: one forward, one backward
        actions.append(Action(stage, "F", k))
        actions.append(Action(stage, "B", oldest))
        oldest += 1
    actions += [Action(stage, "B", k) for k in range(oldest, num_microbatches)]  # cool-down
    return actions
    ### END SOLUTION

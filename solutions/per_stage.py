"""Parts 6 and 7: per-stage schedules as data (tasks ``part6.*``, and ``part7.*`` for the bonus).

The delayed-backward loop of Part 5 drives every stage from one process, so a stage must finish a
backward before the loop can give it the next forward. Large-scale systems (Megatron-LM, DeepSpeed,
``torch.distributed.pipelining``) run **one process per stage** (a *rank*), and each process follows
its *own* list of actions. These parts write those lists.

* An action is ``Action(stage, kind, mb)``, printed ``"1F0"``: stage 1, forward, micro-batch 0.
  ``kind`` is ``"F"`` (forward), ``"B"`` (backward), or, in Part 7, ``"I"`` and ``"W"``: the two
  halves of a backward (the gradient with respect to the stage's input, then the gradient with
  respect to its weights).
* A rank runs its list in order. ``F`` on stage s > 0 first waits for the activation from stage
  s - 1; a backward (``B``, or ``I``) on stage s < last first waits for the gradient from stage
  s + 1; ``W`` waits only for its own ``I``. Nothing else synchronises the ranks.
* The lists are **valid** when every stage runs one F and one B (or one I and one W) of every
  micro-batch, each after what it needs on its own rank, and together the lists never deadlock.
* A micro-batch is **in flight** on a stage from the start of its forward until the end of its
  backward there (its ``W`` for a split backward): the stage keeps its activations meanwhile, so
  the most micro-batches in flight at once is the stage's activation memory.

Check your lists without torch (``autograder.schedules``)::

    from autograder.schedules import validate, simulate, Costs, format_grid
    lists = {s: one_f_one_b_actions(s, 4, 8) for s in range(4)}
    print(format_grid(lists))       # the step x stage grid
    validate(lists, 4, 8)           # raises with the first wrong action marked
    print(simulate(lists, Costs(forward=1, backward=2)).summary())

and run them with one process per stage: ``python -m autograder.dist --impl assignment``.
"""

from __future__ import annotations

from autograder.schedules import Action


def gpipe_actions(stage: int, num_stages: int, num_microbatches: int) -> list[Action]:
    """GPipe for one stage: the forward of every micro-batch, then the backward of every micro-batch.

    Returns the actions of stage ``stage`` (of ``num_stages``) for ``num_microbatches`` micro-batches,
    as ``Action(stage, "F", k)`` and ``Action(stage, "B", k)``: the order Part 2's step runs on that
    stage, written as a list.
    """
    ### BEGIN SOLUTION part6.gpipe_actions: this stage's forwards, in micro-batch order, then its backwards
    forwards = [Action(stage, "F", k) for k in range(num_microbatches)]
    backwards = [Action(stage, "B", k) for k in range(num_microbatches)]
    return forwards + backwards
    ### END SOLUTION


def one_f_one_b_actions(stage: int, num_stages: int, num_microbatches: int) -> list[Action]:
    """1F1B (PipeDream-flush, Narayanan et al. 2021) for one stage.

    Each stage runs a backward as soon as it can and keeps no more micro-batches in flight than it
    needs to stay as busy as GPipe: after enough forwards to keep it working until the first
    gradient can come back, it alternates one forward and one backward, then finishes the
    backwards. Returns ``Action(stage, "F" | "B", k)`` for k in ``0 .. num_microbatches - 1``.

    Graded: the lists are valid for any p and m (m < p too); simulated on p in-order devices they
    take no longer than GPipe's; and no stage holds more micro-batches in flight than 1F1B needs
    there. Measure what that is per stage (``simulate(...).peak_in_flight``): Part 3 asks about it.
    """
    ### BEGIN SOLUTION part6.one_f_one_b_actions: warm up with just enough forwards to stay busy until the first gradient can come back, then alternate one forward and one backward
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


def interleaved_actions(rank: int, num_ranks: int, num_microbatches: int, stages_per_rank: int) -> list[Action]:
    """Bonus (Part 7): interleaved 1F1B (Megatron-LM) for one rank: the actions it runs, in order.

    The model is cut into p * v stages (p = ``num_ranks``, v = ``stages_per_rank``); each rank holds
    v of them, its model chunks: rank r holds stages r, r + p, ..., r + (v - 1) p
    (``autograder.schedules.stages_of_rank(r, p, v)`` lists them). A micro-batch's forward visits
    ranks 0, 1, ..., p - 1, then rank 0 again for its second chunk, and so on; its backward goes
    back the same way. Each chunk costs 1/v of a Part 6 stage.

    Return ``Action(stage, "F" | "B", mb)`` for each stage this rank holds: exactly one F and one B
    of every micro-batch 0 .. m - 1, nothing of a stage it does not hold. The p lists are valid
    when, run together, no rank waits forever: ``validate_interleaved(lists, p, m, v)`` checks it
    and marks the first wrong action. A rank's activation memory is the number of (chunk,
    micro-batch) pairs in flight on it at once.

    Graded: validity; the simulated step time is Megatron's (its idle time, and so its bubble ratio
    idle / busy, is 1F1B's divided by v); no rank holds more chunk activations than Megatron's.
    Like Megatron-LM, with v >= 2, ``num_microbatches`` must be a multiple of ``num_ranks``: raise
    ``ValueError`` otherwise, with a one-line message. With v = 1 return 1F1B's list, for any m.
    """
    ### BEGIN SOLUTION part7.interleaved_actions: 1F1B on a pipeline p*v stages long folded onto p ranks: micro-batches go through each chunk in groups of p, and the warm-up covers the wait for the first gradient through every later chunk
    p, m, v = num_ranks, num_microbatches, stages_per_rank
    if min(p, m, v) < 1 or not 0 <= rank < p:
        raise ValueError(
            f"need 0 <= rank < num_ranks and positive sizes, got rank={rank}, num_ranks={p}, "
            f"num_microbatches={m}, stages_per_rank={v}"
        )
    if v > 1 and m % p:
        raise ValueError(
            f"interleaving needs num_microbatches to be a multiple of num_ranks: {m} micro-batches "
            f"on {p} ranks (use a multiple of {p}, or stages_per_rank=1)"
        )
    if v == 1:
        return one_f_one_b_actions(rank, p, m)
    chunk_stage = [rank + c * p for c in range(v)]
    forward_order, backward_order = [], []
    for group in range(m // p):  # p micro-batches at a time through chunk 0, then chunk 1, ...
        for c in range(v):
            forward_order += [(chunk_stage[c], group * p + i) for i in range(p)]
            backward_order += [(chunk_stage[v - 1 - c], group * p + i) for i in range(p)]
    warmup = min(2 * (p - rank - 1) + (v - 1) * p, m * v)
    actions = [Action(s, "F", k) for s, k in forward_order[:warmup]]
    for step, (s, k) in enumerate(forward_order[warmup:]):
        actions += [Action(s, "F", k), Action(backward_order[step][0], "B", backward_order[step][1])]
    actions += [Action(s, "B", k) for s, k in backward_order[m * v - warmup :]]
    return actions
    ### END SOLUTION


def zero_bubble_actions(stage: int, num_stages: int, num_microbatches: int) -> list[Action]:
    """Bonus (Part 7): ZB-H1 (Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024) for one stage.

    The backward is split in two: ``I`` (the gradient with respect to the stage's input, which
    stage s - 1 waits for) and ``W`` (the gradient with respect to the stage's weights, which nobody
    waits for). Return, for each micro-batch 0 .. m - 1, exactly one ``F``, one ``I`` and one ``W`` of
    this stage (no ``B``), with I after F and W after I; the p lists together must be valid
    (``validate(lists, p, m)``). A micro-batch stays in flight on a stage until its ``W`` ends.

    Graded: validity (any m, m < p too); simulated with F = I = W, the step time ZB-H1 reaches
    (when m >= p, a third of 1F1B's idle time); no stage ever holds more than min(p, m)
    micro-batches in flight.
    """
    ### BEGIN SOLUTION part7.zero_bubble_actions: keep 1F1B's order of F and I, the only halves on the path between stages; delay each W just enough to fill the idle slots at the end
    warmup = min(num_stages - stage - 1, num_microbatches)
    actions = [Action(stage, "F", k) for k in range(warmup)]
    next_forward, next_weight = warmup, 0
    for k in range(num_microbatches):
        if next_forward < num_microbatches:  # steady state: one forward before each input-gradient
            actions.append(Action(stage, "F", next_forward))
            next_forward += 1
        actions.append(Action(stage, "I", k))
        if k - next_weight >= stage:  # stage s keeps its weight-gradients s micro-batches behind
            actions.append(Action(stage, "W", next_weight))
            next_weight += 1
    actions += [Action(stage, "W", k) for k in range(next_weight, num_microbatches)]
    return actions
    ### END SOLUTION

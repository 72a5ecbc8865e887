"""The specification table: every rule the skeleton, the handout or the README states about a task,
with the graded test that enforces it and what a submission that breaks only that rule is told.

``python -m autograder.rules`` prints it as a Markdown table (rule, where it is stated, its test,
the score-table row that loses the points, what a submission that breaks it is told);
``tests/e2e/test_rules.py`` proves every row: the reference passes
the row's test, and the row's buggy variant (``tests/support/buggy.py``, same id) fails it, with
``says`` in the message, and fails nothing outside its own part.

``test`` is ``<module>::<function>`` under ``autograder/graded/``; ``select`` is the ``pytest -k``
expression the buggy variant is graded with (default: the test's function name).

Not rows of their own: the replayed speedup and the micro-batches in flight of Options B and C, and
the step time and memory of Part 6's lists. They follow from the order (a list or a recorded order
that obeys its schedule's rule has that schedule's time and memory), so no submission can break
them alone; the tests that measure them (``test_replayed_pipeline``, Part 6's) show what a wrong
order costs, and the handout asks students to measure them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    id: str
    group: str  # the score-table row (practical.GROUPS)
    rule: str  # what the skeleton or handout says
    source: str  # where it says so
    test: str  # the graded test that enforces it
    says: str  # a fragment of the message a submission breaking only this rule gets
    select: str = ""  # -k expression for grading the buggy variant (default: the test's function name)


P1, A, B, C, P6 = "part1", "naive", "gpipe", "delayed", "per_stage"
PART = "partition.py: partition"
SPLIT = "microbatch.py: split_microbatches"
LOSS = "microbatch.py: microbatch_loss"
STEPS = "schedules.py: module docstring (contract of every step function)"

RULES = (
    Rule(
        "partition-cover",
        P1,
        "stages are contiguous, non-empty, and hold every layer once, in order",
        PART,
        "test_part1_partition::test_contiguous_cover",
        "in no stage",
    ),
    Rule(
        "partition-non-empty",
        P1,
        "every stage holds at least one layer, also when p is close to the number of layers",
        PART,
        "test_part1_partition::test_contiguous_cover",
        "is empty",
    ),
    Rule(
        "partition-sequential",
        P1,
        "stage s is an nn.Sequential of consecutive layers of the model",
        PART,
        "test_part1_partition::test_contiguous_cover",
        "nn.Sequential",
    ),
    Rule(
        "partition-balance",
        P1,
        "balance by parameter count: the largest stage as small as possible",
        PART,
        "test_part1_partition::test_balanced",
        "best contiguous split",
    ),
    Rule(
        "partition-device",
        P1,
        "stage s is moved to devices[s]",
        PART,
        "test_part1_partition::test_each_stage_on_its_device",
        "must be moved to devices[s]",
    ),
    Rule(
        "partition-no-copies",
        P1,
        "do not copy the layers: the stages share the model's parameters",
        PART,
        "test_part1_partition::test_stages_share_the_models_parameters",
        "hold copies of layers",
    ),
    Rule(
        "partition-bad-stages",
        P1,
        "num_stages < 1 or more stages than layers: ValueError",
        PART,
        "test_part1_partition::test_bad_number_of_stages",
        "must raise ValueError",
    ),
    Rule(
        "partition-bad-devices",
        P1,
        "len(devices) != num_stages: ValueError",
        PART,
        "test_part1_partition::test_devices_list_of_the_wrong_length",
        "must raise ValueError",
    ),
    Rule(
        "split-sizes",
        P1,
        "sizes differ by at most one, larger ones first (torch.tensor_split's)",
        SPLIT,
        "test_part1_microbatch::test_split_sizes_order_and_pairs",
        "torch.chunk gives",
    ),
    Rule(
        "split-order",
        P1,
        "in order: concatenating the micro-batches gives back the batch",
        SPLIT,
        "test_part1_microbatch::test_split_sizes_order_and_pairs",
        "not in order",
    ),
    Rule(
        "split-pairs",
        P1,
        "each micro-batch's targets are the targets of its own rows",
        SPLIT,
        "test_part1_microbatch::test_split_sizes_order_and_pairs",
        "targets are not the targets of its own rows",
    ),
    Rule(
        "split-bad-arguments",
        P1,
        "m < 1, m > rows, or inputs and targets of different lengths: ValueError",
        SPLIT,
        "test_part1_microbatch::test_split_bad_arguments",
        "must raise ValueError",
    ),
    Rule(
        "loss-weight",
        P1,
        "a micro-batch's loss is its share of the full-batch mean loss (rows / batch_size)",
        LOSS,
        "test_part1_microbatch::test_microbatch_losses_add_up",
        "rows / batch_size",
    ),
    Rule(
        "loss-graph",
        P1,
        "returns a tensor you can call .backward() on",
        LOSS,
        "test_part1_microbatch::test_microbatch_losses_add_up",
        "no gradient",
    ),
    Rule(
        "accumulate",
        B,
        "accumulate gradients into the stages' parameters: never zero them",
        STEPS,
        "test_schedules::test_gradients_match_reference",
        "zeroed them",
        "gpipe and gradients_match",
    ),
    Rule(
        "no-step",
        A,
        "never step an optimizer (the weights must not change)",
        STEPS,
        "test_schedules::test_gradients_match_reference",
        "parameter values changed",
        "naive and gradients_match",
    ),
    Rule(
        "weights",
        C,
        "weight each micro-batch's loss so the gradients equal the full-batch mean loss's",
        STEPS,
        "test_schedules::test_gradients_match_reference",
        "weight 1",
        "delayed and gradients_match",
    ),
    Rule(
        "every-microbatch",
        A,
        "every micro-batch goes forward and backward (gradients of the whole batch)",
        "schedules.py: naive_step",
        "test_schedules::test_gradients_match_reference",
        "never ran backward",
        "naive and gradients_match",
    ),
    Rule(
        "return-float",
        B,
        "return the full-batch loss as a Python float",
        STEPS,
        "test_schedules::test_returns_batch_loss",
        "Python float",
        "gpipe and returns_batch_loss",
    ),
    Rule(
        "return-loss-value",
        C,
        "the returned loss is the full-batch mean loss",
        STEPS,
        "test_schedules::test_returns_batch_loss",
        "full-batch mean loss is",
        "delayed and returns_batch_loss",
    ),
    Rule(
        "naive-order",
        A,
        "micro-batch k goes forward and backward before micro-batch k+1 starts",
        "schedules.py: naive_step",
        "test_schedules::test_order_of_events",
        "still in the pipeline",
        "naive and order_of_events",
    ),
    Rule(
        "gpipe-order",
        B,
        "the forward of every micro-batch, then every backward",
        "schedules.py: gpipe_step",
        "test_schedules::test_order_of_events",
        "every forward on a stage comes before any backward",
        "gpipe and order_of_events",
    ),
    Rule(
        "delayed-order",
        C,
        "forward micro-batch i, then the backward of micro-batch i-1; the last after the loop",
        "schedules.py: delayed_backward_step",
        "test_schedules::test_order_of_events",
        "where the loop runs",
        "delayed and order_of_events",
    ),
    Rule(
        "no-sync-in-loop",
        B,
        "call .item() once, at the end: a read inside the loop serialises a GPU pipeline",
        STEPS,
        "test_schedules::test_replayed_pipeline",
        "inside its loop",
        "gpipe and replayed_pipeline",
    ),
    Rule(
        "lists-valid",
        P6,
        "each stage's list has one F and one B per micro-batch, and the lists run together",
        "per_stage.py: module docstring",
        "test_part6_lists::test_lists_are_valid",
        "cannot run",
        "part6",
    ),
    Rule(
        "lists-step-time",
        P6,
        "a stage never waits for work it could have done (the schedule's step time)",
        "per_stage.py: one_f_one_b_actions",
        "test_part6_lists::test_simulated_step_time",
        "time units",
        "part6",
    ),
    Rule(
        "lists-memory",
        P6,
        "1F1B keeps no more micro-batches in flight on a stage than it needs",
        "per_stage.py: one_f_one_b_actions",
        "test_part6_lists::test_activation_memory",
        "in flight",
        "part6",
    ),
)
RULE = {r.id: r for r in RULES}


def markdown() -> str:
    """The specification table as Markdown, one row per rule."""
    from .practical import GROUP

    lines = [
        "| rule | stated in | enforced by | points lost in | the message says |",
        "|---|---|---|---|---|",
    ]
    for r in RULES:
        cells = [r.rule, r.source, f"`{r.test}`", GROUP[r.group].title, f"... {r.says} ..."]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())

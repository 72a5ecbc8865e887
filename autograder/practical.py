"""The registry of the practical: its parts, the tasks students write, the schedules, points and
thresholds, declared once. Every other module, test, figure, notebook check and README table reads
them from here.

Names follow the handout: Option A is the *naive* pipeline, Option B *GPipe*, Option C the
*delayed-backward loop* of Part 5 (driven from one process; not PipeDream's 1F1B); *1F1B* is the
per-stage schedule of Part 6. Part 7 (bonus) adds interleaved 1F1B and zero-bubble (ZB-H1) lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PACKAGE = "assignment"  # the student package; a graded submission is imported as SUBMISSION_PACKAGE
SUBMISSION_PACKAGE = "submission"
NOTEBOOK_ASSIGNMENT, NOTEBOOK = "practical9", "practical9.ipynb"  # nbgrader's assignment id, the notebook
EDITABLE_FILES = ("partition.py", "microbatch.py", "schedules.py", "per_stage.py")
PROVIDED_FILES = ("__init__.py", "model.py", "devices.py", "run.py")


@dataclass(frozen=True)
class Group:
    """A row of the score table: the tests of one task group, in handout order."""

    key: str
    title: str
    part: int  # the handout's part number (0: not a part of the handout)
    bonus: bool = False  # extra credit, outside the 100 points
    scored: bool = True


GROUPS = (
    Group("part1", "Part 1 Partition and micro-batches", 1),
    Group("naive", "Part 1 Option A: naive", 1),
    Group("gpipe", "Part 2 Option B: GPipe", 2),
    Group("delayed", "Part 3 Option C: delayed backward", 3),
    Group("per_stage", "Part 6 Per-stage schedules", 6),
    Group("hidden", "Hidden: other settings", 0),
    Group("bonus", "Part 7 Bonus: interleaved and zero-bubble (extra credit)", 7, bonus=True),
    Group("gpu", "GPU (not scored)", 0, scored=False),
)
GROUP = {g.key: g for g in GROUPS}
GROUP_BY_TITLE = {g.title: g for g in GROUPS}


@dataclass(frozen=True)
class Task:
    """A function students write: ``id`` as in the skeleton's ``NotImplementedError("<id>: <hint>")``."""

    id: str
    file: str
    function: str
    part: int
    old_ids: tuple[str, ...] = ()  # earlier releases' names, still recognised
    old_functions: tuple[str, ...] = ()


TASKS = (
    Task("part1.partition", "partition.py", "partition", 1),
    Task("part1.split_microbatches", "microbatch.py", "split_microbatches", 1),
    Task("part1.microbatch_loss", "microbatch.py", "microbatch_loss", 1),
    Task("part1.naive_step", "schedules.py", "naive_step", 1),
    Task("part2.gpipe_step", "schedules.py", "gpipe_step", 2),
    Task(
        "part3.delayed_backward_step",
        "schedules.py",
        "delayed_backward_step",
        3,
        old_ids=("part3.one_f_one_b_step",),
        old_functions=("one_f_one_b_step",),
    ),
    Task("part6.gpipe_actions", "per_stage.py", "gpipe_actions", 6),
    Task("part6.one_f_one_b_actions", "per_stage.py", "one_f_one_b_actions", 6),
    Task("part7.interleaved_actions", "per_stage.py", "interleaved_actions", 7),
    Task("part7.zero_bubble_actions", "per_stage.py", "zero_bubble_actions", 7),
)
TASK = {t.id: t for t in TASKS}
OLD_TASK_IDS = {old: t.id for t in TASKS for old in t.old_ids}
PART1_HELPERS = ("part1.partition", "part1.split_microbatches", "part1.microbatch_loss")


@dataclass(frozen=True)
class StepSchedule:
    """Options A, B and C: one step function that drives every stage from one process.

    ``max_in_flight``: most micro-batches in flight on a stage, as a function of (p, m);
    ``exact_in_flight``: GPipe must keep exactly that many (all m); ``speed``: the replayed speedup
    over naive each graded m needs (see ``autograder.judge.speed``).
    """

    key: str
    option: str
    label: str
    task: str
    max_in_flight: str  # "1", "m" or "min(2, m)"
    exact_in_flight: bool = False
    speed: dict[int, float] = field(default_factory=dict)

    @property
    def function(self) -> str:
        return TASK[self.task].function

    @property
    def old_functions(self) -> tuple[str, ...]:
        return TASK[self.task].old_functions

    @property
    def group(self) -> Group:
        return GROUP[self.key]

    def in_flight_limit(self, num_stages: int, num_microbatches: int) -> int:
        m = num_microbatches
        return {"1": 1, "m": m, "min(2, m)": min(2, m)}[self.max_in_flight]


STEP_SCHEDULES = {
    "naive": StepSchedule("naive", "A", "A naive", "part1.naive_step", "1"),
    "gpipe": StepSchedule(
        "gpipe", "B", "B GPipe", "part2.gpipe_step", "m", exact_in_flight=True, speed={4: 2.05, 8: 2.60}
    ),
    "delayed": StepSchedule(
        "delayed", "C", "C delayed backward", "part3.delayed_backward_step", "min(2, m)", speed={4: 1.05, 8: 1.05}
    ),
}


@dataclass(frozen=True)
class ActionLists:
    """Part 6 and 7: a function that returns one stage's (or rank's) list of actions."""

    key: str
    label: str
    task: str
    group: str
    per_rank: bool = False  # interleaved: one list per rank, several stages per rank

    @property
    def function(self) -> str:
        return TASK[self.task].function


ACTION_LISTS = {
    "gpipe": ActionLists("gpipe", "GPipe", "part6.gpipe_actions", "per_stage"),
    "1f1b": ActionLists("1f1b", "1F1B", "part6.one_f_one_b_actions", "per_stage"),
    "interleaved": ActionLists("interleaved", "interleaved 1F1B", "part7.interleaved_actions", "bonus", per_rank=True),
    "zero_bubble": ActionLists("zero_bubble", "ZB-H1", "part7.zero_bubble_actions", "bonus"),
}

# Part 1's graded models: widths of a chain of nn.Linear layers (layer i maps widths[i] to widths[i+1]).
# Irregular sizes, so that at every balance setting neither an even split by layer count nor a cut
# where the running total passes k/p of the parameters is optimal (tests/unit/test_partition_cases.py).
PARTITION_MODELS = {
    "A": (32, 32, 32, 24, 16, 24, 12, 32, 8),
    "B": (32, 32, 24, 8, 16, 4, 32, 16, 12, 32),
    "C": (8, 4, 16, 24, 24, 12, 12, 32, 12),
    "D": (8, 16, 8, 16, 8, 16),
    "E": (12, 8, 12, 8, 12, 8, 12),
}

# Gradient tolerance: max |g - g_ref| <= GRAD_RTOL x max |g_ref| over all parameters. Correct schedules
# differ from the float32 single-device reference only by summation order (at most 2.4e-7 x max |g_ref|
# measured over p in 1..4, m in {1, 2, 3, 4, 8}, uneven batches: tests/integration/test_solutions.py);
# a missing or doubled micro-batch moves them by at least 1/m of their size.
GRAD_RTOL = 1e-3
LOSS_RTOL = 1e-4


def task_of_function(function: str) -> Task | None:
    """The task whose function (or an earlier name of it) is ``function``."""
    return next((t for t in TASKS if function == t.function or function in t.old_functions), None)


def group_title(key: str) -> str:
    return GROUP[key].title

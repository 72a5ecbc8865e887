"""The schedule language: pipeline schedules as data (pure Python, no torch).

* :mod:`.actions`: ``Action`` (``1F0``), ``Event``, parsing (strings like ``"1F0"`` welcome);
* :mod:`.simulate`: the cost model :class:`Costs` and the in-order device simulator
  :func:`simulate` (makespan, bubble, peak in-flight micro-batches, deadlock detection);
* :mod:`.validate`: :func:`validate` (and :func:`validate_interleaved` for Megatron's interleaving),
  with a step x rank grid (:func:`format_grid`) marking the first offending action ``<-- ERROR HERE``;
* :mod:`.theory`: the two bubble definitions (:func:`idle_share`, :func:`bubble_ratio`), closed forms
  per schedule family (:func:`expected_bubble`, :func:`expected_peak_in_flight`), message counts;
* :mod:`.replay`: recorded events -> per-stage order, replay on in-order devices, measured timeline;
* :mod:`.library`: the fixed schedules (naive, delayed backward);
* :mod:`.timeline`: pictures (ASCII, Chrome trace, PNG).

Students use it to check their Part 6 lists::

    from autograder.schedules import Action, Costs, format_grid, simulate, validate
"""

from .actions import (
    KIND_NAMES,
    KINDS,
    Action,
    DeadlockError,
    Event,
    Schedule,
    ScheduleError,
    interleaving_problem,
    num_stages_of,
    parse_action,
    parse_schedule,
    stages_of_rank,
)
from .library import delayed_backward_schedule, naive_schedule
from .replay import replay, schedule_from_events, timeline_from_events
from .simulate import Costs, SimResult, dependencies, simulate
from .theory import (
    FAMILIES,
    Bubble,
    bubble_ratio,
    cross_rank_messages,
    expected_bubble,
    expected_messages,
    expected_peak_in_flight,
    idle_share,
    peak_in_flight_by_rank,
    ratio_from_share,
    share_from_ratio,
)
from .validate import format_grid, validate, validate_interleaved

__all__ = [
    "FAMILIES",
    "KINDS",
    "KIND_NAMES",
    "Action",
    "Bubble",
    "Costs",
    "DeadlockError",
    "Event",
    "Schedule",
    "ScheduleError",
    "SimResult",
    "bubble_ratio",
    "cross_rank_messages",
    "delayed_backward_schedule",
    "dependencies",
    "expected_bubble",
    "expected_messages",
    "expected_peak_in_flight",
    "format_grid",
    "idle_share",
    "interleaving_problem",
    "naive_schedule",
    "num_stages_of",
    "parse_action",
    "parse_schedule",
    "peak_in_flight_by_rank",
    "ratio_from_share",
    "replay",
    "schedule_from_events",
    "share_from_ratio",
    "simulate",
    "stages_of_rank",
    "timeline_from_events",
    "validate",
    "validate_interleaved",
]

"""The schedule language: pipeline schedules as data (pure Python, no torch).

* :mod:`.actions`: ``Action`` (``1F0``), ``Event``, parsing (strings like ``"1F0"`` welcome);
* :mod:`.simulate`: the cost model :class:`Costs` and the in-order device simulator
  :func:`simulate` (makespan, bubble, peak in-flight micro-batches, deadlock detection);
* :mod:`.validate`: :func:`validate`, with a step x rank grid (:func:`format_grid`) marking the
  first offending action ``<-- ERROR HERE``;
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
    num_stages_of,
    parse_action,
    parse_schedule,
)
from .library import delayed_backward_schedule, naive_schedule
from .replay import replay, schedule_from_events, timeline_from_events
from .simulate import Costs, SimResult, dependencies, simulate
from .validate import format_grid, validate

__all__ = [
    "KINDS",
    "KIND_NAMES",
    "Action",
    "Costs",
    "DeadlockError",
    "Event",
    "Schedule",
    "ScheduleError",
    "SimResult",
    "delayed_backward_schedule",
    "dependencies",
    "format_grid",
    "naive_schedule",
    "num_stages_of",
    "parse_action",
    "parse_schedule",
    "replay",
    "schedule_from_events",
    "simulate",
    "timeline_from_events",
    "validate",
]

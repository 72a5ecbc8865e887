"""What a multi-process run returns: :class:`RunResult`, merged from the ranks' answers by :func:`merge`."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

import torch

from ..schedules import Action, Event, Schedule, SimResult, timeline_from_events
from .profile import ActionTimes, rank_timeline
from .rank import _parse
from .spec import PipelineSpec


@dataclass
class RunResult:
    """What a multi-process run did.

    ``steps``: the events of each step (seconds since that step's start barrier);
    ``step_times``: per step, the slowest rank's time from the barrier to the end of its list
    (its sends received); ``executed``: ``{rank: [Action]}`` in the order each rank ran them (last
    step); ``loss``: the full-batch loss of the last step; ``grads``: every parameter's gradient
    after the last step (each step starts from zero gradients), keyed like the model's
    ``named_parameters()``; ``profile``: per step, one :class:`ActionTimes` per action (see
    :mod:`autograder.dist.profile`); ``cpu_times``: ``{rank: [CPU seconds its main thread used in
    each step]}``.
    """

    spec: PipelineSpec
    schedule: Schedule
    loss: float
    grads: dict[str, torch.Tensor]
    steps: list[list[Event]]
    step_times: list[float]
    executed: dict[int, list[Action]] = field(default_factory=dict)
    profile: list[list[ActionTimes]] = field(default_factory=list)
    cpu_times: dict[int, list[float]] = field(default_factory=dict)

    @property
    def events(self) -> list[Event]:
        """Events of the last step."""
        return self.steps[-1]

    @property
    def median_step_time(self) -> float:
        return statistics.median(self.step_times)

    def timeline(self, step: int = -1) -> SimResult:
        """The measured timeline of one step, one row per rank (``autograder.schedules.timeline``
        draws it); with one stage per rank, rank = stage."""
        if self.spec.stages_per_rank == 1:
            return timeline_from_events(self.steps[step])
        return rank_timeline(self.steps[step], self.spec.num_stages)


def merge(spec: PipelineSpec, schedule: Schedule, per_rank: list[dict]) -> RunResult:
    """Combine the ranks' answers. On one machine every rank reads the same monotonic clock, so a
    step's times count from the earliest rank leaving the start barrier; across machines each
    rank's times count from its own barrier exit (skew: one barrier's latency)."""
    p = spec.num_stages
    ranks = sorted((r for r in per_rank if r["rank"] < p), key=lambda r: r["rank"])
    one_clock = len({r["host"] for r in ranks}) == 1
    steps, times, profiles = [], [], []
    for i in range(len(ranks[0]["step_times"])):
        base = min(r["step_times"][i][0] for r in ranks)
        evs, ends, prof = [], [], []
        for r in ranks:
            t0, t_end = r["step_times"][i]
            origin = base if one_clock else t0
            evs += [Event(s, k, mb, a - origin, b - origin) for s, k, mb, a, b in r["events"][i]]
            if r.get("profile"):
                prof += [
                    ActionTimes(r["rank"], Action(s, k, mb), *(t - origin for t in times_))
                    for (s, k, mb, _, _), times_ in zip(r["events"][i], r["profile"][i])
                ]
            ends.append(t_end - origin)
        evs.sort(key=lambda e: (e.start, e.end, e.stage))
        steps.append(evs)
        times.append(max(ends))
        profiles.append(prof)
    grads = {n: torch.tensor(g, dtype=torch.float32) for r in ranks for n, g in r["grads"].items() if g is not None}
    executed = {r["rank"]: [Action(*_parse(a)) for a in r["executed"]] for r in ranks}
    loss = next((r["loss"] for r in ranks if r["loss"] is not None), None)
    cpu = {r["rank"]: list(r.get("cpu_times", [])) for r in ranks}
    return RunResult(
        spec, schedule, float(loss) if loss is not None else math.nan, grads, steps, times, executed, profiles, cpu
    )

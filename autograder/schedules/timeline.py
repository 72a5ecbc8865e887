"""Pictures of a pipeline timeline (a :class:`~autograder.schedules.simulate.SimResult`).

* :func:`ascii_gantt`: plain-ASCII chart, one row per rank, for terminals and test failures;
* :func:`chrome_trace` / :func:`write_chrome_trace`: Chrome trace-event JSON, open it in
  https://ui.perfetto.dev or chrome://tracing;
* :func:`save_png`: a PNG Gantt chart (needs matplotlib, the ``plot`` extra).

A result comes from ``simulate`` / ``replay`` (times in cost units) or ``timeline_from_events``
(measured times, in seconds), so real runs and simulations are drawn the same way.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any

from .actions import KIND_NAMES, Action
from .simulate import SimResult

PNG_COLOURS = {"F": "#4C72B0", "B": "#DD8452", "I": "#C44E52", "W": "#8172B3"}
_IDLE = "."


def _stages_by_rank(result: SimResult) -> dict[int, list[int]]:
    return {rank: sorted({a.stage for a, _, _ in rows}) for rank, rows in result.intervals.items()}


def _one_stage_per_rank(result: SimResult) -> bool:
    """True when every rank runs only the stage with its own number (no interleaving)."""
    return all(stages in ([], [rank]) for rank, stages in _stages_by_rank(result).items())


def rank_label(result: SimResult, rank: int) -> str:
    """``"stage 2"`` when rank 2 runs only stage 2, else ``"rank 2 (stages 2,6)"``."""
    if _one_stage_per_rank(result):
        return f"stage {rank}"
    stages = _stages_by_rank(result)[rank]
    return f"rank {rank} (stages {','.join(map(str, stages))})" if stages else f"rank {rank}"


def _chunk_char(index: int) -> str:
    """One character for a rank's chunk index: ``0``-``9``, then ``a``-``z``, then ``+``."""
    return "0123456789abcdefghijklmnopqrstuvwxyz"[index] if index < 36 else "+"


def _column(t: float, scale: float) -> int:
    return int(math.floor(t * scale + 0.5))  # round half up: deterministic, no banker's rounding


def _draw_row(
    rows: list[tuple[Action, float, float]], scale: float, cols: int, chunk_of: dict[int, int] | None = None
) -> tuple[str, str]:
    """The rank's row (boxes labelled ``F0``, or the letter alone when too narrow; ``.`` idle) and,
    with ``chunk_of`` (``{stage: chunk index}``), the chunk line: the chunk of each box at its
    first column, spaces elsewhere."""
    cells = [_IDLE] * cols
    chunks = [" "] * cols
    for action, start, end in rows:
        first = min(_column(start, scale), cols - 1)
        last = min(max(_column(end, scale), first + 1), cols)  # every action gets >= 1 cell
        box = f"{action.kind}{action.mb}"
        if len(box) > last - first:
            box = action.kind  # too narrow for the micro-batch number: the letter alone
        cells[first:last] = box.ljust(last - first)[: last - first]
        if chunk_of is not None:
            chunks[first] = _chunk_char(chunk_of[action.stage])
    return "".join(cells), "".join(chunks)


def ascii_gantt(result: SimResult, width: int = 100, legend: bool = True) -> str:
    """Plain-ASCII Gantt chart of ``result``: one row per rank, time left to right.

    ``width`` is the total width of every line in characters (labels included), so the chart
    fits a ``width``-column terminal; the time axis gets what the row labels leave. Each action
    is a box starting with its letter and micro-batch (``F0``, ``I3``, ``W3``), padded with spaces
    to its duration; ``.`` is idle time. A box too narrow for its label shows the letter only.
    When a rank runs several stages (interleaving), its row is followed by a ``chunk`` line that
    puts under the first column of every box the index of its stage among the rank's stages
    (``0`` = the rank's first stage, the row label lists them), so every box shows its chunk even
    when only its letter fits. The header gives the makespan, the bubble fraction (idle share) and
    how much time one column is; header and legend wrap to ``width``. When a time unit gets two
    columns or more, it gets a whole number of them (the chart may then be narrower than
    ``width``), so actions of equal cost are drawn equally wide.
    """
    if not isinstance(width, int) or width < 20:
        raise ValueError(f"ascii_gantt: width must be an int >= 20 (characters per line), got {width!r}")
    header = f"makespan {result.makespan:.4g}, bubble fraction {result.bubble_fraction:.3f}"
    if not result.intervals or result.makespan <= 0:
        return "\n".join(textwrap.wrap(header, width) + ["(no actions)"])
    labels = {rank: rank_label(result, rank) for rank in result.intervals}
    label_width = max(len(label) for label in labels.values())
    cols = width - label_width - 3  # "label |chart|"
    if cols < 10:
        raise ValueError(f"ascii_gantt: width {width} leaves {cols} columns for time; use a larger width")
    scale = cols / result.makespan
    if scale >= 2:  # whole columns per time unit: equal durations get equal boxes
        scale = math.floor(scale)
        cols = min(cols, _column(result.makespan, scale))
    interleaved = not _one_stage_per_rank(result)
    stages = _stages_by_rank(result)
    lines = textwrap.wrap(header + f", 1 column = {result.makespan / cols:.3g}", width)
    for rank, rows in result.intervals.items():
        chunk_of = {stage: i for i, stage in enumerate(stages[rank])} if interleaved else None
        row, chunks = _draw_row(rows, scale, cols, chunk_of)
        lines.append(f"{labels[rank]:<{label_width}} |{row}|")
        if interleaved:
            lines.append(f"{'chunk':>{label_width}}  {chunks}".rstrip())
    end = f"{result.makespan:.4g}"
    lines.append(" " * (label_width + 1) + "0" + end.rjust(cols + 1))
    if legend:
        kinds = sorted({a.kind for rows in result.intervals.values() for a, _, _ in rows}, key="FBIW".index)
        keys = ", ".join(f"{k} {KIND_NAMES[k]}" for k in kinds)
        chunk_key = "; chunk line: each box's chunk, 0 = the rank's first stage" if interleaved else ""
        lines += textwrap.wrap(f"legend: {keys}, {_IDLE} idle; box width = duration{chunk_key}", width)
    return "\n".join(lines)


def chrome_trace(result: SimResult, unit_s: float = 1.0) -> dict[str, Any]:
    """Chrome trace-event JSON of ``result`` (open in Perfetto or chrome://tracing).

    One complete event (``ph: "X"``) per action: ``pid`` 0, ``tid`` = rank, ``ts`` and ``dur`` in
    microseconds (= time x ``unit_s`` x 1e6: ``unit_s`` is the seconds per time unit of
    ``result``, 1.0 for measured timelines), ``args`` with stage, mb and kind. Metadata events
    name the process and each thread ("stage N").
    """
    if not (isinstance(unit_s, (int, float)) and math.isfinite(unit_s) and unit_s > 0):
        raise ValueError(f"chrome_trace: unit_s must be a positive number of seconds, got {unit_s!r}")
    us = unit_s * 1e6
    events: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": 0, "tid": 0, "args": {"name": "pipeline"}}
    ]
    for rank in result.intervals:
        events.append(
            {"name": "thread_name", "ph": "M", "pid": 0, "tid": rank, "args": {"name": rank_label(result, rank)}}
        )
        events.append({"name": "thread_sort_index", "ph": "M", "pid": 0, "tid": rank, "args": {"sort_index": rank}})
    for rank, rows in result.intervals.items():
        for action, start, end in rows:
            events.append(
                {
                    "name": str(action),
                    "cat": KIND_NAMES[action.kind],
                    "ph": "X",
                    "ts": start * us,
                    "dur": (end - start) * us,
                    "pid": 0,
                    "tid": rank,
                    "args": {"stage": action.stage, "mb": action.mb, "kind": action.kind},
                }
            )
    return {"traceEvents": events, "displayTimeUnit": "ms"}


def write_chrome_trace(result: SimResult, path: str | Path, unit_s: float = 1.0) -> Path:
    """Write :func:`chrome_trace` of ``result`` to ``path`` (JSON); returns the path."""
    path = Path(path)
    path.write_text(json.dumps(chrome_trace(result, unit_s)))
    return path


def save_png(result: SimResult, path: str | Path, title: str | None = None) -> Path:
    """Draw ``result`` as a Gantt chart PNG at ``path``; returns the path.

    One row per rank (stage 0 on top), F / B / I / W boxes in distinct colours with the
    micro-batch number inside, idle time left blank; makespan and bubble fraction in the title.
    Uses matplotlib's Agg canvas directly (no pyplot, no global backend change).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError:
        raise RuntimeError("PNG timelines need matplotlib: pip install 'pipeline-practical[plot]'") from None
    ranks = list(result.intervals)
    interleaved = not _one_stage_per_rank(result)
    fig = Figure(
        figsize=(min(4 + 0.25 * sum(len(r) for r in result.intervals.values()), 16), 1.2 + 0.6 * max(len(ranks), 1)),
        dpi=100,
    )
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for row, rank in enumerate(ranks):
        for action, start, end in result.intervals[rank]:
            ax.barh(
                row,
                end - start,
                left=start,
                height=0.8,
                color=PNG_COLOURS[action.kind],
                edgecolor="black",
                linewidth=0.5,
            )
            text = str(action) if interleaved else str(action.mb)
            ax.text((start + end) / 2, row, text, ha="center", va="center", fontsize=7, color="white", clip_on=True)
    ax.set_yticks(range(len(ranks)), [rank_label(result, r) for r in ranks])
    ax.set_ylim(len(ranks) - 0.5, -0.5)  # stage 0 on top
    ax.set_xlim(0, result.makespan if result.makespan > 0 else 1)
    ax.set_xlabel("time")
    ax.set_facecolor("#f2f2f2")  # idle time shows as grey background
    kinds = sorted({a.kind for rows in result.intervals.values() for a, _, _ in rows}, key="FBIW".index)
    if kinds:
        ax.legend(
            handles=[Patch(color=PNG_COLOURS[k], label=f"{k} {KIND_NAMES[k]}") for k in kinds],
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
            fontsize=8,
            frameon=False,
        )
    head = f"makespan {result.makespan:.4g}, bubble fraction {result.bubble_fraction:.3f}"
    ax.set_title(f"{title}: {head}" if title else head, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path

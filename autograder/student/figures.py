"""Figures of a run of the schedules: ``python -m assignment.run --sweep --plot DIR``.

From the rows of ``run`` (one per schedule and number of micro-batches m: Options A, B, C, and the
student's own per-stage 1F1B lists once Part 6 is done) this writes into DIR:

* ``timeline-<schedule>-p<p>-m<m>-replayed.png|.json``: the order the schedule really ran in,
  replayed on p in-order devices (F = rows of the micro-batch, B = twice that), as a Gantt chart
  and as a Chrome trace (open it in https://ui.perfetto.dev);
* ``timeline-<schedule>-p<p>-m<m>-measured.png|.json``: the same step as it really ran on this
  machine (times in seconds; on one device the stages take turns);
* ``sweep.png`` + ``sweep.json``: measured step time (median and interquartile range of block medians), replayed
  speedup over naive and bubble fraction against m;
* ``in_flight.png`` + ``in_flight.json``: per stage, at every m, the most micro-batches in flight and the
  most bytes of saved activations held at once (the activation memory each stage needs).

The JSON files hold the numbers the PNGs show, so tests (and students) can check them. PNGs need
matplotlib (the ``plot`` extra); without it only the JSON is written, and ``warn`` says so once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..schedules import timeline_from_events
from ..schedules.timeline import PNG_COLOURS, save_png, write_chrome_trace

LABELS = {"naive": "A naive", "gpipe": "B GPipe", "delayed": "C delayed backward", "1f1b": "per-stage 1F1B"}
STYLE = {  # colour, marker, line style: GPipe and 1F1B coincide in time, so 1F1B is drawn dashed
    "naive": ("#555555", "o", "-"),
    "gpipe": (PNG_COLOURS["F"], "s", "-"),
    "delayed": (PNG_COLOURS["B"], "^", "-"),
    "1f1b": ("#2CA02C", "D", "--"),
}


def _point(r: dict) -> dict[str, Any]:
    result, timing = r["replayed"], r["timing"]
    peaks = result.peak_in_flight
    return {
        "m": r["m"],
        "step_ms": None if timing is None else timing.median,
        "step_range_ms": None if timing is None else [timing.low, timing.high],
        "speedup": r["speedup"],  # replayed, over the naive schedule
        "bubble": result.bubble_fraction,
        "makespan": result.makespan,
        "peak_in_flight": [peaks.get(s, 0) for s in range(len(r["held_bytes"]))],
        "peak_saved_bytes": list(r["held_bytes"]),
        "rows_per_microbatch": list(r["rows"]),
        "correct": None if r["loss"] is None else r["rel_diff"] <= 1e-3,
    }


def sweep_data(results: list[dict], p: int, setting: dict | None = None) -> dict[str, Any]:
    """The numbers of the Part 4 figures, JSON-ready: ``{"p", "microbatches", "setting",
    "schedules": {name: {"label", "points": [{"m", "step_ms", "step_range_ms", "speedup", "bubble",
    "makespan", "peak_in_flight", "peak_saved_bytes", "rows_per_microbatch", "correct"}, ...]}}}``."""
    schedules: dict[str, dict[str, Any]] = {}
    for r in sorted(results, key=lambda r: (list(LABELS).index(r["name"]), r["m"])):
        entry = schedules.setdefault(r["name"], {"label": LABELS[r["name"]], "points": []})
        entry["points"].append(_point(r))
    return {
        "p": p,
        "microbatches": sorted({r["m"] for r in results}),
        "setting": dict(setting or {}),
        "costs": {"forward": 1.0, "backward": 2.0, "note": "per average micro-batch, scaled by its rows"},
        "schedules": schedules,
    }


def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise RuntimeError("PNG figures need matplotlib: pip install 'pipeline-practical[plot]'") from None
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _axes_against_m(fig, count: int, ms: list[int], titles: tuple[str, ...]):
    axes = [fig.add_subplot(1, count, i + 1) for i in range(count)]
    for ax, title in zip(axes, titles):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ms, [str(m) for m in ms])
        ax.minorticks_off()
        ax.set_xlabel("micro-batches m")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
    return axes


def plot_sweep(sweep: dict[str, Any], path: Path, title: str = "") -> Path:
    """Three panels against m: measured step time (with its range), replayed speedup, bubble fraction."""
    fig = _figure(15, 4.6)
    axes = _axes_against_m(
        fig,
        3,
        sweep["microbatches"],
        (
            "measured step time (ms, median and IQR of blocks)",
            f"replayed speedup over naive (p = {sweep['p']})",
            "bubble fraction (replayed)",
        ),
    )
    for name, entry in sweep["schedules"].items():
        colour, marker, line = STYLE[name]
        kw = dict(color=colour, marker=marker, linestyle=line, label=entry["label"])
        xs = [pt["m"] for pt in entry["points"]]
        timed = [pt for pt in entry["points"] if pt["step_ms"] is not None]
        if timed:
            low = [pt["step_ms"] - pt["step_range_ms"][0] for pt in timed]
            high = [pt["step_range_ms"][1] - pt["step_ms"] for pt in timed]
            axes[0].errorbar(
                [pt["m"] for pt in timed], [pt["step_ms"] for pt in timed], yerr=[low, high], capsize=3, **kw
            )
        axes[1].plot(xs, [pt["speedup"] for pt in entry["points"]], **kw)
        axes[2].plot(xs, [pt["bubble"] for pt in entry["points"]], **kw)
    axes[0].set_ylim(bottom=0)
    axes[2].set_ylim(0, 1)
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:  # a panel can be empty (no schedule was timed)
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return Path(path)


def plot_memory(sweep: dict[str, Any], path: Path, title: str = "") -> Path:
    """Two panels against m, stage 0 (the stage that holds the most): micro-batches in flight, KiB held."""
    fig = _figure(11, 4.4)
    axes = _axes_against_m(
        fig,
        2,
        sweep["microbatches"],
        ("peak micro-batches in flight on stage 0", "peak saved activations on stage 0 (KiB)"),
    )
    for name, entry in sweep["schedules"].items():
        colour, marker, line = STYLE[name]
        kw = dict(color=colour, marker=marker, linestyle=line, label=entry["label"])
        xs = [pt["m"] for pt in entry["points"]]
        axes[0].plot(xs, [pt["peak_in_flight"][0] for pt in entry["points"]], **kw)
        axes[1].plot(xs, [pt["peak_saved_bytes"][0] / 1024 for pt in entry["points"]], **kw)
    for ax in axes:
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    fig.suptitle(
        title or f"activation memory, p = {sweep['p']} (same batch, so a micro-batch is smaller at larger m)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, format="png")
    return Path(path)


def _write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def write_figures(results: list[dict], args, out_dir: Path, warn: Callable[[str], None] = print) -> list[Path]:
    """Write every figure and its data for ``results`` into ``out_dir``; returns the paths written.

    ``args`` is run's parsed command line (stages, model, width, depth, batch, device, seed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    p = args.stages
    setting = {
        k: getattr(args, k)
        for k in ("model", "width", "depth", "batch", "device", "seed", "threads")
        if hasattr(args, k)
    }
    where = f"{args.model} width {args.width} depth {args.depth} batch {args.batch}"
    sweep = sweep_data(results, p, setting)
    written = [_write_json(out_dir / "sweep.json", sweep), _write_json(out_dir / "in_flight.json", sweep)]
    pngs: list[tuple[Callable[..., Path], tuple]] = [
        (plot_sweep, (sweep, out_dir / "sweep.png", f"Part 4 sweep, p = {p} ({where})")),
        (plot_memory, (sweep, out_dir / "in_flight.png")),
    ]
    for r in results:
        stem, title = f"timeline-{r['name']}-p{p}-m{r['m']}", f"{LABELS[r['name']]}, p={p}, m={r['m']}"
        for suffix, result, note in (
            ("replayed", r["replayed"], "replayed"),
            ("measured", timeline_from_events(r["events"]), "measured, seconds"),
        ):
            written.append(write_chrome_trace(result, out_dir / f"{stem}-{suffix}.json"))
            pngs.append((save_png, (result, out_dir / f"{stem}-{suffix}.png", f"{title} ({note})")))
    for draw, draw_args in pngs:
        try:
            written.append(draw(*draw_args))
        except RuntimeError as exc:  # no matplotlib: the JSON data is there all the same
            warn(f"(no PNGs: {exc})")
            break
    return written

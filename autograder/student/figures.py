"""Figures of a run of the schedules: ``python -m assignment.run --sweep --plot DIR``.

From the results of ``run.run_schedule`` (one per schedule and number of micro-batches m) this
writes into DIR:

* ``timeline-<schedule>-p<p>-m<m>-replayed.png|.json``: the order the schedule really ran in,
  replayed on p in-order devices (F = rows of the micro-batch, B = twice that), as a Gantt chart
  and as a Chrome trace (open it in https://ui.perfetto.dev);
* ``timeline-<schedule>-p<p>-m<m>-measured.png|.json``: the same step as it really ran on this
  machine (times in seconds; on one device the stages take turns);
* ``timeline-1f1b-p<p>-m<m>-simulated.png|.json``: per-stage 1F1B (PipeDream-flush) simulated
  under the same costs, for comparison: the student's own lists of Part 6
  (``<package>/per_stage.py``, ``one_f_one_b_actions``), once written and valid;
* ``sweep.png`` + ``sweep.json``: measured step time, replayed speedup over naive and bubble
  fraction against m, for A, B, C and per-stage 1F1B, with the theory curves;
* ``in_flight.png`` + ``in_flight.json``: peak micro-batches in flight per stage (the activation
  memory each stage needs) for every schedule at the largest m.

The JSON files hold the numbers the PNGs show, so tests (and students) can check them: with
uniform costs, GPipe's bubble fraction is (p-1)/(m+p-1), 3/11 at p = 4, m = 8, and so is
per-stage 1F1B's; GPipe keeps m micro-batches in flight on every stage, 1F1B min(p - s, m) on
stage s. PNGs need matplotlib (the ``plot`` extra); without it only the JSON is written.

While ``one_f_one_b_actions`` is not implemented (or its lists are not a valid schedule) the
per-stage 1F1B curve, bars and timelines are left out and ``warn`` is told in one line which task
to do; everything else is drawn all the same.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from ..schedules import Costs, Schedule, naive_schedule, parse_schedule, simulate, timeline_from_events, validate
from ..schedules.timeline import PNG_COLOURS, save_png, write_chrome_trace

LABELS = {
    "naive": "A naive",
    "gpipe": "B GPipe",
    "delayed": "C delayed backward",
    "1f1b": "per-stage 1F1B (simulated)",
}
STYLE = {  # colour, marker, line style: GPipe and 1F1B coincide in time, so 1F1B is drawn hollow and dashed
    "naive": ("#555555", "o", "-"),
    "gpipe": (PNG_COLOURS["F"], "s", "-"),
    "delayed": (PNG_COLOURS["B"], "^", "-"),
    "1f1b": ("#2CA02C", "D", "--"),
}
COSTS = {"forward": 1.0, "backward": 2.0}  # per average micro-batch, as in run.py's replay
ONE_F_ONE_B_TASK = "part6.one_f_one_b_actions"
PACKAGES = ("solutions", "assignment")  # where per_stage.py is looked for when the caller's package has none


def _costs(rows: Iterable[int]) -> Costs:
    return Costs(forward=COSTS["forward"], backward=COSTS["backward"], rows=tuple(rows))


def _point(m: int, result, serial: float, step_ms: Optional[float], ok: Optional[bool]) -> dict[str, Any]:
    peaks = result.peak_in_flight
    return {
        "m": m,
        "step_ms": step_ms,  # measured median step time; None for simulated schedules
        "speedup": serial / result.makespan,  # replayed, over the naive schedule
        "bubble": result.bubble_fraction,
        "makespan": result.makespan,
        "peak_in_flight": [peaks.get(s, 0) for s in range(len(result.intervals))],
        "correct": ok,
    }


def _has_per_stage(package: Optional[str]) -> bool:
    if not package:
        return False
    try:
        return importlib.util.find_spec(f"{package}.per_stage") is not None
    except (ImportError, ValueError):
        return False


def per_stage_1f1b(package: Optional[str], p: int, ms: Iterable[int]) -> tuple[dict[int, Schedule], Optional[str]]:
    """The student's per-stage 1F1B lists, ``{m: {stage: [Action, ...]}}`` for each m in ``ms``.

    Built from ``<package>/per_stage.py`` (``one_f_one_b_actions(stage, p, m)`` for every stage) and
    validated. Returns ``(lists, None)``, or ``({}, note)`` with a one-line note saying why there are
    none: the task is not implemented yet, or the student's code fails or gives an invalid schedule.
    """
    if not _has_per_stage(package):
        return {}, "(no per-stage 1F1B in the figures: no per_stage.py found)"
    where = f"{package}/per_stage.py"
    lists: dict[int, Schedule] = {}
    try:
        module = importlib.import_module(f"{package}.per_stage")
        for m in ms:
            schedule = parse_schedule({s: module.one_f_one_b_actions(s, p, m) for s in range(p)})
            validate(schedule, p, m)
            lists[m] = schedule
    except NotImplementedError:
        return {}, f"(no per-stage 1F1B in the figures: implement {ONE_F_ONE_B_TASK} in {where}, Part 6)"
    except Exception as exc:  # the student's code: one line, never a traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return {}, (f"(no per-stage 1F1B in the figures: {ONE_F_ONE_B_TASK} of {where} at p={p}: "
                    f"{type(exc).__name__}: {first})")
    return lists, None


def sweep_data(results: list[dict], p: int, setting: Optional[dict] = None,
               one_f_one_b: Optional[dict[int, Schedule]] = None) -> dict[str, Any]:
    """The numbers of the Part 4 figure, JSON-ready.

    ``results``: dicts from ``run.run_schedule`` (keys name, m, ms, replayed, speedup, rows,
    rel_diff). ``one_f_one_b``: per-stage 1F1B lists by m (:func:`per_stage_1f1b`); they are
    simulated with the same costs and added as the ``1f1b`` curve for every m present that has one.
    Returns ``{"p", "microbatches", "costs", "setting", "schedules": {name: {"label",
    "simulated", "points": [{"m", "step_ms", "speedup", "bubble", "makespan", "peak_in_flight",
    "correct"}, ...]}}, "theory": {"bubble": {m: (p-1)/(m+p-1)}, "ideal_speedup": {m: m p/(m+p-1)}}}``.
    """
    schedules: dict[str, dict[str, Any]] = {}
    rows_of: dict[int, tuple[int, ...]] = {}
    for r in sorted(results, key=lambda r: (list(LABELS).index(r["name"]), r["m"])):
        rows_of.setdefault(r["m"], tuple(r["rows"]))
        serial = simulate(naive_schedule(p, r["m"]), _costs(r["rows"])).makespan
        entry = schedules.setdefault(r["name"], {"label": LABELS[r["name"]], "simulated": False, "points": []})
        entry["points"].append(_point(r["m"], r["replayed"], serial, r["ms"], r["rel_diff"] <= 1e-3))
    ms = sorted(rows_of)
    one_f_one_b = one_f_one_b or {}
    lists = {m: one_f_one_b[m] for m in ms if m in one_f_one_b}
    if lists:
        entry = schedules.setdefault("1f1b", {"label": LABELS["1f1b"], "simulated": True, "points": []})
        for m, schedule in lists.items():
            costs = _costs(rows_of[m])
            serial = simulate(naive_schedule(p, m), costs).makespan
            entry["points"].append(_point(m, simulate(schedule, costs), serial, None, None))
    return {
        "p": p,
        "microbatches": ms,
        "costs": dict(COSTS, note="per average micro-batch; B = 2 F; scaled by each micro-batch's rows"),
        "setting": dict(setting or {}),
        "schedules": schedules,
        "theory": {
            "bubble": {str(m): (p - 1) / (m + p - 1) for m in ms},
            "ideal_speedup": {str(m): m * p / (m + p - 1) for m in ms},
        },
    }


def in_flight_data(sweep: dict[str, Any]) -> dict[str, Any]:
    """Peak in-flight micro-batches per stage of every schedule at the largest m of ``sweep``."""
    m = max(sweep["microbatches"])
    peaks = {name: next(pt["peak_in_flight"] for pt in entry["points"] if pt["m"] == m)
             for name, entry in sweep["schedules"].items()}
    return {"p": sweep["p"], "m": m, "labels": {n: LABELS[n] for n in peaks}, "peak_in_flight": peaks}


# ------------------------------------------------------------------------------------------ pictures

def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise RuntimeError("PNG figures need matplotlib: pip install 'pipeline-practical[plot]'") from None
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def plot_sweep(sweep: dict[str, Any], path: Path, title: str = "") -> Path:
    """Three panels against m: measured step time, replayed speedup, bubble fraction."""
    fig = _figure(15, 4.6)
    axes = [fig.add_subplot(1, 3, i) for i in (1, 2, 3)]
    ms = sweep["microbatches"]
    for name, entry in sweep["schedules"].items():
        colour, marker, line = STYLE[name]
        xs = [pt["m"] for pt in entry["points"]]
        hollow = dict(markerfacecolor="none", markersize=10, markeredgewidth=1.5) if entry["simulated"] else {}
        kw = dict(color=colour, marker=marker, linestyle=line, label=entry["label"], **hollow)
        if not entry["simulated"]:
            axes[0].plot(xs, [pt["step_ms"] for pt in entry["points"]], **kw)
        axes[1].plot(xs, [pt["speedup"] for pt in entry["points"]], **kw)
        axes[2].plot(xs, [pt["bubble"] for pt in entry["points"]], **kw)
    theory = sweep["theory"]
    axes[1].plot(ms, [theory["ideal_speedup"][str(m)] for m in ms], ":", color="#999999",
                 label="ideal m·p/(m+p−1)")
    axes[2].plot(ms, [theory["bubble"][str(m)] for m in ms], ":", color="#999999", label="(p−1)/(m+p−1)")
    names = ("measured step time (ms)", f"replayed speedup over naive (p = {sweep['p']})",
             "bubble fraction (replayed)")
    for ax, name in zip(axes, names):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ms, [str(m) for m in ms])
        ax.minorticks_off()
        ax.set_xlabel("micro-batches m")
        ax.set_title(name, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylim(bottom=0)
    axes[2].set_ylim(0, 1)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return Path(path)


def plot_in_flight(data: dict[str, Any], path: Path, title: str = "") -> Path:
    """Grouped bars: peak micro-batches in flight on each stage, one bar per schedule."""
    fig = _figure(8, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    names = list(data["peak_in_flight"])
    p = data["p"]
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        colour, _, line = STYLE[name]
        xs = [s - 0.4 + width * (i + 0.5) for s in range(p)]
        bars = ax.bar(xs, data["peak_in_flight"][name], width, color=colour, label=data["labels"][name],
                      hatch="//" if line == "--" else None, edgecolor="black", linewidth=0.5)
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(range(p), [f"stage {s}" for s in range(p)])
    ax.set_ylabel("peak micro-batches in flight")
    ax.set_title(title or f"activation memory: p = {p}, m = {data['m']}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return Path(path)


# ------------------------------------------------------------------------------------------ all of it

def _write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def write_figures(results: list[dict], args, out_dir: Path,
                  warn: Callable[[str], None] = print, package: Optional[str] = None) -> list[Path]:
    """Write every figure and its data for ``results`` into ``out_dir``; returns the paths written.

    ``args`` is run.py's parsed command line (stages, model, width, depth, batch, device).
    ``package``: whose ``per_stage.py`` gives the per-stage 1F1B lists (``run.py`` passes its own
    package, the code that just ran); by default the first of :data:`PACKAGES` that has one. Without matplotlib the JSON files are still written and ``warn`` is told once;
    without valid 1F1B lists (not implemented yet) ``warn`` is told which task to do.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    p = args.stages
    if package is None:
        package = next((name for name in PACKAGES if _has_per_stage(name)), None)
    one_f_one_b, note = per_stage_1f1b(package, p, sorted({r["m"] for r in results}))
    if note:
        warn(note)
    setting = {k: getattr(args, k) for k in ("model", "width", "depth", "batch", "device", "seed") if hasattr(args, k)}
    where = f"{args.model} width {args.width} depth {args.depth} batch {args.batch}"
    written: list[Path] = []
    pngs: list[tuple[Callable[..., Path], tuple]] = []

    sweep = sweep_data(results, p, setting, one_f_one_b)
    in_flight = in_flight_data(sweep) if sweep["microbatches"] else None
    written.append(_write_json(out_dir / "sweep.json", sweep))
    pngs.append((plot_sweep, (sweep, out_dir / "sweep.png", f"Part 4 sweep, p = {p} ({where})")))
    if in_flight:
        written.append(_write_json(out_dir / "in_flight.json", in_flight))
        pngs.append((plot_in_flight, (in_flight, out_dir / "in_flight.png")))

    timelines = []
    for r in results:
        stem = f"timeline-{r['name']}-p{p}-m{r['m']}"
        label = f"{LABELS[r['name']]}, p={p}, m={r['m']}"
        timelines.append((out_dir / f"{stem}-replayed", r["replayed"], f"{label} (replayed)"))
        timelines.append((out_dir / f"{stem}-measured", timeline_from_events(r["events"]),
                          f"{label} (measured, seconds)"))
    for m in sweep["microbatches"]:
        if m in one_f_one_b:
            rows = next(r["rows"] for r in results if r["m"] == m)
            timelines.append((out_dir / f"timeline-1f1b-p{p}-m{m}-simulated",
                              simulate(one_f_one_b[m], _costs(rows)), f"{LABELS['1f1b']}, p={p}, m={m}"))
    for stem, result, title in timelines:
        written.append(write_chrome_trace(result, stem.with_suffix(".json")))
        pngs.append((save_png, (result, stem.with_suffix(".png"), title)))

    for draw, draw_args in pngs:
        try:
            written.append(draw(*draw_args))
        except RuntimeError as exc:  # no matplotlib: the JSON data is there all the same
            warn(f"(no PNGs: {exc})")
            break
    return written

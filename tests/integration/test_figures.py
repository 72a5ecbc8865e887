"""The Part 4 figures: ``python -m solutions.run --sweep --plot DIR`` writes PNGs and the JSON data they show."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction

import pytest

from autograder.student import figures
from tests.support import ROOT

P, MS = 4, (2, 4, 8)
SCHEDULES = ("naive", "gpipe", "delayed")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def plotted(tmp_path_factory):
    """One real sweep of the reference (the command students run), figures written to a temp dir."""
    pytest.importorskip("matplotlib", reason="environment: the figures need matplotlib (the plot extra)")
    out = tmp_path_factory.mktemp("figures")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "solutions.run",
            "--sweep",
            "--plot",
            str(out),
            "--steps",
            "1",
            "--warmup",
            "0",
            "--budget",
            "0.05",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"Figures written to {out}/" in proc.stdout
    return out


def _png(path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC), f"{path.name} is not a PNG"
    assert len(data) > 5_000, f"{path.name} is only {len(data)} bytes"


def test_every_figure_exists_as_a_non_empty_png(plotted):
    expected = ["sweep.png", "in_flight.png"]
    for name in (*SCHEDULES, "1f1b"):
        for m in MS:
            expected += [f"timeline-{name}-p{P}-m{m}-replayed.png", f"timeline-{name}-p{P}-m{m}-measured.png"]
    for name in expected:
        _png(plotted / name)
        if name.startswith("timeline-"):  # its Chrome trace next to it
            assert (plotted / name.replace(".png", ".json")).is_file()


def test_sweep_data_holds_the_measured_and_replayed_numbers(plotted):
    sweep = json.loads((plotted / "sweep.json").read_text())
    assert sweep["p"] == P and sweep["microbatches"] == list(MS) and "theory" not in sweep
    points = {name: {pt["m"]: pt for pt in entry["points"]} for name, entry in sweep["schedules"].items()}
    assert set(points) == {*SCHEDULES, "1f1b"}
    for m in MS:
        # GPipe and per-stage 1F1B: the same replayed bubble and speedup (what Part 2 and Part 3 ask about)
        assert points["1f1b"][m]["bubble"] == pytest.approx(points["gpipe"][m]["bubble"], abs=1e-12)
        assert points["1f1b"][m]["speedup"] == pytest.approx(points["gpipe"][m]["speedup"])
        assert points["gpipe"][m]["speedup"] == pytest.approx(m * P / (m + P - 1))
        assert points["naive"][m]["bubble"] == pytest.approx(0.75) and points["naive"][m]["speedup"] == 1.0
        for name in SCHEDULES:  # measured on this machine, checked against the reference
            pt = points[name][m]
            assert pt["step_ms"] > 0 and pt["correct"] is True
            assert pt["step_range_ms"][0] <= pt["step_ms"] <= pt["step_range_ms"][1]
        assert points["1f1b"][m]["step_ms"] is None
    assert points["gpipe"][8]["bubble"] == pytest.approx(float(Fraction(3, 11)), abs=1e-12)
    # the delayed-backward loop (Option C) on in-order devices: F=1, B=2 per micro-batch, naive takes 12m time units
    assert points["delayed"][4]["speedup"] == pytest.approx(48 / 39)  # 1.23x
    assert points["delayed"][8]["speedup"] == pytest.approx(96 / 87)  # 1.10x
    assert points["delayed"][2]["speedup"] == pytest.approx(points["gpipe"][2]["speedup"])  # same order at m=2


def test_memory_in_micro_batches_and_bytes_at_a_fixed_batch(plotted):
    """At a fixed batch, a micro-batch is batch / m rows: GPipe holds the whole batch's activations at
    every m, 1F1B p of the m micro-batches, the delayed loop 2, naive 1."""
    sweep = json.loads((plotted / "in_flight.json").read_text())
    points = {name: {pt["m"]: pt for pt in entry["points"]} for name, entry in sweep["schedules"].items()}
    assert points["gpipe"][8]["peak_in_flight"] == [8] * P
    assert points["1f1b"][8]["peak_in_flight"] == [P - s for s in range(P)]
    assert points["delayed"][8]["peak_in_flight"] == [2] * P and points["naive"][8]["peak_in_flight"] == [1] * P
    gpipe_bytes = {m: points["gpipe"][m]["peak_saved_bytes"][0] for m in MS}
    assert gpipe_bytes[2] == gpipe_bytes[4] == gpipe_bytes[8] > 0
    for m in MS:  # bytes = micro-batches in flight x rows per micro-batch x bytes per row
        per_mb = points["naive"][m]["peak_saved_bytes"][0]
        assert points["gpipe"][m]["peak_saved_bytes"][0] == m * per_mb
        assert points["1f1b"][m]["peak_saved_bytes"][0] == min(P, m) * per_mb


def test_timelines_hold_every_forward_and_backward(plotted):
    for name in SCHEDULES:
        for m in MS:
            for kind in ("replayed", "measured"):
                trace = json.loads((plotted / f"timeline-{name}-p{P}-m{m}-{kind}.json").read_text())
                boxes = [e for e in trace["traceEvents"] if e["ph"] == "X"]
                assert sorted((e["args"]["stage"], e["args"]["kind"], e["args"]["mb"]) for e in boxes) == sorted(
                    (s, k, mb) for s in range(P) for k in "FB" for mb in range(m)
                ), (name, m, kind)
                assert all(e["ts"] >= 0 and e["dur"] > 0 for e in boxes)


def _rows(batch: int, ms, names=SCHEDULES):
    from autograder.student import run, steps

    args = run.build_parser("solutions").parse_args(
        ["--steps", "1", "--warmup", "0", "--width", "16", "--batch", str(batch), "--budget", "0.05"]
    )
    rows = [steps.run_schedule("solutions", name, args, m) for m in ms for name in names if name != "1f1b"]
    rows += [steps.run_one_f_one_b("solutions", args, m) for m in ms if "1f1b" in names]
    return args, rows


def test_at_a_fixed_micro_batch_size_gpipe_bytes_grow_with_m_and_1f1b_bytes_do_not():
    """More micro-batches of the same size (gradient accumulation): GPipe keeps all m, so its bytes
    grow with m; per-stage 1F1B keeps at most p on a stage, so once m >= p its bytes stay put."""
    held = {}
    for m in (4, 8, 16):
        _, rows = _rows(4 * m, [m], names=("gpipe", "1f1b"))
        held[m] = {r["name"]: r["held_bytes"][0] for r in rows}
    assert held[4]["gpipe"] < held[8]["gpipe"] < held[16]["gpipe"]
    assert held[4]["1f1b"] == held[8]["1f1b"] == held[16]["1f1b"]


def test_without_matplotlib_the_data_is_still_written(tmp_path, monkeypatch):
    args, results = _rows(16, MS)
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    warnings = []
    written = figures.write_figures(results, args, tmp_path, warn=warnings.append)
    assert warnings == ["(no PNGs: PNG figures need matplotlib: pip install 'pipeline-practical[plot]')"]
    assert not list(tmp_path.glob("*.png"))
    assert {p.name for p in written} >= {"sweep.json", "in_flight.json", "timeline-gpipe-p4-m8-replayed.json"}


def test_figures_follow_whatever_ran(tmp_path):
    """A single m (no --sweep), or a schedule missing (not implemented yet): figures of what is there."""
    pytest.importorskip("matplotlib", reason="environment: the figures need matplotlib (the plot extra)")
    args, results = _rows(16, [4], names=("naive", "gpipe", "1f1b"))
    figures.write_figures(results, args, tmp_path)
    sweep = json.loads((tmp_path / "sweep.json").read_text())
    assert sweep["microbatches"] == [4] and set(sweep["schedules"]) == {"naive", "gpipe", "1f1b"}
    _png(tmp_path / "sweep.png")

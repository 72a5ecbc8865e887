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
    proc = subprocess.run([sys.executable, "-m", "solutions.run", "--sweep", "--plot", str(out),
                           "--steps", "1", "--warmup", "0"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"Figures written to {out}/" in proc.stdout
    return out


def _png(path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC), f"{path.name} is not a PNG"
    assert len(data) > 5_000, f"{path.name} is only {len(data)} bytes"


def test_every_figure_exists_as_a_non_empty_png(plotted):
    expected = ["sweep.png", "in_flight.png"]
    for name in SCHEDULES:
        for m in MS:
            expected += [f"timeline-{name}-p{P}-m{m}-replayed.png", f"timeline-{name}-p{P}-m{m}-measured.png"]
    expected += [f"timeline-1f1b-p{P}-m{m}-simulated.png" for m in MS]
    for name in expected:
        _png(plotted / name)
        if name.startswith("timeline-"):  # its Chrome trace next to it
            assert (plotted / name.replace(".png", ".json")).is_file()


def test_sweep_data_holds_the_measured_and_replayed_numbers(plotted):
    sweep = json.loads((plotted / "sweep.json").read_text())
    assert sweep["p"] == P and sweep["microbatches"] == list(MS)
    points = {name: {pt["m"]: pt for pt in entry["points"]} for name, entry in sweep["schedules"].items()}
    assert set(points) == {*SCHEDULES, "1f1b"}
    assert sweep["schedules"]["1f1b"]["simulated"] and not sweep["schedules"]["gpipe"]["simulated"]
    for m in MS:
        bubble = (P - 1) / (m + P - 1)
        assert sweep["theory"]["bubble"][str(m)] == pytest.approx(bubble)
        # GPipe and per-stage 1F1B: the same bubble, (p-1)/(m+p-1), and the same speedup
        assert points["gpipe"][m]["bubble"] == pytest.approx(bubble, abs=1e-12)
        assert points["1f1b"][m]["bubble"] == pytest.approx(bubble, abs=1e-12)
        assert points["gpipe"][m]["speedup"] == pytest.approx(m * P / (m + P - 1))
        assert points["1f1b"][m]["speedup"] == pytest.approx(points["gpipe"][m]["speedup"])
        assert points["naive"][m]["bubble"] == pytest.approx(0.75) and points["naive"][m]["speedup"] == 1.0
        for name in SCHEDULES:  # measured on this machine, checked against the reference
            assert points[name][m]["step_ms"] > 0 and points[name][m]["correct"] is True
        assert points["1f1b"][m]["step_ms"] is None
    assert points["gpipe"][8]["bubble"] == pytest.approx(float(Fraction(3, 11)), abs=1e-12)
    # the Part 5 loop on in-order devices: F=1, B=2 per micro-batch, naive takes 12m time units
    assert points["delayed"][4]["speedup"] == pytest.approx(48 / 39)  # 1.23x
    assert points["delayed"][8]["speedup"] == pytest.approx(96 / 87)  # 1.10x
    assert points["delayed"][2]["speedup"] == pytest.approx(points["gpipe"][2]["speedup"])  # same order at m=2


def test_in_flight_data_is_m_for_gpipe_and_p_minus_s_for_1f1b(plotted):
    data = json.loads((plotted / "in_flight.json").read_text())
    assert data["p"] == P and data["m"] == 8
    peaks = data["peak_in_flight"]
    assert peaks["gpipe"] == [8] * P
    assert peaks["1f1b"] == [P - s for s in range(P)]
    assert peaks["delayed"] == [2] * P
    assert peaks["naive"] == [1] * P


def test_timelines_hold_every_forward_and_backward(plotted):
    for name in SCHEDULES:
        for m in MS:
            for kind in ("replayed", "measured"):
                trace = json.loads((plotted / f"timeline-{name}-p{P}-m{m}-{kind}.json").read_text())
                boxes = [e for e in trace["traceEvents"] if e["ph"] == "X"]
                assert sorted((e["args"]["stage"], e["args"]["kind"], e["args"]["mb"]) for e in boxes) == sorted(
                    (s, k, mb) for s in range(P) for k in "FB" for mb in range(m)), (name, m, kind)
                assert all(e["ts"] >= 0 and e["dur"] > 0 for e in boxes)


def _small_results():
    from autograder.student import run

    run.PACKAGE = "solutions"

    args = run.build_parser().parse_args(["--sweep", "--steps", "1", "--warmup", "0", "--width", "16", "--batch", "16"])
    return args, [run.run_schedule(name, args, m) for m in MS for name in SCHEDULES]


def test_without_matplotlib_the_data_is_still_written(tmp_path, monkeypatch):
    args, results = _small_results()
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    warnings = []
    written = figures.write_figures(results, args, tmp_path, warn=warnings.append)
    assert warnings == ["(no PNGs: PNG figures need matplotlib: pip install 'pipeline-practical[plot]')"]
    assert not list(tmp_path.glob("*.png"))
    assert {p.name for p in written} >= {"sweep.json", "in_flight.json", "timeline-gpipe-p4-m8-replayed.json"}
    assert json.loads((tmp_path / "in_flight.json").read_text())["peak_in_flight"]["gpipe"] == [8] * P


def test_figures_follow_whatever_ran(tmp_path):
    """A single m (no --sweep), or a schedule missing (not implemented yet): figures of what is there."""
    pytest.importorskip("matplotlib", reason="environment: the figures need matplotlib (the plot extra)")
    args, results = _small_results()
    only = [r for r in results if r["m"] == 4 and r["name"] != "delayed"]
    figures.write_figures(only, args, tmp_path)
    sweep = json.loads((tmp_path / "sweep.json").read_text())
    assert sweep["microbatches"] == [4] and set(sweep["schedules"]) == {"naive", "gpipe", "1f1b"}
    assert json.loads((tmp_path / "in_flight.json").read_text())["peak_in_flight"]["1f1b"] == [4, 3, 2, 1]
    _png(tmp_path / "sweep.png")

"""Tests of autograder.schedules.timeline: ASCII Gantt chart, Chrome trace, PNG."""

from __future__ import annotations

import json
import re
import sys

import pytest

from autograder.instructor.reference_schedules import gpipe_schedule, one_f_one_b_schedule
from autograder.schedules import Costs, Event, simulate, timeline_from_events
from autograder.schedules.timeline import ascii_gantt, chrome_trace, save_png, write_chrome_trace

# GPipe p=2, m=2 (F=1, B=2): makespan 9, bubble 1 - 12/18 = 1/3.
#   stage 0: F0 F1 .  .  .  B0 B0 B1 B1
#   stage 1: .  F0 F1 B0 B0 B1 B1 .  .
GPIPE_2_2 = simulate(gpipe_schedule(2, 2))
CHART_WIDTH_18 = len("stage 0 |") + 18 + len("|")  # 18 columns of time: 2 per time unit


def chart_rows(chart: str) -> list[str]:
    """The rank rows of a chart (the header and legend may wrap onto several lines)."""
    return [line for line in chart.splitlines() if line.endswith("|")]


def test_ascii_gantt_draws_gpipe_by_hand():
    chart = ascii_gantt(GPIPE_2_2, width=CHART_WIDTH_18)
    assert chart.splitlines() == [
        "makespan 9, bubble fraction",
        "0.333, 1 column = 0.5",
        "stage 0 |F0F1......B0  B1  |",
        "stage 1 |..F0F1B0  B1  ....|",
        "        0                  9",
        "legend: F forward, B",
        "backward, . idle; box width",
        "= duration",
    ]
    # 80 wide leaves 70 columns, 7.8 per time unit, rounded down to 7: 1 column = 1/7
    first_line = ascii_gantt(GPIPE_2_2, width=80).splitlines()[0]
    assert first_line == "makespan 9, bubble fraction 0.333, 1 column = 0.143"


def test_ascii_gantt_without_legend_has_header_rows_and_axis_only():
    lines = ascii_gantt(GPIPE_2_2, width=80, legend=False).splitlines()
    assert len(lines) == 1 + 2 + 1 and lines[-1].endswith("9")


@pytest.mark.parametrize("width", [80, 100])
def test_ascii_gantt_rows_show_each_ranks_actions_in_order_and_fit_the_width(width):
    result = simulate(one_f_one_b_schedule(4, 8))
    chart = ascii_gantt(result, width=width)
    lines = chart.splitlines()
    assert all(len(line) <= width for line in lines)
    assert chart.isascii()
    rows = chart_rows(chart)
    assert len(rows) == 4
    for rank, actions in result.schedule.items():
        assert rows[rank].startswith(f"stage {rank} |")
        assert re.findall(r"[FBIW]\d+", rows[rank]) == [f"{a.kind}{a.mb}" for a in actions]
    assert "." in rows[0] and "." in rows[3]  # warm-up and cool-down bubbles show as idle


def test_ascii_gantt_interleaved_rows_have_a_chunk_line():
    # rank 0 holds stages 0 and 2 (chunks 0 and 1), rank 1 stages 1 and 3; F = 1, B = 2, transfer 0.5
    result = simulate({0: "0F0 2F0 2B0 0B0", 1: "1F0 3F0 3B0 1B0"}, Costs(transfer=0.5))
    lines = ascii_gantt(result, width=80).splitlines()
    rows = chart_rows("\n".join(lines))
    assert rows[0].startswith("rank 0 (stages 0,2) |")
    assert re.findall(r"[FB]\d", rows[0]) == ["F0", "F0", "B0", "B0"]
    assert re.findall(r"[FB]\d", rows[1]) == ["F0", "F0", "B0", "B0"]
    for _rank, row in enumerate(rows):
        chunk_line = lines[lines.index(row) + 1]
        label_width = len("rank 0 (stages 0,2)")
        assert chunk_line[: label_width + 2] == "chunk".rjust(label_width) + "  "  # under the row's label
        assert chunk_line.split() == ["chunk", "0", "1", "1", "0"]
        starts = [i for i, c in enumerate(row) if c in "FB"]  # every box's first column ...
        assert [i for i, c in enumerate(chunk_line) if c in "01"] == starts  # ... carries its chunk
    assert "chunk line: each box's chunk" in " ".join(lines[-2:])  # the legend explains it


def test_ascii_gantt_narrow_boxes_keep_their_letter():
    result = simulate(one_f_one_b_schedule(2, 40))  # makespan 123 in 40 columns: < 1 column per F
    chart = ascii_gantt(result, width=50)
    assert all(len(line) <= 50 for line in chart.splitlines())
    cells = chart_rows(chart)[0].split("|")[1]
    assert len(cells) == 40 and set(cells) <= set("FB.0123456789 ")
    assert cells.startswith("F") and cells.rstrip().endswith("B")


def test_ascii_gantt_of_measured_timeline_and_of_nothing():
    events = [
        Event(0, "F", 0, 5.0, 5.5),
        Event(1, "F", 0, 5.5, 6.0),
        Event(1, "B", 0, 6.0, 7.0),
        Event(0, "B", 0, 7.0, 8.0),
    ]
    # shifted to start at 0; 31 columns for 3 s round down to 10 per second (a 30-column chart)
    chart = ascii_gantt(timeline_from_events(events), width=41)
    assert chart.startswith("makespan 3, bubble fraction 0.500, 1\ncolumn = 0.1\n")
    assert chart_rows(chart) == ["stage 0 |F0   ...............B0        |", "stage 1 |.....F0   B0        ..........|"]
    assert ascii_gantt(simulate({})).splitlines() == ["makespan 0, bubble fraction 0.000", "(no actions)"]
    with pytest.raises(ValueError, match="width"):
        ascii_gantt(GPIPE_2_2, width=5)


def test_chrome_trace_has_one_complete_event_per_action_in_microseconds():
    # transfer 0.5 time units; one time unit = 1 ms. Stage 1 starts F0 at 1.5 units = 1500 us.
    result = simulate(gpipe_schedule(2, 2), Costs(transfer=0.5))
    trace = chrome_trace(result, unit_s=1e-3)
    complete = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(complete) == 8
    by_name = {e["name"]: e for e in complete}
    assert by_name["1F0"]["ts"] == pytest.approx(1500) and by_name["1F0"]["dur"] == pytest.approx(1000)
    assert by_name["0B1"]["dur"] == pytest.approx(2000)
    assert by_name["0B1"]["ts"] + by_name["0B1"]["dur"] == pytest.approx(result.makespan * 1000)
    assert by_name["1B0"]["tid"] == 1 and by_name["1B0"]["pid"] == 0
    assert by_name["1B0"]["args"] == {"stage": 1, "mb": 0, "kind": "B"}
    names = {e["tid"]: e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"}
    assert names == {0: "stage 0", 1: "stage 1"}
    assert json.loads(json.dumps(trace)) == trace


def test_write_chrome_trace_round_trips(tmp_path):
    path = write_chrome_trace(GPIPE_2_2, tmp_path / "gpipe.json")
    loaded = json.loads(path.read_text())
    assert [e["name"] for e in loaded["traceEvents"] if e["ph"] == "X"][:2] == ["0F0", "0F1"]
    with pytest.raises(ValueError, match="unit_s"):
        chrome_trace(GPIPE_2_2, unit_s=0)


def test_save_png_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="PNG timelines need matplotlib (the 'plot' extra)")
    result = simulate({0: "0F0 0F1 0I0 0W0 0I1 0W1", 1: "1F0 1I0 1F1 1I1 1W0 1W1"})
    path = save_png(result, tmp_path / "timeline.png", title="zero bubble p=2 m=2")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_save_png_without_matplotlib_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)  # import now fails
    with pytest.raises(RuntimeError, match=re.escape("pip install 'pipeline-practical[plot]'")):
        save_png(GPIPE_2_2, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()

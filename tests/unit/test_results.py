"""Gradescope's results.json (``autograder/gradescope/results.py``): numbers, totals, schema, writing.

What this proves: tests are ordered and numbered in handout order (``practical.GROUPS``, then each
test's collection order; "row.index" with rows as in the score table), whatever order outcomes
arrive in; bonus points add to the score but not to the maximum; unscored rows (GPU) and tests
skipped for the environment count for nothing; every document built from any mix of outcomes,
including hostile text, validates against ``results.schema.json``; :func:`write_json` replaces
the file atomically and leaves the old file intact when the write fails.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import pytest

from autograder import practical
from autograder.gradescope import results as R
from autograder.gradescope.results import Outcome, numbered, results_document, score_table, totals, validate, write_json
from tests.support import ROOT

KEYS = [g.key for g in practical.GROUPS]


def outcome(group: str, order: int, max_score: float = 2.0, passed: bool = True, **kw) -> Outcome:
    return Outcome(
        f"autograder/graded/test_x.py::t{group}{order}",
        f"{group} test {order}",
        group,
        max_score,
        order=order,
        score=max_score if passed else 0.0,
        status="passed" if passed else "failed",
        **kw,
    )


def every_group(per_group: int = 3) -> list[Outcome]:
    return [outcome(key, 100 * i + k, passed=k != 1) for i, key in enumerate(KEYS) for k in range(per_group)]


def shuffled(items: list, seed: int = 0) -> list:
    items = list(items)
    random.Random(seed).shuffle(items)
    return items


# -- order and numbering ----------------------------------------------------------------------------------


def test_numbering_follows_the_handout_whatever_the_arrival_order():
    outcomes = every_group()
    for seed in range(5):
        got = numbered(shuffled(outcomes, seed))
        assert [o for _, o in got] == outcomes
        assert [n for n, _ in got] == [f"{i + 1}.{k + 1}" for i in range(len(KEYS)) for k in range(3)]


def test_numbering_within_a_group_follows_collection_order_not_names():
    outcomes = [outcome("gpipe", order, passed=True) for order in (30, 10, 20)]
    outcomes[0].name, outcomes[1].name, outcomes[2].name = "a", "z", "m"
    assert [o.order for _, o in numbered(outcomes)] == [10, 20, 30]


def test_rows_are_numbered_among_the_groups_present():
    outcomes = [outcome("bonus", 1), outcome("naive", 5), outcome("naive", 2), outcome("per_stage", 0)]
    assert [(n, o.group, o.order) for n, o in numbered(outcomes)] == [
        ("1.1", "naive", 2),
        ("1.2", "naive", 5),
        ("2.1", "per_stage", 0),
        ("3.1", "bonus", 1),
    ]


def test_unknown_groups_come_after_the_registry_groups():
    outcomes = [outcome("zzz-other", 0), outcome("part1", 3)]
    assert [o.group for _, o in numbered(outcomes)] == ["part1", "zzz-other"]


def test_document_numbers_match_the_score_table_rows():
    outcomes = shuffled(every_group())
    doc = results_document(outcomes, 1.0)
    rows = [line.rsplit(None, 1)[0].strip() for line in score_table(outcomes)[:-1]]
    for test in doc["tests"]:
        row = int(test["number"].split(".")[0])
        assert test["tags"] == [rows[row - 1]]


def test_document_tests_are_in_handout_order():
    outcomes = every_group()
    doc = results_document(shuffled(outcomes, 3), 1.0)
    assert [t["name"] for t in doc["tests"]] == [o.name for o in outcomes]


# -- totals ----------------------------------------------------------------------------------------------


def test_bonus_points_add_to_the_score_but_not_to_the_maximum():
    outcomes = [outcome("gpipe", 0, 10), outcome("gpipe", 1, 10, passed=False), outcome("bonus", 0, 5)]
    assert totals(outcomes) == (15.0, 20.0)
    assert results_document(outcomes, 1.0)["score"] == 15.0


def test_bonus_can_take_the_score_past_the_maximum():
    outcomes = [outcome("naive", 0, 10), outcome("bonus", 0, 5), outcome("bonus", 1, 5)]
    score, out_of = totals(outcomes)
    assert score == 20.0 and out_of == 10.0


def test_unscored_gpu_row_counts_for_nothing():
    outcomes = [outcome("naive", 0, 10), outcome("gpu", 0, 7), outcome("gpu", 1, 7, passed=False)]
    assert not practical.GROUP["gpu"].scored
    assert totals(outcomes) == (10.0, 10.0)
    assert results_document(outcomes, 1.0)["score"] == 10.0


def test_environment_skipped_tests_are_not_counted_anywhere():
    skipped = outcome("gpipe", 1, 10, passed=False, counted=False, output="environment: no GPU")
    outcomes = [outcome("gpipe", 0, 10), skipped]
    assert totals(outcomes) == (10.0, 10.0)
    doc = results_document(outcomes, 1.0)
    assert [t["name"] for t in doc["tests"]] == ["gpipe test 0"]
    assert doc["tests"][0]["number"] == "1.1"
    assert "10/10" in score_table(outcomes)[0]


def test_group_with_only_uncounted_tests_takes_no_row_or_number():
    outcomes = [outcome("naive", 0, counted=False), outcome("gpipe", 0)]
    doc = results_document(outcomes, 1.0)
    assert [(t["number"], t["name"]) for t in doc["tests"]] == [("1.1", "gpipe test 0")]
    assert len(score_table(outcomes)) == 2


def test_failed_tests_score_nothing_and_partial_scores_add_up():
    outcomes = [outcome("part1", 0, 3), outcome("part1", 1, 3, passed=False), outcome("delayed", 0, 2.5)]
    assert totals(outcomes) == (5.5, 8.5)


def test_score_table_lines_and_total():
    outcomes = [
        outcome("naive", 0, 4),
        outcome("naive", 1, 4, passed=False),
        outcome("gpipe", 0, 6),
        outcome("bonus", 0, 3),
        outcome("gpu", 0, 1),
    ]
    lines = score_table(shuffled(outcomes))
    titles = [practical.GROUP[k].title for k in ("naive", "gpipe", "bonus", "gpu")]
    assert [line.rsplit(None, 1)[0].strip() for line in lines[:-1]] == titles
    assert [line.rsplit(None, 1)[1] for line in lines[:-1]] == ["4/8", "6/6", "3/3", "1/1"]
    assert lines[-1].startswith("Total")
    assert lines[-1].split()[1] == "10/14"
    assert "(+3 bonus)" in lines[-1]


def test_score_table_total_agrees_with_totals():
    outcomes = every_group()
    got_out_of = score_table(outcomes)[-1].split()[1]
    bonus = sum(o.score for o in outcomes if o.group == "bonus")
    score, out_of = totals(outcomes)
    assert got_out_of == f"{score - bonus:g}/{out_of:g}"


def test_score_table_has_no_bonus_note_without_bonus_points():
    assert "bonus" not in score_table([outcome("naive", 0), outcome("bonus", 0, passed=False)])[-1]


# -- the document ------------------------------------------------------------------------------------------


def test_document_fields():
    outcomes = [
        outcome("naive", 0, 4),
        outcome("gpipe", 0, 6, passed=False, output="wrong order"),
        outcome("hidden", 0, 2, hidden=True),
    ]
    doc = results_document(outcomes, 12.34567, "summary", extra={"integrity": []})
    assert doc["score"] == 6.0 and doc["execution_time"] == 12.346 and doc["output"] == "summary"
    assert doc["visibility"] == "visible" and doc["stdout_visibility"] == "hidden"
    assert doc["extra_data"] == {"integrity": []}
    naive, gpipe, hidden = doc["tests"]
    assert naive == {
        "name": "naive test 0",
        "number": "1.1",
        "score": 4,
        "max_score": 4,
        "status": "passed",
        "output": "",
        "tags": [practical.GROUP["naive"].title],
        "visibility": "visible",
    }
    assert gpipe["status"] == "failed" and gpipe["output"] == "wrong order" and gpipe["score"] == 0
    assert hidden["visibility"] == "after_due_date"
    validate(doc)


@pytest.mark.parametrize("status", ["skipped", "error", "xfailed", ""])
def test_statuses_other_than_passed_are_failed(status):
    o = outcome("naive", 0)
    o.status = status
    assert results_document([o], 0)["tests"][0]["status"] == "failed"


def test_hostile_text_is_cleaned_and_bounded_in_the_document():
    nasty = "\x00nul \ud800 \x1b[31mred\x1b[0m \u202eevil " + "x" * 50_000
    o = outcome("gpipe", 0, passed=False, output=nasty)
    o.name = nasty
    doc = results_document([o], 1.0, output=nasty)
    text = json.dumps(doc, ensure_ascii=False)
    text.encode("utf-8")
    assert "\x00" not in text and "\x1b" not in text and "\u202e" not in text
    assert len(doc["tests"][0]["output"]) <= R.MAX_TEST_OUTPUT
    assert len(doc["tests"][0]["name"]) <= 300
    validate(doc)


@pytest.mark.parametrize("seed", range(8))
def test_every_document_validates_against_the_schema(seed):
    rng = random.Random(seed)
    outcomes = []
    for i in range(rng.randint(0, 30)):
        o = outcome(
            rng.choice(KEYS + ["unknown"]),
            i,
            rng.choice([0, 0.5, 1, 2.5, 10]),
            passed=rng.random() < 0.5,
            hidden=rng.random() < 0.2,
            counted=rng.random() < 0.9,
            output=rng.choice(["", "msg", "\x00\x1b["]),
        )
        o.status = rng.choice(["passed", "failed", "skipped", "error"])
        outcomes.append(o)
    doc = results_document(
        outcomes, rng.random() * 100, rng.choice(["", "out"]), extra=rng.choice([None, {"missing": ["a.py"]}])
    )
    validate(doc)
    json.loads(json.dumps(doc, allow_nan=False))


def test_empty_document_validates():
    validate(results_document([], 0.0))


def test_document_with_leaderboard_validates():
    doc = results_document([outcome("gpipe", 0)], 1.0, leaderboard=[{"name": "speedup", "value": 2.5}])
    assert doc["leaderboard"] == [{"name": "speedup", "value": 2.5}]
    validate(doc)


def test_extra_data_strings_are_cleaned_too(tmp_path):
    nasty = "a.py:3: \x1b[2J\x00 \u202e \ud800"
    doc = results_document([outcome("gpipe", 0)], 1.0, extra={"integrity": [nasty], "summary": nasty})
    write_json(tmp_path / "results.json", doc)
    text = (tmp_path / "results.json").read_text(encoding="utf-8")
    assert "\x1b" not in text and "\x00" not in text and "\u202e" not in text


@pytest.mark.parametrize(
    "break_it",
    [
        lambda d: d.pop("score"),
        lambda d: d.update(visibility="public"),
        lambda d: d.update(surprise=1),
        lambda d: d["tests"][0].update(status="skipped"),
        lambda d: d["tests"][0].update(name=""),
        lambda d: d["tests"][0].update(score=-1),
        lambda d: d["tests"][0].pop("number"),
    ],
)
def test_validate_rejects_broken_documents(break_it):
    doc = results_document([outcome("naive", 0)], 1.0)
    break_it(doc)
    with pytest.raises(jsonschema.ValidationError):
        validate(doc)


def test_outcome_dict_round_trip_ignores_unknown_keys():
    o = outcome("gpipe", 3, 4.5, passed=False, hidden=True, counted=False, output="x")
    o.ended = True
    assert Outcome.from_dict(o.to_dict()) == o
    assert Outcome.from_dict({**o.to_dict(), "injected": "value"}) == o


# -- writing ----------------------------------------------------------------------------------------------


def leftovers(folder: Path, keep: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != keep)


def test_write_json_writes_parseable_utf8_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "deep" / "results" / "results.json"
    doc = results_document([outcome("gpipe", 0, output="caf\u00e9 \u2603")], 1.0)
    write_json(path, doc)
    assert json.loads(path.read_text(encoding="utf-8")) == doc
    assert leftovers(path.parent, "results.json") == []


def test_write_json_replaces_an_existing_file(tmp_path):
    path = tmp_path / "results.json"
    write_json(path, {"score": 1})
    inode = path.stat().st_ino
    write_json(path, {"score": 2})
    assert json.loads(path.read_text()) == {"score": 2}
    assert path.stat().st_ino != inode  # a new file renamed over the old one, not rewritten in place
    assert leftovers(tmp_path, "results.json") == []


def test_write_json_keeps_the_old_file_when_serialising_fails(tmp_path):
    path = tmp_path / "results.json"
    write_json(path, {"score": 1})
    with pytest.raises(TypeError):
        write_json(path, {"score": object()})
    assert json.loads(path.read_text()) == {"score": 1}
    assert leftovers(tmp_path, "results.json") == []


def _write_with_file_size_limit(path: Path) -> subprocess.CompletedProcess:
    """In a child process whose files may not exceed 4 KiB, write a results.json of ~1 MiB."""
    code = textwrap.dedent(f"""
        import resource, sys
        from pathlib import Path
        from autograder.gradescope.results import write_json
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            write_json(Path({str(path)!r}), {{"score": 2, "output": "x" * (1 << 20)}})
        except OSError as exc:
            print("raised", exc.errno)
            sys.exit(3)
    """)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_write_json_failing_half_way_keeps_the_old_file_whole(tmp_path):
    path = tmp_path / "results.json"
    write_json(path, {"score": 1})
    proc = _write_with_file_size_limit(path)
    assert proc.returncode == 3 and "raised" in proc.stdout, proc.stderr
    assert json.loads(path.read_text()) == {"score": 1}


def test_write_json_failing_half_way_leaves_no_temp_file(tmp_path):
    path = tmp_path / "results.json"
    write_json(path, {"score": 1})
    _write_with_file_size_limit(path)
    assert leftovers(tmp_path, "results.json") == []


def test_write_json_temp_file_is_in_the_same_folder(tmp_path, monkeypatch):
    """The rename is atomic only within one file system: the temp file sits next to the target."""
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(R.os, "replace", spy)
    write_json(tmp_path / "results.json", {"score": 0})
    assert len(seen) == 1 and seen[0][0].parent == seen[0][1].parent == tmp_path

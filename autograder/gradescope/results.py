"""Gradescope's results.json, built from the tests' outcomes: the one place that writes it.

Follows the autograder specification (``score``, ``execution_time``, ``output``, ``visibility``,
``stdout_visibility``, ``tests[]`` with ``name``, ``number``, ``score``, ``max_score``, ``status``,
``output``, ``tags`` and ``visibility``; optional ``extra_data`` and ``leaderboard``), checked
against ``results.schema.json``. Tests appear in handout order, numbered by part ("2.3" is the
third test of the score table's second row). Every string is cleaned (``judge.text.clean``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import practical
from ..judge.text import clean

SCHEMA = Path(__file__).resolve().parent / "results.schema.json"
MAX_TEST_OUTPUT = 4000


@dataclass
class Outcome:
    """One graded test: its place, its points, and how it ended."""

    nodeid: str
    name: str
    group: str
    max_score: float
    order: int = 0
    score: float = 0.0
    status: str = "failed"
    output: str = ""
    hidden: bool = False
    counted: bool = True
    ended: bool = False

    @classmethod
    def from_dict(cls, data: dict) -> Outcome:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**fields)

    def to_dict(self) -> dict:
        return asdict(self)


def group_rank(key: str) -> int:
    keys = [g.key for g in practical.GROUPS]
    return keys.index(key) if key in keys else len(keys)


def in_handout_order(outcomes: Iterable[Outcome]) -> list[Outcome]:
    return sorted(outcomes, key=lambda o: (group_rank(o.group), o.order))


def numbered(outcomes: Iterable[Outcome]) -> list[tuple[str, Outcome]]:
    """``(number, outcome)`` in handout order: "row.index" with rows as in the score table."""
    rows: dict[str, int] = {}
    counts: dict[str, int] = {}
    result = []
    for o in in_handout_order(outcomes):
        rows.setdefault(o.group, len(rows) + 1)
        counts[o.group] = counts.get(o.group, 0) + 1
        result.append((f"{rows[o.group]}.{counts[o.group]}", o))
    return result


def score_table(outcomes: Iterable[Outcome]) -> list[str]:
    """Lines ``group  got/out_of`` in handout order, then the total (bonus and unscored rows apart)."""
    totals: dict[str, list[float]] = {}
    for o in outcomes:
        if o.counted:
            row = totals.setdefault(o.group, [0.0, 0.0])
            row[0] += o.score
            row[1] += o.max_score
    lines, got, out_of, bonus = [], 0.0, 0.0, 0.0
    for key in sorted(totals, key=group_rank):
        title = practical.GROUP[key].title if key in practical.GROUP else key
        lines.append(f"{title:<58} {_num(totals[key][0]):>5}/{_num(totals[key][1])}")
        group = practical.GROUP.get(key)
        if group is None or group.scored and not group.bonus:
            got, out_of = got + totals[key][0], out_of + totals[key][1]
        elif group.bonus:
            bonus += totals[key][0]
    lines.append(f"{'Total':<58} {_num(got):>5}/{_num(out_of)}" + (f"  (+{_num(bonus)} bonus)" if bonus else ""))
    return lines


def totals(outcomes: Iterable[Outcome]) -> tuple[float, float]:
    """(score, max score) of what counts: the scored rows plus the bonus points earned."""
    score = out_of = 0.0
    for o in outcomes:
        group = practical.GROUP.get(o.group)
        if not o.counted or (group is not None and not group.scored):
            continue
        score += o.score
        if group is None or not group.bonus:
            out_of += o.max_score
    return score, out_of


def _num(x: float) -> str:
    return f"{x:g}"


def results_document(
    outcomes: list[Outcome],
    seconds: float,
    output: str = "",
    extra: dict | None = None,
    leaderboard: list[dict] | None = None,
) -> dict:
    score, _ = totals(outcomes)
    tests = []
    for number, o in numbered([o for o in outcomes if o.counted]):
        tests.append(
            {
                "name": clean(o.name, 300),
                "number": number,
                "score": o.score,
                "max_score": o.max_score,
                "status": "passed" if o.status == "passed" else "failed",
                "output": clean(o.output, MAX_TEST_OUTPUT),
                "tags": [clean(_title(o.group), 100)],
                "visibility": "after_due_date" if o.hidden else "visible",
            }
        )
    doc = {
        "score": round(score, 4),
        "execution_time": round(seconds, 3),
        "output": clean(output),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
    }
    if extra:
        doc["extra_data"] = _cleaned(extra)
    if leaderboard:
        doc["leaderboard"] = leaderboard
    return doc


def _cleaned(value):
    """Every string of a JSON-like value cleaned (``judge.text.clean``)."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {clean(str(k), 200): _cleaned(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_cleaned(v) for v in value]
    return value


def _title(key: str) -> str:
    return practical.GROUP[key].title if key in practical.GROUP else key


def validate(doc: dict) -> None:
    """Raise ``jsonschema.ValidationError`` if ``doc`` is not a valid results.json."""
    import jsonschema

    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))


def write_json(path: Path, doc: dict) -> None:
    """Write ``doc`` atomically (a reader sees the old file or the new one, never half of one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

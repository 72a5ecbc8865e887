"""The notebook's autograded answers are asked, not taught: nothing students read states them.

Four notebook cells are autograded (8 points, ``tests/support/course_text.AUTOGRADED``): Option A's
bubble fraction, GPipe's bubble fraction, per-stage 1F1B's peak in flight per stage, and the Part 4
table of replayed speedups and bubbles at p = 4 for m = 2, 4, 8. Students find them by measuring;
so the handout, the student part of the README, the skeleton's docstrings and hints, the student
notebook's instructions and the public test names must not state them, in any of the usual
spellings. The forms are listed here (with the cell each answer comes from) and checked against
the notebook's reference answers and the simulator, so the list cannot drift from the answers.
"""

from __future__ import annotations

import ast
import json
import re

import pytest

from autograder.instructor import student_release
from autograder.practical import GROUPS
from autograder.schedules import Action, Costs, delayed_backward_schedule, naive_schedule, simulate
from tests.support import ROOT

DASHES = "-\u2212\u2013\u2011"  # hyphen, minus sign, en dash, non-breaking hyphen
TIMES = "*\u00d7\u00b7\u22c5"  # *, multiplication sign, middle dot, dot operator


def normalise(text: str) -> str:
    """No whitespace or Markdown code marks, every dash a '-' and every multiplication sign a '*'."""
    text = re.sub(r"[\s`]+", "", text)
    for dash in DASHES[1:]:
        text = text.replace(dash, "-")
    for times in TIMES[1:]:
        text = text.replace(times, "*")
    return text


# Formulas, by autograded cell of solutions/practical9.ipynb. Each entry: the spellings, and the
# function they compute (checked against the simulator below).
FORMULAS = {
    # part1_bubble_test (1 point): naive_bubble_fraction(p), the reference returns (p - 1) / p
    "part1_bubble_test": ["(p-1)/p", "1-1/p", "(p-1)/(p)", "p-1/p"],
    # part2_bubble_test (2 points): gpipe_bubble_fraction(p, m), the reference returns (p - 1) / (m + p - 1);
    # the step (m+p-1)(F+B), the speedup m*p/(m+p-1) and the papers' ratio (p-1)/m give it in one line
    "part2_bubble_test": [
        "(p-1)/(m+p-1)",
        "(p-1)/(p+m-1)",
        "(p-1)/(m+(p-1))",
        "m+p-1",
        "p+m-1",
        "m+(p-1)",
        "(p-1)/m",
        "1-m/(m+p-1)",
    ],
    # part3_peak_test (2 points): one_f_one_b_peak_in_flight(stage, p, m), the reference returns
    # min(p - stage, m); also its warm-up min(p - s - 1, m), which is the peak minus one
    "part3_peak_test": ["min(p-s,m)", "min(m,p-s)", "min(p-stage,m)", "min(m,p-stage)", "p-s", "p-stage", "p-1-s"],
}


def _pattern(form: str) -> re.Pattern:
    """``form`` with any spacing between its characters, any dash or multiplication sign, and, where it
    starts or ends with a letter or digit, not inside a longer word (``p-s`` is not in ``step-size``)."""
    chars = []
    for char in normalise(form):
        chars.append(
            f"[{re.escape(DASHES)}]" if char == "-" else f"[{re.escape(TIMES)}]" if char == "*" else re.escape(char)
        )
    before = r"(?<![A-Za-z0-9_])" if form[0].isalnum() else ""
    after = r"(?![A-Za-z0-9_])" if form[-1].isalnum() else ""
    return re.compile(before + r"[\s`]*".join(chars) + after)


def _gpipe(p: int, m: int) -> dict:
    return {s: [Action(s, "F", k) for k in range(m)] + [Action(s, "B", k) for k in range(m)] for s in range(p)}


def part4_table_numbers() -> dict[str, str]:
    """part4_table_test (3 points): the replayed speedup and bubble of A, B and C at p = 4, m = 2, 4, 8,
    as ``python -m assignment.run --sweep`` prints them (the sweep's micro-batches are even, so the
    replay equals the simulator with F = 1, B = 2). Naive's 1.00x is the definition of the column."""
    p, costs = 4, Costs(forward=1, backward=2)
    numbers = {}
    for m in (2, 4, 8):
        serial = simulate(naive_schedule(p, m), costs).makespan
        for name, lists in (
            ("A", naive_schedule(p, m)),
            ("B", _gpipe(p, m)),
            ("C", delayed_backward_schedule(p, m)),
        ):
            result = simulate(lists, costs)
            where = f"part4_table {name} m={m}"
            if name != "A":
                numbers[f"{serial / result.makespan:.2f}x"] = f"{where} speedup"
            share = result.bubble_fraction
            numbers[f"{share:.1%}"] = f"{where} bubble"
            numbers[f"{share:.3f}"] = f"{where} bubble"
            if round(share * 100, 9) == round(share * 100):
                numbers[f"{share:.0%}"] = f"{where} bubble"
    # the same bubbles as fractions: GPipe 3/5, 3/7, 3/11; Option C 9/13, 21/29; naive 3/4
    for fraction in ("3/5", "3/7", "3/11", "9/13", "21/29", "3/4", "16/7", "32/11"):
        numbers[fraction] = "part4_table, as a fraction"
    return numbers


def _fraction_pattern(fraction: str) -> re.Pattern:
    return re.compile(rf"(?<![\d./]){re.escape(fraction)}(?![\d/])")


def _number_pattern(number: str) -> re.Pattern:
    return re.compile(rf"(?<![\d.]){re.escape(number)}(?![\d])")


# ------------------------------------------------------------------------------ what students read


def public_test_names(path) -> list[str]:
    """The first docstring paragraph of every test function in ``path``: the public test names
    (the score table shows "<group title>: <first docstring paragraph>")."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    tests = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
    return [doc.split("\n\n")[0] for n in tests if (doc := ast.get_docstring(n))]


def student_texts() -> dict[str, str]:
    """Every text students read that could state an answer, by where it is."""
    texts = {"HANDOUT.md": (ROOT / "HANDOUT.md").read_text(encoding="utf-8")}
    texts["README.md (student part)"] = student_release.student_readme((ROOT / "README.md").read_text(encoding="utf-8"))
    for path in sorted((ROOT / "assignment").glob("*.py")):  # docstrings, hints (NotImplementedError), comments
        texts[f"assignment/{path.name}"] = path.read_text(encoding="utf-8")
    notebook = json.loads((ROOT / "assignment" / "practical9.ipynb").read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":  # instructions and questions (the check cells are code)
            grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id", cell.get("id"))
            texts[f"assignment/practical9.ipynb cell {grade_id}"] = "".join(cell["source"])
    names = [g.title for g in GROUPS]  # public test names: "<group title>: <first docstring paragraph>"
    for path in sorted((ROOT / "autograder" / "graded").glob("*.py")):
        names += public_test_names(path)
    texts["public test names (autograder/graded)"] = "\n".join(names)
    return texts


def stated_answers(text: str) -> list[str]:
    """The autograded answers ``text`` states, each as '<form> (<cell>)'."""
    found = []
    for cell, forms in FORMULAS.items():
        found += [f"{form} ({cell})" for form in forms if _pattern(form).search(text)]
    for number, cell in part4_table_numbers().items():
        pattern = _fraction_pattern(number) if "/" in number else _number_pattern(number)
        if pattern.search(text):
            found.append(f"{number} ({cell})")
    return found


@pytest.mark.parametrize("where", list(student_texts()))
def test_no_autograded_answer_is_stated(where):
    found = stated_answers(student_texts()[where])
    assert not found, f"{where} states autograded notebook answers: {', '.join(found)} (ask for them instead)"


# ------------------------------------------------------------------------------ the list is right


def _evaluate(form: str, **values: int) -> float:
    expression = normalise(form).replace("stage", "s")
    return eval(expression, {"min": min}, values)  # noqa: S307 - our own constant strings


def test_the_formula_forms_are_the_answers():
    """Each full form computes what the simulator measures, and the notebook's reference returns it."""
    costs = Costs(forward=1, backward=2)
    for p in (2, 3, 5):
        for m in (1, 3, 7):
            naive = simulate(naive_schedule(p, m), costs)
            gpipe = simulate(_gpipe(p, m), costs)
            assert _evaluate("(p-1)/p", p=p) == pytest.approx(naive.bubble_fraction)
            for form in ("(p-1)/(m+p-1)", "(p-1)/(p+m-1)", "(p-1)/(m+(p-1))", "1-m/(m+p-1)"):
                assert _evaluate(form, p=p, m=m) == pytest.approx(gpipe.bubble_fraction), form
            ratio = _evaluate("(p-1)/m", p=p, m=m)  # the papers' convention: idle / busy
            assert ratio / (1 + ratio) == pytest.approx(gpipe.bubble_fraction)
            from solutions.per_stage import one_f_one_b_actions

            peaks = simulate({s: one_f_one_b_actions(s, p, m) for s in range(p)}, costs).peak_in_flight
            for form in ("min(p-s,m)", "min(m,p-s)", "min(p-stage,m)"):
                assert [_evaluate(form, p=p, m=m, s=s) for s in range(p)] == [peaks[s] for s in range(p)], form
    notebook = json.loads((ROOT / "solutions" / "practical9.ipynb").read_text(encoding="utf-8"))
    solution = {c["metadata"]["nbgrader"]["grade_id"]: normalise("".join(c["source"])) for c in notebook["cells"]}
    assert "return(p-1)/p" in solution["part1_bubble"]
    assert "return(p-1)/(m+p-1)" in solution["part2_bubble"]
    assert "returnmin(p-stage,m)" in solution["part3_peak"]
    assert "expected=min(p-stage,m)" in solution["part3_peak_test"]  # the hidden check


def test_the_part4_numbers_are_those_the_sweep_prints():
    numbers = part4_table_numbers()
    for printed in ("2.29x", "2.91x", "1.60x", "1.23x", "1.10x", "42.9%", "27.3%", "0.273", "69.2%", "72.4%", "75.0%"):
        assert printed in numbers, printed
    assert "1.00x" not in numbers  # naive over naive: the column's definition, not an answer


@pytest.mark.parametrize(
    "text",
    [
        "the same bubble, (p-1)/(m+p-1), and the same step time",
        "bubble (p − 1) / (m + p − 1)",
        "the ideal m·p/(m+p−1)",
        "at most p-s micro-batches in flight on stage s",
        "at most p−s micro-batches",
        "min(p - s, m) in flight",
        "idle (p-1)/p of the time",
        "1.23x for m = 4 and 1.10x for m = 8, against GPipe's 2.29x and 2.91x",
        "a bubble of 42.9%",
        "a bubble of 3/11",
    ],
)
def test_the_check_finds_each_spelling(text):
    assert stated_answers(text), text


@pytest.mark.parametrize(
    "text",
    [
        "a step-size",  # p-s inside words
        "the loop-style order",
        "1F1B with p = 4, m = 8: bubble fraction 0.400",
        "rank r holds stages r, r+p, ..., r+(v-1)p",
        "12.29x",
        "13/11",
        "min(p, m) micro-batches on every stage",
    ],
)
def test_the_check_leaves_other_text_alone(text):
    assert not stated_answers(text), text

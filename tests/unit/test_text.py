"""Text hygiene (``autograder/judge/text.py``): what reaches results.json, a terminal or a CSV is safe.

What this proves: :func:`clean` always returns valid UTF-8 without NUL, C0/C1 control characters
(newline and tab aside), terminal escape sequences (CSI, OSC, two-byte), bidi overrides or line
separators, with CR turned into newlines and the length bounded; :func:`clean_line` returns one
line; :func:`csv_cell` also keeps a spreadsheet from evaluating a cell as a formula.
"""

from __future__ import annotations

import json
import re

import pytest

from autograder.judge.text import MAX_TEXT, clean, clean_line, csv_cell

FORBIDDEN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

NASTY = [
    "nul \x00 byte",
    "lone \ud800 surrogate and \udfff another",
    "\x1b[31mred\x1b[0m \x1b[2J\x1b[H clear",
    "\x1b]0;window title\x07 osc with bel",
    "\x1b]8;;http://evil.example\x1b\\link\x1b]8;;\x1b\\ osc 8 hyperlink",
    "\x1b]0;unterminated osc",
    "two-byte \x1bc reset \x1b7 save \x1bM",
    "c1 csi \x9b31m and nel \x85",
    "bidi \u202eevil\u202c \u2066isolate\u2069 \u202aembed",
    "line\u2028separator\u2029paragraph",
    "bell \x07 backspace \x08 vt \x0b ff \x0c del \x7f",
    "cr\rcrlf\r\nend",
]


def safe(text: str) -> bool:
    text.encode("utf-8")  # raises on a lone surrogate
    return not FORBIDDEN.search(text) and "\x1b" not in text and "\r" not in text


@pytest.mark.parametrize("text", NASTY)
def test_clean_leaves_only_safe_utf8(text):
    out = clean(text)
    assert safe(out), repr(out)
    json.loads(json.dumps(out, ensure_ascii=False))


def test_clean_removes_nul():
    assert "\x00" not in clean("a\x00b")
    assert clean("a\x00b").startswith("a") and clean("a\x00b").endswith("b")


def test_clean_replaces_lone_surrogates_with_valid_text():
    out = clean("x\ud800y")
    assert out.encode("utf-8").decode("utf-8") == out
    assert out[0] == "x" and out[-1] == "y"


def test_clean_decodes_bytes_with_replacement():
    assert clean(b"ok \xff\xfe end") == "ok \ufffd\ufffd end"


def test_clean_strips_csi_sequences_keeping_the_text():
    assert clean("\x1b[1;31mError\x1b[0m: bad") == "Error: bad"


def test_clean_strips_osc_sequences_keeping_the_text():
    assert clean("\x1b]0;title\x07after") == "after"
    assert clean("\x1b]8;;http://e.x\x1b\\link\x1b]8;;\x1b\\") == "link"


def test_clean_leaves_no_escape_character_from_an_unterminated_sequence():
    for text in ("\x1b", "\x1b[", "\x1b[31", "\x1b]0;never ends", "x\x1b"):
        assert "\x1b" not in clean(text)


def test_clean_neutralises_bidi_overrides_and_isolates():
    for ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069":
        assert ch not in clean(f"a{ch}b")


def test_clean_turns_cr_into_newlines():
    assert clean("a\rb") == "a\nb"
    assert clean("a\r\nb") == "a\nb"


def test_clean_keeps_newlines_tabs_and_ordinary_unicode():
    text = "line 1\n\tindented \u00e9\u2603 \u4e2d\u6587 \U0001f600"
    assert clean(text) == text


def test_clean_accepts_any_object():
    assert clean(ValueError("boom")) == "boom"
    assert clean(42) == "42"
    assert clean(None) == "None"


@pytest.mark.parametrize("limit", [16, 17, 100, 600, MAX_TEXT])
def test_clean_bounds_the_length_and_says_it_truncated(limit):
    out = clean("x" * (limit * 3), limit)
    assert len(out) <= limit
    assert out.endswith("(truncated)")


def test_clean_default_bound():
    assert len(clean("y" * 100_000)) <= MAX_TEXT
    assert clean("y" * MAX_TEXT) == "y" * MAX_TEXT


def test_clean_bounds_after_removing_escapes():
    """Escape sequences do not count: text that is short once cleaned is not truncated."""
    text = "\x1b[31m" * 2000 + "short"
    assert clean(text, 100) == "short"


def test_clean_line_is_one_line():
    assert clean_line("a\nb\nc") == "a b c"


@pytest.mark.parametrize("text", ["a\rb", "a\r\nb", "\r=cmd"])
def test_clean_line_stays_one_line_with_carriage_returns(text):
    assert "\n" not in clean_line(text)
    assert "\n" not in csv_cell(text)


def test_clean_line_stays_one_line_when_truncated():
    assert "\n" not in clean_line("x" * 1000, 100)
    assert "\n" not in csv_cell("x" * 1000, 100)


@pytest.mark.parametrize("text", NASTY)
def test_clean_line_and_csv_cell_are_safe(text):
    for out in (clean_line(text), csv_cell(text)):
        assert safe(out), repr(out)


def test_clean_line_bound():
    assert len(clean_line("z" * 10_000)) <= 600
    assert len(clean_line("z" * 10_000, 50)) <= 50


@pytest.mark.parametrize(
    "text", ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1:A2)", "\t=1", "=cmd|' /C calc'!A0"]
)
def test_csv_cell_defuses_formulas(text):
    out = csv_cell(text)
    assert out.startswith("'")
    assert out[1:] == clean_line(text)


def test_csv_cell_defuses_a_formula_hidden_behind_an_escape_sequence():
    assert csv_cell("\x1b[0m=1+1").startswith("'")


@pytest.mark.parametrize("text", ["ok", "1.5", "Part 2 Option B", "", " =not first", "a=b"])
def test_csv_cell_leaves_ordinary_text_alone(text):
    assert csv_cell(text) == clean_line(text)


def test_csv_cell_joins_lines_and_is_bounded():
    out = csv_cell("a\nb" * 1000)
    assert len(out) <= 501
    assert out.startswith("a b")

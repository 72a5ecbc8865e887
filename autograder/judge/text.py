"""Text that any database, terminal and spreadsheet accepts.

Every string that reaches results.json, the score table or a CSV goes through :func:`clean`:
valid UTF-8 (lone surrogates and undecodable bytes replaced), no NUL or other control character
but newline and tab, no terminal escape sequence, bounded length. :func:`csv_cell` also keeps a
spreadsheet from reading a cell as a formula.
"""

from __future__ import annotations

import re

ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
MAX_TEXT = 8000


def clean(text: object, limit: int = MAX_TEXT, marker: str = "\n... (truncated)") -> str:
    """``text`` as safe, valid UTF-8 of at most ``limit`` characters (see the module docstring)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = str(text).encode("utf-8", "replace").decode("utf-8", "replace")
    text = ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    text = CONTROL.sub("\ufffd", text)
    if len(text) > limit:
        text = (text[: max(0, limit - len(marker))] + marker)[:limit]
    return text


def clean_line(text: object, limit: int = 600) -> str:
    """:func:`clean`, on one line."""
    flat = str(text).replace("\r\n", " ").replace("\r", " ").replace("\n", " ")
    return clean(flat, limit, marker=" ... (truncated)")


def csv_cell(text: object, limit: int = 500) -> str:
    """:func:`clean_line`, with a leading ``'`` before a cell a spreadsheet would evaluate."""
    value = clean_line(text, limit)
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t") else value

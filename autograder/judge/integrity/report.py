"""The integrity report of :mod:`autograder.judge.integrity`: the flags of each file, and a one-line summary.

:func:`scan_source` flags a file's raw text (undecodable bytes, NUL bytes, a source encoding), parses
it, and adds what :func:`.scan.scan_tree` finds; :func:`summary` makes one gradebook cell of them.

Callers pass the text decoded with ``errors="replace"`` (a U+FFFD then becomes a ``syntax`` flag) or
the raw bytes (decoded here, with the same flag when they are not UTF-8).
"""

from __future__ import annotations

import ast
import codecs
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .rules import CATEGORIES, SAFE_ENCODINGS
from .scan import scan_tree

SUMMARY_LIMIT = 300  # characters of a gradebook cell
_COOKIE = re.compile(r"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)", re.ASCII)


@dataclass(frozen=True)
class Flag:
    """One place worth a TA's look: ``file:line``, a key of :data:`CATEGORIES`, and what was seen there."""

    file: str
    line: int
    category: str
    detail: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.category}: {self.detail}"


def scan_source(name: str, text: str | bytes) -> list[Flag]:
    """Every flag of one file called ``name``, sorted by line; never raises on hostile text.

    A file that does not parse gives one ``syntax`` flag (with any flag of its raw text), not an exception.
    """
    flags, text = _text_flags(name, text)
    try:
        tree = ast.parse(text, filename=name)
    except SyntaxError as err:
        return sorted([*flags, Flag(name, err.lineno or 1, "syntax", f"does not parse: {err.msg}")], key=_order)
    except (ValueError, MemoryError, RecursionError) as err:
        return sorted([*flags, Flag(name, 1, "syntax", f"does not parse: {err}")], key=_order)
    try:
        flags += [Flag(name, line, category, detail) for line, category, detail in scan_tree(tree)]
    except RecursionError:
        flags.append(Flag(name, 1, "obfuscation", "expressions nested too deeply to scan"))
    return sorted(set(flags), key=_order)


def scan_files(files: Mapping[str, str | bytes]) -> list[Flag]:
    """Every flag of the submitted files (file name -> source), sorted by file, then line."""
    return sorted((flag for name, text in files.items() for flag in scan_source(name, text)), key=_order)


def summary(flags: Iterable[Flag], limit: int = SUMMARY_LIMIT) -> str:
    """One line for a gradebook cell: ``none``, or the count and each category's first place, at most ``limit`` chars.

    Categories come most serious first (the order of :data:`CATEGORIES`); ``+N`` counts a category's other flags.
    """
    groups: dict[str, list[Flag]] = {}
    for flag in sorted(flags, key=_order):
        groups.setdefault(flag.category, []).append(flag)
    if not groups:
        return "none"
    rank = {category: i for i, category in enumerate(CATEGORIES)}
    parts = []
    for category in sorted(groups, key=lambda c: (rank.get(c, len(rank)), c)):
        first, more = groups[category][0], len(groups[category]) - 1
        parts.append(f"{category} ({first.file}:{first.line}{f' +{more}' if more else ''})")
    total = sum(len(g) for g in groups.values())
    head, kept = f"{total} flag{'' if total == 1 else 's'}: ", []
    for part in parts:
        if len(head) + len(", ".join([*kept, part])) + len(", ...") > limit:
            break
        kept.append(part)
    text = head + ", ".join(kept) + (", ..." if len(kept) < len(parts) else "")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _order(flag: Flag) -> tuple[str, int, str, str]:
    return flag.file, flag.line, flag.category, flag.detail


def _text_flags(name: str, text: str | bytes) -> tuple[list[Flag], str]:
    """Flags of the raw text (undecodable bytes, NUL bytes, a source encoding) and the text to parse."""
    flags = []
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            line = text.count(b"\n", 0, err.start) + 1
            flags.append(Flag(name, line, "syntax", "not valid UTF-8: Python cannot read the file as written"))
            text = text.decode("utf-8-sig", errors="replace")
    elif "\ufffd" in text:
        line = text.count("\n", 0, text.index("\ufffd")) + 1
        flags.append(Flag(name, line, "syntax", "undecodable bytes (shown as U+FFFD): Python may refuse the file"))
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        flags.append(Flag(name, line, "syntax", "holds a NUL byte: Python refuses the file"))
        text = text.replace("\x00", " ")
    text = text.removeprefix("\ufeff")  # a byte-order mark, as Python itself allows
    for number, line_text in enumerate(text.split("\n", 2)[:2], 1):
        cookie = _COOKIE.match(line_text)
        if cookie:
            try:
                codec = codecs.lookup(cookie[1]).name
            except LookupError:
                flags.append(Flag(name, number, "syntax", f"declares unknown source encoding {cookie[1]!r}"))
                break
            if codec not in SAFE_ENCODINGS:
                flags.append(
                    Flag(
                        name,
                        number,
                        "obfuscation",
                        f"declares source encoding {cookie[1]!r}: Python decodes this file differently from this scan",
                    )
                )
            break
    return flags, text

"""Static integrity report: the places in a submission's source that touch the grader or the process.

The grader runs submissions in a sandbox and computes every score itself; this report never changes
one. It reads the submitted text (it never imports or runs it) and lists, for a TA, each line that
reaches for the grader's internals or the process machinery: frames, the garbage collector, native
code, /proc, processes and signals, the network, files, the autograder's modules, the import system,
monkeypatching, threads and obfuscation (:data:`CATEGORIES`; the rules are data, in
:mod:`.integrity_rules`). A flag is a reason to look, not a verdict: course code raises none.

Names are followed through aliases: ``import sys as s; s._getframe()``, ``from sys import _getframe
as g; g()``, ``getattr(sys, "_getframe")``, ``__import__("gc")``, ``importlib.import_module("ctypes")``,
``sys.modules["gc"]``, ``vars(sys)["_getframe"]`` and ``g = sys._getframe`` all resolve to the same
dotted name. Aliases are collected for the whole file at once (not statement by statement), which
errs towards flagging; a builtin (``exit``, ``exec``) counts unless a parameter, def, class or import
of that name is in scope. One flag per line and category lists everything found there.

Callers pass the text decoded with ``errors="replace"`` (a U+FFFD then becomes a ``syntax`` flag) or
the raw bytes (decoded here, with the same flag when they are not UTF-8).
"""

from __future__ import annotations

import ast
import codecs
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .integrity_rules import CATEGORIES, SAFE_ENCODINGS
from .integrity_scan import scan_tree

__all__ = ["CATEGORIES", "Flag", "scan_files", "scan_source", "summary"]

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

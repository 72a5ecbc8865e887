"""Submissions made from the reference for the repository's tests: hostile, buggy, other styles.

A submission is the reference ``solutions/`` files with changes: ``inject`` puts code at the start
of a task's body (right after its ``### BEGIN SOLUTION <task>:`` marker; building fails loudly if
the marker is gone), ``replace`` swaps an exact piece of text (it must occur exactly once), and
``extra`` adds files next to the editable ones (a ``conftest.py``, say). ``skeleton=True`` starts
from the generated ``assignment/`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from autograder.practical import EDITABLE_FILES

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Submission:
    inject: dict[str, str] = field(default_factory=dict)  # task id -> code
    replace: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # file -> [(old, new)]
    extra: dict[str, str] = field(default_factory=dict)  # relative path -> content
    skeleton: bool = False


def _indent(code: str, prefix: str = "    ") -> str:
    return "".join(prefix + line if line.strip() else line for line in code.splitlines(keepends=True))


def build(spec: Submission, dest: Path, **placeholders: str) -> Path:
    """Write the submission into ``dest``; ``placeholders`` replace their names in injected code."""
    dest.mkdir(parents=True, exist_ok=True)
    source = ROOT / ("assignment" if spec.skeleton else "solutions")
    injected = set()
    for name in EDITABLE_FILES:
        text = (source / name).read_text()
        for task, code in spec.inject.items():
            marker = f"### BEGIN SOLUTION {task}:"
            if marker not in text:
                continue
            assert text.count(marker) == 1, f"{marker} appears more than once in solutions/{name}"
            line_end = text.index("\n", text.index(marker)) + 1
            for key, value in placeholders.items():
                code = code.replace(key, repr(value))
            text = text[:line_end] + _indent(code) + text[line_end:]
            injected.add(task)
        for old, new in spec.replace.get(name, []):
            assert text.count(old) == 1, f"{old!r} is not in {source.name}/{name} exactly once"
            text = text.replace(old, new)
        (dest / name).write_text(text)
    missing = set(spec.inject) - injected
    assert not missing, f"no '### BEGIN SOLUTION' marker for {sorted(missing)} in solutions/"
    for rel, content in spec.extra.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for key, value in placeholders.items():
            content = content.replace(key, repr(value))
        path.write_text(content)
    return dest

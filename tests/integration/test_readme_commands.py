"""The README's commands exist as written: every option a ``python -m ...`` line of its bash blocks
passes is one its command accepts (read from the command's own ``--help``), and every module and
sub-command it names runs. A renamed option would otherwise leave TAs and students a README whose
commands fail on a fresh machine."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUBCOMMANDS = {
    "autograder.instructor.course": {"init", "collect", "autograde", "scores"},
    "autograder.gradescope": {"build"},
}


def readme_commands(text: str) -> list[list[str]]:
    """The ``python -m`` command lines of the ```bash blocks, continuations joined, comments cut."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:2] == ["python", "-m"] and len(words) > 2:
                commands.append(words[2:])
    return commands


def options(words: list[str]) -> set[str]:
    return {w.split("=", 1)[0] for w in words if re.fullmatch(r"--?[A-Za-z][\w-]*(=.*)?", w)}


def grouped() -> dict[tuple[str, ...], set[str]]:
    """(module, sub-command or test folder) -> the options the README passes to it."""
    groups: dict[tuple[str, ...], set[str]] = {}
    for words in readme_commands((ROOT / "README.md").read_text(encoding="utf-8")):
        module, rest = words[0], words[1:]
        if module in ("pip", "venv"):
            continue
        key = (module,)
        if module in SUBCOMMANDS and rest and rest[0] in SUBCOMMANDS[module]:
            key = (module, rest[0])
        elif module == "pytest":
            key = (module, "autograder/") if "autograder/" in rest else (module,)
        groups.setdefault(key, set()).update(options(rest))
    return groups


def test_the_readme_has_commands_of_every_audience():
    keys = {k[0] for k in grouped()}
    assert {"pytest", "autograder.grade", "autograder.release", "assignment.run", "solutions.run"} <= keys
    assert "autograder.instructor.course" in keys


@pytest.mark.parametrize("key", sorted(grouped()), ids=" ".join)
def test_every_option_the_readme_passes_is_accepted(key):
    module, *sub = key
    used = grouped()[key]
    done = subprocess.run(
        [sys.executable, "-m", module, *sub, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"python -m {' '.join(key)} --help failed: {done.stderr.strip()[-500:]}"
    known = options(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", done.stdout))
    missing = sorted(used - known)
    assert not missing, f"README passes {missing} to python -m {' '.join(key)}, which does not accept them"

"""One tested environment: constraints.txt pins what a grade depends on, every installer reads it,
and a clean run prints no warning."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from autograder.instructor.toolenv import tool_env
from tests.support import ROOT

GRADE_DEPENDS_ON = ("torch", "pytest", "pytest-timeout", "jsonschema", "nbgrader")
INSTALLERS = (".ci/run", "autograder/gradescope/setup.sh", "Dockerfile")


def pins() -> dict[str, str]:
    """``{package: version}`` from constraints.txt (every line ``name==version``)."""
    found = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"constraints.txt: {line!r} must pin one version with =="
            found[req.name] = spec.version
    return found


def pip_installs(path: str) -> list[list[str]]:
    """The argument lists of every ``pip install`` in an installer script (continuation lines joined)."""
    text = (ROOT / path).read_text().replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        line = line.split(" # ", 1)[0].replace('"${pip[@]}"', "pip install -c constraints.txt")
        if line.lstrip().startswith("#") or not re.search(r"\bpip install\b", line):
            continue
        words = shlex.split(line, posix=True)
        for i, word in enumerate(words[:-1]):
            if word == "pip" and words[i + 1] == "install":
                commands.append([w for w in words[i + 2 :] if w not in ("&&", "\\")])
                break
    return commands


def test_constraints_pin_everything_a_grade_depends_on():
    pinned = pins()
    assert set(GRADE_DEPENDS_ON) <= set(pinned)


def test_pyproject_admits_the_pinned_versions():
    tomllib = pytest.importorskip("tomllib", reason="environment: tomllib needs Python 3.11")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = pins()
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += [r for r in extra if not r.startswith("pipeline-practical")]
    for text in requirements:
        req = Requirement(text)
        if req.name in pinned:
            assert SpecifierSet(str(req.specifier)).contains(pinned[req.name]), f"{text} excludes {pinned[req.name]}"


@pytest.mark.parametrize("path", INSTALLERS)
def test_every_installer_reads_the_constraints_and_pins_nothing_itself(path):
    commands = pip_installs(path)
    assert commands, f"{path}: no pip install found"
    installed = set()
    for words in commands:
        joined = " ".join(words)
        assert re.search(r"(^|\s)-c\s+\S*constraints\.txt", joined), (
            f"{path}: {joined!r} does not use -c constraints.txt"
        )
        for word in words:
            if word.startswith("-") or "constraints.txt" in word or "://" in word or word in {"-e", ".[dev]"}:
                continue
            assert not re.search(r"[=<>~!]", word), f"{path}: {word!r} pins a version itself; pin it in constraints.txt"
            installed.add(word.split("[")[0])
    needed = {"torch", "pytest", "pytest-timeout", "jsonschema"}
    if path == ".ci/run":  # the project's dev extra brings the test tools
        assert any(".[dev]" in " ".join(w) for w in commands)
        needed = {"torch"}
    assert needed <= installed, f"{path} does not install {sorted(needed - installed)}"


def test_the_zip_and_the_student_release_carry_the_constraints():
    from autograder.instructor.student_release import build_student_files
    from autograder.instructor.upload import zip_entries

    assert "constraints.txt" in zip_entries()
    assert "constraints.txt" in build_student_files()
    assert "COPY constraints.txt" in (ROOT / "Dockerfile").read_text()


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [["-m", "assignment.run", "-p", "2", "-m", "2"], ["-m", "pytest", "autograder/", "-q", "-x", "-k", "split_sizes"]],
)
def test_a_clean_run_prints_no_warning(command):
    proc = subprocess.run(
        [sys.executable, "-W", "default", *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=tool_env(PYTHONWARNINGS="default"),
    )
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output[-3000:]
    assert not re.search(r"\w*Warning\b", output), output[-3000:]


def test_ruff_lints_every_python_file_of_the_repository():
    """Ruff's default excludes name any folder called dist or build: autograder/dist/ went unlinted
    until pyproject.toml set the list itself. Every tracked .py file must be in ruff's file list."""
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True)
    if not tracked.stdout.strip():
        pytest.skip("not a git checkout")
    linted = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--show-files", "."], cwd=ROOT, capture_output=True, text=True
    )
    seen = {str(Path(line).resolve().relative_to(ROOT)) for line in linted.stdout.split() if line.endswith(".py")}
    missing = sorted(set(tracked.stdout.split()) - seen)
    assert not missing, f"ruff does not lint {missing[:5]} ({len(missing)} files): check [tool.ruff] exclude"

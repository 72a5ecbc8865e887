"""The student release: everything students receive, written by one command.

    python -m autograder.release --student-repo DIR

1. Proves the reference scores full marks on every test, hidden ones included (as otter-grader's
   ``otter assign`` does); refuses to release otherwise.
2. Builds the student repository in memory: the generated ``assignment/``, the public autograder
   (no ``hidden/``, no release tooling), a student README (the student sections of README.md),
   HANDOUT.md, the Dockerfile, and a ``pyproject.toml`` without ``solutions``.
3. Scans it for leaks: no ``solutions/`` path, no hidden test, no line of any solution region.
4. Writes it into a temporary folder next to DIR, as a git repository with one commit (ready to
   push as a classroom template).
5. Runs ``pytest autograder/`` there and checks the untouched skeleton scores zero, every
   failure a NotImplementedError: students start from a clean, runnable state.
6. Only then moves it into place: DIR must be absent, empty or an earlier release (replaced
   whole); a failure at any step leaves DIR as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .. import layout
from .package import REPO_ROOT, generate, leaked_lines, solution_regions
from .skeleton import ReleaseError

MARKER_FILE = ".practical-release"
STUDENT_BEGIN, STUDENT_END = "<!-- BEGIN STUDENT -->", "<!-- END STUDENT -->"
TOP_FILES = ("HANDOUT.md", "Dockerfile", "constraints.txt", ".gitignore")


class ReleaseRefused(ReleaseError):
    """The release was not written (the reference fails, or something would leak)."""


def grade_in_subprocess(repo: Path, impl: str, *extra: str) -> tuple[dict, str]:
    """Run ``pytest autograder`` in ``repo`` on ``impl``; return (results.json, output)."""
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results.json"
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(repo)}
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "autograder",
                "--impl",
                impl,
                "-q",
                "-p",
                "no:cacheprovider",
                "--results-json",
                str(results),
                *extra,
            ],
            cwd=repo,
            capture_output=True,
            text=True,
            env=env,
        )
        output = proc.stdout + proc.stderr
        if not results.exists():
            last = output.strip().splitlines()[-1] if output.strip() else "no output"
            raise ReleaseRefused(f"pytest autograder --impl {impl} in {repo} wrote no results: {last}")
        return json.loads(results.read_text()), output


def prove_reference(root: Path = REPO_ROOT) -> str:
    """Refuse unless the solutions pass every test, hidden ones included. Returns a summary line."""
    results, output = grade_in_subprocess(root, "solutions", "--hidden")
    failed = [t["name"] for t in results["tests"] if t["status"] != "passed"]
    total = sum(t["max_score"] for t in results["tests"])
    if not results["tests"]:
        last = output.strip().splitlines()[-1] if output.strip() else "no output"
        raise ReleaseRefused(f"no graded test ran against the solutions ({last})")
    if failed:
        raise ReleaseRefused(
            f"the solutions do not score full marks ({results['score']:g}/{total:g}); failing: " + "; ".join(failed[:5])
        )
    return f"solutions score {results['score']:g}/{total:g} ({len(results['tests'])} tests, hidden included)"


def student_readme(readme: str) -> str:
    """The title and introduction of README.md plus its student sections."""
    if STUDENT_BEGIN not in readme:
        raise ReleaseRefused(f"README.md has no {STUDENT_BEGIN} section for the student README")
    title = readme.split("\n\n", 1)[0]
    parts = []
    for chunk in readme.split(STUDENT_BEGIN)[1:]:
        if STUDENT_END not in chunk:
            raise ReleaseRefused(f"README.md: {STUDENT_BEGIN} without {STUDENT_END}")
        parts.append(chunk.split(STUDENT_END, 1)[0].strip("\n"))
    return title + "\n\n" + "\n\n".join(parts) + "\n"


def student_pyproject(text: str) -> str:
    """pyproject.toml without the solutions package, the TA extra, or the repository's own tests."""
    replacements = [
        ('include = ["assignment*", "solutions*", "autograder*"]', 'include = ["assignment*", "autograder*"]'),
        ('testpaths = ["tests"]', 'testpaths = ["autograder"]'),
        ('dev = ["pipeline-practical[test,plot,ta]", "ruff>=0.17"]', 'dev = ["pipeline-practical[test,plot]"]'),
        ('"autograder.instructor" = ["course_template/*"]\n', ""),  # the TAs' tools are not released
    ]
    for old, new in replacements:
        if old not in text:
            raise ReleaseRefused(f"pyproject.toml changed: cannot find {old!r} to adapt it for students")
        text = text.replace(old, new)
    return text


def build_student_files(root: Path = REPO_ROOT) -> dict[str, bytes]:
    """Every file of the student repository, path -> content (nothing written)."""
    files = {f"assignment/{rel}": data for rel, data in generate(root / "solutions").items()}
    for rel in layout.files_for("students", root / "autograder"):  # no hidden/, no instructor/
        files[f"autograder/{rel}"] = (root / "autograder" / rel).read_bytes()
    files["README.md"] = student_readme((root / "README.md").read_text()).encode()
    files["pyproject.toml"] = student_pyproject((root / "pyproject.toml").read_text()).encode()
    for name in TOP_FILES:
        if (root / name).is_file():
            files[name] = (root / name).read_bytes()
    files[MARKER_FILE] = b"Generated by python -m autograder.release --student-repo; do not edit by hand.\n"
    return files


def leaks(files: dict[str, bytes], root: Path = REPO_ROOT) -> list[str]:
    """Anything in the student files that must not be there."""
    found = [f"{p}: solutions are not released" for p in files if p.startswith("solutions/")]
    found += [f"{p}: hidden tests are not released" for p in files if "/hidden/" in p]
    found += leaked_lines(files, solution_regions(root / "solutions"))
    return found


def check_destination(dest: Path) -> Path:
    """``dest``, resolved, if a release may be written there: outside this repository, and empty or
    an earlier release (never someone's work)."""
    dest = dest.resolve()
    if dest == REPO_ROOT or REPO_ROOT in dest.parents:
        raise ReleaseRefused(f"{dest} is inside this repository; write the student release elsewhere")
    if dest.exists() and not dest.is_dir():
        raise ReleaseRefused(f"{dest} is a file; give a directory for the student release")
    if dest.exists() and any(dest.iterdir()) and not (dest / MARKER_FILE).is_file():
        raise ReleaseRefused(f"{dest} is not empty and is not an earlier student release; choose another directory")
    return dest


def write_student_repo(dest: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` into ``dest``, a new folder, as a git repository with one commit."""
    for rel, data in sorted(files.items()):
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    git = [
        "git",
        "-C",
        str(dest),
        "-c",
        "user.name=Practical 9 release",
        "-c",
        "user.email=release@localhost",
        "-c",
        "commit.gpgsign=false",
        "-c",
        "init.defaultBranch=main",
    ]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "Practical 9: Pipeline Parallelism in PyTorch"]):
        proc = subprocess.run(git + args, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise ReleaseRefused(f"git {args[0]} failed in {dest}: {(proc.stderr or proc.stdout).strip()[:300]}")


def move_into_place(built: Path, dest: Path) -> str:
    """Replace ``dest`` (absent, empty, or an earlier release) by ``built``, one rename at a time."""
    if not dest.exists():
        built.rename(dest)
        return f"wrote {dest}"
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    dest.rename(old)
    built.rename(dest)
    shutil.rmtree(old)
    return f"replaced {dest}"


def check_skeleton_scores_zero(dest: Path) -> str:
    results, output = grade_in_subprocess(dest, "assignment")
    bad = [
        t["name"] for t in results["tests"] if t["status"] != "failed" or "NotImplementedError: part" not in t["output"]
    ]
    if results["score"] != 0 or bad or "INTERNALERROR" in output:
        raise ReleaseRefused(
            f"in {dest}, the untouched skeleton does not fail cleanly: "
            + ("; ".join(bad[:5]) or output.strip().splitlines()[-1])
        )
    total = sum(t["max_score"] for t in results["tests"])
    return f"the skeleton scores 0/{total:g} there, every failure a NotImplementedError"


def student_release(dest: Path, root: Path = REPO_ROOT) -> list[str]:
    """The whole release; returns the lines to print. Raises ReleaseRefused, leaving ``dest`` as it
    was, when anything fails: the repository is built and checked in a temporary folder next to
    ``dest`` and moved into place only at the end."""
    dest = check_destination(dest)  # refuse before the slow proof, not after
    if shutil.which("git") is None:
        raise ReleaseRefused("git is not installed: the student release is a git repository (install git)")
    lines = [prove_reference(root)]
    files = build_student_files(root)
    found = leaks(files, root)
    if found:
        raise ReleaseRefused("solution text would leak: " + "; ".join(found[:5]))
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.build-", dir=dest.parent))
    built = staging / dest.name
    try:
        write_student_repo(built, files)
        lines.append(f"built {len(files)} files (no solution text, no hidden tests), one git commit")
        lines.append(check_skeleton_scores_zero(built))
        lines.append(move_into_place(built, dest))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return lines

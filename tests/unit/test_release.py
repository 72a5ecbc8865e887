"""The release command: solutions/ -> assignment/ (on small packages built under tmp_path)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.instructor import release
from autograder.instructor.release import (
    MarkerError,
    ReleaseError,
    Task,
    check,
    find_tasks,
    generate,
    leaked_lines,
    read_tree,
    solution_regions,
    write_release,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

PARALLEL = '''\
"""Pipeline schedules."""
import torch


def gpipe_step(stages, inputs, targets, loss_fn, num_microbatches):
    """Docstring kept."""
    ### BEGIN SOLUTION  part2.gpipe_step: run every forward, then every backward
    outputs = [stages(x) for x in inputs.chunk(num_microbatches)]
    return sum(loss_fn(out, y) for out, y in zip(outputs, targets))
    ### END SOLUTION


class Schedule:
    def actions(self, stage):
        for mb in range(4):
            ### BEGIN SOLUTION part2.actions: yield F then B for every micro-batch
            yield ("F", stage, mb)
            yield ("B", stage, mb)
            ### END SOLUTION
'''

EXPECTED_PARALLEL = '''\
"""Pipeline schedules."""
import torch


def gpipe_step(stages, inputs, targets, loss_fn, num_microbatches):
    """Docstring kept."""
    raise NotImplementedError("part2.gpipe_step: run every forward, then every backward")


class Schedule:
    def actions(self, stage):
        for mb in range(4):
            raise NotImplementedError("part2.actions: yield F then B for every micro-batch")
'''


def make_package(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8", newline="")
        else:
            path.write_bytes(content)
    return root


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run from tmp_path, so messages name files as 'pkg/mod.py'."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def src(in_tmp):
    return make_package(
        in_tmp / "pkg",
        {
            "__init__.py": '"""Package."""\n',
            "parallel.py": PARALLEL,
            "data/config.json": '{"stages": 4}\n',
            "data/blob.bin": bytes(range(256)),
            "__pycache__/parallel.cpython-311.pyc": b"junk",
            "stale.pyc": b"junk",
        },
    )


# --------------------------------------------------------------------------- generation


def test_regions_become_one_raise_at_the_begin_indentation(src):
    files = generate(src)
    assert files["parallel.py"].decode() == EXPECTED_PARALLEL


def test_unmarked_and_non_python_files_are_copied_byte_for_byte(src):
    files = generate(src)
    assert sorted(files) == ["__init__.py", "data/blob.bin", "data/config.json", "parallel.py"]
    for rel in ("__init__.py", "data/blob.bin", "data/config.json"):
        assert files[rel] == (src / rel).read_bytes()


def test_generation_is_pure_and_idempotent(src, in_tmp):
    before = read_tree(src)
    assert generate(src) == generate(src)
    assert read_tree(src) == before
    assert sorted(p.name for p in in_tmp.iterdir()) == ["pkg"]


def test_hint_quotes_are_escaped_and_the_skeleton_raises_the_message(in_tmp):
    hint = """say "hi", it's a back\\slash \u00e9 {not} an f-string"""
    make_package(
        in_tmp / "pkg",
        {"mod.py": (f"def f():\n    ### BEGIN SOLUTION part1.f: {hint}\n    return 1\n    ### END SOLUTION\n")},
    )
    text = generate(in_tmp / "pkg")["mod.py"].decode()
    namespace: dict = {}
    exec(compile(text, "mod.py", "exec"), namespace)
    with pytest.raises(NotImplementedError) as info:
        namespace["f"]()
    assert str(info.value) == f"part1.f: {hint}"


def test_line_endings_are_kept(in_tmp):
    source = "def f():\r\n    ### BEGIN SOLUTION a.f: do it\r\n    return 1\r\n    ### END SOLUTION\r\nX = 1\r\n"
    make_package(in_tmp / "pkg", {"mod.py": source.encode()})
    assert generate(in_tmp / "pkg")["mod.py"] == (
        b'def f():\r\n    raise NotImplementedError("a.f: do it")\r\nX = 1\r\n'
    )


def test_find_tasks_and_solution_regions(src):
    assert find_tasks(src) == [
        Task("part2.gpipe_step", "run every forward, then every backward", "parallel.py", 7),
        Task("part2.actions", "yield F then B for every micro-batch", "parallel.py", 16),
    ]
    first, second = solution_regions(src)
    assert (first.line, first.end_line, first.indent) == (7, 10, "    ")
    assert first.lines == (
        "    outputs = [stages(x) for x in inputs.chunk(num_microbatches)]",
        "    return sum(loss_fn(out, y) for out, y in zip(outputs, targets))",
    )
    assert second.indent == " " * 12 and len(second.lines) == 2


# --------------------------------------------------------------------------- marker errors

BODY = "    return 1\n"


@pytest.mark.parametrize(
    "source, line, words",
    [
        pytest.param("def f():\n    ### BEGIN SOLUTION a.f: hint\n" + BODY, 2, "never closed", id="unterminated"),
        pytest.param(
            "def f():\n" + BODY + "    ### END SOLUTION\n", 3, "without a ### BEGIN SOLUTION", id="end-without-begin"
        ),
        pytest.param(
            "def f():\n    ### BEGIN SOLUTION a.f: hint\n    ### BEGIN SOLUTION a.g: hint\n"
            + BODY
            + "    ### END SOLUTION\n    ### END SOLUTION\n",
            3,
            "nested",
            id="nested",
        ),
        pytest.param(
            "def f():\n    ### BEGIN SOLUTION\n" + BODY + "    ### END SOLUTION\n",
            2,
            "needs a task id and a hint",
            id="bare-begin",
        ),
        pytest.param(
            "def f():\n    ### BEGIN SOLUTION a.f\n" + BODY + "    ### END SOLUTION\n",
            2,
            "needs a task id and a hint",
            id="no-hint",
        ),
        pytest.param(
            "def f():\n    ### BEGIN SOLUTION a.f:   \n" + BODY + "    ### END SOLUTION\n",
            2,
            "needs a task id and a hint",
            id="empty-hint",
        ),
        pytest.param(
            "def f():\n    ### BEGIN SOLUTION write the loop\n" + BODY + "    ### END SOLUTION\n",
            2,
            "needs a task id and a hint",
            id="hint-without-id",
        ),
        pytest.param(
            "def f():\n    ### BEGIN SOLUTION gpipe: hint\n" + BODY + "    ### END SOLUTION\n",
            2,
            "needs a task id and a hint",
            id="undotted-id",
        ),
        pytest.param(
            "def f():\n    ### BEGIN SOLUTION Part2.F: hint\n" + BODY + "    ### END SOLUTION\n",
            2,
            "needs a task id and a hint",
            id="uppercase-id",
        ),
        pytest.param(
            "def f():\n    ### BEGIN SOLUTION a.f: hint\n" + BODY + "  ### END SOLUTION\n",
            4,
            "must line up",
            id="end-indentation",
        ),
        pytest.param(
            "def f():\n    ### BEGIN SOLUTION a.f: hint\n" + BODY + "    ### END SOLUTION a.f\n",
            4,
            "unexpected text after",
            id="end-with-text",
        ),
        pytest.param(
            "def f():\n    ## BEGIN SOLUTION a.f: hint\n" + BODY + "    ## END SOLUTION\n",
            2,
            "looks like a solution marker",
            id="near-miss",
        ),
    ],
)
def test_marker_errors_name_file_and_line(in_tmp, source, line, words):
    make_package(in_tmp / "pkg", {"ok.py": "X = 1\n", "mod.py": source})
    with pytest.raises(MarkerError) as info:
        generate(in_tmp / "pkg")
    message = str(info.value)
    assert message.startswith(f"pkg/mod.py:{line}: ")
    assert words in message
    assert isinstance(info.value, ValueError)


def test_duplicate_task_ids_across_files(in_tmp):
    region = "def f():\n    ### BEGIN SOLUTION part1.f: hint\n    return 1\n    ### END SOLUTION\n"
    make_package(in_tmp / "pkg", {"a.py": region, "b.py": "\n" + region})
    with pytest.raises(MarkerError, match=r"^pkg/b\.py:3: duplicate task id part1\.f .*pkg/a\.py:2"):
        generate(in_tmp / "pkg")


def test_skeleton_that_does_not_compile_is_an_error(in_tmp):
    make_package(
        in_tmp / "pkg",
        {"mod.py": ("SIZES = [\n    ### BEGIN SOLUTION a.sizes: list the sizes\n    1, 2,\n    ### END SOLUTION\n]\n")},
    )
    with pytest.raises(MarkerError, match=r"^pkg/mod\.py:2: the skeleton .* does not compile"):
        generate(in_tmp / "pkg")


def test_unmarked_file_that_does_not_compile_is_an_error(in_tmp):
    make_package(in_tmp / "pkg", {"mod.py": "X = 1\ndef broken(:\n"})
    with pytest.raises(MarkerError, match=r"^pkg/mod\.py:2: this file does not compile"):
        generate(in_tmp / "pkg")


def test_importing_the_source_package_by_name_is_an_error(in_tmp):
    make_package(
        in_tmp / "pkg",
        {
            "a.py": "X = 1\n",
            "b.py": "def f():\n    ### BEGIN SOLUTION a.f: h\n    return 1\n    ### END SOLUTION\n"
            "from pkg.a import X\n",
        },
    )
    with pytest.raises(ReleaseError, match=r"^pkg/b\.py:5: imports the 'pkg' package by name"):
        generate(in_tmp / "pkg")


def test_missing_or_empty_source_is_an_error(in_tmp):
    with pytest.raises(ReleaseError, match="no such directory"):
        generate(in_tmp / "nothing")
    (in_tmp / "empty").mkdir()
    with pytest.raises(ReleaseError, match="no files"):
        generate(in_tmp / "empty")


# --------------------------------------------------------------------------- writing and checking


def test_write_release_makes_dst_equal_and_check_reports_every_difference(src, in_tmp):
    dst = in_tmp / "out"
    assert check(src, dst) == ["__init__.py", "data/blob.bin", "data/config.json", "parallel.py"]

    changes = write_release(src, dst)
    assert sorted(c.path for c in changes if c.action == "wrote") == sorted(generate(src))
    assert read_tree(dst) == generate(src)
    assert not (dst / "__pycache__").exists()
    assert check(src, dst) == []
    assert write_release(src, dst) == []  # idempotent: nothing to do the second time

    (dst / "parallel.py").write_text("edited by hand\n")
    (dst / "data/config.json").unlink()
    make_package(dst, {"old/extra.py": "X = 1\n", "__pycache__/keep.cpython-311.pyc": b"cache"})
    assert check(src, dst) == ["data/config.json", "old/extra.py", "parallel.py"]

    changes = write_release(src, dst)
    assert sorted(changes) == [
        ("deleted", "old/extra.py"),
        ("wrote", "data/config.json"),
        ("wrote", "parallel.py"),
    ]
    assert check(src, dst) == []
    assert not (dst / "old").exists()  # left empty, so removed
    assert (dst / "__pycache__/keep.cpython-311.pyc").read_bytes() == b"cache"


def test_write_release_writes_nothing_when_generation_fails(src, in_tmp):
    dst = in_tmp / "out"
    write_release(src, dst)
    before = read_tree(dst)
    (src / "parallel.py").write_text("### END SOLUTION\n")
    (src / "new.py").write_text("Y = 2\n")
    with pytest.raises(MarkerError):
        write_release(src, dst)
    assert read_tree(dst) == before


@pytest.mark.parametrize("dst", ["pkg", "pkg/sub", "."])
def test_write_release_refuses_a_destination_overlapping_the_source(src, in_tmp, dst):
    with pytest.raises(ReleaseError, match="refusing"):
        write_release(src, in_tmp / dst)
    assert (src / "parallel.py").read_text() == PARALLEL


def test_write_release_refuses_a_repository_root(src, in_tmp):
    (in_tmp / "repo/.git").mkdir(parents=True)
    with pytest.raises(ReleaseError, match=r"refusing .*\.git"):
        write_release(src, in_tmp / "repo")


def test_write_release_does_not_write_through_symlinks(src, in_tmp):
    dst = in_tmp / "out"
    dst.mkdir()
    (dst / "parallel.py").symlink_to(src / "parallel.py")
    write_release(src, dst)
    assert (src / "parallel.py").read_text() == PARALLEL
    assert not (dst / "parallel.py").is_symlink()
    assert check(src, dst) == []


# --------------------------------------------------------------------------- leak scanning


def test_leak_scan_finds_solution_lines_and_ignores_shared_short_and_comment_lines(in_tmp):
    src = make_package(
        in_tmp / "pkg",
        {
            "mod.py": (
                "def helper(stage, x):\n"
                "    output = stage(x).detach_()\n"  # also used inside the region below
                "    return output\n"
                "\n"
                "def step(stage, x):\n"
                "    ### BEGIN SOLUTION part1.step: run the stage\n"
                "    # keep the activation for the backward pass\n"
                "    output = stage(x).detach_()\n"
                "    result = output.requires_grad_(True)\n"
                "    return result\n"
                "    ### END SOLUTION\n"
            ),
        },
    )
    regions = solution_regions(src)
    generated = generate(src)
    assert leaked_lines(generated, regions) == []

    leaky = dict(generated)
    leaky["mod.py"] += (
        b"# keep the activation for the backward pass\n"  # comment: ignored
        b"return result\n"  # too short: ignored
        b"output = stage(x).detach_()\n"  # shared with unmarked code: ignored
        b"    result = output.requires_grad_(True)\n"
    )
    leaky["notebook.ipynb"] = b'{"source": ["    result = output.requires_grad_(True)\\n"]}'
    base = generated["mod.py"].count(b"\n")
    assert leaked_lines(leaky, regions) == [
        f"mod.py:{base + 4}: part1.step solution line: result = output.requires_grad_(True)",
        "notebook.ipynb:1: part1.step solution line: result = output.requires_grad_(True)",
    ]
    assert leaked_lines(leaky, regions, min_len=100) == []


def test_leak_scan_names_every_task_whose_solution_has_the_line(in_tmp):
    region = "def {0}():\n    ### BEGIN SOLUTION a.{0}: hint\n    return compute_everything(1)\n    ### END SOLUTION\n"
    src = make_package(in_tmp / "pkg", {"mod.py": region.format("f") + region.format("g")})
    leaky = {"x.py": b"return compute_everything(1)\n"}
    assert leaked_lines(leaky, solution_regions(src)) == [
        "x.py:1: a.f, a.g solution line: return compute_everything(1)",
    ]


def test_generated_release_of_the_fixture_is_leak_free(src):
    assert leaked_lines(generate(src), solution_regions(src)) == []


# --------------------------------------------------------------------------- command line


def run_cli(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "autograder.release", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_release_check_and_list_tasks(src, in_tmp):
    dst = in_tmp / "out"
    paths = ["--src", str(src), "--dst", str(dst)]

    result = run_cli(*paths, "--check")
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.endswith("/pkg/: parallel.py (missing)") for line in lines)
    assert "is out of sync with" in lines[0]
    assert lines[-1].startswith("run: python -m autograder.release --src ")
    assert not (dst).exists()

    result = run_cli(*paths)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].endswith("/pkg/: 4 files, 2 tasks")
    assert f"wrote {dst.as_posix()}/parallel.py" in result.stdout

    result = run_cli(*paths, "--check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("/pkg/ (2 tasks)")
    assert "is in sync with" in result.stdout

    result = run_cli(*paths, "--list-tasks")
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first.split()[0] == "part2.gpipe_step"
    assert first.split()[1].endswith("/pkg/parallel.py:7")
    assert first.endswith("  run every forward, then every backward")
    assert second.split()[0] == "part2.actions"


def test_cli_marker_error_is_one_line_on_stderr_with_status_2(in_tmp):
    src = make_package(in_tmp / "pkg", {"mod.py": "def f():\n    ### BEGIN SOLUTION\n    return 1\n"})
    for mode in ([], ["--check"], ["--list-tasks"]):
        result = run_cli("--src", str(src), "--dst", str(in_tmp / "out"), *mode, cwd=in_tmp)
        assert result.returncode == 2
        assert result.stdout == ""
        assert "Traceback" not in result.stderr
        (line,) = result.stderr.splitlines()
        assert line.startswith("error: pkg/mod.py:2: ")
    assert not (in_tmp / "out").exists()


def test_cli_defaults_are_relative_to_the_repository_root(in_tmp):
    args = release.build_parser().parse_args([])
    assert args.src == REPO_ROOT / "solutions"
    assert args.dst == REPO_ROOT / "assignment"
    assert not args.check and not args.list_tasks


def test_main_reports_errors_without_raising(in_tmp, capsys):
    assert release.main(["--src", str(in_tmp / "missing"), "--dst", str(in_tmp / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.err == "error: missing: no such directory\n"


def test_generated_skeleton_parses_and_keeps_docstrings(src):
    tree = ast.parse(generate(src)["parallel.py"])
    function = next(n for n in tree.body if isinstance(n, ast.FunctionDef))
    assert ast.get_docstring(function) == "Docstring kept."
    assert isinstance(function.body[-1], ast.Raise)

"""HANDOUT.md: every part and question of the original, commands that work, no claim the measurements contradict."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
import sys
from functools import cache

import pytest

from autograder.instructor import student_release
from autograder.practical import GROUPS
from autograder.student import run
from tests.support import ROOT
from tests.support.course_text import ORIGINAL_QUESTIONS, plain

HANDOUT = (ROOT / "HANDOUT.md").read_text(encoding="utf-8")
ORIGINAL_PART5_SNIPPET = """if i > 0:
    prev_out = forward_outputs[i - 1]
    prev_target = targets[i - 1]
    loss = loss_fn(prev_out, prev_target)
    loss.backward()"""
# Programs a shell block may call besides the practical's own commands (checked below).
OTHER_PROGRAMS = {("python", "-m", "pip"), ("jupyter", "lab"), ("nvidia-smi", "dmon")}
DIST = ["python", "-m", "autograder.dist"]  # the per-stage runtime (Parts 6 and 7), checked below


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", HANDOUT, flags=re.S)


def commands() -> list[list[str]]:
    """Every command line of the handout's bash blocks, as words, without comments and VAR=value prefixes."""
    found = []
    for block in blocks("bash"):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words = words[1:]
            if words:
                found.append(words)
    # commands shown inline in the text, like `python -m assignment.run --device cpu`
    for inline in re.findall(r"`((?:[A-Z_]+=\S+ )*(?:python3?|pytest) [^`]+)`", HANDOUT):
        words = [w for w in shlex.split(inline) if not re.fullmatch(r"[A-Z_]+=\S*", w)]
        found.append(words)
    return found


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}.*?(?=^## |\Z)", HANDOUT, flags=re.S | re.M)
    assert match, f"HANDOUT.md has no section '## {title}'"
    return match.group(0)


def test_parts_1_to_7_and_the_final_discussion():
    titles = re.findall(r"^## (.+)$", HANDOUT, flags=re.M)
    for n, name in enumerate(
        [
            "Run and observe (Option A)",
            "Analyse GPipe (Option B)",
            "Analyse Option C (the delayed-backward loop)",
            "Modify and experiment",
            "Code understanding",
            "Per-stage schedules, one process per stage",
            "Bonus: interleaved 1F1B and zero bubble",
        ],
        start=1,
    ):
        assert f"Part {n} — {name}" in titles
    assert "Final discussion" in titles


def test_one_name_per_concept():
    """Option C is the delayed-backward loop; "1F1B" is only the per-stage schedule (Parts 6 and 7).
    The original's name for Option C is mentioned once, as the original's."""
    text = plain(HANDOUT)  # the earlier names are checked over the whole repository by test_names.py
    assert text.count("the delayed-backward loop") >= 4 and "1F1B-style" not in text
    assert not re.search(r"1F1B[^.]{0,40}\(Option C\)|Option C[^.]{0,10}\(1F1B\)", text)
    assert len(re.findall(r"called Option C\s+\W?1F1B", text)) == 1


def test_every_original_question_is_in_its_part():
    titles = {
        "part1": "Part 1",
        "part2": "Part 2",
        "part3": "Part 3",
        "part4": "Part 4",
        "part5": "Part 5",
        "final": "Final discussion",
    }
    for part, questions in ORIGINAL_QUESTIONS.items():
        text = plain(section(titles[part]))
        for question in questions:
            assert plain(question) in text, f"{titles[part]}: {question!r} is missing"


def test_part4_table_has_the_fixed_header_and_the_three_options():
    part4 = section("Part 4")
    assert "| Method | µB=2 | µB=4 | µB=8 |" in part4
    assert all(f"| {option} | | | |" in part4 for option in "ABC")


def test_part5_shows_the_original_code():
    assert ORIGINAL_PART5_SNIPPET in section("Part 5")


def test_every_run_command_parses_with_the_real_parser():
    shown = [
        w for w in commands() if w[:3] in (["python", "-m", "assignment.run"], ["python3", "-m", "assignment.run"])
    ]
    assert len(shown) >= 15
    parser = run.build_parser()
    for words in shown:
        try:
            args = parser.parse_args(words[3:])
            run.check_args(args)
        except run.Usage as exc:
            pytest.fail(f"HANDOUT.md: `{' '.join(words)}`: {exc}")
    flags = {w for words in shown for w in words if w.startswith("-")}
    assert {"--sweep", "--plot", "--timeline", "--device", "--schedule", "-m", "-p"} <= flags


@cache
def graded_tests() -> tuple[str, ...]:
    """Node ids of every test ``pytest autograder/`` collects (one collection for all commands)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "autograder/", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    ids = tuple(line for line in proc.stdout.splitlines() if "::" in line)
    assert ids, proc.stdout[-2000:] + proc.stderr[-2000:]
    return ids


def test_every_pytest_command_selects_tests():
    shown = [w[2:] for w in commands() if w[:3] == ["python", "-m", "pytest"]]
    assert len(shown) >= 5
    for words in shown:
        assert words[1] == "autograder/", words
        if "--part" in words:
            part = int(words[words.index("--part") + 1])
            assert part in {g.part for g in GROUPS if g.part}, f"HANDOUT.md: `{' '.join(words)}`: no such part"
        if "-k" in words:
            keyword = words[words.index("-k") + 1]
            # One word: pytest -k then selects the tests whose module or test name contains it (any case).
            assert re.fullmatch(r"\w+", keyword), f"HANDOUT.md: `{' '.join(words)}`: use a single -k word"
            names = [node.split("/")[-1].lower() for node in graded_tests()]
            assert any(keyword.lower() in name for name in names), f"HANDOUT.md: `{' '.join(words)}` selects no test"


def test_every_other_command_is_a_known_program():
    for words in commands():
        if words[2:3] in (["pytest"], ["assignment.run"], ["autograder.dist"]):
            continue
        assert tuple(words[:3]) in OTHER_PROGRAMS or tuple(words[:2]) in OTHER_PROGRAMS, words


def test_every_runtime_command_parses_and_names_lists_that_exist():
    from autograder.dist.cli import SCHEDULE_NAMES, _arguments

    shown = [w for w in commands() if w[:3] == DIST]
    assert {"1f1b", "gpipe", "interleaved", "zero_bubble"} <= {_arguments(w[3:]).schedule for w in shown}
    for words in shown:
        args = _arguments(words[3:])
        assert args.schedule in SCHEDULE_NAMES, words
        assert args.impl == "assignment" or len(words) == 3, f"{words}: run the student's lists (--impl assignment)"
        if args.schedule == "interleaved":
            assert args.stages_per_rank >= 2 and args.microbatches % args.stages == 0, words


def run_example(code: str, tmp_path, monkeypatch, package: str = "solutions") -> str:
    """Run a Python block of the handout on ``package`` (the reference: the skeleton raises
    NotImplementedError) in ``tmp_path``; returns what it printed."""
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.replace("from assignment.", f"from {package}."), "HANDOUT.md", "exec"), {})
    return out.getvalue()


def test_python_examples_run(tmp_path, monkeypatch):
    examples = [b for b in blocks("python") if "import" in b]
    assert len(examples) == 3
    for code in examples:
        run_example(code, tmp_path, monkeypatch)
    # the Part 3 example also runs on the skeleton, saying what is still to write
    part3 = next(code for code in examples if "delayed_backward_schedule(p, m)" in code)
    assert "per-stage 1F1B: not written yet" in run_example(part3, tmp_path, monkeypatch, "assignment")


def test_part7_example_draws_and_saves_every_timeline(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib", reason="environment: save_png needs matplotlib (the plot extra)")
    code = next(b for b in blocks("python") if "zero_bubble_actions" in b)
    printed = run_example(code, tmp_path, monkeypatch)
    for name in ("1F1B", "interleaved", "ZB-H1"):
        assert f"{name}: makespan" in printed and (tmp_path / "out" / "part7" / f"{name}.png").is_file()
    assert "rank 0 (stages 0,4)" in printed and "I0" in printed and "W0" in printed


def test_worked_example_prints_what_the_handout_shows(tmp_path, monkeypatch):
    """The worked example's output block is what its Python block prints, character for character."""
    match = re.search(
        r"```python\n(.*?delayed_backward_schedule\(2, 3\).*?)```\s*\n.*?```text\n(.*?)```", HANDOUT, re.S
    )
    assert match, "HANDOUT.md: the worked example (a python block, then its output in a text block)"
    code, shown = match.groups()
    assert run_example(code, tmp_path, monkeypatch) == shown


def sentences(text: str) -> list[str]:
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    return [s.strip() for s in re.split(r"(?<=[.?!:])\s+|\n\s*[-|]", plain(text)) if s.strip()]


# "1F1B" here is plain per-stage 1F1B: interleaved 1F1B (Part 7) does shrink the bubble.
ONE_F_ONE_B = r"(?<!interleaved )(?<!Interleaved )(?<!Interleaved\*\* )1F1B\b"
FALSE_CLAIMS = [
    ONE_F_ONE_B + r".*\b(smaller|lower|less|fewer|shorter)\b.*\bbubble",
    ONE_F_ONE_B + r".*\breduces?\b.*\bbubble",
    ONE_F_ONE_B + r".*\b(faster|more efficient|higher throughput)\b.*\bthan GPipe",
    r"\bbubble\b.*\b(removed|eliminated|disappears)",
    r"more micro-batches always",
    r"Option C\b.*\b(is|as) (the same as|equivalent to) (per-stage )?1F1B",
]


def test_no_claim_the_measurements_contradict():
    """Statements (not questions) must not say 1F1B shrinks the bubble, beats GPipe in time, and so on."""
    for sentence in sentences(HANDOUT):
        if sentence.endswith("?"):
            continue  # the original's questions stay as questions
        for pattern in FALSE_CLAIMS:
            assert not re.search(pattern, sentence, flags=re.I), f"HANDOUT.md claims: {sentence!r}"
    assert "✅" not in HANDOUT and "⚠️" not in HANDOUT and "❌" not in HANDOUT  # the original's ratings


def test_states_what_the_measurements_show():
    """The corrections, each with where to see it; the formulas stay questions (test_answers_not_stated)."""
    text = plain(HANDOUT)
    for fact in [
        "per-stage 1F1B and GPipe take the same replayed step time and have the same bubble",
        "python -m assignment.run --sweep",
        "the formula is Part 2's question",
        "What per-stage 1F1B changes is activation memory",
        "the per-stage formula is Part 3's question",
        "not PipeDream's per-stage 1F1B",
        "it gains little over the naive pipeline, and less as m grows",
        "on one CPU the measured step times do not improve",
        "per-micro-batch overhead",
        "smaller kernels",
        "µB=2 | µB=4 | µB=4",
        "1F1W",
        "bytes ≈ peak in flight × rows per micro-batch × bytes per row",
    ]:
        assert plain(fact) in text, fact


def test_teaches_both_bubble_definitions_and_asks_about_them():
    text = plain(HANDOUT)
    for words in [
        "idle time / (p × step time)",
        "idle time / busy time",
        "share = ratio / (1 + ratio)",
        "Megatron-LM",
        "Qi et al., ICLR 2024",
        "is exact for the ratio, not for the share",
        "Which definition makes",
    ]:
        assert plain(words) in text, words


def test_part7_covers_interleaving_and_zero_bubble():
    part7 = plain(section("Part 7"))
    for words in [
        "rank r holds stages r, r+p, ..., r+(v−1)p",
        "m must be a multiple of p when v ≥ 2",
        "more messages",
        "I, the gradient with respect to the stage's input",
        "W, the gradient with respect to the stage's weights",
        "the idle time is a third of 1F1B's",
        "min(p, m) micro-batches in flight on every stage",
        "python -m pytest autograder/ --part 7",
        "ascii_gantt",
        "save_png",
    ]:
        assert plain(words) in part7, words
    assert len(re.findall(r"- Q\d\) ", part7)) >= 3  # questions answered with measurements


def test_says_how_to_run_on_cpu_one_gpu_and_several_gpus():
    text = plain(HANDOUT)
    for words in ["--device cpu", "--device cuda", "CUDA_VISIBLE_DEVICES", "p GPUs or more", "one GPU", "a CPU only"]:
        assert words in text
    assert "Part 6" in text and "per_stage.py" in text


def test_readme_links_the_handout_and_mentions_plot():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    student = student_release.student_readme(readme)
    for text in (readme, student):
        assert "](HANDOUT.md)" in text
    assert "--sweep --plot" in student


def test_student_release_contains_the_handout_and_the_cleared_notebook():
    files = student_release.build_student_files()
    assert files["HANDOUT.md"] == (ROOT / "HANDOUT.md").read_bytes()
    assert files["assignment/practical9.ipynb"] == (ROOT / "assignment" / "practical9.ipynb").read_bytes()
    assert b"BEGIN SOLUTION" not in files["assignment/practical9.ipynb"]
    assert student_release.leaks(files) == []  # no line of any reference answer, the notebook's included

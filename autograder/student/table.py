"""The rows ``run`` prints, the warnings under them, and the tasks still to do."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

from .. import practical
from .measure import STABLE_SPREAD

TODO_PATTERN = re.compile(r"(part\d+\.\w+): (.*)", re.DOTALL)  # the skeleton's NotImplementedError message


def label(name: str) -> str:
    return practical.STEP_SCHEDULES[name].label if name in practical.STEP_SCHEDULES else "per-stage 1F1B"


def render(r: dict, p: int) -> str:
    """One Markdown row of the table."""
    timing = r["timing"]
    if timing is None:
        step = "(lists: not timed)" if r["loss"] is None else "(not timed)"
    else:
        step = timing.cell() + ("" if timing.stable else " !")
    peak = max(r["replayed"].peak_in_flight.values())
    kib = max(r["held_bytes"]) / 1024
    if r["loss"] is None:
        loss, check = "", "your Part 6 lists"
    else:
        ok = r["rel_diff"] <= practical.GRAD_RTOL and abs(r["loss"] - r["ref_loss"]) <= (
            practical.LOSS_RTOL * abs(r["ref_loss"]) + 1e-6
        )
        loss, check = f"{r['loss']:.6f}", f"{r['rel_diff']:.1e} {'ok' if ok else 'WRONG'}"
    return (
        f"| {label(r['name']):<18} | {p} | {r['m']:>2} | {step:<21} | {r['speedup']:>7.2f}x | "
        f"{r['replayed'].bubble_fraction:>6.1%} | {peak:>4} | {kib:>8.1f} | {loss:<8} | {check:<14} |"
    )


def warnings(results: list[dict]) -> list[str]:
    """One line per row whose step times spread too much to compare it with others."""
    lines = []
    for r in results:
        timing = r["timing"]
        if timing is not None and not timing.stable:
            lines.append(
                f"! {label(r['name'])}, m={r['m']}: its blocks of steps spread by {timing.spread:.0%} of its "
                f"median ({timing.n} steps in {timing.blocks} blocks; more than {STABLE_SPREAD:.0%}): the machine "
                f"was busy. "
                f"Close other programs, or give more time with --budget 10, before comparing this row."
            )
    return lines


def todo_tasks(package: str) -> list[tuple[str, str]]:
    """``(task id, hint)`` of every function of ``package`` whose body (after its docstring) starts
    with the skeleton's ``raise NotImplementedError("<task id>: <hint>")``.

    Read from the syntax tree, not the text: a raise kept as a comment, or left after a ``return``,
    does not count; a file that does not parse is reported as a task of its own. Earlier task ids
    are reported under their current name.
    """
    found = []
    for path in sorted(Path(importlib.import_module(package).__file__).parent.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except SyntaxError as exc:
            found.append((path.name, f"does not parse: {exc.msg} (line {exc.lineno})"))
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.body:
                task = _stub(node)
                if task:
                    found.append((practical.OLD_TASK_IDS.get(task[0], task[0]), task[1]))
    return found


def _stub(node: ast.FunctionDef) -> tuple[str, str] | None:
    body = (
        node.body[1:]
        if isinstance(node.body[0], ast.Expr) and isinstance(getattr(node.body[0], "value", None), ast.Constant)
        else node.body
    )
    first = body[0] if body else None
    if (
        isinstance(first, ast.Raise)
        and isinstance(first.exc, ast.Call)
        and getattr(first.exc.func, "id", None) == "NotImplementedError"
        and first.exc.args
        and isinstance(first.exc.args[0], ast.Constant)
        and isinstance(first.exc.args[0].value, str)
    ):
        match = TODO_PATTERN.fullmatch(first.exc.args[0].value)
        if match:
            return match.group(1), match.group(2)
    return None

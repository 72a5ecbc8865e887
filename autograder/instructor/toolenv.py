"""Finding command-line tools from the interpreter in use, not from the caller's ``PATH``.

A tool installed with the project (``nbgrader``, ``alembic``, which nbgrader runs by name,
``hadolint``) lives next to the interpreter, in ``.venv/bin``. A TA or CI that runs
``.venv/bin/python -m ...`` without activating the environment has no such folder on ``PATH``,
so every subprocess this project starts gets :func:`tool_env`: the interpreter's folder first.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path


def interpreter_bin() -> Path:
    """The folder of the running interpreter (``.venv/bin`` for a virtual environment).

    Not resolved: a venv's ``python`` is a link to the base interpreter, and the tools live next
    to the link.
    """
    return Path(sys.executable).parent


def tool_path(path: str | None = None) -> str:
    """``path`` (default: this process's ``PATH``) with the interpreter's folder first."""
    here = str(interpreter_bin())
    rest = [p for p in (path if path is not None else os.environ.get("PATH", "")).split(os.pathsep) if p and p != here]
    return os.pathsep.join([here, *rest])


def tool_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """An environment for a subprocess: ``base`` (default ``os.environ``) with :func:`tool_path`."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = tool_path(env.get("PATH", ""))
    env.update(extra)
    return env


def find_tool(name: str) -> str | None:
    """The executable ``name``: next to the interpreter first, then on ``PATH``."""
    return shutil.which(name, path=tool_path())

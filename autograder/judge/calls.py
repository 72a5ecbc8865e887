"""What the graded tests share: calls into student code that fail a test in one line, and a session
cache so that tests of one setting share a call."""

from __future__ import annotations

from typing import Any

import pytest

from .sandbox import ProbeFailed, Sandbox


def expect(problem: str | None) -> None:
    """Fail the test with ``problem`` (one message, no traceback) unless it is None."""
    if problem:
        pytest.fail(problem, pytrace=False)


class Calls:
    """``calls.get(probe, key, **kwargs)``: the probe's data, from one call per distinct request."""

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox
        self._cache: dict[str, Any] = {}

    def get(self, probe: str, key: str, what: str, **kwargs) -> dict:
        """``what``: how to name the call in a failure (e.g. ``split_microbatches``)."""
        cache_key = repr((probe, key, sorted((k, repr(v)) for k, v in kwargs.items())))
        if cache_key not in self._cache:
            try:
                self._cache[cache_key] = self.sandbox.call(probe, kwargs, key=key)
            except ProbeFailed as exc:
                self._cache[cache_key] = f"{what}: {exc}"
        data = self._cache[cache_key]
        if isinstance(data, str):
            pytest.fail(data, pytrace=False)
        return data

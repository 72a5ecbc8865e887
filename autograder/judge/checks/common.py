"""Small helpers shared by the checks."""

from __future__ import annotations

from ..trial import Trial


def trial_failure(trial: Trial) -> str | None:
    """The trial gave nothing to judge: the call failed, or the step raised (one line)."""
    if trial.failure:
        return f"{trial.spec}: {trial.failure}"
    if trial.error:
        return f"{trial.spec}: {trial.error}"
    return None


def fmt_weights(weights) -> str:
    return "[" + ", ".join("0" if abs(w) < 1e-4 else f"{w:.3g}" for w in weights) + "]"

"""Compatibility shim: timelines moved to :mod:`autograder.schedules.timeline` (kept for one release)."""

from autograder.schedules.timeline import *  # noqa: F403
from autograder.schedules.timeline import ascii_gantt, chrome_trace, save_png, write_chrome_trace  # noqa: F401

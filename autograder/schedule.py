"""Compatibility shim: the schedule language moved to :mod:`autograder.schedules`.

Kept for one release so that Part 6 files written against the previous skeleton
(``from autograder.schedule import Action``) still import; new code imports
``autograder.schedules``.
"""

from autograder.schedules import *  # noqa: F403
from autograder.schedules import __all__  # noqa: F401
from autograder.schedules.actions import _check_pm  # noqa: F401

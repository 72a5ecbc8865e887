"""Run and compare the schedules on this package's code: ``python -m assignment.run`` (provided).

The tool itself is ``autograder.student.run``; ``--help`` lists its options.
"""

import sys

from autograder.student import run as _tool


def main(argv: list[str] | None = None) -> int:
    """``python -m <this package>.run [options]``: returns the exit status."""
    return _tool.main(argv, package=__package__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

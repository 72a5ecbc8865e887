"""Compatibility shim: the runtime moved to :mod:`autograder.dist` (kept for one release).

``python -m autograder.runtime`` still runs ``python -m autograder.dist``.
"""

import sys

from autograder.dist import *  # noqa: F403
from autograder.dist import __all__  # noqa: F401
from autograder.dist.cli import main

if __name__ == "__main__":
    sys.exit(main())

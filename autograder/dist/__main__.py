"""``python -m autograder.dist``: run per-stage action lists, one process per stage."""

import sys

from .cli import main

sys.exit(main())

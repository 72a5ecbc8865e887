"""``python -m autograder.grade``: grade submissions as Gradescope does (:mod:`autograder.gradescope.cli`)."""

import sys

if __name__ == "__main__":
    from autograder.gradescope.cli import main

    sys.exit(main())

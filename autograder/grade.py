"""``python -m autograder.grade``: grade submissions as Gradescope does (:mod:`autograder.gradescope.grade`)."""

import sys

if __name__ == "__main__":
    from autograder.gradescope.grade import main

    sys.exit(main())

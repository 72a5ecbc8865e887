"""``python -m autograder.release``: the instructor's release command (:mod:`autograder.instructor.release`)."""

import sys

if __name__ == "__main__":
    from autograder.instructor.release import main

    sys.exit(main())

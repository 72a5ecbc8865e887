"""``python -m autograder.gradescope build``: the upload zip (:mod:`autograder.instructor.upload`)."""

import sys

if __name__ == "__main__":
    from autograder.instructor.upload import main

    sys.exit(main())

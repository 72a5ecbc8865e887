"""``python -m autograder.bench``: the runtime benchmark (:mod:`autograder.instructor.bench`)."""

import sys

if __name__ == "__main__":
    from autograder.instructor.bench import main

    sys.exit(main())

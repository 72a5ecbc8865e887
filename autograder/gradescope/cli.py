"""The grading command line: one submission as Gradescope grades it, or a batch and its gradebook.

python -m autograder.grade SUBMISSION [--results results.json]              # a folder or a .zip
python -m autograder.grade --batch DIR --csv grades.csv [--out DIR] [--jobs N] [--deadline T]
                           [--notebooks COURSE_DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..judge import integrity
from ..judge.budget import DEFAULT_TOTAL_S
from .batch import add_batch_arguments, run_batch
from .grade import GradeError, Settings, grade_submission


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.grade", description=__doc__.splitlines()[0])
    parser.add_argument("submission", nargs="?", type=Path, help="a submission folder or .zip")
    parser.add_argument("--results", type=Path, default=Path("results.json"), help="where to write results.json")
    parser.add_argument("--no-hidden", action="store_true", help="skip the hidden tests")
    parser.add_argument(
        "--budget",
        "--timeout",
        type=float,
        default=DEFAULT_TOTAL_S,
        dest="budget",
        help=f"seconds for one whole grading (default {DEFAULT_TOTAL_S:g})",
    )
    parser.add_argument(
        "--call-timeout",
        "--trial-timeout",
        type=float,
        default=20.0,
        dest="call_timeout",
        help="seconds for one call into student code (default 20)",
    )
    parser.add_argument(
        "--select",
        default=None,
        metavar="EXPR",
        help="grade only the tests that pytest -k EXPR selects (to try the grader on a few tests)",
    )
    parser.add_argument("--user", default=None, help=argparse.SUPPRESS)  # kept: a private uid is now automatic
    add_batch_arguments(parser)
    args = parser.parse_args(argv)
    settings = Settings(
        hidden=not args.no_hidden,
        budget=args.budget,
        call_timeout=args.call_timeout,
        extra_args=["-k", args.select] if args.select else [],
    )
    if args.budget <= 0 or args.call_timeout <= 0:
        print("error: --budget and --call-timeout must be positive numbers of seconds", file=sys.stderr)
        return 2
    try:
        if args.batch:
            return run_batch(args, settings)
        if args.submission is None:
            raise GradeError("give a submission folder or .zip, or --batch DIR")
        if not args.submission.exists():
            raise GradeError(f"{args.submission}: no such file or folder")
        graded = grade_submission(args.submission, args.results, settings)
    except OSError as exc:
        print(f"error: cannot write the results: {exc}", file=sys.stderr)
        return 2
    except GradeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(graded.doc["output"])
    if graded.flags:
        print(f"integrity (for TAs): {integrity.summary(graded.flags)}")
    print(f"results: {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

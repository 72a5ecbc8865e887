# The grading image: Gradescope's /autograder layout, the versions of constraints.txt.
#   docker build -t pipeline-autograder .
#   docker run --rm --gpus all -v "$PWD/submission:/autograder/submission:ro" \
#       -v "$PWD/results:/autograder/results" pipeline-autograder
# The same Python (3.11) and torch as CI: PyPI's Linux build of the pinned torch carries its CUDA
# libraries, so with --gpus all it uses the host's GPUs, and without them it runs on the CPU.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    AUTOGRADER_PYTHON=/usr/local/bin/python

# Grading runs as root; student code runs as a private uid chosen per grading (no user needed).
RUN mkdir -p /autograder/source /autograder/submission /autograder/results

WORKDIR /autograder/source
COPY constraints.txt pyproject.toml README.md ./
# Versions pinned by constraints.txt. Only the dependencies, not the project: installed,
# autograder/ (hidden tests included) would be world-readable in site-packages.
# hadolint ignore=DL3013
RUN python -m pip install --no-cache-dir -c constraints.txt torch numpy pytest pytest-timeout jsonschema
COPY assignment ./assignment
COPY autograder ./autograder
# The instructor's tools never ship: autograder.layout removes what the grader does not receive.
RUN python -m autograder.layout grader \
    && chmod -R go-rwx /autograder/source \
    && cp autograder/gradescope/run_autograder /autograder/run_autograder

ENTRYPOINT ["/autograder/run_autograder"]

# The grading image: CUDA PyTorch with Gradescope's /autograder layout.
#   docker build -t pipeline-autograder .
#   docker run --rm --gpus all -v "$PWD/submission:/autograder/submission:ro" \
#       -v "$PWD/results:/autograder/results" pipeline-autograder
# Without --gpus (or without a GPU) everything runs on the CPU.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AUTOGRADER_PYTHON=/opt/conda/bin/python

# Student code runs as this unprivileged user; grading itself runs as root.
RUN useradd --create-home --shell /usr/sbin/nologin student \
    && mkdir -p /autograder/source /autograder/submission /autograder/results

WORKDIR /autograder/source
COPY pyproject.toml README.md ./
COPY assignment ./assignment
COPY autograder ./autograder

# torch comes with the base image; this adds pytest, pytest-timeout and jsonschema. Not the project
# itself: installed, autograder/ (hidden tests included) would be world-readable in site-packages.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir "pytest>=7.4" "pytest-timeout>=2.2" "jsonschema>=4.0" \
    && chmod -R go-rwx /autograder/source \
    && cp autograder/gradescope/run_autograder /autograder/run_autograder

ENTRYPOINT ["/autograder/run_autograder"]

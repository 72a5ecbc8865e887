#!/usr/bin/env bash
# Gradescope runs this once when it builds the autograder image (Ubuntu, as root), with this
# zip unpacked in /autograder/source.
set -euo pipefail
cd /autograder/source

apt-get update -qq && apt-get install -y -qq python3 python3-pip python3-venv >/dev/null
python3 -m venv /autograder/venv
# CPU build of torch: Gradescope's graders have no GPU (the Docker image in the repository root
# uses a CUDA base image instead).
/autograder/venv/bin/pip install --quiet --index-url https://download.pytorch.org/whl/cpu "torch>=2.4"
# Only the dependencies, not the project: installed, autograder/ (hidden tests, TA-only modules)
# would sit world-readable in site-packages, importable by student code.
/autograder/venv/bin/pip install --quiet "pytest>=7.4" "pytest-timeout>=2.2" "jsonschema>=4.0"

# Student code runs as this user; it cannot read hidden tests or write results.
id -u student >/dev/null 2>&1 || useradd --create-home --shell /usr/sbin/nologin student
# The sandbox gives student code read-only copies of what it needs, so the source (hidden tests
# included) can be closed to everyone but root.
chmod -R go-rwx /autograder/source

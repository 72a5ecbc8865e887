#!/usr/bin/env bash
# Gradescope runs this once when it builds the autograder image (Ubuntu, as root), with the upload
# zip unpacked in /autograder/source. Versions come from constraints.txt, the one tested set.
set -euo pipefail
cd /autograder/source

apt-get update -qq && apt-get install -y -qq python3 python3-pip python3-venv >/dev/null
python3 -m venv /autograder/venv
pip=(/autograder/venv/bin/python -m pip install --quiet --no-cache-dir -c constraints.txt)
# The CPU build of the pinned torch: Gradescope's graders have no GPU.
"${pip[@]}" --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple torch
# Only the dependencies, not the project: installed, autograder/ (hidden tests, TA-only modules)
# would sit world-readable in site-packages, importable by student code.
"${pip[@]}" numpy pytest pytest-timeout jsonschema

# Student code runs as a private uid chosen per grading, confined by Landlock where the kernel has
# it; the sandbox gives it read-only copies of what it needs, so the source (hidden tests included)
# can be closed to everyone but root.
chmod -R go-rwx /autograder/source

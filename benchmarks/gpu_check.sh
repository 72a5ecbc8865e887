#!/usr/bin/env bash
# One command for a TA with one or more CUDA GPUs: every CUDA path of the practical (the graded GPU
# tests, the students' tool on CUDA, the NCCL runtime for every schedule) and one table at the end.
# Run it from a clone set up as the README says (a CUDA build of torch in .venv, or PYTHON=...).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
exec "$PYTHON" benchmarks/gpu_check.py "$@"

"""Gradescope packaging: ``python -m autograder.gradescope build`` writes ``dist/autograder.zip``."""

"""The graded tests (public): ``pytest autograder/`` runs them; ``autograder/hidden/`` holds the rest."""

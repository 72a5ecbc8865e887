"""The original handout's questions (shared/course/practical9.txt), which the handout and the notebook
must both ask, word for word, and a helper to compare Markdown text."""

from __future__ import annotations

import re

ORIGINAL_QUESTIONS = {
    "part1": ["Are GPUs working in parallel?", "Where do you expect idle time?"],
    "part2": [
        "What changed compared to Option A?",
        "Why do we separate forward and backward?",
        "Does this remove pipeline bubbles?",
    ],
    "part3": ["When does backward start?", "What is different from GPipe?", "Why is this more efficient?"],
    "part4": ["Does increasing micro-batches always help?", "Which method benefits most?"],
    "part5": [
        "Why do we delay backward by one step?",
        "What would happen if we remove i > 0?",
        "What happens to pipeline overlap?",
    ],
    "final": [
        "Why is Option A not true pipeline parallelism?",
        "What is the main limitation of GPipe?",
        "How does 1F1B reduce pipeline bubbles?",
        "Which approach would you use in large-scale systems?",
    ],
}
ALL_QUESTIONS = [q for questions in ORIGINAL_QUESTIONS.values() for q in questions]
AUTOGRADED = {"part1_bubble_test": 1, "part2_bubble_test": 2, "part3_peak_test": 2, "part4_table_test": 3}


def plain(text: str) -> str:
    """Markdown to comparable text: no emphasis or code marks, one space between words."""
    return " ".join(re.sub(r"[`*]", "", text).split())

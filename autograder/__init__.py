"""The judge: tracing harness, schedule tools (validate, simulate, replay), checks and grading.

Everything that decides a score lives here. Student code (``assignment/``) may import the
provided tools (``autograder.schedule`` for actions, ``autograder.timeline`` for pictures),
but nothing here trusts what student code reports about itself.
"""

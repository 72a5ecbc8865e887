"""The judge: tracing harness, schedule tools (validate, simulate, replay), checks and grading.

Everything that decides a score lives here. Student code (``assignment/``) may import the
provided tools (``autograder.schedules`` for actions, ``autograder.schedules.timeline`` for pictures),
but nothing here trusts what student code reports about itself.
"""

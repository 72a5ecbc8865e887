"""The instructor's tools, never released to students and never copied into the sandbox.

* :mod:`.release`: ``solutions/`` -> ``assignment/`` (``python -m autograder.release``);
* :mod:`.notebook`: the notebook release, with nbgrader's own preprocessors;
* :mod:`.student_release`: everything students receive (``--student-repo``);
* :mod:`.reference_schedules`: the reference per-stage lists (the answers of Part 6);
* :mod:`.bench`: this runtime against ``torch.distributed.pipelining`` (``python -m autograder.bench``);
* :mod:`.toolenv`: finding command-line tools next to the interpreter.
"""

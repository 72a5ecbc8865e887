"""Static integrity report: the places in a submission's source that touch the grader or the process.

The grader runs submissions in a sandbox and computes every score itself; this report never changes
one. It reads the submitted text (it never imports or runs it) and lists, for a TA, each line that
reaches for the grader's internals or the process machinery: frames, the garbage collector, native
code, /proc, processes and signals, the network, files, the autograder's modules, the import system,
monkeypatching, threads and obfuscation (:data:`CATEGORIES`; the rules are data, in
:mod:`.rules` and :mod:`.names`). A flag is a reason to look, not a verdict: course code raises none.

Names are followed through aliases: ``import sys as s; s._getframe()``, ``from sys import _getframe
as g; g()``, ``getattr(sys, "_getframe")``, ``__import__("gc")``, ``importlib.import_module("ctypes")``,
``sys.modules["gc"]``, ``vars(sys)["_getframe"]`` and ``g = sys._getframe`` all resolve to the same
dotted name. Aliases are collected for the whole file at once (not statement by statement), which
errs towards flagging; a builtin (``exit``, ``exec``) counts unless a parameter, def, class or import
of that name is in scope. One flag per line and category lists everything found there.

Callers pass the text decoded with ``errors="replace"`` (a U+FFFD then becomes a ``syntax`` flag) or
the raw bytes (decoded here, with the same flag when they are not UTF-8).

The modules: :mod:`.report` (the flags of a file and the gradebook summary), :mod:`.scan` (the walk
that applies the rules), :mod:`.resolve` (names resolved through imports and aliases),
:mod:`.syntax` (helpers on parsed source), and the rules: :mod:`.rules` (the categories, attribute
names, strings) and :mod:`.names` (modules and members, by dotted name).
"""

from .report import Flag, scan_files, scan_source, summary
from .rules import CATEGORIES

__all__ = ["CATEGORIES", "Flag", "scan_files", "scan_source", "summary"]

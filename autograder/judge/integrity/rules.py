"""The integrity scan's categories and its rules beyond dotted names (:mod:`autograder.judge.integrity`).

The rules are data a TA can read and extend; those on dotted names (``MODULES``, ``MEMBERS``) are in
:mod:`.names`, which also explains how a dotted name is matched.

* ``CATEGORIES``: what each category of flag means, most serious first.
* ``ATTRS``: attribute names flagged on any object (frames, code objects, dunders of the interpreter, and the
  names of flagged members, for an owner the scan cannot name).
* ``STRING_NAMES``: whole string constants that spell a flagged name (``getattr(sys, name)``).
* ``STRING_PATTERNS``: regular expressions for string constants (paths, the grader's files).
* ``LONG_STRING``, ``EXITS``, ``SIGNALS``, ``MUTATORS``, ``FILE_METHODS``, ``OPENERS``, ``SAFE_DUNDERS`` and
  ``SAFE_ENCODINGS``: the small vocabularies of the scan, each explained where it is defined.
"""

from __future__ import annotations

import re

# Most serious first: summaries list categories in this order.
CATEGORIES: dict[str, str] = {
    "syntax": "the file does not parse, or holds NUL bytes or undecodable text: Python cannot import it as is",
    "autograder": "imports or names the grader (autograder beyond the schedule language, tests, pytest, "
    "the results file)",
    "monkeypatch": "changes a module or class it imported (torch, nn, the autograder) or hooks torch's dispatch",
    "frames": "reads call-stack frames or installs tracing hooks: a way to reach the grader's local variables",
    "gc": "walks the garbage collector's object graph: a way to find and change the grader's objects",
    "native": "loads native code or maps memory (ctypes, cffi, mmap, /dev/mem): goes around Python entirely",
    "procfs": "reads /proc or /sys, or finds its parent process next to signals: looks at the grader's process",
    "process": "starts, signals or ends processes (fork, subprocess, kill, signal, exit): the submission runs "
    "inside the grading process",
    "import_machinery": "reaches into the import system or the interpreter (sys.modules, sys.path, importlib, "
    "__import__, exec/eval, __globals__, __subclasses__)",
    "filesystem": "writes, deletes or locates files (absolute paths, __file__, open for writing, os.environ "
    "writes, tempfile)",
    "network": "network access (socket, urllib, http, requests, torch.distributed): nothing here needs it",
    "obfuscation": "decodes hidden data or code (base64, zlib, marshal, pickle, codecs, bytes.fromhex, huge "
    "strings, a source encoding), or builds attribute names at run time",
    "threads": "starts threads or event loops (threading, concurrent.futures, asyncio): informational, rarely "
    "needed here",
}

Rule = tuple[str, str]  # (category, explanation)


def same(category: str, explanation: str, *names: str) -> dict[str, Rule]:
    """One rule for several names: ``{name: (category, explanation)}``."""
    return {name: (category, explanation) for name in names}


ATTRS: dict[str, Rule] = {
    **same(
        "frames",
        "walks frames or tracebacks",
        "f_back",
        "f_locals",
        "f_globals",
        "f_builtins",
        "f_code",
        "f_trace",
        "f_lasti",
        "tb_frame",
        "tb_next",
        "gi_frame",
        "cr_frame",
        "ag_frame",
        "__traceback__",
    ),
    **same(
        "import_machinery",
        "reaches into functions, code objects or the class hierarchy",
        "__code__",
        "__globals__",
        "__closure__",
        "__defaults__",
        "__kwdefaults__",
        "__subclasses__",
        "__bases__",
        "__base__",
        "__mro__",
        "co_code",
        "co_consts",
        "__reduce__",
        "__reduce_ex__",
        "__self__",
    ),
    **same(
        "import_machinery",
        "reaches into the interpreter's builtins or import state",
        "__builtins__",
        "__import__",
        "__loader__",
        "__spec__",
        "exec_module",
        "load_module",
    ),
    "__file__": ("filesystem", "locates files from a module's path"),
    **same("monkeypatch", "intercepts torch operations", "__torch_function__", "__torch_dispatch__"),
    "ptrace": ("native", "calls ptrace"),
    # Names of flagged members, for when the owner is hidden (``[sys][0]._getframe``, ``getattr(x, "...")``).
    **same(
        "frames",
        "reads frames or installs a tracing hook",
        "_getframe",
        "_current_frames",
        "currentframe",
        "getouterframes",
        "getinnerframes",
        "settrace",
        "setprofile",
        "walk_stack",
    ),
    **same("gc", "walks the garbage collector's objects", "get_objects", "get_referrers", "get_referents"),
    **same("process", "ends, signals or detaches processes", "_exit", "killpg", "forkpty", "posix_spawn", "setsid"),
}

# Whole string constants that spell a flagged name: the argument of getattr or __import__ kept in a variable.
STRING_NAMES: dict[str, str] = {
    **{name: rule[0] for name, rule in ATTRS.items()},
    **dict.fromkeys(("ctypes", "_ctypes", "cffi", "mmap"), "native"),
    **dict.fromkeys(("subprocess", "multiprocessing"), "process"),
    **dict.fromkeys(("socket", "urllib", "requests"), "network"),
    **dict.fromkeys(("builtins", "importlib", "import_module"), "import_machinery"),
    **dict.fromkeys(("marshal", "pickle", "base64", "zlib"), "obfuscation"),
}

_ROOTS = "tmp|home|root|etc|usr|var|opt|mnt|run|srv|bin|sbin|lib|lib64|boot|media|autograder|work|workspace|app|code"
STRING_PATTERNS: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r"(?:^|[\s'\"=:])/(?:proc|sys)(?:/|$)"), "procfs", "a /proc or /sys path"),
    (re.compile(r"/dev/(?:mem|kmem|port|shm)\b"), "native", "a raw memory device"),
    (re.compile(r"^/dev/(?!(?:null|stdout|stderr|stdin)$|(?:mem|kmem|port|shm)\b)\w"), "filesystem", "a device path"),
    (re.compile(rf"^(?:/(?:{_ROOTS})(?:/|$)|~/)"), "filesystem", "an absolute path"),
    (re.compile(r"\bautograder(?:$|[./\\](?!(?:schedules?|student)\b))"), "autograder", "names the grader's modules"),
    (re.compile(r"results[._-]json|submission_metadata", re.I), "autograder", "names the grader's results file"),
]
LONG_STRING = 2_000  # characters: longer string constants (docstrings aside) are flagged as obfuscation

# Calls that end the process: not flagged under ``if __name__ == "__main__":`` (the grader imports the file).
EXITS = frozenset({"sys.exit", "builtins.exit", "builtins.quit", "builtins.SystemExit"})
# Flags whose presence makes ``os.getppid()`` a procfs flag (finding the parent to signal or trace it).
SIGNALS = frozenset({"os.kill", "os.killpg", "os.pidfd_open", "signal", "_signal", "ptrace"})
# Methods that change a container in place: on an imported module's data they are a monkeypatch.
MUTATORS = frozenset(
    {
        "append",
        "extend",
        "insert",
        "update",
        "clear",
        "pop",
        "popitem",
        "remove",
        "setdefault",
        "__setitem__",
        "__delitem__",
    }
)
# Methods that write or delete files, whatever object they are called on (pathlib.Path, mostly).
FILE_METHODS = frozenset(
    {
        "write_text",
        "write_bytes",
        "unlink",
        "rmdir",
        "touch",
        "symlink_to",
        "hardlink_to",
        "chmod",
        "lchmod",
        "iterdir",
        "rglob",
    }
)
OPENERS = frozenset({"builtins.open", "io.open", "codecs.open", "os.fdopen"})
SAFE_DUNDERS = frozenset({"__name__", "__qualname__", "__module__", "__doc__"})
SAFE_ENCODINGS = frozenset({"utf-8", "ascii"})

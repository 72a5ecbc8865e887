"""The rules of the integrity scan (:mod:`autograder.judge.integrity`): data a TA can read and extend.

Names are dotted, as the scanner resolves them through imports and aliases (``import sys as s;
s._getframe`` is ``sys._getframe``, ``bytes`` is ``builtins.bytes``). A rule matches its name and
everything under it (``sys.monitoring`` matches ``sys.monitoring.events``); the longest matching
rule wins, so an entry of ``None`` carves out an allowed name (``autograder.schedules``).

* ``MODULES``: modules whose mere import is worth a look; flagged where they are imported (also
  ``__import__("x")``, ``importlib.import_module("x")``, ``sys.modules["x"]``) and where they are
  reached without such an import (``torch.multiprocessing`` through ``import torch``).
* ``MEMBERS``: names flagged wherever they are used, or imported with ``from m import name``.
* ``ATTRS``: attribute names flagged on any object (frames, code objects, dunders of the interpreter, and the
  names of flagged members, for an owner the scan cannot name).
* ``STRING_NAMES``: whole string constants that spell a flagged name (``getattr(sys, name)``).
* ``STRING_PATTERNS``: regular expressions for string constants (paths, the grader's files).

:func:`match` looks a dotted name up in ``MODULES`` and ``MEMBERS`` (:func:`lookup`: allowed names too).
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


def _same(category: str, explanation: str, *names: str) -> dict[str, Rule]:
    return {name: (category, explanation) for name in names}


MODULES: dict[str, Rule | None] = {
    **_same(
        "native", "loads native code or reads raw memory", "ctypes", "_ctypes", "cffi", "torch.utils.cpp_extension"
    ),
    "mmap": ("native", "maps memory or files"),
    **_same(
        "process",
        "starts or controls processes",
        "subprocess",
        "_posixsubprocess",
        "multiprocessing",
        "torch.multiprocessing",
        "pty",
        "concurrent.futures.process",
    ),
    **_same("process", "installs signal handlers or sends signals", "signal", "_signal"),
    "resource": ("process", "changes the process's resource limits"),
    "atexit": ("process", "runs code when the grading process exits"),
    "faulthandler": ("process", "can dump or end the process on a timer"),
    **_same(
        "network",
        "opens network connections",
        "socket",
        "_socket",
        "ssl",
        "urllib",
        "http",
        "requests",
        "httpx",
        "urllib3",
        "aiohttp",
        "ftplib",
        "smtplib",
        "telnetlib",
        "xmlrpc",
        "socketserver",
        "torch.distributed",
        "torch.hub",
    ),
    "psutil": ("procfs", "inspects processes (the grader's among them)"),
    "tempfile": ("filesystem", "creates temporary files (informational)"),
    "glob": ("filesystem", "lists files"),
    "autograder": ("autograder", "imports the grader's own code"),
    "autograder.schedules": None,  # the schedule language students may use in per_stage.py
    "autograder.schedule": None,  # its old name
    "autograder.student": None,  # the students' tools (assignment/run.py)
    "solutions": ("autograder", "imports the reference solutions"),
    **_same(
        "autograder", "imports the grader's tests or test runner", "tests", "conftest", "pytest", "_pytest", "pluggy"
    ),
    **_same(
        "import_machinery",
        "reaches into the interpreter's import system or builtins",
        "builtins",
        "imp",
        "zipimport",
        "runpy",
        "pkgutil",
        "code",
        "codeop",
    ),
    **_same(
        "monkeypatch",
        "hooks torch's internals or dispatch",
        "torch._C",
        "torch.overrides",
        "torch.library",
        "torch.utils._python_dispatch",
        "torch._ops",
    ),
    "unittest.mock": ("monkeypatch", "patches objects at run time"),
    **_same(
        "threads", "runs code in other threads or event loops", "threading", "_thread", "concurrent.futures", "asyncio"
    ),
    **_same(
        "obfuscation",
        "decodes or deserialises data",
        "base64",
        "binascii",
        "zlib",
        "bz2",
        "lzma",
        "gzip",
        "marshal",
        "pickle",
        "_pickle",
        "dill",
        "cloudpickle",
        "codecs",
        "shelve",
    ),
}

_OS_EXEC = [f"os.{p}{s}" for p in ("exec", "spawn") for s in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")]
_MODULE_HOOKS = [
    f"torch.nn.modules.module.register_module_{h}"
    for h in (
        "forward_hook",
        "forward_pre_hook",
        "backward_hook",
        "full_backward_hook",
        "full_backward_pre_hook",
        "buffer_registration_hook",
        "module_registration_hook",
        "parameter_registration_hook",
    )
]

MEMBERS: dict[str, Rule | None] = {
    **_same(
        "frames",
        "reads another function's frame",
        "sys._getframe",
        "sys._current_frames",
        "sys._current_exceptions",
        "sys.last_traceback",
        "inspect.currentframe",
        "inspect.stack",
        "inspect.trace",
        "inspect.getouterframes",
        "inspect.getinnerframes",
        "inspect.getframeinfo",
        "inspect.getargvalues",
        "traceback.walk_stack",
        "traceback.walk_tb",
    ),
    **_same(
        "frames",
        "installs a tracing or audit hook",
        "sys.settrace",
        "sys.setprofile",
        "sys.monitoring",
        "sys.addaudithook",
        "threading.settrace",
        "threading.setprofile",
        "threading.settrace_all_threads",
        "threading.setprofile_all_threads",
    ),
    **_same(
        "gc",
        "walks the garbage collector's objects",
        "gc.get_objects",
        "gc.get_referrers",
        "gc.get_referents",
        "gc.callbacks",
        "gc.garbage",
    ),
    **_same(
        "native", "loads a native library", "torch.ops.load_library", "torch.classes.load_library", "sys.setdlopenflags"
    ),
    **_same("process", "sends a signal", "os.kill", "os.killpg", "os.pidfd_open"),
    **_same(
        "process",
        "starts a process",
        "os.fork",
        "os.forkpty",
        "os.posix_spawn",
        "os.posix_spawnp",
        "os.system",
        "os.popen",
        "os.register_at_fork",
        *_OS_EXEC,
    ),
    **_same(
        "process",
        "changes the process group, session or scheduling",
        "os.setsid",
        "os.setpgid",
        "os.setpgrp",
        "os.nice",
        "os.sched_setaffinity",
        "os.setuid",
        "os.setgid",
    ),
    **_same("process", "waits for child processes", "os.wait", "os.waitpid", "os.wait3", "os.wait4", "os.waitid"),
    **_same(
        "process", "ends the grading process", "os._exit", "os.abort", "sys.exit", "builtins.exit", "builtins.quit"
    ),
    **_same(
        "process",
        "raises or catches what ends the grading process",
        "builtins.SystemExit",
        "builtins.KeyboardInterrupt",
    ),
    **_same(
        "filesystem",
        "changes or deletes files",
        "os.remove",
        "os.unlink",
        "os.rename",
        "os.renames",
        "os.replace",
        "os.chmod",
        "os.lchmod",
        "os.fchmod",
        "os.chown",
        "os.lchown",
        "os.fchown",
        "os.rmdir",
        "os.removedirs",
        "os.mkdir",
        "os.makedirs",
        "os.symlink",
        "os.link",
        "os.truncate",
        "os.ftruncate",
        "os.utime",
        "os.mkfifo",
        "os.mknod",
        "torch.save",
    ),
    "shutil": ("filesystem", "copies, moves or deletes files"),
    **dict.fromkeys(("shutil.which", "shutil.get_terminal_size", "shutil.disk_usage", "shutil.ignore_patterns")),
    **_same("filesystem", "changes the working directory or the root", "os.chdir", "os.fchdir", "os.chroot"),
    **_same(
        "filesystem",
        "works on raw file descriptors",
        "os.open",
        "os.write",
        "os.dup",
        "os.dup2",
        "os.close",
        "os.closerange",
    ),
    **_same(
        "filesystem",
        "lists or locates directories",
        "os.listdir",
        "os.scandir",
        "os.walk",
        "os.getcwd",
        "os.path.expanduser",
        "pathlib.Path.cwd",
        "pathlib.Path.home",
    ),
    **_same("filesystem", "writes the environment", "os.putenv", "os.unsetenv"),
    **_same(
        "import_machinery",
        "reads or changes the import system",
        "sys.modules",
        "sys.path",
        "sys.meta_path",
        "sys.path_hooks",
        "sys.path_importer_cache",
        "importlib",
    ),
    "importlib.util.find_spec": None,  # only answers "is this package installed?"
    "importlib.metadata": None,  # package versions
    **_same("import_machinery", "runs code built from strings", "builtins.exec", "builtins.eval", "builtins.compile"),
    **_same(
        "import_machinery",
        "builds functions, code objects or modules by hand",
        "types.FunctionType",
        "types.CodeType",
        "types.ModuleType",
    ),
    **_same("monkeypatch", "installs a global hook on every module (the grader's too)", *_MODULE_HOOKS),
    **_same(
        "monkeypatch",
        "a mode that intercepts every torch call (the grader's too)",
        "torch.overrides.TorchFunctionMode",
        "torch.utils._python_dispatch.TorchDispatchMode",
    ),
    **_same("obfuscation", "decodes hex into bytes", "builtins.bytes.fromhex", "builtins.bytearray.fromhex"),
    "torch.load": ("obfuscation", "unpickles a file"),
}

ATTRS: dict[str, Rule] = {
    **_same(
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
    **_same(
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
    **_same(
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
    **_same("monkeypatch", "intercepts torch operations", "__torch_function__", "__torch_dispatch__"),
    "ptrace": ("native", "calls ptrace"),
    # Names of flagged members, for when the owner is hidden (``[sys][0]._getframe``, ``getattr(x, "...")``).
    **_same(
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
    **_same("gc", "walks the garbage collector's objects", "get_objects", "get_referrers", "get_referents"),
    **_same("process", "ends, signals or detaches processes", "_exit", "killpg", "forkpty", "posix_spawn", "setsid"),
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

_RULES: dict[str, Rule | None] = {**MEMBERS, **MODULES}
MODULE_KEYS = frozenset(key for key, rule in MODULES.items() if rule)


def lookup(name: str) -> tuple[str, Rule | None] | None:
    """The longest rule key that is ``name`` or a dotted prefix of it, with its rule (None: allowed), or None."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        key = ".".join(parts[:end])
        if key in _RULES:
            return key, _RULES[key]
    return None


def match(name: str) -> tuple[str, str, str] | None:
    """The rule that flags ``name``, as (key, category, explanation); None when none does or it is allowed."""
    found = lookup(name)
    return (found[0], *found[1]) if found and found[1] else None

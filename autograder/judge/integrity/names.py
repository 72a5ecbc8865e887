"""The integrity scan's rules on dotted names (:mod:`autograder.judge.integrity`): data a TA can read and extend.

Names are dotted, as the scanner resolves them through imports and aliases (``import sys as s;
s._getframe`` is ``sys._getframe``, ``bytes`` is ``builtins.bytes``). A rule matches its name and
everything under it (``sys.monitoring`` matches ``sys.monitoring.events``); the longest matching
rule wins, so an entry of ``None`` carves out an allowed name (``autograder.schedules``).

* ``MODULES``: modules whose mere import is worth a look; flagged where they are imported (also
  ``__import__("x")``, ``importlib.import_module("x")``, ``sys.modules["x"]``) and where they are
  reached without such an import (``torch.multiprocessing`` through ``import torch``).
* ``MEMBERS``: names flagged wherever they are used, or imported with ``from m import name``.

:func:`match` looks a dotted name up in ``MODULES`` and ``MEMBERS`` (:func:`lookup`: allowed names too).
The categories and the rules on attribute names and strings are in :mod:`.rules`.
"""

from __future__ import annotations

from .rules import Rule, same

MODULES: dict[str, Rule | None] = {
    **same("native", "loads native code or reads raw memory", "ctypes", "_ctypes", "cffi", "torch.utils.cpp_extension"),
    "mmap": ("native", "maps memory or files"),
    **same(
        "process",
        "starts or controls processes",
        "subprocess",
        "_posixsubprocess",
        "multiprocessing",
        "torch.multiprocessing",
        "pty",
        "concurrent.futures.process",
    ),
    **same("process", "installs signal handlers or sends signals", "signal", "_signal"),
    "resource": ("process", "changes the process's resource limits"),
    "atexit": ("process", "runs code when the grading process exits"),
    "faulthandler": ("process", "can dump or end the process on a timer"),
    **same(
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
    **same(
        "autograder", "imports the grader's tests or test runner", "tests", "conftest", "pytest", "_pytest", "pluggy"
    ),
    **same(
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
    **same(
        "monkeypatch",
        "hooks torch's internals or dispatch",
        "torch._C",
        "torch.overrides",
        "torch.library",
        "torch.utils._python_dispatch",
        "torch._ops",
    ),
    "unittest.mock": ("monkeypatch", "patches objects at run time"),
    **same(
        "threads", "runs code in other threads or event loops", "threading", "_thread", "concurrent.futures", "asyncio"
    ),
    **same(
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
    **same(
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
    **same(
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
    **same(
        "gc",
        "walks the garbage collector's objects",
        "gc.get_objects",
        "gc.get_referrers",
        "gc.get_referents",
        "gc.callbacks",
        "gc.garbage",
    ),
    **same(
        "native", "loads a native library", "torch.ops.load_library", "torch.classes.load_library", "sys.setdlopenflags"
    ),
    **same("process", "sends a signal", "os.kill", "os.killpg", "os.pidfd_open"),
    **same(
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
    **same(
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
    **same("process", "waits for child processes", "os.wait", "os.waitpid", "os.wait3", "os.wait4", "os.waitid"),
    **same("process", "ends the grading process", "os._exit", "os.abort", "sys.exit", "builtins.exit", "builtins.quit"),
    **same(
        "process",
        "raises or catches what ends the grading process",
        "builtins.SystemExit",
        "builtins.KeyboardInterrupt",
    ),
    **same(
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
    **same("filesystem", "changes the working directory or the root", "os.chdir", "os.fchdir", "os.chroot"),
    **same(
        "filesystem",
        "works on raw file descriptors",
        "os.open",
        "os.write",
        "os.dup",
        "os.dup2",
        "os.close",
        "os.closerange",
    ),
    **same(
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
    **same("filesystem", "writes the environment", "os.putenv", "os.unsetenv"),
    **same(
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
    **same("import_machinery", "runs code built from strings", "builtins.exec", "builtins.eval", "builtins.compile"),
    **same(
        "import_machinery",
        "builds functions, code objects or modules by hand",
        "types.FunctionType",
        "types.CodeType",
        "types.ModuleType",
    ),
    **same("monkeypatch", "installs a global hook on every module (the grader's too)", *_MODULE_HOOKS),
    **same(
        "monkeypatch",
        "a mode that intercepts every torch call (the grader's too)",
        "torch.overrides.TorchFunctionMode",
        "torch.utils._python_dispatch.TorchDispatchMode",
    ),
    **same("obfuscation", "decodes hex into bytes", "builtins.bytes.fromhex", "builtins.bytearray.fromhex"),
    "torch.load": ("obfuscation", "unpickles a file"),
}

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

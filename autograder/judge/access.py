"""Can the grading's private uid read what a call needs (the interpreter, torch, the sandbox)?

A Python installed under a folder other users cannot enter (pyenv in ``/root``, a virtual
environment in a private home) cannot be used by an unprivileged uid. :func:`unreadable_for`
checks, in a forked process that has dropped to that uid, whether each path can be opened.
"""

from __future__ import annotations

import json
import os


def unreadable_for(uid: int, paths: list[str]) -> list[str]:
    """The paths of ``paths`` that ``uid`` cannot open for reading (as root; [] when not root)."""
    if os.geteuid() != 0 or not paths:
        return []
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        failed = []
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            for path in paths:
                try:
                    fd = os.open(path, os.O_RDONLY)
                    os.close(fd)
                except OSError:
                    failed.append(path)
        except OSError:
            failed = list(paths)
        os.write(write_end, json.dumps(failed).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    try:
        return json.loads(data)
    except ValueError:
        return list(paths)


def needed_paths() -> list[str]:
    """Files a call process opens: the stdlib, a C extension of it, torch's package."""
    import importlib.util
    import os as os_module

    found = [os_module.__file__]
    for name in ("_json", "torch", "numpy"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin and os.path.exists(spec.origin):
            found.append(spec.origin)
    return found

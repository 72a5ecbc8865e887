"""The grader's worker process: runs probes against student code, one fresh process per call.

Started by :class:`autograder.sandbox.SandboxRunner` (never imported by student code on purpose)::

    python -I -B -c BOOTSTRAP SRC WORK RESPONSE_FD CONFIG_JSON

``SRC`` holds read-only copies of the autograder modules and of the implementation package (and
nothing else: the reference ``solutions`` are not importable here); ``WORK`` is this worker's
private directory; ``RESPONSE_FD`` is a pipe to the parent (never stdout); ``CONFIG_JSON`` has
the resource limits. The process is a *fork server*:

1. Once, before any student code exists in it, the worker sets its resource limits, imports torch
   and the autograder, wraps the tracer with an event ledger and snapshots the functions that
   must not change (the autograder's modules and classes, torch's namespaces, builtins).
2. For each request (one JSON line on stdin: ``id``, ``probe``, ``kwargs`` as a Python literal,
   ``dir``, ``timeout``) it clears ``WORK``, creates ``WORK/<dir>`` and forks a *call process*
   in its own process group. That process sends fd 1 and 2 to ``<dir>/output.log``, seeds
   torch, imports whatever student modules the probe asks for, runs the probe, checks the
   snapshot and the ledger, and writes ``{"ok": ..., ...}`` with ``torch.save`` to
   ``<dir>/result.pt``; then it ends with ``os._exit(0)``.
3. The worker waits at most ``timeout`` seconds (on timeout it asks faulthandler for a
   traceback, then kills the call's process group), kills every process the call left behind
   (the worker is a child subreaper, so even daemons that called ``setsid`` come back to it),
   and answers one JSON line on ``RESPONSE_FD``: how the call process ended.

Why a fork per call rather than one long-lived process: every probe starts from the same clean
state (nothing a previous probe or a previously imported student module did carries over, so
scores do not depend on the order or selection of tests), a crash costs a fork (~20 ms), not a
new torch import (~2 s), and a schedule's monkeypatching at import time is seen by the tracer,
which is built before the student's module is imported.

The worker never initialises CUDA (a forked child could not use it afterwards); each call process
initialises it itself when the probe runs on a GPU.

Everything here runs with the student's privileges and next to the student's code, so the parent
trusts none of it: it loads ``result.pt`` with ``weights_only=True`` and type-checks it, checks
the shape of the worker's answers, and uses the output log only for the text of messages.
"""
from __future__ import annotations

import ast
import ctypes
import gc
import json
import os
import resource
import select
import shutil
import signal
import sys
import time
from pathlib import Path

RESULT = "result.pt"
LOG = "output.log"
PR_SET_CHILD_SUBREAPER = 36
DUMP_SIGNAL = signal.SIGUSR1  # asks a hanging call for a traceback (faulthandler) before the kill
DUMP_GRACE_S = 0.3


# -- resource limits and process hygiene (worker start, before any import of student code) -------

def set_limits(config: dict) -> None:
    """Soft = hard limits, so an unprivileged call process cannot raise them again."""
    def cap(which, value):
        if value and value > 0:
            resource.setrlimit(which, (int(value), int(value)))

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    cap(resource.RLIMIT_FSIZE, config.get("max_file_bytes"))
    cap(resource.RLIMIT_AS, config.get("memory_bytes"))
    cap(resource.RLIMIT_NPROC, config.get("max_processes"))
    # Writing past RLIMIT_FSIZE raises SIGXFSZ, which would kill the process: ignore it, so the
    # write just fails (EFBIG) and a print flood ends with an error instead of a silent death.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process (Linux), so it can kill them all."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (zombies included)."""
    kids: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(k) for k in f.read().split())
        return kids
    except OSError:
        pass
    for entry in os.listdir("/proc"):  # kernels without /proc/<pid>/task/<tid>/children
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                kids.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return kids


def kill_descendants(rounds: int = 200) -> None:
    """Kill and reap every descendant of this process (the call process and all it started)."""
    me, my_group = os.getpid(), os.getpgrp()
    for _ in range(rounds):
        kids = children_of(me)
        if not kids:
            return
        for kid in kids:
            try:
                group = os.getpgid(kid)
                if group != my_group:
                    os.killpg(group, signal.SIGKILL)
            except OSError:
                pass
            try:
                os.kill(kid, signal.SIGKILL)
            except OSError:
                pass
        reap()
        time.sleep(0.002)


def reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def clear_directory(path: str) -> None:
    """Remove everything in ``path`` (the files a call left behind)."""
    def force(func, name, _exc):
        try:
            os.chmod(os.path.dirname(name) or ".", 0o700)
            os.chmod(name, 0o700)
            func(name)
        except OSError:
            pass

    for entry in os.listdir(path):
        full = os.path.join(path, entry)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full, onerror=force)
        else:
            try:
                os.unlink(full)
            except OSError:
                pass


# -- what must not change: snapshot and ledger -------------------------------------------------

def _watched_namespaces():
    """(label, namespace) pairs whose callables a student must not replace."""
    import builtins
    import math
    import time as time_module
    import traceback

    import torch
    import torch.nn.functional

    from autograder import child, impl, probes, schedule, tracing, trial

    spaces = [("builtins", builtins), ("math", math), ("time", time_module), ("traceback", traceback),
              ("torch", torch), ("torch.Tensor", torch.Tensor), ("torch.nn.Module", torch.nn.Module),
              ("torch.nn.functional", torch.nn.functional), ("torch.autograd", torch.autograd),
              ("torch.autograd.Function", torch.autograd.Function)]
    base = getattr(torch._C, "TensorBase", None) or getattr(torch._C, "_TensorBase", None)
    if base is not None:
        spaces.append(("torch._C.TensorBase", base))
    for module in (probes, tracing, trial, impl, schedule, child):
        spaces.append((module.__name__, module))
        for name, value in vars(module).items():
            if isinstance(value, type) and value.__module__ == module.__name__:
                spaces.append((f"{module.__name__}.{name}", value))
    return spaces


def _code_of(value):
    func = getattr(value, "__func__", value)  # staticmethod / classmethod
    return getattr(func, "__code__", None)


def take_snapshot() -> tuple:
    """Immutable record of every watched callable: (label, namespace dict, key, object, code)."""
    entries = []
    for label, space in _watched_namespaces():
        table = vars(space)
        for key, value in list(table.items()):
            if key == "_" or not (callable(value) or isinstance(value, (staticmethod, classmethod, property))):
                continue
            entries.append((f"{label}.{key}", table, key, value, _code_of(value)))
    return tuple(entries)


def _torch_wrapper_of(now, value) -> bool:
    """Whether ``now`` is torch's own wrapper of ``value``: importing ``torch._dynamo`` (which
    ``torch.compile`` or ``torch.use_deterministic_algorithms`` may do) rebinds ``torch.manual_seed``
    to a wrapper defined in torch. Not a student's change."""
    import torch
    code = getattr(now, "__code__", None)
    return (getattr(now, "__wrapped__", None) is value and code is not None
            and code.co_filename.startswith(os.path.dirname(torch.__file__) + os.sep))


def changed_since(snapshot: tuple) -> list[str]:
    """Labels of watched callables that were replaced, deleted or given another ``__code__``."""
    missing = object()
    changed = []
    for label, table, key, value, code in snapshot:
        now = table.get(key, missing)
        if (now is not value or _code_of(now) is not code) and not _torch_wrapper_of(now, value):
            changed.append(label)
    return changed


class Ledger:
    """The events the harness itself recorded, kept next to (not inside) the probe's tracer.

    ``Tracer.__init__`` and ``Tracer._record`` are wrapped once, in the worker, before any student
    code exists. The first tracer built in a call is the probe's. An event counts only when it is
    recorded from the harness's own code (``TracedStage.forward``, or ``Tracer._backward_ended``
    called by the autograd node ``_BackwardEnd.backward``) with the tracer's original clock
    origin; after the probe the returned events must equal the ledger's. This catches events
    appended, removed or edited through ``gc`` or the tracer's attributes, and events recorded by
    calling the tracer's methods directly. It does not see edits of the tracer's private tables
    (``_b_start``, ``_outputs``): code in the same process can defeat any such check with enough
    effort (see autograder/sandbox.py).
    """

    def __init__(self):
        self.tracer = None
        self.t0 = None
        self.events: list = []
        self.forged = 0

    def install(self, tracing) -> None:
        ledger = self
        original_init, original_record = tracing.Tracer.__init__, tracing.Tracer._record
        forward, ended = tracing.TracedStage.forward.__code__, tracing.Tracer._backward_ended.__code__
        backward_node = tracing._BackwardEnd.backward.__code__
        getframe = sys._getframe

        def from_harness() -> bool:
            caller = getframe(2).f_code  # 0: here, 1: _record, 2: who recorded
            if caller is forward:
                return True
            return caller is ended and getframe(3).f_code is backward_node  # autograd called it

        def __init__(self, *args, **kwargs):
            original_init(self, *args, **kwargs)
            if ledger.tracer is None:
                ledger.tracer, ledger.t0 = self, self.t0

        def _record(self, event):
            if self is ledger.tracer:
                if not from_harness() or self.t0 != ledger.t0:
                    ledger.forged += 1
                ledger.events.append(tuple(event))
            original_record(self, event)

        __init__.__doc__, _record.__doc__ = original_init.__doc__, original_record.__doc__
        tracing.Tracer.__init__ = __init__
        tracing.Tracer._record = _record

    def problems(self, data) -> list[str]:
        if self.tracer is None or not isinstance(data, dict):
            return []
        problems = []
        recorded = [list(e) for e in self.events]
        if self.forged:
            problems.append("events recorded by code other than the harness")
        if data.get("events") != recorded:
            problems.append("the harness's recorded events (Tracer.events)")
        if self.tracer.t0 != self.t0:
            problems.append("the harness's clock origin (Tracer.t0)")
        return problems


# -- one call ------------------------------------------------------------------------------------

def run_call(request: dict, work: str, control_fds: tuple, runtime: dict) -> None:
    """In the forked call process: run one probe and save its envelope. Never returns."""
    code = 1
    try:
        os.setpgid(0, 0)
        for fd in control_fds:
            os.close(fd)
        call_dir = os.path.join(work, request["dir"])
        os.chdir(call_dir)
        for target, fd in ((0, os.open(os.devnull, os.O_RDONLY)),
                           (1, os.open(LOG, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600))):
            if fd != target:
                os.dup2(fd, target)
                os.close(fd)
        os.dup2(1, 2)
        sys.stdout.reconfigure(line_buffering=True)
        sys.stderr.reconfigure(line_buffering=True)
        envelope = runtime["run"](request)
        runtime["save"](envelope, call_dir)
        code = 0
    except BaseException:  # noqa: BLE001 - nothing may escape a forked child
        code = 70
    finally:
        os._exit(code)


def make_runtime(impl_name: str, src: str) -> dict:
    """Import torch and the autograder, install the ledger, snapshot; return the call functions."""
    import faulthandler

    import torch

    from autograder import probes, tracing, trial  # noqa: F401 - trial: part of the snapshot
    from autograder.impl import Impl

    save, manual_seed, set_threads = torch.save, torch.manual_seed, torch.set_num_threads
    # torch.use_deterministic_algorithms also sets an inductor option, and importing
    # torch._inductor costs ~1 s and rebinds torch functions; eager code (all a probe runs)
    # only reads the flag set by the C function, so set that directly where it exists.
    deterministic = getattr(torch._C, "_set_deterministic_algorithms", torch.use_deterministic_algorithms)
    deterministic(True, warn_only=True)
    set_threads(1)
    manual_seed(0)
    ledger = Ledger()
    ledger.install(tracing)
    snapshot = take_snapshot()
    table = dict(probes.PROBES)
    describe = probes.describe_exception
    impl = Impl(impl_name, Path(src))
    check, problems = changed_since, ledger.problems

    def run(request: dict) -> dict:
        faulthandler.enable(all_threads=True)
        faulthandler.register(DUMP_SIGNAL, all_threads=True)
        manual_seed(0)
        deterministic(True, warn_only=True)
        set_threads(1)
        probe = table[request["probe"]]
        kwargs = ast.literal_eval(request["kwargs"])
        try:
            envelope = {"ok": True, "data": probe(impl, **kwargs)}
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            envelope = {"ok": False, "kind": "exit", "code": int(status), "message": describe(exc, impl)}
        except MemoryError as exc:
            envelope = {"ok": False, "kind": "memory", "message": describe(exc, impl)}
        except BaseException as exc:  # noqa: BLE001 - student code: any exception is a result
            envelope = {"ok": False, "kind": "exception", "message": describe(exc, impl)}
        tampered = check(snapshot)
        if request["probe"] == "schedule" and envelope["ok"]:
            tampered += problems(envelope["data"])
        if tampered:
            envelope = {"ok": False, "kind": "tampered", "what": [str(t) for t in tampered[:10]]}
        return envelope

    def save_envelope(envelope: dict, call_dir: str) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # output over RLIMIT_FSIZE, or a closed stream
                pass
        tmp = os.path.join(call_dir, RESULT + ".tmp")
        try:
            save(envelope, tmp)
        except BaseException as exc:  # noqa: BLE001 - e.g. unpicklable data, disk full
            save({"ok": False, "kind": "exception",
                  "message": f"the probe's data could not be saved: {type(exc).__name__}: {exc}"[:300]}, tmp)
        os.replace(tmp, os.path.join(call_dir, RESULT))

    return {"run": run, "save": save_envelope}


def wait_for(pid: int, timeout: float) -> tuple[str, int]:
    """Wait for the call process; ``("exit", status)``, ``("signal", signum)`` or ``("timeout", 0)``."""
    deadline = time.monotonic() + timeout
    try:
        handle = os.pidfd_open(pid)
    except (AttributeError, OSError):
        handle = None
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                if os.WIFSIGNALED(status):
                    return "signal", os.WTERMSIG(status)
                return "exit", os.waitstatus_to_exitcode(status)
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout", 0
            if handle is not None:
                select.select([handle], [], [], left)
            else:
                time.sleep(min(left, 0.005))
    finally:
        if handle is not None:
            os.close(handle)


def serve(work: str, response_fd: int, runtime: dict) -> None:
    """Answer requests from stdin until it closes."""
    def answer(message: dict) -> None:
        os.write(response_fd, (json.dumps(message) + "\n").encode())

    stdin_fd = sys.stdin.fileno()
    while True:
        line = sys.stdin.buffer.readline()
        if not line:
            return
        request = json.loads(line)
        clear_directory(work)
        os.mkdir(os.path.join(work, request["dir"]), 0o700)
        gc.collect()
        pid = os.fork()
        if pid == 0:
            run_call(request, work, (stdin_fd, response_fd), runtime)
        try:
            os.setpgid(pid, pid)  # also done by the child: whichever runs first
        except OSError:
            pass
        answer({"id": request["id"], "started": pid})
        how, value = wait_for(pid, float(request["timeout"]))
        if how == "timeout":
            try:
                os.kill(pid, DUMP_SIGNAL)
                time.sleep(DUMP_GRACE_S)
            except OSError:
                pass
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        if how == "timeout":
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        kill_descendants()
        answer({"id": request["id"], "how": how, "value": value})


def main(argv: list[str]) -> None:
    src, work, response_fd, config = argv[0], argv[1], int(argv[2]), json.loads(argv[3])
    os.set_inheritable(response_fd, False)
    set_limits(config)
    become_subreaper()
    os.umask(0o077)
    os.chdir(work)
    runtime = make_runtime(config["impl"], src)
    gc.collect()
    gc.freeze()  # fewer copy-on-write pages in each forked call
    os.write(response_fd, (json.dumps({"ready": os.getpid()}) + "\n").encode())
    try:
        serve(work, response_fd, runtime)
    finally:
        kill_descendants()

"""The sandbox's worker: imports torch once, then forks one confined process per call.

Started by the judge (``autograder.judge.sandbox``) as ``python -I -S -B`` with only the sandbox's
copy of the harness and the student package on its path (no site processing: an editable install
of this repository cannot map imports into it). The worker never runs student code and never sees
a call's request: the judge sends it a bare "fork" message with one end of a fresh socket pair,
and the forked call process reads its request from the judge itself. So no call can find another
call's data (a hidden test's settings, say) in memory inherited from the worker.

A call process, before it imports anything of the student's: makes its own session, points
stdout and stderr at ``output.log`` in its folder, sets resource limits, drops to the grading's
private uid (when the worker runs as root), confines itself with Landlock (read the sandbox and
the interpreter, write only its folder, no network, no signals out), then reads its request, runs
the probe and sends the raw result back on the socket. The worker is a child subreaper: when a
call ends, it kills and reaps everything the call left behind.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import importlib
import json
import os
import signal
import socket
import sys
import time
import traceback

DUMP_SIGNAL = signal.SIGUSR2  # the judge sends it before killing a call that timed out: "where did it hang?"
LOG = "output.log"


def _send(ctl: socket.socket, message: dict) -> None:
    ctl.sendall((json.dumps(message) + "\n").encode())


def _prepare_torch() -> None:
    """Import torch and run one backward now, so that no call pays for it (sympy is imported on the
    first backward) and every call starts from the same state."""
    import torch

    torch.set_num_threads(1)
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is not None:
        setter(True, warn_only=True)
    x = torch.ones(2, requires_grad=True)
    torch.autograd.grad((x * 2).sum(), x)
    torch.autograd.backward((x * 3).sum())


def _redirect_output(folder: str) -> None:
    log = os.open(os.path.join(folder, LOG), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)


def _drop_privileges(uid: int | None, gid: int | None) -> None:
    if uid is None or os.geteuid() != 0:
        return
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def _confine(request: dict, src: str) -> str:
    from . import confine, landlock

    folder = request["dir"]
    limits = request.get("limits", {})
    confine.set_limits(limits.get("memory_bytes"), limits.get("file_bytes"), limits.get("max_processes"))
    identity = request.get("identity")
    if identity == "uid":
        _drop_privileges(request.get("uid"), request.get("gid"))
    elif identity == "uid-read" and os.geteuid() == 0:
        from .caps import become_reading_uid

        become_reading_uid(request["uid"], request["gid"])
    elif identity == "nocaps" and os.geteuid() == 0:
        from .caps import drop_all_capabilities

        drop_all_capabilities()
    os.environ.clear()
    os.environ.update(
        HOME=folder,
        TMPDIR=folder,
        PATH="/usr/bin:/bin",
        LANG="C.UTF-8",
        OMP_NUM_THREADS="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    if (not request.get("landlock") or landlock.landlock_abi() < 1) and identity != "uid-read":
        return "none"
    exclude = [p for p in request.get("protect", []) if p]
    rules = confine.default_confinement([folder], [src], exclude=exclude)
    if identity == "uid-read":  # it may read what file permissions would hide: /etc only file by file
        from .caps import ETC_FILES

        rules.read_only = [p for p in rules.read_only if p != "/etc" and not p.startswith("/etc/")]
        rules.read_only += [p for p in ETC_FILES if os.path.isfile(p)]
    if identity == "uid-read" and not request.get("landlock"):
        raise RuntimeError("a reading uid needs Landlock")
    return landlock.apply_landlock(rules)


# Modules torch imports lazily on first use, slowly: every function torch marks _disable_dynamo
# (activation checkpointing among them) imports torch._dynamo, 1.3-2 s that each forked call would
# pay again (a grading of a checkpointing schedule took 46 s instead of 16). A call that imported
# one says so on a pipe; the worker then imports it, once, for the calls that follow. Nothing
# else of what a call writes there is used: the worker only imports these trusted modules.
LAZY_IMPORTS = ("torch._dynamo",)


def _report_lazy_imports(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, bytes(i for i, name in enumerate(LAZY_IMPORTS) if name in sys.modules) or b"")


def _learn_lazy_imports(fd: int) -> None:
    """In the worker: import what the last call had to import (see ``LAZY_IMPORTS``)."""
    os.set_blocking(fd, False)
    with contextlib.suppress(OSError):
        for index in set(os.read(fd, 64)):
            if index < len(LAZY_IMPORTS) and LAZY_IMPORTS[index] not in sys.modules:
                importlib.import_module(LAZY_IMPORTS[index])


def _run_call(request: dict, fd: int, ctl: socket.socket, src: str, learned: int) -> None:
    """In the forked call process: confine, read the request, run the probe, answer. Never returns."""
    code = 70
    try:
        ctl.close()
        os.setsid()
        os.chdir(request["dir"])
        _redirect_output(request["dir"])
        _confine(request, src)
        faulthandler.enable(all_threads=True)
        faulthandler.register(DUMP_SIGNAL, all_threads=True)
        sock = socket.socket(fileno=fd)
        _serve_one(sock, request["package"])
        code = 0
    except BaseException:  # noqa: BLE001 - nothing may escape a forked call process
        code = 70
        try:
            traceback.print_exc()  # into output.log once it is set up: the judge shows its last line
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001
            pass
    finally:
        _report_lazy_imports(learned)
        os._exit(code)


def _serve_one(sock: socket.socket, package: str) -> None:
    import torch

    from . import wire
    from .errors import describe_exception
    from .probes import PROBES, CallContext, ProbeError

    torch.manual_seed(0)
    request = wire.recv(sock)
    ctx = CallContext(package=package, channel=sock)
    try:
        envelope = {"op": "result", "ok": True, "data": PROBES[request["probe"]](ctx, **request["kwargs"])}
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        envelope = {"op": "result", "ok": False, "kind": "exit", "message": f"your code called exit({status})"}
    except ProbeError as exc:
        envelope = {"op": "result", "ok": False, "kind": "probe", "message": str(exc)}
    except MemoryError as exc:
        envelope = {"op": "result", "ok": False, "kind": "memory", "message": describe_exception(exc, package)}
    except BaseException as exc:  # noqa: BLE001 - student code: any exception is a result
        envelope = {"op": "result", "ok": False, "kind": "exception", "message": describe_exception(exc, package)}
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # output over RLIMIT_FSIZE, or a closed stream
            pass
    try:
        wire.send(sock, envelope)
    except (wire.WireError, TypeError, ValueError) as exc:
        wire.send(
            sock,
            {
                "op": "result",
                "ok": False,
                "kind": "exception",
                "message": f"the result could not be sent back: {exc}"[:300],
            },
        )


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(k) for k in f.read().split())
    except OSError:
        pass
    return kids


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_descendants(rounds: int = 200) -> None:
    """Kill and reap every descendant (what a call left behind: the subreaper adopted it)."""
    me = os.getpid()
    for _ in range(rounds):
        kids = _children(me)
        if not kids:
            _reap()
            return
        for kid in kids:
            try:
                os.killpg(os.getpgid(kid), signal.SIGKILL)
            except OSError:
                pass
            try:
                os.kill(kid, signal.SIGKILL)
            except OSError:
                pass
        _reap()
        time.sleep(0.002)


def _wait(pid: int) -> tuple[str, int]:
    while True:
        try:
            done, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return "exit", 0
        if done == pid:
            if os.WIFSIGNALED(status):
                return "signal", os.WTERMSIG(status)
            return "exit", os.waitstatus_to_exitcode(status)


def serve(ctl: socket.socket, src: str) -> None:
    """Fork one call process per request until the judge closes the control socket."""
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(ctl, 65536, 2)
        except OSError:
            return
        if not message:
            return
        request = json.loads(message)
        if request.get("op") == "stop" or not fds:
            for fd in fds:
                os.close(fd)
            return
        gc.collect()
        learn, learned = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(learn)
            _run_call(request, fds[0], ctl, src, learned)
        os.close(learned)
        for fd in fds:
            os.close(fd)
        _send(ctl, {"call": request["call"], "pid": pid})
        how, value = _wait(pid)
        kill_descendants()
        _send(ctl, {"call": request["call"], "how": how, "value": value})
        _learn_lazy_imports(learn)
        os.close(learn)


def main(argv: list[str]) -> None:
    src, config = argv[1], json.loads(argv[2])
    ctl = socket.socket(fileno=int(config["ctl_fd"]))
    from . import confine, landlock

    confine.become_subreaper()
    os.umask(0o077)
    _prepare_torch()
    from . import probes  # noqa: F401 - imported once here, not in every call

    gc.collect()
    gc.freeze()  # fewer copy-on-write pages in each forked call
    _send(ctl, {"ready": os.getpid(), "landlock": landlock.landlock_abi()})
    try:
        serve(ctl, src)
    finally:
        kill_descendants()


BOOTSTRAP = (
    "import sys, json; sys.path[:0] = [sys.argv[1], *json.loads(sys.argv[3])]; "
    "from autograder.harness.worker import main; main(sys.argv)"
)

"""``SandboxRunner``: the grader runs every probe in a separate, limited process.

``SandboxRunner(impl, timeout=60)`` implements the :class:`autograder.trial.Runner` interface:
``call(probe, **kwargs)`` returns what ``autograder.probes.PROBES[probe](impl, **kwargs)`` returns
when run in a child process, or raises :class:`~autograder.trial.ProbeFailed` with one line for
the student (ended the process, crashed with a signal, timed out, ran out of memory, modified the
autograder, returned malformed data); ``close()`` ends the worker and every process it started.

How (details in ``autograder/child.py``):

* Layout: a private directory with ``src/`` (read-only copies of the autograder's modules and of
  the implementation package: nothing else is importable, the reference solutions included) and
  ``work/`` (the only place the child may write; owned by ``user`` when privileges are dropped).
* One worker process (``python -I -B``, its own session) imports torch once, then forks a fresh
  call process for every probe (~20 ms): each probe starts from the same clean state, and a
  crash costs a fork, not a torch import. The worker is restarted only if it dies.
* Requests go to the worker's stdin (a JSON line; ``kwargs`` as a Python literal); answers come
  on a separate pipe, never stdout. The probe's data comes back in ``work/call-N/result.pt``,
  loaded with ``torch.load(weights_only=True)`` (tensors and plain containers only) and then
  type-checked; nothing else from the child is ever unpickled.
* The child's stdout/stderr go to ``work/call-N/output.log``; the parent reads at most its last
  2 KB. ``RLIMIT_FSIZE`` caps every file the child writes (a print flood fails with EFBIG;
  SIGXFSZ is ignored), and each call's files are removed before the next call.
* Limits: wall-clock ``timeout`` per call (the call's process group is killed; a traceback from
  faulthandler says where it hung), ``RLIMIT_AS`` = ``memory_gib`` (not set when CUDA is
  available: the CUDA runtime reserves far more virtual address space than any sane limit),
  ``RLIMIT_CORE`` = 0, ``RLIMIT_NPROC`` = ``max_processes`` when privileges are dropped (it
  does not apply to root).
* ``user="student"``: when this process runs as root, the worker runs as that user (setgroups,
  setgid, setuid, in that order, done by ``subprocess``), with ``work/`` chowned to it.
* No process survives a call: the call's process group is killed after every call, successful or
  not, and the worker is a child subreaper, so daemons that left the group (``setsid``) are
  re-parented to it and killed too. If the worker itself dies (killed by student code) and at
  ``close()``, this process also kills every process whose environment carries this runner's
  random token (``PP_SANDBOX_TOKEN``, inherited by all the worker's descendants) and, with
  ``user``, every process of that user (``kill(-1)`` run as the user).
* Tampering: after each probe the child compares the autograder's modules and classes, torch's
  main namespaces and builtins with a snapshot taken before any student code existed, and the
  events returned with a ledger of the events the harness recorded; a difference fails the call
  ("your code modified the autograder or torch").

Limits that remain, said plainly:

* Without ``user`` the child runs with this process's privileges: the limits above contain
  accidents (exit, crash, hang, flood, fork, memory), not an attacker, who as root can do
  anything. Grading untrusted code needs ``user`` (Gradescope: ``user="student"``).
* Code in the call process can defeat any in-process check with enough effort: write its own
  ``result.pt`` and exit, edit the tracer's private tables, patch and restore around the
  checks. The data is still type-checked and judged against the parent's own reference, so a
  forged result must be right to score, but the recorded order of events can be faked.
* RLIMIT_FSIZE caps each file, not their number or /tmp: use a disk quota or a small tmpfs.
* RLIMIT_AS is per process (a fork bomb multiplies it; RLIMIT_NPROC bounds it only with
  ``user``), and it is off when CUDA is available: GPU grading relies on the timeout and the
  machine's memory.
* A daemon that started a new session, cleared its environment (``exec`` with an empty one) and
  killed the worker survives a run without ``user``.
* The student's code can read whatever its user can read (with ``user``: not root's files, but
  world-readable ones, e.g. the autograder's source if it is world-readable).
"""
from __future__ import annotations

import atexit
import compileall
import io
import json
import os
import pwd
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from .impl import REPO_ROOT, Impl
from . import probes
from .probes import PROBES, SCHEDULES
from .trial import BadData, ProbeFailed, Runner, TimedOut

GiB = 1 << 30
MiB = 1 << 20
LOG_TAIL_BYTES = 2048
MAX_RESULT_BYTES = 256 * MiB
START_TIMEOUT_S = 180.0
GRACE_S = 15.0  # the worker enforces the timeout; the parent waits this much longer before giving up on it
BOOTSTRAP = "import sys; sys.path.insert(0, sys.argv[1]); from autograder.child import main; main(sys.argv[1:])"
ENV_KEEP = ("PATH", "LANG", "LC_ALL", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "CUDA_HOME",
            "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES")
TOKEN_VARIABLE = "PP_SANDBOX_TOKEN"  # in the worker's environment, so its descendants can be found
OOM_SIGNS = ("MemoryError", "can't allocate memory", "Cannot allocate memory", "std::bad_alloc")
FLOOD_SIGNS = ("[Errno 27]", "File too large")
STUDENT_FUNCTION = {"partition": "partition", "split": "split_microbatches", "microbatch_loss": "microbatch_loss"}


# The autograder modules the child imports (and student code may use: schedule, timeline). Nothing
# else is copied: not the hidden tests, not the TA-only modules (the reference lists, the release tools).
CHILD_MODULES = ("__init__.py", "child.py", "impl.py", "probes.py", "schedule.py", "timeline.py", "tracing.py",
                 "trial.py")


class SandboxError(RuntimeError):
    """The sandbox itself could not run (not the student's fault): the test errors loudly."""


class SandboxRunner(Runner):
    """Runs each probe in a fresh, limited child process (see the module docstring).

    ``timeout``: seconds per call; ``memory_gib``: address-space limit (``None``: none; never set
    when CUDA is available); ``user``: run the child as this user when running as root;
    ``max_file_mib``: size cap of any file the child writes (its output log included);
    ``max_processes``: RLIMIT_NPROC of the dropped-privilege user.
    """

    def __init__(self, impl: Impl, timeout: float = 60.0, *, memory_gib: float | None = 6.0,
                 user: str | None = None, max_file_mib: float = 64.0, max_processes: int = 256,
                 python: str = sys.executable, start_timeout: float = START_TIMEOUT_S):
        self.impl = impl
        self.timeout = float(timeout)
        self.memory_gib = None if memory_gib is None or torch.cuda.is_available() else float(memory_gib)
        self.max_file_bytes = int(max_file_mib * MiB)
        self.python = python
        self.start_timeout = start_timeout
        self.uid = self.gid = None
        if user is not None:
            entry = pwd.getpwnam(user)
            if os.geteuid() == 0:
                self.uid, self.gid = entry.pw_uid, entry.pw_gid
            elif entry.pw_uid != os.geteuid():
                warnings.warn(f"SandboxRunner: not root, so student code runs as this user, not {user!r}")
        self.max_processes = max_processes if self.uid not in (None, 0) else 0
        self._base = Path(tempfile.mkdtemp(prefix="pp-sandbox-"))
        self._src = self._base / "src"
        self._work = self._base / "work"
        self._worker: subprocess.Popen | None = None
        self._responses: int | None = None
        self._buffer = b""
        self._calls = 0
        self._call_pid: int | None = None
        self._closed = False
        self._token = os.urandom(8).hex()
        self._owner = os.getpid()
        self._prepare()
        atexit.register(self.close)

    # -- layout ------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        """``src/``: root-owned read-only copies; ``work/``: the child's, chowned to ``user``."""
        source = REPO_ROOT / "autograder"
        target = self._src / "autograder"
        target.mkdir(parents=True)
        for name in CHILD_MODULES:  # only what the child runs: never the hidden tests or TA-only modules
            shutil.copyfile(source / name, target / name)
        shutil.copytree(source / "schedules", target / "schedules", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(self.impl.package_dir, self._src / self.impl.name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        compileall.compile_dir(self._src, quiet=2)  # the worker runs with -B: it reads .pyc, never writes
        for root, dirs, files in os.walk(self._src):
            os.chmod(root, 0o755)
            for name in files:
                os.chmod(os.path.join(root, name), 0o644)
        self._work.mkdir(mode=0o700)
        if self.uid is not None:
            os.chmod(self._base, 0o755)
            os.chown(self._work, self.uid, self.gid)

    # -- the worker --------------------------------------------------------------------------------
    def _start(self) -> None:
        config = {"impl": self.impl.name, "max_file_bytes": self.max_file_bytes,
                  "memory_bytes": int(self.memory_gib * GiB) if self.memory_gib else 0,
                  "max_processes": self.max_processes}
        read_end, write_end = os.pipe()
        self._responses, self._buffer = read_end, b""
        env = {k: v for k, v in os.environ.items() if k in ENV_KEEP or k.startswith("LC_")}
        env.update(HOME=str(self._work), TMPDIR=str(self._work), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        env[TOKEN_VARIABLE] = self._token
        extra = {}
        if self.uid is not None:
            extra = {"user": self.uid, "group": self.gid, "extra_groups": []}
        # The worker's own output goes to a file outside work/ (which the child controls: a link
        # planted there could make this process truncate another file on a restart).
        log = os.open(self._base / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            self._worker = subprocess.Popen(
                [self.python, "-I", "-B", "-c", BOOTSTRAP, str(self._src), str(self._work), str(write_end),
                 json.dumps(config)],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, pass_fds=(write_end,),
                cwd=self._work, env=env, start_new_session=True, **extra)
        finally:
            os.close(write_end)
            os.close(log)
        message = self._read(time.monotonic() + self.start_timeout)
        if not message or "ready" not in message:
            tail = _tail(self._base / "worker.log")
            self._stop_worker()
            raise SandboxError(f"the grading worker did not start ({'timed out' if message is None else 'ended'}); "
                               f"its output ends with: {tail or '(nothing)'}")

    def _read(self, deadline: float) -> dict | None:
        """Next JSON line from the worker; ``{}`` if it closed the pipe, ``None`` at the deadline."""
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._responses], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._responses, 65536)
            if not chunk:
                return {}
            self._buffer += chunk
            if len(self._buffer) > MiB:
                return {}
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except ValueError:
            return {}
        return message if isinstance(message, dict) else {}

    def _stop_worker(self) -> None:
        """Kill the worker's process group and the last call's group; forget the worker.

        The call's pid comes from the worker, which shares the student's uid, so it is checked
        (its own group, in the worker's session) before this process signals it.
        """
        worker, self._worker = self._worker, None
        call, self._call_pid = self._call_pid, None
        if worker is not None:
            _killpg(worker.pid)
            if call and _group_in_session(call, worker.pid):
                _killpg(call)
            try:
                worker.stdin.close()
            except OSError:
                pass
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._kill_user_processes()
        self._kill_tagged_processes()
        if self._responses is not None:
            os.close(self._responses)
            self._responses = None

    def _kill_tagged_processes(self) -> None:
        """Kill every process whose environment carries this runner's token (all the worker's
        descendants, wherever they moved: they inherit the worker's environment)."""
        marker = f"{TOKEN_VARIABLE}={self._token}".encode()
        killed: set[int] = set()
        for _ in range(20):
            found = []
            for entry in os.listdir("/proc"):
                if entry.isdigit() and int(entry) != os.getpid():
                    try:
                        with open(f"/proc/{entry}/environ", "rb") as f:
                            if marker in f.read().split(b"\0"):
                                found.append(int(entry))
                    except OSError:
                        continue
            if not found:
                break
            for pid in found:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            killed.update(found)
            time.sleep(0.01)
        deadline = time.monotonic() + 5  # a killed process with a large address space takes a while to go
        while killed and time.monotonic() < deadline:
            killed = {pid for pid in killed if _running(pid)}
            time.sleep(0.01)

    def _kill_user_processes(self) -> None:
        """With a dedicated ``user``: kill every process of that user (``kill(-1)`` as the user).

        This also catches daemons that left the call's group and then lost the worker (the
        subreaper) because they killed it.
        """
        if self.uid in (None, 0) or self.uid == os.geteuid():
            return
        try:
            subprocess.run([self.python, "-I", "-S", "-c", "import os, signal; os.kill(-1, signal.SIGKILL)"],
                           user=self.uid, group=self.gid, extra_groups=[], cwd="/", env={}, timeout=30,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            pass

    def close(self) -> None:
        """End the worker (it kills what its calls left behind), then its whole group; remove files."""
        if self._closed or os.getpid() != self._owner:  # not in a forked copy of this process
            return
        self._closed = True
        if self._worker is not None:
            try:
                self._worker.stdin.close()  # the worker's cue to clean up and exit
                self._worker.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._stop_worker()
        shutil.rmtree(self._base, ignore_errors=True)
        atexit.unregister(self.close)

    # -- one call ----------------------------------------------------------------------------------
    def call(self, probe: str, **kwargs) -> dict:
        if probe not in PROBES:
            raise ValueError(f"unknown probe {probe!r}")
        if self._closed:
            raise SandboxError("SandboxRunner is closed")
        literal = repr(kwargs)
        if _literal(literal) != kwargs:
            raise ValueError(f"probe arguments must be plain literals: {literal[:200]}")
        what = _student_function(probe, kwargs)
        self._calls += 1
        request = {"id": self._calls, "probe": probe, "kwargs": literal, "dir": f"call-{self._calls}",
                   "timeout": self.timeout}
        for attempt in (1, 2):  # a worker that died between calls is restarted once
            if self._worker is None or self._worker.poll() is not None:
                self._stop_worker()
                self._start()
            try:
                self._worker.stdin.write((json.dumps(request) + "\n").encode())
                self._worker.stdin.flush()
                break
            except OSError:
                self._stop_worker()
                if attempt == 2:
                    raise SandboxError("could not send a request to the grading worker") from None
        deadline = time.monotonic() + self.timeout + GRACE_S
        finished = None
        while finished is None:
            message = self._read(deadline)
            if not message:  # worker gone (killed by the call?) or stuck past the grace period
                self._stop_worker()
                if message == {}:
                    raise ProbeFailed(f"the grading process stopped answering during {what} (did your code kill, "
                                      f"stop or signal other processes?)")
                raise TimedOut(f"timed out after {self.timeout:g} s during {what}, and the grading process "
                               f"stopped answering")
            if message.get("id") != request["id"]:
                continue
            # The worker shares the student's uid, so its lines are checked like any other data.
            if "started" in message:
                self._call_pid = _int(message["started"])
            elif message.get("how") in ("exit", "signal", "timeout") and _int(message.get("value")) != -1:
                finished = message
        self._call_pid = None  # the worker has killed the call's process group and every descendant
        return self._outcome(request, what, finished["how"], finished["value"])

    def _outcome(self, request: dict, what: str, how: str, value: int) -> dict:
        call_dir = request["dir"]
        tail = self._read_file(call_dir, "output.log", LOG_TAIL_BYTES, tail=True)
        output = tail.decode("utf-8", "replace") if tail else ""
        where = _where(output, self.impl.name)
        if how == "timeout":
            raise TimedOut(f"timed out after {self.timeout:g} s during {what}{where}: does every loop end, "
                              f"does every micro-batch's backward run exactly once, and does nothing wait "
                              f"for a lock or a process that never comes?")
        if how == "signal":
            name = _signal_name(value)
            if value == signal.SIGKILL or any(s in output for s in OOM_SIGNS):
                raise ProbeFailed(f"the grading process was killed ({name}) during {what}{where}: it probably "
                                  f"ran out of memory{self._limit()}{_last_line(output)}")
            raise ProbeFailed(f"your code crashed the grading process with {name} during {what}{where}"
                              f"{_last_line(output)}")
        raw = self._read_file(call_dir, "result.pt", MAX_RESULT_BYTES) if value == 0 else None
        if raw is None:
            if any(s in output for s in OOM_SIGNS):
                raise ProbeFailed(f"ran out of memory{self._limit()} during {what}{where}{_last_line(output)}")
            raise ProbeFailed(f"your code ended the grading process (exit status {value}) during {what}{where}: "
                              f"do not call sys.exit/os._exit/quit{_last_line(output)}")
        envelope = _load(raw)
        kind = envelope.get("kind")
        if envelope.get("ok") is True:
            data = envelope.get("data")
            if not isinstance(data, dict):
                raise BadData(f"the probe of {what} returned malformed data (not a dict)")
            error = data.get("error")
            if isinstance(error, str):
                self._explain(error, what)
            return data
        if kind == "exit":
            at = re.search(r" \(at [^()]*\)$", str(envelope.get("message", "")))
            raise ProbeFailed(f"your code ended the grading process (exit status {_int(envelope.get('code'))}) "
                              f"during {what}{at.group(0) if at else ''}: do not call sys.exit/os._exit/quit"
                              f"{_last_line(output)}")
        if kind == "tampered":
            names = [str(n)[:80] for n in envelope.get("what", [])][:5] if isinstance(envelope.get("what"), list) else []
            raise ProbeFailed(f"your code modified the autograder or torch during {what} "
                              f"({', '.join(names) or 'unknown'}): do not monkeypatch torch, the autograder or "
                              f"its recorded events")
        message = str(envelope.get("message", ""))[:400]
        self._explain(message, what)
        if kind == "memory":
            raise ProbeFailed(f"ran out of memory{self._limit()} during {what}: {message}")
        if kind == "exception":
            raise ProbeFailed(f"{what} could not run: {message}")
        raise BadData(f"the probe of {what} returned malformed data")

    def _explain(self, error: str, what: str) -> None:
        """Errors that come from the sandbox's limits, not from the student's logic, said plainly."""
        if any(s in error for s in OOM_SIGNS):
            raise ProbeFailed(f"ran out of memory{self._limit()} during {what}: {error[:300]}")
        if any(s in error for s in FLOOD_SIGNS):
            raise ProbeFailed(f"printed more than {self.max_file_bytes / MiB:g} MiB (or wrote a file that large) "
                              f"during {what}, so writing failed: {error[:300]}; do not print inside loops")

    def _limit(self) -> str:
        return f" (limit {self.memory_gib:g} GiB)" if self.memory_gib else ""

    def _read_file(self, call_dir: str, name: str, limit: int, tail: bool = False) -> bytes | None:
        """Read a regular file the child wrote, without following links or blocking on FIFOs."""
        fds = []
        try:
            fds.append(os.open(self._work, os.O_RDONLY | os.O_DIRECTORY))
            fds.append(os.open(call_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fds[-1]))
            fds.append(os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fds[-1]))
            info = os.fstat(fds[-1])
            if not stat.S_ISREG(info.st_mode):
                return None
            if tail:
                return os.pread(fds[-1], limit, max(0, info.st_size - limit))
            if info.st_size > limit:
                raise BadData(f"the probe's result is too large ({info.st_size >> 20} MiB)")
            return os.pread(fds[-1], info.st_size, 0)
        except OSError:
            return None
        finally:
            for fd in reversed(fds):
                os.close(fd)


# -- helpers -------------------------------------------------------------------------------------

def _killpg(group: int) -> None:
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (or dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _group_in_session(pid: int, session: int) -> bool:
    """Whether ``pid`` leads its own process group inside ``session`` (a call process of that worker)."""
    try:
        return pid > 1 and os.getpgid(pid) == pid and os.getsid(pid) == session
    except OSError:
        return False


def _literal(text: str):
    import ast
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None


def _student_function(probe: str, kwargs: dict) -> str:
    if probe == "schedule":
        return SCHEDULES.get(kwargs.get("schedule"), "the schedule")
    if probe == "per_stage":
        return getattr(probes, "PER_STAGE", {}).get(kwargs.get("schedule"), "the per-stage lists")
    return STUDENT_FUNCTION.get(probe, probe)


def _signal_name(signum: int) -> str:
    try:
        name = signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
    meaning = {"SIGSEGV": "segmentation fault", "SIGBUS": "bus error", "SIGABRT": "abort",
               "SIGFPE": "arithmetic error", "SIGILL": "illegal instruction", "SIGKILL": "killed"}.get(name)
    return f"{name} ({meaning})" if meaning else name


def _where(output: str, package: str) -> str:
    """`` (at submission/schedules.py:48)`` from faulthandler's or Python's traceback, innermost first."""
    faulthandler_frame = re.compile(r'File "([^"]*/' + re.escape(package) + r'/[^"/]+)", line (\d+) in ')
    for line in output.splitlines():  # faulthandler prints the most recent call first
        m = faulthandler_frame.search(line)
        if m:
            return f" (at {package}/{m.group(1).rsplit('/', 1)[-1]}:{m.group(2)})"
    return ""


def _last_line(output: str) -> str:
    """`` Last output: '...'`` (not faulthandler's lines), or nothing."""
    for line in reversed(output.splitlines()):
        line = "".join(c if c.isprintable() else "?" for c in line.strip())
        if not line or line.startswith(("File ", "Fatal Python error", "Current thread", "Thread 0x",
                                        "Extension modules:", "Stack (most recent", "<no Python frame>")):
            continue
        if line.startswith(("Current thread", "Thread")):
            continue
        return f". Last output: {line[:160]!r}"
    return ""


def _int(x) -> int:
    return x if isinstance(x, int) and not isinstance(x, bool) else -1


def _load(raw: bytes) -> dict:
    """Unpickle a result with ``weights_only=True`` and accept only plain data and CPU tensors."""
    try:
        envelope = torch.load(io.BytesIO(raw), weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - anything the safe unpickler refuses
        raise BadData(f"the probe's result could not be read safely ({type(exc).__name__}): your code may have "
                      f"written it or left non-data objects in it") from None
    budget = [1_000_000]
    if not isinstance(envelope, dict) or not _plain(envelope, 0, budget):
        raise BadData("the probe's result holds objects other than numbers, strings, lists, dicts and CPU tensors")
    return envelope


def _plain(x, depth: int, budget: list[int]) -> bool:
    budget[0] -= 1
    if budget[0] < 0 or depth > 20:
        return False
    if x is None or type(x) in (bool, int, str):
        return True
    if type(x) is float:
        return True  # nan/inf are data; the checks decide what they mean
    if type(x) is torch.Tensor:
        return (x.device.type == "cpu" and x.layout == torch.strided and not x.requires_grad
                and not x.is_quantized and x.numel() < 100_000_000)
    if type(x) in (list, tuple):
        return all(_plain(v, depth + 1, budget) for v in x)
    if type(x) is dict:
        return all(type(k) in (str, int) and _plain(v, depth + 1, budget) for k, v in x.items())
    return False


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - LOG_TAIL_BYTES))
            text = f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return " | ".join(text.splitlines()[-3:])[:400]

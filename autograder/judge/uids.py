"""A private uid per grading: leased, and afterwards nothing of it survives.

Runs in the judge (root or not), never next to student code; standard library only (files are
removed with ``isolation``'s steps, which never follow links).

* ``lease_uid()``: as root, a uid that no account, process or other grading uses, locked until
  released. Student code runs as it (gid of the same number, no groups), so it cannot signal or
  read the memory of anything else, and parallel gradings cannot touch each other.
* ``kill_uid_processes`` and ``remove_files_of``: after a grading (and when leasing, in case a
  crashed one left something), nothing of that uid survives: no daemon, no file in /tmp.

Why uids in [60514, 61184): they are at most 65534 (nobody), so ``setuid`` works inside Docker
with user-namespace remapping and in rootless containers, which map 65536 ids (0..65535); they lie
between systemd-homed's 60001..60513 and systemd's DynamicUser range 61184..65519 (uids without a
passwd entry that run services and own files); and they are in Debian's 60000..64999, allocated
on demand to packages, which then appear in the passwd database (checked). Never 0..59999, where
accounts of a directory service that this machine does not list may own files on shared disks.
"""

from __future__ import annotations

import errno
import fcntl
import grp
import os
import pwd
import signal
import stat
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from .isolation import IsolationError, is_root, list_names, lstat_or_none, open_dir, remove_entry

UID_RANGE = range(60514, 61184)
WORLD_WRITABLE_DEFAULTS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock")
STATE_DIR_NAME = "pipeline-grader"
MAX_SCAN_DEPTH = 64
WORLD_WX = stat.S_IWOTH | stat.S_IXOTH


# -- uid leases ------------------------------------------------------------------------------------


class UidLease:
    """A uid (and the gid of the same number) held for one grading, until ``release()``."""

    def __init__(self, uid: int, fd: int, lock: Path):
        self.uid = self.gid = uid
        self.lock = lock
        self._fd: int | None = fd

    def release(self) -> None:
        """Free the uid for other gradings (closing the lock file drops the lock)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> UidLease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def state_dir(path: Path | str | None = None) -> Path:
    """The folder of the lease locks: created 0700; refused if a link, not ours, or writable by others."""
    if path is None:
        base = "/run" if os.access("/run", os.W_OK) else tempfile.gettempdir()
        path = Path(base) / (STATE_DIR_NAME if base == "/run" else f"{STATE_DIR_NAME}-{os.geteuid()}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):  # lstat: a link is not a folder
        raise IsolationError(f"{path} is not a folder (a link?): remove it; the grader keeps its uid locks there")
    if info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise IsolationError(
            f"{path} belongs to uid {info.st_uid} or others may write in it: remove it, "
            f"the grader recreates it privately"
        )
    return path


def lease_uid(state: Path | str | None = None, *, uids: range = UID_RANGE) -> UidLease:
    """A uid not in the passwd or group database, owned by no process, leased by no other grading.

    Needs root (only root can run code as another uid): raises :class:`IsolationError` otherwise.
    Files the uid still owns in /tmp and the like (a crashed grading's) are removed first. Starts
    at a place that depends on this process's id, so parallel gradings rarely contend.
    """
    if not is_root():
        raise IsolationError(
            "a private uid per grading needs root: run the grader as root (or in the Docker "
            "image), or grade without private uids"
        )
    folder = state_dir(state)
    start = (os.getpid() * 2654435761) % len(uids)
    for i in range(len(uids)):
        uid = uids[(start + i) % len(uids)]
        fd = None if _known(uid) else _try_lock(folder / f"uid-{uid}.lock")
        if fd is None:
            continue
        if _known(uid) or processes_of(uid):  # checked again under the lock
            os.close(fd)
            continue
        remove_files_of(uid)
        return UidLease(uid, fd, folder / f"uid-{uid}.lock")
    raise IsolationError(
        f"no free uid in [{uids.start}, {uids.stop}): too many gradings at once, or leftover "
        f"processes of those uids (kill them)"
    )


def _known(uid: int) -> bool:
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(uid)
            return True
        except KeyError:
            pass
    return False


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise


def processes_of(uid: int) -> list[int]:
    """Live processes with ``uid`` as real, effective, saved or file-system uid (Linux /proc)."""
    found = []
    for entry in filter(str.isdigit, list_names("/proc")):
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        except (OSError, ValueError):
            continue
        dead = fields.get("State", "").split()[:1] in (["Z"], ["X"]) and fields.get("Threads", "1").strip() == "1"
        if not dead and str(uid) in fields.get("Uid", "").split():
            found.append(int(entry))
    return found


# -- cleanup ---------------------------------------------------------------------------------------


def _refuse(uid: int, what: str) -> None:
    if uid <= 0 or uid in (os.getuid(), os.geteuid()):
        raise IsolationError(f"refusing to {what} uid {uid}: only a leased grading uid, never root or the grader's")
    if not is_root():
        raise IsolationError(f"cannot {what} uid {uid}: that needs root")


def kill_uid_processes(uid: int, timeout: float = 5.0) -> int:
    """Kill every process of ``uid`` (``kill(-1)`` run as that uid); return how many were seen.

    Repeats until /proc shows none or ``timeout`` passes; reaps those that are this process's
    children. Never signals a process of another uid: the signal is sent as ``uid`` itself.
    """
    _refuse(uid, "kill the processes of")
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        for pid in seen:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        pids = processes_of(uid)
        seen.update(pids)
        if not pids or time.monotonic() > deadline:
            return len(seen)
        _kill_as(uid)
        time.sleep(0.005)


def _kill_as(uid: int) -> None:
    """Fork a child that becomes ``uid`` (no groups) and sends SIGKILL to every process it may signal.

    A fork, not a new interpreter, which ``uid`` may be unable to execute. The child signals only
    once it has verifiably become ``uid``: as root, ``kill(-1)`` would end everything.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() in a process with threads
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            getattr(os, "setresgid", lambda *ids: os.setgid(ids[0]))(uid, uid, uid)  # macOS: setgid/setuid
            getattr(os, "setresuid", lambda *ids: os.setuid(ids[0]))(uid, uid, uid)  # set all three as root
            if os.getuid() == uid and os.geteuid() == uid:
                os.kill(-1, signal.SIGKILL)
                code = 0
        finally:
            os._exit(code)
    if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0:
        raise IsolationError(f"could not become uid {uid} to kill its processes (outside this user namespace?)")


def remove_files_of(uid: int, roots: Sequence[str] = WORLD_WRITABLE_DEFAULTS) -> list[str]:
    """Remove every file, folder, fifo, socket or link owned by ``uid`` under ``roots``; the paths removed.

    Looks inside the world-writable folders of others too (where that uid could write), on each
    root's own file system only; never follows links. Run it after ``kill_uid_processes``, so that
    nothing of that uid changes meanwhile.
    """
    _refuse(uid, "remove the files of")
    removed: list[str] = []
    done: set[tuple[int, int]] = set()
    for root in roots:
        try:
            fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # a root may be a link: /var/lock
        except OSError:
            continue
        try:
            info = os.fstat(fd)
            if (info.st_dev, info.st_ino) not in done:
                done.add((info.st_dev, info.st_ino))
                _sweep(fd, str(root), info.st_dev, uid, removed, 0)
        finally:
            os.close(fd)
    return removed


def _sweep(fd: int, path: str, dev: int, uid: int, removed: list[str], depth: int) -> None:
    for name in list_names(fd):
        info = lstat_or_none(name, fd)
        if info is None or info.st_dev != dev:
            continue
        if info.st_uid == uid:
            if remove_entry(fd, name, info, dev):
                removed.append(os.path.join(path, name))
        elif stat.S_ISDIR(info.st_mode) and info.st_mode & WORLD_WX == WORLD_WX and depth < MAX_SCAN_DEPTH:
            sub = open_dir(fd, name, info)
            if sub is not None:
                try:
                    _sweep(sub, os.path.join(path, name), dev, uid, removed, depth + 1)
                finally:
                    os.close(sub)

"""Keep one grading away from the machine and from other gradings: private uids and cleanup.

Runs in the judge (root or not), never next to student code; standard library only.

* ``isolation_level()``: what this process can enforce, in one line for the TA.
* ``lease_uid()``: as root, a uid that no account, process or other grading uses, locked until
  released. Student code runs as it (gid of the same number, no groups), so it cannot signal or
  read the memory of anything else, and parallel gradings cannot touch each other.
* ``kill_uid_processes`` and ``remove_files_of``: after a grading (and when leasing, in case a
  crashed one left something), nothing of that uid survives: no daemon, no file in /tmp.
* ``prepare_private_dir`` / ``remove_tree``: a call's folder, owned by the leased uid; removed even
  when made read-only, never following links.
* ``readable_by_others``: which secrets a uid with no groups could read, to warn without Landlock.

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
import secrets
import signal
import stat
import tempfile
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from autograder.harness.confine import landlock_abi

UID_RANGE = range(60514, 61184)
WORLD_WRITABLE_DEFAULTS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock")
STATE_DIR_NAME = "pipeline-grader"
HOIST_DEPTH = 32  # deeper folders are moved up before removal: bounded recursion and open descriptors
MAX_SCAN_DEPTH = 64
WORLD_WX = stat.S_IWOTH | stat.S_IXOTH
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class IsolationError(RuntimeError):
    """Isolation could not be set up or refused an unsafe request (one line)."""


@dataclass(frozen=True)
class IsolationLevel:
    """What this process can enforce on student code."""

    root: bool
    landlock_abi: int

    @property
    def name(self) -> str:
        if self.root:
            return "full" if self.landlock_abi >= 6 else "partial"
        return "reduced" if self.landlock_abi >= 1 else "none"

    def describe(self) -> str:
        abi = self.landlock_abi
        what = "files, TCP and signals" if abi >= 6 else "files and TCP" if abi >= 4 else "files"
        if self.root and abi >= 6:
            return f"full: a private uid per grading, Landlock ABI {abi} confines {what}"
        if self.root:
            landlock = (
                f"Landlock ABI {abi} confines only {what}"
                if abi
                else "no Landlock, so student code can read every world-readable file (see readable_by_others)"
            )
            return f"partial: a private uid per grading; {landlock}; a kernel >= 6.12 with Landlock isolates fully"
        if abi:
            return (
                f"reduced: not root, so student code runs as your own user (Landlock ABI {abi} still confines "
                f"its {what}); grade untrusted code as root or in the Docker image"
            )
        return (
            "none: not root and no Landlock, so student code runs as your own user with all your access; "
            "grade untrusted code as root in the Docker image"
        )


def isolation_level() -> IsolationLevel:
    """Whether this process is root (private uids) and the kernel's Landlock ABI (0: none)."""
    return IsolationLevel(root=_is_root(), landlock_abi=landlock_abi())


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


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
    if not _is_root():
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
    for entry in filter(str.isdigit, _names("/proc")):
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
    if not _is_root():
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
    for name in _names(fd):
        info = _lstat(name, fd)
        if info is None or info.st_dev != dev:
            continue
        if info.st_uid == uid:
            if _remove_entry(fd, name, info, dev):
                removed.append(os.path.join(path, name))
        elif stat.S_ISDIR(info.st_mode) and info.st_mode & WORLD_WX == WORLD_WX and depth < MAX_SCAN_DEPTH:
            sub = _open_dir(fd, name, info)
            if sub is not None:
                try:
                    _sweep(sub, os.path.join(path, name), dev, uid, removed, depth + 1)
                finally:
                    os.close(sub)


def _names(folder: int | str) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def _lstat(name: str, fd: int | None = None) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except OSError:
        return None


def _open_dir(fd: int, name: str, info: os.stat_result) -> int | None:
    """Open the folder ``name`` if it is still the one ``info`` describes (no link, no swap)."""
    try:
        sub = os.open(name, DIR_FLAGS, dir_fd=fd)
    except PermissionError:  # not root: our own folder, made unreadable by the code that ran in it
        if _is_root() or info.st_uid != os.geteuid():
            return None
        try:
            os.chmod(name, 0o700, dir_fd=fd, follow_symlinks=False)  # fails on a link: never follows one
            sub = os.open(name, DIR_FLAGS, dir_fd=fd)
        except (OSError, ValueError, NotImplementedError):
            return None
    except OSError:
        return None
    now = os.fstat(sub)
    if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
        os.close(sub)
        return None
    return sub


def _remove_entry(fd: int, name: str, info: os.stat_result, dev: int, top: int | None = None, depth: int = 0) -> bool:
    """Remove ``name`` in the folder ``fd`` (a whole tree if a folder); whether it is gone.

    Folders deeper than HOIST_DEPTH below ``top`` are moved up into ``top`` rather than opened, and
    ``top`` (the tree's root) is emptied pass after pass until nothing changes.
    """
    folder = stat.S_ISDIR(info.st_mode)
    sub = _open_dir(fd, name, info) if folder else None
    if folder and sub is None:
        return False
    if sub is not None:
        try:
            if top is not None:
                _clear(sub, dev, top, depth)
            else:  # the tree's root: empty it until nothing changes (hoisted folders land here)
                before, left = None, set(_names(sub))
                while left and left != before:
                    _clear(sub, dev, sub, 0)
                    before, left = left, set(_names(sub))
        finally:
            os.close(sub)
    for attempt in (1, 2):
        try:
            (os.rmdir if folder else os.unlink)(name, dir_fd=fd)
            return True
        except PermissionError:
            if attempt == 2 or _is_root():
                return False
            _writable(fd)  # our own folder, made read-only by the code that ran in it
        except OSError:
            return False
    return False


def _writable(fd: int) -> None:
    try:
        info = os.fstat(fd)
        if info.st_uid == os.geteuid():
            os.fchmod(fd, stat.S_IMODE(info.st_mode) | 0o700)
    except OSError:
        pass


def _clear(fd: int, dev: int, top: int, depth: int) -> None:
    """Remove what the folder open as ``fd`` holds, ``depth`` levels below ``top``."""
    if not _is_root():
        _writable(fd)
    for name in _names(fd):
        info = _lstat(name, fd)
        if info is None or info.st_dev != dev:
            continue  # gone, or a mount point: never descended into (the final rmdir then fails)
        if stat.S_ISDIR(info.st_mode) and depth >= HOIST_DEPTH:
            try:
                os.rename(name, f".removing-{secrets.token_hex(8)}", src_dir_fd=fd, dst_dir_fd=top)
            except OSError:
                pass
        else:
            _remove_entry(fd, name, info, dev, top, depth + 1)


def remove_tree(path: Path | str) -> None:
    """Remove ``path`` and everything in it, even folders made read-only; a link is removed, never followed."""
    path = os.path.abspath(os.fspath(path))
    info = _lstat(path)
    if info is None:
        return
    parent = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _remove_entry(parent, os.path.basename(path), info, info.st_dev)
    finally:
        os.close(parent)
    if os.path.lexists(path):
        raise IsolationError(
            f"could not remove {path} entirely (a mount point inside, or no permission): remove it by hand"
        )


def prepare_private_dir(path: Path | str, uid: int | None = None, gid: int | None = None, mode: int = 0o700) -> Path:
    """Create the folder ``path`` (its parent must exist) owned by ``uid``/``gid`` (default: this process).

    An existing empty folder (not a link) of this process or of ``uid`` is reused; anything else
    there is refused, since someone else may have planted it.
    """
    path = Path(path)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid not in (os.geteuid(), uid) or os.listdir(path):
            raise IsolationError(
                f"{path} already exists and is not an empty folder of the grader's: remove it"
            ) from None
    fd = os.open(path, DIR_FLAGS)
    try:
        if uid is not None or gid is not None:
            os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        os.fchmod(fd, mode)  # after chown, which clears set-id bits
    except PermissionError:
        raise IsolationError(f"cannot give {path} to uid {uid}: that needs root") from None
    finally:
        os.close(fd)
    return path


# -- what others can read ----------------------------------------------------------------------------


def readable_by_others(paths: Iterable[Path | str]) -> list[str]:
    """The given paths whose content a user with no groups could read (mode bits; ACLs ignored).

    A file: world-readable and every ancestor folder world-searchable. A folder: world-searchable,
    so are its ancestors, and some file in it (through world-searchable folders) world-readable.
    """
    return [str(p) for p in paths if _others_read(os.path.realpath(p))]


def _others_read(real: str) -> bool:
    try:
        info = os.stat(real)
        if not all(os.stat(a).st_mode & stat.S_IXOTH for a in Path(real).parents):
            return False
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode):
        return bool(info.st_mode & stat.S_IROTH)
    if not info.st_mode & stat.S_IXOTH:
        return False
    for folder, dirs, files in os.walk(real):
        for name in files:
            entry = _lstat(os.path.join(folder, name))
            if entry and stat.S_ISREG(entry.st_mode) and entry.st_mode & stat.S_IROTH:
                return True
        dirs[:] = [d for d in dirs if _world_searchable_dir(_lstat(os.path.join(folder, d)))]
    return False


def _world_searchable_dir(info: os.stat_result | None) -> bool:
    return info is not None and stat.S_ISDIR(info.st_mode) and bool(info.st_mode & stat.S_IXOTH)

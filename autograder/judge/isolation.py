"""Keep one grading away from the machine and from other gradings: what can be enforced, private folders.

Runs in the judge (root or not), never next to student code; standard library only. The private
uids, their processes and their files are ``uids``'s part.

* ``isolation_level()``: what this process can enforce, in one line for the TA.
* ``prepare_private_dir`` / ``remove_tree``: a call's folder, owned by the leased uid; removed even
  when made read-only, never following links (``open_dir`` and ``remove_entry`` are the steps,
  shared with ``uids.remove_files_of``).
* ``readable_by_others``: which secrets a uid with no groups could read, to warn without Landlock.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from autograder.harness.landlock import landlock_abi

HOIST_DEPTH = 32  # deeper folders are moved up before removal: bounded recursion and open descriptors
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
    return IsolationLevel(root=is_root(), landlock_abi=landlock_abi())


def is_root() -> bool:
    """Whether this process runs as root (effective uid 0); never on a system without uids."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


# -- private folders, removed safely ---------------------------------------------------------------


def list_names(folder: int | str) -> list[str]:
    """The names in a folder (a path or an open descriptor); none when it cannot be listed."""
    try:
        return os.listdir(folder)
    except OSError:
        return []


def lstat_or_none(name: str, fd: int | None = None) -> os.stat_result | None:
    """``lstat`` of ``name`` (relative to the folder ``fd`` if given); None when it is gone."""
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except OSError:
        return None


def open_dir(fd: int, name: str, info: os.stat_result) -> int | None:
    """Open the folder ``name`` if it is still the one ``info`` describes (no link, no swap)."""
    try:
        sub = os.open(name, DIR_FLAGS, dir_fd=fd)
    except PermissionError:  # not root: our own folder, made unreadable by the code that ran in it
        if is_root() or info.st_uid != os.geteuid():
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


def remove_entry(fd: int, name: str, info: os.stat_result, dev: int, top: int | None = None, depth: int = 0) -> bool:
    """Remove ``name`` in the folder ``fd`` (a whole tree if a folder); whether it is gone.

    Folders deeper than HOIST_DEPTH below ``top`` are moved up into ``top`` rather than opened, and
    ``top`` (the tree's root) is emptied pass after pass until nothing changes.
    """
    folder = stat.S_ISDIR(info.st_mode)
    sub = open_dir(fd, name, info) if folder else None
    if folder and sub is None:
        return False
    if sub is not None:
        try:
            if top is not None:
                _clear(sub, dev, top, depth)
            else:  # the tree's root: empty it until nothing changes (hoisted folders land here)
                before, left = None, set(list_names(sub))
                while left and left != before:
                    _clear(sub, dev, sub, 0)
                    before, left = left, set(list_names(sub))
        finally:
            os.close(sub)
    for attempt in (1, 2):
        try:
            (os.rmdir if folder else os.unlink)(name, dir_fd=fd)
            return True
        except PermissionError:
            if attempt == 2 or is_root():
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
    if not is_root():
        _writable(fd)
    for name in list_names(fd):
        info = lstat_or_none(name, fd)
        if info is None or info.st_dev != dev:
            continue  # gone, or a mount point: never descended into (the final rmdir then fails)
        if stat.S_ISDIR(info.st_mode) and depth >= HOIST_DEPTH:
            try:
                os.rename(name, f".removing-{secrets.token_hex(8)}", src_dir_fd=fd, dst_dir_fd=top)
            except OSError:
                pass
        else:
            remove_entry(fd, name, info, dev, top, depth + 1)


def remove_tree(path: Path | str) -> None:
    """Remove ``path`` and everything in it, even folders made read-only; a link is removed, never followed."""
    path = os.path.abspath(os.fspath(path))
    info = lstat_or_none(path)
    if info is None:
        return
    parent = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        remove_entry(parent, os.path.basename(path), info, info.st_dev)
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
            entry = lstat_or_none(os.path.join(folder, name))
            if entry and stat.S_ISREG(entry.st_mode) and entry.st_mode & stat.S_IROTH:
                return True
        dirs[:] = [d for d in dirs if _world_searchable_dir(lstat_or_none(os.path.join(folder, d)))]
    return False


def _world_searchable_dir(info: os.stat_result | None) -> bool:
    return info is not None and stat.S_ISDIR(info.st_mode) and bool(info.st_mode & stat.S_IXOTH)

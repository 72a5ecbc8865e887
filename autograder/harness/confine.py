"""Confine the call process that runs student code: the paths it may reach, resource limits, subreaper.

Runs inside the sandbox's call process (forked from the grading worker after torch is imported,
before any student code exists), so it imports only the standard library. ``default_confinement``
chooses what a Python + torch process needs; ``landlock.apply_landlock`` enforces it (best effort
per platform: see ``landlock``). The rules grant

* ``read_only``: the interpreter, its libraries, the site-packages entries that are not this
  project's, what any user may read in /etc, /sys, this process's /proc entry;
* ``list_only``: site-packages and the folders carved around it, so that Python's import system
  can still scan them;
* ``read_write``: the call's folder;
* ``devices_rw``: /dev/null, GPUs.
"""

from __future__ import annotations

import glob
import os
import signal
import stat
import sys
import sysconfig
from collections.abc import Sequence

from .landlock import Confinement, prctl
from .landlock import landlock_abi as landlock_abi  # re-exported for callers that ask confine for the ABI

try:
    import resource
except ImportError:  # not POSIX
    resource = None  # type: ignore[assignment]

PR_SET_CHILD_SUBREAPER = 36

# Site-packages entries of this project (an editable install maps imports into the repository).
PROJECT_NAMES = ("autograder", "solutions", "assignment")
PROJECT_PREFIXES = ("pipeline_practical", "_pipeline_practical", "__editable__")
SITE_NAMES = ("site-packages", "dist-packages")
SYSTEM_FOLDERS = (
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/usr/local/lib",
    "/usr/local/lib64",
    "/usr/share/zoneinfo",
    "/usr/local/nvidia",
    "/sys",
)
PUBLIC_FOLDERS = ("/etc",)  # only what any user may read: not /etc/shadow, even for a uid-0 sandbox
SYSTEM_FILES = (
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/driver/nvidia",
)
MAX_CARVE_DEPTH = 8


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process (Linux), so it can reap and kill them."""
    return prctl(PR_SET_CHILD_SUBREAPER, 1)


# -- what a Python + torch process needs -----------------------------------------------------------


def _real(path: str) -> str:
    return os.path.realpath(path)


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _site_folders() -> list[str]:
    """The running interpreter's site-packages folders (and its base interpreter's), real paths."""
    import site

    found: list[str] = []
    try:
        found += site.getsitepackages()
    except AttributeError:  # an old virtualenv's site.py
        pass
    if site.ENABLE_USER_SITE:
        found.append(site.getusersitepackages())
    base = {
        "base": sys.base_prefix,
        "platbase": sys.base_exec_prefix,
        "installed_base": sys.base_prefix,
        "installed_platbase": sys.base_exec_prefix,
    }
    for paths in (sysconfig.get_paths(), sysconfig.get_paths(vars=base)):
        found += [paths["purelib"], paths["platlib"]]
    found += [p for p in sys.path if p and os.path.basename(p.rstrip("/")) in SITE_NAMES]
    return _unique(_real(p) for p in found if os.path.isdir(p))


def _project_entry(name: str) -> bool:
    key = name.lower().replace("-", "_")
    return key.split(".", 1)[0] in PROJECT_NAMES or key.startswith(PROJECT_PREFIXES)


def _system_candidates() -> list[str]:
    names = [
        sysconfig.get_path("stdlib"),
        sysconfig.get_path("platstdlib"),
        sysconfig.get_config_var("LIBDIR"),
        sysconfig.get_config_var("DESTSHARED"),
        *SYSTEM_FOLDERS,
    ]
    names += sorted(glob.glob("/usr/local/cuda*")) + _library_folders()
    return [n for n in names if n and n != "/" and os.path.exists(n)]


def _library_folders() -> list[str]:
    """Where the dynamic loader looks (LD_LIBRARY_PATH, /etc/ld.so.conf.d): libcuda is loaded late."""
    folders = os.environ.get("LD_LIBRARY_PATH", "").split(":")
    for conf in sorted(glob.glob("/etc/ld.so.conf.d/*.conf")):
        try:
            with open(conf) as f:
                folders += [line.split("#", 1)[0].strip() for line in f]
        except OSError:
            continue
    return [f for f in folders if f.startswith("/")]


class _Carver:
    """Grants folders whole, except around protected ones: a folder that holds a protected folder is
    made list-only and its other entries are granted instead (recursively, by real path). With
    ``public``, the same around entries that not every user may read (links there are skipped:
    Landlock checks a link's target where it lies)."""

    def __init__(self, protected: list[str], excluded: list[str], sites: list[str]):
        self.protected, self.excluded, self.sites = protected, excluded, sites
        self.read_only: list[str] = []
        self.list_only: list[str] = []

    def add(self, path: str, depth: int = 0, public: bool = False) -> None:
        real = _real(path)
        if not os.path.exists(real) or depth > MAX_CARVE_DEPTH or (public and os.path.islink(path)):
            return
        if any(_within(real, e) for e in self.excluded) and not any(_within(real, s) for s in self.sites):
            return  # inside the repository (say), and not a site-packages entry of a venv kept there
        if not any(_within(p, real) for p in self.protected) and (not public or _public(real)):
            self.read_only.append(real)
        elif real not in self.protected and os.path.isdir(real) and (not public or _open_to_all(real, True)):
            self.list_only.append(real)  # a protected folder's entries are chosen elsewhere
            for name in _listdir(real):
                self.add(os.path.join(real, name), depth + 1, public)


def _open_to_all(path: str, folder: bool) -> bool:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    need = stat.S_IROTH | (stat.S_IXOTH if folder else 0)
    return stat.S_ISLNK(mode) or mode & need == need


def _public(path: str) -> bool:
    """Whether a user with no groups may read ``path`` and everything below it (links aside)."""
    if not os.path.isdir(path):
        return _open_to_all(path, False)
    if not _open_to_all(path, True):
        return False
    for folder, dirs, files in os.walk(path):
        if not all(_open_to_all(os.path.join(folder, d), True) for d in dirs):
            return False
        if not all(_open_to_all(os.path.join(folder, f), False) for f in files):
            return False
    return True


def _allowlist(extra: Sequence[str], exclude: Sequence[str]) -> tuple[list[str], list[str]]:
    sites = _site_folders()
    excluded = [_real(str(e)) for e in exclude]
    carver = _Carver(sites + excluded, excluded, sites)
    for candidate in _system_candidates():
        carver.add(candidate)
    for folder in PUBLIC_FOLDERS:
        carver.add(folder, public=True)
    for folder in sites:
        carver.list_only.append(folder)
        for name in _listdir(folder):
            if not _project_entry(name):
                carver.add(os.path.join(folder, name), 1)
    for path in (sys.executable, f"/proc/{os.getpid()}", *SYSTEM_FILES):
        carver.add(path, 1)
    read_only = carver.read_only + [str(p) for p in extra if os.path.exists(p)]
    if sys.prefix != sys.base_prefix:  # a venv (perhaps in the repository): a python started in it reads this
        read_only += [p for p in [os.path.join(sys.prefix, "pyvenv.cfg")] if os.path.exists(p)]
    return _unique(read_only), _unique(carver.list_only)


def _unique(paths) -> list[str]:
    return list(dict.fromkeys(paths))


def default_read_only(extra: Sequence[str] = (), *, exclude: Sequence[str] = ()) -> list[str]:
    """Read-and-execute allowlist for a Python + torch process, plus ``extra`` (call it in that process).

    The interpreter's stdlib and libraries, the loader's library folders, CUDA and the NVIDIA
    driver under /usr/local, what any user may read in /etc, /sys, /proc/<this pid>, the random
    devices, and every site-packages entry except this project's. No granted path holds a
    site-packages folder or an ``exclude`` folder (pass the repository), and none lies inside an
    ``exclude`` folder unless it is a site-packages entry (of a venv kept in the repository).
    """
    return _allowlist(extra, exclude)[0]


def default_devices() -> list[str]:
    """Device files a call may read, write and ioctl: /dev/null and the NVIDIA devices present."""
    return [p for p in ["/dev/null", *sorted(glob.glob("/dev/nvidia*"))] if os.path.exists(p)]


def default_confinement(
    read_write: Sequence[str], extra_read_only: Sequence[str] = (), *, exclude: Sequence[str] = ()
) -> Confinement:
    """The sandbox's usual confinement: ``default_read_only``, list-only site folders, the devices.

    Also writable: this process's /proc/<pid>/task, where threads get their names (the CUDA driver
    fails to start, error 304, when it cannot name its threads).
    """
    read_only, list_only = _allowlist(extra_read_only, exclude)
    devices = default_devices() + [f"/proc/{os.getpid()}/task"]
    return Confinement(read_only, [str(p) for p in read_write], devices, list_only=list_only)


# -- resource limits -------------------------------------------------------------------------------


def _cap(name: str, value: int) -> bool:
    which = getattr(resource, name, None) if resource is not None else None
    if which is None:
        return False
    try:
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY and value > hard:
            value = hard  # an unprivileged process cannot raise it: keep the stricter limit
        resource.setrlimit(which, (value, value))  # soft = hard: the limited process cannot raise it
        return True
    except (ValueError, OSError):
        return False


def set_limits(
    memory_bytes: int | None, file_bytes: int | None, max_processes: int | None, open_files: int = 1024
) -> list[str]:
    """RLIMIT_AS, _FSIZE, _NPROC, _NOFILE (None or <= 0: unchanged), RLIMIT_CORE = 0; ignore SIGXFSZ.

    Writing past ``file_bytes`` then fails with EFBIG instead of killing the process. Returns the
    names of the limits that could not be set (empty when all were).
    """
    failed = []
    for name, value in (
        ("RLIMIT_CORE", 0),
        ("RLIMIT_AS", memory_bytes),
        ("RLIMIT_FSIZE", file_bytes),
        ("RLIMIT_NPROC", max_processes),
        ("RLIMIT_NOFILE", open_files),
    ):
        if value is None or (value <= 0 and name != "RLIMIT_CORE"):
            continue
        if not _cap(name, int(value)):
            failed.append(name)
    try:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    except (AttributeError, ValueError, OSError):  # no SIGXFSZ, or not the main thread
        failed.append("SIGXFSZ")
    return failed

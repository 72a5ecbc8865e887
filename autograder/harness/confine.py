"""Confine the call process that runs student code: Landlock rules, resource limits, subreaper.

Runs inside the sandbox's call process (forked from the grading worker after torch is imported,
before any student code exists), so it imports only the standard library. Everything is best
effort per platform: on macOS, on a kernel without Landlock or where seccomp blocks it,
``landlock_abi()`` is 0 and ``apply_landlock`` returns what it could not enforce instead of failing.

Landlock (Linux >= 5.13) lets a process drop access rights for itself and every process it starts;
nothing can undo that. ``apply_landlock`` handles every access right the running kernel knows
(ABI 1..7) and grants back only

* ``read_only``: read and execute (folders: also list): the interpreter, its libraries, the
  site-packages entries that are not this project's, what any user may read in /etc, /sys, this
  process's /proc entry;
* ``list_only``: list names, read nothing (site-packages and the folders carved around it, so that
  Python's import system can still scan them);
* ``read_write``: everything but making device nodes (the call's folder);
* ``devices_rw``: read, write, truncate, ioctl (/dev/null, GPUs).

So student code cannot read the repository (the grader's source, the reference solutions), write
outside its folder, bind or connect TCP sockets (ABI >= 4), signal processes outside the sandbox
or reach abstract unix sockets made outside it (ABI >= 6). ptrace and /proc/<pid>/mem of outside
processes are denied by Landlock since ABI 1.

Limits, said plainly: rules follow the file system hierarchy, so a bind mount or hard link of a
protected file inside an allowed folder is readable; UDP and pathname unix sockets are outside
ABI <= 7 (a private uid and file permissions protect those); the rules bind the calling thread
only (before ABI 8), so ``apply_landlock`` refuses a process that already runs other threads.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import os
import signal
import stat
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass, field

try:
    import resource
except ImportError:  # not POSIX
    resource = None  # type: ignore[assignment]

SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446  # the same on x86_64 and aarch64
GENERIC_SYSCALLS = (
    "x86_64",
    "amd64",
    "i386",
    "i686",
    "aarch64",
    "arm64",
    "armv7l",
    "armv8l",
    "riscv64",
    "ppc64le",
    "ppc64",
    "s390x",
    "loongarch64",
)  # where those numbers hold (not alpha, mips)
CREATE_RULESET_VERSION = 1 << 0
RULE_PATH_BENEATH = 1
PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 36, 38

# Access rights, from include/uapi/linux/landlock.h.
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
MAKE_CHAR, MAKE_BLOCK = 1 << 6, 1 << 11
ABI1_FS = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15  # ABI 2, 3, 5
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6

FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # all a rule on a non-folder may hold
READ_RIGHTS = EXECUTE | READ_FILE | READ_DIR
WRITE_RIGHTS = (ABI1_FS | REFER | TRUNCATE | IOCTL_DEV) & ~(MAKE_CHAR | MAKE_BLOCK)
DEVICE_RIGHTS = READ_FILE | WRITE_FILE | TRUNCATE | IOCTL_DEV | READ_DIR

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


class ConfinementError(RuntimeError):
    """The kernel refused a confinement step it claims to support (one line)."""


@dataclass
class Confinement:
    """What a confined process may still reach; everything else Landlock handles is denied."""

    read_only: list[str]
    read_write: list[str]
    devices_rw: list[str] = field(default_factory=list)
    block_network: bool = True
    scope_signals: bool = True
    scope_abstract_unix: bool = True
    list_only: list[str] = field(default_factory=list)
    tcp_bind_ports: list[int] = field(default_factory=list)  # with block_network: binding these stays allowed


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in the uapi header: 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _NetPortAttr(ctypes.Structure):
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


RULE_NET_PORT = 2  # LANDLOCK_RULE_NET_PORT


# -- the kernel ------------------------------------------------------------------------------------


def _syscall(number: int, *args) -> int:
    """libc ``syscall``; raises OSError with the kernel's errno."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.syscall
    except (OSError, AttributeError):
        raise OSError(errno.ENOSYS, "no libc syscall()") from None
    function.restype = ctypes.c_long
    result = function(ctypes.c_long(number), *args)
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def _probe() -> tuple[int, str]:
    """(Landlock ABI, why it is 0)."""
    if not sys.platform.startswith("linux"):
        return 0, f"not Linux but {sys.platform}"
    if os.uname().machine not in GENERIC_SYSCALLS:
        return 0, f"Landlock's system call numbers are not known here for {os.uname().machine}"
    try:
        return _syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION)), ""
    except OSError as exc:
        why = {
            errno.ENOSYS: "the kernel has no Landlock (older than 5.13) or seccomp hides it",
            errno.EOPNOTSUPP: "Landlock is built in but disabled (add landlock to the lsm= boot option)",
            errno.EPERM: "a seccomp filter blocks Landlock",
        }
        return 0, why.get(exc.errno, f"landlock_create_ruleset: {exc.strerror}")


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when unavailable (not Linux, old kernel, blocked)."""
    return _probe()[0]


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ulong = ctypes.c_ulong
        return libc.prctl(ctypes.c_int(option), ulong(value), ulong(0), ulong(0), ulong(0)) == 0
    except (OSError, AttributeError):
        return False


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process (Linux), so it can reap and kill them."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


# -- Landlock --------------------------------------------------------------------------------------


def _handled_fs(abi: int) -> int:
    rights = ABI1_FS
    rights |= REFER if abi >= 2 else 0
    rights |= TRUNCATE if abi >= 3 else 0
    return rights | (IOCTL_DEV if abi >= 5 else 0)


def _allow(ruleset: int, path: str, rights: int) -> None:
    """Add a path-beneath rule; a path that cannot be opened is skipped (nothing to grant)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= FILE_RIGHTS  # folder rights on a file: EINVAL
        if rights:
            rule = _PathBeneathAttr(rights, fd)
            _syscall(
                SYS_ADD_RULE,
                ctypes.c_int(ruleset),
                ctypes.c_int(RULE_PATH_BENEATH),
                ctypes.byref(rule),
                ctypes.c_uint32(0),
            )
    except OSError as exc:
        raise ConfinementError(f"Landlock refused a rule for {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _describe(abi: int, c: Confinement) -> str:
    done, missing = ["files"], []
    if c.block_network:
        (done if abi >= 4 else missing).append("network (TCP; needs ABI 4)" if abi < 4 else "network (TCP)")
    for wanted, name in ((c.scope_signals, "signals"), (c.scope_abstract_unix, "abstract unix sockets")):
        if wanted:
            (done if abi >= 6 else missing).append(name + (" (needs ABI 6)" if abi < 6 else ""))
    text = f"landlock ABI {abi}: {', '.join(done)}"
    return text + (f"; not enforced: {', '.join(missing)}" if missing else "")


def apply_landlock(c: Confinement) -> str:
    """Confine this process (and all it starts) to ``c``; return one line saying what is enforced.

    Sets no_new_privs (also without Landlock, where it returns what is not confined). Raises
    :class:`ConfinementError` when the process runs other threads or the kernel refuses a step.
    Call it in the process to confine: ``default_confinement`` names this process's /proc entry.
    """
    abi, why = _probe()
    if abi <= 0:
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        return f"no Landlock ({why}): files, network and signals are not confined"
    threads = _threads()
    if threads > 1:
        raise ConfinementError(
            f"cannot confine a process that runs {threads} threads: Landlock binds only the "
            f"calling thread, so apply it before any thread starts"
        )
    handled = _handled_fs(abi)
    net = NET_BIND_TCP | NET_CONNECT_TCP if c.block_network and abi >= 4 else 0
    scoped = 0
    if abi >= 6:
        scoped = (SCOPE_SIGNAL if c.scope_signals else 0) | (SCOPE_ABSTRACT_UNIX_SOCKET if c.scope_abstract_unix else 0)
    attr = _RulesetAttr(handled, net, scoped)
    size = 8 if abi < 4 else 16 if abi < 6 else 24  # the struct as this ABI knows it
    try:
        ruleset = _syscall(SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    except OSError as exc:
        raise ConfinementError(f"landlock_create_ruleset failed: {exc.strerror}") from None
    try:
        for paths, rights in (
            (c.read_only, READ_RIGHTS),
            (c.list_only, READ_DIR),
            (c.read_write, WRITE_RIGHTS),
            (c.devices_rw, DEVICE_RIGHTS),
        ):
            for path in paths:
                _allow(ruleset, str(path), rights & handled)
        for port in c.tcp_bind_ports if net else ():
            _allow_port(ruleset, int(port))
        if not _prctl(PR_SET_NO_NEW_PRIVS, 1):
            raise ConfinementError("prctl(PR_SET_NO_NEW_PRIVS) failed, so Landlock cannot be enforced")
        try:
            _syscall(SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0))
        except OSError as exc:
            raise ConfinementError(f"landlock_restrict_self failed: {exc.strerror}") from None
    finally:
        os.close(ruleset)
    line = _describe(abi, c)
    if net and c.tcp_bind_ports:
        line += f"; TCP: bind only ports {', '.join(map(str, c.tcp_bind_ports))}, connect nowhere"
    return line


def _allow_port(ruleset: int, port: int) -> None:
    try:
        _syscall(
            SYS_ADD_RULE,
            ctypes.c_int(ruleset),
            ctypes.c_int(RULE_NET_PORT),
            ctypes.byref(_NetPortAttr(NET_BIND_TCP, port)),
            ctypes.c_uint32(0),
        )
    except OSError as exc:
        raise ConfinementError(f"Landlock refused a rule for TCP port {port}: {exc.strerror}") from None


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

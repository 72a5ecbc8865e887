"""Landlock, through its system calls: what a process may still reach once it confines itself.

Part of the sandbox's call process (see ``confine``, which chooses the paths), so it imports only
the standard library. Everything is best effort per platform: on macOS, on a kernel without
Landlock or where seccomp blocks it, ``landlock_abi()`` is 0 and ``apply_landlock`` returns what it
could not enforce instead of failing.

Landlock (Linux >= 5.13) lets a process drop access rights for itself and every process it starts;
nothing can undo that. ``apply_landlock`` handles every access right the running kernel knows
(ABI 1..7) and grants back only

* ``read_only``: read and execute (folders: also list);
* ``list_only``: list names, read nothing;
* ``read_write``: everything but making device nodes;
* ``devices_rw``: read, write, truncate, ioctl;
* ``tcp_bind_ports``: binding these TCP ports (ABI >= 4), when the network is blocked.

So a confined process (given the rules ``confine.default_confinement`` makes) cannot read the
repository (the grader's source, the reference solutions), write outside its folder, bind or
connect TCP sockets (ABI >= 4), signal processes outside the sandbox or reach abstract unix sockets
made outside it (ABI >= 6). ptrace and /proc/<pid>/mem of outside processes are denied by Landlock
since ABI 1.

Limits, said plainly: rules follow the file system hierarchy, so a bind mount or hard link of a
protected file inside an allowed folder is readable; UDP and pathname unix sockets are outside
ABI <= 7 (a private uid and file permissions protect those); the rules bind the calling thread
only (before ABI 8), so ``apply_landlock`` refuses a process that already runs other threads.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import sys
from dataclasses import dataclass, field

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
PR_SET_NO_NEW_PRIVS = 38

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


def prctl(option: int, value: int) -> bool:
    """libc ``prctl(option, value, 0, 0, 0)`` (Linux); whether it succeeded."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ulong = ctypes.c_ulong
        return libc.prctl(ctypes.c_int(option), ulong(value), ulong(0), ulong(0), ulong(0)) == 0
    except (OSError, AttributeError):
        return False


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
    Call it in the process to confine: ``confine.default_confinement`` names this process's /proc entry.
    """
    abi, why = _probe()
    if abi <= 0:
        prctl(PR_SET_NO_NEW_PRIVS, 1)
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
        if not prctl(PR_SET_NO_NEW_PRIVS, 1):
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

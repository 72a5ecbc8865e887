"""Giving up root's capabilities while keeping uid 0 (standard library only, Linux only).

Used when the grading runs as root but a private uid could not read the Python installation
(e.g. pyenv under ``/root``): the call process stays uid 0, so it can read the interpreter it was
forked from, but holds no capability at all (no CAP_KILL, CAP_SYS_PTRACE, CAP_DAC_OVERRIDE,
CAP_SYS_ADMIN, CAP_SYS_MODULE, ...), cannot get any back (securebits locked, bounding set empty,
no ambient capabilities, no_new_privs), and is confined by Landlock, which keeps it from reading
or writing outside its allowlist and from signalling or tracing processes outside the sandbox.
"""

from __future__ import annotations

import ctypes
import os

PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_CAP_AMBIENT = 24, 28, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECURE_BITS = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7)
CAPABILITY_VERSION_3 = 0x20080522
SYS_CAPSET = {"x86_64": 126, "aarch64": 91}


class CapsError(RuntimeError):
    """The capabilities could not be dropped (one line)."""


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 40


def drop_all_capabilities() -> None:
    """Lock securebits, empty the bounding and ambient sets, then clear every capability set."""
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    if prctl(PR_SET_SECUREBITS, SECURE_BITS, 0, 0, 0) != 0:
        raise CapsError(f"cannot lock securebits: {os.strerror(ctypes.get_errno())}")
    for cap in range(_last_cap() + 1):
        prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _Header(CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    number = SYS_CAPSET.get(os.uname().machine)
    if number is None:
        raise CapsError(f"capset: unknown architecture {os.uname().machine}")
    if libc.syscall(number, ctypes.byref(header), ctypes.byref(data)) != 0:
        raise CapsError(f"capset failed: {os.strerror(ctypes.get_errno())}")
    with open("/proc/self/status") as f:
        effective = next((line.split()[1] for line in f if line.startswith("CapEff:")), "")
    if effective.strip("0"):
        raise CapsError(f"capabilities remain after capset (CapEff {effective})")


# -- a private uid that may still read (only with Landlock) ---------------------------------------

PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, PR_SET_KEEPCAPS = 38, 22, 8
SECCOMP_MODE_FILTER = 2
CAP_DAC_READ_SEARCH, CAP_SETGID, CAP_SETUID = 2, 6, 7
SECBIT_KEEP_CAPS, SECBIT_NOROOT, SECBIT_NOROOT_LOCKED = 1 << 4, 1 << 0, 1 << 1
SECBIT_NO_CAP_AMBIENT_RAISE, SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED = 1 << 6, 1 << 7
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
OPEN_BY_HANDLE_AT = {"x86_64": 304, "aarch64": 265}
ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/resolv.conf",
    "/etc/os-release",
)


class _Filter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_Filter))]


def _prctl():
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return libc, prctl


def deny_open_by_handle() -> None:
    """A seccomp filter that makes ``open_by_handle_at`` fail: with CAP_DAC_READ_SEARCH it could
    open a file by its handle, not its path."""
    machine = os.uname().machine
    if machine not in AUDIT_ARCH:
        raise CapsError(f"no seccomp filter for {machine}")
    libc, prctl = _prctl()
    if prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise CapsError(f"no_new_privs: {os.strerror(ctypes.get_errno())}")
    code = [
        (0x20, 0, 0, 4),
        (0x15, 0, 3, AUDIT_ARCH[machine]),
        (0x20, 0, 0, 0),
        (0x15, 0, 1, OPEN_BY_HANDLE_AT[machine]),
        (0x06, 0, 0, 0x00050001),
        (0x06, 0, 0, 0x7FFF0000),
    ]
    filters = (_Filter * len(code))(*[_Filter(*c) for c in code])
    program = _Program(len(code), filters)
    if prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(program), 0, 0) != 0:
        raise CapsError(f"seccomp: {os.strerror(ctypes.get_errno())}")


def become_reading_uid(uid: int, gid: int) -> None:
    """As root: become ``uid``/``gid`` keeping only CAP_DAC_READ_SEARCH (reading files that other
    users may not, e.g. a Python under /root). Only safe under Landlock, which limits what can be
    read to its allowlist; ``open_by_handle_at`` is denied by seccomp."""
    libc, prctl = _prctl()
    bits = (
        SECBIT_KEEP_CAPS
        | SECBIT_NOROOT
        | SECBIT_NOROOT_LOCKED
        | SECBIT_NO_CAP_AMBIENT_RAISE
        | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED
    )
    if prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) != 0:
        raise CapsError(f"cannot set securebits: {os.strerror(ctypes.get_errno())}")
    keep = {CAP_DAC_READ_SEARCH, CAP_SETGID, CAP_SETUID}
    for cap in range(_last_cap() + 1):
        if cap not in keep:
            prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    header = _Header(CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    data[0].effective = data[0].permitted = 1 << CAP_DAC_READ_SEARCH
    if libc.syscall(SYS_CAPSET[os.uname().machine], ctypes.byref(header), ctypes.byref(data)) != 0:
        raise CapsError(f"capset failed: {os.strerror(ctypes.get_errno())}")
    with open("/proc/self/status") as f:
        effective = next((line.split()[1] for line in f if line.startswith("CapEff:")), "")
    if int(effective or "0", 16) != 1 << CAP_DAC_READ_SEARCH:
        raise CapsError(f"unexpected capabilities after the switch (CapEff {effective})")
    deny_open_by_handle()

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

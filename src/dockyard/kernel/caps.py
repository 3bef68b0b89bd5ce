"""Capabilities and privileges of a container's process, set between fork and exec.

As runc does for Docker: the bounding set is cut to the container's set
(PR_CAPBSET_DROP); the user and groups are set; then a root user keeps the
set as effective and permitted, a non-root user none (moby gives it the
bounding set only, "to match what execve does"); inheritable and ambient
stay empty (moby since CVE-2022-24769). no-new-privileges is one prctl.
Python has no capset: libc through ctypes. Stdlib only: the shim's child
uses it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _prctl(option: int, arg: int = 0, arg3: int = 0) -> int:
    rc = _libc.prctl(option, arg, arg3, 0, 0)
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")
    return int(rc)


def last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def bounding_set() -> int:
    """This process's bounding set as a mask (what a container can be given at most)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)
    return 0


def _capset(effective: int, permitted: int, inheritable: int) -> None:
    header = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    if _libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


def confine(
    mask: int, uid: int, gid: int, groups: tuple[int, ...], no_new_privs: bool, last: int | None = None
) -> None:
    """Become uid:gid with these groups and at most the capabilities in mask (`last`:
    last_cap() read already, so that confining opens no file)."""
    for cap in range((last_cap() if last is None else last) + 1):
        if not mask >> cap & 1 and _prctl(PR_CAPBSET_READ, cap) == 1:
            _prctl(PR_CAPBSET_DROP, cap)
    # The ambient set goes before the user changes (it needs no capability).
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    os.setgroups(list(groups))
    os.setresgid(gid, gid, gid)
    # Without keepcaps the kernel empties permitted and effective when uid 0 is
    # left: a non-root user ends with none, as in Docker.
    os.setresuid(uid, uid, uid)
    if uid == 0:
        _capset(mask, mask, 0)
    else:
        _capset(0, 0, 0)
    if no_new_privs:
        _prctl(PR_SET_NO_NEW_PRIVS, 1)

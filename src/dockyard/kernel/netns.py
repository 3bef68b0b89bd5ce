"""Namespaces by handle: create and pin network namespaces, enter them briefly.

Python 3.11 has no os.setns/os.unshare, so this module calls libc through
ctypes. Stdlib only: the shim (the containers' parent process) uses it too.

A sandbox is a network namespace pinned by a bind mount of its nsfs file on
a file under $ROOT/netns, so it outlives any process and can be joined
(Docker's SandboxKey). Entering a namespace is done per thread and always
undone (`entered`): a netlink socket opened inside stays bound to it.

A namespace handed over by a client (dockyard-cni passes CNI_NETNS open,
SCM_RIGHTS) is known by its descriptor alone: `netns_kind` and
`is_own_netns` judge it by identity (NS_GET_NSTYPE, st_dev/st_ino), and
`by_descriptor` names it for the functions here and in netlink.py as
/proc/self/fd/N, a link to the open file itself that resolves the same in
any mount namespace; the client's path is never opened.

The pin directory is a mount point of its own (a bind mount onto itself,
private then shared, as `ip netns` makes /run/netns): a new container's
mount namespace copies every pin, and drops them all with one lazy
unmount of that mount instead of one unmount per pin (`own_mount`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from dockyard.errors import KernelError

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_SHARED = 1 << 20
MNT_DETACH = 0x2

NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3), Linux 4.11

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]

# Serialises the thread-wide switch in create_pinned with other namespace moves.
_lock = threading.Lock()


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def umount(target: str, flags: int = MNT_DETACH) -> None:
    _check(_libc.umount2(target.encode(), flags), f"umount {target}")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def resolve(name_or_path: str) -> Path:
    """A namespace given as a name (ip netns) or a path."""
    if "/" in name_or_path:
        return Path(name_or_path)
    return Path("/run/netns") / name_or_path


def enter_for_process(path: str | Path) -> None:
    """Move the calling thread (at start-up: the whole process) into a netns."""
    fd = os.open(str(path), os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd, CLONE_NEWNET)
    finally:
        os.close(fd)


@contextlib.contextmanager
def entered(path: str | Path) -> Iterator[None]:
    """Run the body with this thread in the netns at path; always come back."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(str(path), os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(target, CLONE_NEWNET)
        try:
            yield
        finally:
            setns(home, CLONE_NEWNET)
    finally:
        os.close(target)
        os.close(home)


def create_pinned(path: Path) -> None:
    """Make a new network namespace and pin it on `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                unshare(CLONE_NEWNET)
            except OSError as e:
                raise KernelError(f"cannot create a network namespace: {e.strerror}") from e
            try:
                fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
                os.close(fd)
                mount("/proc/thread-self/ns/net", str(path), None, MS_BIND)
            except OSError as e:
                with contextlib.suppress(OSError):
                    path.unlink()
                raise KernelError(f"cannot pin network namespace on {path}: {e.strerror}") from e
            finally:
                setns(home, CLONE_NEWNET)
        finally:
            os.close(home)


def is_pinned(path: Path) -> bool:
    """True when path holds a namespace: a bind-mounted nsfs file."""
    try:
        return os.stat(str(path)).st_dev == os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return False


def remove_pin(path: Path) -> bool:
    """Unpin and delete; True when something was there. Tolerates half-made pins."""
    found = False
    try:
        umount(str(path), MNT_DETACH)
        found = True
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):
            raise KernelError(f"cannot unpin network namespace {path}: {e.strerror}") from e
    try:
        path.unlink()
        found = True
    except FileNotFoundError:
        pass
    return found


def _mountpoints() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4].replace("\\040", " ") for line in f]


def mounted_under(directory: Path) -> list[Path]:
    """Mount points below a directory, from this process's mount table."""
    prefix = str(directory).rstrip("/") + "/"
    return [Path(m) for m in _mountpoints() if m.startswith(prefix)]


def is_mount_point(directory: Path) -> bool:
    """True when the directory itself is a mount point (a bind mount onto itself counts)."""
    return str(directory).rstrip("/") in _mountpoints()


def own_mount(directory: Path) -> None:
    """Make the pin directory a mount point of its own, keeping the pins under it.

    Private first, so that it leaves the peer group of the mount it is on
    (else each pin would be propagated to a hidden twin under it), then
    shared, so that pins and their removal reach the mount namespaces
    copied from this one later (`ip netns` does the same with /run/netns).
    Pins made before (an older $ROOT) are moved into it: held by a
    descriptor while their old mount goes, then pinned again on top.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if is_mount_point(directory):
        return
    held: list[tuple[str, int]] = []
    try:
        for pin in dict.fromkeys(str(p) for p in mounted_under(directory)):
            if not is_pinned(Path(pin)):
                continue
            held.append((pin, os.open(pin, os.O_RDONLY | os.O_CLOEXEC)))
            while True:  # a pin mounted twice goes entirely
                try:
                    umount(pin, MNT_DETACH)
                except OSError:
                    break
        try:
            mount(str(directory), str(directory), None, MS_BIND)
            mount(None, str(directory), None, MS_PRIVATE)
            mount(None, str(directory), None, MS_SHARED)
        except OSError as e:
            raise KernelError(f"cannot make {directory} a mount point: {e.strerror}") from e
        finally:
            for pin, fd in held:
                with contextlib.suppress(OSError):
                    mount(f"/proc/self/fd/{fd}", pin, None, MS_BIND)
    finally:
        for _, fd in held:
            os.close(fd)


def release_own_mount(directory: Path) -> bool:
    """Undo own_mount once no pin is left under it; True when it was unmounted."""
    if mounted_under(directory) or not is_mount_point(directory):
        return False
    try:
        umount(str(directory), MNT_DETACH)
    except OSError as e:
        raise KernelError(f"cannot unmount {directory}: {e.strerror}") from e
    return True


def netns_kind(fd: int) -> str:
    """What namespace fd is: "netns" for a network namespace, else its kind ("a mount namespace", ...)."""
    try:
        kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError:  # ENOTTY: not a namespace file at all
        return "not a namespace"
    if kind == CLONE_NEWNET:
        return "netns"
    names = {CLONE_NEWNS: "mount", CLONE_NEWUTS: "uts", CLONE_NEWIPC: "ipc", CLONE_NEWPID: "pid"}
    return f"a {names.get(kind, 'non-network')} namespace"


def is_own_netns(fd: int) -> bool:
    """Whether the descriptor is this process's own (the host's) network namespace, by identity."""
    a, b = os.fstat(fd), os.stat("/proc/self/ns/net")
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def by_descriptor(fd: int) -> Path:
    """A path to the namespace open on fd, valid while fd is: /proc/self/fd/N."""
    return Path(f"/proc/self/fd/{fd}")

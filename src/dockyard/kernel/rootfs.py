"""A container's own root file system, made in its new mount namespace before it runs.

The root is an overlay: the host's `/` as the lower layer, the container's
layer (upper and work) under its directory ($ROOT/containers/<id>/rootfs),
so the container sees the host's programs as its image but its writes never
reach the host, and removing the container removes them. Other file systems
of the host (a separate /home, /var, /boot) are not in the overlay of `/`:
each is carried as an overlay of its own (read-only bind where the kernel
refuses one); kernel and runtime file systems (proc, sysfs, devtmpfs,
tmpfs, cgroup, nsfs pins, ...) and whatever lies under /proc, /sys, /dev
and /run are not carried.

Then what must stay hidden is masked: $ROOT (the engine's socket, state,
pins and the other containers' layers) and /run/netns by an empty
read-only tmpfs; Docker's masked and read-only paths of /proc and /sys. The
container gets its own /proc (its PID namespace), a read-only /sys (its
network namespace), and Docker's minimal /dev: a tmpfs with the host's
null, zero, full, random, urandom and tty bound in, its own devpts, shm
and mqueue. Every mount but those binds is nodev, so a device node the
container makes (it has CAP_MKNOD, as in Docker) cannot be opened: the
devices cgroup's job in Docker, done without one. --privileged gets every
host device and no masks, as in Docker. Then pivot_root, and the host's
tree is unmounted from the container's view.

Stdlib only: runs in the shim's child, between fork and exec.
"""

from __future__ import annotations

import contextlib
import os
import platform
import stat

from dockyard import digests
from dockyard.kernel import netns

MS_REMOUNT = 0x20
LAYER = "rootfs"
# Docker's MaskedPaths and ReadonlyPaths (moby oci/defaults.go).
MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = (
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
    ("/proc/kcore", "core"),
    ("pts/ptmx", "ptmx"),
)
# File systems that hold no installed files: never carried into a container.
NOT_CARRIED = frozenset(
    {
        "proc",
        "sysfs",
        "devtmpfs",
        "devpts",
        "tmpfs",
        "ramfs",
        "cgroup",
        "cgroup2",
        "nsfs",
        "mqueue",
        "bpf",
        "tracefs",
        "debugfs",
        "securityfs",
        "pstore",
        "configfs",
        "fusectl",
        "hugetlbfs",
        "autofs",
        "binfmt_misc",
        "efivarfs",
        "rpc_pipefs",
        "nfsd",
        "overlay",
        "selinuxfs",
    }
)
# The host's runtime and kernel trees: the container gets its own or none.
NOT_CARRIED_UNDER = ("/proc", "/sys", "/dev", "/run")
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}

NOSUID, NODEV, NOEXEC, RDONLY = netns.MS_NOSUID, netns.MS_NODEV, netns.MS_NOEXEC, netns.MS_RDONLY


class RootfsError(Exception):
    """A step of the root's making failed; the message names it."""


def layer_dir(container_dir: str) -> str:
    return os.path.join(container_dir, LAYER)


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    try:
        netns.mount(source, target, fstype, flags, data)
    except OSError as e:
        raise RootfsError(f"cannot mount {fstype or source} on {target}: {os.strerror(e.errno or 0)}") from e


def overlay_path(path: str) -> str:
    # overlay's option syntax: ',' separates options, ':' lower layers.
    return path.replace("\\", "\\\\").replace(",", "\\,").replace(":", "\\:")


def _overlay(lowers: list[str], layer: str, target: str) -> None:
    """lowers: top first."""
    upper, work = os.path.join(layer, "upper"), os.path.join(layer, "work")
    for d in (upper, work):
        os.makedirs(d, mode=0o755, exist_ok=True)
    lower = ":".join(overlay_path(path) for path in lowers)
    data = f"lowerdir={lower},upperdir={overlay_path(upper)},workdir={overlay_path(work)}"
    _mount("overlay", target, "overlay", NODEV, data)


def _unescape(field: str) -> str:
    """mountinfo's octal escapes (\\040 for a space); without a codec import, which
    each container's first process would pay again."""
    if "\\" not in field:
        return field
    raw, out, i = field.encode(), bytearray(), 0
    while i < len(raw):
        if raw[i] == 0x5C and raw[i + 1 : i + 4].isdigit():
            out.append(int(raw[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return out.decode(errors="surrogateescape")


def _host_mounts() -> list[tuple[str, str, str]]:
    """(mount point, fs type, root within its file system) of this mount namespace, parents first."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            point = _unescape(fields[4])
            out.append((point, fields[sep + 1], fields[3]))
    return out


def _carry_mounts(new_root: str, layer: str, hidden: list[str]) -> None:
    skipped: list[str] = []
    for point, fstype, fs_root in _host_mounts():
        if point == "/":
            continue
        # A bind mount (a subtree of a file system, not its root) is a runtime
        # arrangement (netns pin directories, volumes), not installed files.
        if (
            fstype in NOT_CARRIED
            or fs_root != "/"
            or any(_under(point, top) for top in (*NOT_CARRIED_UNDER, *hidden, *skipped))
        ):
            skipped.append(point)
            continue
        target = new_root + point
        if not os.path.isdir(target) or not os.path.isdir(point):
            skipped.append(point)
            continue
        name = digests.sha256(point.encode()).hexdigest()[:16]
        try:
            _overlay([point], os.path.join(layer, "mounts", name), target)
        except (RootfsError, OSError):
            try:
                netns.mount(point, target, None, netns.MS_BIND)
                netns.mount(None, target, None, MS_REMOUNT | netns.MS_BIND | RDONLY | NOSUID | NODEV)
            except OSError:
                skipped.append(point)


def _mask(new_root: str, path: str) -> None:
    """An empty read-only tmpfs over a directory, /dev/null over a file; absent paths stay absent."""
    target = new_root + path
    try:
        st = os.lstat(target)
    except OSError:
        return
    if stat.S_ISDIR(st.st_mode):
        _mount("tmpfs", target, "tmpfs", RDONLY | NOSUID | NODEV | NOEXEC, "size=4k,mode=555")
    elif not stat.S_ISLNK(st.st_mode):
        _mount("/dev/null", target, None, netns.MS_BIND)


def _read_only(new_root: str, path: str) -> None:
    target = new_root + path
    if not os.path.exists(target):
        return
    _mount(target, target, None, netns.MS_BIND | netns.MS_REC)
    _mount(None, target, None, MS_REMOUNT | netns.MS_BIND | RDONLY | NOSUID | NODEV)


def _dev(new_root: str, privileged: bool) -> None:
    dev = new_root + "/dev"
    # Unprivileged: nodev, so that only the nodes bound below open.
    _mount("tmpfs", dev, "tmpfs", NOSUID | (0 if privileged else NODEV), "mode=755,size=65536k")
    if privileged:
        _copy_nodes("/dev", dev)
    else:
        for name in DEVICES:
            target = f"{dev}/{name}"
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o666))
            _mount(f"/dev/{name}", target, None, netns.MS_BIND)
    for sub in ("pts", "shm", "mqueue"):
        os.makedirs(f"{dev}/{sub}", exist_ok=True)
    _mount("devpts", f"{dev}/pts", "devpts", NOSUID | NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5")
    _mount("shm", f"{dev}/shm", "tmpfs", NOSUID | NODEV | NOEXEC, "mode=1777,size=65536k")
    with contextlib.suppress(RootfsError):  # a kernel without POSIX message queues
        _mount("mqueue", f"{dev}/mqueue", "mqueue", NOSUID | NODEV | NOEXEC)
    for source, name in DEV_LINKS:
        with contextlib.suppress(FileExistsError):
            os.symlink(source, f"{dev}/{name}")


def _copy_nodes(host: str, dev: str) -> None:
    """--privileged: every device node of the host, as Docker gives it (not pts, shm, mqueue)."""
    for entry in os.scandir(host):
        if entry.name in ("pts", "shm", "mqueue", "ptmx"):
            continue
        st = entry.stat(follow_symlinks=False)
        target = os.path.join(dev, entry.name)
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            with contextlib.suppress(OSError):
                os.mknod(target, st.st_mode, st.st_rdev)
                os.chown(target, st.st_uid, st.st_gid)
        elif stat.S_ISDIR(st.st_mode):
            os.makedirs(target, exist_ok=True)
            with contextlib.suppress(OSError):
                _copy_nodes(entry.path, target)
        elif stat.S_ISLNK(st.st_mode):
            with contextlib.suppress(OSError):
                os.symlink(os.readlink(entry.path), target)


def pivot(new_root: str) -> None:
    """pivot_root into new_root and drop the host's tree from this mount namespace."""
    number = _PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise RootfsError(f"pivot_root: unknown system call number on {platform.machine()}")
    os.chdir(new_root)
    # pivot_root(".", "."): the old root ends stacked under the new one, then goes
    # (runc's way: no directory for it is needed in the container's tree).
    if netns._libc.syscall(number, b".", b".") != 0:
        err = netns.ctypes.get_errno()
        raise RootfsError(f"pivot_root into {new_root}: {os.strerror(err)}")
    netns.umount(".", netns.MNT_DETACH)
    os.chdir("/")


def inside(new_root: str, path: str, make: str = "") -> str:
    """`path` resolved as if new_root were `/`: an image's symlinks (absolute
    or with `..`) never lead out of it, as the container will see them.

    make="dir" or "file" creates what is missing (in the container's layer),
    with parent directories; "" leaves a missing path missing.
    """
    parts = [p for p in path.split("/") if p and p != "."]
    current = new_root
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = os.path.dirname(current) if current != new_root else new_root
            continue
        candidate = os.path.join(current, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            if not make:
                return candidate
            if parts or make == "dir":
                os.mkdir(candidate, 0o755)
            else:
                os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
            current = candidate
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 40:
                raise RootfsError(f"too many levels of symbolic links in {path} of the image")
            target = os.readlink(candidate)
            parts = [p for p in target.split("/") if p and p != "."] + parts
            if target.startswith("/"):
                current = new_root
            continue
        current = candidate
    return current


def _volume_target(new_root: str, source: str, target: str) -> str:
    """The mount point of a -v in the new root, made if missing; never through a symbolic link
    of the container's tree (which would lead the mount, or a new directory, onto the host's)."""
    path = new_root
    parts = [p for p in target.split("/") if p]
    for i, part in enumerate(parts):
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if i < len(parts) - 1 or os.path.isdir(source):
                os.mkdir(path, 0o755)
            else:
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o644))
            continue
        if stat.S_ISLNK(st.st_mode):
            raise RootfsError(
                f"cannot mount {source} on {target}: {target} is a symbolic link in the container"
            )
    return path


def _volumes(new_root: str, volumes: list[list]) -> None:
    for source, target, read_only in volumes:
        where = _volume_target(new_root, source, target)
        _mount(source, where, None, netns.MS_BIND)
        # nodev as every mount of the container's (see the module's docstring); ro if asked.
        _mount(None, where, None, MS_REMOUNT | netns.MS_BIND | NOSUID | NODEV | (RDONLY if read_only else 0))


def build(
    container_dir: str,
    hidden: list[str],
    binds: list[tuple[str, str]],
    privileged: bool,
    lowers: list[str] | None = None,
    init_binary: str = "",
    volumes: list[list] | None = None,
) -> str:
    """Mount the container's root and everything in it; return where it is (pivot() enters it).

    lowers: an image's layers, top first; without them the host's `/` (and
    its other file systems) is the lower layer. volumes: -v's binds.
    """
    layer = layer_dir(container_dir)
    os.makedirs(layer, mode=0o700, exist_ok=True)
    new_root = os.path.join(layer, "merged")
    os.makedirs(new_root, exist_ok=True)
    if lowers:
        _overlay(lowers, layer, new_root)
    else:
        _overlay(["/"], layer, new_root)
        _carry_mounts(new_root, layer, hidden)
    for source, target in binds:
        kind = "dir" if os.path.isdir(source) else "file"
        _mount(source, inside(new_root, target, kind), None, netns.MS_BIND)
    _volumes(new_root, volumes or [])
    for top in ("/proc", "/sys", "/dev"):
        # Mounted by their plain paths below: an image's symlink there would lead them elsewhere.
        if inside(new_root, top, "dir") != new_root + top:
            raise RootfsError(f"the image's {top} is a symbolic link")
    flags = NOSUID | NODEV | NOEXEC
    _mount("proc", new_root + "/proc", "proc", flags)
    _mount("sysfs", new_root + "/sys", "sysfs", flags | (0 if privileged else RDONLY))
    _dev(new_root, privileged)
    if init_binary:
        target = new_root + "/dev/init"
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o755))
        _mount(init_binary, target, None, netns.MS_BIND)
        _mount(None, target, None, MS_REMOUNT | netns.MS_BIND | RDONLY | NOSUID | NODEV)
    # An image's root holds none of the host's tree: nothing of it to hide.
    for path in hidden if not lowers else ():
        _mask(new_root, path)
    if not privileged:
        for path in MASKED_PATHS:
            _mask(new_root, path)
        for path in READONLY_PATHS:
            with contextlib.suppress(RootfsError):
                _read_only(new_root, path)
    return new_root

"""What a container's first process does between fork and exec.

Runs in the forked child of the shim (a single-threaded process, so fork
and setns on the mount namespace are safe). The shim has already put it in
the container's PID namespace (a new one, where it is PID 1; the
container's, for exec). Stdlib only.

For a container: join its pids cgroup, enter its sandbox's network
namespace (unless host mode), unshare UTS, IPC and mount namespaces, make
mounts private, build its own root (kernel/rootfs.py: an overlay over the
host's, the engine's $ROOT masked, its /etc/hosts, /etc/hostname and
/etc/resolv.conf bound in, its own /proc, /sys and /dev) and pivot into
it, set the hostname, then become its user with its capabilities
(kernel/caps.py), start a session, exec.

For `exec` into a running container: join its cgroup, enter the namespaces
of its process, and become its user with its capabilities.

A request's confinement fields default to none: a request of a daemon that
predates them is served as it was.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import json
import os
import resource
import socket
import struct
import termios
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.kernel import caps, cgroups, netns, rootfs, users


@dataclass
class SpawnRequest:
    key: str  # the container id, or "exec:<exec id>"
    argv: list[str]
    env: list[str]
    cwd: str = ""
    # Network namespace to enter (a pin path); "" keeps the shim's (host mode).
    netns: str = ""
    # Enter every namespace of this process instead (exec).
    join_pid: int = 0
    new_uts: bool = True
    hostname: str = ""
    binds: list[tuple[str, str]] = field(default_factory=list)
    # -v and Mounts of type bind: [host path, container path, read-only], in the container's root.
    volumes: list[list] = field(default_factory=list)
    mount_sys: bool = False
    # Directories whose mounts (other sandboxes' pins) this mount table drops.
    detach_under: list[str] = field(default_factory=list)
    # Output when no descriptors are passed: the container's log file.
    log_path: str = ""
    exit_file: str = ""
    # -- confinement (none by default) --
    # The shim forks it as PID 1 of a new PID namespace (exec: join_pid's).
    new_pidns: bool = False
    # The container's directory: its root is an overlay with its layer there.
    # "" keeps the host's root (binds then go on the host's paths).
    rootfs: str = ""
    # Paths masked by an empty read-only tmpfs in that root ($ROOT, /run/netns).
    hidden: list[str] = field(default_factory=list)
    privileged: bool = False
    # An image's layers, top first: the overlay's lower layers instead of the host's `/`.
    lowers: list[str] = field(default_factory=list)
    # The host's init binary, bound at /dev/init in an image's root (--init).
    init_binary: str = ""
    # Capability mask (bounding, and effective for root); -1 keeps them all.
    caps: int = -1
    # --user and --group-add, looked up in the container's own files.
    user: str = ""
    group: str = ""
    group_add: list[str] = field(default_factory=list)
    no_new_privs: bool = False
    # Cgroup directories joined before anything else.
    cgroups: list[str] = field(default_factory=list)
    # RLIMIT_NOFILE (soft, hard); [] keeps the shim's.
    nofile: list[int] = field(default_factory=list)
    # A pty for stdin, stdout and stderr, made in the container's own devpts
    # (so its name resolves there, as runc makes it); its master goes to the
    # shim over the console socket.
    tty: bool = False
    # That pty's window size (rows, columns), set before the command runs; [] the kernel's 0x0.
    tty_size: list[int] = field(default_factory=list)

    def to_json(self) -> str:
        # Its fields as they are (vars, not asdict: asdict copies every list and tuple
        # deeply, a third of a start's spawn call); json writes tuples as lists.
        return json.dumps(vars(self))

    @classmethod
    def from_json(cls, text: str) -> SpawnRequest:
        data = json.loads(text)
        data["binds"] = [tuple(b) for b in data.get("binds", [])]
        # An unknown field is refused (TypeError), never dropped: it may be a confinement.
        return cls(**data)


class SpawnFailure(Exception):
    def __init__(self, stage: str, err: int, detail: str) -> None:
        super().__init__(detail)
        self.stage, self.errno, self.detail = stage, err, detail


def _stdio(req: SpawnRequest, fds: list[int]) -> None:
    if fds:
        for target, fd in enumerate(fds[:3]):
            if fd != target:
                os.dup2(fd, target)
        return
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    if req.log_path:
        log = os.open(req.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    else:
        log = os.open("/dev/null", os.O_WRONLY)
    os.dup2(log, 1)
    os.dup2(log, 2)


def _join(pid: int) -> None:
    # Order matters: the mount namespace last, once /proc paths were opened.
    handles = []
    for kind, flag in (
        ("net", netns.CLONE_NEWNET),
        ("uts", netns.CLONE_NEWUTS),
        ("ipc", netns.CLONE_NEWIPC),
        ("mnt", netns.CLONE_NEWNS),
    ):
        handles.append((os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY), flag, kind))
    for fd, flag, kind in handles:
        try:
            netns.setns(fd, flag)
        except OSError as e:
            raise SpawnFailure(
                "setns", e.errno or 0, f"cannot enter the container's {kind} namespace: {e.strerror}"
            ) from e
        os.close(fd)


def _isolate(req: SpawnRequest) -> None:
    if req.netns:
        fd = os.open(req.netns, os.O_RDONLY)
        try:
            netns.setns(fd, netns.CLONE_NEWNET)
        except OSError as e:
            raise SpawnFailure(
                "setns", e.errno or 0, f"cannot enter network namespace {req.netns}: {e.strerror}"
            ) from e
        os.close(fd)
    flags = netns.CLONE_NEWNS | netns.CLONE_NEWIPC | (netns.CLONE_NEWUTS if req.new_uts else 0)
    netns.unshare(flags)
    netns.mount(None, "/", None, netns.MS_REC | netns.MS_PRIVATE)
    if req.rootfs:
        # The host's tree, the other sandboxes' pins with it, leaves this mount
        # table at pivot_root: nothing to detach one by one.
        try:
            rootfs.pivot(
                rootfs.build(
                    req.rootfs,
                    req.hidden,
                    req.binds,
                    req.privileged,
                    req.lowers,
                    req.init_binary,
                    req.volumes,
                )
            )
        except (rootfs.RootfsError, OSError) as e:
            raise SpawnFailure(
                "rootfs", getattr(e, "errno", 0) or 0, f"cannot make the container's root: {e}"
            ) from e
    else:
        _host_root(req)
    if req.new_uts and req.hostname:
        netns.sethostname(req.hostname)


def _host_root(req: SpawnRequest) -> None:
    """The unconfined way (a request without rootfs): the host's tree, files bound over it."""
    for directory in req.detach_under:
        # The pin directory is a mount of its own (netns.own_mount): one lazy
        # unmount drops every pin, whatever their number. Where it is not (a
        # $ROOT no daemon has converted yet), each pin goes by itself.
        with contextlib.suppress(OSError):
            netns.umount(directory, netns.MNT_DETACH)
        for mountpoint in netns.mounted_under(Path(directory)):
            with contextlib.suppress(OSError):
                netns.umount(str(mountpoint), netns.MNT_DETACH)
    for source, target in req.binds:
        try:
            netns.mount(source, target, None, netns.MS_BIND)
        except OSError as e:
            raise SpawnFailure(
                "mount", e.errno or 0, f"cannot bind {source} on {target}: {e.strerror}"
            ) from e
    if req.mount_sys:
        with contextlib.suppress(OSError):
            netns.umount("/sys", netns.MNT_DETACH)
        try:
            netns.mount(
                "sysfs", "/sys", "sysfs", netns.MS_RDONLY | netns.MS_NOSUID | netns.MS_NODEV | netns.MS_NOEXEC
            )
        except OSError as e:
            raise SpawnFailure("mount", e.errno or 0, f"cannot mount /sys: {e.strerror}") from e


def _console(console: int, size: list[int]) -> None:
    """A pty in the container's /dev/pts as stdin, stdout and stderr; its master to the shim.

    Its window size is set here, before the exec: the command's first look at it
    (`stty size`) sees it, which a resize from the shim after the start may not beat.
    """
    try:
        master, slave = os.openpty()
    except OSError as e:
        raise SpawnFailure("tty", e.errno or 0, f"cannot make the container's terminal: {e.strerror}") from e
    try:
        if size:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
    except OSError as e:
        os.close(master)
        raise SpawnFailure("tty", e.errno or 0, f"cannot size the container's terminal: {e.strerror}") from e
    try:
        socket.socket(fileno=os.dup(console)).sendmsg(
            [b"pty"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [master]))]
        )
    finally:
        os.close(master)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    if slave > 2:
        os.close(slave)


def _limit_files(req: SpawnRequest) -> None:
    """The container's RLIMIT_NOFILE. Set once the child has opened what it reads (its
    /etc/passwd, /proc/self/status): until the exec closes them, it holds the shim's descriptors, a few per
    running container, and under a limit of 1,024 the 254th container found no number
    free to open a file with (EMFILE)."""
    if req.nofile:
        soft, hard = req.nofile
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        except (OSError, ValueError):
            # Raising the hard limit needs CAP_SYS_RESOURCE, which a host may not give.
            _, held = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, held), held))


def _become_user(req: SpawnRequest) -> dict[str, str]:
    """Limits, user, groups and capabilities; the environment's HOME for that user."""
    if req.caps < 0 and not req.user and not req.group_add and not req.no_new_privs:
        _limit_files(req)
        return {}
    try:
        who = users.resolve("/", req.user, req.group, tuple(req.group_add))
    except users.UnknownUser as e:
        raise SpawnFailure("user", errno.ENOENT, str(e)) from e
    mask = caps.bounding_set() if req.caps < 0 else req.caps & caps.bounding_set()
    last = caps.last_cap()
    _limit_files(req)  # after every file is read, before the capabilities go (raising needs one)
    try:
        caps.confine(mask, who.uid, who.gid, who.groups, req.no_new_privs, last)
    except OSError as e:
        raise SpawnFailure(
            "caps", e.errno or 0, f"cannot set the container's user and capabilities: {e}"
        ) from e
    # runc's rule: HOME from the user's entry when the environment names none.
    return {"HOME": who.home}


def run_child(req: SpawnRequest, fds: list[int], error_fd: int, console: int = -1) -> None:
    """Never returns: execs the command or reports why not on error_fd and exits.

    `fds` are its stdin, stdout and stderr; with a tty, `console` is where
    the pty's master goes (made once the container's /dev is there).
    """
    try:
        _stdio(req, fds)
        try:
            cgroups.join(req.cgroups)
        except OSError as e:
            raise SpawnFailure(
                "cgroup", e.errno or 0, f"cannot join the container's cgroup: {e.strerror}"
            ) from e
        if req.join_pid:
            _join(req.join_pid)
        else:
            _isolate(req)
        if req.tty:
            _console(console, req.tty_size)
        home = _become_user(req)
        os.setsid()
        if req.tty:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        cwd = req.cwd or "/"
        try:
            os.chdir(cwd)
        except OSError as e:
            raise SpawnFailure(
                "chdir", e.errno or 0, f"cannot change to working directory {cwd}: {e.strerror}"
            ) from e
        env = dict(item.split("=", 1) for item in req.env if "=" in item)
        for key, value in home.items():
            env.setdefault(key, value)
        try:
            os.execvpe(req.argv[0], req.argv, env)
        except OSError as e:
            if e.errno == errno.ENOENT:
                if "/" in req.argv[0]:
                    detail = f'exec: "{req.argv[0]}": no such file or directory'
                else:
                    detail = f'exec: "{req.argv[0]}": executable file not found in $PATH'
            else:
                detail = f'exec: "{req.argv[0]}": {e.strerror.lower() if e.strerror else e}'
            raise SpawnFailure("exec", e.errno or 0, detail) from e
    except SpawnFailure as f:
        report = {"stage": f.stage, "errno": f.errno, "error": f.detail}
    except BaseException as e:  # anything else must still end this child
        report = {
            "stage": "setup",
            "errno": getattr(e, "errno", 0) or 0,
            "error": f"container set-up failed: {e}",
        }
    try:
        os.write(error_fd, json.dumps(report).encode())
    finally:
        os._exit(127 if report["errno"] == errno.ENOENT and report["stage"] == "exec" else 126)

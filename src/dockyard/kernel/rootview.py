"""A container's files seen from inside its root: `docker cp`, `export` and the stat behind them.

Run as a process of its own (`python -m dockyard.kernel.rootview SPEC OP
[PATH]`), never in the daemon: it changes its mount namespace and its root,
which a threaded process cannot do for one thread. SPEC (JSON) says which
root: `{"pid": N}` enters the mount namespace of a running container's
process (its mounts, /etc/hosts and the rest, as the container sees them);
`{"view": DIR, "lowers": [...], "upper": U, "work": W}` mounts the layers
of a stopped container at DIR in a mount namespace of its own (read-only
with the container's layer as the top lower layer, or writable through it
when `upper` and `work` are given). Then it chroots there: every path and
every symbolic link resolves inside the container's root, so no name in it
can lead to the host's files.

OPs: `stat PATH` (one JSON line), `get PATH` (one JSON stat line, then a
tar of PATH named by its base name), `put PATH [--owner-from-archive]`
(a tar read from stdin extracted into the directory PATH), `export` (a tar
of the whole root). Exit 2: no such path; 3: refused (the message says
why); a one-line message on stderr.
"""

from __future__ import annotations

import grp  # noqa: F401  (tarfile's owner names: imported before the chroot)
import json
import os
import pwd  # noqa: F401
import stat
import sys
import tarfile
from datetime import UTC, datetime
from typing import IO

from dockyard.kernel import netns
from dockyard.kernel.rootfs import overlay_path

NOT_FOUND, REFUSED = 2, 3
# Go's os.FileMode type bits, as the docker CLI reads a path's stat.
GO_MODE = (
    (stat.S_IFDIR, 1 << 31),
    (stat.S_IFLNK, 1 << 27),
    (stat.S_IFBLK, 1 << 26),
    (stat.S_IFIFO, 1 << 25),
    (stat.S_IFSOCK, 1 << 24),
    (stat.S_IFCHR, (1 << 26) | (1 << 21)),
)


class Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def go_mode(mode: int) -> int:
    out = mode & 0o777
    kind = stat.S_IFMT(mode)
    for unix, go in GO_MODE:
        if kind == unix:
            out |= go
    if mode & stat.S_ISUID:
        out |= 1 << 23
    if mode & stat.S_ISGID:
        out |= 1 << 22
    if mode & stat.S_ISVTX:
        out |= 1 << 20
    return out


def path_stat(path: str) -> dict[str, object]:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise Refused(NOT_FOUND, f"Could not find the file {path} in container") from None
    except NotADirectoryError:
        raise Refused(NOT_FOUND, f"Could not find the file {path} in container") from None
    mtime = datetime.fromtimestamp(st.st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "name": os.path.basename(path.rstrip("/")) or "/",
        "size": st.st_size,
        "mode": go_mode(st.st_mode),
        "mtime": mtime,
        "linkTarget": os.readlink(path) if stat.S_ISLNK(st.st_mode) else "",
    }


def enter(spec: dict[str, object]) -> None:
    """Into the container's root (see the module's docstring); cwd is its `/`."""
    pid = spec.get("pid")
    if pid:
        fd = os.open(f"/proc/{int(str(pid))}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        try:
            netns.setns(fd, netns.CLONE_NEWNS)
        finally:
            os.close(fd)
        os.chdir("/")
        return
    view = str(spec["view"])
    lowers = [str(p) for p in spec["lowers"]]  # type: ignore[attr-defined]
    netns.unshare(netns.CLONE_NEWNS)
    netns.mount(None, "/", None, netns.MS_REC | netns.MS_PRIVATE)
    upper, work = spec.get("upper"), spec.get("work")
    data = "lowerdir=" + ":".join(overlay_path(p) for p in lowers)
    if upper and work:
        data += f",upperdir={overlay_path(str(upper))},workdir={overlay_path(str(work))}"
    netns.mount("overlay", view, "overlay", netns.MS_NODEV | (0 if upper else netns.MS_RDONLY), data)
    os.chroot(view)
    os.chdir("/")


def _owned_by_root(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    # tarfile's own checks (no absolute name, nothing outside the directory), then Docker's default owner.
    tarfile.tar_filter(member, dest)
    return member.replace(uid=0, gid=0, uname="root", gname="root", deep=False)


def _checked(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    tarfile.tar_filter(member, dest)
    return member


def put(path: str, source: IO[bytes], owner_from_archive: bool) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise Refused(NOT_FOUND, f"Could not find the file {path} in container") from None
    if not stat.S_ISDIR(st.st_mode):
        raise Refused(REFUSED, f"extraction point is not a directory: {path}")
    with tarfile.open(fileobj=source, mode="r|*") as archive:
        try:
            archive.extractall(path, filter=_checked if owner_from_archive else _owned_by_root)
        except tarfile.FilterError as e:
            raise Refused(REFUSED, f"refused archive entry: {e}") from None


def get(path: str, out: IO[bytes]) -> None:
    info = path_stat(path)
    out.write(json.dumps(info).encode() + b"\n")
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as archive:
        archive.add(path, arcname=str(info["name"]), recursive=True)


def export(out: IO[bytes]) -> None:
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as archive:
        for entry in sorted(os.listdir("/")):
            archive.add("/" + entry, arcname=entry, recursive=True)


def main(argv: list[str]) -> int:
    spec, op, args = json.loads(argv[0]), argv[1], argv[2:]
    out = sys.stdout.buffer
    try:
        enter(spec)
        if op == "stat":
            out.write(json.dumps(path_stat(args[0])).encode() + b"\n")
        elif op == "get":
            get(args[0], out)
        elif op == "put":
            put(args[0], sys.stdin.buffer, "--owner-from-archive" in args[1:])
        elif op == "export":
            export(out)
        else:
            raise Refused(REFUSED, f"unknown operation {op}")
    except Refused as e:
        sys.stderr.write(f"{e}\n")
        return e.code
    except (OSError, tarfile.TarError) as e:
        sys.stderr.write(f"{e}\n")
        return 1
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

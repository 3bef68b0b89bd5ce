"""Files under $ROOT, written and read without following links.

Whatever dockyard writes below its root (a container's hosts, hostname and
resolv.conf, exit files, pid files) goes through here. Each component below
the root is opened with O_NOFOLLOW relative to its parent's descriptor, so
a symbolic link planted under $ROOT (by anything that can write there: a
container that sees the host's file system, a confused tool) is never
followed out of it. The root itself is the administrator's choice and may
be a link.

A whole file is written atomically: a temporary file in the same directory
(by descriptor), then renamed over the name. The rename replaces whatever
the name was, a link included, never the link's target. A file that is
bind-mounted into a running container (resolv.conf) must be rewritten in
place instead, or the container would keep the old inode; that is done
only when the name is a regular file with a single link (not a symlink, a
FIFO or a device, nor a hard link to a file elsewhere). Anything else is
replaced, and the caller is told.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import stat
from pathlib import Path

from dockyard import digests
from dockyard.errors import KernelError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK and O_NOCTTY: opening a FIFO must not block, nor a tty become ours.
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC


class Rewrite(enum.Enum):
    """What rewrite() did."""

    MISSING = "missing"  # no such file (or directory): nothing written
    UNCHANGED = "unchanged"  # it already said that
    WRITTEN = "written"  # rewritten in place, same inode
    REPLACED = "replaced"  # it was not a file of ours: a new regular file took its name


def _parts(root: Path, path: Path) -> tuple[str, ...]:
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        raise KernelError(f"refusing to write {path}: it is not under dockyard's root {root}") from None
    if not parts or any(p in ("..", ".") for p in parts):
        raise KernelError(f"refusing to write {path}: not a file name under {root}")
    return parts


def _fail(action: str, path: Path, e: OSError) -> KernelError:
    if e.errno in (errno.ELOOP, errno.ENOTDIR):
        return KernelError(
            f"cannot {action} {path}: a component of it is a symbolic link or not a directory "
            "(dockyard never follows links under its root)"
        )
    return KernelError(f"cannot {action} {path}: {e.strerror or e}")


def open_dir(root: Path, path: Path, create: bool = False, mode: int = 0o755) -> int:
    """A descriptor of directory `path` under root, no component below root a link.

    FileNotFoundError when a component is missing (and not created).
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in path.relative_to(root).parts if path != root else ():
            if part in ("..", "."):
                raise KernelError(f"refusing to use {path}: not a directory under {root}")
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                # Made meanwhile by another thread: opened below, still without following.
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, mode, dir_fd=fd)
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _replace_at(dir_fd: int, name: str, data: bytes, mode: int, sync: bool) -> None:
    tmp = f".{name}.{digests.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FILE_FLAGS, mode, dir_fd=dir_fd)
    try:
        try:
            _write_all(fd, data)
            os.fchmod(fd, mode)  # not the umask's
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):  # the original error is the one to tell
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def write(
    root: Path, path: Path, data: bytes | str, mode: int = 0o600, make_dirs: bool = False, sync: bool = False
) -> None:
    """Write `path` (under root) whole and atomically; KernelError when it cannot be."""
    body = data.encode() if isinstance(data, str) else data
    parts = _parts(root, path)
    try:
        dir_fd = open_dir(root, root.joinpath(*parts[:-1]), create=make_dirs)
        try:
            _replace_at(dir_fd, parts[-1], body, mode, sync)
        finally:
            os.close(dir_fd)
    except OSError as e:
        raise _fail("write", path, e) from None


def rewrite(root: Path, path: Path, data: bytes | str, mode: int = 0o644) -> Rewrite:
    """Rewrite an existing file in place (bind mounts keep seeing it), if it is ours.

    Ours: a regular file with one link. Anything else under that name is
    replaced by a new regular file (the running container's mount, if any,
    keeps what it had). Nothing is written when the file does not exist.
    """
    body = data.encode() if isinstance(data, str) else data
    parts = _parts(root, path)
    name = parts[-1]
    try:
        dir_fd = open_dir(root, root.joinpath(*parts[:-1]))
    except FileNotFoundError:
        return Rewrite.MISSING
    except OSError as e:
        raise _fail("rewrite", path, e) from None
    try:
        try:
            before = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return Rewrite.MISSING
        if _ours(before):
            fd = os.open(name, os.O_RDWR | _FILE_FLAGS, dir_fd=dir_fd)
            try:
                now = os.fstat(fd)
                # The same inode as looked at, still ours: not swapped in between.
                if _ours(now) and (now.st_dev, now.st_ino) == (before.st_dev, before.st_ino):
                    if _read_all(fd) == body:
                        return Rewrite.UNCHANGED
                    os.ftruncate(fd, 0)
                    os.lseek(fd, 0, os.SEEK_SET)
                    _write_all(fd, body)
                    return Rewrite.WRITTEN
            finally:
                os.close(fd)
        _replace_at(dir_fd, name, body, mode, sync=False)
        return Rewrite.REPLACED
    except OSError as e:
        raise _fail("rewrite", path, e) from None
    finally:
        os.close(dir_fd)


def _ours(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read(root: Path, path: Path) -> bytes | None:
    """The content of a regular file under root, never through a link; None when there is none."""
    parts = _parts(root, path)
    try:
        dir_fd = open_dir(root, root.joinpath(*parts[:-1]))
    except OSError:
        return None
    try:
        fd = os.open(parts[-1], os.O_RDONLY | _FILE_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    finally:
        os.close(dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return _read_all(fd)
    finally:
        os.close(fd)


def is_regular(root: Path, path: Path) -> bool:
    """Whether path is a regular file reached with no link below root (what a bind mount may use)."""
    parts = _parts(root, path)
    try:
        dir_fd = open_dir(root, root.joinpath(*parts[:-1]))
    except OSError:
        return False
    try:
        return stat.S_ISREG(os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False
    finally:
        os.close(dir_fd)


def open_private(path: Path, mode: int = 0o600, append: bool = False) -> int:
    """Open (or create) a file directly under $ROOT for writing, never through a link, with `mode`.

    For the files kept open: the daemon's pid lock, the log. An existing
    file gets `mode` too (a root made by an older dockyard, or by hand).
    """
    flags = os.O_CREAT | _FILE_FLAGS | (os.O_WRONLY | os.O_APPEND if append else os.O_RDWR)
    try:
        fd = os.open(path, flags, mode)
    except OSError as e:
        raise _fail("open", path, e) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise KernelError(f"cannot open {path}: it is not a regular file")
        os.fchmod(fd, mode)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def restrict(path: Path, mode: int) -> None:
    """Give an existing regular file `mode`, without following a link; nothing when it is absent."""
    try:
        fd = os.open(path, os.O_RDONLY | _FILE_FLAGS)
    except FileNotFoundError:
        return
    except OSError as e:
        raise _fail("change the mode of", path, e) from None
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fchmod(fd, mode)
    finally:
        os.close(fd)

"""A layer's tar, extracted into a directory of its own, in overlayfs's form.

Read as a stream (gzip, zstd or plain, told by its first bytes), so the
diff id (the sha256 of the uncompressed tar) is computed while the files
are written. Safe by construction rather than by checking names after the
fact: every entry is created relative to a descriptor of its parent
directory, opened component by component with O_NOFOLLOW from the layer's
own directory, so neither `..`, an absolute name nor a symbolic link made
by an earlier entry can lead a write outside; a component that is a link
is refused. Hard links only name files of the same layer. Device nodes
and FIFOs are made (images hold them; the container's mounts are nodev).
Ownership, modes (set-id bits included), times and the security.* and
user.* extended attributes of PAX headers are kept.

Whiteouts become what overlayfs reads: `.wh.NAME` a 0/0 character device
NAME, `.wh..wh..opq` the `trusted.overlay.opaque=y` attribute on its
directory. Other `.wh..wh.` entries (AUFS's bookkeeping) are skipped, as
Docker does.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from dockyard import digests
from dockyard.errors import InvalidArgument

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
META_PREFIX = ".wh..wh."
OPAQUE_XATTR = "trusted.overlay.opaque"
XATTR_PAX = "SCHILY.xattr."
# Extended attributes a layer may carry; trusted.* (overlayfs's own) and the rest are dropped.
KEPT_XATTRS = ("security.", "user.")
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK = 1024 * 1024


class LayerError(InvalidArgument):
    """A layer that cannot be extracted as it is (an unsafe name, a broken archive)."""


@dataclass
class Extracted:
    diff_id: str  # sha256:<hex> of the uncompressed tar
    size: int  # bytes of the files written (hard links counted once)


class _Tee:
    """A reader that hashes (and maybe copies) what passes through it."""

    def __init__(self, source: BinaryIO, copy: BinaryIO | None, progress: Callable[[int], None] | None):
        self.source = source
        self.copy = copy
        self.hash = digests.content_sha256()
        self.count = 0
        self.progress = progress

    def read(self, n: int = -1) -> bytes:
        data = self.source.read(n)
        if data:
            self.hash.update(data)
            self.count += len(data)
            if self.copy is not None:
                self.copy.write(data)
            if self.progress is not None:
                self.progress(self.count)
        return data

    def drain(self) -> None:
        """Read to the end: tar's zero blocks and padding count toward the diff id."""
        while self.read(CHUNK):
            pass


class _Peek:
    """A stream with its first bytes read ahead (to tell the compression)."""

    def __init__(self, source: BinaryIO) -> None:
        self.source = source
        self.head = source.read(8)

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n < 0:
                data, self.head = self.head + self.source.read(), b""
                return data
            data, self.head = self.head[:n], self.head[n:]
            if len(data) < n:
                data += self.source.read(n - len(data))
            return data
        return self.source.read(n)


class _Counted:
    """The compressed side's count, for progress through a decompressor."""

    def __init__(self, source: BinaryIO, progress: Callable[[int], None] | None) -> None:
        self.source = source
        self.count = 0
        self.progress = progress

    def read(self, n: int = -1) -> bytes:
        data = self.source.read(n)
        self.count += len(data)
        if self.progress is not None and data:
            self.progress(self.count)
        return data


def decompressed(source: BinaryIO) -> BinaryIO:
    """The tar inside `source`, whichever of plain, gzip or zstd it is."""
    peek = _Peek(source)
    # _Peek has only read(): the stubs ask gzip's fileobj for seek() too, which reading never
    # calls, and zstandard for a whole IO[bytes], of which it calls read() alone.
    if peek.head.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=peek, mode="rb")  # type: ignore[call-overload]
    if peek.head.startswith(ZSTD_MAGIC):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(peek, read_across_frames=True)  # type: ignore[arg-type]
    return peek  # type: ignore[return-value]


def _parts(name: str) -> list[str]:
    """A member's name as safe components; LayerError for one that could leave the layer."""
    if "\0" in name:
        raise LayerError(f"layer entry {name!r} holds NUL")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") and parts:
        raise LayerError(f"layer entry {name!r} is an absolute path")
    if ".." in parts:
        raise LayerError(f"layer entry {name!r} leads out of the layer (..)")
    return parts


class _Tree:
    """The layer's directory, and descriptors of its subdirectories opened without following links."""

    def __init__(self, root: Path) -> None:
        self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        self.fds: dict[tuple[str, ...], int] = {(): self.root_fd}
        # Directories' modes, owners and times, set once their content is written.
        self.dir_attrs: dict[tuple[str, ...], tarfile.TarInfo] = {}

    def close(self) -> None:
        for fd in self.fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = {}

    def dir(self, parts: tuple[str, ...]) -> int:
        """The descriptor of directory `parts`, made (0755, root's) when missing."""
        fd = self.fds.get(parts)
        if fd is not None:
            return fd
        parent = self.dir(parts[:-1])
        name = parts[-1]
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        except FileNotFoundError:
            os.mkdir(name, 0o755, dir_fd=parent)
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise LayerError(
                    f"layer entry under {'/'.join(parts)!r} passes through a link or a file, "
                    "which dockyard does not follow"
                ) from None
            raise
        self.fds[parts] = fd
        return fd

    def forget(self, parts: tuple[str, ...]) -> None:
        """Descriptors of `parts` and below: it is being replaced."""
        for key in [k for k in self.fds if k[: len(parts)] == parts and k]:
            with contextlib.suppress(OSError):
                os.close(self.fds.pop(key))
        for key in [k for k in self.dir_attrs if k[: len(parts)] == parts]:
            del self.dir_attrs[key]

    def clear(self, parent: int, name: str, parts: tuple[str, ...], keep_dir: bool) -> None:
        """Make room for a new entry `name`: a later entry of a tar replaces an earlier one."""
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return
            self.forget(parts)
            _remove_dir_at(parent, name)
        else:
            os.unlink(name, dir_fd=parent)


def _remove_dir_at(parent: int, name: str) -> None:
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    try:
        for entry in os.listdir(fd):
            st = os.stat(entry, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                _remove_dir_at(fd, entry)
            else:
                os.unlink(entry, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)


def _xattrs(member: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    out = []
    for key, value in member.pax_headers.items():
        if key.startswith(XATTR_PAX):
            name = key[len(XATTR_PAX) :]
            if name.startswith(KEPT_XATTRS):
                # tarfile decodes PAX values as UTF-8 with surrogateescape: back to the bytes.
                out.append((name, value.encode("utf-8", "surrogateescape")))
    return out


def _set_attrs(fd_or_name: int | str, member: tarfile.TarInfo, dir_fd: int | None, is_link: bool) -> None:
    """Owner, then mode (chown clears set-id bits), then extended attributes, then times."""
    if isinstance(fd_or_name, int):
        os.fchown(fd_or_name, member.uid, member.gid)
        os.fchmod(fd_or_name, stat.S_IMODE(member.mode))
        for name, value in _xattrs(member):
            os.setxattr(fd_or_name, name, value)
        os.utime(fd_or_name, ns=(int(member.mtime * 1e9),) * 2)
        return
    os.chown(fd_or_name, member.uid, member.gid, dir_fd=dir_fd, follow_symlinks=False)
    if not is_link:
        os.chmod(fd_or_name, stat.S_IMODE(member.mode), dir_fd=dir_fd)
    os.utime(fd_or_name, ns=(int(member.mtime * 1e9),) * 2, dir_fd=dir_fd, follow_symlinks=False)


def _write_file(tree: _Tree, parent: int, name: str, member: tarfile.TarInfo, data: IO[bytes] | None) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(name, flags, 0o600, dir_fd=parent)
    written = 0
    try:
        if data is not None:
            while chunk := data.read(CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
                written += len(chunk)
        if written != member.size:
            raise LayerError(f"layer entry {member.name!r} is cut short")
        _set_attrs(fd, member, None, False)
    finally:
        os.close(fd)
    return written


def extract(
    source: BinaryIO,
    target: Path,
    keep_tar: BinaryIO | None = None,
    progress: Callable[[int], None] | None = None,
) -> Extracted:
    """Extract the layer in `source` (compressed or not) into the empty directory `target`.

    `keep_tar`, when given, gets a copy of the uncompressed tar (an
    imported tarball is kept as its own blob). `progress(n)` is told the
    bytes read of `source`.
    """
    counted = _Counted(source, progress)
    tee = _Tee(decompressed(counted), keep_tar, None)  # type: ignore[arg-type]
    tree = _Tree(target)
    size = 0
    try:
        try:
            archive = tarfile.open(fileobj=tee, mode="r|", errorlevel=2)  # type: ignore[call-overload]  # noqa: SIM115
        except tarfile.ReadError as e:
            if tee.count == 0:  # an empty layer: no tar at all (Docker accepts it)
                archive = None
            else:
                raise LayerError(f"the layer is not a tar archive: {e}") from None
        except _broken() as e:
            raise LayerError(f"the layer's archive is broken: {e}") from None
        if archive is not None:
            try:
                for member in archive:
                    size += _extract_member(tree, archive, member)
            except LayerError:
                raise
            except OSError as e:
                if e.errno is None:  # gzip's BadGzipFile
                    raise LayerError(f"the layer's archive is broken: {e}") from None
                raise LayerError(f"cannot extract the layer: {e}") from e
            except _broken() as e:
                raise LayerError(f"the layer's archive is broken: {e}") from None
        try:
            tee.drain()
        except _broken() as e:
            raise LayerError(f"the layer's archive is broken: {e}") from None
        for parts in sorted(tree.dir_attrs, key=len, reverse=True):
            member = tree.dir_attrs[parts]
            fd = tree.dir(parts)
            _set_attrs(fd, member, None, False)
    finally:
        tree.close()
    return Extracted("sha256:" + tee.hash.hexdigest(), size)


def _broken() -> tuple[type[Exception], ...]:
    """What the decompressors and tarfile raise for a broken stream."""
    import zlib

    errors: tuple[type[Exception], ...] = (tarfile.TarError, EOFError, zlib.error, ValueError)
    with contextlib.suppress(ImportError):
        import zstandard

        errors += (zstandard.ZstdError,)
    return errors


def _extract_member(tree: _Tree, archive: tarfile.TarFile, member: tarfile.TarInfo) -> int:
    parts = tuple(_parts(member.name))
    if not parts:
        if member.isdir():
            tree.dir_attrs[()] = member  # the layer's own root: "./"
        return 0
    parent_parts, name = parts[:-1], parts[-1]
    parent = tree.dir(parent_parts)
    if name == OPAQUE:
        os.setxattr(parent, OPAQUE_XATTR, b"y")
        return 0
    if name.startswith(META_PREFIX):
        return 0
    if name.startswith(WHITEOUT):
        hidden = name[len(WHITEOUT) :]
        if hidden in ("", ".", ".."):
            raise LayerError(f"layer entry {member.name!r} is a whiteout of nothing")
        tree.clear(parent, hidden, (*parent_parts, hidden), keep_dir=False)
        os.mknod(hidden, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent)
        return 0
    if member.isdir():
        tree.clear(parent, name, parts, keep_dir=True)
        tree.dir(parts)
        tree.dir_attrs[parts] = member
        return 0
    tree.clear(parent, name, parts, keep_dir=False)
    if member.isreg():
        return _write_file(tree, parent, name, member, archive.extractfile(member))
    if member.issym():
        os.symlink(member.linkname, name, dir_fd=parent)
        _set_attrs(name, member, parent, True)
        return 0
    if member.islnk():
        target = tuple(_parts(member.linkname))
        if not target:
            raise LayerError(f"hard link {member.name!r} names no file")
        source_parent = tree.dir(target[:-1])
        try:
            st = os.stat(target[-1], dir_fd=source_parent, follow_symlinks=False)
        except FileNotFoundError:
            raise LayerError(
                f"hard link {member.name!r} names {member.linkname!r}, which is not in this layer"
            ) from None
        if stat.S_ISDIR(st.st_mode):
            raise LayerError(f"hard link {member.name!r} names a directory")
        os.link(target[-1], name, src_dir_fd=source_parent, dst_dir_fd=parent, follow_symlinks=False)
        return 0
    if member.ischr() or member.isblk() or member.isfifo():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK if member.isblk() else stat.S_IFIFO
        os.mknod(name, kind | 0o600, os.makedev(member.devmajor, member.devminor), dir_fd=parent)
        _set_attrs(name, member, parent, False)
        return 0
    raise LayerError(f"layer entry {member.name!r} is of a type dockyard does not extract ({member.type!r})")

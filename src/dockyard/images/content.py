"""The content store: blobs by digest and layer directories by diff id, written crash-safely.

Everything is first written under tmp/ (a file, or a directory) and renamed
into place only once whole and verified; a rename is atomic, so a name
under blobs/ or layers/ is always complete. What a crash leaves is under
tmp/ and goes with the next gc (`remove_partial`). Which blobs and layers
are kept is the records' decision (engine/images), not this module's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from dockyard import digests
from dockyard.errors import DockyardError, InvalidArgument
from dockyard.policy.references import DIGEST_RE

CHUNK = 1024 * 1024


class DigestMismatch(InvalidArgument):
    """What came is not what its digest promised: nothing of it is kept."""


class ContentStore:
    def __init__(self, root: Path) -> None:
        self.dir = root / "images"
        self.blobs = self.dir / "blobs" / "sha256"
        self.layers = self.dir / "layers"
        self.tmp = self.dir / "tmp"

    def ensure(self) -> None:
        for d in (self.blobs, self.layers, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)

    # -- names ---------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        if not DIGEST_RE.match(digest):
            raise InvalidArgument(f"invalid digest {digest!r}")
        return self.blobs / digest.removeprefix("sha256:")

    def layer_path(self, diff_id: str) -> Path:
        if not DIGEST_RE.match(diff_id):
            raise InvalidArgument(f"invalid diff id {diff_id!r}")
        return self.layers / diff_id.removeprefix("sha256:")

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def has_layer(self, diff_id: str) -> bool:
        return self.layer_path(diff_id).is_dir()

    def blob_size(self, digest: str) -> int:
        return self.blob_path(digest).stat().st_size

    def open_blob(self, digest: str) -> BinaryIO:
        try:
            return self.blob_path(digest).open("rb")
        except FileNotFoundError:
            raise DockyardError(
                f"blob {digest} is missing from {self.blobs}: remove the image and fetch it again"
            ) from None

    def blobs_present(self) -> set[str]:
        if not self.blobs.is_dir():
            return set()
        return {"sha256:" + p.name for p in self.blobs.iterdir() if DIGEST_RE.match("sha256:" + p.name)}

    def layers_present(self) -> set[str]:
        if not self.layers.is_dir():
            return set()
        return {"sha256:" + p.name for p in self.layers.iterdir() if DIGEST_RE.match("sha256:" + p.name)}

    # -- writing ---------------------------------------------------------------

    def temp_name(self, what: str) -> Path:
        self.ensure()
        return self.tmp / f"{what}-{digests.token_hex(8)}"

    @contextlib.contextmanager
    def temp_dir(self, what: str) -> Iterator[Path]:
        """A directory under tmp/, removed on the way out unless renamed away."""
        path = self.temp_name(what)
        path.mkdir(mode=0o700)
        try:
            yield path
        finally:
            if path.exists():
                remove_tree(path)

    def add_blob_file(self, path: Path, expected: str | None = None) -> tuple[str, int]:
        """Hash a file under tmp/ and move it into place as its blob; (digest, size).

        With `expected`, a file whose sha256 differs is removed and refused.
        """
        h = digests.content_sha256()
        size = 0
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
                size += len(chunk)
        digest = "sha256:" + h.hexdigest()
        if expected is not None and digest != expected:
            path.unlink(missing_ok=True)
            raise DigestMismatch(f"blob {expected} has the digest {digest}: refused")
        self.place_blob(path, digest)
        return digest, size

    def place_blob(self, path: Path, digest: str) -> None:
        """Rename a verified file under tmp/ into place (a blob already there is kept)."""
        target = self.blob_path(digest)
        if target.exists():
            path.unlink(missing_ok=True)
            return
        os.chmod(path, 0o600)
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        os.rename(path, target)

    def write_blob(self, source: BinaryIO, expected: str | None = None, progress=None) -> tuple[str, int]:  # type: ignore[no-untyped-def]
        """Copy a stream into a blob, hashing it on the way; (digest, size).

        `progress(bytes_so_far)` is called as it comes. With `expected`, a
        stream whose sha256 differs leaves nothing behind and is refused.
        """
        tmp = self.temp_name("blob")
        h = digests.content_sha256()
        size = 0
        try:
            with open(tmp, "xb") as out:
                while chunk := source.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                    if progress is not None:
                        progress(size)
                out.flush()
                os.fsync(out.fileno())
            digest = "sha256:" + h.hexdigest()
            if expected is not None and digest != expected:
                raise DigestMismatch(f"blob {expected} has the digest {digest}: refused")
            target = self.blob_path(digest)
            if target.exists():
                tmp.unlink()
            else:
                os.rename(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return digest, size

    def place_layer(self, directory: Path, diff_id: str) -> bool:
        """Rename an extracted directory into place; False (and it removed) when one is already there."""
        target = self.layer_path(diff_id)
        if target.exists():
            remove_tree(directory)
            return False
        os.rename(directory, target)
        return True

    # -- removing ----------------------------------------------------------------

    def remove_blob(self, digest: str) -> None:
        self.blob_path(digest).unlink(missing_ok=True)

    def remove_layer(self, diff_id: str) -> None:
        """Renamed under tmp/ first, so a crash never leaves half a layer under its name."""
        path = self.layer_path(diff_id)
        if not path.exists():
            return
        doomed = self.temp_name("removing")
        os.rename(path, doomed)
        remove_tree(doomed)

    def remove_partial(self) -> list[str]:
        """What a crash or a failure left under tmp/: every entry (call with writes excluded)."""
        removed = []
        if self.tmp.is_dir():
            for entry in sorted(self.tmp.iterdir()):
                remove_tree(entry)
                removed.append(f"image temp {entry.name}")
        return removed


def remove_tree(path: Path) -> None:
    """Remove a file or a tree that may hold read-only directories, never following a link."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
        return

    def writable(func, name, _exc):  # type: ignore[no-untyped-def]
        parent = os.path.dirname(name)
        with contextlib.suppress(OSError):
            os.chmod(parent, 0o700)
        with contextlib.suppress(OSError):
            func(name)

    # Directories from an image may be 0555: make each writable before emptying it.
    for dirpath, dirnames, _files in os.walk(path, followlinks=False):
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if not os.path.islink(full):
                with contextlib.suppress(OSError):
                    os.chmod(full, 0o700)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
    shutil.rmtree(path, onerror=writable)

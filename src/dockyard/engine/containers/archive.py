"""A container's files: `docker diff`, `docker cp` both ways, `docker export`.

diff reads the container's own layer (the overlay's upper directory) from
here: an entry there is added, or changed when a lower layer has it; a
whiteout is a deletion. cp and export run kernel/rootview.py in a process
of its own, chrooted in the container's root, so that a path or a link
inside the container never names a host file: a running container's root
is entered through its mount namespace (its mounts as it sees them), a
stopped one's layers are mounted in a private mount namespace for the
length of the copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from dockyard.engine.images import Images
from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound
from dockyard.kernel import rootfs
from dockyard.model import Container, ContainerState
from dockyard.settings import Paths
from dockyard.store import Store

CHUNK = 256 * 1024
# Docker's kinds in GET /containers/{id}/changes.
MODIFIED, ADDED, DELETED = 0, 1, 2
# What the engine mounts or makes in every root: not the container's own changes.
ENGINE_PATHS = frozenset(
    {"/proc", "/sys", "/dev", "/dev/init", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"}
)
NOT_FOUND, REFUSED = 2, 3


@dataclass(frozen=True)
class PathStat:
    """A path's stat as the docker CLI reads it (X-Docker-Container-Path-Stat)."""

    raw: dict[str, object]

    @property
    def is_dir(self) -> bool:
        return bool(int(str(self.raw["mode"])) & (1 << 31))


def _whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


class ContainerArchive:
    """diff, cp and export of containers; uses the store, the images and the paths."""

    def __init__(self, store: Store, images: Images, paths: Paths) -> None:
        self.store = store
        self.images = images
        self.paths = paths

    # -- where the files are ----------------------------------------------------------

    def _layer(self, c: Container) -> Path:
        return Path(rootfs.layer_dir(str(self.paths.container_dir(c.id))))

    def _lowers(self, c: Container) -> list[str]:
        if not c.config.image_id:
            return ["/"]
        return [str(p) for p in self.images.layer_dirs(self.images.get(c.config.image_id))]

    def _spec(self, c: Container, writable: bool = False) -> dict[str, object]:
        if c.state is ContainerState.RUNNING and c.pid:
            return {"pid": c.pid}
        if not c.config.image_id:
            raise Conflict(
                f"container {c.name} is not running and has no image (its root is the host's tree): "
                "start it to copy its files"
            )
        layer = self._layer(c)
        upper, work, view = layer / "upper", layer / "work", layer / "view"
        for d in (upper, work, view):
            d.mkdir(parents=True, exist_ok=True)
        if writable:
            return {"view": str(view), "lowers": self._lowers(c), "upper": str(upper), "work": str(work)}
        return {"view": str(view), "lowers": [str(upper), *self._lowers(c)]}

    def _run(self, spec: dict[str, object], *args: str, stdin: int | None = None) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "dockyard.kernel.rootview", json.dumps(spec), *args],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    @staticmethod
    def _failed(code: int, err: bytes, what: str) -> DockyardError:
        message = err.decode(errors="replace").strip() or f"{what} failed"
        if code == NOT_FOUND:
            return NotFound(message)
        if code == REFUSED:
            return InvalidArgument(message)
        return DockyardError(f"{what}: {message}")

    def layout(self, c: Container) -> dict[str, str]:
        """Inspect's GraphDriver.Data: the overlay's layers. A LowerDir of `/` is the host's tree
        (a container made without an image)."""
        layer = self._layer(c)
        return {
            "LowerDir": ":".join(self._lowers(c)),
            "UpperDir": str(layer / "upper"),
            "WorkDir": str(layer / "work"),
            "MergedDir": str(layer / "merged"),
        }

    # -- diff --------------------------------------------------------------------------

    def changes(self, ref: str) -> list[tuple[str, int]]:
        c = self.store.get_container(ref)
        upper = self._layer(c) / "upper"
        lowers = [Path(p) for p in self._lowers(c)]
        out: list[tuple[str, int]] = []
        for path, st in self._walk(upper, ""):
            if path in ENGINE_PATHS:
                continue
            if _whiteout(st):
                out.append((path, DELETED))
            elif any(os.path.lexists(str(lower) + path) for lower in lowers):
                out.append((path, MODIFIED))
            else:
                out.append((path, ADDED))
        return out

    def _walk(self, top: Path, prefix: str) -> Iterator[tuple[str, os.stat_result]]:
        try:
            entries = sorted(os.scandir(top / prefix.lstrip("/")), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            path = f"{prefix}/{entry.name}"
            st = entry.stat(follow_symlinks=False)
            yield path, st
            if stat.S_ISDIR(st.st_mode):
                yield from self._walk(top, path)

    # -- cp ----------------------------------------------------------------------------

    def stat(self, ref: str, path: str) -> PathStat:
        c = self.store.get_container(ref)
        proc = self._run(self._spec(c), "stat", _absolute(path))
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise self._failed(proc.returncode, err, "stat")
        return PathStat(json.loads(out))

    def get(self, ref: str, path: str) -> tuple[PathStat, Callable[[Callable[[bytes], None]], None]]:
        """The path's stat now, and a writer that streams its tar."""
        c = self.store.get_container(ref)
        proc = self._run(self._spec(c), "get", _absolute(path))
        assert proc.stdout is not None
        first = proc.stdout.readline()
        if not first:
            assert proc.stderr is not None
            err = proc.stderr.read()
            raise self._failed(proc.wait(), err, "copy")
        return PathStat(json.loads(first)), _streamed(proc)

    def put(self, ref: str, path: str, body: IO[bytes], owner_from_archive: bool = False) -> None:
        c = self.store.get_container(ref)
        args = ["put", _absolute(path), *(["--owner-from-archive"] if owner_from_archive else [])]
        proc = self._run(self._spec(c, writable=True), *args, stdin=subprocess.PIPE)
        assert proc.stdin is not None
        try:
            while data := body.read(CHUNK):
                proc.stdin.write(data)
        except BrokenPipeError:
            pass  # it stopped reading: its exit says why
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
        assert proc.stderr is not None
        err = proc.stderr.read()
        code = proc.wait()
        if code != 0:
            raise self._failed(code, err, "copy")

    # -- export ------------------------------------------------------------------------

    def export(self, ref: str) -> Callable[[Callable[[bytes], None]], None]:
        c = self.store.get_container(ref)
        if not c.config.image_id:
            raise Conflict(f"container {c.name} has no image: its root is the host's tree, not exported")
        # The layers, never the running root: its /proc, /sys and binds are not its files.
        layer = self._layer(c)
        view = layer / "view"
        view.mkdir(parents=True, exist_ok=True)
        (layer / "upper").mkdir(parents=True, exist_ok=True)
        return _streamed(
            self._run({"view": str(view), "lowers": [str(layer / "upper"), *self._lowers(c)]}, "export")
        )


def _streamed(proc: subprocess.Popen[bytes]) -> Callable[[Callable[[bytes], None]], None]:
    """A writer of what the process prints; the process goes when the answer ends, read or not."""

    def stream(write: Callable[[bytes], None]) -> None:
        assert proc.stdout is not None
        try:
            while data := proc.stdout.read(CHUNK):
                write(data)
        finally:
            proc.kill()
            proc.wait()
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()

    return stream


def _absolute(path: str) -> str:
    if not path:
        raise InvalidArgument("a path in the container is needed")
    return path if path.startswith("/") else "/" + path

"""A container's files over the API: `docker diff`, `docker cp` both ways, `docker export`.

GET /containers/{id}/changes, HEAD|GET|PUT /containers/{id}/archive?path=,
GET /containers/{id}/export: Docker's paths and shapes. A path's stat
travels base64-encoded in the X-Docker-Container-Path-Stat header, as the
docker CLI reads it.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable

from dockyard.daemon.api.http import Request, Response
from dockyard.engine.containers.archive import ContainerArchive
from dockyard.errors import InvalidArgument

STAT_HEADER = "X-Docker-Container-Path-Stat"
Register = Callable[[str, str, Callable[..., Response]], None]
# Query parameters of PUT /archive that are Docker's and honoured or harmless.
PUT_FLAGS = ("path", "noOverwriteDirNonDir", "copyUIDGID")


class ArchiveRoutes:
    def __init__(self, files: ContainerArchive) -> None:
        self.files = files

    def register(self, r: Register) -> None:
        r("GET", r"/containers/(?P<ref>[^/]+)/changes", self.changes)
        r("HEAD", r"/containers/(?P<ref>[^/]+)/archive", self.stat)
        r("GET", r"/containers/(?P<ref>[^/]+)/archive", self.get)
        r("PUT", r"/containers/(?P<ref>[^/]+)/archive", self.put)
        r("GET", r"/containers/(?P<ref>[^/]+)/export", self.export)

    def changes(self, req: Request, ref: str) -> Response:
        return Response(200, [{"Path": path, "Kind": kind} for path, kind in self.files.changes(ref)])

    @staticmethod
    def _path(req: Request) -> str:
        path = req.query.get("path", "")
        if not path:
            raise InvalidArgument("path is required")
        return path

    @staticmethod
    def _header(raw: dict[str, object]) -> dict[str, str]:
        return {STAT_HEADER: base64.b64encode(json.dumps(raw).encode()).decode()}

    def stat(self, req: Request, ref: str) -> Response:
        info = self.files.stat(ref, self._path(req))
        return Response(200, headers=self._header(info.raw))

    def get(self, req: Request, ref: str) -> Response:
        info, stream = self.files.get(ref, self._path(req))
        return Response(200, content_type="application/x-tar", headers=self._header(info.raw), stream=stream)

    def put(self, req: Request, ref: str) -> Response:
        unknown = sorted(set(req.query) - set(PUT_FLAGS))
        if unknown:
            raise InvalidArgument(f"unsupported query parameter for copying into a container: {unknown[0]}")
        body = req.stream if req.stream is not None else io.BytesIO(req.body or b"")
        self.files.put(ref, self._path(req), body, owner_from_archive=req.flag("copyUIDGID"))
        return Response(200)

    def export(self, req: Request, ref: str) -> Response:
        return Response(200, content_type="application/x-tar", stream=self.files.export(ref))

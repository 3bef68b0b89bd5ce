"""The images API, Docker's paths and shapes: images/json, create (pull, import), load, get (save),
tag, history, inspect, rm, prune, and /auth (docker login's check).

Parses and formats; the use cases are engine/images'. `{name}` may hold
slashes (`localhost:5000/x:1`), as in Docker's routes. Pull answers with
Docker's JSON message stream; an error before its first message (a bad
name, a manifest not found, a registry refusing the login) is an HTTP
error, as Docker's answer is when nothing was written yet.

Pull, load, import and save (the registry client, tar and gzip) load with
the first of them, not with the daemon: most daemons never pull.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from dockyard.daemon.api.http import Request, Response
from dockyard.engine.images import Images, familiar
from dockyard.errors import DockyardError, InvalidArgument
from dockyard.model import Image
from dockyard.policy.image_filters import ImageFilter

Json = dict[str, Any]
JSON_STREAM = "application/json"


def epoch(text: str) -> int:
    """RFC 3339 (nanoseconds and offsets included) to seconds since the epoch; 0 when absent."""
    if not text:
        return 0
    head = text[:19]
    try:
        moment = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return 0
    rest = text[19:].lstrip("0123456789.")
    if rest and rest[0] in "+-" and len(rest) >= 6:
        sign = 1 if rest[0] == "+" else -1
        moment = moment.replace(tzinfo=None).replace(tzinfo=UTC)
        return int(moment.timestamp()) - sign * (int(rest[1:3]) * 3600 + int(rest[4:6]) * 60)
    return int(moment.timestamp())


def _lines(messages: list[Json]) -> bytes:
    return b"".join((json.dumps(m) + "\r\n").encode() for m in messages)


class ImageRoutes:
    def __init__(self, images: Images) -> None:
        self.images = images

    def register(self, r: Callable[[str, str, Callable[..., Response]], None]) -> None:
        r("GET", r"/images/json", self.listing)
        r("POST", r"/images/create", self.create)
        r("POST", r"/images/load", self.load)
        r("GET", r"/images/get", self.save)
        r("POST", r"/images/prune", self.prune)
        r("GET", r"/images/search", self.search)
        r("POST", r"/auth", self.auth)
        r("GET", r"/images/(?P<name>.+)/json", self.inspect)
        r("GET", r"/images/(?P<name>.+)/history", self.history)
        r("GET", r"/images/(?P<name>.+)/get", self.save_one)
        r("POST", r"/images/(?P<name>.+)/tag", self.tag)
        r("POST", r"/images/(?P<name>.+)/push", self.push)
        r("DELETE", r"/images/(?P<name>.+)", self.remove)

    # -- shapes ------------------------------------------------------------------------

    def summary(self, image: Image) -> Json:
        view = self.images.view(image)
        return {
            "Id": image.id,
            "ParentId": "",
            "RepoTags": [familiar(t) for t in image.tags],
            "RepoDigests": [familiar(d) for d in image.digests],
            "Created": epoch(view.created),
            "Size": image.size,
            "SharedSize": -1,
            "VirtualSize": image.size,
            "Labels": dict(view.runtime.labels) or None,
            "Containers": len(self.images.users(image)),
        }

    def inspect_shape(self, image: Image) -> Json:
        view = self.images.view(image)
        doc = view.doc
        out: Json = {
            "Id": image.id,
            "RepoTags": [familiar(t) for t in image.tags],
            "RepoDigests": [familiar(d) for d in image.digests],
            "Parent": "",
            "Comment": str(doc.get("comment") or ""),
            "Created": view.created,
            "Container": str(doc.get("container") or ""),
            "ContainerConfig": doc.get("container_config") or {},
            "DockerVersion": str(doc.get("docker_version") or ""),
            "Author": str(doc.get("author") or ""),
            "Config": doc.get("config") or {},
            "Architecture": view.architecture,
            "Os": view.os,
            "Size": image.size,
            "VirtualSize": image.size,
            "GraphDriver": {
                "Name": "overlay",
                "Data": {"LowerDir": ":".join(str(p) for p in self.images.layer_dirs(image))},
            },
            "RootFS": {"Type": "layers", "Layers": list(view.diff_ids)},
            "Metadata": {"LastTagTime": image.last_tagged or "0001-01-01T00:00:00Z"},
        }
        if view.variant:
            out["Variant"] = view.variant
        return out

    # -- reading -------------------------------------------------------------------------

    def listing(self, req: Request) -> Response:
        wanted = ImageFilter.parse(req.query.get("filters"))
        if req.query.get("filter"):  # API < 1.41's name filter
            wanted = ImageFilter(wanted.dangling, (*wanted.references, req.query["filter"]), wanted.labels)
        out = []
        for image in self.images.matching(wanted):
            summary = self.summary(image)
            if wanted.references:
                # Docker lists only the names that matched.
                summary["RepoTags"] = [familiar(t) for t in image.tags if wanted.matches_names((t,), ())]
                summary["RepoDigests"] = [
                    familiar(d) for d in image.digests if wanted.matches_names((), (d,))
                ]
            out.append(summary)
        return Response(200, out)

    def inspect(self, req: Request, name: str) -> Response:
        return Response(200, self.inspect_shape(self.images.get(name)))

    def history(self, req: Request, name: str) -> Response:
        return Response(
            200,
            [
                {
                    "Id": h.id,
                    "Created": epoch(h.created),
                    "CreatedBy": h.created_by,
                    "Tags": list(h.tags) or None,
                    "Size": h.size,
                    "Comment": h.comment,
                }
                for h in self.images.history(name)
            ],
        )

    def search(self, req: Request) -> Response:
        raise InvalidArgument("image search is not supported: dockyard has no registry index to ask")

    # -- changing ------------------------------------------------------------------------

    def tag(self, req: Request, name: str) -> Response:
        repo = req.query.get("repo", "")
        if not repo:
            raise InvalidArgument("tag needs a repository name (repo)")
        self.images.tag(name, repo, req.query.get("tag", ""))
        return Response(201)

    def remove(self, req: Request, name: str) -> Response:
        records = self.images.remove(name, force=req.flag("force"), prune=not req.flag("noprune"))
        return Response(200, records)

    def prune(self, req: Request) -> Response:
        records, reclaimed = self.images.prune(req.query.get("filters"))
        return Response(200, {"ImagesDeleted": records or None, "SpaceReclaimed": reclaimed})

    def push(self, req: Request, name: str) -> Response:
        raise InvalidArgument(
            "push is not supported yet: save the image (docker save) and copy it with "
            "skopeo copy docker-archive:FILE docker://REGISTRY/NAME"
        )

    def auth(self, req: Request) -> Response:
        """`docker login`: are these credentials good at that registry?"""
        from dockyard.engine.images.pull import login

        body = req.json()
        if not isinstance(body, dict):
            raise InvalidArgument("the login must be a JSON object")
        login(
            self.images,
            str(body.get("serveraddress") or ""),
            str(body.get("username") or ""),
            str(body.get("password") or ""),
        )
        return Response(200, {"Status": "Login Succeeded", "IdentityToken": ""})

    # -- streams -------------------------------------------------------------------------

    def create(self, req: Request) -> Response:
        from dockyard.engine.images.pull import credentials, pull

        if req.query.get("fromSrc"):
            return self._import(req)
        if not req.query.get("fromImage"):
            raise InvalidArgument("images/create needs fromImage (pull) or fromSrc (import)")
        if req.query.get("repo") or req.query.get("message") or req.multi.get("changes"):
            raise InvalidArgument("repo, message and changes go with an import (fromSrc), not a pull")
        creds = credentials(req.headers.get("x-registry-auth", ""))
        image, tag, platform = req.query["fromImage"], req.query.get("tag", ""), req.query.get("platform", "")

        def work(emit: Callable[[Json], None]) -> None:
            pull(self.images, image, tag, platform, creds, emit)

        return _lazy_stream(work)

    def _import(self, req: Request) -> Response:
        from dockyard.engine.images.archive import import_tarball

        if req.query["fromSrc"] != "-":
            raise InvalidArgument(
                "import from a URL is not supported: give the tarball on standard input "
                "(docker import FILE|-)"
            )
        body = req.stream
        if body is None:
            import io

            body = io.BytesIO(req.body)
        image_id = import_tarball(
            self.images,
            body,
            req.query.get("repo", ""),
            req.query.get("tag", ""),
            req.query.get("message", ""),
            req.multi.get("changes", []),
            req.query.get("platform", ""),
        )
        return Response(200, _lines([{"status": image_id}]), JSON_STREAM)

    def load(self, req: Request) -> Response:
        from dockyard.engine.images.archive import load

        body = req.stream
        if body is None:
            import io

            body = io.BytesIO(req.body)
        messages: list[Json] = []
        load(self.images, body, messages.append)
        if req.flag("quiet"):
            messages = [m for m in messages if "stream" in m]
        return Response(200, _lines(messages), JSON_STREAM)

    def save(self, req: Request) -> Response:
        from dockyard.engine.images.archive import save

        names = req.multi.get("names", [])
        return Response(200, content_type="application/x-tar", stream=save(self.images, names))

    def save_one(self, req: Request, name: str) -> Response:
        from dockyard.engine.images.archive import save

        return Response(200, content_type="application/x-tar", stream=save(self.images, [name]))


_DONE = object()


def _lazy_stream(work: Callable[[Callable[[Json], None]], None]) -> Response:
    """Run `work` in a thread; an error before its first message is this request's error."""
    messages: queue.Queue[Any] = queue.Queue()

    def run() -> None:
        try:
            work(messages.put)
        except BaseException as e:  # handed over: the answer reports it
            messages.put(e)
        messages.put(_DONE)

    threading.Thread(target=run, name="image-stream", daemon=True).start()
    first = messages.get()
    if isinstance(first, BaseException):
        messages.get()  # _DONE
        raise first
    if first is _DONE:
        return Response(200, b"", JSON_STREAM)

    def stream(write: Callable[[bytes], None]) -> None:
        from dockyard.engine.images.pull import error_message

        item = first
        while item is not _DONE:
            if isinstance(item, BaseException):
                if not isinstance(item, DockyardError):
                    logging.getLogger(__name__).error("image stream failed", exc_info=item)
                message = error_message(item)
                item = {"errorDetail": {"message": message}, "error": message}
            try:
                write(_lines([item]))
            except OSError:
                # The client went away; the work finishes (or fails) on its own.
                while messages.get() is not _DONE:
                    pass
                return
            item = messages.get()

    return Response(200, content_type=JSON_STREAM, stream=stream)

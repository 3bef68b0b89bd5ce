"""The API client's image calls: Docker's image endpoints, with bodies and answers as streams.

Stdlib only, like the rest of the client. `load` and `import` send a file
(a pipe too) chunked on a connection of their own; `save` copies the answer
to a file as it comes; `pull` hands each of Docker's JSON messages to the
caller as it comes. Their answers may take long (a large archive, a slow
registry): once the headers came, the body is read without a time limit.
"""

from __future__ import annotations

import json

from dockyard.clients.wire import Connection, decode, quote, urlencode
from dockyard.errors import DaemonUnavailable, DockyardError
from dockyard.wire.http import (
    CHUNKED,
    LAST_CHUNK,
    ChunkedDecoder,
    FramingError,
    body_length,
    chunk,
    request_head,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any, BinaryIO

CHUNK = 256 * 1024


class ImageCalls:
    """Mixed into Client (api.py), which gives request() and _connect()."""

    def images(self, filters: dict[str, list[str]] | None = None, all: bool = False) -> list[dict[str, Any]]:
        query: dict[str, Any] = {}
        if filters:
            query["filters"] = json.dumps(filters)
        if all:
            query["all"] = "1"
        return self.request("GET", "/images/json", query=query or None)  # type: ignore[attr-defined]

    def image_inspect(self, ref: str) -> dict[str, Any]:
        return self.request("GET", f"/images/{quote(ref)}/json")  # type: ignore[attr-defined]

    def image_history(self, ref: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/images/{quote(ref)}/history")  # type: ignore[attr-defined]

    def image_tag(self, ref: str, repo: str, tag: str = "") -> None:
        query = {"repo": repo, "tag": tag} if tag else {"repo": repo}
        self.request("POST", f"/images/{quote(ref)}/tag", query=query)  # type: ignore[attr-defined]

    def image_remove(self, ref: str, force: bool = False, noprune: bool = False) -> list[dict[str, str]]:
        query = {"force": "1" if force else "0", "noprune": "1" if noprune else "0"}
        return self.request("DELETE", f"/images/{quote(ref)}", query=query)  # type: ignore[attr-defined]

    def image_prune(self, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        query = {"filters": json.dumps(filters)} if filters else None
        return self.request("POST", "/images/prune", query=query)  # type: ignore[attr-defined]

    # -- streams ------------------------------------------------------------------

    def _open(self, method: str, target: str, headers: dict[str, str], body: BinaryIO | None) -> Connection:
        """Send a request (its body chunked from a file) on a new connection; its head is read."""
        conn: Connection = self._connect()  # type: ignore[attr-defined]
        try:
            fields = {"Host": "dockyard", "Connection": "close", **headers}
            if body is not None:
                fields["Transfer-Encoding"] = "chunked"
            else:
                fields["Content-Length"] = "0"
            try:
                conn.sock.sendall(request_head(method, target, fields))
                if body is not None:
                    while piece := body.read(CHUNK):
                        conn.sock.sendall(chunk(piece))
                    conn.sock.sendall(LAST_CHUNK)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the daemon answered early (an error): its answer says why
            status, head = conn.read_head(None)
            if status >= 400:
                decode(status, head, conn.read_body(head))
            conn.headers = head  # type: ignore[attr-defined]
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _pieces(conn: Connection) -> Iterator[bytes]:
        """The answer's body as it comes, chunked or not (headers read already)."""
        stream = conn.stream
        try:
            chunked = body_length(conn.headers, response=True) == CHUNKED  # type: ignore[attr-defined]
            decoder = ChunkedDecoder() if chunked else None
            data, stream.buf = stream.buf, b""
            while True:
                if decoder is not None:
                    data = decoder.feed(data)
                if data:
                    yield data
                if decoder is not None and decoder.done:
                    return
                data = stream.recv()
                if not data:
                    if decoder is not None:
                        raise DaemonUnavailable("the daemon closed the connection mid-answer")
                    return
        except FramingError as e:
            raise DaemonUnavailable(f"the daemon's answer is not HTTP/1.1: {e}") from None
        except OSError as e:
            raise DaemonUnavailable(f"the daemon closed the connection mid-answer: {e.strerror}") from None

    def _messages(self, conn: Connection, on_message: Callable[[dict[str, Any]], None]) -> None:
        """Docker's JSON message stream, message by message; its error raised."""
        try:
            pending = b""
            for piece in self._pieces(conn):
                pending += piece
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._message(line, on_message)
            self._message(pending, on_message)
        finally:
            conn.close()

    @staticmethod
    def _message(line: bytes, on_message: Callable[[dict[str, Any]], None]) -> None:
        if not line.strip():
            return
        message = json.loads(line)
        if isinstance(message, dict) and message.get("error"):
            raise DockyardError(str(message["error"]))
        on_message(message)

    def image_pull(
        self,
        image: str,
        tag: str = "",
        platform: str = "",
        auth: str = "",
        on_message: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        query = {"fromImage": image, "tag": tag or None, "platform": platform or None}
        headers = {"X-Registry-Auth": auth} if auth else {}
        conn = self._open("POST", "/images/create?" + urlencode(query), headers, None)
        self._messages(conn, on_message or (lambda m: None))

    def image_load(self, body: BinaryIO, quiet: bool = False) -> list[dict[str, Any]]:
        target = "/images/load" + ("?quiet=1" if quiet else "")
        conn = self._open("POST", target, {"Content-Type": "application/x-tar"}, body)
        out: list[dict[str, Any]] = []
        self._messages(conn, out.append)
        return out

    def image_import(
        self,
        body: BinaryIO,
        repo: str = "",
        tag: str = "",
        message: str = "",
        changes: list[str] | None = None,
    ) -> str:
        query = urlencode(
            {"fromSrc": "-", "repo": repo or None, "tag": tag or None, "message": message or None}
        )
        for change in changes or []:
            query += "&changes=" + quote(change)
        conn = self._open("POST", "/images/create?" + query, {"Content-Type": "application/x-tar"}, body)
        out: list[dict[str, Any]] = []
        self._messages(conn, out.append)
        return str(out[-1].get("status", "")) if out else ""

    def image_save(self, names: list[str], out: BinaryIO) -> None:
        query = "&".join(f"names={quote(n)}" for n in names)
        conn = self._open("GET", "/images/get?" + query, {}, None)
        try:
            for piece in self._pieces(conn):
                out.write(piece)
        finally:
            conn.close()

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

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
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
            lines = [f"{method} {target} HTTP/1.1", "Host: dockyard", "Connection: close"]
            lines += [f"{k}: {v}" for k, v in headers.items()]
            if body is not None:
                lines.append("Transfer-Encoding: chunked")
            else:
                lines.append("Content-Length: 0")
            try:
                conn.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
                if body is not None:
                    while chunk := body.read(CHUNK):
                        conn.sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    conn.sock.sendall(b"0\r\n\r\n")
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

    def _messages(self, conn: Connection, on_message: Callable[[dict[str, Any]], None]) -> None:
        """Docker's JSON message stream, message by message; its error raised."""
        try:
            pending = b""
            while True:
                if b"\n" not in conn.buf:
                    chunk = conn.sock.recv(CHUNK)
                    if not chunk:
                        break
                    conn.buf += chunk
                    continue
                line, conn.buf = conn.buf.split(b"\n", 1)
                line = (pending + line).strip()
                pending = b""
                if not line:
                    continue
                message = json.loads(line)
                if isinstance(message, dict) and message.get("error"):
                    raise DockyardError(str(message["error"]))
                on_message(message)
            if conn.buf.strip():
                on_message(json.loads(conn.buf))
        finally:
            conn.close()

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
            if conn.buf:
                out.write(conn.buf)
                conn.buf = b""
            while chunk := conn.sock.recv(CHUNK):
                out.write(chunk)
        except OSError as e:
            raise DaemonUnavailable(f"the daemon closed the connection mid-answer: {e.strerror}") from None
        finally:
            conn.close()

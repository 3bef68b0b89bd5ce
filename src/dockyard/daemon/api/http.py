"""A small HTTP/1.1 server on a unix socket, with descriptor passing.

Why not http.server: a foreground `run` and `exec` hand the client's own
stdin, stdout and stderr to the daemon with the request (SCM_RIGHTS), so
the request must be read with recvmsg. Requests are tiny JSON documents;
each connection gets a thread; keep-alive is supported. A handler may
answer with a deferred body: the status line and headers go out at once
and the body when it is ready (Docker's wait endpoint works this way).

Only root may talk to the daemon: the peer's credentials are checked on
every connection (SO_PEERCRED), on top of the socket's 0600 mode.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import socket
import struct
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

MAX_HEADER = 64 * 1024
MAX_BODY = 16 * 1024 * 1024
MAX_FDS = 8
# Statuses whose responses carry no content, whatever the request (RFC 9110 15.3.5, 15.4.5);
# a 204 must not send Content-Length either (8.6).
BODILESS = (204, 304)

REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    fds: list[int] = field(default_factory=list)

    def json(self) -> Any:
        if not self.body:
            return {}
        return json.loads(self.body)

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.query.get(name)
        if value is None:
            return default
        return value.lower() in ("1", "true", "yes")

    def take_fds(self) -> list[int]:
        fds, self.fds = self.fds, []
        return fds


@dataclass
class Response:
    status: int = 200
    body: Any = None  # JSON-able, bytes, or None
    content_type: str = "application/json"
    # Called after the headers went out; returns the body (JSON-able or bytes).
    deferred: Callable[[], Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Response]


def _encode(body: Any, content_type: str) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    return (json.dumps(body) + "\n").encode()


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.fds: list[int] = []

    def _fill(self) -> bool:
        fds = array.array("i")
        data, ancdata, _flags, _addr = self.sock.recvmsg(
            65536, socket.CMSG_SPACE(MAX_FDS * fds.itemsize), socket.MSG_CMSG_CLOEXEC
        )
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
        self.fds.extend(fds)
        if not data:
            return False
        self.buf += data
        return True

    def read_request(self) -> Request | None:
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > MAX_HEADER or not self._fill():
                return None
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        if length > MAX_BODY:
            return None
        while len(self.buf) < length:
            if not self._fill():
                return None
        body, self.buf = self.buf[:length], self.buf[length:]
        parts = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        fds, self.fds = self.fds, []
        return Request(method.upper(), unquote(parts.path), query, headers, body, fds)

    def send(self, status: int, headers: dict[str, str], body: bytes | None) -> None:
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.sock.sendall(data + (body or b""))


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


class UnixHTTPServer:
    def __init__(
        self, path: Path, handler: Handler, error_handler: Callable[[BaseException], Response]
    ) -> None:
        self.path = path
        self.handler = handler
        self.error_handler = error_handler
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        old = os.umask(0o177)
        try:
            self.sock.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self.sock.listen(128)
        self._stopping = threading.Event()
        self.threads: set[threading.Thread] = set()

    def serve_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                if self._stopping.is_set():
                    break
                raise
            t = threading.Thread(target=self._serve_conn, args=(conn,), daemon=True)
            t.start()

    def shutdown(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _serve_conn(self, sock: socket.socket) -> None:
        conn = _Conn(sock)
        try:
            if peer_uid(sock) != 0:
                # The request is read before the refusal: answering and closing first
                # would fail the peer's send (EPIPE) before it could see why.
                sock.settimeout(5)
                with contextlib.suppress(OSError, ValueError):
                    conn.read_request()
                conn.send(
                    403,
                    {"Content-Type": "application/json", "Connection": "close"},
                    _encode(
                        {
                            "message": "permission denied: only root may use the dockyard daemon",
                            "kind": "DockyardError",
                        },
                        "",
                    ),
                )
                return
            while True:
                req = conn.read_request()
                if req is None:
                    return
                keep = req.headers.get("connection", "").lower() != "close"
                try:
                    resp = self.handler(req)
                except BaseException as e:  # mapped to a JSON error, never a dropped socket
                    resp = self.error_handler(e)
                finally:
                    for fd in req.fds:
                        with contextlib.suppress(OSError):
                            os.close(fd)
                if resp.deferred is not None:
                    conn.send(resp.status, {"Content-Type": resp.content_type, "Connection": "close"}, None)
                    try:
                        late = resp.deferred()
                    except BaseException as e:
                        late = {"Error": {"Message": str(e)}, "StatusCode": -1}
                    sock.sendall(_encode(late, resp.content_type))
                    return
                body = _encode(resp.body, resp.content_type)
                headers = {"Content-Type": resp.content_type, "Content-Length": str(len(body))}
                if resp.status in BODILESS:
                    headers = {}
                    body = b""
                elif req.method == "HEAD":
                    # GET's headers, length included, but never its body: a client reads
                    # none, and the bytes would be taken for the next response (Go's
                    # "Unsolicited response received on idle HTTP channel").
                    body = b""
                headers.update(resp.headers)
                if not keep:
                    headers["Connection"] = "close"
                conn.send(resp.status, headers, body)
                if not keep:
                    return
        except (ConnectionError, BrokenPipeError):
            pass
        except Exception:
            traceback.print_exc(file=sys.stderr)
        finally:
            for fd in conn.fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            with contextlib.suppress(OSError):
                sock.close()

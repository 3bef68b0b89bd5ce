"""The daemon's side of HTTP/1.1 on its unix socket: requests, responses, one connection.

Why not http.server: a foreground `run` and `exec` hand the client's own
stdin, stdout and stderr to the daemon with the request, and dockyard-cni
its network namespace (SCM_RIGHTS), so the request must be read with
recvmsg. Requests are tiny JSON documents; keep-alive is supported. A
handler may answer with a deferred body: the status line and headers go
out at once and the body when it is ready (Docker's wait endpoint works
this way).

The framing itself (heads, lengths, chunks, descriptors) is
dockyard.wire.http's, shared with the clients; a request it cannot frame
is answered 400 and the connection closed. Accepting, the connection cap,
idle timeouts and the worker threads are server.py's; this module serves
one connection (serve), each read and write bounded in time.

Only root may talk to the daemon: the peer's credentials are checked on
every connection (SO_PEERCRED), on top of the socket's 0600 mode.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from dockyard.daemon.api.streams import BodyReader, StreamSender
from dockyard.wire.http import (
    CHUNKED,
    MAX_FDS,
    FramingError,
    Incomplete,
    Stream,
    body_length,
    encode_chunked,
    parse_request_head,
    response_head,
)

MAX_BODY = 16 * 1024 * 1024
PEER_CHECK_TIMEOUT = 5.0
# Statuses whose responses carry no content, whatever the request (RFC 9110 15.3.5, 15.4.5);
# a 204 must not send Content-Length either (8.6).
BODILESS = (204, 304)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    fds: list[int] = field(default_factory=list)
    # A body too large to hold, or chunked: read it from here (streams.py).
    stream: Any = None
    # Every value of a repeated query key (docker save's names=a&names=b).
    multi: dict[str, list[str]] = field(default_factory=dict)

    def json(self) -> Any:
        if not self.body and self.stream is not None:
            self.body = self.stream.read_all(MAX_BODY)
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
    # Called after the headers went out with a write(bytes) to send the body piece by piece.
    stream: Callable[[Callable[[bytes], None]], None] | None = None
    # Takes the connection over (Docker's hijacked attach and exec streams, followed
    # logs): called with the socket, what was read ahead of it, and a function that sends
    # the status line and headers, which it calls once it is ready for the stream (an
    # error raised before is answered as any other). The socket is closed here when it
    # returns (keep a dup).
    hijack: Callable[[Any, bytes, Callable[[], None]], None] | None = None


Handler = Callable[[Request], Response]


def encode(body: Any, content_type: str) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    return (json.dumps(body) + "\n").encode()


class Conn(Stream):
    """One client connection: its socket, what was read ahead, descriptors received."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock, MAX_FDS)
        # Each read must be done by then (None: no bound); set per request and per body read.
        self.deadline: float | None = None
        self.checked = False  # the peer's credentials
        # In the server's counts of open and busy connections (server.py).
        self.counted = False
        self.busy = False

    def recv(self) -> bytes:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the request did not come in time")
            self.sock.settimeout(left)
        return super().recv()

    def read_request(self, deadline: float | None = None, timeout: float = 60.0) -> Request | None:
        """The next request, None at the end of the stream (or one cut short).

        TimeoutError when the whole request has not come by `deadline`;
        FramingError for one that is not HTTP/1.1 as wire.http reads it.
        A body that is chunked or larger than MAX_BODY is left to the
        handler as a stream, each of its reads bounded by `timeout`.
        """
        self.deadline = deadline
        try:
            head = self.read_head()
            if head is None:
                return None
            method, target, _version, headers = parse_request_head(head)
            length = body_length(headers)
            stream = None
            if length == CHUNKED:
                stream = BodyReader(self, None, timeout)
                length = 0
            elif length > MAX_BODY:
                stream = BodyReader(self, length, timeout)
                length = 0
            body = self.read_exact(length)
        except Incomplete:
            return None
        parts = urlsplit(target)
        multi = parse_qs(parts.query, keep_blank_values=True)
        query = {k: v[-1] for k, v in multi.items()}
        fds, self.fds = self.fds, []
        return Request(method.upper(), unquote(parts.path), query, headers, body, fds, stream, multi)

    def send(self, status: int, headers: dict[str, str], body: bytes | None, timeout: float | None) -> None:
        self.send_raw(response_head(status, headers) + (body or b""), timeout)

    def send_raw(self, data: bytes, timeout: float | None) -> None:
        """Send it all; TimeoutError when the client takes nothing for `timeout` seconds.

        Not sendall: its timeout bounds the whole transfer, and a large answer
        (logs) to a client that reads it steadily must not be cut.
        """
        self.sock.settimeout(timeout)
        view = memoryview(data)
        while view:
            view = view[self.sock.send(view) :]

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []
        with contextlib.suppress(OSError):
            self.sock.close()


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def error_body(message: str, kind: str = "DockyardError") -> bytes:
    return encode({"message": message, "kind": kind}, "application/json")


def _hijack(
    conn: Conn,
    resp: Response,
    error_handler: Callable[[BaseException], Response],
    timeout: float,
    leaving: Callable[[], None],
) -> None:
    headers = {"Content-Type": resp.content_type, **resp.headers}
    if resp.status != 101:
        headers["Connection"] = "close"
    sent = False

    def head() -> None:
        nonlocal sent
        if not sent:
            sent = True
            leaving()
            conn.send(resp.status, headers, None, timeout)

    ahead, conn.buf = conn.buf, b""
    try:
        resp.hijack(conn.sock, ahead, head)  # type: ignore[misc]
    except OSError:
        return
    except BaseException as e:
        if sent:
            raise
        failure = error_handler(e)
        body = encode(failure.body, failure.content_type)
        leaving()
        answer = {"Content-Type": failure.content_type, "Content-Length": str(len(body))}
        with contextlib.suppress(OSError):
            conn.send(failure.status, {**answer, "Connection": "close"}, body, timeout)
        return
    with contextlib.suppress(OSError):
        head()


def serve(
    conn: Conn,
    handler: Handler,
    error_handler: Callable[[BaseException], Response],
    timeout: float,
    leaving: Callable[[], None],
) -> bool:
    """Serve what one connection sends; True to keep it (keep-alive, nothing more read yet).

    Each request must come whole within `timeout`, and each answer be taken
    at least a little every `timeout`; the handler itself, and a deferred
    body, take as long as they take. `leaving` is called just before the
    last answer goes out on a connection that closes after it.
    """
    sock = conn.sock
    sock.setblocking(True)
    if not conn.checked:
        conn.checked = True
        if peer_uid(sock) != 0:
            # The request is read before the refusal: answering and closing first
            # would fail the peer's send (EPIPE) before it could see why.
            with contextlib.suppress(OSError, FramingError):
                conn.read_request(time.monotonic() + PEER_CHECK_TIMEOUT)
            body = error_body("permission denied: only root may use the dockyard daemon")
            leaving()
            conn.send(
                403, {"Content-Type": "application/json", "Connection": "close"}, body, PEER_CHECK_TIMEOUT
            )
            return False
    while True:
        try:
            req = conn.read_request(time.monotonic() + timeout, timeout)
        except FramingError as e:
            # Where this request ends is unknown: say why, and read nothing more.
            leaving()
            body = error_body(f"malformed request: {e}", "InvalidArgument")
            fields = {
                "Content-Type": "application/json",
                "Content-Length": str(len(body)),
                "Connection": "close",
            }
            conn.send(400, fields, body, timeout)
            return False
        if req is None:
            return False
        keep = req.headers.get("connection", "").lower() != "close"
        try:
            resp = handler(req)
        except BaseException as e:  # mapped to a JSON error, never a dropped socket
            resp = error_handler(e)
        finally:
            for fd in req.fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if req.stream is not None and not req.stream.done and not req.stream.drain():
            keep = False  # the body's rest could not be read: the connection cannot go on
        if resp.hijack is not None:
            _hijack(conn, resp, error_handler, timeout, leaving)
            return False
        if resp.stream is not None:
            conn.send(
                resp.status,
                {"Content-Type": resp.content_type, **resp.headers, "Connection": "close"},
                None,
                timeout,
            )
            sender = StreamSender(conn.send_raw, timeout)
            with contextlib.suppress(OSError):
                resp.stream(sender.write)
            leaving()
            with contextlib.suppress(OSError):
                sender.finish()
            return False
        if resp.deferred is not None:
            # Chunked, as Docker's own wait answers: the last chunk tells the client
            # that the body is whole, without waiting for this side to close.
            head = {"Content-Type": resp.content_type, "Transfer-Encoding": "chunked", "Connection": "close"}
            conn.send(resp.status, head, None, timeout)
            try:
                late = resp.deferred()
            except BaseException as e:
                late = {"Error": {"Message": str(e)}, "StatusCode": -1}
            leaving()
            conn.send_raw(encode_chunked([encode(late, resp.content_type)]), timeout)
            return False
        body = encode(resp.body, resp.content_type)
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
        if keep:
            headers["Keep-Alive"] = f"timeout={max(1, int(timeout))}"
        else:
            headers["Connection"] = "close"
            leaving()
        conn.send(resp.status, headers, body, timeout)
        if not keep:
            return False
        if not conn.buf:
            return True
        # A pipelined request is already read: serve it here.

"""HTTP/1.1 framing on dockyard's unix socket (RFC 9112): one implementation for every side.

The daemon's server (daemon/api/http.py), the API client (clients/wire.py,
image_calls.py) and dockyard-cni all frame their messages here. Framing is
the start line, the header fields and where a body ends (Content-Length,
chunked, or the end of the connection); it is also the descriptors a
message carries (SCM_RIGHTS: a foreground run's stdio, dockyard-cni's
network namespace). What a message means, JSON, routing, timeouts and
connection policy are the callers'.

Strict wherever the two ends could disagree on where a message ends (the
openings of request smuggling): a Content-Length that is not plain
digits, two different lengths, a transfer coding other than chunked, both
a length and a coding, whitespace before a header's colon, obsolete line
folding, a chunk size that is not hex. Each is a FramingError (a
ValueError), and the connection is not used further.

Stdlib only, and light: the thin clients pay for every import (no typing,
re or dataclasses here).
"""

from __future__ import annotations

import socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

MAX_HEAD = 64 * 1024
MAX_CHUNK_LINE = 4096
MAX_FDS = 8
RECV_SIZE = 65536

# body_length's answers besides a byte count.
CHUNKED = -2
UNTIL_CLOSE = -1

LAST_CHUNK = b"0\r\n\r\n"

REASONS = {
    101: "UPGRADED",  # Docker's words for its attach protocol's upgrade
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

# RFC 9110 5.6.2: the characters of a token (methods, header names).
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_HEX = frozenset("0123456789abcdefABCDEF")
_VERSIONS = ("HTTP/1.1", "HTTP/1.0")


class FramingError(ValueError):
    """A message that is not HTTP/1.1 as this end can read it safely."""


class Incomplete(FramingError):
    """The peer closed the connection in the middle of a message."""


def _token(text: str) -> bool:
    return bool(text) and all(c in _TCHAR for c in text)


# -- heads ------------------------------------------------------------------------


def parse_fields(lines: Iterable[str]) -> dict[str, str]:
    """Header fields, names lowercased; a repeated field's values joined with ", " (RFC 9110 5.3)."""
    fields: dict[str, str] = {}
    for line in lines:
        if line[:1] in (" ", "\t"):
            raise FramingError("obsolete line folding in a header field")
        name, sep, value = line.partition(":")
        if not sep or not _token(name):
            raise FramingError(f"invalid header field {line[:60]!r}")
        value = value.strip(" \t")
        if "\r" in value or "\n" in value or "\0" in value:
            raise FramingError(f"invalid value of header field {name}")
        key = name.lower()
        fields[key] = f"{fields[key]}, {value}" if key in fields else value
    return fields


def parse_request_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    """Method, target, version and fields of a request's head (without its blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _token(parts[0]) or not parts[1] or parts[2] not in _VERSIONS:
        raise FramingError(f"invalid request line {lines[0][:80]!r}")
    return parts[0], parts[1], parts[2], parse_fields(lines[1:])


def parse_response_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status and fields of a response's head (without its blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if version not in _VERSIONS or len(code) != 3 or not code.isdigit() or rest[3:4] not in ("", " "):
        raise FramingError(f"invalid status line {lines[0][:80]!r}")
    return int(code), parse_fields(lines[1:])


def _head(start: str, fields: dict[str, str]) -> bytes:
    lines = [start]
    for name, value in fields.items():
        value = str(value)
        if not _token(name) or "\r" in value or "\n" in value:
            raise ValueError(f"header field {name!r} cannot be sent: {value[:60]!r}")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def request_head(method: str, target: str, fields: dict[str, str]) -> bytes:
    if not _token(method) or not target or " " in target or "\r" in target or "\n" in target:
        raise ValueError(f"cannot send a request {method} {target!r}")
    return _head(f"{method} {target} HTTP/1.1", fields)


def response_head(status: int, fields: dict[str, str]) -> bytes:
    return _head(f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}", fields)


def body_length(fields: dict[str, str], response: bool = False) -> int:
    """Where the body ends (RFC 9112 6.3): a byte count, CHUNKED, or UNTIL_CLOSE (responses only).

    The caller has already dealt with messages that never have a body
    (HEAD's answers, 1xx, 204, 304).
    """
    coding = fields.get("transfer-encoding")
    if coding is not None:
        if "content-length" in fields:
            raise FramingError("both Transfer-Encoding and Content-Length")
        if [c.strip(" \t").lower() for c in coding.split(",")] != ["chunked"]:
            raise FramingError(f"unsupported transfer coding {coding[:60]!r}")
        return CHUNKED
    length = fields.get("content-length")
    if length is None:
        return UNTIL_CLOSE if response else 0
    values = {v.strip(" \t") for v in length.split(",")}
    if len(values) != 1:
        raise FramingError(f"conflicting Content-Length {length[:60]!r}")
    (value,) = values
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise FramingError(f"invalid Content-Length {value[:60]!r}")
    return int(value)


# -- chunked bodies ----------------------------------------------------------------


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (nothing for no data: an empty chunk would end it)."""
    if not data:
        return b""
    return b"%x\r\n" % len(data) + bytes(data) + b"\r\n"


def encode_chunked(pieces: Iterable[bytes]) -> bytes:
    return b"".join(chunk(p) for p in pieces) + LAST_CHUNK


class ChunkedDecoder:
    """A chunked body decoded as it comes: feed() bytes, get the body's bytes.

    `done` once the last chunk and its trailer section are in; `rest` then
    holds what came after (the next message). Chunk extensions and trailer
    fields are read and dropped.
    """

    def __init__(self) -> None:
        self.state = "size"
        self.left = 0
        self.pending = b""
        self.trailer = 0
        self.done = False
        self.rest = b""

    def feed(self, data: bytes) -> bytes:
        if self.done:
            self.rest += data
            return b""
        buf = self.pending + data if self.pending else bytes(data)
        self.pending = b""
        out = []
        pos = 0
        end = len(buf)
        while True:
            if self.state == "data":
                take = min(self.left, end - pos)
                if not take:
                    break
                out.append(buf[pos : pos + take])
                pos += take
                self.left -= take
                if not self.left:
                    self.state = "crlf"
            elif self.state == "crlf":
                if end - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise FramingError("a chunk is longer than its size says")
                pos += 2
                self.state = "size"
            else:
                i = buf.find(b"\r\n", pos)
                if i < 0:
                    if end - pos > MAX_CHUNK_LINE:
                        raise FramingError("a chunk's size line is too long")
                    break
                line = buf[pos:i]
                pos = i + 2
                if self.state == "size":
                    self._size(line)
                elif line:
                    self.trailer += len(line) + 2
                    if self.trailer > MAX_HEAD:
                        raise FramingError("the trailer section is too large")
                else:
                    self.done = True
                    self.rest = buf[pos:]
                    return b"".join(out)
        self.pending = buf[pos:]
        return b"".join(out)

    def _size(self, line: bytes) -> None:
        text = line.split(b";", 1)[0].rstrip(b" \t").decode("latin-1")
        if not text or len(text) > 16 or not all(c in _HEX for c in text):
            raise FramingError(f"invalid chunk size {text[:20]!r}")
        self.left = int(text, 16)
        self.state = "data" if self.left else "trailer"


# -- a socket's messages --------------------------------------------------------------


class Stream:
    """What a socket receives, buffered; descriptors that came with it (SCM_RIGHTS) collected.

    With max_fds 0 nothing but bytes is read (recv); else recvmsg takes up
    to that many descriptors per read, close-on-exec, into `fds`, which the
    owner must take and close. Subclasses bound each read in time (recv).
    """

    def __init__(self, sock: socket.socket, max_fds: int = 0) -> None:
        self.sock = sock
        self.max_fds = max_fds
        self.buf = b""
        self.fds: list[int] = []

    def recv(self) -> bytes:
        """One read from the socket; b"" at the end of the stream."""
        if not self.max_fds:
            return self.sock.recv(RECV_SIZE)
        import array

        fds = array.array("i")
        data, ancdata, _flags, _addr = self.sock.recvmsg(
            RECV_SIZE, socket.CMSG_SPACE(self.max_fds * fds.itemsize), socket.MSG_CMSG_CLOEXEC
        )
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
        self.fds.extend(fds)
        return data

    def fill(self) -> bool:
        data = self.recv()
        if not data:
            return False
        self.buf += data
        return True

    def read_head(self) -> bytes | None:
        """The next message's head, without its blank line; None when the stream ended before one.

        Empty lines before a message are skipped (RFC 9112 2.2).
        """
        while True:
            self.buf = self.buf.lstrip(b"\r\n")
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                head, self.buf = self.buf[:i], self.buf[i + 4 :]
                return head
            if len(self.buf) > MAX_HEAD:
                raise FramingError(f"the header section is larger than {MAX_HEAD} bytes")
            if not self.fill():
                if self.buf:
                    raise Incomplete("the connection closed in the middle of a message's head")
                return None

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self.fill():
                raise Incomplete(f"the connection closed {n - len(self.buf)} bytes before the body's end")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_to_close(self, limit: int | None = None) -> bytes:
        while self.fill():
            if limit is not None and len(self.buf) > limit:
                raise FramingError(f"the body is larger than {limit} bytes")
        data, self.buf = self.buf, b""
        return data

    def read_chunked(self, limit: int | None = None) -> bytes:
        decoder = ChunkedDecoder()
        parts = [decoder.feed(self.buf)]
        self.buf = b""
        size = len(parts[0])
        while not decoder.done:
            data = self.recv()
            if not data:
                raise Incomplete("the connection closed in the middle of a chunked body")
            part = decoder.feed(data)
            size += len(part)
            if limit is not None and size > limit:
                raise FramingError(f"the body is larger than {limit} bytes")
            parts.append(part)
        self.buf = decoder.rest
        return b"".join(parts)

    def read_body(self, length: int, limit: int | None = None) -> bytes:
        """The body whose end body_length() gave."""
        if length == CHUNKED:
            return self.read_chunked(limit)
        if length == UNTIL_CLOSE:
            return self.read_to_close(limit)
        if limit is not None and length > limit:
            raise FramingError(f"the body is larger than {limit} bytes")
        return self.read_exact(length)


def send_message(sock: socket.socket, data: bytes, fds: list[int] | None = None) -> None:
    """Send one message whole, the descriptors with its first bytes."""
    if not fds:
        sock.sendall(data)
        return
    import array

    sent = sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    if sent < len(data):
        sock.sendall(data[sent:])

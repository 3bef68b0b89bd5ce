"""Bodies too large to hold: a request's read as a stream, a response's written as one.

`docker load` and `docker import` send hundreds of megabytes, usually
chunked (Go's client does not know the length of a pipe); `docker save`
and `docker pull` answer with a stream as long as the images, or as the
pull takes. A request whose body is chunked or larger than the in-memory
limit reaches its handler with `stream` set (a BodyReader) instead of
`body`; a handler that does not read it leaves a connection that closes
after the answer. A response with `stream` set is sent as the stream is
written, without a length, and the connection closes after it.

Each read and each write must make progress within the connection's
timeout; the whole may take as long as it takes.
"""

from __future__ import annotations

import time

from dockyard.errors import InvalidArgument

CHUNK = 256 * 1024


class BodyReader:
    """A request body read from the connection: `length` bytes, or chunked when None."""

    def __init__(self, conn, length: int | None, timeout: float) -> None:  # type: ignore[no-untyped-def]
        self.conn = conn  # http.Conn: its read-ahead buffer and socket
        self.left = length  # bytes of the body (or of the current chunk) still to read
        self.chunked = length is None
        self.timeout = timeout
        self.done = length == 0

    def _fill(self) -> None:
        if not self.conn._fill(time.monotonic() + self.timeout):
            raise InvalidArgument("the request's body was cut short")

    def _line(self) -> bytes:
        while b"\r\n" not in self.conn.buf:
            if len(self.conn.buf) > 4096:
                raise InvalidArgument("invalid chunked request body")
            self._fill()
        line, self.conn.buf = self.conn.buf.split(b"\r\n", 1)
        return line

    def _next_chunk(self) -> None:
        if self.left == 0 and self.chunked and not self.done:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                self.left = int(size_text, 16)
            except ValueError:
                raise InvalidArgument("invalid chunked request body") from None
            if self.left == 0:
                while self._line():  # trailers, up to the empty line
                    pass
                self.done = True

    def read(self, n: int = -1) -> bytes:
        if self.done:
            return b""
        if self.chunked and self.left is None:
            self.left = 0
        self._next_chunk()
        if self.done:
            return b""
        assert self.left is not None
        want = self.left if n < 0 else min(n, self.left, CHUNK * 4)
        if not self.conn.buf:
            self._fill()
        data, self.conn.buf = self.conn.buf[:want], self.conn.buf[want:]
        self.left -= len(data)
        if self.left == 0:
            if self.chunked:
                while len(self.conn.buf) < 2:
                    self._fill()
                if self.conn.buf[:2] != b"\r\n":
                    raise InvalidArgument("invalid chunked request body")
                self.conn.buf = self.conn.buf[2:]
            else:
                self.done = True
        return data

    def read_all(self, limit: int) -> bytes:
        """The whole body, for a handler that wants it in memory; refused past `limit` bytes."""
        parts = []
        total = 0
        while chunk := self.read(CHUNK):
            total += len(chunk)
            if total > limit:
                raise InvalidArgument(f"the request's body is larger than {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    def drain(self) -> bool:
        """Read what is left; whether the connection can serve another request after it."""
        try:
            while self.read(CHUNK):
                pass
        except (OSError, InvalidArgument):
            return False
        return True


class StreamSender:
    """Hands a response stream to the connection, holding back its last piece.

    The last piece goes out after `leaving` (the server's count of open
    connections goes down before a client can have its whole answer).
    """

    def __init__(self, send, timeout: float) -> None:  # type: ignore[no-untyped-def]
        self.send = send
        self.timeout = timeout
        self.held = b""

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self.held:
            self.send(self.held, self.timeout)
        self.held = bytes(data)

    def finish(self) -> None:
        if self.held:
            self.send(self.held, self.timeout)
            self.held = b""

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
from dockyard.wire.http import ChunkedDecoder, FramingError

CHUNK = 256 * 1024


class BodyReader:
    """A request body read from the connection: `length` bytes, or chunked when None.

    read(n) gives at most n bytes (a file object for tarfile), b"" at the end.
    """

    def __init__(self, conn, length: int | None, timeout: float) -> None:  # type: ignore[no-untyped-def]
        self.conn = conn  # http.Conn: its read-ahead buffer and socket
        self.left = length  # bytes of a body by length still to read
        self.decoder = ChunkedDecoder() if length is None else None
        self.timeout = timeout
        self.ready = b""  # read and decoded, not yet taken
        self.done = length == 0  # the whole body is off the connection

    def _advance(self) -> None:
        conn = self.conn
        if conn.buf:
            data, conn.buf = conn.buf, b""
        else:
            conn.deadline = time.monotonic() + self.timeout
            data = conn.recv()
            if not data:
                raise InvalidArgument("the request's body was cut short")
        if self.decoder is not None:
            try:
                self.ready += self.decoder.feed(data)
            except FramingError as e:
                raise InvalidArgument(f"invalid chunked request body: {e}") from None
            if self.decoder.done:
                self.done = True
                conn.buf = self.decoder.rest
            return
        assert self.left is not None
        self.ready += data[: self.left]
        conn.buf = data[self.left :]
        self.left -= len(data) - len(conn.buf)
        self.done = self.left == 0

    def read(self, n: int = -1) -> bytes:
        while not self.ready and not self.done:
            self._advance()
        if n < 0:
            n = len(self.ready)
        data, self.ready = self.ready[:n], self.ready[n:]
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

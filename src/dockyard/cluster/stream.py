"""One watch stream on one etcd member: POST /v3/watch, then newline-delimited JSON
messages in an HTTP/1.1 chunked body, read off the socket as they come.

The socket is read here, not through http.client, so that a read with a
timeout that expires changes nothing: whatever bytes came stay in this
object's buffers and the next read goes on from them. That is what lets the
watch loop wait a little, check its member, and wait again on the same
stream. `Grpc-Metadata-hasleader: true` is etcd's require-leader flag (what
its Go client sets): a member that loses its leader ends the stream instead
of leaving it open and silent.

Nothing here retries: a stream that ends or breaks raises StreamEnded and the
watch loop opens another, wherever it chooses.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time

from dockyard.cluster.etcd import EtcdClient


class StreamEnded(Exception):
    """The stream is over: closed by the member, broken, or answered with an error."""


class WatchStream:
    def __init__(self, sock: socket.socket, where: str) -> None:
        self.sock = sock
        self.where = where
        self._raw = b""  # bytes off the socket not yet de-chunked
        self._body = b""  # de-chunked bytes not yet a whole message
        self._chunked = True
        self._chunk_left = 0  # bytes of the current chunk still to come
        self._eof = False

    @classmethod
    def open(cls, client: EtcdClient, index: int, create_request: dict, timeout: float) -> WatchStream:
        """Open a watch on member `index` and return once the member answered 200."""
        where = client.name(index)
        try:
            sock, headers = client.connect_raw(index, timeout)
        except OSError as e:
            raise StreamEnded(f"{where}: {e.strerror or e}") from None
        stream = cls(sock, where)
        body = json.dumps({"create_request": create_request}).encode()
        head = [
            "POST /v3/watch HTTP/1.1",
            *(f"{k}: {v}" for k, v in headers.items()),
            "Content-Type: application/json",
            "Grpc-Metadata-hasleader: true",
            f"Content-Length: {len(body)}",
            "",
            "",
        ]
        try:
            sock.settimeout(timeout)
            sock.sendall("\r\n".join(head).encode() + body)
            stream._read_head(time.monotonic() + timeout)
        except (OSError, StreamEnded) as e:
            stream.close()
            raise StreamEnded(f"{where}: {e}") from None
        return stream

    def close(self) -> None:
        """Close; a read blocked in another thread returns at once (shutdown wakes it, close
        alone would not)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()

    def next(self, timeout: float) -> dict | None:
        """The next message's "result", or None when none came within timeout."""
        end = time.monotonic() + timeout
        while True:
            line = self._take_line()
            if line is not None:
                if not line.strip():
                    continue
                try:
                    message = json.loads(line)
                except ValueError:
                    raise StreamEnded(f"{self.where}: unreadable watch message {line[:80]!r}") from None
                if "error" in message:
                    err = message["error"]
                    text = err.get("message", err) if isinstance(err, dict) else err
                    raise StreamEnded(f"{self.where}: {text}")
                return message.get("result", {})
            if self._eof:
                raise StreamEnded(f"{self.where}: the member closed the watch")
            left = end - time.monotonic()
            if left <= 0:
                return None
            self._fill(left)

    # -- bytes ------------------------------------------------------------------------------

    def _recv(self, timeout: float) -> bool:
        """Read what is there into _raw; False when nothing came within timeout."""
        try:
            self.sock.settimeout(max(timeout, 0.001))
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        except OSError as e:
            raise StreamEnded(f"{self.where}: {e.strerror or e}") from None
        if not data:
            self._eof = True
        self._raw += data
        return True

    def _read_head(self, deadline: float) -> None:
        while b"\r\n\r\n" not in self._raw:
            if self._eof:
                raise StreamEnded("closed before answering")
            left = deadline - time.monotonic()
            if left <= 0 or not self._recv(left):
                raise StreamEnded("no answer to the watch request")
        head, self._raw = self._raw.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or parts[1] != "200":
            # Read a little of the body for the member's reason.
            if not self._eof:
                self._recv(0.2)
            raise StreamEnded(f"{lines[0]} {self._raw[:200]!r}")
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        self._chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        self._dechunk()

    def _fill(self, timeout: float) -> None:
        if self._recv(timeout):
            self._dechunk()

    def _dechunk(self) -> None:
        if not self._chunked:
            self._body += self._raw
            self._raw = b""
            return
        while self._raw:
            if self._chunk_left > 0:
                piece = self._raw[: self._chunk_left]
                self._body += piece
                self._raw = self._raw[len(piece) :]
                self._chunk_left -= len(piece)
                if self._chunk_left == 0:
                    self._chunk_left = -2  # the CRLF after a chunk's data
                continue
            if self._chunk_left < 0:
                if len(self._raw) < 2:
                    return
                self._raw = self._raw[2:]
                self._chunk_left = 0
                continue
            if b"\r\n" not in self._raw:
                return
            size_line, self._raw = self._raw.split(b"\r\n", 1)
            try:
                size = int(size_line.split(b";")[0], 16)
            except ValueError:
                raise StreamEnded(f"{self.where}: bad chunk {size_line[:40]!r}") from None
            if size == 0:
                self._eof = True
                return
            self._chunk_left = size

    def _take_line(self) -> bytes | None:
        if b"\n" not in self._body:
            if self._eof and self._body.strip():
                line, self._body = self._body, b""
                return line
            return None
        line, self._body = self._body.split(b"\n", 1)
        return line

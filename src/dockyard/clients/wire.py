"""The client's side of the wire: one HTTP/1.1 connection to the daemon, and its timeouts.

Stdlib only, and light: every command that talks to the daemon pays for
these imports. The framing is dockyard.wire.http's, the daemon's too. Nothing
waits forever on a daemon that does not answer: connecting gives up after
CONNECT_TIMEOUT (a full listen backlog is tried again until then), and an
answer must begin within the read timeout (DOCKYARD_CLIENT_TIMEOUT,
default READ_TIMEOUT seconds), which api.py lifts where waiting is the
point (the body of a deferred answer) or lengthens (a stop's grace).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time

from dockyard.errors import DaemonUnavailable, DockyardError, from_wire
from dockyard.wire.http import (
    FramingError,
    Incomplete,
    Stream,
    body_length,
    parse_response_head,
    request_head,
    send_message,
)

# Every import here is paid by every command: no typing, pathlib or urllib.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# RFC 3986 unreserved characters pass; anything else is %-escaped.
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def quote(text: str) -> str:
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in str(text).encode())


def urlencode(query: dict[str, Any]) -> str:
    return "&".join(f"{quote(k)}={quote(str(v))}" for k, v in query.items() if v is not None)


CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 120.0
TIMEOUT_ENV = "DOCKYARD_CLIENT_TIMEOUT"
PING_TIMEOUT = 5.0
STOP_GRACE = 10  # the daemon's default for stop -t


def read_timeout_from_env() -> float | None:
    """DOCKYARD_CLIENT_TIMEOUT in seconds (0: none), else READ_TIMEOUT."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return READ_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1e6:  # NaN too
        raise DockyardError(f"invalid {TIMEOUT_ENV} {text!r}: give seconds (0 for no limit)")
    return value or None


def connect_unix(sock: socket.socket, path: str, timeout: float) -> None:
    """connect(), trying again while the listen backlog is full (EAGAIN), for at most timeout."""
    deadline = time.monotonic() + timeout
    sock.settimeout(timeout)
    while True:
        try:
            sock.connect(path)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    errno.ETIMEDOUT, f"its socket took no connection within {timeout:.0f} s"
                ) from None
            time.sleep(0.02)


class Connection:
    """One keep-alive HTTP connection to the daemon."""

    def __init__(
        self, path: str, timeout: float | None = None, connect_timeout: float = CONNECT_TIMEOUT
    ) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connect_unix(self.sock, path, connect_timeout)
        except BaseException:
            self.sock.close()
            raise
        self.sock.settimeout(timeout)
        self.stream = Stream(self.sock)
        self.used = time.monotonic()
        self.keep_alive: float | None = None  # the daemon's Keep-Alive timeout, once told

    def close(self) -> None:
        self.sock.close()

    def answered(self, headers: dict[str, str]) -> None:
        """An answer was read whole: note when, and how long the daemon keeps the connection idle."""
        self.used = time.monotonic()
        for part in headers.get("keep-alive", "").split(","):
            key, _, value = part.strip().partition("=")
            if key == "timeout" and value.isdigit():
                self.keep_alive = float(value)

    def stale(self) -> bool:
        """Whether the daemon closed it, or is about to (idle nearly as long as it keeps one)."""
        if self.stream.buf:
            return True  # bytes nobody asked for: not a connection to go on with
        if self.keep_alive is not None and time.monotonic() - self.used >= self.keep_alive - 1:
            return True
        timeout = self.sock.gettimeout()
        self.sock.settimeout(0.0)
        try:
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True
        finally:
            self.sock.settimeout(timeout)

    def send(
        self,
        method: str,
        target: str,
        body: Any = None,
        fds: list[int] | None = None,
        close: bool = False,
        fields: dict[str, str] | None = None,
    ) -> None:
        """One request with a JSON body (or none); `fds` go with it (SCM_RIGHTS)."""
        data = b"" if body is None else json.dumps(body).encode()
        head = {"Host": "dockyard", "Content-Type": "application/json", "Content-Length": str(len(data))}
        if close:
            head["Connection"] = "close"
        head.update(fields or {})
        send_message(self.sock, request_head(method, target, head) + data, fds)

    def read_head(self, timeout: float | None = None) -> tuple[int, dict[str, str]]:
        """Status and headers; TimeoutError when nothing comes for `timeout` seconds."""
        self.sock.settimeout(timeout)
        try:
            head = self.stream.read_head()
            if head is None:
                raise DaemonUnavailable("the daemon closed the connection (see daemon.log)")
            return parse_response_head(head)
        except Incomplete:
            raise DaemonUnavailable("the daemon closed the connection mid-answer (see daemon.log)") from None
        except FramingError as e:
            raise DaemonUnavailable(f"the daemon's answer is not HTTP/1.1: {e}") from None

    def read_body(self, headers: dict[str, str]) -> bytes:
        try:
            return self.stream.read_body(body_length(headers, response=True))
        except Incomplete:
            raise DaemonUnavailable("the daemon closed the connection mid-answer") from None
        except FramingError as e:
            raise DaemonUnavailable(f"the daemon's answer is not HTTP/1.1: {e}") from None


def decode(status: int, headers: dict[str, str], body: bytes) -> Any:
    ctype = headers.get("content-type", "")
    data: Any = body
    if ctype.startswith("application/json") and body:
        data = json.loads(body)
    if status >= 400:
        if isinstance(data, dict):
            raise from_wire(str(data.get("kind", "DockyardError")), str(data.get("message", data)))
        raise DockyardError(f"daemon error {status}: {body[:200]!r}")
    return data

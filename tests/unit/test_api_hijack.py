"""A hijacked API connection (Docker's attach protocol) on a real UnixHTTPServer.

The handler takes the connection over: its answer goes out when it says so
(after what it read ahead is handed to it), an error raised before that is
an ordinary JSON answer, and the connection is the handler's until it
returns. Needs root only for the server's peer check.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dockyard.daemon.api.http import Request, Response
from dockyard.daemon.api.server import Limits, UnixHTTPServer
from dockyard.errors import InvalidArgument


def _handler(req: Request) -> Response:
    if req.path == "/refuse":

        def refuse(sock: socket.socket, ahead: bytes, head: Callable[[], None]) -> None:
            raise InvalidArgument("not now")

        return Response(101, hijack=refuse)

    def echo(sock: socket.socket, ahead: bytes, head: Callable[[], None]) -> None:
        head()
        sock.sendall(b"ahead:" + ahead + b";")
        while data := sock.recv(4096):
            sock.sendall(data.upper())

    return Response(
        101,
        content_type="application/vnd.docker.raw-stream",
        headers={"Connection": "Upgrade", "Upgrade": "tcp"},
        hijack=echo,
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "api.sock"
    srv = UnixHTTPServer(path, _handler, lambda e: Response(400, {"message": str(e)}), Limits(16, 30.0))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        srv.shutdown()
        thread.join(5)


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(path))
    return sock


def _head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def test_the_connection_is_the_handlers_after_its_101(server: Path) -> None:
    sock = _connect(server)
    # What the client sends right after its request reaches the handler too.
    sock.sendall(b"POST /attach HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\nearly")
    head, rest = _head(sock)
    assert head.startswith(b"HTTP/1.1 101 UPGRADED\r\n")
    assert b"Upgrade: tcp" in head and b"Content-Type: application/vnd.docker.raw-stream" in head
    while not rest.endswith(b";"):
        rest += sock.recv(4096)
    assert rest == b"ahead:early;"
    sock.sendall(b"hello")
    assert sock.recv(4096) == b"HELLO"
    sock.shutdown(socket.SHUT_WR)  # the client's half-close ends the echo
    assert sock.recv(4096) == b""
    sock.close()


def test_an_error_before_the_answer_is_answered_as_json(server: Path) -> None:
    sock = _connect(server)
    sock.sendall(b"POST /refuse HTTP/1.1\r\nHost: d\r\n\r\n")
    head, body = _head(sock)
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(body) == {"message": "not now"}
    sock.close()

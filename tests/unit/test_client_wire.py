"""clients/wire.py: the client never waits forever, and notices a connection the daemon closed."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from dockyard.clients.wire import Connection, connect_unix, read_timeout_from_env
from dockyard.errors import DockyardError


def _full_listener(path: Path) -> tuple[socket.socket, list[socket.socket]]:
    """A listening socket that accepts nothing, its backlog filled."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    queued = []
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(str(path))
        except BlockingIOError:
            sock.close()
            return listener, queued
        queued.append(sock)


def test_a_full_backlog_is_tried_again_until_the_connect_timeout(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    listener, queued = _full_listener(path)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        start = time.monotonic()
        with pytest.raises(TimeoutError, match="took no connection within"):
            connect_unix(sock, str(path), 0.3)
        assert time.monotonic() - start >= 0.3  # it kept trying, it did not fail at the first EAGAIN
        sock.close()
        # Once the server takes what waits, the same wait succeeds.
        taker = threading.Timer(0.2, lambda: queued.append(listener.accept()[0]))
        taker.start()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connect_unix(sock, str(path), 10)
        sock.close()
        taker.join()
    finally:
        for s in queued:
            s.close()
        listener.close()


def test_a_connection_the_daemon_closed_is_stale(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(4)
    try:
        conn = Connection(str(path), timeout=5)
        server_side, _ = listener.accept()
        assert not conn.stale()
        conn.answered({"keep-alive": "timeout=60"})
        assert conn.keep_alive == 60.0 and not conn.stale()
        server_side.close()
        assert conn.stale()
        assert conn.sock.gettimeout() == 5  # the check left the read timeout as it was
        conn.close()
        # Idle nearly as long as the daemon keeps a connection: replaced before it is closed under us.
        conn = Connection(str(path), timeout=5)
        server_side, _ = listener.accept()
        conn.answered({"keep-alive": "timeout=1"})
        assert conn.stale()
        conn.close()
        server_side.close()
    finally:
        listener.close()


def test_the_read_timeout_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKYARD_CLIENT_TIMEOUT", raising=False)
    assert read_timeout_from_env() == 120.0
    monkeypatch.setenv("DOCKYARD_CLIENT_TIMEOUT", "7.5")
    assert read_timeout_from_env() == 7.5
    monkeypatch.setenv("DOCKYARD_CLIENT_TIMEOUT", "0")
    assert read_timeout_from_env() is None
    for bad in ("soon", "-1", "nan", "inf"):
        monkeypatch.setenv("DOCKYARD_CLIENT_TIMEOUT", bad)
        with pytest.raises(DockyardError, match="invalid DOCKYARD_CLIENT_TIMEOUT"):
            read_timeout_from_env()

"""The API's acceptor under pressure, in a process of its own with few descriptors.

A real UnixHTTPServer on a real socket, with a handler that can hold its
requests (a stand-in for a foreground run's wait), in a child process whose
RLIMIT_NOFILE is small: no root, no engine.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

SERVER = r"""
import logging, resource, signal, sys, threading
from pathlib import Path
from dockyard.daemon.api.http import Response
from dockyard.daemon.api.server import Limits, UnixHTTPServer

logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")
path, nofile, cap = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
release = threading.Event()
signal.signal(signal.SIGUSR1, lambda *_: release.set())

def handler(req):
    if req.path == "/hold":  # busy until SIGUSR1
        return Response(200, deferred=lambda: (release.wait(), {"held": True})[1])
    return Response(200, {"path": req.path})

resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
server = UnixHTTPServer(path, handler, lambda e: Response(500, {"message": str(e)}), Limits(cap, 30.0))
print("ready", flush=True)
server.serve_forever()
"""


class Server:
    """The server's process, and what it logged so far."""

    def __init__(self, tmp_path: Path, nofile: int, cap: int) -> None:
        self.path = tmp_path / "api.sock"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(self.path), str(nofile), str(cap)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "ready\n"
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_log(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert time.monotonic() < deadline, f"the server never logged {text!r}: {self.lines}"
            time.sleep(0.02)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


def _send(path: Path, target: str, close: bool = False) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(20)
    sock.connect(str(path))
    extra = "Connection: close\r\n" if close else ""
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
    return sock


def _status(sock: socket.socket) -> int:
    """The status of the answer on this connection; 0 when it was closed without one."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return 0
        data += chunk
    return int(data.split(b" ", 2)[1])


def test_out_of_descriptors_with_every_connection_busy_the_acceptor_backs_off(tmp_path: Path) -> None:
    """EMFILE in accept() and nothing idle to close: it waits and tries again, never ends."""
    server = Server(tmp_path, nofile=48, cap=1000)
    held: list[socket.socket] = []
    try:
        # Each connection's request is held: busy, not idle. The descriptors run out
        # in accept() (the rest wait in the listen backlog: their connect succeeded).
        held = [_send(server.path, "/hold") for _ in range(60)]
        server.wait_log("cannot accept an API connection: Too many open files")
        server.proc.send_signal(signal.SIGUSR1)  # the held requests end; their descriptors come back
        # Every connection gets an answer: served, or refused with a clear 503; none is dropped.
        statuses = [_status(s) for s in held]
        assert set(statuses) <= {200, 503} and statuses.count(200) >= 30, statuses
        # The acceptor is alive and accepting (a 503 says the last ones are still being
        # counted out: it is an answer too, and the next try gets in).
        deadline = time.monotonic() + 10
        while True:
            with _send(server.path, "/ping") as late:
                status = _status(late)
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert status == 200
        assert server.proc.poll() is None
        server.wait_log("accepting API connections again")
    finally:
        for sock in held:
            sock.close()
        server.stop()
    assert not any("Traceback" in line for line in server.lines), server.lines


def test_over_the_cap_the_oldest_idle_connection_makes_room(tmp_path: Path) -> None:
    server = Server(tmp_path, nofile=1024, cap=4)
    idle: list[socket.socket] = []
    held: list[socket.socket] = []
    try:
        for _ in range(4):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(10)
            sock.connect(str(server.path))
            idle.append(sock)
        with _send(server.path, "/ping", close=True) as fresh:
            assert _status(fresh) == 200
        assert idle[0].recv(1) == b""  # the oldest idle one was closed to make room
        # Four requests held: each takes the place of an idle one (a request sent is never
        # taken for idle), and then every connection is busy: the next is refused, saying why.
        held = [_send(server.path, "/hold") for _ in range(4)]
        for sock in idle[1:]:
            assert sock.recv(1) == b""
        with _send(server.path, "/ping") as over:
            assert _status(over) == 503
        server.proc.send_signal(signal.SIGUSR1)
        assert [_status(s) for s in held] == [200] * 4
    finally:
        for sock in idle + held:
            sock.close()
        server.stop()
    server.wait_log("API connections under pressure")

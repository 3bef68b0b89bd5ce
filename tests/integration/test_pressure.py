"""The engine under pressure: descriptors running out, idle and saturating API clients.

The daemon's API must outlive any number of clients: with 1,024
descriptors, 1,100 connections once ended its accept loop for good (`ps`
hung, `daemon status` said "not running" while the process held the lock).
"""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

from dockyard.clients.api import Client
from lab import Lab


def _connect_many(path: Path, count: int) -> tuple[list[socket.socket], int]:
    """`count` connections to the API socket: those made, and how many attempts were refused."""
    socks, refused = [], 0
    for _ in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.monotonic() + 10
        while True:
            try:
                sock.connect(str(path))
                socks.append(sock)
                break
            except BlockingIOError:  # the listen backlog is full: the acceptor takes them as it can
                if time.monotonic() > deadline:
                    sock.close()
                    refused += 1
                    break
                time.sleep(0.01)
            except OSError:
                sock.close()
                refused += 1
                break
    return socks, refused


def _closed_by_daemon(sock: socket.socket) -> bool:
    """Whether the daemon closed this connection (end of stream or reset), without waiting."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.settimeout(timeout)


def _start_daemon(lab: Lab, config: dict[str, object], nofile: int | None = None) -> subprocess.Popen[bytes]:
    """A daemon of the lab's root, with this daemon.json and descriptor limit; once it serves."""
    lab.root.mkdir(parents=True, exist_ok=True)
    (lab.root / "daemon.json").write_text(json.dumps(config))
    log = lab.root / "daemon.log"

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    cmd = [sys.executable, "-m", "dockyard.daemon.main", "--root", str(lab.root), "--host-netns", lab.host]
    with open(log, "ab") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=out, preexec_fn=limit)
    lab.procs.append(p)  # type: ignore[arg-type]
    ready = f"dockyardd {p.pid} serving"  # not the shim's line, which comes first
    lab.eventually(lambda: ready in log.read_text() or p.poll() is not None, 30, "daemon serving")
    assert p.poll() is None, log.read_text()
    return p


def _assert_usable(lab: Lab, name: str) -> None:
    """ps answers within its timeout, status says running, and run -d works."""
    r = lab.dy("ps", "-q", timeout=30)
    assert r.returncode == 0, r.stderr
    r = lab.dy("daemon", "status", timeout=30)
    assert r.returncode == 0 and "is running" in r.stdout, (r.stdout, r.stderr)
    cid = lab.run_d("--name", name, "sleep", "300")
    assert lab.inspect(cid)["State"]["Running"]


def test_the_api_outlives_more_connections_than_descriptors(lab: Lab) -> None:
    daemon = _start_daemon(lab, {}, nofile=1024)
    soft, hard = (
        int(x) for x in Path(f"/proc/{daemon.pid}/limits").read_text().split("Max open files")[1].split()[:2]
    )
    assert (soft, hard) == (1024, 1024)
    # 600 held host ports: the descriptors run out in accept(), not only at the connection cap.
    lab.run_d("--name", "ports", "-p", "20000-20599:20000-20599", "sleep", "300")

    held, refused = _connect_many(lab.root / "dockyard.sock", 1100)
    try:
        assert len(held) + refused == 1100 and len(held) >= 1024  # more than the daemon could hold
        _assert_usable(lab, "while-held")
        # The daemon shed the oldest idle connections rather than hold them all.
        assert sum(_closed_by_daemon(s) for s in held) >= 1100 - 1024
    finally:
        for sock in held:
            sock.close()
    _assert_usable(lab, "after")
    assert daemon.poll() is None
    text = (lab.root / "daemon.log").read_text()
    assert "cannot accept an API connection: Too many open files" in text, text[-3000:]
    assert "API connections under pressure" in text


def test_idle_connections_are_closed_but_long_requests_are_not(lab: Lab) -> None:
    _start_daemon(lab, {"api-idle-timeout": 1})
    silent, refused = _connect_many(lab.root / "dockyard.sock", 20)
    assert (len(silent), refused) == (20, 0)
    half = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    half.connect(str(lab.root / "dockyard.sock"))
    half.sendall(b"GET /_ping HTTP/1.1\r\n")  # a request begun, never finished
    try:
        lab.eventually(lambda: all(_closed_by_daemon(s) for s in [*silent, half]), 10, "idle ones closed")
    finally:
        for sock in [*silent, half]:
            sock.close()

    # A keep-alive client whose connection the daemon closed carries on (a POST included).
    client = Client(lab.root, autostart=False)
    assert client.containers() == []
    conn = client.connection()
    lab.eventually(lambda: _closed_by_daemon(conn.sock), 10, "the client's idle connection closed")
    cid = client.create({"Cmd": ["sh", "-c", "sleep 3; exit 7"], "HostConfig": {"NetworkMode": "bridge"}})[
        "Id"
    ]
    client.start(cid)
    # Waiting is not idling: the daemon sends nothing for 3 s, and the answer still comes.
    assert client.wait(cid) == 7
    client.close()
    r = lab.dy("run", "--rm", "sh", "-c", "sleep 3; echo done", timeout=60)
    assert (r.returncode, r.stdout) == (0, "done\n"), r.stderr
    lab.run_d("--name", "long", "sleep", "300")
    r = lab.dy("exec", "long", "sh", "-c", "sleep 3; exit 3", timeout=60)
    assert r.returncode == 3, r.stderr


def test_a_saturated_daemon_is_running_and_says_why(lab: Lab) -> None:
    daemon = _start_daemon(lab, {"api-max-connections": 4})
    lab.run_d("--name", "sleeper", "sleep", "300")
    client = Client(lab.root, autostart=False)
    # Four waits: every connection the daemon may have open is busy serving one.
    waits = [client.deferred("POST", "/containers/sleeper/wait") for _ in range(4)]
    try:
        r = lab.dy("ps", timeout=30)
        assert r.returncode == 125 and "the daemon is busy" in r.stderr, r.stderr
        assert "api-max-connections" in r.stderr
        r = lab.dy("daemon", "status", timeout=30)
        assert r.returncode == 0 and "is running" in r.stdout and "busy" in r.stdout, (r.stdout, r.stderr)
        # It can be stopped all the same (its API refuses: SIGTERM, which it handles).
        r = lab.dy("daemon", "stop", timeout=60)
        assert r.returncode == 0 and "stopped" in r.stdout, (r.stdout, r.stderr)
        assert daemon.wait(timeout=10) == 0
    finally:
        for conn in waits:
            conn.close()
    r = lab.dy("daemon", "status")
    assert r.returncode == 1 and "not running" in r.stderr

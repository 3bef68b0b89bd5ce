"""Where names that are not ours go, and asking there.

The servers, in order of preference: the asking container's own `--dns`
(without loopback addresses: the asker's loopback is its own namespace,
which this process cannot reach), else daemon.json's `dns`, else the
nameservers of the host's resolv.conf; never one of our own listening
addresses. Each server gets FORWARD_TIMEOUT; the query is relayed as the
client sent it (its id kept) and the answer comes back unchanged.

daemon.json and resolv.conf are read again only when they change (their
mtime, ctime, size or inode differ from the last read), not on every
forwarded query: a busy container must not cost a JSON parse and the
validation of every setting per lookup.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from dockyard.dns.messages import frame, read_message
from dockyard.errors import DockyardError
from dockyard.model import Container
from dockyard.settings import Paths, load_settings

log = logging.getLogger(__name__)

PORT = 53
FORWARD_TIMEOUT = 2.0

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
T = TypeVar("T")


class FileWatch(Generic[T]):
    """A value read from a file, read again only when the file changes."""

    def __init__(self, path: Path, read: Callable[[], T]) -> None:
        self.path = path
        self._read = read
        self._lock = threading.Lock()
        self._seen: tuple[int, ...] | None = None
        self._value: T | None = None

    def _stamp(self) -> tuple[int, ...]:
        try:
            st = os.stat(self.path)
        except OSError:
            return ()  # missing or unreadable: one state of its own
        # ctime too: it changes with every write, and cannot be set back as mtime can.
        return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_dev)

    def get(self) -> T:
        with self._lock:  # TCP clients are served by threads of their own
            stamp = self._stamp()
            if stamp != self._seen or self._value is None:
                self._value = self._read()
                self._seen = stamp
            return self._value


def nameservers(text: str) -> tuple[Address, ...]:
    """The `nameserver` lines of a resolv.conf, IPv4 and IPv6 (a link-local one, which
    needs its interface's scope, reaches nothing from this namespace: left out)."""
    servers: list[Address] = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            with contextlib.suppress(ValueError):
                server = ipaddress.ip_address(words[1])
                if not server.is_link_local:
                    servers.append(server)
    return tuple(servers)


class Upstreams:
    def __init__(self, root: Path, resolv_conf: Path, own: Callable[[], frozenset[Address]]) -> None:
        self.root = root
        # Our own listening addresses: never forward to ourselves.
        self.own = own
        self._daemon = FileWatch(Paths(root).daemon_json, self._read_daemon_dns)
        self._host = FileWatch(resolv_conf, self._read_host_dns)

    def servers(self, asker: Container | None) -> tuple[Address, ...]:
        servers: tuple[Address, ...] = (
            tuple(s for s in asker.config.dns if not s.is_loopback) if asker else ()
        )
        servers = servers or self._daemon.get() or self._host.get()
        own = self.own()
        return tuple(s for s in servers if s not in own)

    def _read_daemon_dns(self) -> tuple[Address, ...]:
        try:
            servers = load_settings(self.root).dns
        except DockyardError as e:
            log.warning("ignoring daemon.json's dns: %s", e)
            return ()
        log.info("daemon.json read: dns %s", ", ".join(map(str, servers)) or "(none)")
        return servers

    def _read_host_dns(self) -> tuple[Address, ...]:
        path = self._host.path
        try:
            servers = nameservers(path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            servers = ()
        log.info("%s read: nameservers %s", path, ", ".join(map(str, servers)) or "(none)")
        return servers

    def ask(self, data: bytes, servers: tuple[Address, ...], tcp: bool) -> bytes | None:
        """The first server's answer, relayed unchanged; None when none answers."""
        for server in servers:
            answer = _ask_udp(data, server)
            if answer is not None and tcp and answer[2] & 0x02:  # TC: ask again over TCP
                answer = _ask_tcp(data, server) or answer
            if answer is not None:
                return answer
        return None


def _ask_udp(data: bytes, server: Address) -> bytes | None:
    """The server's answer to `data`, or None when it gives none in time."""
    deadline = time.monotonic() + FORWARD_TIMEOUT
    family = socket.AF_INET6 if server.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((str(server), PORT))
            sock.send(data)
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                answer = sock.recv(65535)
                # Same query id, and a response (QR set): anything else is noise.
                if len(answer) >= 12 and answer[:2] == data[:2] and answer[2] & 0x80:
                    return answer
        except OSError:  # timeout, unreachable, refused
            return None
    return None


def _ask_tcp(data: bytes, server: Address) -> bytes | None:
    try:
        with socket.create_connection((str(server), PORT), timeout=FORWARD_TIMEOUT) as sock:
            sock.sendall(frame(data))
            return read_message(sock)
    except OSError:
        return None

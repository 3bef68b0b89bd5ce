"""The sockets on the user networks' gateways, and the loop that serves them.

Each user network's gateway gets a UDP and a TCP socket on port 53, bound
with IP_FREEBIND so that a gateway may be bound before its bridge has the
address (at restore, for instance); a binding that fails is retried every
RETRY_INTERVAL. UDP queries are answered on the loop's thread; forwarding
one, or serving a TCP client, happens on a worker thread, at most
MAX_WORKERS at a time, so a slow upstream never holds up local answers.
"""

from __future__ import annotations

import contextlib
import functools
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from dockyard.dns import log
from dockyard.dns.answers import Forward, Resolver
from dockyard.dns.messages import Address, frame, read_message
from dockyard.errors import DockyardError
from dockyard.model import Network
from dockyard.store import Store

PORT = 53
TCP_IDLE_TIMEOUT = 10.0
MAX_WORKERS = 64  # threads forwarding UDP queries or serving TCP clients
RETRY_INTERVAL = 2.0  # between attempts to bind a gateway that failed
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)


@dataclass
class Listener:
    """The two sockets bound on one network's gateway."""

    network: Network
    udp: socket.socket
    tcp: socket.socket

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()


def _bind(address: Address, kind: socket.SocketKind) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind)
    try:
        sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((str(address), PORT))
        if kind == socket.SOCK_STREAM:
            sock.listen(64)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Server:
    def __init__(self, store: Store, resolver: Resolver) -> None:
        self.store = store
        self.resolver = resolver
        self.listeners: dict[Address, Listener] = {}
        # Gateways whose binding failed, retried every RETRY_INTERVAL.
        self.unbound: dict[Address, Network] = {}
        # The bound gateways, replaced whole so that forwarding threads read it safely.
        self.bound: frozenset[Address] = frozenset()
        self.selector = selectors.DefaultSelector()
        self.workers = threading.BoundedSemaphore(MAX_WORKERS)

    def watch(self, sock: socket.socket, callback: Callable[[], None]) -> None:
        """Call `callback` from the loop whenever `sock` is readable (the process's signals)."""
        self.selector.register(sock, selectors.EVENT_READ, callback)

    def close(self) -> None:
        for listener in self.listeners.values():
            listener.close()
        self.listeners = {}
        self.selector.close()

    # -- networks ------------------------------------------------------------

    def reload(self, why: str) -> bool:
        """Bind every user network's gateway and unbind the rest; False when none is left."""
        try:
            networks = self.store.dns_networks()
        except DockyardError as e:  # the store turns sqlite3's errors into these
            if why == "start":
                raise DockyardError(f"cannot read the networks: {e}") from e
            log(f"{why}: cannot read networks, keeping the current ones: {e}")
            return bool(self.listeners or self.unbound)
        wanted = {n.gateway: n for n in networks if n.gateway is not None}
        for gateway in [g for g in self.listeners if g not in wanted]:
            listener = self.listeners.pop(gateway)
            for sock in (listener.udp, listener.tcp):
                self.selector.unregister(sock)
            listener.close()
        self.unbound = {}
        for gateway, network in wanted.items():
            if gateway in self.listeners:
                self.listeners[gateway].network = network
            else:
                self._listen(gateway, network)
        self.bound = frozenset(self.listeners)
        served = ", ".join(f"{n.name} on {g}" for g, n in wanted.items()) or "no user network"
        failed = f" (cannot bind {', '.join(map(str, self.unbound))} yet)" if self.unbound else ""
        log(f"{why}: serving {served}{failed}")
        return bool(wanted)

    def _listen(self, gateway: Address, network: Network, quiet: bool = False) -> None:
        udp = tcp = None
        try:
            udp = _bind(gateway, socket.SOCK_DGRAM)
            tcp = _bind(gateway, socket.SOCK_STREAM)
        except OSError as e:
            if udp is not None:
                udp.close()
            if not quiet:  # said once; the retries stay silent
                proto = "tcp" if udp is not None else "udp"
                log(f"cannot bind {proto} {gateway}:{PORT} for {network.name}: {e.strerror}; will retry")
            self.unbound[gateway] = network
            return
        listener = Listener(network, udp, tcp)
        self.listeners[gateway] = listener
        self.selector.register(udp, selectors.EVENT_READ, functools.partial(self._on_udp, listener))
        self.selector.register(tcp, selectors.EVENT_READ, functools.partial(self._on_accept, listener))

    def _retry_unbound(self) -> None:
        pending, self.unbound = self.unbound, {}
        for gateway, network in pending.items():
            self._listen(gateway, network, quiet=True)
        self.bound = frozenset(self.listeners)
        if not self.unbound:
            log(f"now serving every network: {', '.join(map(str, self.bound))}")

    # -- the loop ------------------------------------------------------------

    def run(self, stopping: Callable[[], bool]) -> None:
        """Serve until `stopping()` says so (checked after each round of events)."""
        retry_at = time.monotonic() + RETRY_INTERVAL
        while not stopping():
            timeout = max(0.0, retry_at - time.monotonic()) if self.unbound else None
            for key, _events in self.selector.select(timeout):
                key.data()
            if self.unbound and not stopping() and time.monotonic() >= retry_at:
                self._retry_unbound()
            if time.monotonic() >= retry_at:
                retry_at = time.monotonic() + RETRY_INTERVAL

    # -- traffic -------------------------------------------------------------

    def _on_udp(self, listener: Listener) -> None:
        for _ in range(64):  # drain a burst, then let the other sockets have a turn
            try:
                data, (host, port) = listener.udp.recvfrom(65535)
            except OSError:  # BlockingIOError: drained
                return
            outcome = self.resolver.resolve(listener.network, Address(host), data, tcp=False)
            if isinstance(outcome, Forward):
                self._in_worker(self._forward_udp, listener.udp, outcome, (host, port))
            elif outcome is not None:
                with contextlib.suppress(OSError):
                    listener.udp.sendto(outcome, (host, port))

    def _forward_udp(self, sock: socket.socket, fwd: Forward, client: tuple[str, int]) -> None:
        answer = self.resolver.forward(fwd)
        with contextlib.suppress(OSError):  # the socket may be gone after a reload
            sock.sendto(answer, client)

    def _on_accept(self, listener: Listener) -> None:
        try:
            conn, (host, _port) = listener.tcp.accept()
        except OSError:
            return
        conn.setblocking(True)
        conn.settimeout(TCP_IDLE_TIMEOUT)
        if not self._in_worker(self._serve_tcp, conn, listener.network, Address(host)):
            conn.close()

    def _serve_tcp(self, conn: socket.socket, network: Network, source: Address) -> None:
        with conn:
            try:
                while (data := read_message(conn)) is not None:
                    outcome = self.resolver.resolve(network, source, data, tcp=True)
                    if isinstance(outcome, Forward):
                        outcome = self.resolver.forward(outcome)
                    if outcome is None:
                        return
                    conn.sendall(frame(outcome))
            except OSError:
                return

    def _in_worker(self, target: Callable[..., None], *args: object) -> bool:
        """Run target in a thread of its own, if fewer than MAX_WORKERS are busy."""
        if not self.workers.acquire(blocking=False):
            return False

        def run() -> None:
            try:
                target(*args)
            finally:
                self.workers.release()

        threading.Thread(target=run, daemon=True).start()
        return True

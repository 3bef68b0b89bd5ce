"""The sockets on the user networks' gateways, and the loop that serves them.

Each user network's gateway gets a UDP and a TCP socket on port 53, bound
with IP_FREEBIND so that a gateway may be bound before its bridge has the
address (at restore, for instance); a binding that fails is retried every
RETRY_INTERVAL.

Who is served: only the network's own (answers.may_ask: a source inside
the subnet of the gateway asked). Every gateway is an address of the host,
reachable from the LAN and from other networks; what comes from elsewhere
is not this resolver's business and costs it nothing: a UDP query is
dropped unread (no answer, so a forged source cannot turn the resolver
into a reflector), a TCP connection is closed as soon as it is accepted,
before it takes anything. Refusals are counted and logged, at most every
LOG_EVERY seconds.

The loop's thread does all socket work but forwarding: UDP queries are
answered on it; a TCP connection waits in the loop (a descriptor, no
thread) until a whole length-prefixed message has come, and only then
takes a worker thread to answer it. Forwarding a UDP query, or answering
a TCP one, happens on a worker: at most MAX_WORKERS at a time and
MAX_WORKERS_PER_SOURCE for one source, so a slow upstream or one busy
container never holds up local answers or the other containers. TCP
connections are capped at MAX_TCP_PER_SOURCE per source and MAX_TCP in
all (over that, the oldest idle one makes room), and closed after
TCP_IDLE_TIMEOUT without a whole query (RFC 7766 6.2.3: a server may
close idle connections; clients reconnect).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import functools
import ipaddress
import logging
import os
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dockyard.dns.answers import Forward, Resolver, may_ask
from dockyard.dns.messages import Address, frame
from dockyard.dns.stats import Stats
from dockyard.errors import DockyardError
from dockyard.model import Network
from dockyard.store import Store

log = logging.getLogger(__name__)

PORT = 53
# DOCKYARD_DNS_IDLE_TIMEOUT changes it, for tests that must see an idle connection closed.
TCP_IDLE_TIMEOUT = float(os.environ.get("DOCKYARD_DNS_IDLE_TIMEOUT") or 10.0)
MAX_TCP = 256  # open TCP connections in all
MAX_TCP_PER_SOURCE = 16  # open TCP connections of one source address
MAX_WORKERS = 64  # threads forwarding UDP queries or answering TCP ones
MAX_WORKERS_PER_SOURCE = 16
ACCEPT_BURST = 64
RETRY_INTERVAL = 2.0  # between attempts to bind a gateway that failed
LOG_EVERY = 10.0  # seconds between two lines counting refusals
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
IPV6_FREEBIND = getattr(socket, "IPV6_FREEBIND", 78)
OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


@dataclass
class Listener:
    """The two sockets bound on one network's gateway."""

    network: Network
    udp: socket.socket
    tcp: socket.socket
    paused: bool = False  # its TCP socket out of the loop while descriptors are short
    closed: bool = False

    def close(self) -> None:
        self.closed = True
        self.udp.close()
        self.tcp.close()


@dataclass(eq=False)
class TcpClient:
    """One accepted TCP connection and the part of a message read so far."""

    sock: socket.socket
    listener: Listener
    source: Address
    buf: bytes = b""
    deadline: float = field(default_factory=lambda: time.monotonic() + TCP_IDLE_TIMEOUT)

    def message(self) -> bytes | None:
        """The first whole message of what was read, taken out of the buffer."""
        if len(self.buf) < 2:
            return None
        end = 2 + struct.unpack("!H", self.buf[:2])[0]
        if len(self.buf) < end:
            return None
        data, self.buf = self.buf[2:end], self.buf[end:]
        return data


def _bind(address: Address, kind: socket.SocketKind) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if address.version == 6 else socket.AF_INET, kind)
    try:
        if address.version == 6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
        else:
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
        # TCP connections waiting for a query, oldest deadline first; the loop's alone.
        self.idle: collections.OrderedDict[TcpClient, None] = collections.OrderedDict()
        self.tcp_open: collections.Counter[Address] = collections.Counter()
        # Worker slots: taken on the loop's thread, given back by the workers.
        self._slots_lock = threading.Lock()
        self.busy = 0
        self.busy_of: collections.Counter[Address] = collections.Counter()
        # TCP connections workers are done with, (client, keep), and the loop's wake-up.
        self._returned: collections.deque[tuple[TcpClient, bool]] = collections.deque()
        self._wake_r, self._wake_w = socket.socketpair()
        for s in (self._wake_r, self._wake_w):
            s.setblocking(False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        self.refused: collections.Counter[str] = collections.Counter()
        # Counts for the daemon's metrics (stats.py); the process gives it its file.
        self.stats = resolver.stats = Stats(None)
        self._logged = 0.0
        self._resume_at: float | None = None

    def watch(self, sock: socket.socket, callback: Callable[[], None]) -> None:
        """Call `callback` from the loop whenever `sock` is readable (the process's signals)."""
        self.selector.register(sock, selectors.EVENT_READ, callback)

    def close(self) -> None:
        for client in list(self.idle):
            self._drop(client)
        for listener in self.listeners.values():
            listener.close()
        self.listeners = {}
        self.selector.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- networks ------------------------------------------------------------

    def reload(self, why: str) -> bool:
        """Bind every user network's gateway and unbind the rest; False when none is left."""
        try:
            networks = self.store.dns_networks()
        except DockyardError as e:  # the store turns sqlite3's errors into these
            if why == "start":
                raise DockyardError(f"cannot read the networks: {e}") from e
            log.warning("%s: cannot read networks, keeping the current ones: %s", why, e)
            return bool(self.listeners or self.unbound)
        # Each gateway of each network: the IPv4 ones, and the IPv6 ones where the network has IPv6.
        wanted: dict[Address, Network] = {
            c.gateway: n
            for v in (4, 6)
            for n in networks
            for c in n.subnet_configs(v)
            if c.gateway is not None
        }
        for gateway in [g for g in self.listeners if g not in wanted]:
            listener = self.listeners.pop(gateway)
            self.selector.unregister(listener.udp)
            if not listener.paused:
                self.selector.unregister(listener.tcp)
            listener.close()
            for client in [c for c in self.idle if c.listener is listener]:
                self._drop(client)
        self.unbound = {}
        for gateway, network in wanted.items():
            if gateway in self.listeners:
                self.listeners[gateway].network = network
            else:
                self._listen(gateway, network)
        self.bound = frozenset(self.listeners)
        served = ", ".join(f"{n.name} on {g}" for g, n in wanted.items()) or "no user network"
        failed = f" (cannot bind {', '.join(map(str, self.unbound))} yet)" if self.unbound else ""
        log.info("%s: serving %s%s", why, served, failed)
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
                what = f"{proto} {gateway}:{PORT} for {network.name}"
                log.warning("cannot bind %s: %s; will retry", what, e.strerror)
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
            log.info("now serving every network: %s", ", ".join(map(str, self.bound)))

    # -- the loop ------------------------------------------------------------

    def run(self, stopping: Callable[[], bool]) -> None:
        """Serve until `stopping()` says so (checked after each round of events)."""
        retry_at = time.monotonic() + RETRY_INTERVAL
        while not stopping():
            due = [self._resume_at] if self._resume_at is not None else []
            if self.idle:
                due.append(next(iter(self.idle)).deadline)
            if self.unbound:
                due.append(retry_at)
            if self.refused:
                due.append(self._logged + LOG_EVERY)
            if (flush_at := self.stats.due()) is not None:
                due.append(flush_at)
            timeout = max(0.0, min(due) - time.monotonic()) if due else None
            for key, _events in self.selector.select(timeout):
                key.data()
            now = time.monotonic()
            while self.idle and (oldest := next(iter(self.idle))).deadline <= now:
                self._drop(oldest)
            if self._resume_at is not None and now >= self._resume_at:
                self._resume()
            if self.unbound and not stopping() and now >= retry_at:
                self._retry_unbound()
            if now >= retry_at:
                retry_at = now + RETRY_INTERVAL
            self._log_refusals(now)
            self.stats.flush(now)

    def _log_refusals(self, now: float) -> None:
        if self.refused and now >= self._logged + LOG_EVERY:
            log.warning("refused: %s", ", ".join(f"{n} {what}" for what, n in sorted(self.refused.items())))
            self.refused.clear()
            self._logged = now

    # -- UDP -------------------------------------------------------------------

    def _on_udp(self, listener: Listener) -> None:
        for _ in range(64):  # drain a burst, then let the other sockets have a turn
            try:
                # An IPv6 socket's peer is (host, port, flowinfo, scope id).
                data, peer = listener.udp.recvfrom(65535)
            except OSError:  # BlockingIOError: drained
                return
            host, port = peer[0], peer[1]
            source = ipaddress.ip_address(host)
            name = listener.network.name
            if not may_ask(listener.network, source):
                self.refused["UDP queries from outside their network (dropped)"] += 1
                self.stats.query(name, "udp", "refused")
                continue
            outcome = self.resolver.resolve(listener.network, source, data, tcp=False)
            self.stats.query(name, "udp", _outcome(outcome))
            if isinstance(outcome, Forward):
                if not self._in_worker(source, self._forward_udp, listener.udp, outcome, (host, port)):
                    self.refused["UDP queries to forward while workers were busy (dropped)"] += 1
            elif outcome is not None:
                with contextlib.suppress(OSError):
                    listener.udp.sendto(outcome, (host, port))

    def _forward_udp(self, sock: socket.socket, fwd: Forward, client: tuple[str, int]) -> None:
        answer = self.resolver.forward(fwd)
        with contextlib.suppress(OSError):  # the socket may be gone after a reload
            sock.sendto(answer, client)

    # -- TCP -------------------------------------------------------------------

    def _on_accept(self, listener: Listener) -> None:
        for _ in range(ACCEPT_BURST):
            try:
                conn, peer = listener.tcp.accept()
                host = peer[0]
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in OUT_OF_RESOURCES:
                    self._short_of_descriptors(listener, e)
                return
            source = ipaddress.ip_address(host)
            if not may_ask(listener.network, source):
                conn.close()  # before it takes anything
                self.refused["TCP connections from outside their network"] += 1
                self.stats.query(listener.network.name, "tcp", "refused")
                continue
            if self.tcp_open[source] >= MAX_TCP_PER_SOURCE:
                conn.close()
                self.refused[f"TCP connections over {MAX_TCP_PER_SOURCE} of one source"] += 1
                continue
            if sum(self.tcp_open.values()) >= MAX_TCP:
                if not self.idle:
                    conn.close()
                    self.refused[f"TCP connections over {MAX_TCP}, all busy"] += 1
                    continue
                self._drop(next(iter(self.idle)))
                self.refused["idle TCP connections closed to make room"] += 1
            conn.setblocking(False)
            client = TcpClient(conn, listener, source)
            self.tcp_open[source] += 1
            self._wait_for_query(client)

    def _short_of_descriptors(self, listener: Listener, e: OSError) -> None:
        """accept() found no descriptor: make room with the oldest idle connection, or pause."""
        if self.idle:
            self._drop(next(iter(self.idle)))
            self.refused["idle TCP connections closed for want of descriptors"] += 1
            return
        log.warning("cannot accept TCP on %s: %s; pausing TCP for 1 s", listener.network.gateway, e.strerror)
        for each in self.listeners.values():
            if not each.paused:
                self.selector.unregister(each.tcp)
                each.paused = True
        self._resume_at = time.monotonic() + 1.0

    def _resume(self) -> None:
        self._resume_at = None
        for listener in self.listeners.values():
            if listener.paused:
                self.selector.register(
                    listener.tcp, selectors.EVENT_READ, functools.partial(self._on_accept, listener)
                )
                listener.paused = False

    def _wait_for_query(self, client: TcpClient) -> None:
        client.deadline = time.monotonic() + TCP_IDLE_TIMEOUT
        if (message := client.message()) is not None:  # one came with the last
            self._answer_tcp(client, message)
            return
        self.selector.register(client.sock, selectors.EVENT_READ, functools.partial(self._on_tcp, client))
        self.idle[client] = None

    def _on_tcp(self, client: TcpClient) -> None:
        try:
            chunk = client.sock.recv(65537)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(client)
            return
        client.buf += chunk
        message = client.message()
        if message is not None:
            del self.idle[client]
            self.selector.unregister(client.sock)
            self._answer_tcp(client, message)

    def _answer_tcp(self, client: TcpClient, message: bytes) -> None:
        if not self._in_worker(client.source, self._serve_tcp, client, message):
            self.refused["TCP queries while workers were busy (connection closed)"] += 1
            self._drop(client)

    def _serve_tcp(self, client: TcpClient, message: bytes) -> None:
        """On a worker: answer one query, then give the connection back to the loop."""
        keep = False
        try:
            outcome = self.resolver.resolve(client.listener.network, client.source, message, tcp=True)
            self.stats.query(client.listener.network.name, "tcp", _outcome(outcome))
            if isinstance(outcome, Forward):
                outcome = self.resolver.forward(outcome)
            if outcome is not None:
                client.sock.settimeout(TCP_IDLE_TIMEOUT)
                client.sock.sendall(frame(outcome))
                client.sock.setblocking(False)
                keep = True
        except OSError:
            pass
        finally:
            self._returned.append((client, keep))
            with contextlib.suppress(OSError):  # BlockingIOError: a wake-up is pending already
                self._wake_w.send(b"\0")

    def _on_wake(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass
        while self._returned:
            client, keep = self._returned.popleft()
            if keep and not client.listener.closed:
                self._wait_for_query(client)
            else:
                self._drop(client)

    def _drop(self, client: TcpClient) -> None:
        if client in self.idle:  # else a worker had it: out of the selector already
            del self.idle[client]
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.selector.unregister(client.sock)
        client.sock.close()
        self.tcp_open[client.source] -= 1
        if self.tcp_open[client.source] <= 0:
            del self.tcp_open[client.source]

    # -- workers ---------------------------------------------------------------

    def _in_worker(self, source: Address, target: Callable[..., None], *args: object) -> bool:
        """Run target in a thread of its own, if a slot is free, for all and for this source."""
        with self._slots_lock:
            if self.busy >= MAX_WORKERS or self.busy_of[source] >= MAX_WORKERS_PER_SOURCE:
                return False
            self.busy += 1
            self.busy_of[source] += 1

        def run() -> None:
            try:
                target(*args)
            finally:
                with self._slots_lock:
                    self.busy -= 1
                    self.busy_of[source] -= 1
                    if self.busy_of[source] <= 0:
                        del self.busy_of[source]

        try:
            threading.Thread(target=run, daemon=True).start()
        except RuntimeError:  # can't start new thread
            with self._slots_lock:
                self.busy -= 1
                self.busy_of[source] -= 1
            return False
        return True


def _outcome(outcome: bytes | Forward | None) -> str:
    """A query's outcome, as the metrics count it (stats.py)."""
    if isinstance(outcome, Forward):
        return "forwarded"
    return "dropped" if outcome is None else "answered"

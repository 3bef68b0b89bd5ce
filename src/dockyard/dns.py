"""The DNS resolver of user networks: `python -m dockyard.dns --root ROOT`.

Containers on a user-defined network find each other by container name,
network alias or id; other names are forwarded to upstream resolvers. This
module is that resolver, a process of its own that the daemon starts and
stops (kernel/dns_process.py); it reads the store and nothing else. The
default `bridge` network gets no DNS by name, as in Docker.

Where it listens, and why: on each user network's GATEWAY address, port 53,
UDP and TCP, in the host namespace (aardvark-dns's way), not on 127.0.0.11
inside every container (Docker's way). The gateway is already the address
every member reaches, so there is no per-container socket and no DNAT rule
to make and undo; the network a query belongs to is simply the local address
it arrived on, so names of another network never resolve there; and it
survives container restarts, since nothing of it lives in a container.
Sockets are bound with IP_FREEBIND, so a gateway may be bound before its
bridge has the address (at restore, for instance).

What a query gets:
- A: the addresses on that network of the containers with an active
  endpoint there that match by name, by an alias of their endpoint (all of
  them when several share it) or by 12-hex short id (a full id is 64
  characters, longer than a DNS label may be); case does not matter.
  `name.<network>` and `name.<search domain of the asker>` too.
  Read fresh from the store on every query, so a container that joins or
  leaves is resolvable or gone at once. TTL 600, as Docker's.
- AAAA and other types of a local name: an empty NOERROR answer (no IPv6).
- PTR of an address of that network: the container's name.
- Anything else is forwarded over UDP, unchanged (the client's query id
  kept), to the asker's own `--dns` servers, else daemon.json's `dns`, else
  the host's resolv.conf; each server gets ~2 s; none answering is
  SERVFAIL. A single-label name that matches nothing here is NXDOMAIN at
  once, never forwarded (no public resolver knows one); with no server at
  all, a longer one is SERVFAIL. Internal networks are never forwarded: their members
  have no way out, and DNS must not become one.
- A query from outside the network's subnet is REFUSED: every gateway is a
  local address of the host, so another network's member could otherwise
  ask this network's gateway for its names.

Signals: SIGHUP re-reads the networks and binds or unbinds gateways;
SIGTERM ends the process; it also ends by itself when no user network is
left. `$ROOT/dns.pid` (locked while the process lives) holds the pid once
every socket is bound, and goes away at exit.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import ipaddress
import os
import selectors
import signal
import socket
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dnslib import OPCODE, PTR, QTYPE, RCODE, RR, A, DNSError, DNSHeader, DNSRecord

from dockyard.errors import DockyardError
from dockyard.model import Container, Network
from dockyard.settings import Paths, load_settings
from dockyard.store import Store

PID_FILE = "dns.pid"  # under $ROOT; kernel/dns_process.py uses the same name
PORT = 53
LOCAL_TTL = 600
FORWARD_TIMEOUT = 2.0
TCP_IDLE_TIMEOUT = 10.0
MAX_WORKERS = 64  # threads forwarding UDP queries or serving TCP clients
RETRY_INTERVAL = 2.0  # between attempts to bind a gateway that failed
UDP_LIMIT = 512  # without EDNS0
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
PTR_SUFFIX = ".in-addr.arpa"

Address = ipaddress.IPv4Address


def log(message: str) -> None:
    print(f"dockyard-dns[{os.getpid()}]: {message}", file=sys.stderr, flush=True)


# -- answering ----------------------------------------------------------------


@dataclass
class Query:
    """One query, with what it takes to answer it."""

    network: Network
    source: Address
    data: bytes
    request: DNSRecord
    tcp: bool
    store: Store

    @functools.cached_property
    def asker(self) -> Container | None:
        """The container that sent the query, found by its address on the network."""
        return self.store.dns_container_at(self.network.id, self.source)


@dataclass(frozen=True)
class Forward:
    """The query goes upstream: to these servers, in order."""

    query: Query
    servers: tuple[Address, ...]


def _reply(request: DNSRecord, rcode: int = RCODE.NOERROR, aa: int = 1) -> DNSRecord:
    if request.questions:
        reply = request.reply(ra=1, aa=aa)
    else:  # dnslib's reply() would invent an empty question
        reply = DNSRecord(DNSHeader(id=request.header.id, bitmap=request.header.bitmap, qr=1, ra=1, aa=aa))
    reply.header.rcode = rcode
    return reply


def _pack(reply: DNSRecord, query: Query) -> bytes:
    """Packed reply; cut to a bare truncated one if UDP cannot carry it."""
    data = reply.pack()
    limit = UDP_LIMIT
    for rr in query.request.ar:
        if rr.rtype == QTYPE.OPT:
            limit = max(limit, int(rr.rclass))
    if query.tcp or len(data) <= limit:
        return data
    cut = _reply(query.request, reply.header.rcode)
    cut.header.tc = 1
    return cut.pack()


def ptr_address(name: str) -> Address | None:
    """The address a `w.z.y.x.in-addr.arpa` name asks about, if it is one."""
    if not name.endswith(PTR_SUFFIX):
        return None
    parts = name[: -len(PTR_SUFFIX)].split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 for p in parts):
        return None
    try:
        return Address(".".join(reversed(parts)))
    except ValueError:
        return None


def _ask_udp(data: bytes, server: Address) -> bytes | None:
    """The server's answer to `data`, or None when it gives none in time."""
    deadline = time.monotonic() + FORWARD_TIMEOUT
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
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
            sock.sendall(struct.pack("!H", len(data)) + data)
            return _read_message(sock)
    except OSError:
        return None


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks = b""
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return chunks


def _read_message(sock: socket.socket) -> bytes | None:
    """One length-prefixed DNS message from a TCP stream (RFC 1035 4.2.2)."""
    head = _read_exactly(sock, 2)
    return _read_exactly(sock, struct.unpack("!H", head)[0]) if head else None


class Resolver:
    """Answers queries from the store; says where to forward the rest."""

    def __init__(
        self, store: Store, root: Path, resolv_conf: Path, own: Callable[[], frozenset[Address]]
    ) -> None:
        self.store = store
        self.root = root
        self.resolv_conf = resolv_conf
        # Our own listening addresses: never forward to ourselves.
        self.own = own

    def resolve(self, network: Network, source: Address, data: bytes, tcp: bool) -> bytes | Forward | None:
        """The reply to one query, or what to forward, or None for what deserves no answer."""
        try:
            request = DNSRecord.parse(data)
        except DNSError:
            return None
        if request.header.qr:
            return None
        query = Query(network, source, data, request, tcp, self.store)
        if request.header.opcode != OPCODE.QUERY:
            return _pack(_reply(request, RCODE.NOTIMP, aa=0), query)
        if len(request.questions) != 1:
            return _pack(_reply(request, RCODE.FORMERR, aa=0), query)
        if network.subnet is None or source not in network.subnet:
            return _pack(_reply(request, RCODE.REFUSED, aa=0), query)
        try:
            return self._answer(query)
        except (DockyardError, sqlite3.Error) as e:
            log(f"cannot read the store for {request.q.qname}: {e}")
        except Exception as e:  # one odd query must not stop the resolver of every container
            log(f"cannot answer {request.q.qname}: {e!r}")
        return _pack(_reply(request, RCODE.SERVFAIL, aa=0), query)

    def _answer(self, query: Query) -> bytes | Forward:
        question = query.request.q
        name = str(question.qname).rstrip(".").lower()
        if question.qtype == QTYPE.PTR and (address := ptr_address(name)) is not None:
            subnet = query.network.subnet
            if subnet is not None and address in subnet:
                return self._reverse(query, address)
        elif name and (addresses := self._lookup(query, name)):
            reply = _reply(query.request)
            if question.qtype in (QTYPE.A, QTYPE.ANY):
                for address in addresses:
                    reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(str(address)), ttl=LOCAL_TTL))
            return _pack(reply, query)
        if name and "." not in name and question.qtype != QTYPE.PTR:
            # A single label is a container's kind of name: ours to answer, and
            # no public resolver knows one (nor should hear of it).
            return _pack(_reply(query.request, RCODE.NXDOMAIN, aa=1), query)
        servers = self.upstreams(query)
        if servers:
            return Forward(query, servers)
        rcode = RCODE.NXDOMAIN if name and "." not in name else RCODE.SERVFAIL
        return _pack(_reply(query.request, rcode, aa=int(rcode == RCODE.NXDOMAIN)), query)

    def _lookup(self, query: Query, name: str) -> list[Address]:
        found = self.store.dns_addresses(query.network.id, name)
        if found or "." not in name:
            return found
        # name.<network> (as Docker), name.<a search domain of the asker>.
        suffixes = [query.network.name.lower()]
        if query.asker is not None:
            suffixes += [d.strip(".").lower() for d in query.asker.config.dns_search]
        for suffix in suffixes:
            if suffix and name.endswith("." + suffix):
                found = self.store.dns_addresses(query.network.id, name[: -len(suffix) - 1])
                if found:
                    return found
        return []

    def _reverse(self, query: Query, address: Address) -> bytes:
        container = self.store.dns_container_at(query.network.id, address)
        if container is None:
            return _pack(_reply(query.request, RCODE.NXDOMAIN), query)
        reply = _reply(query.request)
        qname = query.request.q.qname
        reply.add_answer(RR(qname, QTYPE.PTR, rdata=PTR(container.name + "."), ttl=LOCAL_TTL))
        return _pack(reply, query)

    # -- upstream ------------------------------------------------------------

    def upstreams(self, query: Query) -> tuple[Address, ...]:
        """Where other names go: the asker's --dns, else daemon.json's dns, else the host's."""
        if query.network.internal:
            return ()
        asker = query.asker
        # The asker's loopback means its own namespace, which this process cannot reach.
        servers = tuple(s for s in asker.config.dns if not s.is_loopback) if asker else ()
        servers = servers or self._daemon_dns() or self._host_dns()
        own = self.own()
        return tuple(s for s in servers if s not in own)

    def _daemon_dns(self) -> tuple[Address, ...]:
        try:
            return load_settings(self.root).dns
        except DockyardError as e:
            log(f"ignoring daemon.json's dns: {e}")
            return ()

    def _host_dns(self) -> tuple[Address, ...]:
        try:
            lines = self.resolv_conf.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ()
        servers = []
        for line in lines:
            words = line.split()
            if len(words) >= 2 and words[0] == "nameserver":
                with contextlib.suppress(ValueError):
                    servers.append(Address(words[1]))
        return tuple(servers)

    def forward(self, fwd: Forward) -> bytes:
        """The first upstream answer, relayed unchanged; SERVFAIL when none comes."""
        for server in fwd.servers:
            answer = _ask_udp(fwd.query.data, server)
            if answer is not None and fwd.query.tcp and answer[2] & 0x02:  # TC: ask again over TCP
                answer = _ask_tcp(fwd.query.data, server) or answer
            if answer is not None:
                return answer
        return _pack(_reply(fwd.query.request, RCODE.SERVFAIL, aa=0), fwd.query)


# -- serving ------------------------------------------------------------------


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


@dataclass
class Server:
    root: Path
    resolv_conf: Path
    listeners: dict[Address, Listener] = field(default_factory=dict)
    # Gateways whose binding failed, retried every RETRY_INTERVAL.
    unbound: dict[Address, Network] = field(default_factory=dict)
    # The bound gateways, replaced whole so that forwarding threads read it safely.
    bound: frozenset[Address] = frozenset()

    def __post_init__(self) -> None:
        self.store = Store(Paths(self.root).database)
        self.resolver = Resolver(self.store, self.root, self.resolv_conf, lambda: self.bound)
        self.selector = selectors.DefaultSelector()
        self.workers = threading.BoundedSemaphore(MAX_WORKERS)
        self.stopping = False

    # -- networks ------------------------------------------------------------

    def reload(self, why: str) -> bool:
        """Bind every user network's gateway and unbind the rest; False when none is left."""
        try:
            networks = self.store.dns_networks()
        except (DockyardError, sqlite3.Error) as e:
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
                while (data := _read_message(conn)) is not None:
                    outcome = self.resolver.resolve(network, source, data, tcp=True)
                    if isinstance(outcome, Forward):
                        outcome = self.resolver.forward(outcome)
                    if outcome is None:
                        return
                    conn.sendall(struct.pack("!H", len(outcome)) + outcome)
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

    # -- the process ---------------------------------------------------------

    def run(self) -> int:
        pid_path = self.root / PID_FILE
        try:
            pid_fd = os.open(pid_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            log(f"cannot open {pid_path}: {e.strerror}")
            return 1
        try:
            fcntl.flock(pid_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(pid_fd)
            log(f"another resolver already serves {self.root}")
            return 1
        try:
            return self._serve(pid_fd)
        except DockyardError as e:
            log(str(e))
            return 1
        finally:
            with contextlib.suppress(OSError):
                pid_path.unlink()
            os.close(pid_fd)
            for listener in self.listeners.values():
                listener.close()
            self.store.close()

    def _serve(self, pid_fd: int) -> int:
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)  # the wakeup fd carries the signal number
        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        self.selector.register(wake_r, selectors.EVENT_READ, functools.partial(self._on_signal, wake_r))
        if not self.reload("start"):
            log("no user network: exiting")
            return 0
        # The pid goes in once every socket is bound: its presence means "answering".
        os.ftruncate(pid_fd, 0)
        os.pwrite(pid_fd, f"{os.getpid()}\n".encode(), 0)
        retry_at = time.monotonic() + RETRY_INTERVAL
        while not self.stopping:
            timeout = max(0.0, retry_at - time.monotonic()) if self.unbound else None
            for key, _events in self.selector.select(timeout):
                key.data()
            if self.unbound and not self.stopping and time.monotonic() >= retry_at:
                pending, self.unbound = self.unbound, {}
                for gateway, network in pending.items():
                    self._listen(gateway, network, quiet=True)
                self.bound = frozenset(self.listeners)
                if not self.unbound:
                    log(f"now serving every network: {', '.join(map(str, self.bound))}")
            if time.monotonic() >= retry_at:
                retry_at = time.monotonic() + RETRY_INTERVAL
        return 0

    def _on_signal(self, wake_r: socket.socket) -> None:
        try:
            signals = wake_r.recv(256)
        except OSError:
            return
        if signal.SIGTERM in signals or signal.SIGINT in signals:
            log("stopping")
            self.stopping = True
        elif signal.SIGHUP in signals and not self.reload("reload"):
            log("no user network left: exiting")
            self.stopping = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dockyard.dns", description="dockyard's DNS resolver for user networks"
    )
    parser.add_argument("--root", required=True, help="dockyard's state directory")
    parser.add_argument(
        "--resolv-conf",
        default="/etc/resolv.conf",
        help="the host's resolver list, the last choice for forwarding (default: /etc/resolv.conf)",
    )
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    try:
        server = Server(root, Path(args.resolv_conf))
    except DockyardError as e:
        log(str(e))
        return 1
    return server.run()


if __name__ == "__main__":
    sys.exit(main())

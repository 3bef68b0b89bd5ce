"""Host ports held open while they are published, as docker-proxy's bind does.

A published port is served by DNAT, but the port must also be taken on the
host so that no host process can bind it, and so that publishing a port a
host process already uses fails. Each hold is a bound socket (listening for
TCP) that never accepts: DNAT sends the traffic to the container first.
The bind alone is what refuses another bind (no SO_REUSEADDR here, so even
a process that sets it conflicts); listen() is kept so that `ss -ltn`
shows who holds the port, as it shows docker-proxy (tests/integration
count the holds that way), for about 1 ms per 1,000 ports.

A port on every address (host_ip None) is held on each family its
endpoint has: 0.0.0.0 for IPv4 only, :: with IPV6_V6ONLY for IPv6 only, and
one dual-stack :: socket (V6ONLY off) for both, which conflicts with any
bind of the port on either family. An explicit 0.0.0.0 or :: is its own
family only.

Mechanism only: this module says what the kernel answered (a BindStatus, or
HoldRefused carrying one); the words a user reads are ports.py's.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import socket
import threading
from collections.abc import Sequence

from dockyard.errors import KernelError
from dockyard.kernel import sysctl
from dockyard.model import BindStatus, PortBinding, Protocol

HostIp = ipaddress.IPv4Address | ipaddress.IPv6Address
# The address families a port on every address (host_ip None) is held on: 4, 6 or both.
Families = frozenset[int]
IPV4_ONLY: Families = frozenset({4})
# A hold is only bound, closed and counted: socket.SocketType, the C type,
# without the Python layer socket.socket adds for files and context managers
# (0.8 of 5.8 ms for a range's 1,000 holds).
Sock = socket.SocketType

_KINDS = {
    Protocol.TCP: (socket.SOCK_STREAM, socket.IPPROTO_TCP),
    Protocol.UDP: (socket.SOCK_DGRAM, socket.IPPROTO_UDP),
    Protocol.SCTP: (socket.SOCK_STREAM, socket.IPPROTO_SCTP),
}
_REFUSED = {errno.EADDRINUSE: BindStatus.IN_USE, errno.EADDRNOTAVAIL: BindStatus.NOT_LOCAL}


def _where(ip: HostIp | None, port: int, proto: Protocol) -> str:
    if isinstance(ip, ipaddress.IPv6Address):
        return f"[{ip}]:{port}/{proto}"
    return f"{ip or '0.0.0.0'}:{port}/{proto}"


# A range binds one address a thousand times: its text is made once.
@functools.lru_cache(maxsize=64)
def _address(ip: HostIp | None, families: Families) -> tuple[int, str, bool]:
    """(address family, address to bind, IPv6 only) for a host address."""
    if ip is None:
        if 6 not in families:
            return socket.AF_INET, "0.0.0.0", False
        return socket.AF_INET6, "::", 4 not in families
    if isinstance(ip, ipaddress.IPv6Address):
        return socket.AF_INET6, str(ip), True
    return socket.AF_INET, str(ip), False


class HoldRefused(KernelError):
    """The host would not bind a published port: another socket has it, or
    the address is not the host's. The caller words it for the user."""

    def __init__(self, binding: PortBinding, status: BindStatus, strerror: str) -> None:
        where = _where(binding.host_ip, binding.host_port, binding.proto)
        super().__init__(f"cannot hold host port {where}: {strerror}")
        self.binding = binding
        self.status = status


def _open(ip: HostIp | None, port: int, proto: Protocol, families: Families = IPV4_ONLY) -> Sock | None:
    """A socket bound to the port, or None when the kernel has no such protocol.

    Without SCTP in the kernel no host process can take an SCTP port
    either, so there is nothing to hold.
    """
    kind, number = _KINDS[proto]
    family, address, v6only = _address(ip, families)
    try:
        sock = Sock(family, kind, number)
    except OSError as e:
        if e.errno in (errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT, errno.EAFNOSUPPORT):
            return None
        raise
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
        # No SO_REUSEADDR: a bound socket without it conflicts with any other bind.
        sock.bind((address, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(0)
    except OSError:
        sock.close()
        raise
    return sock


def _try(
    ip: HostIp | None, port: int, proto: Protocol, families: Families = IPV4_ONLY
) -> tuple[BindStatus, Sock | None]:
    """What a bind answered, with the bound socket when it is free."""
    try:
        sock = _open(ip, port, proto, families)
    except OSError as e:
        status = _REFUSED.get(e.errno or 0)
        if status is None:
            raise KernelError(f"cannot try host port {_where(ip, port, proto)}: {e.strerror}") from e
        return status, None
    return BindStatus.FREE, sock


def probe(ip: HostIp | None, port: int, proto: Protocol, families: Families = IPV4_ONLY) -> BindStatus:
    """Whether the host could bind the port now, and if not, why."""
    status, sock = _try(ip, port, proto, families)
    if sock is not None:
        sock.close()
    return status


Where = tuple[HostIp | None, int, Protocol]


class PortHolds:
    """Bound sockets per owner (a container id).

    A probe may reserve the port it found free (`reserve`): the socket it
    bound is kept for the owner's `hold` that follows, instead of being
    closed and bound again (a 1,000-port range is 1,000 binds, not 2,000).
    Reservations a hold does not take go with `unreserve`.
    """

    def __init__(self) -> None:
        self._held: dict[str, list[Sock]] = {}
        self._reserved: dict[str, dict[Where, Sock]] = {}
        self._lock = threading.Lock()

    def probe(
        self, ip: HostIp | None, port: int, proto: Protocol, families: Families = IPV4_ONLY
    ) -> BindStatus:
        return probe(ip, port, proto, families)

    def reserve(
        self, owner: str, ip: HostIp | None, port: int, proto: Protocol, families: Families = IPV4_ONLY
    ) -> BindStatus:
        """A probe that keeps the port bound for the owner's next hold when it is free
        (`families`: those of the owner's endpoint, for a port on every address).

        Called once per port of a range (a thousand times for `-p 10000-10999`):
        a bind is the kernel's cost, everything around it is kept to a dict
        lookup or two."""
        status, sock = _try(ip, port, proto, families)
        if sock is not None:
            key = (ip, port, proto)
            with self._lock:
                mine = self._reserved.get(owner)
                if mine is None:
                    mine = self._reserved[owner] = {}
                old = mine.get(key)
                mine[key] = sock
            if old is not None:
                old.close()
        return status

    def reserve_many(
        self,
        owner: str,
        ip: HostIp | None,
        ports: Sequence[int],
        proto: Protocol,
        families: Families = IPV4_ONLY,
    ) -> tuple[int, BindStatus] | None:
        """reserve() for a run of ports of one address and protocol, in order, stopping at
        the first the host refuses: (its index, why), or None when every one is free.

        Linux has no batch bind, so each port is still a socket, a bind and a
        listen; what goes is the Python around each (a 1,000-port range spent
        as long there as in the kernel). The ports before a refusal stay
        reserved, as reserve() leaves them, for unreserve()."""
        kind, number = _KINDS[proto]
        family, address, v6only = _address(ip, families)
        stream = kind == socket.SOCK_STREAM
        six = family == socket.AF_INET6
        new = Sock
        got: list[tuple[Where, Sock]] = []
        refusal: tuple[int, BindStatus] | None = None
        try:
            for index, port in enumerate(ports):
                try:
                    sock = new(family, kind, number)
                except OSError as e:
                    if e.errno in (errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT, errno.EAFNOSUPPORT):
                        break  # no such protocol: nothing to hold, every port is free (_open)
                    raise KernelError(f"cannot try host port {_where(ip, port, proto)}: {e.strerror}") from e
                try:
                    if six:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
                    sock.bind((address, port))
                    if stream:
                        sock.listen(0)
                except OSError as e:
                    sock.close()
                    status = _REFUSED.get(e.errno or 0)
                    if status is None:
                        raise KernelError(
                            f"cannot try host port {_where(ip, port, proto)}: {e.strerror}"
                        ) from e
                    refusal = index, status
                    break
                got.append(((ip, port, proto), sock))
        finally:
            if got:
                with self._lock:
                    mine = self._reserved.get(owner)
                    if mine is None:
                        mine = self._reserved[owner] = {}
                    old = [mine[key] for key, _ in got if key in mine]
                    mine.update(got)
                for sock in old:
                    sock.close()
        return refusal

    def unreserve(self, owner: str) -> int:
        with self._lock:
            socks = self._reserved.pop(owner, {})
        for sock in socks.values():
            sock.close()
        return len(socks)

    def local_port_range(self) -> tuple[int, int]:
        """The host's ephemeral range, where random host ports come from."""
        return sysctl.local_port_range()

    def hold(self, owner: str, bindings: list[PortBinding], families: Families = IPV4_ONLY) -> None:
        """Take every binding's host port, or none of them (HoldRefused names the first refused).

        A reservation is taken over as it is: the owner's families do not change
        between its probe and its hold."""
        taken: list[Sock] = []
        with self._lock:
            reserved = self._reserved.get(owner, {})
            kept = [reserved.pop((b.host_ip, b.host_port, b.proto), None) for b in bindings]
            if not reserved:
                self._reserved.pop(owner, None)
        try:
            for b, sock in zip(bindings, kept, strict=True):
                if sock is not None:
                    taken.append(sock)
                    continue
                try:
                    sock = _open(b.host_ip, b.host_port, b.proto, families)
                except OSError as e:
                    status = _REFUSED.get(e.errno or 0)
                    if status is not None:
                        raise HoldRefused(b, status, e.strerror or str(e)) from None
                    where = _where(b.host_ip, b.host_port, b.proto)
                    raise KernelError(f"cannot hold host port {where}: {e.strerror}") from e
                if sock is not None:
                    taken.append(sock)
        except BaseException:
            for sock in taken:
                sock.close()
            for sock in kept:
                if sock is not None:
                    sock.close()
            raise
        with self._lock:
            self._held.setdefault(owner, []).extend(taken)

    def hold_each(
        self, owner: str, bindings: list[PortBinding], families: Families = IPV4_ONLY
    ) -> list[KernelError]:
        """Take what can be taken, one binding at a time; the refusals, for the caller to report.

        For holds taken again at restore: one port a host process grabbed
        meanwhile must not leave the owner's other ports unheld.
        """
        refused: list[KernelError] = []
        for b in bindings:
            try:
                self.hold(owner, [b], families)
            except KernelError as e:
                refused.append(e)
        return refused

    def release(self, owner: str) -> int:
        with self._lock:
            socks = self._held.pop(owner, [])
        for sock in socks:
            sock.close()
        return len(socks)

    def owners(self) -> set[str]:
        with self._lock:
            return set(self._held)

    def count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._held.values())

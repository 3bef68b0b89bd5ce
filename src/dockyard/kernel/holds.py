"""Host ports held open while they are published, as docker-proxy's bind does.

A published port is served by DNAT, but the port must also be taken on the
host so that no host process can bind it, and so that publishing a port a
host process already uses fails. Each hold is a bound socket (listening for
TCP) that never accepts: DNAT sends the traffic to the container first.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading

from dockyard.errors import Conflict, KernelError
from dockyard.model import PortBinding, Protocol

_KINDS = {
    Protocol.TCP: (socket.SOCK_STREAM, socket.IPPROTO_TCP),
    Protocol.UDP: (socket.SOCK_DGRAM, socket.IPPROTO_UDP),
    Protocol.SCTP: (socket.SOCK_STREAM, socket.IPPROTO_SCTP),
}


def _open(ip: ipaddress.IPv4Address | None, port: int, proto: Protocol) -> socket.socket | None:
    """A socket bound to the port, or None when the kernel has no such protocol.

    Without SCTP in the kernel no host process can take an SCTP port
    either, so there is nothing to hold.
    """
    kind, number = _KINDS[proto]
    try:
        sock = socket.socket(socket.AF_INET, kind, number)
    except OSError as e:
        if e.errno in (errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT, errno.EAFNOSUPPORT):
            return None
        raise
    try:
        # No SO_REUSEADDR: a bound socket without it conflicts with any other bind.
        sock.bind((str(ip) if ip else "0.0.0.0", port))
        if kind == socket.SOCK_STREAM:
            sock.listen(0)
    except OSError:
        sock.close()
        raise
    return sock


def can_bind(ip: ipaddress.IPv4Address | None, port: int, proto: Protocol) -> bool:
    try:
        sock = _open(ip, port, proto)
    except OSError:
        return False
    if sock is not None:
        sock.close()
    return True


class PortHolds:
    """Bound sockets per owner (a container id)."""

    def __init__(self) -> None:
        self._held: dict[str, list[socket.socket]] = {}
        self._lock = threading.Lock()

    def hold(self, owner: str, bindings: list[PortBinding]) -> None:
        """Take every binding's host port, or none of them."""
        taken: list[socket.socket] = []
        try:
            for b in bindings:
                try:
                    sock = _open(b.host_ip, b.host_port, b.proto)
                except OSError as e:
                    where = f"{b.host_ip_text}:{b.host_port}/{b.proto}"
                    if e.errno == errno.EADDRINUSE:
                        hint = ""
                        if b.host_port == 53 and b.host_ip is None:
                            hint = (
                                " (where user networks exist, dockyard's resolver listens on port 53 of"
                                " each gateway: publish on one host address, as in -p ADDR:53:53/udp)"
                            )
                        raise Conflict(
                            f"cannot publish {where}: address already in use by another process{hint}"
                        ) from None
                    if e.errno == errno.EADDRNOTAVAIL:
                        raise Conflict(
                            f"cannot publish {where}: {b.host_ip_text} is not an address of this host"
                        ) from None
                    raise KernelError(f"cannot hold host port {where}: {e.strerror}") from e
                if sock is not None:
                    taken.append(sock)
        except BaseException:
            for sock in taken:
                sock.close()
            raise
        with self._lock:
            self._held.setdefault(owner, []).extend(taken)

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

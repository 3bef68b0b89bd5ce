"""FDB and neighbour entries straight over rtnetlink: an event's few entries in one send.

Through pyroute2, each set or removal of an overlay's FDB or neighbour
entry cost about 0.6 ms of CPU (its asyncio loop, its message classes;
measured per watch event in the overlay lab), on every peer, for every
container started or removed anywhere. The messages are fixed and small:
this module builds them with struct (RTM_NEWNEIGH / RTM_DELNEIGH, AF_BRIDGE
for the device's own FDB entries, AF_INET / AF_INET6 for its neighbour
entries), sends up to BATCH of them in one write, and reads one
acknowledgement per message (the kernel handles each on its own: one that
fails does not stop the others). Listings stay with pyroute2.

The socket is made where the NeighSocket is made: the daemon makes it in
the host's namespace (kernel/vxlan.py's Vxlan, at the daemon's start).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from dockyard.errors import KernelError

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # acknowledgements without a copy of the request
RTM_NEWNEIGH = 28
RTM_DELNEIGH = 29
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_REPLACE = 0x100
NLM_F_CREATE = 0x400
NDA_DST = 1
NDA_LLADDR = 2
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
AF_BRIDGE = 7
# Messages per write: their acknowledgements (one small skb each) fit the receive buffer.
BATCH = 64
TIMEOUT = 5.0

_NLMSG = struct.Struct("=IHHII")
_NDMSG = struct.Struct("=BBHiHBB")
_RTA = struct.Struct("=HH")
_ERR = struct.Struct("=i")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Entry:
    """One FDB entry (mac, vtep: the device's own, to that VTEP) or neighbour entry (address,
    mac: permanent), set by replace or removed (set False). A removed FDB entry needs no vtep
    (the whole entry goes), a removed neighbour entry no mac."""

    set: bool
    mac: str | None = None
    vtep: ipaddress.IPv4Address | None = None
    address: Address | None = None

    @property
    def fdb(self) -> bool:
        return self.address is None


def _attr(kind: int, payload: bytes) -> bytes:
    length = _RTA.size + len(payload)
    return _RTA.pack(length, kind) + payload + b"\0" * (-length % 4)


def _mac(text: str) -> bytes:
    raw = bytes.fromhex(text.replace(":", ""))
    if len(raw) != 6:
        raise KernelError(f"not a MAC address: {text!r}")
    return raw


def _body(idx: int, e: Entry) -> tuple[int, int, bytes]:
    """(message type, flags, payload) of one entry on the device of index idx."""
    flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_CREATE | NLM_F_REPLACE if e.set else 0)
    kind = RTM_NEWNEIGH if e.set else RTM_DELNEIGH
    state = NUD_PERMANENT if e.set else 0
    if e.fdb:
        assert e.mac is not None
        attrs = _attr(NDA_LLADDR, _mac(e.mac))
        if e.set:
            assert e.vtep is not None
            attrs += _attr(NDA_DST, e.vtep.packed)
        return kind, flags, _NDMSG.pack(AF_BRIDGE, 0, 0, idx, state, NTF_SELF, 0) + attrs
    assert e.address is not None
    family = socket.AF_INET if e.address.version == 4 else socket.AF_INET6
    attrs = _attr(NDA_DST, e.address.packed)
    if e.set:
        assert e.mac is not None
        attrs += _attr(NDA_LLADDR, _mac(e.mac))
    return kind, flags, _NDMSG.pack(family, 0, 0, idx, state, 0, 0) + attrs


class NeighSocket:
    """One rtnetlink socket, used under a lock."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        self._sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        self._sock.bind((0, 0))
        self._sock.settimeout(TIMEOUT)
        self._lock = threading.Lock()
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def change(self, idx: int, entries: Sequence[Entry]) -> list[tuple[Entry, int]]:
        """Apply the entries on the device of index idx; (entry, errno) of each the kernel
        refused, in order."""
        failed: list[tuple[Entry, int]] = []
        with self._lock:
            for start in range(0, len(entries), BATCH):
                failed += self._batch(idx, entries[start : start + BATCH])
        return failed

    def _batch(self, idx: int, entries: Sequence[Entry]) -> list[tuple[Entry, int]]:
        if self._seq > 0x7FFFFFFF - BATCH:
            self._seq = 0
        first = self._seq + 1
        out = b""
        for e in entries:
            self._seq += 1
            kind, flags, payload = _body(idx, e)
            out += _NLMSG.pack(_NLMSG.size + len(payload), kind, flags, self._seq, 0) + payload
        try:
            self._sock.send(out)
            errors = self._acks(first, len(entries))
        except OSError as e:
            raise KernelError(f"cannot change forwarding or neighbour entries: {e.strerror or e}") from e
        return [(entries[seq - first], code) for seq, code in sorted(errors.items())]

    def _acks(self, first: int, count: int) -> dict[int, int]:
        """Read the acknowledgements of sequence numbers first .. first+count-1: seq -> errno
        of those that failed."""
        pending = set(range(first, first + count))
        errors: dict[int, int] = {}
        while pending:
            data = self._sock.recv(65536)
            at = 0
            while at + _NLMSG.size <= len(data):
                length, kind, _, seq, _ = _NLMSG.unpack_from(data, at)
                if length < _NLMSG.size:
                    break
                if kind == NLMSG_ERROR and seq in pending:
                    pending.discard(seq)
                    (code,) = _ERR.unpack_from(data, at + _NLMSG.size)
                    if code:
                        errors[seq] = -code
                at += (length + 3) & ~3
        return errors

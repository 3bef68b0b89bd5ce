"""FDB and neighbour entries straight over rtnetlink: an event's few entries in one send.

Through pyroute2, each set or removal of an overlay's FDB or neighbour
entry cost about 0.6 ms of CPU (its asyncio loop, its message classes;
measured per watch event in the overlay lab), a device's index by name
1.3 ms (the whole link message decoded), and the periodic reconcile's
three listings of a network's tables some 6 ms, on every host. The
messages are fixed and small: this module builds them with struct
(RTM_NEWNEIGH / RTM_DELNEIGH, AF_BRIDGE for the device's own FDB entries,
AF_INET / AF_INET6 for its neighbour entries), sends up to BATCH of them in
one write, and reads one acknowledgement per message (the kernel handles
each on its own: one that fails does not stop the others). A listing
(RTM_GETNEIGH dump, for one device) reads only the fields the overlay
compares; an index (RTM_GETLINK by name) only the header of the answer.

The socket is made where the NeighSocket is made: the daemon makes it in
the host's namespace (kernel/vxlan.py's Vxlan, at the daemon's start).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from dockyard.errors import KernelError
from dockyard.kernel.rtnl import ERR as _ERR
from dockyard.kernel.rtnl import NLMSG as _NLMSG
from dockyard.kernel.rtnl import RTA as _RTA
from dockyard.kernel.rtnl import attr as _attr

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # acknowledgements without a copy of the request
RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_NEWNEIGH = 28
RTM_DELNEIGH = 29
RTM_GETNEIGH = 30
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
IFLA_IFNAME = 3
NDA_IFINDEX = 8
DUMP_TRIES = 3
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

_NDMSG = struct.Struct("=BBHiHBB")
_IFINFO = struct.Struct("=BBHiII")

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
            for kind, _, seq, body in _messages(self._sock.recv(65536)):
                if kind == NLMSG_ERROR and seq in pending:
                    pending.discard(seq)
                    (code,) = _ERR.unpack_from(body)
                    if code:
                        errors[seq] = -code
        return errors

    # -- listings ---------------------------------------------------------------------------

    def index(self, name: str) -> int | None:
        """The index of the link named name, None when there is none."""
        payload = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0, 0) + _attr(IFLA_IFNAME, name.encode() + b"\0")
        with self._lock:
            seq = self._next()
            try:
                self._sock.send(
                    _NLMSG.pack(_NLMSG.size + len(payload), RTM_GETLINK, NLM_F_REQUEST, seq, 0) + payload
                )
                while True:
                    for kind, _, got, body in _messages(self._sock.recv(65536)):
                        if got != seq:
                            continue
                        if kind == RTM_NEWLINK:
                            return int(_IFINFO.unpack_from(body)[3])
                        if kind == NLMSG_ERROR:
                            code = -_ERR.unpack_from(body)[0]
                            if code in (errno.ENODEV, errno.ENOENT):
                                return None
                            raise OSError(code, os.strerror(code))
            except OSError as e:
                raise KernelError(f"cannot look up link {name}: {e.strerror or e}") from e

    def fdb(self, idx: int) -> dict[str, ipaddress.IPv4Address]:
        """The device's own (`self`) FDB entries with an IPv4 destination: MAC -> VTEP."""
        out: dict[str, ipaddress.IPv4Address] = {}
        request = _IFINFO.pack(AF_BRIDGE, 0, 0, idx, 0, 0)  # the legacy header: ifi_index filters
        for body in self._dump(request, "forwarding entries"):
            family, _, _, index, _, flags, _ = _NDMSG.unpack_from(body)
            if family != AF_BRIDGE or index != idx or not flags & NTF_SELF:
                continue
            attrs = _attrs(body, _NDMSG.size)
            dst, mac = attrs.get(NDA_DST), attrs.get(NDA_LLADDR)
            if dst is not None and len(dst) == 4 and mac is not None:
                out[_text(mac)] = ipaddress.IPv4Address(dst)
        return out

    def neighbours(self, idx: int) -> dict[Address, str]:
        """The device's permanent neighbour entries, ARP's and NDP's: address -> MAC."""
        out: dict[Address, str] = {}
        for family in (socket.AF_INET, socket.AF_INET6):
            request = _NDMSG.pack(family, 0, 0, 0, 0, 0, 0) + _attr(NDA_IFINDEX, struct.pack("=I", idx))
            for body in self._dump(request, "neighbour entries"):
                _, _, _, index, state, _, _ = _NDMSG.unpack_from(body)
                if index != idx or not state & NUD_PERMANENT:
                    continue
                attrs = _attrs(body, _NDMSG.size)
                dst, mac = attrs.get(NDA_DST), attrs.get(NDA_LLADDR)
                if dst is not None and len(dst) in (4, 16) and mac:
                    out[ipaddress.ip_address(dst)] = _text(mac)
        return out

    def _dump(self, payload: bytes, what: str) -> list[bytes]:
        """The bodies of an RTM_GETNEIGH dump's messages; again when the kernel says the dump was
        interrupted (the table changed while it was read)."""
        with self._lock:
            for _ in range(DUMP_TRIES):
                seq = self._next()
                bodies: list[bytes] = []
                interrupted = done = False
                try:
                    flags = NLM_F_REQUEST | NLM_F_DUMP
                    self._sock.send(
                        _NLMSG.pack(_NLMSG.size + len(payload), RTM_GETNEIGH, flags, seq, 0) + payload
                    )
                    while not done:
                        for kind, mflags, got, body in _messages(self._sock.recv(65536)):
                            if got != seq:
                                continue
                            interrupted |= bool(mflags & NLM_F_DUMP_INTR)
                            if kind == NLMSG_DONE:
                                done = True
                            elif kind == NLMSG_ERROR:
                                code = -_ERR.unpack_from(body)[0]
                                raise OSError(code, os.strerror(code))
                            elif kind == RTM_NEWNEIGH:
                                bodies.append(body)
                except OSError as e:
                    raise KernelError(f"cannot list {what}: {e.strerror or e}") from e
                if not interrupted:
                    return bodies
        raise KernelError(f"cannot list {what}: interrupted {DUMP_TRIES} times by changes")

    def _next(self) -> int:
        self._seq = self._seq + 1 if self._seq < 0x7FFFFFFF else 1
        return self._seq


def _messages(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, seq, body) of each netlink message in data."""
    out = []
    at = 0
    while at + _NLMSG.size <= len(data):
        length, kind, flags, seq, _ = _NLMSG.unpack_from(data, at)
        if length < _NLMSG.size or at + length > len(data):
            break
        out.append((kind, flags, seq, data[at + _NLMSG.size : at + length]))
        at += (length + 3) & ~3
    return out


def _attrs(body: bytes, at: int) -> dict[int, bytes]:
    out = {}
    while at + _RTA.size <= len(body):
        length, kind = _RTA.unpack_from(body, at)
        if length < _RTA.size:
            break
        out[kind & 0x3FFF] = body[at + _RTA.size : at + length]
        at += (length + 3) & ~3
    return out


def _text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)

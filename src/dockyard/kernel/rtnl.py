"""A container's endpoint straight over rtnetlink: the few fixed messages of a start.

Through pyroute2 each call of a start cost 0.3-1 ms of the daemon's CPU
(its asyncio loop, its message classes, a lookup that decodes the whole
link), and each socket opened in a sandbox some 2 ms more: about half of
what the daemon spent on `run --rm --net bridge true` (measured with
cProfile in dockyardd, 30 runs). The messages a start sends are few and
always the same: this module builds them with struct and reads one
acknowledgement per message. Messages sent in one write are handled by the
kernel one after the other, in order, each on its own: the first failure
is the one reported (what follows it fails for its sake).

What a message means (which link, which address) is kernel/netlink.py's,
which keeps the same verbs and errors; a socket is in the namespace of the
thread that makes it (netns.entered for a sandbox's).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct

NETLINK_ROUTE = 0
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_SETLINK = 19
RTM_NEWADDR = 20
RTM_NEWROUTE = 24
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLA_F_NESTED = 0x8000
IFF_UP = 0x1
AF_BRIDGE = 7
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_MASTER = 10
IFLA_PROTINFO = 12
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
IFLA_BRPORT_MODE = 4
IFA_ADDRESS = 1
IFA_LOCAL = 2
RTA_OIF = 4
RTA_GATEWAY = 5
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4  # pyroute2's default, as before: `proto static`
RTN_UNICAST = 1
TIMEOUT = 5.0
IFNAMSIZ = 16  # a name this long or longer is no link's (the kernel refuses it: EINVAL)
RECV_SIZE = 65536

NLMSG = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
RTA = struct.Struct("=HH")
ERR = struct.Struct("=i")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


class RtnlError(OSError):
    """The kernel refused a message: errno and its text, as NetlinkError gave them."""


def attr(kind: int, payload: bytes) -> bytes:
    head = RTA.pack(RTA.size + len(payload), kind)
    return head + payload + b"\0" * (-len(payload) % 4)


def _name(kind: int, name: str) -> bytes:
    return attr(kind, name.encode() + b"\0")


def _u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def _mac(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


def _ifinfo(index: int = 0, flags: int = 0, change: int = 0, family: int = 0) -> bytes:
    return _IFINFO.pack(family, 0, index, flags, change)


class Message:
    """One request: its type, flags beyond REQUEST|ACK, and body (header and attributes)."""

    __slots__ = ("body", "flags", "kind")

    def __init__(self, kind: int, body: bytes, flags: int = 0) -> None:
        self.kind = kind
        self.body = body
        self.flags = flags


def link_by_name(name: str) -> Message:
    """RTM_GETLINK of one link by name: the answer's header has its index."""
    return Message(RTM_GETLINK, _ifinfo() + _name(IFLA_IFNAME, name))


def del_link(name: str) -> Message:
    """RTM_DELLINK of one link by name."""
    return Message(RTM_DELLINK, _ifinfo() + _name(IFLA_IFNAME, name))


def set_up(index: int = 0, name: str | None = None) -> Message:
    """A link up, by index or (index 0) by name."""
    body = _ifinfo(index, IFF_UP, IFF_UP) + (_name(IFLA_IFNAME, name) if name is not None else b"")
    return Message(RTM_NEWLINK, body)


def set_down(name: str) -> Message:
    """A link down, by name."""
    return Message(RTM_NEWLINK, _ifinfo(0, 0, IFF_UP) + _name(IFLA_IFNAME, name))


def set_master(index: int, master: int) -> Message:
    return Message(RTM_SETLINK, _ifinfo(index) + _u32(IFLA_MASTER, master))


def set_hairpin(index: int, on: bool) -> Message:
    """A bridge port's hairpin mode (IFLA_BRPORT_MODE), as `bridge link set hairpin`."""
    mode = attr(IFLA_BRPORT_MODE, bytes([int(on)]))
    return Message(RTM_SETLINK, _ifinfo(index, family=AF_BRIDGE) + attr(IFLA_PROTINFO | NLA_F_NESTED, mode))


def new_veth(name: str, mtu: int, peer: str, peer_mac: str, peer_netns_fd: int | None) -> Message:
    """A veth pair `name`/`peer`; the peer with its MAC, in the namespace of peer_netns_fd if given."""
    peer_attrs = _name(IFLA_IFNAME, peer) + attr(IFLA_ADDRESS, _mac(peer_mac)) + _u32(IFLA_MTU, mtu)
    if peer_netns_fd is not None:
        peer_attrs += _u32(IFLA_NET_NS_FD, peer_netns_fd)
    data = attr(IFLA_INFO_DATA | NLA_F_NESTED, attr(VETH_INFO_PEER, _ifinfo() + peer_attrs))
    info = attr(IFLA_LINKINFO | NLA_F_NESTED, _name(IFLA_INFO_KIND, "veth") + data)
    body = _ifinfo() + _name(IFLA_IFNAME, name) + _u32(IFLA_MTU, mtu) + info
    return Message(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL)


def new_address(index: int, address: Interface, flags: int = 0) -> Message:
    """An address on a link (IPv4: IFA_LOCAL too, as `ip address add`); flags in the header."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    raw = address.ip.packed
    attrs = (attr(IFA_LOCAL, raw) if address.version == 4 else b"") + attr(IFA_ADDRESS, raw)
    body = _IFADDR.pack(family, address.network.prefixlen, flags, 0, index) + attrs
    return Message(RTM_NEWADDR, body, NLM_F_CREATE | NLM_F_EXCL)


def default_route(index: int, gateway: Address) -> Message:
    """The default route of a family via gateway through link index (main table)."""
    family = socket.AF_INET if gateway.version == 4 else socket.AF_INET6
    head = _RTMSG.pack(family, 0, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, 0, RTN_UNICAST, 0)
    body = head + attr(RTA_GATEWAY, gateway.packed) + _u32(RTA_OIF, index)
    return Message(RTM_NEWROUTE, body, NLM_F_CREATE | NLM_F_EXCL)


class Socket:
    """An rtnetlink socket in the namespace of the thread that made it."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        try:
            self._sock.bind((0, 0))
            # Blocking, bounded by the kernel (SO_RCVTIMEO: EAGAIN, an OSError, after
            # TIMEOUT): Python's own timeout would poll() before every send and recv.
            whole, part = divmod(TIMEOUT, 1)
            self._sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("@ll", int(whole), int(part * 1e6))
            )
        except BaseException:
            self._sock.close()
            raise
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def send(self, *messages: Message) -> list[int]:
        """The messages in one write; each one's errno (0 for done), in order."""
        return self._exchange(messages)

    def check(self, *messages: Message) -> None:
        """send(), raising the first failure."""
        for code in self.send(*messages):
            if code:
                raise RtnlError(code, os.strerror(code))

    def index(self, name: str) -> int | None:
        """A link's index by name; None when there is none."""
        if len(name.encode()) >= IFNAMSIZ:
            return None
        found: list[int] = []
        (code,) = self._exchange((link_by_name(name),), found)
        if code not in (0, errno.ENODEV):
            raise RtnlError(code, os.strerror(code))
        return found[0] if found else None

    def _exchange(self, messages: tuple[Message, ...], found: list[int] | None = None) -> list[int]:
        first = self._seq + 1
        out = []
        for m in messages:
            self._seq += 1
            flags = NLM_F_REQUEST | NLM_F_ACK | m.flags
            out.append(NLMSG.pack(NLMSG.size + len(m.body), m.kind, flags, self._seq, 0) + m.body)
        self._sock.sendall(b"".join(out))
        return self._answers(first, len(messages), found)

    def _answers(self, first: int, count: int, found: list[int] | None = None) -> list[int]:
        codes = [0] * count
        left = count
        while left:
            data = self._sock.recv(RECV_SIZE)
            at = 0
            while at + NLMSG.size <= len(data):
                length, kind, _flags, seq, _pid = NLMSG.unpack_from(data, at)
                if length < NLMSG.size:
                    break
                slot = seq - first
                if 0 <= slot < count:
                    if kind == NLMSG_ERROR:
                        (code,) = ERR.unpack_from(data, at + NLMSG.size)
                        codes[slot] = -code
                        left -= 1
                    elif kind == RTM_NEWLINK and found is not None:
                        found.append(_IFINFO.unpack_from(data, at + NLMSG.size)[2])
                at += (length + 3) & ~3
        return codes

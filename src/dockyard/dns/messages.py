"""DNS message shapes: replies, truncation to what UDP carries, PTR names, TCP framing.

No store and no policy: answers.py decides what a reply says; this module
only builds and frames it.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from dnslib import QTYPE, RCODE, DNSHeader, DNSRecord

UDP_LIMIT = 512  # without EDNS0
PTR_SUFFIX = ".in-addr.arpa"

# Either family: a gateway, a source, a PTR's subject (IPv6 on networks that have it).
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
PTR6_SUFFIX = ".ip6.arpa"


def reply_to(request: DNSRecord, rcode: int = RCODE.NOERROR, aa: int = 1) -> DNSRecord:
    """An empty reply to `request` with this rcode (recursion available, as for every answer here)."""
    if request.questions:
        reply = request.reply(ra=1, aa=aa)
    else:  # dnslib's reply() would invent an empty question
        reply = DNSRecord(DNSHeader(id=request.header.id, bitmap=request.header.bitmap, qr=1, ra=1, aa=aa))
    reply.header.rcode = rcode
    return reply


def pack(reply: DNSRecord, request: DNSRecord, tcp: bool) -> bytes:
    """Packed reply; cut to a bare truncated one if UDP cannot carry it."""
    data = reply.pack()
    limit = UDP_LIMIT
    for rr in request.ar:
        if rr.rtype == QTYPE.OPT:
            limit = max(limit, int(rr.rclass))
    if tcp or len(data) <= limit:
        return data
    cut = reply_to(request, reply.header.rcode)
    cut.header.tc = 1
    return cut.pack()


def ptr_address(name: str) -> Address | None:
    """The address a `w.z.y.x.in-addr.arpa` (or 32-nibble `...ip6.arpa`) name asks about, if it is one."""
    if name.endswith(PTR6_SUFFIX):
        nibbles = name[: -len(PTR6_SUFFIX)].split(".")
        if len(nibbles) != 32 or not all(len(n) == 1 and n in "0123456789abcdef" for n in nibbles):
            return None
        return ipaddress.IPv6Address(int("".join(reversed(nibbles)), 16))
    if not name.endswith(PTR_SUFFIX):
        return None
    parts = name[: -len(PTR_SUFFIX)].split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 for p in parts):
        return None
    try:
        return ipaddress.IPv4Address(".".join(reversed(parts)))
    except ValueError:
        return None


def frame(data: bytes) -> bytes:
    """One message as TCP carries it: a two-byte length first (RFC 1035 4.2.2)."""
    return struct.pack("!H", len(data)) + data


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks = b""
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return chunks


def read_message(sock: socket.socket) -> bytes | None:
    """One length-prefixed DNS message from a TCP stream; None at its end."""
    head = _read_exactly(sock, 2)
    return _read_exactly(sock, struct.unpack("!H", head)[0]) if head else None

"""Set and map elements straight over nf_tables netlink: one batch, no text.

libnftables reads every element of a batch from JSON (or nft syntax),
evaluates it and only then builds the netlink messages: for a 1,000-port
range that is most of a start's cost (measured: 20-25 ms of libnftables
against about 1 ms in the kernel). Elements are fixed-size values, so this
module builds the NEWSETELEM/DELSETELEM messages itself, with struct, and
sends them as one nfnetlink batch (one transaction: all of them or none).
Everything else (tables, chains, rules, listings) stays with libnftables.

The caller names the set's key and data types as nft names them
(`inet_proto . inet_service`); a value is encoded as nft does: in network
order, each part of a concatenation padded to a 32-bit register. The kernel
checks the lengths against the set's own (a mismatch is refused, never
stored). A comment is stored as nft stores it (libnftnl's user data), so
that `nft list` and libnftables' JSON show it.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import struct
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from dockyard.errors import KernelError

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN = 0x10
NFNL_MSG_BATCH_END = 0x11
NFT_MSG_NEWSETELEM = 12
NFT_MSG_DELSETELEM = 14
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_CREATE = 0x400
NLA_F_NESTED = 0x8000
# NFTA_SET_ELEM_LIST_*, NFTA_LIST_ELEM, NFTA_SET_ELEM_*, NFTA_DATA_VALUE
LIST_TABLE, LIST_SET, LIST_ELEMENTS = 1, 2, 3
LIST_ELEM = 1
ELEM_KEY, ELEM_DATA, ELEM_USERDATA = 1, 2, 6
DATA_VALUE = 1
UDATA_COMMENT = 0  # NFTNL_UDATA_SET_ELEM_COMMENT
FAMILIES = {"inet": 1, "ip": 2, "bridge": 7, "ip6": 10}
# An attribute's length is 16 bits: a message carries at most this much of elements.
_MAX_ELEMENTS_BYTES = 60000

_HDR = struct.Struct("=IHHII")  # nlmsghdr
_NFGEN = struct.Struct("=BBH")  # nfgenmsg (res_id in network order)
_NLA = struct.Struct("=HH")
_PROTOS = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1}

Value = int | str | ipaddress.IPv4Address | ipaddress.IPv6Address
# (family, table, set, [(key, data or None)]): the elements of one set, encoded.
SetChange = tuple[str, str, str, Sequence[tuple[bytes, bytes | None]]]


def _pad(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, payload: bytes) -> bytes:
    return _NLA.pack(4 + len(payload), kind) + payload + b"\0" * (_pad(len(payload)) - len(payload))


def encode(types: Sequence[str], values: Sequence[Value]) -> bytes:
    """A key or data value as nft lays it out: a concatenation pads each part to 32 bits."""
    return encode_rows(types, [values])[0]


# Each type as a struct field: (format, converter of the caller's value or None).
_FIELDS = {"inet_service": ("H", None), "inet_proto": ("B", "proto"), "ipv4_addr": ("4s", "bytes")}
_FIELDS |= {"ipv6_addr": ("16s", "bytes"), "ifname": ("16s", "bytes")}
_SIZES = {"H": 2, "B": 1, "4s": 4, "16s": 16}


def encode_rows(types: Sequence[str], rows: Iterable[Sequence[Value]]) -> list[bytes]:
    """encode() for many values of one type, with one struct: a port range's
    thousand elements in about a millisecond. Each distinct address, name or
    protocol is converted once (a range repeats them a thousand times)."""
    fields = []
    for kind in types:
        if kind not in _FIELDS:
            raise KernelError(f"nftables type {kind} is not encoded by dockyard.kernel.nftnl")
        fields.append(_FIELDS[kind])
    concat = len(types) > 1
    fmt = "!" + "".join(
        f + (f"{_pad(_SIZES[f]) - _SIZES[f]}x" if concat and _SIZES[f] % 4 else "") for f, _ in fields
    )
    pack = struct.Struct(fmt).pack
    rows = list(rows)
    for values in rows:
        if len(values) != len(types):
            raise KernelError(f"{len(values)} values for a concatenation of {len(types)} types")
    columns: list[Sequence[Any]] = []
    for i, (kind, (_, how)) in enumerate(zip(types, fields, strict=True)):
        column = [values[i] for values in rows]
        if how is not None:
            column = _converted(kind, column)
        columns.append(column)
    try:
        return [pack(*values) for values in zip(*columns, strict=True)]
    except struct.error as e:
        raise KernelError(f"a value does not fit nftables type {' . '.join(types)}: {e}") from e


def _converted(kind: str, column: list[Value]) -> list[Any]:
    """_convert over a column, each distinct value once. A range repeats one address
    and one protocol object a thousand times: a value is hashed (in Python, for an
    address or an enum) only where it differs from the one before it."""
    seen: dict[Value, Any] = {}
    out: list[Any] = []
    last: object = _convert  # no value is this
    got: Any = None
    for v in column:
        if v is not last:
            last = v
            got = seen.get(v, seen)
            if got is seen:
                got = seen[v] = _convert(kind, v)
        out.append(got)
    return out


def _convert(kind: str, value: Value) -> int | bytes:
    if kind == "inet_proto":
        if isinstance(value, int):
            return value
        if str(value) not in _PROTOS:
            raise KernelError(f"not an inet_proto: {value}")
        return _PROTOS[str(value)]
    if kind == "ifname":
        name = str(value).encode()
        if len(name) > 15:
            raise KernelError(f"interface name too long for nftables: {value}")
        return name
    try:
        if kind == "ipv4_addr":
            return ipaddress.IPv4Address(value).packed
        return ipaddress.IPv6Address(value).packed
    except ValueError as e:
        raise KernelError(f"not an {kind}: {value}") from e


@functools.lru_cache(maxsize=32)
def _frame(key_len: int, data_len: int, udata: bytes) -> tuple[bytes, bytes, bytes]:
    """The bytes around an element's key and data, built with _attr once: NFTA_LIST_ELEM
    { KEY { VALUE key }, DATA { VALUE data }, USERDATA } is before + key + middle + data
    + after (before + key + after without data); they depend only on the lengths."""
    k, d = b"\x01" * key_len, b"\x02" * max(data_len, 0)
    key = _attr(ELEM_KEY | NLA_F_NESTED, _attr(DATA_VALUE, k))
    data = _attr(ELEM_DATA | NLA_F_NESTED, _attr(DATA_VALUE, d)) if data_len >= 0 else b""
    whole = _attr(LIST_ELEM | NLA_F_NESTED, key + data + udata)
    # Split the whole at the key's and the data's bytes (their padding stays in the frame).
    at_key = 4 + 8
    head = whole[:at_key]
    after_key = at_key + key_len
    if data_len < 0:
        return head, b"", whole[after_key:]
    at_data = 4 + len(key) + 8
    return head, whole[after_key:at_data], whole[at_data + data_len :]


def _comment(text: str) -> bytes:
    raw = text.encode() + b"\0"
    if len(raw) > 255:
        raise KernelError(f"an element's comment is at most 254 bytes: {text[:40]}...")
    return bytes((UDATA_COMMENT, len(raw))) + raw


class ElementSocket:
    """One NETLINK_NETFILTER socket in the namespace of the thread that made it.

    Used under a lock: a batch and its acknowledgements are one exchange.
    """

    def __init__(self) -> None:
        kind = socket.SOCK_RAW | socket.SOCK_CLOEXEC
        self._sock = socket.socket(socket.AF_NETLINK, kind, NETLINK_NETFILTER)
        self._sock.bind((0, 0))
        self._sock.settimeout(30)
        self._sndbuf = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        self._seq = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        self._sock.close()

    def _msg(self, kind: int, flags: int, family: int, res_id: int, payload: bytes) -> bytes:
        self._seq += 1
        body = _NFGEN.pack(family, 0, socket.htons(res_id)) + payload
        return _HDR.pack(16 + len(body), kind, flags, self._seq, 0) + body

    def change(self, add: bool, changes: Sequence[SetChange], comment: str = "") -> None:
        """Add (key, data) elements to sets or maps, or delete them by key: one transaction.

        Adding an element already there with the same data is no change (nft's
        `add element`); deleting one that is not there fails the whole batch
        (ENOENT), as nft does.
        """
        udata = _attr(ELEM_USERDATA, _comment(comment)) if add and comment else b""
        kind = (NFNL_SUBSYS_NFTABLES << 8) | (NFT_MSG_NEWSETELEM if add else NFT_MSG_DELSETELEM)
        flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_CREATE if add else 0)
        payloads: list[tuple[int, bytes]] = []
        for family, table, name, elements in changes:
            head = _attr(LIST_TABLE, table.encode() + b"\0") + _attr(LIST_SET, name.encode() + b"\0")
            chunk: list[bytes] = []
            size = 0

            def message(items: list[bytes], family: str = family, head: bytes = head) -> tuple[int, bytes]:
                return FAMILIES[family], head + _attr(LIST_ELEMENTS | NLA_F_NESTED, b"".join(items))

            shape: tuple[int, int] = (-2, -2)
            before, middle, after = b"", b"", b""
            for key, data in elements:
                # The frame around an element depends on its lengths alone, which one
                # set's elements share: made once a set, not looked up per element.
                value = data if add else None
                if (len(key), -1 if value is None else len(value)) != shape:
                    shape = (len(key), -1 if value is None else len(value))
                    before, middle, after = _frame(shape[0], shape[1], udata)
                item = before + key + after if value is None else before + key + middle + value + after
                if chunk and size + len(item) > _MAX_ELEMENTS_BYTES:
                    payloads.append(message(chunk))
                    chunk, size = [], 0
                chunk.append(item)
                size += len(item)
            if chunk:
                payloads.append(message(chunk))
        if not payloads:
            return
        where = ", ".join(f"{family} {table} {name}" for family, table, name, _ in changes)
        with self._lock:
            msgs = [self._msg(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES, b"")]
            begin = self._seq
            msgs += [self._msg(kind, flags, family_no, 0, payload) for family_no, payload in payloads]
            last = self._seq
            msgs.append(self._msg(NFNL_MSG_BATCH_END, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES, b""))
            batch = b"".join(msgs)
            try:
                self._fit(len(batch))
                self._sock.sendall(batch)
                error = self._acks(begin, last)
            except OSError as e:
                raise KernelError(f"nftables netlink batch on {where}: {e.strerror or e}") from e
        if error:
            verb = "add elements to" if add else "delete elements from"
            raise KernelError(f"nftables refused to {verb} {where}: {os.strerror(error)}")

    def _fit(self, length: int) -> None:
        """A send buffer the batch fits in (netlink refuses a message larger than the buffer)."""
        if length + 4096 > self._sndbuf:
            self._sndbuf = 2 * length + 4096
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, 32, self._sndbuf)  # SO_SNDBUFFORCE
            except PermissionError:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._sndbuf)
            self._sndbuf = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)

    def _acks(self, begin: int, last: int) -> int:
        """Wait for the acknowledgement of every message after `begin` up to `last`;
        the first error (an errno), or 0.

        nfnetlink processes a whole batch and answers every message that asks
        for an acknowledgement, error or not, even when the batch is aborted;
        an error about the batch itself comes on its BEGIN and ends the wait.
        Replies to an earlier exchange cut short are skipped by sequence number.
        """
        pending = set(range(begin + 1, last + 1))
        error = 0
        while pending:
            data = self._sock.recv(65536)
            offset = 0
            while offset + 16 <= len(data):
                length, kind, _flags, seq, _pid = _HDR.unpack_from(data, offset)
                if length < 16:
                    break
                if kind == NLMSG_ERROR and begin <= seq <= last + 1:
                    pending.discard(seq)
                    code = -struct.unpack_from("=i", data, offset + 16)[0]
                    if code and not error:
                        error = code
                    if code and seq in (begin, last + 1):
                        return error
                offset += _pad(length)
        return error

"""etcd's v3 JSON shapes, as dockyard uses them: keys and values in base64, the
kv and event records, and the pieces of a transaction (conditions and operations)
with the small builders every writer uses (`absent`, `lease_is`, `none_under`, ...).

Data only: the client (etcd.py) sends them.
"""

from __future__ import annotations

import base64
import enum
from dataclasses import dataclass, field
from typing import ClassVar


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def prefix_end(prefix: str) -> str:
    """The end of the range of every key that starts with prefix (prefix's last byte + 1)."""
    raw = prefix.encode()
    return (raw[:-1] + bytes([raw[-1] + 1])).decode()


@dataclass(frozen=True)
class KV:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int = 0
    lease: int = 0

    @classmethod
    def wire(cls, d: dict) -> KV:
        return cls(
            key=unb64(d["key"]).decode(),
            value=unb64(d.get("value", "")),
            create_revision=int(d.get("create_revision", 0)),
            mod_revision=int(d.get("mod_revision", 0)),
            version=int(d.get("version", 0)),
            lease=int(d.get("lease", 0)),
        )


class EventType(enum.StrEnum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True)
class Event:
    type: EventType
    kv: KV  # for a DELETE: the key, and the deletion's revision as mod_revision

    @property
    def revision(self) -> int:
        return self.kv.mod_revision

    @classmethod
    def wire(cls, d: dict) -> Event:
        return cls(EventType(d.get("type", "PUT")), KV.wire(d["kv"]))


@dataclass(frozen=True)
class RangeResult:
    revision: int  # the store's revision the range was read at
    kvs: list[KV]
    count: int
    more: bool = False


# -- transactions ------------------------------------------------------------------------


@dataclass(frozen=True)
class Compare:
    """One condition of a txn: target (CREATE, MOD, VALUE, LEASE, VERSION) result value.

    With range_end it holds for every key of the range (vacuously for none).
    """

    key: str
    target: str
    result: str
    value: int | bytes
    range_end: str | None = None

    def wire(self) -> dict:
        field_name = {
            "CREATE": "create_revision",
            "MOD": "mod_revision",
            "VERSION": "version",
            "LEASE": "lease",
            "VALUE": "value",
        }[self.target]
        value = b64(self.value) if isinstance(self.value, bytes) else str(self.value)
        return {
            **_key_range(self.key, self.range_end),
            "target": self.target,
            "result": self.result,
            field_name: value,
        }


def absent(key: str) -> Compare:
    return Compare(key, "CREATE", "EQUAL", 0)


def exists(key: str) -> Compare:
    return Compare(key, "CREATE", "GREATER", 0)


def created_at(key: str, revision: int) -> Compare:
    return Compare(key, "CREATE", "EQUAL", revision)


def mod_is(key: str, revision: int) -> Compare:
    return Compare(key, "MOD", "EQUAL", revision)


def value_is(key: str, value: bytes) -> Compare:
    """The key holds exactly value (an absent key holds none)."""
    return Compare(key, "VALUE", "EQUAL", value)


def lease_is(key: str, lease: int) -> Compare:
    return Compare(key, "LEASE", "EQUAL", lease)


def none_under(prefix: str) -> Compare:
    """No key starts with prefix."""
    return Compare(prefix, "CREATE", "EQUAL", 0, prefix_end(prefix))


def unchanged_under(prefix: str, revision: int) -> Compare:
    """No key under prefix was made or changed after revision (deletions do not count)."""
    return Compare(prefix, "MOD", "LESS", revision + 1, prefix_end(prefix))


@dataclass(frozen=True)
class Put:
    key: str
    value: bytes
    lease: int = 0

    def wire(self) -> dict:
        d: dict = {"key": b64(self.key), "value": b64(self.value)}
        if self.lease:
            d["lease"] = str(self.lease)
        return {"request_put": d}


def _key_range(key: str, range_end: str | None) -> dict:
    """A key, or with range_end the keys [key, range_end): how each request names its keys."""
    d = {"key": b64(key)}
    if range_end is not None:
        d["range_end"] = b64(range_end)
    return d


@dataclass(frozen=True)
class _OnKeys:
    """An operation on a key or a range of keys, sent as etcd's `request` of its kind."""

    key: str
    range_end: str | None = None
    request: ClassVar[str]

    def wire(self) -> dict:
        return {self.request: _key_range(self.key, self.range_end)}


@dataclass(frozen=True)
class Delete(_OnKeys):
    request: ClassVar[str] = "request_delete_range"


@dataclass(frozen=True)
class Get(_OnKeys):
    request: ClassVar[str] = "request_range"


Op = Put | Delete | Get


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int
    # The kvs of each Get of the branch that ran, in order.
    ranges: list[list[KV]] = field(default_factory=list)

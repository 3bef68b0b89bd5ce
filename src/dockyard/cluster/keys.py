"""Where everything lives in etcd: the key layout, in one place.

    <root>networks/<network id>              the global network's record
    <root>cursors/<network id>               next-fit's cursor: the address given last
    <root>cursors6/<network id>              the same for the network's IPv6 addresses
    <root>ipam/<network id>/<address>        a claim: which host's endpoint holds it (either family)
    <root>endpoints/<network id>/<endpoint>  a published endpoint, under its host's lease
    <root>hosts/<host id>                    a live host (its VTEP), under its lease
    <root>gone/<host id>                     a host seen gone (no lease): its claims wait
    <root>grace/<host id>                    the grace period's timer, under a lease of its own

The root is /dockyard/v1/ (tests give each test its own). Claims are not
under a lease: a host that was only cut off finds them again; endpoints are,
so peers stop sending to a dead host within the TTL. Values are JSON
(records.py). Ids and addresses never contain "/".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from dockyard.cluster.wire import prefix_end

ROOT = "/dockyard/v1/"


class Kind(enum.StrEnum):
    NETWORK = "networks"
    CURSOR = "cursors"
    CURSOR6 = "cursors6"
    CLAIM = "ipam"
    ENDPOINT = "endpoints"
    HOST = "hosts"
    GONE = "gone"
    GRACE = "grace"


@dataclass(frozen=True)
class Parsed:
    kind: Kind
    # (network id,) (network id, address) (network id, endpoint id) (host id,) ...
    parts: tuple[str, ...]


class Keys:
    def __init__(self, root: str = ROOT) -> None:
        if not root.startswith("/") or not root.endswith("/"):
            raise ValueError(f"a key root starts and ends with '/': {root!r}")
        self.root = root

    @property
    def all(self) -> tuple[str, str]:
        """The range of every key of dockyard's (what the watch covers)."""
        return self.root, prefix_end(self.root)

    def prefix(self, kind: Kind, *parts: str) -> str:
        return self.root + kind.value + "/" + "".join(p + "/" for p in parts)

    def network(self, network_id: str) -> str:
        return self.prefix(Kind.NETWORK) + _part(network_id)

    def cursor(self, network_id: str, version: int = 4) -> str:
        return self.prefix(Kind.CURSOR6 if version == 6 else Kind.CURSOR) + _part(network_id)

    def claim(self, network_id: str, address: object) -> str:
        return self.prefix(Kind.CLAIM, _part(network_id)) + _part(str(address))

    def endpoint(self, network_id: str, endpoint_id: str) -> str:
        return self.prefix(Kind.ENDPOINT, _part(network_id)) + _part(endpoint_id)

    def host(self, host_id: str) -> str:
        return self.prefix(Kind.HOST) + _part(host_id)

    def gone(self, host_id: str) -> str:
        return self.prefix(Kind.GONE) + _part(host_id)

    def grace(self, host_id: str) -> str:
        return self.prefix(Kind.GRACE) + _part(host_id)

    def parse(self, key: str) -> Parsed | None:
        """What a key under the root is; None for anything else (another version's, a stray)."""
        if not key.startswith(self.root):
            return None
        kind_name, _, rest = key[len(self.root) :].partition("/")
        try:
            kind = Kind(kind_name)
        except ValueError:
            return None
        parts = tuple(rest.split("/"))
        want = 2 if kind in (Kind.CLAIM, Kind.ENDPOINT) else 1
        if len(parts) != want or not all(parts):
            return None
        return Parsed(kind, parts)


def _part(text: str) -> str:
    if not text or "/" in text:
        raise ValueError(f"not a key part: {text!r}")
    return text

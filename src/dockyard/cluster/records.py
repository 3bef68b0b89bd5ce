"""What is stored under each key (keys.py), as frozen dataclasses and their JSON.

The JSON is compact with sorted keys; a reader ignores fields it does not
know (a newer daemon may add some) and rejects a record missing one it needs
(RecordError: the watch skips such a key and logs it, it never stops).

Compatibility: records gain fields only as optional ones, written only when
set, so the format is not versioned: a record of an IPv4-only network or
endpoint is byte for byte what the previous version wrote, and a daemon of
the previous version reads a dual-stack one (`subnet6`/`gateway6` on a
network, `address6` on an endpoint) as its IPv4 part alone. A network's
later subnets (`more_subnets`), ranges (`ip_range`, `ip_range6`) and aux
addresses (`aux`) are absent to that version: its containers take
addresses of each family's first subnet only, anywhere in it (still never
an address another host claimed).

An IPv6-only network (--ipv4=false) has no `subnet`/`gateway` and its
endpoints no `address`: absent, not null. A daemon of an earlier version
finds a field it needs missing and skips such a record (RecordError), so it
never takes an IPv6-only network for an IPv4 one; this version requires
one family at least on each record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from dockyard.model import SubnetConfig


class RecordError(ValueError):
    """A value that is not the record its key says."""


def _dump(d: dict) -> bytes:
    return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()


def _load(raw: bytes, what: str) -> dict:
    try:
        d = json.loads(raw)
    except ValueError:
        raise RecordError(f"{what}: not JSON") from None
    if not isinstance(d, dict):
        raise RecordError(f"{what}: not an object")
    return d


@dataclass(frozen=True)
class NetworkRecord:
    """A global (overlay) network, the same on every host."""

    id: str
    name: str
    driver: str
    subnet: IPv4Network | None  # None on an IPv6-only network (--ipv4=false), as is gateway
    gateway: IPv4Address | None
    internal: bool = False
    attachable: bool = False
    mtu: int | None = None  # None: the underlay's less 50, each host's own
    labels: tuple[tuple[str, str], ...] = ()
    created_by: str = ""  # host id
    vni: int = 0  # the VXLAN network identifier, unique in the cluster
    # The etcd create revision of this record (not stored: read with it). A claim compares it,
    # so that a network removed and made again is never claimed into by a stale caller.
    revision: int = 0
    # IPv6 (--ipv6): both set on a dual-stack network, neither on an IPv4-only one.
    subnet6: IPv6Network | None = None
    gateway6: IPv6Address | None = None
    # A family's second and later subnets, each with its gateway (Docker's overlay takes several).
    more_subnets: tuple[SubnetConfig, ...] = ()
    # --ip-range of each family's first subnet (a later one's is in more_subnets), and
    # --aux-address: addresses never claimed, by name.
    ip_range: IPv4Network | None = None
    ip_range6: IPv6Network | None = None
    aux: tuple[tuple[str, IPv4Address | IPv6Address], ...] = ()

    def subnets(self, version: int) -> list[IPv4Network | IPv6Network]:
        """Every subnet of one family, the first one first."""
        first = self.subnet if version == 4 else self.subnet6
        more = [c.subnet for c in self.more_subnets if c.subnet.version == version]
        return ([first] if first is not None else []) + more

    def encode(self) -> bytes:
        six = {} if self.subnet6 is None else {"subnet6": str(self.subnet6), "gateway6": str(self.gateway6)}
        four = {} if self.subnet is None else {"subnet": str(self.subnet), "gateway": str(self.gateway)}
        # Only when there are some: a record without them reads as before on every version.
        more = [
            {"subnet": str(c.subnet), "gateway": str(c.gateway)}
            | ({"ip_range": str(c.ip_range)} if c.ip_range is not None else {})
            for c in self.more_subnets
        ]
        ranges = {
            key: str(value)
            for key, value in (("ip_range", self.ip_range), ("ip_range6", self.ip_range6))
            if value is not None
        }
        return _dump(
            six
            | four
            | ranges
            | ({"aux": {name: str(a) for name, a in self.aux}} if self.aux else {})
            | ({"more_subnets": more} if more else {})
            | {
                "id": self.id,
                "name": self.name,
                "driver": self.driver,
                "internal": self.internal,
                "attachable": self.attachable,
                "mtu": self.mtu,
                "labels": dict(self.labels),
                "created_by": self.created_by,
                "vni": self.vni,
            }
        )

    @classmethod
    def decode(cls, raw: bytes, revision: int = 0) -> NetworkRecord:
        d = _load(raw, "network")
        if "subnet" not in d and not d.get("subnet6"):
            raise RecordError("network: neither an IPv4 subnet nor an IPv6 one")
        try:
            return cls(
                id=str(d["id"]),
                name=str(d["name"]),
                driver=str(d["driver"]),
                subnet=IPv4Network(d["subnet"]) if "subnet" in d else None,
                gateway=IPv4Address(d["gateway"]) if "subnet" in d else None,
                internal=bool(d.get("internal", False)),
                attachable=bool(d.get("attachable", False)),
                mtu=int(d["mtu"]) if d.get("mtu") is not None else None,
                labels=tuple(sorted((str(k), str(v)) for k, v in (d.get("labels") or {}).items())),
                created_by=str(d.get("created_by", "")),
                vni=int(d.get("vni", 0)),
                revision=revision,
                subnet6=IPv6Network(d["subnet6"]) if d.get("subnet6") else None,
                gateway6=IPv6Address(d["gateway6"]) if d.get("subnet6") else None,
                more_subnets=tuple(
                    SubnetConfig(
                        ip_network(str(c["subnet"])),
                        ip_address(str(c["gateway"])),
                        ip_network(str(c["ip_range"])) if c.get("ip_range") else None,
                    )
                    for c in d.get("more_subnets") or ()
                ),
                ip_range=IPv4Network(d["ip_range"]) if d.get("ip_range") else None,
                ip_range6=IPv6Network(d["ip_range6"]) if d.get("ip_range6") else None,
                aux=tuple(sorted((str(k), ip_address(str(v))) for k, v in (d.get("aux") or {}).items())),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise RecordError(f"network: {e}") from None


@dataclass(frozen=True)
class HostRecord:
    """A live host: where its VXLAN tunnels end (VTEP)."""

    id: str
    vtep: IPv4Address
    name: str = ""  # the machine's hostname, for messages

    def encode(self) -> bytes:
        return _dump({"id": self.id, "vtep": str(self.vtep), "name": self.name})

    @classmethod
    def decode(cls, raw: bytes) -> HostRecord:
        d = _load(raw, "host")
        try:
            return cls(str(d["id"]), IPv4Address(d["vtep"]), str(d.get("name", "")))
        except (KeyError, TypeError, ValueError) as e:
            raise RecordError(f"host: {e}") from None


@dataclass(frozen=True)
class EndpointRecord:
    """One container on one global network, as every other host needs to know it."""

    network_id: str
    id: str
    host_id: str
    vtep: IPv4Address
    mac: str  # aa:bb:cc:dd:ee:ff, lower case
    address: IPv4Address | None  # None on an IPv6-only network
    container_id: str = ""
    name: str = ""  # the container's name, for DNS
    aliases: tuple[str, ...] = ()
    address6: IPv6Address | None = None  # on a dual-stack network

    def encode(self) -> bytes:
        six = {} if self.address6 is None else {"address6": str(self.address6)}
        four = {} if self.address is None else {"address": str(self.address)}
        return _dump(
            six
            | four
            | {
                "network_id": self.network_id,
                "id": self.id,
                "host_id": self.host_id,
                "vtep": str(self.vtep),
                "mac": self.mac,
                "container_id": self.container_id,
                "name": self.name,
                "aliases": list(self.aliases),
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> EndpointRecord:
        d = _load(raw, "endpoint")
        if "address" not in d and not d.get("address6"):
            raise RecordError("endpoint: neither an IPv4 address nor an IPv6 one")
        try:
            return cls(
                network_id=str(d["network_id"]),
                id=str(d["id"]),
                host_id=str(d["host_id"]),
                vtep=IPv4Address(d["vtep"]),
                mac=str(d["mac"]).lower(),
                address=IPv4Address(d["address"]) if "address" in d else None,
                container_id=str(d.get("container_id", "")),
                name=str(d.get("name", "")),
                aliases=tuple(str(a) for a in d.get("aliases") or ()),
                address6=IPv6Address(d["address6"]) if d.get("address6") else None,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise RecordError(f"endpoint: {e}") from None

    @property
    def addresses(self) -> tuple[IPv4Address | IPv6Address, ...]:
        """Its addresses, IPv4's first: each holds a claim (one or two, never none)."""
        return tuple(a for a in (self.address, self.address6) if a is not None)

    @property
    def dns_names(self) -> tuple[str, ...]:
        """The names this endpoint answers to on its network: its name, its aliases, its short id."""
        names = [n for n in (self.name, *self.aliases) if n]
        if self.container_id:
            names.append(self.container_id[:12])
        return tuple(dict.fromkeys(n.lower() for n in names))


@dataclass(frozen=True)
class Claim:
    """An address held: by which host, for which endpoint. Not under a lease."""

    host_id: str
    endpoint_id: str

    def encode(self) -> bytes:
        return _dump({"host": self.host_id, "endpoint": self.endpoint_id})

    @classmethod
    def decode(cls, raw: bytes) -> Claim:
        d = _load(raw, "claim")
        try:
            return cls(str(d["host"]), str(d["endpoint"]))
        except (KeyError, TypeError) as e:
            raise RecordError(f"claim: {e}") from None


@dataclass(frozen=True)
class Gone:
    """A host seen gone: who saw it and the grace period it was given, in seconds."""

    seen_by: str
    grace: int
    lease: int = 0  # the grace timer's lease (grace/<host> lives under it)

    def encode(self) -> bytes:
        return _dump({"seen_by": self.seen_by, "grace": self.grace, "lease": self.lease})

    @classmethod
    def decode(cls, raw: bytes) -> Gone:
        d = _load(raw, "gone")
        try:
            return cls(str(d["seen_by"]), int(d["grace"]), int(d.get("lease", 0)))
        except (KeyError, TypeError, ValueError) as e:
            raise RecordError(f"gone: {e}") from None

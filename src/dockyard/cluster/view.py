"""The watch's cache of the cluster, and the callbacks the overlay driver gets from it.

ClusterView holds, as of the last revision the watch applied, every global
network, every live host (its VTEP) and every published endpoint. It is fed
only by the watch loop (watch.py): a full listing (`reset`, which diffs
against what it held) or events (`apply`), so what the listener is told is
always a transition of this cache, in revision order, each once: an
endpoint is added, updated or removed, whether the news came by an event or
by a resync after a compaction or a reconnect.

The listener (the overlay driver) hears about other hosts' endpoints only,
on the watch's thread, one call at a time; a listener that raises is logged
and the watch goes on. Queries are for everyone and never ask etcd: DNS
resolves remote names here, the driver's periodic reconcile compares the
kernel's FDB and neighbour tables with `fdb` and `neighbours`, and a join
programs what is here before its container starts sending.

It also keeps, per global network, which addresses are claimed and where
each family's cursor stands (keys only, no listener call): a hint from
which GlobalIpam picks its candidate without reading etcd first. Never a
guarantee: the claim's txn is what decides (create-if-absent).

A MAC or an address may briefly belong to two endpoints (a container moved:
the new host published before the old host's lease expired). `fdb`,
`neighbours` and `entries` (the same for a few MACs and addresses) give
the one created last, and a removal is told with what is left, so the
driver re-points an entry rather than deleting it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

from dockyard.cluster.keys import Keys, Kind
from dockyard.cluster.records import EndpointRecord, HostRecord, NetworkRecord, RecordError
from dockyard.cluster.wire import KV, Event, EventType

log = logging.getLogger("dockyard.cluster")


class ClusterListener:
    """What the overlay driver overrides; every method is a no-op here."""

    def network_added(self, network: NetworkRecord) -> None: ...

    def network_removed(self, network: NetworkRecord) -> None: ...

    def host_added(self, host: HostRecord) -> None: ...

    def host_removed(self, host: HostRecord) -> None: ...

    def endpoint_added(self, ep: EndpointRecord) -> None: ...

    def endpoint_updated(self, old: EndpointRecord, new: EndpointRecord) -> None: ...

    def endpoint_removed(self, ep: EndpointRecord, successor: EndpointRecord | None) -> None:
        """ep is gone; successor: the remote endpoint that now has ep's MAC on that network, if any
        (program the FDB entry to it instead of deleting it)."""


_Record = NetworkRecord | HostRecord | EndpointRecord
_Call = Callable[[], None]
Address = IPv4Address | IPv6Address


@dataclass(frozen=True)
class Claimed:
    """A network's claimed addresses of one family and its cursor, as of the view's revision."""

    used: frozenset[Address]
    cursor: Address | None
    revision: int


class ClusterView:
    def __init__(
        self,
        keys: Keys,
        local_host: str,
        listener: ClusterListener | None = None,
        on_host_gone: Callable[[], None] | None = None,
    ) -> None:
        self.keys = keys
        self.local_host = local_host
        self.listener = listener or ClusterListener()
        # A host record or a grace timer went: the reaper may have work.
        self.on_host_gone = on_host_gone
        self._lock = threading.Lock()
        # key -> (record, create revision)
        self._records: dict[str, tuple[_Record, int]] = {}
        # network id -> its claimed addresses (both families); (network id, version) -> cursor.
        self._claims: dict[str, set[Address]] = {}
        self._cursors: dict[tuple[str, int], Address] = {}
        self.revision = 0
        self.ready = threading.Event()

    # -- fed by the watch ------------------------------------------------------------------------

    def reset(self, kvs: list[KV], revision: int) -> None:
        """Replace the cache with a full listing taken at revision; tell the differences."""
        fresh: dict[str, tuple[_Record, int]] = {}
        for kv in kvs:
            record = self._decode(kv)
            if record is not None:
                fresh[kv.key] = (record, kv.create_revision)
        calls: list[_Call] = []
        kick = False
        with self._lock:
            self._claims, self._cursors = {}, {}
            for kv in kvs:
                self._address_key(kv.key, kv.value)
            old = self._records
            for key in old.keys() - fresh.keys():
                kick |= isinstance(old[key][0], HostRecord)
            self._records = dict(old)
            # Removals first, then additions: a MAC that moved ends up on its new endpoint.
            for key in sorted(old.keys() - fresh.keys()):
                calls += self._remove(key)
            for key in sorted(fresh.keys()):
                if key in old and old[key][0] == fresh[key][0]:
                    continue
                calls += self._put(key, *fresh[key])
            self.revision = revision
        self._run(calls)
        if kick:
            self._kick()
        self.ready.set()

    def apply(self, events: list[Event]) -> None:
        """Events of revisions after the cache's, in order."""
        calls: list[_Call] = []
        kick = False
        with self._lock:
            for event in events:
                if event.type is EventType.DELETE:
                    parsed = self.keys.parse(event.kv.key)
                    kick |= parsed is not None and parsed.kind in (Kind.HOST, Kind.GRACE)
                    self._address_key(event.kv.key, None)
                    calls += self._remove(event.kv.key)
                else:
                    self._address_key(event.kv.key, event.kv.value)
                    record = self._decode(event.kv)
                    if record is not None:
                        calls += self._put(event.kv.key, record, event.kv.create_revision)
                self.revision = max(self.revision, event.revision)
        self._run(calls)
        if kick:
            self._kick()

    def _address_key(self, key: str, value: bytes | None) -> None:
        """Keep the claims and cursors up to date (value None: the key was deleted)."""
        parsed = self.keys.parse(key)
        if parsed is None:
            return
        if parsed.kind is Kind.CLAIM:
            address = _address(parsed.parts[1])
            if address is None:
                return
            if value is not None:
                self._claims.setdefault(parsed.parts[0], set()).add(address)
            else:
                held = self._claims.get(parsed.parts[0])
                if held is not None:
                    held.discard(address)
                    if not held:
                        del self._claims[parsed.parts[0]]
        elif parsed.kind in (Kind.CURSOR, Kind.CURSOR6):
            version = 6 if parsed.kind is Kind.CURSOR6 else 4
            at = _address(value.decode(errors="replace")) if value is not None else None
            if at is not None and at.version == version:
                self._cursors[(parsed.parts[0], version)] = at
            else:
                self._cursors.pop((parsed.parts[0], version), None)

    def _decode(self, kv: KV) -> _Record | None:
        parsed = self.keys.parse(kv.key)
        if parsed is None:
            return None
        try:
            if parsed.kind is Kind.NETWORK:
                return NetworkRecord.decode(kv.value, kv.create_revision)
            if parsed.kind is Kind.HOST:
                return HostRecord.decode(kv.value)
            if parsed.kind is Kind.ENDPOINT:
                return EndpointRecord.decode(kv.value)
        except RecordError as e:
            log.warning("ignoring %s: %s", kv.key, e)
        return None

    def _put(self, key: str, record: _Record, created: int) -> list[_Call]:
        old = self._records.get(key)
        self._records[key] = (record, created)
        if old is not None and old[0] == record:
            return []
        ls = self.listener
        if isinstance(record, NetworkRecord):
            return [lambda: ls.network_added(record)] if old is None else []
        if isinstance(record, HostRecord):
            if record.id == self.local_host:
                return []
            if old is not None and isinstance(old[0], HostRecord):
                previous = old[0]
                return [lambda: ls.host_removed(previous), lambda: ls.host_added(record)]
            return [lambda: ls.host_added(record)]
        if record.host_id == self.local_host:
            return []
        if old is not None and isinstance(old[0], EndpointRecord):
            before = old[0]
            return [lambda: ls.endpoint_updated(before, record)]
        return [lambda: ls.endpoint_added(record)]

    def _remove(self, key: str) -> list[_Call]:
        old = self._records.pop(key, None)
        if old is None:
            return []
        record = old[0]
        ls = self.listener
        if isinstance(record, NetworkRecord):
            return [lambda: ls.network_removed(record)]
        if isinstance(record, HostRecord):
            return [] if record.id == self.local_host else [lambda: ls.host_removed(record)]
        if record.host_id == self.local_host:
            return []
        successor = self._mac_holder(record.network_id, record.mac)
        return [lambda: ls.endpoint_removed(record, successor)]

    def _run(self, calls: list[_Call]) -> None:
        for call in calls:
            try:
                call()
            except Exception:
                log.exception("cluster listener failed")

    def _kick(self) -> None:
        if self.on_host_gone is not None:
            try:
                self.on_host_gone()
            except Exception:
                log.exception("cluster host-gone hook failed")

    # -- queries ----------------------------------------------------------------------------------

    def wait_ready(self, timeout: float) -> bool:
        """True once the first listing is in (before it, the cache knows nothing)."""
        return self.ready.wait(timeout)

    def claimed(self, network_id: str, version: int) -> Claimed | None:
        """The network's claimed addresses of one family and its cursor; None before the first
        listing. A hint only: it lags etcd by the watch's delay."""
        if not self.ready.is_set():
            return None
        with self._lock:
            used = frozenset(a for a in self._claims.get(network_id, ()) if a.version == version)
            return Claimed(used, self._cursors.get((network_id, version)), self.revision)

    def _all(self, cls: type) -> list:
        return [rec for rec, _ in self._records.values() if isinstance(rec, cls)]

    def networks(self) -> list[NetworkRecord]:
        with self._lock:
            return sorted(self._all(NetworkRecord), key=lambda n: n.name)

    def network(self, ref: str) -> NetworkRecord | None:
        """By id, then by name."""
        with self._lock:
            nets = self._all(NetworkRecord)
        return next((n for n in nets if n.id == ref), None) or next((n for n in nets if n.name == ref), None)

    def hosts(self) -> list[HostRecord]:
        """Live hosts other than this one."""
        with self._lock:
            return sorted((h for h in self._all(HostRecord) if h.id != self.local_host), key=lambda h: h.id)

    def vteps(self) -> set[IPv4Address]:
        """Where VXLAN may come from: every other live host's VTEP, and the VTEP of every
        remote endpoint (published under its host's lease, so as live as the host: an
        endpoint may be heard before its host's record, when that host has just started)."""
        with self._lock:
            remote = {e.vtep for e in self._all(EndpointRecord) if e.host_id != self.local_host}
        return {h.vtep for h in self.hosts()} | remote

    def endpoints(self, network_id: str, *, remote_only: bool = True) -> list[EndpointRecord]:
        with self._lock:
            eps = [
                e
                for e in self._all(EndpointRecord)
                if e.network_id == network_id and not (remote_only and e.host_id == self.local_host)
            ]
        # IPv4's order first; an IPv6-only network's by IPv6 address.
        return sorted(eps, key=lambda e: (int(e.address or 0), int(e.address6 or 0), e.id))

    def fdb(self, network_id: str) -> dict[str, IPv4Address]:
        """MAC -> VTEP for every remote endpoint of the network (the newest when two share a MAC)."""
        with self._lock:
            return {mac: ep.vtep for mac, ep in self._newest(network_id, lambda e: e.mac).items()}

    def neighbours(self, network_id: str) -> dict[IPv4Address | IPv6Address, str]:
        """Address -> MAC for every remote endpoint of the network (the newest for an address),
        its IPv6 address too on a network with IPv6 (NDP's entries beside ARP's, or alone on
        an IPv6-only network)."""
        with self._lock:
            out: dict[IPv4Address | IPv6Address, str] = {}
            for family in (lambda e: e.address, lambda e: e.address6):
                out.update((a, ep.mac) for a, ep in self._newest(network_id, family).items() if a is not None)
            return out

    def entries(
        self, network_id: str, macs: Iterable[str], addresses: Iterable[Address]
    ) -> tuple[dict[str, IPv4Address], dict[Address, str]]:
        """`fdb` and `neighbours` for these MACs and addresses only, in one pass (what an event
        about one endpoint touches): a MAC or an address absent has no entry any more."""
        macs, addresses = set(macs), set(addresses)
        by_mac: dict[str, tuple[int, EndpointRecord]] = {}
        by_address: dict[Address, tuple[int, EndpointRecord]] = {}
        with self._lock:
            for rec, created in self._records.values():
                if (
                    not isinstance(rec, EndpointRecord)
                    or rec.network_id != network_id
                    or rec.host_id == self.local_host
                ):
                    continue
                if rec.mac in macs and (rec.mac not in by_mac or created > by_mac[rec.mac][0]):
                    by_mac[rec.mac] = (created, rec)
                for address in (rec.address, rec.address6):
                    if address is None or address not in addresses:
                        continue
                    if address not in by_address or created > by_address[address][0]:
                        by_address[address] = (created, rec)
        return (
            {mac: ep.vtep for mac, (_, ep) in by_mac.items()},
            {address: ep.mac for address, (_, ep) in by_address.items()},
        )

    def resolve(self, network_id: str, name: str) -> list[IPv4Address]:
        """IPv4 addresses of remote endpoints on the network answering to name (from the cache)."""
        wanted = name.lower().rstrip(".")
        return [e.address for e in self.endpoints(network_id) if e.address and wanted in e.dns_names]

    def _newest(self, network_id: str, by: Callable[[EndpointRecord], object]) -> dict:
        best: dict[object, tuple[int, EndpointRecord]] = {}
        for rec, created in self._records.values():
            if (
                isinstance(rec, EndpointRecord)
                and rec.network_id == network_id
                and rec.host_id != self.local_host
            ):
                k = by(rec)
                if k not in best or created > best[k][0]:
                    best[k] = (created, rec)
        return {k: rec for k, (_, rec) in best.items()}

    def _mac_holder(self, network_id: str, mac: str) -> EndpointRecord | None:
        return self._newest(network_id, lambda e: e.mac).get(mac)


def _address(text: str) -> Address | None:
    try:
        return ip_address(text)
    except ValueError:
        return None

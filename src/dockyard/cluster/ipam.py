"""Global IPAM: an address of a global network is held by one endpoint of one host.

A claim is `ipam/<network>/<address>` = {host, endpoint}, made by one txn
that succeeds only if the key is absent (create-if-absent), the network is
the one the caller read (same create revision) and this host's record is
under this host's live lease. Two hosts choosing the same address at the
same moment: one txn wins, the other sees the key and takes the next
candidate. So an address is never given twice, and a host whose lease has
lapsed (cut off, not yet back) cannot claim at all.

Candidates are chosen next-fit (policy/ipam.py, the same as local
networks), after the cluster-wide cursor `cursors/<network>` that each
claim moves in its txn: a released address is reused only after the rest
of the subnet. The gateway is reserved, never claimed: it is the same on
every host. What is claimed and where the cursor stands is first taken from
the watch's cache (view.py), so a claim costs one round trip; a cache that
lagged costs a failed txn whose failure branch brings what etcd holds.

An endpoint's claims (one per family) and its published record go in one
txn (`claim_endpoint`), and leave in one (`release`: the claim, if still
this endpoint's, and the record).

A dual-stack network's IPv6 addresses are claimed the same way, under the
same prefix (`ipam/<network>/<IPv6 address>`: a network is not removed
while either family's claim lives, and the reaper frees both), after a
cursor of their own (`cursors6/<network>`). An IPv6-only network's endpoints
claim their IPv6 address alone.

A claim goes only with `release` (its endpoint removed) or with the reaper
(its host gone for longer than the grace period).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address

from dockyard.cluster.etcd import EtcdClient
from dockyard.cluster.keys import Keys, Kind
from dockyard.cluster.records import Claim, EndpointRecord, NetworkRecord, RecordError
from dockyard.cluster.session import HostSession
from dockyard.cluster.view import ClusterView
from dockyard.cluster.wire import (
    KV,
    Delete,
    Get,
    Op,
    Put,
    absent,
    created_at,
    exists,
    lease_is,
    mod_is,
    prefix_end,
    value_is,
)
from dockyard.errors import ClusterUnavailable, Conflict, NotFound
from dockyard.policy import ipam

Address = IPv4Address | IPv6Address


@dataclass
class _Family:
    """One address family's part of a claim: its allocator, the address asked for (or None:
    the next free one) and, while choosing, what is known to be taken and the cursor."""

    version: int
    allocator: ipam.SubnetsAllocator
    requested: Address | None
    used: set[Address] = field(default_factory=set)
    cursor: Address | None = None
    candidate: Address | None = None

    def choose(self) -> Address:
        if self.candidate is None:
            self.candidate = self.requested or self.allocator.allocate(lambda a: a in self.used, self.cursor)
        return self.candidate


# What the claimed addresses' endpoint record will be, once they are known: (IPv4 or None on an
# IPv6-only network, IPv6 or None on an IPv4-only one).
RecordFor = Callable[[IPv4Address | None, IPv6Address | None], EndpointRecord]


class GlobalIpam:
    def __init__(
        self, client: EtcdClient, keys: Keys, session: HostSession, view: ClusterView | None = None
    ) -> None:
        self.client = client
        self.keys = keys
        self.session = session
        # The watch's cache: where a candidate is chosen from, without reading etcd first.
        self.view = view
        # (network id, version) -> (revision, address) of this host's last claim, which the
        # view may not have heard of yet.
        self._last: dict[tuple[str, int], tuple[int, Address]] = {}
        self._last_lock = threading.Lock()

    @property
    def host_id(self) -> str:
        return self.session.host.id

    def claim(
        self, network: NetworkRecord, endpoint_id: str, address: IPv4Address | None = None
    ) -> IPv4Address:
        """Claim `address`, or the next free one, for this host's endpoint."""
        if network.subnet is None:
            raise Conflict(f"network {network.name} has no IPv4 (it is IPv6-only)")
        (got,) = self._claim(network, endpoint_id, [self._family(network, 4, address)], None)
        assert isinstance(got, IPv4Address)
        return got

    def claim_endpoint(
        self,
        network: NetworkRecord,
        endpoint_id: str,
        address: IPv4Address | None,
        address6: IPv6Address | None,
        record: RecordFor | None,
    ) -> tuple[IPv4Address | None, IPv6Address | None]:
        """An endpoint's addresses (one per family the network has) claimed and, with
        record, its record published under this host's lease, all in one txn: either all of
        it or none. The record is then the session's to keep published (HostSession.publish
        finds it done)."""
        families = []
        if network.subnet is not None:
            families.append(self._family(network, 4, address))
        elif address is not None:
            raise Conflict(f"network {network.name} has no IPv4 (it is IPv6-only)")
        if network.subnet6 is not None:
            families.append(self._family(network, 6, address6))
        elif address6 is not None:
            raise Conflict(f"network {network.name} has no IPv6")
        return _pair(self._claim(network, endpoint_id, families, record))

    def _family(self, network: NetworkRecord, version: int, address: Address | None) -> _Family:
        if version == 4 and (network.subnet is None or network.gateway is None):
            raise Conflict(f"network {network.name} has no IPv4 (it is IPv6-only)")
        if version == 6 and (network.subnet6 is None or network.gateway6 is None):
            raise Conflict(f"network {network.name} has no IPv6")
        # Every gateway is reserved in every subnet: each is the same on every host.
        gateways = [network.gateway, network.gateway6, *(c.gateway for c in network.more_subnets)]
        reserved = [g for g in gateways if g is not None] + [a for _, a in network.aux]
        first = [(network.subnet, network.ip_range) if version == 4 else (network.subnet6, network.ip_range6)]
        more = [(c.subnet, c.ip_range) for c in network.more_subnets if c.subnet.version == version]
        allocator = ipam.SubnetsAllocator(
            [ipam.AddressAllocator(s, reserved, r) for s, r in first + more if s is not None]
        )
        if address is not None:
            allocator.check_requested(address, lambda _: False)
        return _Family(version, allocator, address)

    def _claim(
        self,
        network: NetworkRecord,
        endpoint_id: str,
        families: list[_Family],
        record: RecordFor | None,
    ) -> list[Address]:
        """Claim one address per family (and publish the record, if any) in one txn.

        The candidates come from the view (the watch's cache of the claims and cursors, and
        this host's own last claim): no read before the txn. When a candidate was taken, the
        txn's failure branch returns the network's claims and cursors as etcd has them, and
        the next candidates come from those; from then on each taken one is skipped in turn."""
        mine = Claim(self.host_id, endpoint_id).encode()
        net_key = self.keys.network(network.id)
        host_key = self.keys.host(self.host_id)
        net_same = created_at(net_key, network.revision) if network.revision else exists(net_key)
        claims = self.keys.prefix(Kind.CLAIM, network.id)
        hinted = self._hint(network.id, families)
        lock = self.session.publishing() if record is not None else contextlib.nullcontext(None)
        with lock as held_lease:
            lease = held_lease or self.session.require_lease()
            for _ in range(sum(f.allocator.capacity for f in families) + 2):
                candidates = [f.choose() for f in families]
                keys = [self.keys.claim(network.id, c) for c in candidates]
                success: list[Op] = []
                for f, key, candidate in zip(families, keys, candidates, strict=True):
                    cursor_key = self.keys.cursor(network.id, f.version)
                    success += [Put(key, mine), Put(cursor_key, str(candidate).encode())]
                ep = record(*_pair(candidates)) if record is not None else None
                if ep is not None:
                    success.append(Put(self.keys.endpoint(network.id, endpoint_id), ep.encode(), lease))
                failure: list[Op] = [*(Get(k) for k in keys), Get(net_key), Get(host_key)]
                if hinted:
                    failure += [
                        Get(claims, prefix_end(claims)),
                        *(Get(self.keys.cursor(network.id, f.version)) for f in families),
                    ]
                result = self.client.txn(
                    [*(absent(k) for k in keys), net_same, lease_is(host_key, lease)], success, failure
                )
                held = result.ranges[: len(keys)]
                if result.succeeded or all(h and h[0].value == mine for h in held):
                    # (All ours already: our own earlier attempt went through; its answer was lost.)
                    self._remember(network.id, families, result.revision)
                    if ep is not None:
                        self.session.keep_published(ep)
                    return candidates
                net, host = result.ranges[len(keys) : len(keys) + 2]
                if not net or (network.revision and net[0].create_revision != network.revision):
                    raise NotFound(f"network {network.name} not found")
                if not host or host[0].lease != lease:
                    raise ClusterUnavailable("this host's lease in the cluster store lapsed; try again")
                for f, h in zip(families, held, strict=True):
                    if h and f.requested is not None:
                        raise Conflict(f"address {f.requested} is already in use on network {network.name}")
                if hinted:
                    # The hint was behind: what etcd holds, and choose again from it.
                    listed, *cursors = result.ranges[len(keys) + 2 :]
                    for f, cursor in zip(families, cursors, strict=True):
                        f.used = self._addresses(listed, f.version)
                        f.cursor = _cursor(cursor, f.version)
                        f.candidate = None
                    hinted = False
                    continue
                for f, h in zip(families, held, strict=True):
                    if h:  # taken meanwhile: skip it, the others' candidates kept
                        assert f.candidate is not None
                        f.used.add(f.candidate)
                        f.cursor, f.candidate = f.candidate, None
        raise Conflict(f"no available addresses left in network {network.name}")

    def _hint(self, network_id: str, families: list[_Family]) -> bool:
        """Fill each family's used set and cursor to choose from, from the view when it has
        them (True), else from etcd, read in one round trip (False)."""
        wanted = [f for f in families if f.requested is None]
        if not wanted:
            return False
        views = [self.view.claimed(network_id, f.version) if self.view is not None else None for f in wanted]
        if any(v is None for v in views):
            for f in wanted:
                f.used, f.cursor = self._used(network_id, f.version)
            return False
        for f, v in zip(wanted, views, strict=True):
            assert v is not None
            f.used, f.cursor = set(v.used), v.cursor
            with self._last_lock:
                last = self._last.get((network_id, f.version))
            if last is not None and last[0] > v.revision:
                # Our own last claim, not in the view yet.
                f.used.add(last[1])
                f.cursor = last[1]
        return True

    def _remember(self, network_id: str, families: list[_Family], revision: int) -> None:
        with self._last_lock:
            for f in families:
                if f.candidate is not None:
                    self._last[(network_id, f.version)] = (revision, f.candidate)

    def release(self, network_id: str, address: Address, endpoint_id: str) -> bool:
        """Free this endpoint's claim, and its published record with it, in one txn. False when
        the claim was not (or no longer) this endpoint's: nothing of another's is touched (the
        record, this endpoint's own, is deleted either way)."""
        key = self.keys.claim(network_id, address)
        ep_key = self.keys.endpoint(network_id, endpoint_id)
        mine = Claim(self.host_id, endpoint_id)
        self.session.forget(network_id, endpoint_id)
        result = self.client.txn(
            [value_is(key, mine.encode())], [Delete(key), Delete(ep_key)], [Delete(ep_key), Get(key)]
        )
        self.session.deleted(network_id, endpoint_id)
        if result.succeeded:
            return True
        (held,) = result.ranges
        if held and _decoded(held[0].value) == mine:
            # Ours, written in another form (a newer daemon's, with a field more): unchanged since.
            return self.client.txn([mod_is(key, held[0].mod_revision)], [Delete(key)]).succeeded
        return False

    def holder(self, network_id: str, address: Address) -> Claim | None:
        kv = self.client.get(self.keys.claim(network_id, address))
        return _decoded(kv.value) if kv is not None else None

    def claims(self, network_id: str) -> dict[Address, Claim]:
        """Every claim of the network, of both families."""
        prefix = self.keys.prefix(Kind.CLAIM, network_id)
        out = {}
        for kv in self.client.prefix(prefix).kvs:
            parsed = self.keys.parse(kv.key)
            claim = _decoded(kv.value)
            address = _address(parsed.parts[1]) if parsed is not None else None
            if address is not None and claim is not None:
                out[address] = claim
        return out

    def mine(self) -> list[tuple[str, Address, str]]:
        """(network id, address, endpoint id) of every claim this host holds, in every network:
        the engine's gc releases those no local endpoint owns (a release the store missed)."""
        prefix = self.keys.prefix(Kind.CLAIM)
        out = []
        for kv in self.client.prefix(prefix).kvs:
            parsed = self.keys.parse(kv.key)
            claim = _decoded(kv.value)
            if parsed is not None and claim is not None and claim.host_id == self.host_id:
                address = _address(parsed.parts[1])
                if address is not None:
                    out.append((parsed.parts[0], address, claim.endpoint_id))
        return out

    def _used(self, network_id: str, version: int = 4) -> tuple[set[Address], Address | None]:
        """The network's claimed addresses of one family and its cursor, read in one round trip."""
        prefix = self.keys.prefix(Kind.CLAIM, network_id)
        result = self.client.txn(
            [], [Get(prefix, prefix_end(prefix)), Get(self.keys.cursor(network_id, version))]
        )
        claims, cursor = result.ranges
        return self._addresses(claims, version), _cursor(cursor, version)

    def _addresses(self, claims: list[KV], version: int) -> set[Address]:
        used = set()
        for kv in claims:
            parsed = self.keys.parse(kv.key)
            address = _address(parsed.parts[1]) if parsed is not None else None
            if address is not None and address.version == version:
                used.add(address)
        return used


def _cursor(kvs: list[KV], version: int) -> Address | None:
    at = _address(kvs[0].value.decode(errors="replace")) if kvs else None
    return at if at is not None and at.version == version else None


def _pair(addresses: list[Address]) -> tuple[IPv4Address | None, IPv6Address | None]:
    """(IPv4, IPv6) of the addresses claimed, one per family the network has, IPv4's first."""
    v4 = next((a for a in addresses if isinstance(a, IPv4Address)), None)
    v6 = next((a for a in addresses if isinstance(a, IPv6Address)), None)
    return v4, v6


def _address(text: str) -> Address | None:
    try:
        return ip_address(text)
    except ValueError:
        return None


def _decoded(raw: bytes) -> Claim | None:
    try:
        return Claim.decode(raw)
    except RecordError:
        return None

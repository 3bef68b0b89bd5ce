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
every host.

A dual-stack network's IPv6 addresses are claimed the same way, under the
same prefix (`ipam/<network>/<IPv6 address>`: a network is not removed
while either family's claim lives, and the reaper frees both), after a
cursor of their own (`cursors6/<network>`).

A claim goes only with `release` (its endpoint removed) or with the reaper
(its host gone for longer than the grace period).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from dockyard.cluster.etcd import EtcdClient
from dockyard.cluster.keys import Keys, Kind
from dockyard.cluster.records import Claim, NetworkRecord, RecordError
from dockyard.cluster.session import HostSession
from dockyard.cluster.wire import Delete, Get, Put, absent, created_at, exists, lease_is, mod_is, prefix_end
from dockyard.errors import ClusterUnavailable, Conflict, NotFound
from dockyard.policy import ipam

Address = IPv4Address | IPv6Address


class GlobalIpam:
    def __init__(self, client: EtcdClient, keys: Keys, session: HostSession) -> None:
        self.client = client
        self.keys = keys
        self.session = session

    @property
    def host_id(self) -> str:
        return self.session.host.id

    def claim(
        self, network: NetworkRecord, endpoint_id: str, address: IPv4Address | None = None
    ) -> IPv4Address:
        """Claim `address`, or the next free one, for this host's endpoint."""
        allocator = ipam.AddressAllocator(network.subnet, [network.gateway])
        return self._claim(network, endpoint_id, address, allocator, 4)

    def claim6(
        self, network: NetworkRecord, endpoint_id: str, address: IPv6Address | None = None
    ) -> IPv6Address:
        """claim's IPv6 twin, on a dual-stack network."""
        if network.subnet6 is None or network.gateway6 is None:
            raise Conflict(f"network {network.name} has no IPv6")
        allocator = ipam.AddressAllocator(network.subnet6, [network.gateway6])
        return self._claim(network, endpoint_id, address, allocator, 6)

    def _claim(
        self,
        network: NetworkRecord,
        endpoint_id: str,
        address: Address | None,
        allocator: ipam.AddressAllocator,
        version: int,
    ) -> Any:
        if address is not None:
            allocator.check_requested(address, lambda _: False)
        lease = self.session.require_lease()
        used, cursor = self._used(network.id, version) if address is None else (set(), None)
        mine = Claim(self.host_id, endpoint_id).encode()
        net_key = self.keys.network(network.id)
        host_key = self.keys.host(self.host_id)
        net_same = created_at(net_key, network.revision) if network.revision else exists(net_key)
        for _ in range(allocator.capacity + 1):
            candidate = address or allocator.allocate(lambda a: a in used, cursor)
            key = self.keys.claim(network.id, candidate)
            result = self.client.txn(
                [absent(key), net_same, lease_is(host_key, lease)],
                [Put(key, mine), Put(self.keys.cursor(network.id, version), str(candidate).encode())],
                [Get(key), Get(net_key), Get(host_key)],
            )
            if result.succeeded:
                return candidate
            held, net, host = result.ranges
            if held and held[0].value == mine:
                return candidate  # our own earlier attempt went through; its answer was lost
            if not net or (network.revision and net[0].create_revision != network.revision):
                raise NotFound(f"network {network.name} not found")
            if not host or host[0].lease != lease:
                raise ClusterUnavailable("this host's lease in the cluster store lapsed; try again")
            if address is not None:
                raise Conflict(f"address {address} is already in use on network {network.name}")
            used.add(candidate)
            cursor = candidate
        raise Conflict(
            f"no available IPv{version} addresses left in network {network.name} ({allocator.subnet})"
        )

    def release(self, network_id: str, address: Address, endpoint_id: str) -> bool:
        """Free this endpoint's claim, and its published record with it. False when the claim
        was not (or no longer) this endpoint's: nothing of another's is touched."""
        key = self.keys.claim(network_id, address)
        ep_key = self.keys.endpoint(network_id, endpoint_id)
        mine = Claim(self.host_id, endpoint_id)
        for _ in range(4):
            kv = self.client.get(key)
            if kv is None or _decoded(kv.value) != mine:
                self.client.delete(ep_key)
                return False
            result = self.client.txn([mod_is(key, kv.mod_revision)], [Delete(key), Delete(ep_key)])
            if result.succeeded:
                return True
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
        used = set()
        for kv in claims:
            parsed = self.keys.parse(kv.key)
            address = _address(parsed.parts[1]) if parsed is not None else None
            if address is not None and address.version == version:
                used.add(address)
        at = _address(cursor[0].value.decode(errors="replace")) if cursor else None
        return used, at if at is not None and at.version == version else None


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

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

A claim goes only with `release` (its endpoint removed) or with the reaper
(its host gone for longer than the grace period).
"""

from __future__ import annotations

from ipaddress import IPv4Address

from dockyard.cluster.etcd import EtcdClient
from dockyard.cluster.keys import Keys, Kind
from dockyard.cluster.records import Claim, NetworkRecord, RecordError
from dockyard.cluster.session import HostSession
from dockyard.cluster.wire import Delete, Get, Put, absent, created_at, exists, lease_is, mod_is, prefix_end
from dockyard.errors import ClusterUnavailable, Conflict, NotFound
from dockyard.policy import ipam


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
        if address is not None:
            allocator.check_requested(address, lambda _: False)
        lease = self.session.require_lease()
        used, cursor = self._used(network.id) if address is None else (set(), None)
        mine = Claim(self.host_id, endpoint_id).encode()
        net_key = self.keys.network(network.id)
        host_key = self.keys.host(self.host_id)
        net_same = created_at(net_key, network.revision) if network.revision else exists(net_key)
        for _ in range(allocator.capacity + 1):
            candidate = address or allocator.allocate(lambda a: a in used, cursor)
            key = self.keys.claim(network.id, candidate)
            result = self.client.txn(
                [absent(key), net_same, lease_is(host_key, lease)],
                [Put(key, mine), Put(self.keys.cursor(network.id), str(candidate).encode())],
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
        raise Conflict(f"no available IPv4 addresses left in network {network.name} ({network.subnet})")

    def release(self, network_id: str, address: IPv4Address, endpoint_id: str) -> bool:
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

    def holder(self, network_id: str, address: IPv4Address) -> Claim | None:
        kv = self.client.get(self.keys.claim(network_id, address))
        return _decoded(kv.value) if kv is not None else None

    def claims(self, network_id: str) -> dict[IPv4Address, Claim]:
        prefix = self.keys.prefix(Kind.CLAIM, network_id)
        out = {}
        for kv in self.client.prefix(prefix).kvs:
            parsed = self.keys.parse(kv.key)
            claim = _decoded(kv.value)
            if parsed is not None and claim is not None:
                out[IPv4Address(parsed.parts[1])] = claim
        return out

    def mine(self) -> list[tuple[str, IPv4Address, str]]:
        """(network id, address, endpoint id) of every claim this host holds, in every network:
        the engine's gc releases those no local endpoint owns (a release the store missed)."""
        prefix = self.keys.prefix(Kind.CLAIM)
        out = []
        for kv in self.client.prefix(prefix).kvs:
            parsed = self.keys.parse(kv.key)
            claim = _decoded(kv.value)
            if parsed is not None and claim is not None and claim.host_id == self.host_id:
                try:
                    out.append((parsed.parts[0], IPv4Address(parsed.parts[1]), claim.endpoint_id))
                except ValueError:
                    continue
        return out

    def _used(self, network_id: str) -> tuple[set[IPv4Address], IPv4Address | None]:
        """The network's claimed addresses and its cursor, read in one round trip."""
        prefix = self.keys.prefix(Kind.CLAIM, network_id)
        result = self.client.txn([], [Get(prefix, prefix_end(prefix)), Get(self.keys.cursor(network_id))])
        claims, cursor = result.ranges
        used = set()
        for kv in claims:
            parsed = self.keys.parse(kv.key)
            if parsed is not None:
                try:
                    used.add(IPv4Address(parsed.parts[1]))
                except ValueError:
                    continue
        try:
            at = IPv4Address(cursor[0].value.decode()) if cursor else None
        except ValueError:
            at = None
        return used, at


def _decoded(raw: bytes) -> Claim | None:
    try:
        return Claim.decode(raw)
    except RecordError:
        return None

"""Global networks: made once for the whole cluster, seen by name and id on every host.

Create is optimistic: list the networks at revision R, check the name and the
subnet against them, then one txn that succeeds only if no network was made
or changed after R; a race with another create is retried against the new
list. That makes both the name and the subnet unique cluster-wide without
an index to keep in step. A dual-stack network's IPv6 subnet is checked and
chosen the same way, beside its IPv4 one, in the same txn; an IPv6-only one
(ipv4=False, Docker 28's --ipv4=false) has that subnet alone. Remove is one
txn that succeeds only while no address of the network is claimed and no
endpoint published, so a network never goes from under a container on any
host (claims outlive a dead host's lease: a network keeps its addresses
through the grace period too).
"""

from __future__ import annotations

import builtins
import ipaddress
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from dockyard import digests
from dockyard.cluster.etcd import EtcdClient
from dockyard.cluster.keys import Keys, Kind
from dockyard.cluster.records import Claim, NetworkRecord, RecordError
from dockyard.cluster.wire import Delete, Get, Put, exists, none_under, prefix_end, unchanged_under
from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.model import SubnetConfig, check_name
from dockyard.policy import ipam, ipam6
from dockyard.settings import AddressPool, AddressPool6

# Docker's default for overlay networks: /24s out of 10.0.0.0/8.
DEFAULT_POOL = AddressPool(ipaddress.IPv4Network("10.0.0.0/8"), 24)
OVERLAY = "overlay"
ATTEMPTS = 8
# Docker's first VXLAN id is 4097 (4096 and below were left to others); 24 bits in all.
FIRST_VNI = 4097
LAST_VNI = (1 << 24) - 1


class Networks:
    def __init__(self, client: EtcdClient, keys: Keys, host_id: str) -> None:
        self.client = client
        self.keys = keys
        self.host_id = host_id

    # -- reading -----------------------------------------------------------------------------

    def list(self) -> list[NetworkRecord]:
        return self._list()[1]

    def get(self, network_id: str) -> NetworkRecord | None:
        kv = self.client.get(self.keys.network(network_id))
        if kv is None:
            return None
        return NetworkRecord.decode(kv.value, kv.create_revision)

    def find(self, ref: str) -> NetworkRecord:
        """By id, then name, then unique id prefix (Docker's order)."""
        return _match(ref, self.list())

    # -- create ----------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        subnet: IPv4Network | None = None,
        gateway: IPv4Address | None = None,
        internal: bool = False,
        attachable: bool = False,
        mtu: int | None = None,
        labels: Iterable[tuple[str, str]] = (),
        network_id: str | None = None,
        pools: Iterable[AddressPool] = (DEFAULT_POOL,),
        avoid: Iterable[tuple[str, IPv4Network]] = (),
        ipv6: bool = False,
        subnet6: IPv6Network | None = None,
        gateway6: IPv6Address | None = None,
        pools6: Iterable[AddressPool6] = (),
        avoid6: Iterable[tuple[str, IPv6Network]] = (),
        ipv4: bool = True,
        more: Iterable[SubnetConfig] = (),
        ip_range: IPv4Network | None = None,
        ip_range6: IPv6Network | None = None,
        aux: Iterable[tuple[str, IPv4Address | IPv6Address]] = (),
    ) -> NetworkRecord:
        """avoid: subnets the caller's host has (its networks, its routes), as (what, subnet).
        ipv6: dual stack, subnet6 (else the first free one of pools6) beside the IPv4 subnet;
        avoid6 is avoid's IPv6 twin. ipv4=False: IPv6-only (ipv6 needed, no IPv4 given).
        more: a family's later subnets, after its first one given (their gateway: the first
        host when not given). ip_range, ip_range6: each family's first subnet's range to
        allocate from (a later one's is in more); aux: addresses never claimed, by name."""
        check_name(name, "network")
        if not ipv4:
            if not ipv6:
                raise InvalidArgument("--ipv4=false needs --ipv6: a network must have IPv4 or IPv6")
            for what, value in (("subnet", subnet), ("gateway", gateway)):
                if value is not None:
                    raise InvalidArgument(
                        f"IPv4 {what} {value} given but IPv4 is disabled on this network (--ipv4=false)"
                    )
        if subnet is not None:
            ipam.check_usable(subnet)
        if gateway is not None:
            if subnet is None:
                raise InvalidArgument("a gateway needs a subnet: give --subnet too")
            ipam.check_in_subnet(gateway, subnet, "gateway")
        if mtu is not None and not 68 <= mtu <= 65535:
            raise InvalidArgument(f"invalid MTU {mtu}: expected 68 to 65535")
        if not ipv6 and (subnet6 is not None or gateway6 is not None):
            raise InvalidArgument("an IPv6 subnet or gateway needs --ipv6")
        if gateway6 is not None:
            if subnet6 is None:
                raise InvalidArgument("an IPv6 --gateway needs an IPv6 --subnet")
            ipam.check_in_subnet(gateway6, subnet6, "gateway")
        if ipv6 and subnet6 is None and not pools6:
            raise InvalidArgument("--ipv6 without an IPv6 --subnet needs IPv6 default address pools")
        more = tuple(more)
        firsts = (subnet if ipv4 else None, subnet6 if ipv6 else None)
        more_subnets = ipam6.check_more_subnets(more, firsts, ())
        for what, rng, within in (("--ip-range", ip_range, subnet), ("--ip-range", ip_range6, subnet6)):
            if rng is not None and (within is None or not rng.subnet_of(within)):  # type: ignore[arg-type]
                raise InvalidArgument(f"{what} {rng} needs a --subnet that holds it")
        aux = tuple(sorted(aux))
        given = [n for n in (subnet, subnet6) if n is not None] + [c.subnet for c in more_subnets]
        for aux_name, address in aux:
            ipam.check_in_subnets(address, given, f"aux-address {aux_name}")
        network_id = network_id or digests.token_hex(32)
        pools = tuple(pools)
        pools6 = tuple(pools6)
        avoid6 = tuple(avoid6)
        for _ in range(ATTEMPTS):
            revision, networks = self._list()
            mine = next((n for n in networks if n.id == network_id), None)
            if mine is not None:
                if mine.created_by == self.host_id and mine.name == name:
                    return mine  # an earlier attempt of ours went through; its answer was lost
                raise Conflict(f"network id {network_id} is already in use")
            if any(n.name == name for n in networks):
                raise Conflict(f"network with name {name} already exists")
            taken: list[tuple[str, IPv4Network]] = [
                (f"network {n.name}", s)  # type: ignore[misc]
                for n in networks
                for s in n.subnets(4)
            ]
            taken += avoid
            chosen: IPv4Network | None = None
            if not ipv4:
                pass  # IPv6-only: no IPv4 subnet at all
            elif subnet is None:
                chosen = ipam.first_free_subnet(pools, taken)
            else:
                ipam.check_overlap(subnet, taken)
                chosen = subnet
            chosen6: IPv6Network | None = None
            taken6: list[tuple[str, IPv6Network]] = [
                (f"network {n.name}", s)  # type: ignore[misc]
                for n in networks
                for s in n.subnets(6)
            ]
            taken6 += avoid6
            if ipv6:
                if subnet6 is None:
                    chosen6 = ipam6.first_free_subnet6(pools6, taken6)
                else:
                    ipam6.check_overlap6(subnet6, taken6)
                    chosen6 = subnet6
            ipam6.check_more_subnets(more, firsts, [*taken, *taken6])
            record = NetworkRecord(
                id=network_id,
                name=name,
                driver=OVERLAY,
                subnet=chosen,
                gateway=(gateway or ipam.first_host(chosen)) if chosen is not None else None,
                internal=internal,
                attachable=attachable,
                mtu=mtu,
                labels=tuple(sorted(labels)),
                created_by=self.host_id,
                vni=_free_vni(networks),
                subnet6=chosen6,
                gateway6=(gateway6 or ipam6.first_host6(chosen6)) if chosen6 is not None else None,
                more_subnets=more_subnets,
                ip_range=ip_range,
                ip_range6=ip_range6,
                aux=aux,
            )
            key = self.keys.network(network_id)
            result = self.client.txn(
                [unchanged_under(self.keys.prefix(Kind.NETWORK), revision)],
                [Put(key, record.encode())],
            )
            if result.succeeded:
                return NetworkRecord.decode(record.encode(), result.revision)
        raise Conflict(
            f"network {name} could not be created: other networks kept being made at once; try again"
        )

    # -- remove ------------------------------------------------------------------------------------

    def remove(self, network_id: str) -> None:
        """Remove a network no host uses; Conflict naming the hosts that still do."""
        key = self.keys.network(network_id)
        claims = self.keys.prefix(Kind.CLAIM, network_id)
        endpoints = self.keys.prefix(Kind.ENDPOINT, network_id)
        result = self.client.txn(
            [exists(key), none_under(claims), none_under(endpoints)],
            [Delete(key), Delete(self.keys.cursor(network_id)), Delete(self.keys.cursor(network_id, 6))],
            [Get(key), Get(claims, prefix_end(claims)), Get(endpoints, prefix_end(endpoints))],
        )
        if result.succeeded:
            return
        network, held, published = result.ranges
        if not network:
            raise NotFound(f"network {network_id} not found")
        name = NetworkRecord.decode(network[0].value).name
        hosts: set[str] = set()
        for kv in held:
            try:
                hosts.add(Claim.decode(kv.value).host_id)
            except RecordError:
                hosts.add("?")
        count = max(len(held), len(published))
        raise Conflict(
            f"error while removing network: network {name} has active endpoints "
            f"({count} on host{'s' if len(hosts) != 1 else ''} {', '.join(sorted(hosts))})"
        )

    # -- inside ---------------------------------------------------------------------------------------

    def _list(self) -> tuple[int, builtins.list[NetworkRecord]]:
        result = self.client.prefix(self.keys.prefix(Kind.NETWORK))
        out = []
        for kv in result.kvs:
            try:
                out.append(NetworkRecord.decode(kv.value, kv.create_revision))
            except RecordError:
                continue  # not ours to judge here; the watch logs it
        return result.revision, out


def _free_vni(networks: list[NetworkRecord]) -> int:
    """The lowest VXLAN id no network has (the create txn makes it unique: nothing changed since)."""
    used = {n.vni for n in networks}
    vni = FIRST_VNI
    while vni in used:
        vni += 1
    if vni > LAST_VNI:
        raise Conflict("no VXLAN network identifier left for a new overlay network")
    return vni


def _match(ref: str, networks: list[NetworkRecord]) -> NetworkRecord:
    for n in networks:
        if n.id == ref:
            return n
    for n in networks:
        if n.name == ref:
            return n
    found = [n for n in networks if ref and n.id.startswith(ref)]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise Conflict(f"network {ref} is ambiguous ({len(found)} matches found based on ID prefix)")
    raise NotFound(f"network {ref} not found")

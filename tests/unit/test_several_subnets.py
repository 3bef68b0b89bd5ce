"""A network of several subnets per family: next-fit over them as over one range, each
address with its own subnet's gateway, and the later subnets kept through the store
(schema 6 to 7) and through the cluster's record."""

from __future__ import annotations

import ipaddress
import json
import sqlite3
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dockyard.cluster.records import NetworkRecord
from dockyard.daemon.api.docker import network_spec
from dockyard.errors import Conflict, InvalidArgument
from dockyard.model import DriverName, Network, SubnetConfig
from dockyard.policy.ipam import AddressAllocator, SubnetsAllocator, check_in_subnets
from dockyard.store import SCHEMA_VERSION, Store

A, B, C = IPv4Network("10.61.0.0/30"), IPv4Network("10.62.0.0/29"), IPv4Network("10.63.0.0/29")


def _allocator(*subnets: IPv4Network, reserved: tuple[IPv4Address, ...] = ()) -> SubnetsAllocator:
    return SubnetsAllocator([AddressAllocator(s, reserved) for s in subnets])


class Held:
    """What the store would hold: leased addresses and the network's cursor."""

    def __init__(self, allocator: SubnetsAllocator | AddressAllocator) -> None:
        self.allocator = allocator
        self.held: set[IPv4Address] = set()
        self.cursor: IPv4Address | None = None

    def allocate(self) -> IPv4Address:
        address = self.allocator.allocate(lambda a: a in self.held, self.cursor)
        self.held.add(address)
        self.cursor = address
        return address


def test_the_first_subnet_fills_first_then_the_next() -> None:
    leases = Held(_allocator(A, B, reserved=(IPv4Address("10.61.0.1"), IPv4Address("10.62.0.6"))))
    got = [str(leases.allocate()) for _ in range(6)]
    # A /30 holds one container beside its gateway; B's gateway (.6) is never given.
    assert got == ["10.61.0.2", "10.62.0.1", "10.62.0.2", "10.62.0.3", "10.62.0.4", "10.62.0.5"]
    with pytest.raises(Conflict, match=r"no available IPv4 addresses left in 10.61.0.0/30, 10.62.0.0/29"):
        leases.allocate()
    assert leases.allocator.capacity == 6


def test_a_released_address_of_an_earlier_subnet_waits_for_the_rest_of_the_later_ones() -> None:
    leases = Held(_allocator(A, B, C))
    first = [leases.allocate() for _ in range(3)]  # A's two, then B's first
    assert [str(a) for a in first] == ["10.61.0.1", "10.61.0.2", "10.62.0.1"]
    leases.held.discard(first[0])
    # Next-fit: the rest of B, then C, before A's released address comes back.
    rest = [leases.allocate() for _ in range(5 + 6)]
    assert [str(a) for a in rest[:5]] == [f"10.62.0.{i}" for i in range(2, 7)]
    assert [str(a) for a in rest[5:]] == [f"10.63.0.{i}" for i in range(1, 7)]
    assert str(leases.allocate()) == "10.61.0.1"


def test_a_requested_address_is_checked_in_its_own_subnet() -> None:
    allocator = _allocator(A, B, reserved=(IPv4Address("10.62.0.6"),))
    assert allocator.check_requested(IPv4Address("10.62.0.3"), lambda _: False) == IPv4Address("10.62.0.3")
    with pytest.raises(Conflict, match="reserved"):
        allocator.check_requested(IPv4Address("10.62.0.6"), lambda _: False)
    with pytest.raises(Conflict, match="in use"):
        allocator.check_requested(IPv4Address("10.62.0.3"), lambda _: True)
    with pytest.raises(InvalidArgument):
        allocator.check_requested(IPv4Address("10.99.0.1"), lambda _: False)
    check_in_subnets(IPv4Address("10.62.0.5"), [A, B, IPv6Network("fd00::/64")], "--ip")
    with pytest.raises(InvalidArgument, match=r"of any subnet of the network \(10.61.0.0/30, 10.62.0.0/29\)"):
        check_in_subnets(IPv4Address("10.99.0.1"), [A, B, IPv6Network("fd00::/64")], "--ip")
    # One subnet: the message it always had.
    with pytest.raises(InvalidArgument, match=r"is not a usable address of subnet 10\.61\.0\.0/30"):
        check_in_subnets(IPv4Address("10.99.0.1"), [A], "--ip")
    with pytest.raises(InvalidArgument, match="usable"):
        check_in_subnets(IPv4Address("10.62.0.7"), [A, B], "--ip")  # B's broadcast address


# Subnets of a /24 each, without overlap: (offset in /29 blocks, prefix 29 or 30).
_layouts = st.lists(st.tuples(st.integers(0, 31), st.sampled_from([29, 30])), min_size=1, max_size=4)


def _subnets(layout: list[tuple[int, int]]) -> list[IPv4Network]:
    out: list[IPv4Network] = []
    for block, prefix in layout:
        net = IPv4Network(f"10.70.0.{block * 8}/{prefix}")
        if not any(net.overlaps(o) for o in out):
            out.append(net)
    return out


@settings(max_examples=300, deadline=None)
@given(_layouts, st.lists(st.one_of(st.just(-1), st.integers(0, 1000)), max_size=80))
@example([(0, 30), (1, 29)], [-1, -1, 0, -1, -1, -1, -1, -1, -1, -1])
def test_no_address_is_given_twice_and_none_while_one_is_free(layout: list, steps: list[int]) -> None:
    subnets = _subnets(layout)
    leases = Held(_allocator(*subnets))
    usable = {a for s in subnets for a in s.hosts()}
    assert leases.allocator.capacity == len(usable)
    for step in steps:
        if step == -1:
            if leases.held >= usable:
                with pytest.raises(Conflict):
                    leases.allocate()
                continue
            before = set(leases.held)
            address = leases.allocate()
            assert address in usable and address not in before
        elif leases.held:
            leases.held.discard(sorted(leases.held)[step % len(leases.held)])


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 31), st.sets(st.integers(1, 6), max_size=6), st.one_of(st.none(), st.integers(0, 7)))
def test_one_subnet_allocates_as_its_own_allocator_does(
    block: int, used: set[int], cursor: int | None
) -> None:
    subnet = IPv4Network(f"10.70.0.{block * 8}/29")
    taken = {subnet.network_address + i for i in used}
    at = subnet.network_address + cursor if cursor is not None else None
    alone, wrapped = AddressAllocator(subnet, ()), _allocator(subnet)

    def outcome(allocator: AddressAllocator | SubnetsAllocator) -> object:
        try:
            return allocator.allocate(lambda a: a in taken, at)
        except Conflict as e:
            return str(e)

    assert outcome(wrapped) == outcome(alone)


def _network(**more: object) -> Network:
    return Network(
        id="n" * 64,
        name="multi",
        driver=DriverName.OVERLAY,
        subnet=A,
        gateway=IPv4Address("10.61.0.1"),
        enable_ipv6=True,
        subnet6=IPv6Network("fd00:61::/64"),
        gateway6=IPv6Address("fd00:61::1"),
        more_subnets=(
            SubnetConfig(B, IPv4Address("10.62.0.6")),
            SubnetConfig(IPv6Network("fd00:62::/64"), IPv6Address("fd00:62::1")),
            SubnetConfig(C, IPv4Address("10.63.0.1"), IPv4Network("10.63.0.4/30")),
        ),
        **more,  # type: ignore[arg-type]
    )


def test_a_network_names_every_subnet_of_a_family_in_order_and_the_one_an_address_is_in() -> None:
    n = _network()
    assert [c.subnet for c in n.subnet_configs(4)] == [A, B, C]
    assert [str(c.gateway) for c in n.subnet_configs(6)] == ["fd00:61::1", "fd00:62::1"]
    assert n.subnets() == (A, B, C, IPv6Network("fd00:61::/64"), IPv6Network("fd00:62::/64"))
    config = n.config_of(IPv4Address("10.63.0.5"))
    assert config == SubnetConfig(C, IPv4Address("10.63.0.1"), IPv4Network("10.63.0.4/30"))
    assert n.config_of(IPv6Address("fd00:62::9")) == n.more_subnets[1]
    assert n.config_of(IPv4Address("10.64.0.1")) is None


def test_the_store_keeps_every_subnet_and_a_schema_6_database_gains_none(tmp_path: Path) -> None:
    path = tmp_path / "dockyard.db"
    Store(path).close()
    db = sqlite3.connect(path)
    db.executescript(
        "INSERT INTO networks(id, name, driver, subnet, gateway, created) VALUES "
        "('o' || hex(zeroblob(31)), 'old', 'bridge', '10.80.0.0/24', '10.80.0.1', '2026-01-01');"
        # The table as schema 6 had it: every column but the new one.
        "CREATE TABLE networks_6 AS SELECT * FROM networks;"
        "ALTER TABLE networks_6 DROP COLUMN more_subnets;"
        "DROP TABLE networks; ALTER TABLE networks_6 RENAME TO networks;"
        "PRAGMA user_version=6;"
    )
    db.close()
    store = Store(path)
    try:
        old = store.get_network("old")
        assert old.more_subnets == () and old.subnet_configs(4) == (
            SubnetConfig(IPv4Network("10.80.0.0/24"), IPv4Address("10.80.0.1")),
        )
        n = _network(created="2026-12-07T00:00:00Z", bridge="dy-multi")
        store.add_network(n)
        assert store.get_network("multi") == n
    finally:
        store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


def test_the_cluster_record_carries_subnets_ranges_and_aux_and_one_without_reads_as_before() -> None:
    kept = _network()
    record = NetworkRecord(
        "n" * 64,
        "multi",
        "overlay",
        A,
        IPv4Address("10.61.0.1"),
        subnet6=IPv6Network("fd00:61::/64"),
        gateway6=IPv6Address("fd00:61::1"),
        more_subnets=kept.more_subnets,
        ip_range=IPv4Network("10.61.0.0/31"),
        ip_range6=IPv6Network("fd00:61::/120"),
        aux=(("one", IPv4Address("10.62.0.3")), ("six", IPv6Address("fd00:62::9"))),
    )
    assert NetworkRecord.decode(record.encode()) == record
    assert record.subnets(4) == [A, B, C] and record.subnets(6) == [
        IPv6Network("fd00:61::/64"),
        IPv6Network("fd00:62::/64"),
    ]
    # Without later subnets, not a byte more than an earlier version wrote.
    plain = NetworkRecord("n" * 64, "ov", "overlay", A, IPv4Address("10.61.0.1"))
    assert not {"more_subnets", "ip_range", "ip_range6", "aux"} & set(json.loads(plain.encode()))


@pytest.mark.parametrize(
    "config",
    [
        [{"Subnet": "10.61.0.0/30"}, {"Subnet": "10.62.0.0/24", "Gateway": "10.62.0.254"}],
        [{"Subnet": "10.61.0.0/30"}, {"Subnet": "fd00:1::/64"}, {"Subnet": "fd00:2::/64"}],
    ],
)
def test_the_api_gives_an_overlay_network_every_subnet_and_a_bridge_refuses_the_second(
    config: list[dict[str, str]],
) -> None:
    body = {"Name": "multi", "Driver": "overlay", "EnableIPv6": True, "IPAM": {"Config": config}}
    spec = network_spec(body)
    given = [ipaddress.ip_network(c["Subnet"]) for c in config]
    firsts = [spec.subnet, spec.subnet6]
    assert [s for s in given if s not in firsts] == [c.subnet for c in spec.more_subnets]
    gateways = {str(c.subnet): str(c.gateway) for c in spec.more_subnets if c.gateway is not None}
    assert gateways == {c["Subnet"]: c["Gateway"] for c in config[1:] if "Gateway" in c}
    with pytest.raises(InvalidArgument, match="bridge driver doesn't support multiple subnets"):
        network_spec(body | {"Driver": "bridge"})

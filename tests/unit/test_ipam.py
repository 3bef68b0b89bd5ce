"""ipam.py: subnets for networks and next-fit addresses for endpoints."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dockyard.errors import Conflict, InvalidArgument
from dockyard.policy.ipam import (
    AddressAllocator,
    SubnetsAllocator,
    check_in_subnet,
    check_in_subnets,
    check_overlap,
    check_usable,
    first_free_subnet,
    first_host,
    parse_address,
    parse_subnet,
    pool_candidates,
)
from dockyard.settings import AddressPool, DaemonSettings

NET = ipaddress.IPv4Network
IP = ipaddress.IPv4Address


def _unused(_address: ipaddress.IPv4Address) -> bool:
    return False


def _pool(base: str, size: int) -> AddressPool:
    return AddressPool(NET(base), size)


# --- parsing --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.1.0.0/24", NET("10.1.0.0/24")),
        ("172.17.0.0/16", NET("172.17.0.0/16")),
        ("10.0.0.0/30", NET("10.0.0.0/30")),
        ("10.0.0.0/255.255.255.0", NET("10.0.0.0/24")),
    ],
)
def test_parse_subnet(text: str, expected: ipaddress.IPv4Network) -> None:
    assert parse_subnet(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "expected an IPv4 CIDR"),
        ("foo", "expected an IPv4 CIDR"),
        ("10.0.0.0/33", "expected an IPv4 CIDR"),
        ("fd00::/64", "expected an IPv4 CIDR"),
        ("10.0.0.0", "the prefix length is missing"),
        ("10.0.0.0/31", "must be /30 or larger"),
        ("10.0.0.1/32", "must be /30 or larger"),
        ("10.1.2.3/16", "host bits are set; did you mean 10.1.0.0/16?"),
    ],
)
def test_parse_subnet_errors(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_subnet(text, "--subnet")
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"invalid --subnet {text!r}")


# RFC 6890's ranges where no container may have an address, written out apart from dockyard's own table.
NOT_FOR_CONTAINERS = [
    (NET("0.0.0.0/8"), "this network"),
    (NET("127.0.0.0/8"), "loopback"),
    (NET("169.254.0.0/16"), "link-local"),
    (NET("224.0.0.0/4"), "multicast"),
    (NET("255.255.255.255/32"), "broadcast"),
    (NET("240.0.0.0/4"), "reserved"),
]
NOT_THERE = ": no container may have an address there"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("127.0.0.0/8", "it is 127.0.0.0/8 (the loopback range)"),
        ("127.0.0.0/24", "it lies in 127.0.0.0/8 (the loopback range)"),
        ("96.0.0.0/3", "it holds 127.0.0.0/8 (the loopback range)"),
        ("224.0.0.0/24", "it lies in 224.0.0.0/4 (the multicast range)"),
        ("239.255.255.252/30", "it lies in 224.0.0.0/4 (the multicast range)"),
        ("169.254.0.0/16", "it is 169.254.0.0/16 (the link-local range)"),
        ("0.0.0.0/8", 'it is 0.0.0.0/8 (the "this network" range)'),
        ("0.0.0.0/0", 'it holds 0.0.0.0/8 (the "this network" range)'),
        ("240.0.0.0/4", "it is 240.0.0.0/4 (the reserved range, with the broadcast address 255.255.255.255)"),
        ("255.255.255.252/30", "it lies in 240.0.0.0/4 (the reserved range, with the broadcast address"),
        ("192.0.0.0/2", "it holds 224.0.0.0/4 (the multicast range)"),
    ],
)
def test_a_subnet_no_container_may_use_is_refused(text: str, why: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_subnet(text, "--subnet")
    assert str(info.value).startswith(f"invalid --subnet {text!r}: {why}")
    assert str(info.value).endswith(NOT_THERE)
    with pytest.raises(InvalidArgument) as info:
        check_usable(NET(text))
    assert str(info.value).startswith(f"invalid subnet {text}: {why}")


@pytest.mark.parametrize(
    "text",
    ["1.0.0.0/8", "126.255.255.252/30", "128.0.0.0/3", "169.253.0.0/16", "223.255.255.0/24", "100.64.0.0/10"],
)
def test_ordinary_subnets_next_to_them_are_taken(text: str) -> None:
    assert parse_subnet(text) == NET(text)
    check_usable(NET(text))


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1), st.integers(min_value=0, max_value=30))
def test_a_subnet_is_taken_exactly_when_it_overlaps_no_special_range(address: int, prefix: int) -> None:
    net = NET(f"{IP(address)}/{prefix}", strict=False)
    clashes = [why for special, why in NOT_FOR_CONTAINERS if net.overlaps(special)]
    if clashes:
        with pytest.raises(InvalidArgument) as info:
            parse_subnet(str(net), "--subnet")
        message = str(info.value)
        assert "\n" not in message and str(net) in message, message
        assert any(why in message for why in clashes), (message, clashes)
    else:
        assert parse_subnet(str(net), "--subnet") == net


def test_parse_address() -> None:
    assert parse_address("10.0.0.7") == IP("10.0.0.7")
    for bad in ("", "10.0.0", "10.0.0.256", "::1", "10.0.0.1/24"):
        with pytest.raises(
            InvalidArgument, match=re.escape(f"invalid --ip {bad!r}: expected an IPv4 address")
        ):
            parse_address(bad, "--ip")


# --- subnets --------------------------------------------------------------------------------------


def test_pool_candidates_cut_each_pool_in_order() -> None:
    got = list(pool_candidates([_pool("10.0.0.0/23", 24), _pool("10.9.0.0/24", 25)]))
    assert got == [NET("10.0.0.0/24"), NET("10.0.1.0/24"), NET("10.9.0.0/25"), NET("10.9.0.128/25")]


def test_the_default_pools_are_dockers() -> None:
    """172.17.0.0/16 to 172.31.0.0/16 as /16s, then 192.168.0.0/16 as /20s: 31 subnets, in that order."""
    got = list(pool_candidates(DaemonSettings(root=Path("/nonexistent")).default_address_pools))
    assert got == [NET(f"172.{i}.0.0/16") for i in range(17, 32)] + [
        NET(f"192.168.{16 * i}.0/20") for i in range(16)
    ]
    # The default bridge and user networks take them alike: the first free one, in this order.
    pools = DaemonSettings(root=Path("/nonexistent")).default_address_pools
    taken = [(f"network n{i}", net) for i, net in enumerate(got[:15])]
    assert first_free_subnet(pools, taken) == NET("192.168.0.0/20")
    with pytest.raises(Conflict, match="fully subnetted"):
        first_free_subnet(pools, [(f"network n{i}", net) for i, net in enumerate(got)])


def test_first_free_subnet_is_the_first_candidate_when_nothing_is_taken() -> None:
    assert first_free_subnet([_pool("172.17.0.0/16", 16)], []) == NET("172.17.0.0/16")


def test_first_free_subnet_skips_taken_and_overlapping_subnets() -> None:
    pools = [_pool("172.17.0.0/16", 16), _pool("172.18.0.0/15", 16), _pool("192.168.0.0/16", 20)]
    taken = [
        ("network bridge", NET("172.17.0.0/16")),
        # A smaller route inside a candidate rules the whole candidate out.
        ("a route of the host", NET("172.18.5.0/24")),
    ]
    assert first_free_subnet(pools, taken) == NET("172.19.0.0/16")
    # A larger taken subnet covering several candidates.
    taken.append(("network big", NET("172.16.0.0/12")))
    assert first_free_subnet(pools, taken) == NET("192.168.0.0/20")


def test_first_free_subnet_moves_to_the_next_pool() -> None:
    pools = [_pool("10.0.0.0/23", 24), _pool("10.5.0.0/24", 24)]
    taken = [("a", NET("10.0.0.0/24")), ("b", NET("10.0.1.0/24"))]
    assert first_free_subnet(pools, taken) == NET("10.5.0.0/24")


def test_first_free_subnet_exhausted_is_a_conflict() -> None:
    with pytest.raises(Conflict, match="all predefined address pools have been fully subnetted"):
        first_free_subnet([_pool("10.0.0.0/23", 24)], [("route", NET("10.0.0.0/16"))])


def test_check_overlap_names_the_conflict() -> None:
    taken = [("network first", NET("10.40.0.0/16")), ("a route of the host via up0", NET("198.51.100.0/24"))]
    check_overlap(NET("10.41.0.0/16"), taken)  # no overlap: no error
    with pytest.raises(Conflict) as info:
        check_overlap(NET("10.40.5.0/24"), taken)
    assert str(info.value) == "subnet 10.40.5.0/24 overlaps network first (10.40.0.0/16)"
    with pytest.raises(Conflict, match=r"overlaps a route of the host via up0 \(198.51.100.0/24\)"):
        check_overlap(NET("198.51.0.0/16"), taken)


def test_first_host_and_check_in_subnet() -> None:
    subnet = NET("10.0.0.0/24")
    assert first_host(subnet) == IP("10.0.0.1")
    check_in_subnet(IP("10.0.0.254"), subnet, "--gateway")
    for bad in ("10.0.0.0", "10.0.0.255", "10.0.1.1"):
        with pytest.raises(
            InvalidArgument, match=re.escape(f"--gateway {bad} is not a usable address of subnet")
        ):
            check_in_subnet(IP(bad), subnet, "--gateway")


# --- AddressAllocator: next-fit --------------------------------------------------------------------


class Leases:
    """What the store would hold: leased addresses and the network's cursor."""

    def __init__(self, allocator: AddressAllocator | SubnetsAllocator) -> None:
        self.allocator = allocator
        self.held: set[ipaddress.IPv4Address] = set()
        self.cursor: ipaddress.IPv4Address | None = None
        self.calls = 0

    def is_used(self, address: ipaddress.IPv4Address) -> bool:
        self.calls += 1
        return address in self.held

    def allocate(self) -> ipaddress.IPv4Address:
        address = self.allocator.allocate(self.is_used, self.cursor)
        self.held.add(address)
        self.cursor = address
        return address


def test_first_allocation_skips_network_and_gateway() -> None:
    leases = Leases(AddressAllocator(NET("10.0.0.0/24"), [IP("10.0.0.1")]))
    assert leases.allocate() == IP("10.0.0.2")
    assert leases.allocate() == IP("10.0.0.3")


def test_reserved_addresses_are_never_handed_out() -> None:
    reserved = [IP("10.0.0.1"), IP("10.0.0.3"), IP("10.0.0.5")]
    leases = Leases(AddressAllocator(NET("10.0.0.0/29"), reserved))
    got = [leases.allocate() for _ in range(3)]
    assert got == [IP("10.0.0.2"), IP("10.0.0.4"), IP("10.0.0.6")]
    with pytest.raises(Conflict, match=r"no available IPv4 addresses left in 10.0.0.0/29"):
        leases.allocate()


def test_capacity_counts_usable_addresses() -> None:
    assert AddressAllocator(NET("10.0.0.0/24"), [IP("10.0.0.1")]).capacity == 253
    assert AddressAllocator(NET("10.0.0.0/30"), []).capacity == 2
    assert AddressAllocator(NET("10.0.0.0/24"), [IP("10.0.0.1")], NET("10.0.0.128/25")).capacity == 127


def test_released_address_is_reused_only_after_the_rest_of_the_range() -> None:
    leases = Leases(AddressAllocator(NET("10.0.0.0/29"), [IP("10.0.0.1")]))
    first, second, third = (leases.allocate() for _ in range(3))
    assert (first, second, third) == (IP("10.0.0.2"), IP("10.0.0.3"), IP("10.0.0.4"))
    leases.held.discard(second)
    assert leases.allocate() == IP("10.0.0.5")
    assert leases.allocate() == IP("10.0.0.6")
    # The end of the range is reached: wrap, and only now the released one comes back.
    assert leases.allocate() == second


def test_allocation_wraps_past_the_end_of_the_range() -> None:
    leases = Leases(AddressAllocator(NET("10.0.0.0/29"), [IP("10.0.0.1")]))
    leases.cursor = IP("10.0.0.6")  # the last usable address
    assert leases.allocate() == IP("10.0.0.2")


def test_a_cursor_outside_the_range_starts_at_its_beginning() -> None:
    allocator = AddressAllocator(NET("10.0.0.0/24"), [IP("10.0.0.1")], NET("10.0.0.64/26"))
    assert allocator.allocate(_unused, IP("10.0.0.200")) == IP("10.0.0.64")
    assert allocator.allocate(_unused, IP("10.0.0.5")) == IP("10.0.0.64")


def test_exhaustion_is_a_conflict() -> None:
    leases = Leases(AddressAllocator(NET("10.0.0.0/30"), [IP("10.0.0.1")]))
    assert leases.allocate() == IP("10.0.0.2")
    with pytest.raises(Conflict, match="no available IPv4 addresses left"):
        leases.allocate()


def test_ip_range_is_respected() -> None:
    leases = Leases(AddressAllocator(NET("10.0.0.0/24"), [IP("10.0.0.1")], NET("10.0.0.252/30")))
    # A range at the end of the subnet: its broadcast is the subnet's, never handed out.
    assert [leases.allocate() for _ in range(3)] == [IP("10.0.0.252"), IP("10.0.0.253"), IP("10.0.0.254")]
    with pytest.raises(Conflict, match=r"10.0.0.252/30"):
        leases.allocate()


def test_ip_range_at_the_start_of_the_subnet_skips_the_network_address() -> None:
    allocator = AddressAllocator(NET("10.0.0.0/24"), [], NET("10.0.0.0/30"))
    assert allocator.allocate(_unused, None) == IP("10.0.0.1")


def test_check_requested() -> None:
    allocator = AddressAllocator(NET("10.0.0.0/24"), [IP("10.0.0.1"), IP("10.0.0.9")], NET("10.0.0.128/25"))
    held = {IP("10.0.0.20")}
    # A requested address may lie outside --ip-range, as in Docker, but inside the subnet.
    assert allocator.check_requested(IP("10.0.0.30"), held.__contains__) == IP("10.0.0.30")
    with pytest.raises(Conflict, match=re.escape("address 10.0.0.20 is already in use")):
        allocator.check_requested(IP("10.0.0.20"), held.__contains__)
    for reserved in ("10.0.0.1", "10.0.0.9"):
        with pytest.raises(Conflict, match=re.escape(f"address {reserved} is reserved on this network")):
            allocator.check_requested(IP(reserved), held.__contains__)
    for outside in ("10.0.0.0", "10.0.0.255", "10.0.1.5"):
        with pytest.raises(
            InvalidArgument, match=re.escape(f"requested address {outside} is not a usable address")
        ):
            allocator.check_requested(IP(outside), held.__contains__)


def test_allocation_cost_does_not_grow_with_the_number_of_leases() -> None:
    leases = Leases(AddressAllocator(NET("10.20.0.0/16"), [IP("10.20.0.1")]))
    for _ in range(59_999):
        leases.allocate()
    leases.calls = 0
    address = leases.allocate()
    assert address == IP("10.20.0.2") + 59_999  # next-fit hands them out in order
    assert leases.calls <= 2
    assert len(leases.held) == 60_000


# --- property: random subnets, allocations and releases -------------------------------------------

_subnets = st.builds(
    lambda addr, prefix: NET(f"{IP(addr)}/{prefix}", strict=False),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.integers(min_value=24, max_value=30),
)


@st.composite
def _scenario(draw: Callable) -> tuple:
    subnet = draw(_subnets)
    hosts = list(subnet.hosts())
    reserved = draw(st.sets(st.sampled_from(hosts), max_size=min(4, len(hosts))))
    ip_range = None
    if draw(st.booleans()):
        ip_range = NET(
            f"{draw(st.sampled_from(hosts))}/{draw(st.integers(subnet.prefixlen, 30))}", strict=False
        )
    # True: allocate; an int: release the n-th held address (modulo).
    steps = draw(st.lists(st.one_of(st.just(True), st.integers(min_value=0, max_value=1000)), max_size=120))
    return subnet, reserved, ip_range, steps


@settings(max_examples=200, deadline=None)
@given(_scenario())
def test_no_address_is_handed_out_twice_while_held(scenario: tuple) -> None:
    subnet, reserved, ip_range, steps = scenario
    allocator = AddressAllocator(subnet, reserved, ip_range)
    leases = Leases(allocator)
    pool = ip_range or subnet
    usable = {a for a in subnet.hosts() if a in pool and a not in reserved}
    assert allocator.capacity == len(usable)
    _replay(leases, usable, steps)


def _replay(leases: Leases, usable: set[ipaddress.IPv4Address], steps: list[bool | int]) -> None:
    """True: allocate (a usable address none holds, or Conflict when all are held); an int:
    release the n-th held address (modulo)."""
    for step in steps:
        if step is True:
            if leases.held >= usable:
                with pytest.raises(Conflict):
                    leases.allocate()
                continue
            before = set(leases.held)
            address = leases.allocate()
            assert address not in before
            assert address in usable
        elif leases.held:
            leases.held.discard(sorted(leases.held)[step % len(leases.held)])


# -- several subnets of a family (overlay networks, CNI range sets) ----------------------------

A, B, C = NET("10.61.0.0/30"), NET("10.62.0.0/29"), NET("10.63.0.0/29")


def _allocator(*subnets: NET, reserved: tuple[IP, ...] = ()) -> SubnetsAllocator:
    return SubnetsAllocator([AddressAllocator(s, reserved) for s in subnets])


def test_the_first_subnet_fills_first_then_the_next() -> None:
    leases = Leases(_allocator(A, B, reserved=(IP("10.61.0.1"), IP("10.62.0.6"))))
    got = [str(leases.allocate()) for _ in range(6)]
    # A /30 holds one container beside its gateway; B's gateway (.6) is never given.
    assert got == ["10.61.0.2", "10.62.0.1", "10.62.0.2", "10.62.0.3", "10.62.0.4", "10.62.0.5"]
    with pytest.raises(Conflict, match=r"no available IPv4 addresses left in 10.61.0.0/30, 10.62.0.0/29"):
        leases.allocate()
    assert leases.allocator.capacity == 6


def test_a_released_address_of_an_earlier_subnet_waits_for_the_rest_of_the_later_ones() -> None:
    leases = Leases(_allocator(A, B, C))
    first = [leases.allocate() for _ in range(3)]  # A's two, then B's first
    assert [str(a) for a in first] == ["10.61.0.1", "10.61.0.2", "10.62.0.1"]
    leases.held.discard(first[0])
    # Next-fit: the rest of B, then C, before A's released address comes back.
    rest = [leases.allocate() for _ in range(5 + 6)]
    assert [str(a) for a in rest[:5]] == [f"10.62.0.{i}" for i in range(2, 7)]
    assert [str(a) for a in rest[5:]] == [f"10.63.0.{i}" for i in range(1, 7)]
    assert str(leases.allocate()) == "10.61.0.1"


def test_a_requested_address_is_checked_in_its_own_subnet() -> None:
    allocator = _allocator(A, B, reserved=(IP("10.62.0.6"),))
    assert allocator.check_requested(IP("10.62.0.3"), lambda _: False) == IP("10.62.0.3")
    with pytest.raises(Conflict, match="reserved"):
        allocator.check_requested(IP("10.62.0.6"), lambda _: False)
    with pytest.raises(Conflict, match="in use"):
        allocator.check_requested(IP("10.62.0.3"), lambda _: True)
    with pytest.raises(InvalidArgument):
        allocator.check_requested(IP("10.99.0.1"), lambda _: False)
    check_in_subnets(IP("10.62.0.5"), [A, B, ipaddress.IPv6Network("fd00::/64")], "--ip")
    with pytest.raises(InvalidArgument, match=r"of any subnet of the network \(10.61.0.0/30, 10.62.0.0/29\)"):
        check_in_subnets(IP("10.99.0.1"), [A, B, ipaddress.IPv6Network("fd00::/64")], "--ip")
    # One subnet: the message it always had.
    with pytest.raises(InvalidArgument, match=r"is not a usable address of subnet 10\.61\.0\.0/30"):
        check_in_subnets(IP("10.99.0.1"), [A], "--ip")
    with pytest.raises(InvalidArgument, match="usable"):
        check_in_subnets(IP("10.62.0.7"), [A, B], "--ip")  # B's broadcast address


# Subnets of a /24 each, without overlap: (offset in /29 blocks, prefix 29 or 30).
_layouts = st.lists(st.tuples(st.integers(0, 31), st.sampled_from([29, 30])), min_size=1, max_size=4)


def _apart(layout: list[tuple[int, int]]) -> list[NET]:
    out: list[NET] = []
    for block, prefix in layout:
        net = NET(f"10.70.0.{block * 8}/{prefix}")
        if not any(net.overlaps(o) for o in out):
            out.append(net)
    return out


@settings(max_examples=300, deadline=None)
@given(_layouts, st.lists(st.one_of(st.just(-1), st.integers(0, 1000)), max_size=80))
@example([(0, 30), (1, 29)], [-1, -1, 0, -1, -1, -1, -1, -1, -1, -1])
def test_no_address_is_given_twice_and_none_while_one_is_free(layout: list, steps: list[int]) -> None:
    subnets = _apart(layout)
    leases = Leases(_allocator(*subnets))
    usable = {a for s in subnets for a in s.hosts()}
    assert leases.allocator.capacity == len(usable)
    _replay(leases, usable, [step == -1 or step for step in steps])


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 31), st.sets(st.integers(1, 6), max_size=6), st.one_of(st.none(), st.integers(0, 7)))
def test_one_subnet_allocates_as_its_own_allocator_does(
    block: int, used: set[int], cursor: int | None
) -> None:
    subnet = NET(f"10.70.0.{block * 8}/29")
    taken = {subnet.network_address + i for i in used}
    at = subnet.network_address + cursor if cursor is not None else None
    alone, wrapped = AddressAllocator(subnet, ()), _allocator(subnet)

    def outcome(allocator: AddressAllocator | SubnetsAllocator) -> object:
        try:
            return allocator.allocate(lambda a: a in taken, at)
        except Conflict as e:
            return str(e)

    assert outcome(wrapped) == outcome(alone)


def test_a_released_address_before_the_cursor_in_its_own_subnet_waits_for_the_later_subnets() -> None:
    leases = Leases(_allocator(B, C))
    first = [leases.allocate() for _ in range(3)]
    leases.held.discard(first[0])  # B's first, before the cursor (B's third)
    rest = [str(leases.allocate()) for _ in range(3 + 6)]
    assert rest == [f"10.62.0.{i}" for i in range(4, 7)] + [f"10.63.0.{i}" for i in range(1, 7)]
    assert leases.allocate() == first[0]
    # The cursor's subnet full after it (taken by address, say): the next subnet, not its start.
    leases = Leases(_allocator(B, C))
    first = [leases.allocate() for _ in range(3)]
    leases.held |= {IP("10.62.0.4"), IP("10.62.0.5"), IP("10.62.0.6")}
    leases.held.discard(first[0])
    assert str(leases.allocate()) == "10.63.0.1"

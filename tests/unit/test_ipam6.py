"""IPv6 address management (policy/ipam6.py, and ipam.py's allocator on an IPv6 subnet),
and daemon.json's IPv6 keys."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from dockyard.errors import Conflict, InvalidArgument
from dockyard.policy import ipam, ipam6
from dockyard.settings import AddressPool6, load_settings

N6 = ipaddress.IPv6Network
A6 = ipaddress.IPv6Address


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("2001:db8::1/64", "host bits are set"),
        ("2001:db8::", "prefix length is missing"),
        ("2001:db8::/127", "/126 or larger"),
        ("fe80::/64", "link-local"),
        ("ff02::/16", "multicast"),
        ("::/0", "holds ::/127"),
        ("::ffff:10.0.0.0/120", "IPv4-mapped"),
        ("2001:zz::/64", "expected an IPv6 CIDR"),
    ],
)
def test_bad_ipv6_subnets_are_refused(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment.replace("(", r"\(")):
        ipam6.parse_subnet6(text, "--subnet")


def test_a_value_is_parsed_in_its_own_family() -> None:
    assert ipam6.parse_any_subnet("2001:db8:1::/64") == N6("2001:db8:1::/64")
    assert ipam6.parse_any_subnet("10.1.0.0/24") == ipaddress.IPv4Network("10.1.0.0/24")
    assert ipam6.parse_any_address("2001:db8:1::1") == A6("2001:db8:1::1")
    with pytest.raises(InvalidArgument):
        ipam6.parse_address6("fe80::1%eth0")


def test_ipv6_addresses_are_given_in_order_after_the_gateway_and_to_the_last_one() -> None:
    subnet = N6("2001:db8:1::/126")  # ::0 (anycast), ::1 gateway, ::2, ::3
    alloc = ipam.AddressAllocator(subnet, [ipam6.first_host6(subnet), ipaddress.IPv4Address("10.0.0.1")])
    taken: set[A6] = set()
    cursor = None
    for want in ("2001:db8:1::2", "2001:db8:1::3"):
        cursor = alloc.allocate(taken.__contains__, cursor)
        assert cursor == A6(want)
        taken.add(cursor)
    # IPv6 has no broadcast: the last address is given; then nothing is left.
    with pytest.raises(Conflict, match="no available IPv6 addresses left"):
        alloc.allocate(taken.__contains__, cursor)
    # Next-fit: a released address comes back only after the rest of the range.
    taken.discard(A6("2001:db8:1::2"))
    assert alloc.allocate(taken.__contains__, cursor) == A6("2001:db8:1::2")


def test_an_ipv6_range_and_a_requested_address() -> None:
    subnet = N6("2001:db8:1::/64")
    alloc = ipam.AddressAllocator(
        subnet, [A6("2001:db8:1::1"), A6("2001:db8:1::100")], N6("2001:db8:1::100/120")
    )
    assert alloc.allocate(lambda a: False, None) == A6("2001:db8:1::101")
    assert alloc.check_requested(A6("2001:db8:1::7"), lambda a: False) == A6("2001:db8:1::7")
    with pytest.raises(InvalidArgument, match="not a usable address"):
        alloc.check_requested(A6("2001:db8:2::7"), lambda a: False)
    with pytest.raises(InvalidArgument, match="not a usable address"):
        alloc.check_requested(A6("2001:db8:1::"), lambda a: False)  # the subnet-router anycast address
    with pytest.raises(Conflict, match="reserved"):
        alloc.check_requested(A6("2001:db8:1::100"), lambda a: False)
    with pytest.raises(Conflict, match="already in use"):
        alloc.check_requested(A6("2001:db8:1::7"), lambda a: True)


def test_the_ula_pool_is_the_daemons_own_48() -> None:
    pool = ipam6.ula_pool("seed-one")
    assert pool == ipam6.ula_pool("seed-one") and pool != ipam6.ula_pool("seed-two")
    assert pool.base.prefixlen == 48 and pool.size == 64
    assert pool.base.subnet_of(N6("fd00::/8"))


def test_the_first_free_64_skips_what_is_taken_without_listing_the_pool() -> None:
    pool = AddressPool6(N6("fd12:3456:789a::/48"), 64)
    assert ipam6.first_free_subnet6([pool], []) == N6("fd12:3456:789a::/64")
    taken = [("network a", N6("fd12:3456:789a::/63")), ("a route", N6("fd12:3456:789a:2::/64"))]
    assert ipam6.first_free_subnet6([pool], taken) == N6("fd12:3456:789a:3::/64")
    # A route covering the whole pool: none left, and the message says what to do.
    with pytest.raises(Conflict, match="give an IPv6 --subnet"):
        ipam6.first_free_subnet6([pool], [("a route", N6("fd12::/16"))])


def _settings(tmp_path: Path, data: dict[str, object]):  # type: ignore[no-untyped-def]
    (tmp_path / "daemon.json").write_text(json.dumps(data))
    return load_settings(tmp_path)


def test_daemon_json_ipv6_keys(tmp_path: Path) -> None:
    s = _settings(
        tmp_path,
        {
            "ipv6": True,
            "fixed-cidr-v6": "2001:db8:7::/64",
            "ip6tables": True,
            "default-address-pools": [{"base": "fd99::/56", "size": 64}],
        },
    )
    assert s.ipv6 and s.fixed_cidr_v6 == N6("2001:db8:7::/64")
    assert s.default_address_pools6 == (AddressPool6(N6("fd99::/56"), 64),)
    # No IPv4 entry: IPv4 keeps Docker's defaults.
    assert s.default_address_pools[0].base == ipaddress.IPv4Network("172.17.0.0/16")
    assert _settings(tmp_path, {}).ipv6 is False


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"ip6tables": False}, '"ip6tables": false is not supported'),
        ({"ipv6": "yes"}, "ipv6 must be true or false"),
        ({"fixed-cidr-v6": "10.0.0.0/8"}, "invalid fixed-cidr-v6"),
        ({"fixed-cidr-v6": "fe80::/64"}, "invalid fixed-cidr-v6"),
        ({"default-address-pools": [{"base": "fd00::/64", "size": 48}]}, "cannot be cut"),
    ],
)
def test_bad_ipv6_keys_are_refused(tmp_path: Path, data: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        _settings(tmp_path, data)

"""rules.py: the nft table's changing part (set and map elements) rendered as libnftables JSON."""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.errors import InvalidArgument
from dockyard.model import DriverName, Endpoint, EndpointOwner, Network, PortBinding, Protocol
from dockyard.policy.rules import (
    BRIDGE_LISTING,
    CHAINS,
    GATEWAY_MODE_IPV6,
    RULES,
    SETS,
    Elements,
    check_gateway_mode6,
    element_commands,
    elements_of_network,
    endpoint_elements,
    endpoint_publish_elements,
    expected_listing,
    link_local,
    network_elements,
    parse_listed_elements,
    publish_elements,
    strip_listing,
)

NET = ipaddress.IPv4Network
IP = ipaddress.IPv4Address
NET6 = ipaddress.IPv6Network
IP6 = ipaddress.IPv6Address
TCP, UDP, SCTP = Protocol.TCP, Protocol.UDP, Protocol.SCTP


def _sample() -> Elements:
    return Elements(
        bridges={"dockyard0", "dy-0123456789ab"},
        masq_nets={NET("172.17.0.0/16"), NET("10.1.0.0/24")},
        bridge_nets={(NET("172.17.0.0/16"), "dockyard0")},
        icc_pairs={("dockyard0", "dockyard0")},
        internal={"dy-0123456789ab"},
        publish_any={(TCP, 8080): (IP("172.17.0.2"), 80), (UDP, 53): (IP("172.17.0.3"), 5353)},
        publish_addr={(IP("127.0.0.1"), SCTP, 9000): (IP("172.17.0.4"), 9)},
        guarded_ports={"veth1234567", "veth89abcde"},
        port_macs={("veth1234567", "02:42:ac:11:00:02"), ("veth89abcde", "02:42:ac:11:00:03")},
        port_addrs={("veth1234567", IP("172.17.0.2")), ("veth89abcde", IP("172.17.0.3"))},
        no_icc_ports={"veth1234567"},
    )


# --- element_commands: golden JSON -----------------------------------------------------------------


def _inet(verb: str, name: str, elem: list[Any]) -> dict[str, Any]:
    return {verb: {"element": {"family": "inet", "table": "dockyard", "name": name, "elem": elem}}}


def _bridge(verb: str, name: str, elem: list[Any]) -> dict[str, Any]:
    return {verb: {"element": {"family": "bridge", "table": "dockyard", "name": name, "elem": elem}}}


GOLDEN_ADD = [
    _inet("add", "bridges", ["dockyard0", "dy-0123456789ab"]),
    _inet(
        "add",
        "masq_nets",
        [{"prefix": {"addr": "10.1.0.0", "len": 24}}, {"prefix": {"addr": "172.17.0.0", "len": 16}}],
    ),
    _inet("add", "bridge_nets", [{"concat": [{"prefix": {"addr": "172.17.0.0", "len": 16}}, "dockyard0"]}]),
    _inet("add", "icc_pairs", [{"concat": ["dockyard0", "dockyard0"]}]),
    _inet("add", "internal", ["dy-0123456789ab"]),
    _inet(
        "add",
        "publish_any",
        [
            [{"concat": ["tcp", 8080]}, {"concat": ["172.17.0.2", 80]}],
            [{"concat": ["udp", 53]}, {"concat": ["172.17.0.3", 5353]}],
        ],
    ),
    _inet(
        "add",
        "publish_addr",
        [[{"concat": ["127.0.0.1", "sctp", 9000]}, {"concat": ["172.17.0.4", 9]}]],
    ),
    _bridge("add", "guarded_ports", ["veth1234567", "veth89abcde"]),
    _bridge(
        "add",
        "port_macs",
        [{"concat": ["veth1234567", "02:42:ac:11:00:02"]}, {"concat": ["veth89abcde", "02:42:ac:11:00:03"]}],
    ),
    _bridge(
        "add",
        "port_addrs",
        [{"concat": ["veth1234567", "172.17.0.2"]}, {"concat": ["veth89abcde", "172.17.0.3"]}],
    ),
    _bridge("add", "no_icc_ports", ["veth1234567"]),
]


def test_add_commands_golden() -> None:
    assert element_commands("add", _sample()) == GOLDEN_ADD


def test_delete_commands_have_the_same_shape() -> None:
    golden_delete = [{"delete": next(iter(cmd.values()))} for cmd in GOLDEN_ADD]
    assert element_commands("delete", _sample()) == golden_delete


def test_no_commands_for_no_elements() -> None:
    assert element_commands("add", Elements()) == []


def test_only_sets_with_elements_get_a_command() -> None:
    el = Elements(publish_any={(TCP, 80): (IP("10.0.0.2"), 8080)})
    assert element_commands("delete", el) == [
        _inet("delete", "publish_any", [[{"concat": ["tcp", 80]}, {"concat": ["10.0.0.2", 8080]}]])
    ]


def test_rendering_is_sorted_whatever_the_insertion_order() -> None:
    a = Elements(
        bridges={"b", "a", "c"}, publish_any={(UDP, 2): (IP("10.0.0.9"), 2), (TCP, 1): (IP("10.0.0.1"), 1)}
    )
    b = Elements(
        bridges={"c", "a", "b"}, publish_any={(TCP, 1): (IP("10.0.0.1"), 1), (UDP, 2): (IP("10.0.0.9"), 2)}
    )
    assert element_commands("add", a) == element_commands("add", b)
    assert element_commands("add", a)[0] == _inet("add", "bridges", ["a", "b", "c"])


# --- elements from networks, endpoints and ports -----------------------------------------------------


def test_network_elements() -> None:
    subnet = NET("172.18.0.0/16")
    assert network_elements("br1", subnet, masquerade=True, internal=False) == Elements(
        bridges={"br1"}, bridge_nets={(subnet, "br1")}, icc_pairs={("br1", "br1")}, masq_nets={subnet}
    )
    # --internal: never masqueraded, marked internal; icc off: no pair.
    assert network_elements("br1", subnet, masquerade=True, internal=True, icc=False) == Elements(
        bridges={"br1"}, bridge_nets={(subnet, "br1")}, internal={"br1"}
    )


def _endpoint(mac: str = "02:42:AC:11:00:02") -> Endpoint:
    return Endpoint(
        id="e" * 64,
        owner=EndpointOwner.container("c" * 64),
        network_id="n" * 64,
        ifname="eth0",
        address=ipaddress.IPv4Interface("172.17.0.2/16"),
        gateway=IP("172.17.0.1"),
        mac=mac,
        host_ifname="veth1",
    )


def test_endpoint_elements_guard_its_port_whatever_the_network() -> None:
    guard = Elements(
        guarded_ports={"veth1"},
        port_macs={("veth1", "02:42:ac:11:00:02")},  # as nft prints it: lower case
        port_addrs={("veth1", IP("172.17.0.2"))},
    )
    assert endpoint_elements(_endpoint(), icc=True) == guard
    isolated = endpoint_elements(_endpoint(), icc=False)
    assert isolated.minus(guard) == Elements(no_icc_ports={"veth1"})
    assert isolated.count() == 4


def _dual(mac: str = "02:42:AC:11:00:02") -> Endpoint:
    return dataclasses.replace(
        _endpoint(mac), address6=ipaddress.IPv6Interface("2001:db8:1::2/64"), gateway6=IP6("2001:db8:1::1")
    )


def test_link_local_is_the_kernels_eui64_of_the_mac() -> None:
    # What a kernel with addr_gen_mode 0 gives eth0 of MAC 02:42:ac:11:00:02.
    assert link_local("02:42:ac:11:00:02") == IP6("fe80::42:acff:fe11:2")
    assert link_local("00:16:3e:00:00:01") == IP6("fe80::216:3eff:fe00:1")


def test_an_endpoint_with_ipv6_may_send_from_its_address_and_link_local_only() -> None:
    own = {("veth1", IP6("2001:db8:1::2")), ("veth1", IP6("fe80::42:acff:fe11:2"))}
    el = endpoint_elements(_dual(), icc=True)
    assert el.port_addrs6 == own and el.port_targets6 == own
    assert el.minus(endpoint_elements(_endpoint(), icc=True)).count() == 4
    # Without IPv6, none at all.
    assert not endpoint_elements(_endpoint(), icc=True).port_addrs6


def _network(**kw: Any) -> Network:
    base = dict(
        id="n" * 64,
        name="n1",
        driver=DriverName.BRIDGE,
        subnet=NET("10.1.0.0/24"),
        gateway=IP("10.1.0.1"),
        bridge="dy-nnnnnnnnnnnn",
        enable_ipv6=True,
        subnet6=NET6("2001:db8:1::/64"),
        gateway6=IP6("2001:db8:1::1"),
    )
    return Network(**{**base, **kw})  # type: ignore[arg-type]


def test_a_dual_stack_network_gets_each_familys_elements() -> None:
    el = elements_of_network(_network())
    assert el.masq_nets6 == {NET6("2001:db8:1::/64")} and el.masq_nets == {NET("10.1.0.0/24")}
    assert el.bridge_nets6 == {(NET6("2001:db8:1::/64"), "dy-nnnnnnnnnnnn")}
    assert el.dns_gateways6 == {IP6("2001:db8:1::1")} and el.dns_gateways == {IP("10.1.0.1")}
    # IPv6 only: no IPv4 element at all, the bridge and its icc still.
    only6 = elements_of_network(_network(subnet=None, gateway=None))
    assert not (only6.masq_nets or only6.bridge_nets or only6.dns_gateways)
    assert only6.bridges == {"dy-nnnnnnnnnnnn"} and only6.icc_pairs == {("dy-nnnnnnnnnnnn",) * 2}
    # Routed: no NAT66 (NAT44 stays); internal: no NAT at all.
    routed = elements_of_network(
        _network(options=(("com.docker.network.bridge.gateway_mode_ipv6", "routed"),))
    )
    assert not routed.masq_nets6 and routed.masq_nets and routed.bridge_nets6
    internal = elements_of_network(_network(internal=True))
    assert not internal.masq_nets6 and not internal.masq_nets


def test_gateway_modes_other_than_nat_and_routed_are_refused_by_name() -> None:
    for mode in ("nat", "routed"):
        check_gateway_mode6([(GATEWAY_MODE_IPV6, mode)])
    for mode in ("nat-unprotected", "isolated", "Routed", ""):
        with pytest.raises(InvalidArgument) as info:
            check_gateway_mode6([("com.docker.network.bridge.name", "br9"), (GATEWAY_MODE_IPV6, mode)])
        assert GATEWAY_MODE_IPV6 in str(info.value) and repr(mode) in str(info.value)


def test_every_address_publishes_on_each_family_the_endpoint_has() -> None:
    bindings = [
        PortBinding(80, TCP, 8080),  # both families
        PortBinding(81, TCP, 8081, IP("0.0.0.0")),  # IPv4 only
        PortBinding(82, TCP, 8082, IP6("::")),  # IPv6 only
        PortBinding(83, UDP, 8083, IP6("::1")),
        PortBinding(84, UDP, 8084, IP("127.0.0.1")),
    ]
    a4, a6 = IP("10.1.0.2"), IP6("2001:db8:1::2")
    assert endpoint_publish_elements(_network(), _dual(), bindings) == Elements(
        publish_any={(TCP, 8080): (IP("172.17.0.2"), 80), (TCP, 8081): (IP("172.17.0.2"), 81)},
        publish_addr={(IP("127.0.0.1"), UDP, 8084): (IP("172.17.0.2"), 84)},
        publish_any6={(TCP, 8080): (a6, 80), (TCP, 8082): (a6, 82)},
        publish_addr6={(IP6("::1"), UDP, 8083): (a6, 83)},
    )
    # An endpoint without IPv6 publishes its IPv4 half only (and an IPv6 address nowhere).
    assert publish_elements(a4, bindings) == Elements(
        publish_any={(TCP, 8080): (a4, 80), (TCP, 8081): (a4, 81)},
        publish_addr={(IP("127.0.0.1"), UDP, 8084): (a4, 84)},
    )
    # Routed: the IPv6 half opens the container's own ports, no DNAT.
    assert publish_elements(None, bindings, a6, routed=True) == Elements(
        routed6={(a6, TCP, 80), (a6, TCP, 82), (a6, UDP, 83)}
    )


def test_publish_elements_split_every_address_from_one_address() -> None:
    bindings = [PortBinding(80, TCP, 8080), PortBinding(53, UDP, 5353, IP("127.0.0.1"))]
    assert publish_elements(IP("172.17.0.2"), bindings) == Elements(
        publish_any={(TCP, 8080): (IP("172.17.0.2"), 80)},
        publish_addr={(IP("127.0.0.1"), UDP, 5353): (IP("172.17.0.2"), 53)},
    )


# --- Elements arithmetic -------------------------------------------------------------------------------


def test_minus_keeps_what_other_lacks_or_maps_differently() -> None:
    current = _sample()
    other = Elements(
        bridges={"dockyard0"},
        masq_nets={NET("10.1.0.0/24")},
        publish_any={(TCP, 8080): (IP("172.17.0.2"), 80), (UDP, 53): (IP("172.17.0.9"), 5353)},
        guarded_ports={"veth1234567", "veth89abcde"},
        # same port, another MAC or address: still to be added
        port_macs={("veth1234567", "02:42:ac:11:00:02"), ("veth89abcde", "02:42:ac:11:00:99")},
        port_addrs={("veth1234567", IP("172.17.0.9")), ("veth89abcde", IP("172.17.0.3"))},
        no_icc_ports={"veth1234567"},
    )
    assert current.minus(other) == Elements(
        port_macs={("veth89abcde", "02:42:ac:11:00:03")},
        port_addrs={("veth1234567", IP("172.17.0.2"))},
        bridges={"dy-0123456789ab"},
        masq_nets={NET("172.17.0.0/16")},
        bridge_nets={(NET("172.17.0.0/16"), "dockyard0")},
        icc_pairs={("dockyard0", "dockyard0")},
        internal={"dy-0123456789ab"},
        # same key, another target: still to be changed
        publish_any={(UDP, 53): (IP("172.17.0.3"), 5353)},
        publish_addr={(IP("127.0.0.1"), SCTP, 9000): (IP("172.17.0.4"), 9)},
    )
    assert current.minus(current).empty()
    assert current.minus(Elements()) == current


def test_common_keeps_map_entries_only_where_the_value_matches() -> None:
    current = _sample()
    other = Elements(
        bridges={"dockyard0", "elsewhere"},
        publish_any={(TCP, 8080): (IP("172.17.0.2"), 80), (UDP, 53): (IP("172.17.0.9"), 5353)},
        publish_addr={(IP("127.0.0.1"), SCTP, 9000): (IP("172.17.0.4"), 9)},
    )
    assert current.common(other) == Elements(
        bridges={"dockyard0"},
        publish_any={(TCP, 8080): (IP("172.17.0.2"), 80)},
        publish_addr={(IP("127.0.0.1"), SCTP, 9000): (IP("172.17.0.4"), 9)},
    )
    assert current.common(Elements()).empty()


def test_update_merges_and_later_map_values_win() -> None:
    el = Elements(bridges={"a"}, publish_any={(TCP, 80): (IP("10.0.0.2"), 80)})
    el.update(
        Elements(
            bridges={"b"},
            no_icc_ports={"veth1"},
            publish_any={(TCP, 80): (IP("10.0.0.3"), 80), (TCP, 81): (IP("10.0.0.3"), 81)},
        )
    )
    assert el == Elements(
        bridges={"a", "b"},
        no_icc_ports={"veth1"},
        publish_any={(TCP, 80): (IP("10.0.0.3"), 80), (TCP, 81): (IP("10.0.0.3"), 81)},
    )


def test_count_and_empty() -> None:
    assert Elements().count() == 0 and Elements().empty()
    assert _sample().count() == 2 + 2 + 1 + 1 + 1 + 2 + 1 + 2 + 2 + 2 + 1
    assert not Elements(no_icc_ports={"v"}).empty()


# --- reading the kernel's listing back ------------------------------------------------------------------


def _declaration(name: str) -> dict[str, Any]:
    for obj in (*SETS, *BRIDGE_LISTING):
        ((kind, body),) = obj.items()
        if kind in ("set", "map") and body["name"] == name:
            return {kind: dict(body)}
    raise AssertionError(f"no set or map {name}")


def _with_handles(objs: tuple[dict[str, Any], ...], el: Elements) -> list[dict[str, Any]]:
    """The objects as `nft -j list` prints them: each with a handle, sets and maps with their elements."""
    rendered = {
        cmd["add"]["element"]["name"]: cmd["add"]["element"]["elem"] for cmd in element_commands("add", el)
    }
    out = []
    for handle, obj in enumerate(objs, start=1):
        ((kind, body),) = obj.items()
        body = {**body, "handle": handle}
        if kind in ("set", "map") and body["name"] in rendered:
            body["elem"] = rendered[body["name"]]
        out.append({kind: body})
    return out


def _fake_listing(el: Elements) -> list[dict[str, Any]]:
    """A listing of both tables' sets and maps holding `el`, with the objects nft prints around them."""
    sets_and_maps = tuple(obj for obj in (*SETS, *BRIDGE_LISTING) if "set" in obj or "map" in obj)
    return [
        {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
        {"table": {"family": "inet", "name": "dockyard", "handle": 7}},
        *_with_handles(sets_and_maps, el),
        {"chain": {"family": "inet", "table": "dockyard", "name": "publish", "handle": 99}},
    ]


def test_parse_listed_elements_round_trips_the_rendering() -> None:
    assert parse_listed_elements(_fake_listing(_sample())) == _sample()


def test_parse_listed_elements_of_an_empty_table() -> None:
    assert parse_listed_elements(_fake_listing(Elements())) == Elements()


def test_parse_listed_elements_reads_the_forms_nft_prints_for_special_cases() -> None:
    listing = [
        {"set": {**_declaration("masq_nets")["set"], "elem": ["10.9.9.9"]}},  # a /32 prints as an address
        {"set": {**_declaration("bridge_nets")["set"], "elem": [{"concat": ["10.9.9.8", "br9"]}]}},
        {"set": {**_declaration("bridges")["set"], "elem": [{"elem": {"val": "br9", "comment": "x"}}]}},
    ]
    assert parse_listed_elements(listing) == Elements(
        masq_nets={NET("10.9.9.9/32")}, bridge_nets={(NET("10.9.9.8/32"), "br9")}, bridges={"br9"}
    )


_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=15)
_nets = st.builds(
    lambda a, p: NET(f"{IP(a)}/{p}", strict=False),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.integers(min_value=8, max_value=32),
)
_addrs = st.builds(IP, st.integers(min_value=0, max_value=2**32 - 1))
_ports = st.integers(min_value=1, max_value=65535)
_protos = st.sampled_from(list(Protocol))
_targets = st.tuples(_addrs, _ports)
_macs = st.builds(lambda raw: ":".join(f"{b:02x}" for b in raw), st.binary(min_size=6, max_size=6))
_nets6 = st.builds(
    lambda a, p: NET6(f"{IP6(a)}/{p}", strict=False),
    st.integers(min_value=0, max_value=2**128 - 1),
    st.integers(min_value=16, max_value=128),
)
_addrs6 = st.builds(IP6, st.integers(min_value=0, max_value=2**128 - 1))
_elements = st.builds(
    Elements,
    masq_nets6=st.sets(_nets6, max_size=3),
    bridge_nets6=st.sets(st.tuples(_nets6, _names), max_size=3),
    dns_gateways=st.sets(_addrs, max_size=3),
    dns_gateways6=st.sets(_addrs6, max_size=3),
    routed6=st.sets(st.tuples(_addrs6, _protos, _ports), max_size=3),
    publish_any6=st.dictionaries(st.tuples(_protos, _ports), st.tuples(_addrs6, _ports), max_size=3),
    publish_addr6=st.dictionaries(
        st.tuples(_addrs6, _protos, _ports), st.tuples(_addrs6, _ports), max_size=3
    ),
    port_addrs6=st.sets(st.tuples(_names, _addrs6), max_size=3),
    port_targets6=st.sets(st.tuples(_names, _addrs6), max_size=3),
    bridges=st.sets(_names, max_size=4),
    masq_nets=st.sets(_nets, max_size=4),
    bridge_nets=st.sets(st.tuples(_nets, _names), max_size=4),
    icc_pairs=st.sets(st.tuples(_names, _names), max_size=4),
    internal=st.sets(_names, max_size=4),
    publish_any=st.dictionaries(st.tuples(_protos, _ports), _targets, max_size=4),
    publish_addr=st.dictionaries(st.tuples(_addrs, _protos, _ports), _targets, max_size=4),
    guarded_ports=st.sets(_names, max_size=4),
    port_macs=st.sets(st.tuples(_names, _macs), max_size=4),
    port_addrs=st.sets(st.tuples(_names, _addrs), max_size=4),
    no_icc_ports=st.sets(_names, max_size=4),
)


@settings(max_examples=200, deadline=None)
@given(_elements)
def test_parse_listed_elements_round_trips_any_elements(el: Elements) -> None:
    assert parse_listed_elements(_fake_listing(el)) == el


@settings(max_examples=200, deadline=None)
@given(_elements, _elements)
def test_minus_and_common_partition_the_elements(a: Elements, b: Elements) -> None:
    diff, both = a.minus(b), a.common(b)
    assert diff.count() + both.count() == a.count()
    merged = Elements()
    merged.update(both)
    merged.update(diff)
    assert merged == a


# --- strip_listing --------------------------------------------------------------------------------


def test_strip_listing_removes_handles_elements_metainfo_and_table() -> None:
    listing = [
        {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
        {"table": {"family": "inet", "name": "dockyard", "handle": 7}},
        {
            "set": {
                "family": "inet",
                "name": "bridges",
                "table": "dockyard",
                "type": "ifname",
                "handle": 1,
                "elem": ["br0"],
            }
        },
        {"chain": {"family": "inet", "table": "dockyard", "name": "publish", "handle": 2}},
        {
            "rule": {
                "family": "inet",
                "table": "dockyard",
                "chain": "publish",
                "handle": 3,
                "expr": [{"accept": None}],
            }
        },
    ]
    assert strip_listing(listing) == [
        {"set": {"family": "inet", "name": "bridges", "table": "dockyard", "type": "ifname"}},
        {"chain": {"family": "inet", "table": "dockyard", "name": "publish"}},
        {"rule": {"family": "inet", "table": "dockyard", "chain": "publish", "expr": [{"accept": None}]}},
    ]
    assert listing[2]["set"]["elem"] == ["br0"]  # the input is left alone


def test_a_listed_table_with_elements_strips_to_the_expected_listing() -> None:
    el = _sample()
    header = [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}]
    inet = [*header, {"table": {"family": "inet", "name": "dockyard", "handle": 1}}]
    inet += _with_handles(SETS + CHAINS + RULES, el)
    bridge = [*header, {"table": {"family": "bridge", "name": "dockyard", "handle": 2}}]
    bridge += _with_handles(BRIDGE_LISTING, el)
    assert strip_listing(inet) == expected_listing()
    assert strip_listing(bridge) == expected_listing("bridge")
    # Elements make no difference to the comparison, but are read back from the same listing.
    assert parse_listed_elements(inet + bridge) == el

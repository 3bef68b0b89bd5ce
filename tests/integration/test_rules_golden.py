"""Golden checks of the nftables tables: what is loaded is what rules.py says, and
removing everything gives the baseline back."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import subprocess

from dockyard.model import Protocol
from dockyard.policy import rules
from lab import Lab


def _listing(lab: Lab, family: str) -> list[dict]:
    r = lab.in_host("nft", "-j", "list", "table", family, "dockyard")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["nftables"]


def _load_tables(lab: Lab) -> None:
    """Both tables, loaded by nft itself in the lab's host namespace."""
    for text in (rules.TABLE_TEXT, rules.BRIDGE_TABLE_TEXT):
        r = subprocess.run(
            ["nsenter", f"--net=/run/netns/{lab.host}", "nft", "-f", "-"],
            input=text,
            text=True,
            capture_output=True,
        )
        assert r.returncode == 0, r.stderr


def test_the_loaded_tables_are_the_rendered_ones(lab: Lab) -> None:
    _load_tables(lab)
    for family in (rules.FAMILY, rules.BRIDGE_FAMILY):
        assert rules.strip_listing(_listing(lab, family)) == rules.expected_listing(family)
    for family in (rules.FAMILY, rules.BRIDGE_FAMILY):
        lab.in_host("nft", "delete", "table", family, "dockyard")


def test_removing_everything_gives_the_baseline_back(lab: Lab) -> None:
    lab.dy_ok("ps")
    baseline = {f: _listing(lab, f) for f in (rules.FAMILY, rules.BRIDGE_FAMILY)}
    lab.dy_ok("network", "create", "-o", "com.docker.network.bridge.enable_icc=false", "--internal", "g1")
    lab.dy_ok("network", "create", "g2")
    cid = lab.run_d("--net", "g2", "-p", "8080:80", "-p", "127.0.0.1:8081:81/udp", "sleep", "300")
    lab.run_d("--net", "g1", "sleep", "300")
    lab.dy_ok("network", "connect", "g1", cid)
    changed = {f: _listing(lab, f) for f in (rules.FAMILY, rules.BRIDGE_FAMILY)}
    assert changed != baseline
    # Rules never change with containers or networks: only elements do.
    for family in changed:
        assert rules.strip_listing(changed[family]) == rules.expected_listing(family)
    ids = lab.dy_ok("ps", "-aq").split()
    lab.dy_ok("rm", "-f", *ids)
    lab.dy_ok("network", "rm", "g1", "g2")
    lab.dy_ok("system", "gc")
    assert {f: _listing(lab, f) for f in (rules.FAMILY, rules.BRIDGE_FAMILY)} == baseline


def _every_kind_of_element() -> rules.Elements:
    """One element (or two) of every set and map of both tables, each family's."""
    ip, ip6 = ipaddress.IPv4Address, ipaddress.IPv6Address
    net, net6 = ipaddress.IPv4Network, ipaddress.IPv6Network
    tcp, udp = Protocol.TCP, Protocol.UDP
    return rules.Elements(
        bridges={"dy-aaaaaaaaaaaa"},
        masq_nets={net("10.1.0.0/24")},
        masq_nets6={net6("2001:db8:1::/64")},
        bridge_nets={(net("10.1.0.0/24"), "dy-aaaaaaaaaaaa")},
        bridge_nets6={(net6("2001:db8:1::/64"), "dy-aaaaaaaaaaaa")},
        icc_pairs={("dy-aaaaaaaaaaaa", "dy-aaaaaaaaaaaa")},
        dns_gateways={ip("10.1.0.1")},
        dns_gateways6={ip6("2001:db8:1::1")},
        internal={"dy-bbbbbbbbbbbb"},
        routed6={(ip6("2001:db8:5::2"), tcp, 80)},
        publish_any={(tcp, 8080): (ip("10.1.0.2"), 80)},
        publish_addr={(ip("127.0.0.1"), udp, 53): (ip("10.1.0.2"), 5353)},
        publish_any6={(tcp, 8080): (ip6("2001:db8:1::2"), 80)},
        publish_addr6={(ip6("::1"), udp, 53): (ip6("2001:db8:1::2"), 5353)},
        guarded_ports={"veth1234567"},
        port_macs={("veth1234567", "02:42:0a:01:00:02")},
        port_addrs={("veth1234567", ip("10.1.0.2"))},
        port_addrs6={("veth1234567", ip6("2001:db8:1::2")), ("veth1234567", ip6("fe80::42:aff:fe01:2"))},
        port_targets6={("veth1234567", ip6("2001:db8:1::2")), ("veth1234567", ip6("fe80::42:aff:fe01:2"))},
        no_icc_ports={"veth1234567"},
    )


def test_nft_takes_every_kind_of_element_and_lists_it_back(lab: Lab) -> None:
    """The rendered add and delete commands, IPv6's included, through libnftables itself."""
    _load_tables(lab)
    el = _every_kind_of_element()
    assert all(getattr(el, f.name) for f in dataclasses.fields(el)), "a set or map without an element here"
    for verb in ("add", "delete"):
        batch = json.dumps({"nftables": rules.element_commands(verb, el, "dy:test")})
        r = subprocess.run(
            ["nsenter", f"--net=/run/netns/{lab.host}", "nft", "-j", "-f", "-"],
            input=batch,
            text=True,
            capture_output=True,
        )
        assert r.returncode == 0, r.stderr
        listed = rules.Elements()
        for family in (rules.FAMILY, rules.BRIDGE_FAMILY):
            listed.update(rules.parse_listed_elements(_listing(lab, family), "dy:test"))
        assert listed == (el if verb == "add" else rules.Elements())
    for family in (rules.FAMILY, rules.BRIDGE_FAMILY):
        lab.in_host("nft", "delete", "table", family, "dockyard")


def test_removing_everything_gives_the_baseline_back_with_ipv6(lab: Lab) -> None:
    lab.dy_ok("ps")
    baseline = {f: _listing(lab, f) for f in (rules.FAMILY, rules.BRIDGE_FAMILY)}
    lab.dy_ok("network", "create", "--ipv6", "--subnet", "2001:db8:1::/64", "--internal", "g1")
    lab.dy_ok("network", "create", "--ipv6", "--subnet", "2001:db8:2::/64", "g2")
    routed = "com.docker.network.bridge.gateway_mode_ipv6=routed"
    lab.dy_ok("network", "create", "--ipv6", "--subnet", "2001:db8:3::/64", "-o", routed, "g3")
    cid = lab.run_d("--net", "g2", "-p", "8080:80", "-p", "[2001:db8::1]:8081:81/udp", "sleep", "300")
    lab.run_d("--net", "g3", "-p", "8082:80", "sleep", "300")
    lab.run_d("--net", "g1", "sleep", "300")
    lab.dy_ok("network", "connect", "g1", cid)
    changed = {f: _listing(lab, f) for f in (rules.FAMILY, rules.BRIDGE_FAMILY)}
    for name in ("publish_any6", "publish_addr6", "routed6", "masq_nets6", "bridge_nets6"):
        assert lab.map_elements(name) != [], name
    assert lab.map_elements("port_addrs6", "bridge") != []
    # Rules never change with containers or networks: only elements do.
    for family in changed:
        assert rules.strip_listing(changed[family]) == rules.expected_listing(family)
    ids = lab.dy_ok("ps", "-aq").split()
    lab.dy_ok("rm", "-f", *ids)
    lab.dy_ok("network", "rm", "g1", "g2", "g3")
    lab.dy_ok("system", "gc")
    assert {f: _listing(lab, f) for f in (rules.FAMILY, rules.BRIDGE_FAMILY)} == baseline

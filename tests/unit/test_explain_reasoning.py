"""explain's pure reasoning over a host read by hand: paths, reachability, mismatches.

One small host, as kernel/topology.py would read it: an uplink, a user
network's bridge with two members (web publishes 8080 on every address
and 8081 on 127.0.0.1; db publishes nothing), their namespaces with a
socket on port 80, and the elements dockyard adds for them. Each test
changes one thing of it (an element gone, icc off, a sysctl) and checks
the verdict and the element or check that decides it. The lab checks the
same answers against real packets (tests/integration/test_explain.py).
"""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from dockyard.errors import InvalidArgument
from dockyard.model import (
    Container,
    ContainerConfig,
    ContainerState,
    DriverName,
    Endpoint,
    EndpointOwner,
    Network,
    PortBinding,
    Protocol,
)
from dockyard.observed import Link, Namespace, Route, Route6, Socket, Tables
from dockyard.policy import explain
from dockyard.policy.explain.args import parse_flow, parse_port
from dockyard.policy.rules.elements import Elements, elements_of_network, endpoint_elements, publish_elements

A = ipaddress.IPv4Address
IF = ipaddress.IPv4Interface
N = ipaddress.IPv4Network
OUTSIDE = A("198.51.100.2")
HOST = A("198.51.100.1")
BRIDGE = "dy-0123456789ab"


def _net(icc: bool = True, internal: bool = False) -> Network:
    return Network(
        id="n1",
        name="front",
        driver=DriverName.BRIDGE,
        subnet=N("10.31.0.0/24"),
        gateway=A("10.31.0.1"),
        bridge=BRIDGE,
        icc=icc,
        internal=internal,
    )


def _container(cid: str, name: str) -> Container:
    return Container(cid, name, ContainerConfig(cmd=("serve",)), state=ContainerState.RUNNING, pid=100)


def _member(net: Network, cid: str, name: str, n: int, bindings: tuple[PortBinding, ...]) -> explain.Member:
    ep = Endpoint(
        id=f"e{n}",
        owner=EndpointOwner.container(cid),
        network_id=net.id,
        ifname="eth0",
        address=IF(f"10.31.0.{n}/24"),
        gateway=net.gateway,
        mac=f"02:42:0a:1f:00:0{n}",
        host_ifname=f"veth000000{n}",
    )
    sandbox = Namespace(
        inode=4000 + n,
        links=(
            Link(1, "lo", "", "00:00:00:00:00:00", True, 65536, addresses=(IF("127.0.0.1/8"),)),
            Link(
                2,
                "eth0",
                "veth",
                ep.mac,
                True,
                1500,
                peer_index=10 + n,
                peer_elsewhere=True,
                addresses=(ep.address,),
            ),
        ),
        routes=(
            Route(N("0.0.0.0/0"), "eth0", gateway=net.gateway),
            Route(N("10.31.0.0/24"), "eth0", prefsrc=ep.address.ip),
        ),
        sockets=(Socket(Protocol.TCP, A("0.0.0.0"), 80),),
    )
    return explain.Member(_container(cid, name), ep, net, bindings, sandbox, f"/pins/{cid}", ("10.31.0.1",))


WEB_PORTS = (
    PortBinding(80, Protocol.TCP, 8080),
    PortBinding(80, Protocol.TCP, 8081, A("127.0.0.1")),
)


def _view(icc: bool = True, internal: bool = False, **host_changes: object) -> explain.View:
    net = _net(icc, internal)
    web = _member(net, "c1", "web", 2, WEB_PORTS)
    db = _member(net, "c2", "db", 3, ())
    bridge_links = tuple(
        Link(
            10 + n,
            m.endpoint.host_ifname,
            "veth",
            f"aa:00:00:00:00:0{n}",
            True,
            1500,
            master=3,
            peer_index=2,
            peer_elsewhere=True,
            hairpin=True,
        )
        for n, m in ((2, web), (3, db))
    )
    host = Namespace(
        inode=4026531840,
        links=(
            Link(1, "lo", "", "00:00:00:00:00:00", True, 65536, addresses=(IF("127.0.0.1/8"),)),
            Link(2, "up0", "veth", "5e:00:00:00:00:01", True, 1500, addresses=(IF(f"{HOST}/24"),)),
            Link(3, BRIDGE, "bridge", "02:00:00:00:00:01", True, 1500, addresses=(IF("10.31.0.1/24"),)),
            *bridge_links,
        ),
        routes=(
            Route(N("0.0.0.0/0"), "up0", gateway=OUTSIDE),
            Route(N("198.51.100.0/24"), "up0", prefsrc=HOST),
            Route(N("10.31.0.0/24"), BRIDGE, prefsrc=A("10.31.0.1")),
        ),
        sockets=(
            Socket(Protocol.TCP, A("0.0.0.0"), 8080),
            Socket(Protocol.TCP, A("127.0.0.1"), 8081),
            Socket(Protocol.UDP, A("10.31.0.1"), 53),
            Socket(Protocol.TCP, A("10.31.0.1"), 53),
        ),
        forwarding=True,
        route_localnet=(BRIDGE,),
        bridge_nf=True,
    )
    host = dataclasses.replace(host, **host_changes)  # type: ignore[arg-type]
    el = elements_of_network(net)
    for m in (web, db):
        el.update(endpoint_elements(m.endpoint, net.icc))
        el.update(publish_elements(m.address, m.bindings))
    return explain.View(
        host=host,
        elements=el,
        tables=Tables(inet=[], bridge=[]),
        networks=(net,),
        members=(web, db),
        containers=(web.container, db.container),
        resolver_pid=42,
    )


def _verdicts(view: explain.View, target: str, source: A, port: int = 80) -> dict[str, explain.Verdict]:
    member = next(m for m in view.members if m.name == target)
    return {v.dst: v for v in explain.reach(view, member, port, Protocol.TCP, [source])}


# -- reachability ---------------------------------------------------------------------


def test_from_outside_the_published_port_answers_and_the_direct_address_is_dropped() -> None:
    v = _verdicts(_view(), "web", OUTSIDE)
    published = v[f"{HOST}:8080/tcp"]
    assert published.answered and published.target == "10.31.0.2:80"
    assert published.decided_by == "inet dockyard map publish_any { tcp . 8080 : 10.31.0.2 . 80 }"
    assert [h.effect for h in published.hops if h.effect in ("dnat", "answer")] == ["dnat", "answer"]
    direct = v["10.31.0.2:80/tcp"]
    assert not direct.reaches
    assert "`oifname @bridges drop`" in direct.decided_by
    assert "set bridges { dy-0123456789ab }" in direct.decided_by
    # The port on 127.0.0.1 is not offered to the outside: its address is not the host's uplink.
    assert "127.0.0.1:8081/tcp" in v and not v["127.0.0.1:8081/tcp"].reaches
    assert "localnet" in v["127.0.0.1:8081/tcp"].decided_by


def test_from_the_host_and_its_loopback() -> None:
    v = _verdicts(_view(), "web", A("127.0.0.1"))
    assert v["127.0.0.1:8080/tcp"].answered and v["127.0.0.1:8081/tcp"].answered
    assert "publish_addr { 127.0.0.1 . tcp . 8081 : 10.31.0.2 . 80 }" in v["127.0.0.1:8081/tcp"].decided_by
    # Without route_localnet on the bridge, the kernel drops a 127/8 source leaving by it.
    v = _verdicts(_view(route_localnet=()), "web", A("127.0.0.1"))
    assert not v["127.0.0.1:8080/tcp"].reaches
    assert f"net.ipv4.conf.{BRIDGE}.route_localnet is 0" in v["127.0.0.1:8080/tcp"].decided_by
    v = _verdicts(_view(), "web", HOST)
    assert v[f"{HOST}:8080/tcp"].answered and v["10.31.0.2:80/tcp"].answered


def test_another_member_is_bridged_and_icc_off_drops_it() -> None:
    v = _verdicts(_view(), "web", A("10.31.0.3"))
    assert v["10.31.0.2:80/tcp"].answered
    assert "icc_pairs" in " ".join(h.text for h in v["10.31.0.2:80/tcp"].hops)
    v = _verdicts(_view(icc=False), "web", A("10.31.0.3"))
    direct = v["10.31.0.2:80/tcp"]
    assert not direct.reaches and "icc_pairs" in direct.decided_by
    # Through the published port, a DNAT back into the same bridge: the port's icc guard still holds.
    hairpin = v[f"{HOST}:8080/tcp"]
    assert not hairpin.reaches
    assert "bridge dockyard set no_icc_ports { veth0000003 }" in hairpin.decided_by


def test_an_internal_network_is_cut_off() -> None:
    v = _verdicts(_view(internal=True), "web", OUTSIDE)
    assert not any(x.reaches for x in v.values())
    assert "internal network" in v[f"{HOST}:8080/tcp"].decided_by


def test_a_port_nobody_listens_on_arrives_unanswered() -> None:
    v = _verdicts(_view(), "web", HOST, port=81)
    assert list(v) == ["10.31.0.2:81/tcp"]  # nothing publishes 81: only the direct way
    assert v["10.31.0.2:81/tcp"].reaches and not v["10.31.0.2:81/tcp"].answered
    assert "nothing in web waits on 81/tcp" in v["10.31.0.2:81/tcp"].decided_by


def test_a_spoofed_source_is_dropped_by_the_guard() -> None:
    view = _view()
    el = Elements()
    el.update(view.elements)
    el.port_addrs.discard(("veth0000003", A("10.31.0.3")))
    v = _verdicts(dataclasses.replace(view, elements=el), "web", A("10.31.0.3"))
    assert not v["10.31.0.2:80/tcp"].reaches
    assert (
        "no element bridge dockyard set port_addrs { veth0000003 . 10.31.0.3 }"
        in v["10.31.0.2:80/tcp"].decided_by
    )


# -- IPv6 ----------------------------------------------------------------------------------------

A6 = ipaddress.IPv6Address
IF6 = ipaddress.IPv6Interface
OUTSIDE6 = A6("2001:db8::2")
HOST6 = A6("2001:db8::1")


def _view6(bridge_nf6: bool = False, **host_changes: object) -> explain.View:
    """_view with IPv6 beside IPv4: the network dual stack (2001:db8:31::/64), each member an
    IPv6 address and socket, the host an IPv6 uplink and routes; web also publishes [::]:8082."""
    v4 = _view()
    net = dataclasses.replace(
        v4.networks[0],
        enable_ipv6=True,
        subnet6=ipaddress.IPv6Network("2001:db8:31::/64"),
        gateway6=A6("2001:db8:31::1"),
    )
    members = []
    for m in v4.members:
        n = int(str(m.address).rsplit(".", 1)[1])
        ep = dataclasses.replace(m.endpoint, address6=IF6(f"2001:db8:31::{n}/64"), gateway6=net.gateway6)
        assert m.sandbox is not None
        eth = dataclasses.replace(m.sandbox.links[1], addresses6=(ep.address6,))
        sandbox = dataclasses.replace(
            m.sandbox,
            links=(m.sandbox.links[0], eth),
            routes6=(
                Route6(ipaddress.IPv6Network("::/0"), "eth0", gateway=net.gateway6),
                Route6(net.subnet6, "eth0"),
            ),  # type: ignore[arg-type]
            sockets=(*m.sandbox.sockets, Socket(Protocol.TCP, A6("::"), 80)),
        )
        bindings = m.bindings + ((PortBinding(80, Protocol.TCP, 8082, A6("::")),) if m.name == "web" else ())
        members.append(dataclasses.replace(m, endpoint=ep, network=net, sandbox=sandbox, bindings=bindings))
    host = v4.host
    links = tuple(
        dataclasses.replace(lk, addresses6=(IF6(f"{HOST6}/64"),))
        if lk.name == "up0"
        else dataclasses.replace(lk, addresses6=(IF6("2001:db8:31::1/64"),))
        if lk.name == BRIDGE
        else lk
        for lk in host.links
    )
    host = dataclasses.replace(
        host,
        links=links,
        routes6=(
            Route6(ipaddress.IPv6Network("::/0"), "up0", gateway=OUTSIDE6),
            Route6(ipaddress.IPv6Network("2001:db8::/64"), "up0"),
            Route6(ipaddress.IPv6Network("2001:db8:31::/64"), BRIDGE),
        ),
        sockets=(*host.sockets, Socket(Protocol.TCP, A6("::"), 8080), Socket(Protocol.TCP, A6("::"), 8082)),
        forwarding6=True,
        bridge_nf6=bridge_nf6,
    )
    host = dataclasses.replace(host, **host_changes)  # type: ignore[arg-type]
    el = elements_of_network(net)
    for m in members:
        el.update(endpoint_elements(m.endpoint, net.icc))
        el.update(publish_elements(m.address, m.bindings, m.address6))
    return dataclasses.replace(v4, host=host, elements=el, networks=(net,), members=tuple(members))


def test_ipv6_sources_reach_the_ipv6_address_by_the_ipv6_maps() -> None:
    view = _view6()
    web = next(m for m in view.members if m.name == "web")
    sources = explain.default_sources(view, web)
    assert {OUTSIDE6, HOST6, A6("::1"), A6("2001:db8:31::2"), A6("2001:db8:31::3")} <= set(sources)
    v = _verdicts(view, "web", OUTSIDE6)  # type: ignore[arg-type]
    assert set(v) == {f"[{HOST6}]:8080/tcp", f"[{HOST6}]:8082/tcp", "[2001:db8:31::2]:80/tcp"}
    published = v[f"[{HOST6}]:8082/tcp"]
    assert published.answered and published.target == "[2001:db8:31::2]:80"
    assert published.decided_by == "inet dockyard map publish_any6 { tcp . 8082 : 2001:db8:31::2 . 80 }"
    direct = v["[2001:db8:31::2]:80/tcp"]
    assert not direct.reaches and "`oifname @bridges drop`" in direct.decided_by
    # [::]:8082 is IPv6's only: an IPv4 source is offered no 8082.
    assert not any(d.endswith(":8082/tcp") for d in _verdicts(view, "web", OUTSIDE))
    # Another member, bridged; its guard is port_addrs6's; a forged source is dropped by it.
    v = _verdicts(view, "web", A6("2001:db8:31::3"))  # type: ignore[arg-type]
    assert v["[2001:db8:31::2]:80/tcp"].answered
    assert "port_addrs6 { veth0000003 . 2001:db8:31::3 }" in " ".join(
        h.text for h in v["[2001:db8:31::2]:80/tcp"].hops
    )
    el = Elements()
    el.update(view.elements)
    el.port_addrs6.discard(("veth0000003", A6("2001:db8:31::3")))
    v = _verdicts(dataclasses.replace(view, elements=el), "web", A6("2001:db8:31::3"))  # type: ignore[arg-type]
    assert (
        "no element bridge dockyard set port_addrs6 { veth0000003 . 2001:db8:31::3 }"
        in v["[2001:db8:31::2]:80/tcp"].decided_by
    )
    # Without IPv6 forwarding nothing from outside is routed in.
    v = _verdicts(_view6(forwarding6=False), "web", OUTSIDE6)  # type: ignore[arg-type]
    assert "net.ipv6.conf.all.forwarding is 0" in v[f"[{HOST6}]:8080/tcp"].decided_by


def test_ipv6_loopback_is_answered_unless_br_netfilter_loses_the_reply() -> None:
    v = _verdicts(_view6(), "web", A6("::1"))  # type: ignore[arg-type]
    loop = v["[::1]:8080/tcp"]
    assert loop.answered and "publish_any6" in loop.decided_by
    assert any("saddr ::1 oifname @bridges masquerade" in h.text for h in loop.hops)
    v = _verdicts(_view6(bridge_nf6=True), "web", A6("::1"))  # type: ignore[arg-type]
    loop = v["[::1]:8080/tcp"]
    assert loop.reaches and not loop.answered and "bridge-nf-call-ip6tables=1" in loop.decided_by


def test_sources_are_understood_by_address() -> None:
    view = _view()
    kinds = {
        str(a): explain.resolve_source(view, a).kind for a in explain.default_sources(view, view.members[0])
    }
    assert kinds == {
        str(OUTSIDE): "outside",
        str(HOST): "host",
        "127.0.0.1": "loopback",
        "10.31.0.2": "container",
        "10.31.0.3": "container",
    }
    assert explain.resolve_source(view, A("10.31.0.77")).kind == "network"
    assert explain.resolve_source(view, A("203.0.113.5")).label == "203.0.113.5 (outside, arrives on up0)"


# -- the path in words, and mismatches --------------------------------------------------


def test_a_container_as_the_kernel_shows_it_has_no_mismatch() -> None:
    view = _view()
    report = explain.explain_container(view, view.members[0].container)
    assert report.mismatches == []
    claims = {c.topic: c for s in report.sections for c in s.claims}
    assert "net:[4002]" in claims["namespace"].text
    dnat = [o for s in report.sections for c in s.claims if c.topic == "dnat" for o in c.objects]
    assert dnat == [
        "inet dockyard map publish_any { tcp . 8080 : 10.31.0.2 . 80 }",
        "inet dockyard map publish_addr { 127.0.0.1 . tcp . 8081 : 10.31.0.2 . 80 }",
    ]
    assert "the resolver (PID 42) answers on 10.31.0.1:53" in claims["dns"].text


def test_an_element_removed_by_hand_is_a_mismatch() -> None:
    view = _view()
    el = Elements()
    el.update(view.elements)
    del el.publish_any[(Protocol.TCP, 8080)]
    view = dataclasses.replace(view, elements=el)
    report = explain.explain_container(view, view.members[0].container)
    assert report.mismatches == ["published port 0.0.0.0:8080->80/tcp has no DNAT element (it is absent)"]
    # And no published way in is offered any more from outside.
    assert f"{HOST}:8080/tcp" not in _verdicts(view, "web", OUTSIDE)


def test_a_stray_element_and_a_missing_link_are_mismatches() -> None:
    view = _view()
    el = Elements()
    el.update(view.elements)
    el.publish_any[(Protocol.TCP, 9999)] = (A("10.31.0.2"), 22)
    host = dataclasses.replace(
        view.host, links=tuple(lk for lk in view.host.links if lk.name != "veth0000002")
    )
    view = dataclasses.replace(view, elements=el, host=host)
    mismatches = explain.explain_container(view, view.members[0].container).mismatches
    assert "stray DNAT element inet dockyard map publish_any { tcp . 9999 : 10.31.0.2 . 22 }" in mismatches
    assert any("veth0000002" in m and "no such link" in m for m in mismatches), mismatches


def test_a_network_lists_its_ports_and_flags_a_stranger() -> None:
    view = _view()
    stranger = Link(20, "vethstranger", "veth", "aa:00:00:00:00:20", True, 1500, master=3, hairpin=False)
    view = dataclasses.replace(view, host=dataclasses.replace(view.host, links=(*view.host.links, stranger)))
    report = explain.explain_network(view, view.networks[0])
    text = " ".join(c.text for s in report.sections for c in s.claims)
    assert "web's eth0 (10.31.0.2)" in text and "db's eth0 (10.31.0.3)" in text
    assert report.mismatches == [f"vethstranger is a port of {BRIDGE} that no endpoint owns"]


# -- arguments --------------------------------------------------------------------------


def test_arguments() -> None:
    assert parse_port("8080") == (8080, Protocol.TCP)
    assert parse_port("53/udp") == (53, Protocol.UDP)
    flow = parse_flow("198.51.100.2", "198.51.100.1:8080/tcp")
    assert str(flow) == "198.51.100.2 -> 198.51.100.1:8080/tcp"
    for bad in ("198.51.100.1", ":80", "host:80/tcp", "198.51.100.1:99999/tcp"):
        with pytest.raises(InvalidArgument):
            parse_flow("198.51.100.2", bad)
    with pytest.raises(InvalidArgument, match="--from"):
        parse_flow("somewhere", "198.51.100.1:80")
    # IPv6: the destination in brackets; both ends of one family.
    flow6 = parse_flow("2001:db8::2", "[2001:db8::1]:8080/tcp")
    assert str(flow6) == "2001:db8::2 -> [2001:db8::1]:8080/tcp"
    with pytest.raises(InvalidArgument, match="invalid --to"):
        parse_flow("2001:db8::2", "2001:db8::1:8080")  # no brackets: ambiguous
    with pytest.raises(InvalidArgument, match="a flow has one family"):
        parse_flow("198.51.100.2", "[2001:db8::1]:8080/tcp")
    with pytest.raises(InvalidArgument):
        parse_port("80-90/tcp")

"""trace's tables and its reading of the monitor and conntrack; the graph and its DOT; the
metrics' text. Pure: lines as `nft monitor trace` and `conntrack -E` print them (taken from
a lab run), a namespace read by hand, and prometheus_client's parser for the text."""

from __future__ import annotations

import ipaddress

from prometheus_client.parser import text_string_to_metric_families

from dockyard.daemon.metrics import Metrics, route_label
from dockyard.model import Container, ContainerConfig, ContainerState, ModeKind, NetworkMode, Protocol
from dockyard.observed import Link, Namespace
from dockyard.policy import graph
from dockyard.policy.explain import parse_conntrack, summarize
from dockyard.policy.rules.elements import Elements
from dockyard.policy.rules.trace import Flow, add_commands, delete_commands, is_owned, parse_line, table_name

A = ipaddress.IPv4Address
FLOW = Flow(A("198.51.100.2"), A("198.51.100.1"), 8080, Protocol.TCP)
OWNER = "dy:38b6596e9fcf"
T = "dockyard-trace-38b6596e9fcf-072f26"
PKT = (
    'iif "up0" ether saddr fe:3a:d6:dc:53:3f ether daddr 36:1a:f4:d8:6d:af ip saddr 198.51.100.2 '
    "ip daddr {daddr} ip dscp cs0 ip ecn not-ect ip ttl {ttl} ip id {ipid} ip protocol tcp ip length 60 "
    "tcp sport 51422 tcp dport {dport} tcp flags == syn tcp window 64240"
)


def _pkt(ipid: int, daddr: str = "198.51.100.1", dport: int = 8080, ttl: int = 64) -> str:
    return PKT.format(ipid=ipid, daddr=daddr, dport=dport, ttl=ttl)


MONITOR = [
    f"trace id 10a3eb83 inet {T} pre packet: {_pkt(11230)}",
    f"trace id 10a3eb83 inet {T} pre unknown rule handle 2 (verdict continue)",
    f"trace id 10a3eb83 inet {T} pre policy accept ",
    f"trace id 10a3eb83 inet dockyard localnet packet: {_pkt(11230)}",
    "trace id 10a3eb83 inet dockyard localnet policy accept ",
    f"trace id 10a3eb83 inet dockyard prerouting packet: {_pkt(11230)}",
    "trace id 10a3eb83 inet dockyard prerouting rule fib daddr type local jump publish (verdict jump publish)",
    "trace id 10a3eb83 inet dockyard publish rule dnat ip to meta l4proto . th dport map @publish_any "
    "(verdict accept)",
    f"trace id 10a3eb83 inet dockyard forward packet: {_pkt(11230, '10.31.0.2', 80, 63)}",
    "trace id 10a3eb83 inet dockyard forward rule oifname @bridges ct status dnat accept (verdict accept)",
    # The kernel reused the trace id for the next packet of the flow (ip id 11231).
    f"trace id 10a3eb83 inet dockyard localnet packet: {_pkt(11231)}",
    "trace id 10a3eb83 inet dockyard localnet policy accept ",
    # A packet routed on gets a trace id of its own: still packet 11230.
    f"trace id 5f04fc11 inet dockyard postrouting packet: {_pkt(11230, '10.31.0.2', 80, 63)}",
    "trace id 5f04fc11 inet dockyard postrouting policy accept ",
    "something else nft monitor prints",
]
HOOKS = {
    ("inet", "dockyard", "localnet"): ("filter", "prerouting", -300),
    ("inet", "dockyard", "prerouting"): ("nat", "prerouting", -100),
    ("inet", "dockyard", "forward"): ("filter", "forward", 0),
    ("inet", "dockyard", "postrouting"): ("nat", "postrouting", 100),
}
CT_DNAT = (
    "    [NEW] tcp      6 120 SYN_SENT src=198.51.100.2 dst=198.51.100.1 sport=51422 dport=8080 "
    "[UNREPLIED] src=10.31.0.2 dst=198.51.100.2 sport=80 dport=51422"
)
CT_MASQ = (
    " [UPDATE] tcp      6 60 SYN_RECV src=172.17.0.2 dst=203.0.113.1 sport=5000 dport=80 "
    "src=203.0.113.1 dst=198.51.100.1 sport=80 dport=5000"
)


# -- trace ---------------------------------------------------------------------------


def test_the_trace_tables_match_one_flow_and_are_this_roots() -> None:
    name = table_name(OWNER, "072f26")
    assert name == T and is_owned(name, OWNER) and not is_owned(name, "dy:000000000000")
    cmds = add_commands(name, FLOW)
    chains = [c["add"]["chain"] for c in cmds if "chain" in c["add"]]
    assert {(c["family"], c["hook"], c["prio"]) for c in chains} == {
        ("inet", "prerouting", -350),
        ("inet", "output", -350),
        ("bridge", "prerouting", -350),
    }
    for rule in (c["add"]["rule"] for c in cmds if "rule" in c["add"]):
        matched = [(e["match"]["left"], e["match"]["right"]) for e in rule["expr"] if "match" in e]
        assert ({"payload": {"protocol": "ip", "field": "saddr"}}, "198.51.100.2") in matched
        assert ({"payload": {"protocol": "th", "field": "dport"}}, 8080) in matched
        assert rule["expr"][-1] == {"mangle": {"key": {"meta": {"key": "nftrace"}}, "value": 1}}
    # An IPv6 flow matches ip6's addresses.
    flow6 = Flow(ipaddress.IPv6Address("2001:db8::2"), ipaddress.IPv6Address("2001:db8::1"), 80, Protocol.TCP)
    rule = next(c["add"]["rule"] for c in add_commands(name, flow6) if "rule" in c["add"])
    matched = [(e["match"]["left"], e["match"]["right"]) for e in rule["expr"] if "match" in e]
    assert ({"payload": {"protocol": "ip6", "field": "daddr"}}, "2001:db8::1") in matched
    # Deleting tolerates a table already gone: each delete is preceded by an add.
    assert delete_commands([("inet", name)]) == [
        {"add": {"table": {"family": "inet", "name": name}}},
        {"delete": {"table": {"family": "inet", "name": name}}},
    ]


def test_monitor_lines_are_parsed() -> None:
    rule = parse_line(MONITOR[6])
    assert rule is not None
    assert (rule.trace_id, rule.family, rule.table, rule.chain, rule.kind) == (
        "10a3eb83",
        "inet",
        "dockyard",
        "prerouting",
        "rule",
    )
    assert (rule.text, rule.verdict) == ("fib daddr type local jump publish", "jump publish")
    policy = parse_line(MONITOR[4])
    assert policy is not None and (policy.kind, policy.verdict, policy.text) == ("policy", "accept", "")
    assert parse_line(MONITOR[-1]) is None


def test_a_trace_is_told_packet_by_packet_with_hooks_and_nat() -> None:
    lines = [x for x in map(parse_line, MONITOR) if x is not None]
    ct = [x for x in map(parse_conntrack, [CT_DNAT, "not a conntrack line"]) if x is not None]
    report = summarize(str(FLOW), f"inet {T}", lines, HOOKS, ct, "connected")
    assert [p.trace_id for p in report.packets] == ["10a3eb83", "10a3eb83"]
    first, second = report.packets
    assert "ip id 11230" in first.packet and "ip id 11231" in second.packet
    # The trace's own chain is left out; the hooks are named; the renewed trace id is the same packet.
    assert [(s.chain, s.hook) for s in first.steps] == [
        ("localnet", "prerouting (filter, -300)"),
        ("prerouting", "prerouting (nat, -100)"),
        ("publish", "jumped to"),
        ("forward", "forward (filter, 0)"),
        ("postrouting", "postrouting (nat, 100)"),
    ]
    assert first.fate == "accepted by every chain it met"
    assert [s.chain for s in second.steps] == ["localnet"]
    assert report.nat == "DNAT: 198.51.100.1:8080 -> 10.31.0.2:80 (new, SYN_SENT [UNREPLIED])"
    assert report.probe == "connected"


def test_a_drop_decides_the_fate() -> None:
    lines = [
        parse_line(f"trace id 3cca9633 inet dockyard forward packet: {_pkt(58805, '10.31.0.2', 80, 63)}"),
        parse_line("trace id 3cca9633 inet dockyard forward rule oifname @bridges drop (verdict drop)"),
    ]
    report = summarize("f", "t", [x for x in lines if x is not None], HOOKS, [])
    assert report.packets[0].fate == "dropped in inet dockyard forward by `oifname @bridges drop`"
    assert report.nat.startswith("conntrack recorded no connection")


def test_conntrack_lines() -> None:
    e = parse_conntrack(CT_DNAT)
    assert e is not None and e.dnat and not e.snat and e.flags == ("UNREPLIED",)
    m = parse_conntrack(CT_MASQ)
    assert m is not None and m.snat and not m.dnat and m.event == "UPDATE" and m.state == "SYN_RECV"
    report = summarize("f", "t", [], HOOKS, [m])
    assert report.nat == "SNAT (masquerade): 172.17.0.2 -> 198.51.100.1 (update, SYN_RECV)"


# -- graph ---------------------------------------------------------------------------


def _graph() -> graph.Graph:
    host = Namespace(
        inode=1,
        links=(
            Link(1, "lo", "", "00:00:00:00:00:00", True, 65536),
            Link(2, "up0", "veth", "5e:00:00:00:00:01", True, 1500),
            Link(3, "dockyard0", "bridge", "02:00:00:00:00:01", True, 1500),
            Link(4, "veth1234567", "veth", "aa:00:00:00:00:04", True, 1500, 3, 2, True, hairpin=True),
        ),
    )
    eth0 = Link(
        2,
        "eth0",
        "veth",
        "02:42:ac:11:00:02",
        True,
        1500,
        None,
        4,
        True,
        addresses=(ipaddress.IPv4Interface("172.17.0.2/16"),),
    )
    ns = Namespace(inode=77, links=(Link(1, "lo", "", "00:00:00:00:00:00", True, 65536), eth0))
    web = Container("c1", 'web "1"', ContainerConfig(cmd=("x",)), ContainerState.RUNNING, pid=5)
    onhost = Container(
        "c2",
        "onhost",
        ContainerConfig(cmd=("x",), network_mode=NetworkMode(ModeKind.HOST)),
        ContainerState.RUNNING,
    )
    el = Elements(publish_any={(Protocol.TCP, 8080): (A("172.17.0.2"), 80)})
    return graph.build(host, [graph.Sandbox(ns, (web,))], [onhost], el)


def test_the_graph_joins_veth_ends_ports_and_published_ports() -> None:
    g = _graph()
    assert {n.id for n in g.nodes} == {
        "host/2",
        "host/3",
        "host/4",
        "net:[77]/2",
        "container/c1",
        "container/c2",
        "port/0.0.0.0:8080/tcp",
    }
    assert {(e.a, e.b, e.kind) for e in g.edges} == {
        ("host/4", "host/3", "master"),
        ("host/4", "net:[77]/2", "veth"),
        ("port/0.0.0.0:8080/tcp", "net:[77]/2", "publish"),
    }
    assert [c.id for c in g.clusters] == ["host", "net:[77]"]


def test_dot_quotes_what_it_draws() -> None:
    dot = graph.to_dot(_graph(), 'a "title"')
    assert dot.startswith('graph "a \\"title\\"" {\n')
    assert '"container/c1" [label="web \\"1\\"", shape=component' in dot
    assert '"host/4" -- "net:[77]/2" [label="veth pair", style=bold];' in dot
    assert dot.count("subgraph cluster_") == 2 and dot.rstrip().endswith("}")


# -- metrics -------------------------------------------------------------------------


def test_route_labels_are_patterns_not_paths() -> None:
    assert route_label(r"^(?:/v[0-9.]+)?/containers/(?P<ref>[^/]+)/json$") == "/containers/{ref}/json"


def test_the_metrics_text_parses_and_counts() -> None:
    m = Metrics()
    m.observe("GET", "/containers/{ref}/json", 200, 0.003)
    m.observe("GET", "/containers/{ref}/json", 404, 7.0)
    m.repairs(2, 1, 0)
    families = {f.name: f for f in text_string_to_metric_families(m.text())}
    assert families["dockyard_api_requests"].type == "counter"
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples
    }
    route = ("route", "/containers/{ref}/json")
    assert samples[("dockyard_api_requests_total", (("code", "404"), ("method", "GET"), route))] == 1
    hist = families["dockyard_api_request_duration_seconds"]
    assert hist.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in hist.samples if s.name.endswith("_bucket")}
    assert buckets["0.001"] == 0 and buckets["0.005"] == 1 and buckets["5"] == 1 and buckets["+Inf"] == 2
    assert samples[("dockyard_api_request_duration_seconds_count", (("method", "GET"), route))] == 2
    assert samples[("dockyard_reconcile_repairs_total", (("kind", "removed"),))] == 2
    assert samples[("dockyard_reconcile_runs_total", ())] == 1
    for name in families:
        assert name.startswith("dockyard_")


def test_a_vxlan_device_is_drawn_with_the_link_it_sends_through_and_its_remote() -> None:
    from dockyard.observed import Vxlan

    host = Namespace(
        inode=1,
        links=(
            Link(2, "up0", "veth", "5e:00:00:00:00:01", True, 1500),
            Link(3, "br0", "bridge", "02:00:00:00:00:01", True, 1450),
            Link(
                4,
                "vx0",
                "vxlan",
                "02:00:00:00:00:02",
                True,
                1450,
                master=3,
                vxlan=Vxlan(42, 4789, A("198.51.100.1"), A("198.51.100.9"), device=2),
            ),
        ),
    )
    g = graph.build(host, [], [], Elements())
    assert {(e.a, e.b, e.kind, e.label) for e in g.edges} == {
        ("host/4", "host/3", "master", "port"),
        ("host/4", "host/2", "vxlan-dev", "sends through"),
        ("host/4", "remote/198.51.100.9", "vxlan-remote", "vni 42"),
    }
    assert g.node("host/4").label == "vx0\nvxlan 42 :4789\nlocal 198.51.100.1"  # type: ignore[union-attr]
    assert g.node("remote/198.51.100.9").kind == "remote"  # type: ignore[union-attr]


def test_an_overlay_s_other_hosts_are_drawn_from_the_vxlan_device_s_forwarding_entries() -> None:
    from dockyard.observed import Vxlan

    peers = (A("192.0.2.12"), A("192.0.2.13"))
    host = Namespace(
        inode=1,
        links=(
            Link(3, "dy-ov", "bridge", "02:00:00:00:00:01", True, 1450),
            Link(
                4, "vx-ov", "vxlan", "02:00:00:00:00:02", True, 1450, master=3, vxlan=Vxlan(4097, peers=peers)
            ),
        ),
    )
    g = graph.build(host, [], [], Elements())
    assert {(e.a, e.b, e.kind) for e in g.edges if e.kind == "vxlan-remote"} == {
        ("host/4", "remote/192.0.2.12", "vxlan-remote"),
        ("host/4", "remote/192.0.2.13", "vxlan-remote"),
    }
    assert "remote VTEP" in g.node("remote/192.0.2.13").label  # type: ignore[union-attr]

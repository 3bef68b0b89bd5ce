"""The `inet dockyard` nftables table, as data.

Pure: this module renders libnftables JSON commands and never applies them
(kernel/nft.py does). The table's rules are few and fixed; what changes per
network, endpoint or published port is an element of a set or a map, so
every change is an element add or delete whatever the count, and rules stay
flat as containers grow.

Sets and maps:
    bridges       ifname               every dockyard bridge
    masq_nets     ipv4_addr (interval) subnets whose outbound traffic is masqueraded
    bridge_nets   ipv4_addr . ifname   (subnet . its bridge): to masquerade DNAT back into the same bridge
    icc_pairs     ifname . ifname      (bridge . bridge) of networks whose members may talk
    dns_gateways  ipv4_addr            gateways where dockyard's resolver answers: port 53 never DNATed
    internal      ifname               bridges of --internal networks: nothing in or out
    publish_any   proto . port -> addr . port           ports published on every host address
    publish_addr  addr . proto . port -> addr . port    ports published on one host address

Rules are rendered in the form `nft -j list` prints them, so the table read
back from the kernel can be compared with this rendering.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dockyard.model import Network, PortBinding, Protocol

FAMILY = "inet"
TABLE = "dockyard"
# Bridged (port to port) traffic never reaches the inet hooks without
# br_netfilter, so enable_icc=false lives in a bridge-family table.
BRIDGE_FAMILY = "bridge"
BRIDGE_SETS_NAMES = ("no_icc_ports",)
LOOPBACK_NET = ipaddress.IPv4Network("127.0.0.0/8")

Json = dict[str, Any]
PublishAnyKey = tuple[Protocol, int]
PublishAddrKey = tuple[ipaddress.IPv4Address, Protocol, int]
Target = tuple[ipaddress.IPv4Address, int]


def _meta(key: str) -> Json:
    return {"meta": {"key": key}}


def _payload(protocol: str, fld: str) -> Json:
    return {"payload": {"protocol": protocol, "field": fld}}


def _match(left: Json, right: Any, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def _fib_daddr_local() -> Json:
    return _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")


def _rule(chain: str, *expr: Json) -> Json:
    return {"rule": {"family": FAMILY, "table": TABLE, "chain": chain, "expr": list(expr)}}


SETS: tuple[Json, ...] = (
    {"set": {"family": FAMILY, "name": "bridges", "table": TABLE, "type": "ifname"}},
    {
        "set": {
            "family": FAMILY,
            "name": "masq_nets",
            "table": TABLE,
            "type": "ipv4_addr",
            "flags": ["interval"],
        }
    },
    {
        "set": {
            "family": FAMILY,
            "name": "bridge_nets",
            "table": TABLE,
            "type": ["ipv4_addr", "ifname"],
            "flags": ["interval"],
        }
    },
    {"set": {"family": FAMILY, "name": "icc_pairs", "table": TABLE, "type": ["ifname", "ifname"]}},
    {"set": {"family": FAMILY, "name": "dns_gateways", "table": TABLE, "type": "ipv4_addr"}},
    {"set": {"family": FAMILY, "name": "internal", "table": TABLE, "type": "ifname"}},
    {
        "map": {
            "family": FAMILY,
            "name": "publish_any",
            "table": TABLE,
            "type": ["inet_proto", "inet_service"],
            "map": "ipv4_addr . inet_service",
        }
    },
    {
        "map": {
            "family": FAMILY,
            "name": "publish_addr",
            "table": TABLE,
            "type": ["ipv4_addr", "inet_proto", "inet_service"],
            "map": "ipv4_addr . inet_service",
        }
    },
)


def _chain(name: str, ctype: str | None = None, hook: str | None = None, prio: int = 0) -> Json:
    chain: Json = {"family": FAMILY, "table": TABLE, "name": name}
    if ctype:
        chain.update({"type": ctype, "hook": hook, "prio": prio, "policy": "accept"})
    return {"chain": chain}


CHAINS: tuple[Json, ...] = (
    _chain("publish"),
    _chain("prerouting", "nat", "prerouting", -100),
    _chain("output", "nat", "output", -100),
    _chain("postrouting", "nat", "postrouting", 100),
    _chain("forward", "filter", "forward", 0),
    _chain("localnet", "filter", "prerouting", -300),
)

_TO_ANY_ADDR = {"concat": [_meta("l4proto"), _payload("th", "dport")]}
_TO_ONE_ADDR = {"concat": [_payload("ip", "daddr"), _meta("l4proto"), _payload("th", "dport")]}
_FROM_OWN_BRIDGE = {"concat": [_payload("ip", "saddr"), _meta("oifname")]}
_BRIDGE_PAIR = {"concat": [_meta("iifname"), _meta("oifname")]}

RULES: tuple[Json, ...] = (
    # A port 53 published on every address must not take the queries that
    # containers send to their network's resolver on the gateway.
    *(
        _rule(
            "publish",
            _match(_payload("ip", "daddr"), "@dns_gateways"),
            _match(_payload(proto, "dport"), 53),
            {"return": None},
        )
        for proto in ("udp", "tcp")
    ),
    # Published ports: DNAT whatever is addressed to the host itself, in one
    # map lookup each; a port bound to one address is looked up first.
    _rule(
        "publish", {"dnat": {"family": "ip", "addr": {"map": {"key": _TO_ONE_ADDR, "data": "@publish_addr"}}}}
    ),
    _rule(
        "publish", {"dnat": {"family": "ip", "addr": {"map": {"key": _TO_ANY_ADDR, "data": "@publish_any"}}}}
    ),
    _rule("prerouting", _fib_daddr_local(), {"jump": {"target": "publish"}}),
    # The host's own connections, 127.0.0.1 included: no userland proxy.
    _rule("output", _fib_daddr_local(), {"jump": {"target": "publish"}}),
    # 127.0.0.1 published ports leave through a bridge with a loopback source:
    # give them the bridge's address, or the reply has nowhere to go.
    _rule(
        "postrouting",
        _match(_payload("ip", "saddr"), {"prefix": {"addr": "127.0.0.0", "len": 8}}),
        _match(_meta("oifname"), "@bridges"),
        {"masquerade": None},
    ),
    # Hairpin: a container reaching a port published back into its own
    # bridge must see the reply come from the host, not from its peer.
    _rule(
        "postrouting",
        _match({"ct": {"key": "status"}}, "dnat", "in"),
        _match(_FROM_OWN_BRIDGE, "@bridge_nets"),
        {"masquerade": None},
    ),
    _rule(
        "postrouting",
        _match(_payload("ip", "saddr"), "@masq_nets"),
        _match(_meta("oifname"), "@bridges", "!="),
        {"masquerade": None},
    ),
    # The perimeter: into a bridge only replies and published ports pass.
    # Anything else routed at a container network is dropped, which also
    # isolates bridges from each other and closes Docker's direct-routing hole.
    _rule(
        "forward",
        _match(_meta("iifname"), "@internal"),
        _match(_meta("oifname"), "@internal", "!="),
        {"drop": None},
    ),
    _rule(
        "forward",
        _match(_meta("oifname"), "@internal"),
        _match(_meta("iifname"), "@internal", "!="),
        {"drop": None},
    ),
    _rule(
        "forward",
        _match(_meta("oifname"), "@bridges"),
        _match({"ct": {"key": "state"}}, ["established", "related"], "in"),
        {"accept": None},
    ),
    _rule(
        "forward",
        _match(_meta("oifname"), "@bridges"),
        _match({"ct": {"key": "status"}}, "dnat", "in"),
        {"accept": None},
    ),
    # With br_netfilter (bridge-nf-call-iptables=1, on by default where the
    # module is loaded), frames between members of one bridge pass here
    # too, as bridge -> same bridge: allowed unless icc is off. Without it
    # they never come here, and the bridge table below keeps icc=false.
    _rule("forward", _match(_BRIDGE_PAIR, "@icc_pairs"), {"accept": None}),
    _rule("forward", _match(_meta("oifname"), "@bridges"), {"drop": None}),
    # CVE-2020-8558: nothing from the wire may reach 127.0.0.0/8, even
    # where route_localnet lets the kernel route it.
    _rule(
        "localnet",
        _match(_meta("iifname"), "lo", "!="),
        _match(_payload("ip", "daddr"), {"prefix": {"addr": "127.0.0.0", "len": 8}}),
        _match(_payload("ip", "saddr"), {"prefix": {"addr": "127.0.0.0", "len": 8}}, "!="),
        {"drop": None},
    ),
)


# The fixed part of the table, loaded as text in one transaction. Text, not
# JSON, because libnftables 1.0.6 cannot declare a map with concatenated
# data from JSON (it makes a set, and a rule using it crashes the library).
# It is a constant: nothing is ever interpolated into it. A golden test
# checks that loading it gives exactly SETS + CHAINS + RULES above.
TABLE_TEXT = """
add table inet dockyard
delete table inet dockyard
table inet dockyard {
    set bridges { type ifname; }
    set masq_nets { type ipv4_addr; flags interval; }
    set bridge_nets { type ipv4_addr . ifname; flags interval; }
    set icc_pairs { type ifname . ifname; }
    set dns_gateways { type ipv4_addr; }
    set internal { type ifname; }
    map publish_any { type inet_proto . inet_service : ipv4_addr . inet_service; }
    map publish_addr { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }
    chain publish {
        ip daddr @dns_gateways udp dport 53 return
        ip daddr @dns_gateways tcp dport 53 return
        dnat ip to ip daddr . meta l4proto . th dport map @publish_addr
        dnat ip to meta l4proto . th dport map @publish_any
    }
    chain prerouting {
        type nat hook prerouting priority -100; policy accept;
        fib daddr type local jump publish
    }
    chain output {
        type nat hook output priority -100; policy accept;
        fib daddr type local jump publish
    }
    chain postrouting {
        type nat hook postrouting priority 100; policy accept;
        ip saddr 127.0.0.0/8 oifname @bridges masquerade
        ct status dnat ip saddr . oifname @bridge_nets masquerade
        ip saddr @masq_nets oifname != @bridges masquerade
    }
    chain forward {
        type filter hook forward priority 0; policy accept;
        iifname @internal oifname != @internal drop
        oifname @internal iifname != @internal drop
        oifname @bridges ct state established,related accept
        oifname @bridges ct status dnat accept
        iifname . oifname @icc_pairs accept
        oifname @bridges drop
    }
    chain localnet {
        type filter hook prerouting priority -300; policy accept;
        iifname != "lo" ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 drop
    }
}
"""

# Loaded after the inet table, and only once a bridge exists: on this
# kernel a bridge-family base chain made in a namespace that has no bridge
# device yet never sees a frame (measured: its counter stays at 0 while
# traffic flows), so the daemon reloads it after making its bridges.
BRIDGE_TABLE_TEXT = """
add table bridge dockyard
delete table bridge dockyard
table bridge dockyard {
    set no_icc_ports { type ifname; }
    chain forward {
        type filter hook forward priority 0; policy accept;
        iifname @no_icc_ports drop
    }
}
"""

# `table bridge dockyard` as `nft -j list` prints it.
BRIDGE_LISTING: tuple[Json, ...] = (
    {"set": {"family": BRIDGE_FAMILY, "name": "no_icc_ports", "table": TABLE, "type": "ifname"}},
    {
        "chain": {
            "family": BRIDGE_FAMILY,
            "table": TABLE,
            "name": "forward",
            "type": "filter",
            "hook": "forward",
            "prio": 0,
            "policy": "accept",
        }
    },
    {
        "rule": {
            "family": BRIDGE_FAMILY,
            "table": TABLE,
            "chain": "forward",
            "expr": [_match(_meta("iifname"), "@no_icc_ports"), {"drop": None}],
        }
    },
)
TABLES = ((FAMILY, TABLE), (BRIDGE_FAMILY, TABLE))
MAPS = ("publish_any", "publish_addr")


def owner_mark(root: str) -> str:
    """The comment that marks a root's elements and bridges: stable, short, not a path."""
    return "dy:" + hashlib.sha256(root.encode()).hexdigest()[:12]


def delete_table_commands() -> list[Json]:
    out: list[Json] = []
    for family, name in TABLES:
        table = {"table": {"family": family, "name": name}}
        out += [{"add": table}, {"delete": table}]
    return out


@dataclass
class Elements:
    """Set and map elements: what varies with networks, endpoints and ports."""

    bridges: set[str] = field(default_factory=set)
    masq_nets: set[ipaddress.IPv4Network] = field(default_factory=set)
    bridge_nets: set[tuple[ipaddress.IPv4Network, str]] = field(default_factory=set)
    icc_pairs: set[tuple[str, str]] = field(default_factory=set)
    dns_gateways: set[ipaddress.IPv4Address] = field(default_factory=set)
    internal: set[str] = field(default_factory=set)
    publish_any: dict[PublishAnyKey, Target] = field(default_factory=dict)
    publish_addr: dict[PublishAddrKey, Target] = field(default_factory=dict)
    no_icc_ports: set[str] = field(default_factory=set)

    def update(self, other: Elements) -> None:
        self.no_icc_ports |= other.no_icc_ports
        self.bridges |= other.bridges
        self.masq_nets |= other.masq_nets
        self.bridge_nets |= other.bridge_nets
        self.icc_pairs |= other.icc_pairs
        self.dns_gateways |= other.dns_gateways
        self.internal |= other.internal
        self.publish_any.update(other.publish_any)
        self.publish_addr.update(other.publish_addr)

    def minus(self, other: Elements) -> Elements:
        """What is in self and not (the same) in other."""
        return Elements(
            bridges=self.bridges - other.bridges,
            masq_nets=self.masq_nets - other.masq_nets,
            bridge_nets=self.bridge_nets - other.bridge_nets,
            icc_pairs=self.icc_pairs - other.icc_pairs,
            dns_gateways=self.dns_gateways - other.dns_gateways,
            internal=self.internal - other.internal,
            publish_any={k: v for k, v in self.publish_any.items() if other.publish_any.get(k) != v},
            publish_addr={k: v for k, v in self.publish_addr.items() if other.publish_addr.get(k) != v},
            no_icc_ports=self.no_icc_ports - other.no_icc_ports,
        )

    def common(self, other: Elements) -> Elements:
        """What is in both (map entries only where the value matches too)."""
        return Elements(
            bridges=self.bridges & other.bridges,
            masq_nets=self.masq_nets & other.masq_nets,
            bridge_nets=self.bridge_nets & other.bridge_nets,
            icc_pairs=self.icc_pairs & other.icc_pairs,
            dns_gateways=self.dns_gateways & other.dns_gateways,
            internal=self.internal & other.internal,
            publish_any={k: v for k, v in self.publish_any.items() if other.publish_any.get(k) == v},
            publish_addr={k: v for k, v in self.publish_addr.items() if other.publish_addr.get(k) == v},
            no_icc_ports=self.no_icc_ports & other.no_icc_ports,
        )

    def empty(self) -> bool:
        return not (
            self.bridges
            or self.masq_nets
            or self.bridge_nets
            or self.icc_pairs
            or self.dns_gateways
            or self.internal
            or self.publish_any
            or self.publish_addr
            or self.no_icc_ports
        )

    def count(self) -> int:
        return (
            len(self.bridges)
            + len(self.masq_nets)
            + len(self.bridge_nets)
            + len(self.icc_pairs)
            + len(self.dns_gateways)
            + len(self.internal)
            + len(self.publish_any)
            + len(self.publish_addr)
            + len(self.no_icc_ports)
        )


def endpoint_elements(host_ifname: str, icc: bool) -> Elements:
    """An endpoint's own elements: its bridge port, when its network forbids icc."""
    return Elements(no_icc_ports=set() if icc else {host_ifname})


def network_elements(
    bridge: str, subnet: ipaddress.IPv4Network, masquerade: bool, internal: bool, icc: bool = True
) -> Elements:
    el = Elements(bridges={bridge}, bridge_nets={(subnet, bridge)})
    if icc:
        el.icc_pairs.add((bridge, bridge))
    if masquerade and not internal:
        el.masq_nets.add(subnet)
    if internal:
        el.internal.add(bridge)
    return el


def elements_of_network(network: Network) -> Elements:
    """A bridge network's elements; user networks also get their resolver's gateway."""
    assert network.subnet is not None
    el = network_elements(network.bridge, network.subnet, network.masquerade, network.internal, network.icc)
    if network.name != "bridge" and network.gateway is not None:
        el.dns_gateways.add(network.gateway)
    return el


def publish_elements(address: ipaddress.IPv4Address, bindings: Iterable[PortBinding]) -> Elements:
    el = Elements()
    for b in bindings:
        target = (address, b.container_port)
        if b.host_ip is None:
            el.publish_any[(b.proto, b.host_port)] = target
        else:
            el.publish_addr[(b.host_ip, b.proto, b.host_port)] = target
    return el


def _elem_json(el: Elements) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    if el.bridges:
        out["bridges"] = sorted(el.bridges)
    if el.masq_nets:
        out["masq_nets"] = [
            {"prefix": {"addr": str(n.network_address), "len": n.prefixlen}} for n in sorted(el.masq_nets)
        ]
    if el.bridge_nets:
        out["bridge_nets"] = [
            {"concat": [{"prefix": {"addr": str(n.network_address), "len": n.prefixlen}}, b]}
            for n, b in sorted(el.bridge_nets)
        ]
    if el.dns_gateways:
        out["dns_gateways"] = [str(a) for a in sorted(el.dns_gateways)]
    if el.icc_pairs:
        out["icc_pairs"] = [{"concat": [a, b]} for a, b in sorted(el.icc_pairs)]
    if el.internal:
        out["internal"] = sorted(el.internal)
    if el.publish_any:
        out["publish_any"] = [
            [{"concat": [str(proto), port]}, {"concat": [str(addr), tport]}]
            for (proto, port), (addr, tport) in sorted(el.publish_any.items())
        ]
    if el.publish_addr:
        out["publish_addr"] = [
            [{"concat": [str(hip), str(proto), port]}, {"concat": [str(addr), tport]}]
            for (hip, proto, port), (addr, tport) in sorted(el.publish_addr.items())
        ]
    if el.no_icc_ports:
        out["no_icc_ports"] = sorted(el.no_icc_ports)
    return out


def _with_owner(name: str, item: Any, owner: str) -> Any:
    """An element carrying its owner's mark as its comment (maps: on the key)."""
    if name in MAPS:
        key, value = item
        return [{"elem": {"val": key, "comment": owner}}, value]
    return {"elem": {"val": item, "comment": owner}}


def element_commands(verb: str, el: Elements, owner: str = "") -> list[Json]:
    """`add` or `delete` commands for the given elements, one per set or map.

    Added elements carry `owner` (the dockyard root's mark) as their comment,
    so that two roots sharing a host namespace never remove each other's.
    """
    out = []
    for name, elems in _elem_json(el).items():
        if verb == "add" and owner:
            elems = [_with_owner(name, item, owner) for item in elems]
        family = BRIDGE_FAMILY if name in BRIDGE_SETS_NAMES else FAMILY
        out.append({verb: {"element": {"family": family, "table": TABLE, "name": name, "elem": elems}}})
    return out


def _owner_of(name: str, item: Any) -> str | None:
    head = item[0] if name in MAPS else item
    if isinstance(head, dict) and "elem" in head:
        return str(head["elem"].get("comment", ""))
    return None


def _strip_owner(name: str, item: Any) -> Any:
    if name in MAPS:
        key, value = item
        return [key["elem"]["val"] if isinstance(key, dict) and "elem" in key else key, value]
    return item["elem"]["val"] if isinstance(item, dict) and "elem" in item else item


def parse_listed_elements(listing: list[Json], owner: str | None = None) -> Elements:
    """Read the elements back from `nft -j list table` output; only `owner`'s when given."""
    el = Elements()
    for obj in listing:
        body = obj.get("set") or obj.get("map")
        if not body or "elem" not in body:
            continue
        name = body["name"]
        for raw in body["elem"]:
            if owner is not None and _owner_of(name, raw) != owner:
                continue
            item = _strip_owner(name, raw)
            if name == "bridges":
                el.bridges.add(item)
            elif name == "no_icc_ports":
                el.no_icc_ports.add(item)
            elif name == "internal":
                el.internal.add(item)
            elif name == "masq_nets":
                p = item["prefix"] if isinstance(item, dict) else {"addr": item, "len": 32}
                el.masq_nets.add(ipaddress.IPv4Network(f"{p['addr']}/{p['len']}"))
            elif name == "dns_gateways":
                el.dns_gateways.add(ipaddress.IPv4Address(item))
            elif name == "icc_pairs":
                a, b = item["concat"]
                el.icc_pairs.add((a, b))
            elif name == "bridge_nets":
                net, b = item["concat"]
                p = net["prefix"] if isinstance(net, dict) else {"addr": net, "len": 32}
                el.bridge_nets.add((ipaddress.IPv4Network(f"{p['addr']}/{p['len']}"), b))
            elif name == "publish_any":
                (proto, port), (addr, tport) = item[0]["concat"], item[1]["concat"]
                el.publish_any[(Protocol(proto), int(port))] = (
                    ipaddress.IPv4Address(addr),
                    int(tport),
                )
            elif name == "publish_addr":
                (hip, proto, port), (addr, tport) = item[0]["concat"], item[1]["concat"]
                el.publish_addr[(ipaddress.IPv4Address(hip), Protocol(proto), int(port))] = (
                    ipaddress.IPv4Address(addr),
                    int(tport),
                )
    return el


def strip_listing(listing: list[Json]) -> list[Json]:
    """The listed table without handles, elements and metainfo: comparable with rendering."""
    out: list[Json] = []
    for obj in listing:
        if "metainfo" in obj or "table" in obj:
            continue
        ((kind, body),) = obj.items()
        body = {k: v for k, v in body.items() if k not in ("handle", "elem")}
        out.append({kind: body})
    return out


def expected_listing(family: str = FAMILY) -> list[Json]:
    if family == BRIDGE_FAMILY:
        return [dict(obj) for obj in BRIDGE_LISTING]
    return [dict(obj) for obj in SETS + CHAINS + RULES]


# -- neighbours: the iptables filter table (iptables-nft's `ip filter`) -----

# Where another tool (Docker does this) set the iptables FORWARD policy to
# DROP, a packet must also be accepted there: one pair of rules per bridge,
# marked with the owner's comment so that only ours are ever removed.
IPTABLES_FORWARD = ("ip", "filter", "FORWARD")


def forward_accept_commands(bridge: str, owner: str) -> list[Json]:
    family, table, chain = IPTABLES_FORWARD
    return [
        {
            "insert": {
                "rule": {
                    "family": family,
                    "table": table,
                    "chain": chain,
                    "comment": f"{owner} {bridge}",
                    "expr": [_match(_meta(direction), bridge), {"accept": None}],
                }
            }
        }
        for direction in ("oifname", "iifname")
    ]


def forward_rules_of(listing: list[Json], owner: str) -> dict[str, list[int]]:
    """The handles of an owner's FORWARD rules, by bridge."""
    out: dict[str, list[int]] = {}
    for obj in listing:
        rule = obj.get("rule")
        if not rule:
            continue
        owner_part, _, bridge = str(rule.get("comment", "")).partition(" ")
        if owner_part == owner and bridge:
            out.setdefault(bridge, []).append(int(rule["handle"]))
    return out


def forward_policy_drop(listing: list[Json]) -> bool:
    return any(obj.get("chain", {}).get("policy") == "drop" for obj in listing)


def delete_rule_commands(handles: Iterable[int]) -> list[Json]:
    family, table, chain = IPTABLES_FORWARD
    return [
        {"delete": {"rule": {"family": family, "table": table, "chain": chain, "handle": h}}} for h in handles
    ]

"""The fixed part of the dockyard tables: sets, maps, chains and rules, as data.

Pure. `inet dockyard` and `bridge dockyard` are rendered here in the form
`nft -j list` prints them, so the tables read back from the kernel can be
compared with this rendering, and as the constant text that loads them.
What varies per network, endpoint or port is elements.py's.
"""

from __future__ import annotations

import ipaddress

from dockyard.policy.rules.expr import Json, match, meta, payload

FAMILY = "inet"
TABLE = "dockyard"
# Bridged (port to port) traffic never reaches the inet hooks without
# br_netfilter, so enable_icc=false and the endpoints' anti-spoofing guard
# live in a bridge-family table.
BRIDGE_FAMILY = "bridge"
LOOPBACK_NET = ipaddress.IPv4Network("127.0.0.0/8")


def _fib_daddr_local() -> Json:
    return match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")


def _rule(chain: str, *expr: Json) -> Json:
    return {"rule": {"family": FAMILY, "table": TABLE, "chain": chain, "expr": list(expr)}}


def _set(name: str, ctype: str | list[str], interval: bool = False) -> Json:
    body: Json = {"family": FAMILY, "name": name, "table": TABLE, "type": ctype}
    if interval:
        body["flags"] = ["interval"]
    return {"set": body}


def _map(name: str, ctype: list[str], data: str) -> Json:
    return {"map": {"family": FAMILY, "name": name, "table": TABLE, "type": ctype, "map": data}}


SETS: tuple[Json, ...] = (
    _set("bridges", "ifname"),
    _set("masq_nets", "ipv4_addr", interval=True),
    _set("masq_nets6", "ipv6_addr", interval=True),
    _set("bridge_nets", ["ipv4_addr", "ifname"], interval=True),
    _set("bridge_nets6", ["ipv6_addr", "ifname"], interval=True),
    _set("icc_pairs", ["ifname", "ifname"]),
    _set("dns_gateways", "ipv4_addr"),
    _set("dns_gateways6", "ipv6_addr"),
    _set("internal", "ifname"),
    _set("routed6", ["ipv6_addr", "inet_proto", "inet_service"]),
    _map("publish_any", ["inet_proto", "inet_service"], "ipv4_addr . inet_service"),
    _map("publish_addr", ["ipv4_addr", "inet_proto", "inet_service"], "ipv4_addr . inet_service"),
    _map("publish_any6", ["inet_proto", "inet_service"], "ipv6_addr . inet_service"),
    _map("publish_addr6", ["ipv6_addr", "inet_proto", "inet_service"], "ipv6_addr . inet_service"),
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

_TO_ANY_ADDR = {"concat": [meta("l4proto"), payload("th", "dport")]}


def _to_one_addr(ip: str) -> Json:
    return {"concat": [payload(ip, "daddr"), meta("l4proto"), payload("th", "dport")]}


def _from_own_bridge(ip: str) -> Json:
    return {"concat": [payload(ip, "saddr"), meta("oifname")]}


def _dnat(ip: str, key: Json, data: str) -> Json:
    return {"dnat": {"family": ip, "addr": {"map": {"key": key, "data": data}}}}


# The IPv4 set or map of each name, and its IPv6 twin.
_FAMILIES = (("ip", ""), ("ip6", "6"))
_BRIDGE_PAIR = {"concat": [meta("iifname"), meta("oifname")]}

RULES: tuple[Json, ...] = (
    # A port 53 published on every address must not take the queries that
    # containers send to their network's resolver on the gateway.
    *(
        _rule(
            "publish",
            match(payload(ip, "daddr"), f"@dns_gateways{six}"),
            match(payload(proto, "dport"), 53),
            {"return": None},
        )
        for ip, six in _FAMILIES
        for proto in ("udp", "tcp")
    ),
    # Published ports: DNAT whatever is addressed to the host itself, in one
    # map lookup each; a port bound to one address is looked up first. The
    # IPv4 DNAT does nothing to an IPv6 packet (and the other way round):
    # the kernel's inet NAT applies a family's translation to its own only.
    *(
        rule
        for ip, six in _FAMILIES
        for rule in (
            _rule("publish", _dnat(ip, _to_one_addr(ip), f"@publish_addr{six}")),
            _rule("publish", _dnat(ip, _TO_ANY_ADDR, f"@publish_any{six}")),
        )
    ),
    _rule("prerouting", _fib_daddr_local(), {"jump": {"target": "publish"}}),
    # The host's own connections, 127.0.0.1 included: no userland proxy.
    _rule("output", _fib_daddr_local(), {"jump": {"target": "publish"}}),
    # 127.0.0.1 published ports leave through a bridge with a loopback source:
    # give them the bridge's address, or the reply has nowhere to go.
    # ::1's likewise (a container drops whatever comes from ::1, RFC 4291),
    # and the reply, DNATed back to ::1, is let in by the bridge's local
    # route for ::1 (the driver's: IPv6 has no route_localnet).
    _rule(
        "postrouting",
        match(payload("ip", "saddr"), {"prefix": {"addr": "127.0.0.0", "len": 8}}),
        match(meta("oifname"), "@bridges"),
        {"masquerade": None},
    ),
    _rule(
        "postrouting",
        match(payload("ip6", "saddr"), "::1"),
        match(meta("oifname"), "@bridges"),
        {"masquerade": None},
    ),
    # Hairpin: a container reaching a port published back into its own
    # bridge must see the reply come from the host, not from its peer.
    *(
        _rule(
            "postrouting",
            match({"ct": {"key": "status"}}, "dnat", "in"),
            match(_from_own_bridge(ip), f"@bridge_nets{six}"),
            {"masquerade": None},
        )
        for ip, six in _FAMILIES
    ),
    # Out to the world: NAT44 and NAT66 (a routed IPv6 network is in no masq_nets6).
    *(
        _rule(
            "postrouting",
            match(payload(ip, "saddr"), f"@masq_nets{six}"),
            match(meta("oifname"), "@bridges", "!="),
            {"masquerade": None},
        )
        for ip, six in _FAMILIES
    ),
    # The perimeter: into a bridge only replies and published ports pass.
    # Anything else routed at a container network is dropped, which also
    # isolates bridges from each other and closes Docker's direct-routing hole.
    # Nearly every forwarded packet belongs to a connection already let
    # through: accepted first, in two lookups where the rules below took
    # three (measured: the forward chain was a third of nft's time in a
    # hairpin flow's profile). Exactly what the rules below do with it: they
    # drop a packet only across an --internal network's edge, which this
    # rule leaves to them, and accept or let pass the rest.
    _rule(
        "forward",
        match({"ct": {"key": "state"}}, ["established", "related"], "in"),
        match(meta("iifname"), "@internal", "!="),
        match(meta("oifname"), "@internal", "!="),
        {"accept": None},
    ),
    _rule(
        "forward",
        match(meta("iifname"), "@internal"),
        match(meta("oifname"), "@internal", "!="),
        {"drop": None},
    ),
    _rule(
        "forward",
        match(meta("oifname"), "@internal"),
        match(meta("iifname"), "@internal", "!="),
        {"drop": None},
    ),
    _rule(
        "forward",
        match(meta("oifname"), "@bridges"),
        match({"ct": {"key": "state"}}, ["established", "related"], "in"),
        {"accept": None},
    ),
    _rule(
        "forward",
        match(meta("oifname"), "@bridges"),
        match({"ct": {"key": "status"}}, "dnat", "in"),
        {"accept": None},
    ),
    # With br_netfilter (bridge-nf-call-iptables=1, on by default where the
    # module is loaded), frames between members of one bridge pass here
    # too, as bridge -> same bridge: allowed unless icc is off. Without it
    # they never come here, and the bridge table below keeps icc=false.
    _rule("forward", match(_BRIDGE_PAIR, "@icc_pairs"), {"accept": None}),
    # Docker's routed IPv6 mode (gateway_mode_ipv6=routed): the container's
    # own address is reached without NAT, on its published ports only.
    _rule(
        "forward",
        match(meta("oifname"), "@bridges"),
        match(_to_one_addr("ip6"), "@routed6"),
        {"accept": None},
    ),
    _rule("forward", match(meta("oifname"), "@bridges"), {"drop": None}),
    # CVE-2020-8558: nothing from the wire may reach 127.0.0.0/8, even
    # where route_localnet lets the kernel route it (it is on for our
    # bridges, for 127.0.0.1 publishing), nor come from it: a packet
    # 127.0.0.2 -> 127.0.0.1 would reach the host's loopback services. The
    # replies of 127.0.0.1 publishing are masqueraded to the bridge's
    # address and meet this chain before conntrack turns them back.
    # The address is matched before the interface: this chain sees every
    # packet, and an ifname is costlier to load than an address (measured
    # in the hairpin's profile); a rule's matches all hold or it does nothing.
    *(
        _rule(
            "localnet",
            match(payload("ip", field), {"prefix": {"addr": "127.0.0.0", "len": 8}}),
            match(meta("iifname"), "lo", "!="),
            {"drop": None},
        )
        for field in ("daddr", "saddr")
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
    set masq_nets6 { type ipv6_addr; flags interval; }
    set bridge_nets { type ipv4_addr . ifname; flags interval; }
    set bridge_nets6 { type ipv6_addr . ifname; flags interval; }
    set icc_pairs { type ifname . ifname; }
    set dns_gateways { type ipv4_addr; }
    set dns_gateways6 { type ipv6_addr; }
    set internal { type ifname; }
    set routed6 { type ipv6_addr . inet_proto . inet_service; }
    map publish_any { type inet_proto . inet_service : ipv4_addr . inet_service; }
    map publish_addr { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }
    map publish_any6 { type inet_proto . inet_service : ipv6_addr . inet_service; }
    map publish_addr6 { type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; }
    chain publish {
        ip daddr @dns_gateways udp dport 53 return
        ip daddr @dns_gateways tcp dport 53 return
        ip6 daddr @dns_gateways6 udp dport 53 return
        ip6 daddr @dns_gateways6 tcp dport 53 return
        dnat ip to ip daddr . meta l4proto . th dport map @publish_addr
        dnat ip to meta l4proto . th dport map @publish_any
        dnat ip6 to ip6 daddr . meta l4proto . th dport map @publish_addr6
        dnat ip6 to meta l4proto . th dport map @publish_any6
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
        ip6 saddr ::1 oifname @bridges masquerade
        ct status dnat ip saddr . oifname @bridge_nets masquerade
        ct status dnat ip6 saddr . oifname @bridge_nets6 masquerade
        ip saddr @masq_nets oifname != @bridges masquerade
        ip6 saddr @masq_nets6 oifname != @bridges masquerade
    }
    chain forward {
        type filter hook forward priority 0; policy accept;
        ct state established,related iifname != @internal oifname != @internal accept
        iifname @internal oifname != @internal drop
        oifname @internal iifname != @internal drop
        oifname @bridges ct state established,related accept
        oifname @bridges ct status dnat accept
        iifname . oifname @icc_pairs accept
        oifname @bridges ip6 daddr . meta l4proto . th dport @routed6 accept
        oifname @bridges drop
    }
    chain localnet {
        type filter hook prerouting priority -300; policy accept;
        ip daddr 127.0.0.0/8 iifname != "lo" drop
        ip saddr 127.0.0.0/8 iifname != "lo" drop
    }
}
"""

# Loaded after the inet table, and only once a bridge exists: on this
# kernel a bridge-family base chain made in a namespace that has no bridge
# device yet never sees a frame (measured: its counter stays at 0 while
# traffic flows), so the daemon reloads it after making its bridges.
#
# `ports` is the anti-spoofing guard, on every frame a dockyard endpoint's
# bridge port receives, bridged or bound for the host alike (prerouting,
# before the bridge learns the source MAC and before br_netfilter and
# conntrack): its MAC only, IPv4 from its address only, ARP saying only its
# own address and MAC; IPv6 from its own address or its MAC's link-local
# one (or :: for duplicate address detection of its own), neighbour
# advertisements for those only (NDP as ARP), no router advertisement nor
# redirect; nothing else (an endpoint without IPv6 sends no IPv6 at all).
# Ports that are no dockyard endpoint's are left alone (another tool's
# bridges share these hooks). Three elements per endpoint, seven with IPv6;
# the rules never change.
#
# The first two rules take the frames that are nearly all of its traffic,
# IPv4 and IPv6 other than ICMPv6 from the port's own MAC and address, in
# one rule and two lookups, before the guarded-port check: IPv4 took three
# rules and lookups, IPv6 eight rules. They accept nothing the rules below
# would not: the port has elements, so it is guarded (and an unguarded
# port's frames are accepted below anyway), and its MAC is its own. IPv4
# is accepted there only; ICMPv6 (router advertisements, redirects,
# neighbour advertisements) always goes the long way. Measured: the guard
# was nearly half of nft's time in a hairpin flow's profile
# (bench/throughput.py g.).
BRIDGE_TABLE_TEXT = """
add table bridge dockyard
delete table bridge dockyard
table bridge dockyard {
    set guarded_ports { type ifname; }
    set port_macs { type ifname . ether_addr; }
    set port_addrs { type ifname . ipv4_addr; }
    set port_addrs6 { type ifname . ipv6_addr; }
    set port_targets6 { typeof iifname . @th,64,128; }
    set no_icc_ports { type ifname; }
    chain ports {
        type filter hook prerouting priority -300; policy accept;
        iifname . ip saddr @port_addrs iifname . ether saddr @port_macs accept
        iifname . ip6 saddr @port_addrs6 meta l4proto != ipv6-icmp iifname . ether saddr @port_macs accept
        iifname != @guarded_ports accept
        iifname . ether saddr != @port_macs drop
        arp htype 1 arp ptype ip arp hlen 6 arp plen 4 \\
            iifname . arp saddr ether @port_macs iifname . arp saddr ip @port_addrs accept
        icmpv6 type nd-router-advert drop
        icmpv6 type nd-redirect drop
        icmpv6 type nd-neighbor-advert iifname . @th,64,128 != @port_targets6 drop
        iifname . ip6 saddr @port_addrs6 accept
        ip6 saddr :: icmpv6 type nd-neighbor-solicit iifname . @th,64,128 @port_targets6 accept
        drop
    }
    chain forward {
        type filter hook forward priority 0; policy accept;
        iifname @no_icc_ports drop
    }
}
"""


def _bridge_set(name: str, ctype: str | list[str]) -> Json:
    return {"set": {"family": BRIDGE_FAMILY, "name": name, "table": TABLE, "type": ctype}}


def _bridge_chain(name: str, hook: str, prio: int) -> Json:
    return {
        "chain": {
            "family": BRIDGE_FAMILY,
            "table": TABLE,
            "name": name,
            "type": "filter",
            "hook": hook,
            "prio": prio,
            "policy": "accept",
        }
    }


def _bridge_rule(chain: str, *expr: Json) -> Json:
    return {"rule": {"family": BRIDGE_FAMILY, "table": TABLE, "chain": chain, "expr": list(expr)}}


def _from_port(what: Json) -> Json:
    return {"concat": [meta("iifname"), what]}


# A neighbour solicitation's or advertisement's target address (RFC 4861
# 4.3, 4.4: after type, code, checksum and 32 bits of flags). nft 1.0.6 has
# no name for it (`icmpv6 taddr` came later), hence the raw offset and the
# integer-typed set port_targets6 beside port_addrs6.
_ND_TARGET = {"payload": {"base": "th", "offset": 64, "len": 128}}


# `table bridge dockyard` as `nft -j list` prints it.
BRIDGE_LISTING: tuple[Json, ...] = (
    _bridge_set("guarded_ports", "ifname"),
    _bridge_set("port_macs", ["ifname", "ether_addr"]),
    _bridge_set("port_addrs", ["ifname", "ipv4_addr"]),
    _bridge_set("port_addrs6", ["ifname", "ipv6_addr"]),
    _bridge_set("port_targets6", ["ifname", "integer"]),
    _bridge_set("no_icc_ports", "ifname"),
    _bridge_chain("ports", "prerouting", -300),
    _bridge_chain("forward", "forward", 0),
    # The frames of nearly all traffic, its own MAC and address, in one rule (see above).
    _bridge_rule(
        "ports",
        match(_from_port(payload("ip", "saddr")), "@port_addrs"),
        match(_from_port(payload("ether", "saddr")), "@port_macs"),
        {"accept": None},
    ),
    _bridge_rule(
        "ports",
        match(_from_port(payload("ip6", "saddr")), "@port_addrs6"),
        match(meta("l4proto"), "ipv6-icmp", "!="),
        match(_from_port(payload("ether", "saddr")), "@port_macs"),
        {"accept": None},
    ),
    _bridge_rule("ports", match(meta("iifname"), "@guarded_ports", "!="), {"accept": None}),
    _bridge_rule("ports", match(_from_port(payload("ether", "saddr")), "@port_macs", "!="), {"drop": None}),
    _bridge_rule(
        "ports",
        match(payload("arp", "htype"), 1),
        match(payload("arp", "ptype"), "ip"),
        match(payload("arp", "hlen"), 6),
        match(payload("arp", "plen"), 4),
        match(_from_port(payload("arp", "saddr ether")), "@port_macs"),
        match(_from_port(payload("arp", "saddr ip")), "@port_addrs"),
        {"accept": None},
    ),
    # CVE-2020-13401: a container's router advertisement would give the
    # host and its neighbours addresses and a default route through it.
    _bridge_rule("ports", match(payload("icmpv6", "type"), "nd-router-advert"), {"drop": None}),
    _bridge_rule("ports", match(payload("icmpv6", "type"), "nd-redirect"), {"drop": None}),
    # NDP as ARP: a neighbour advertisement only for the port's own addresses.
    _bridge_rule(
        "ports",
        match(payload("icmpv6", "type"), "nd-neighbor-advert"),
        match(_from_port(_ND_TARGET), "@port_targets6", "!="),
        {"drop": None},
    ),
    _bridge_rule("ports", match(_from_port(payload("ip6", "saddr")), "@port_addrs6"), {"accept": None}),
    # Duplicate address detection: a solicitation from :: for one of its own addresses.
    _bridge_rule(
        "ports",
        match(payload("ip6", "saddr"), "::"),
        match(payload("icmpv6", "type"), "nd-neighbor-solicit"),
        match(_from_port(_ND_TARGET), "@port_targets6"),
        {"accept": None},
    ),
    _bridge_rule("ports", {"drop": None}),
    _bridge_rule("forward", match(meta("iifname"), "@no_icc_ports"), {"drop": None}),
)
TABLES = ((FAMILY, TABLE), (BRIDGE_FAMILY, TABLE))


def delete_table_commands() -> list[Json]:
    out: list[Json] = []
    for family, name in TABLES:
        table = {"table": {"family": family, "name": name}}
        out += [{"add": table}, {"delete": table}]
    return out


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

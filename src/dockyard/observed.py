"""What dockyard reads back from the kernel, as frozen dataclasses.

A leaf, like model.py: kernel/ produces these (kernel/topology.py), policy/
reasons over them (policy/explain, policy/graph.py), and the engine joins
them with the records. model.py holds what dockyard intends; this module
holds what the kernel says is there, so that the two can be compared.
Nothing here is parsed from user input.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from dockyard.model import Protocol


@dataclass(frozen=True)
class Vxlan:
    """A VXLAN device's own settings (IFLA_VXLAN_*)."""

    vni: int
    port: int = 4789
    local: ipaddress.IPv4Address | None = None
    remote: ipaddress.IPv4Address | None = None  # a fixed peer (or group); None when learnt
    device: int | None = None  # the index of the link it sends through
    # The VTEPs its forwarding entries send to (an overlay's other hosts), from `bridge fdb`.
    peers: tuple[ipaddress.IPv4Address, ...] = ()


@dataclass(frozen=True)
class Link:
    """One link of a network namespace, as `ip -d link` shows it."""

    index: int
    name: str
    kind: str  # IFLA_INFO_KIND: "bridge", "veth", "vxlan", ... "" for loopback and physical links
    mac: str
    up: bool
    mtu: int
    master: int | None = None  # the index of its bridge, for a bridge port
    # A veth's peer: its index in the peer's namespace (IFLA_LINK), and whether that
    # namespace is another one (IFLA_LINK_NETNSID present).
    peer_index: int | None = None
    peer_elsewhere: bool = False
    alias: str = ""
    addresses: tuple[ipaddress.IPv4Interface, ...] = ()
    addresses6: tuple[ipaddress.IPv6Interface, ...] = ()  # link-local ones included
    hairpin: bool | None = None  # a bridge port's hairpin mode; None for other links
    vxlan: Vxlan | None = None


@dataclass(frozen=True)
class Route:
    """An IPv4 route of the main table."""

    dst: ipaddress.IPv4Network
    dev: str
    gateway: ipaddress.IPv4Address | None = None
    prefsrc: ipaddress.IPv4Address | None = None


@dataclass(frozen=True)
class Route6:
    """An IPv6 route of the main table."""

    dst: ipaddress.IPv6Network
    dev: str
    gateway: ipaddress.IPv6Address | None = None
    prefsrc: ipaddress.IPv6Address | None = None


@dataclass(frozen=True)
class Socket:
    """A socket waiting for traffic: a TCP or SCTP listener, or a bound UDP socket."""

    proto: Protocol
    address: ipaddress.IPv4Address | ipaddress.IPv6Address  # 0.0.0.0 or :: for any
    port: int


@dataclass(frozen=True)
class Namespace:
    """One network namespace: its identity, links, routes and waiting sockets."""

    inode: int  # the nsfs inode: `net:[INODE]` in /proc/PID/ns/net
    links: tuple[Link, ...] = ()
    routes: tuple[Route, ...] = ()
    sockets: tuple[Socket, ...] = ()
    # net.ipv4.ip_forward, and per interface net.ipv4.conf.IF.route_localnet where read.
    forwarding: bool = False
    route_localnet: tuple[str, ...] = ()
    # br_netfilter: frames bridged port to port also pass the inet hooks
    # (net.bridge.bridge-nf-call-iptables=1 in this namespace).
    bridge_nf: bool = False
    # IPv6's twins: the main table's IPv6 routes, net.ipv6.conf.all.forwarding and
    # net.bridge.bridge-nf-call-ip6tables.
    routes6: tuple[Route6, ...] = ()
    forwarding6: bool = False
    bridge_nf6: bool = False

    def link(self, name: str) -> Link | None:
        return next((lk for lk in self.links if lk.name == name), None)


@dataclass(frozen=True)
class Tables:
    """dockyard's two nftables tables as `nft -j list table` gives them (None: absent),
    and the other tables of the namespace, which see the same packets."""

    inet: list[dict] | None = None
    bridge: list[dict] | None = None
    others: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ConntrackEntry:
    """One conntrack event or entry: the original and the reply direction."""

    event: str  # NEW, UPDATE, DESTROY, or "" for a listed entry
    proto: str
    state: str  # TCP's state (SYN_SENT, ESTABLISHED, ...) or ""
    orig_src: str
    orig_dst: str
    orig_sport: int
    orig_dport: int
    reply_src: str
    reply_dst: str
    reply_sport: int
    reply_dport: int
    flags: tuple[str, ...] = field(default_factory=tuple)  # [UNREPLIED], [ASSURED]

    @property
    def dnat(self) -> bool:
        """The reply comes from elsewhere than the original went: destination NAT."""
        return (self.reply_src, self.reply_sport) != (self.orig_dst, self.orig_dport)

    @property
    def snat(self) -> bool:
        return (self.reply_dst, self.reply_dport) != (self.orig_src, self.orig_sport)


@dataclass(frozen=True)
class TraceLine:
    """One line of `nft monitor trace`: a packet met a chain, a rule or a policy."""

    trace_id: str
    family: str
    table: str
    chain: str
    kind: str  # "packet", "rule", "policy", "verdict"
    text: str  # the rule, the packet's fields, or the verdict
    verdict: str = ""  # "accept", "drop", "continue", "jump publish", ...

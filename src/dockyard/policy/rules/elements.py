"""Set and map elements: what varies with networks, endpoints and ports, as data.

Pure. Every change to the tables is an element add or delete, whatever the
count; this module renders those commands, each element marked with its
dockyard root's owner mark, and reads elements back from `nft -j list`.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from dockyard.model import Endpoint, Network, PortBinding, Protocol
from dockyard.policy.rules.expr import Json
from dockyard.policy.rules.table import BRIDGE_FAMILY, FAMILY, TABLE

BRIDGE_SETS_NAMES = ("guarded_ports", "port_macs", "port_addrs", "no_icc_ports")
MAPS = ("publish_any", "publish_addr")

PublishAnyKey = tuple[Protocol, int]
PublishAddrKey = tuple[ipaddress.IPv4Address, Protocol, int]
Target = tuple[ipaddress.IPv4Address, int]


def owner_mark(root: str) -> str:
    """The comment that marks a root's elements and bridges: stable, short, not a path."""
    return "dy:" + hashlib.sha256(root.encode()).hexdigest()[:12]


@dataclass
class Elements:
    """Set and map elements: what varies with networks, endpoints and ports.

    Every field is a set (of set elements) or a dict (map key -> value), named
    after its set or map.
    """

    bridges: set[str] = field(default_factory=set)
    masq_nets: set[ipaddress.IPv4Network] = field(default_factory=set)
    bridge_nets: set[tuple[ipaddress.IPv4Network, str]] = field(default_factory=set)
    icc_pairs: set[tuple[str, str]] = field(default_factory=set)
    dns_gateways: set[ipaddress.IPv4Address] = field(default_factory=set)
    internal: set[str] = field(default_factory=set)
    publish_any: dict[PublishAnyKey, Target] = field(default_factory=dict)
    publish_addr: dict[PublishAddrKey, Target] = field(default_factory=dict)
    guarded_ports: set[str] = field(default_factory=set)
    port_macs: set[tuple[str, str]] = field(default_factory=set)
    port_addrs: set[tuple[str, ipaddress.IPv4Address]] = field(default_factory=set)
    no_icc_ports: set[str] = field(default_factory=set)

    def _parts(self) -> list[tuple[str, Any]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]

    def update(self, other: Elements) -> None:
        for name, mine in self._parts():
            mine.update(getattr(other, name))

    def minus(self, other: Elements) -> Elements:
        """What is in self and not (the same) in other."""
        out = Elements()
        for name, mine in self._parts():
            theirs = getattr(other, name)
            if isinstance(mine, dict):
                setattr(out, name, {k: v for k, v in mine.items() if theirs.get(k) != v})
            else:
                setattr(out, name, mine - theirs)
        return out

    def common(self, other: Elements) -> Elements:
        """What is in both (map entries only where the value matches too)."""
        out = Elements()
        for name, mine in self._parts():
            theirs = getattr(other, name)
            if isinstance(mine, dict):
                setattr(out, name, {k: v for k, v in mine.items() if theirs.get(k) == v})
            else:
                setattr(out, name, mine & theirs)
        return out

    def empty(self) -> bool:
        return not any(part for _, part in self._parts())

    def count(self) -> int:
        return sum(len(part) for _, part in self._parts())


def endpoint_elements(endpoint: Endpoint, icc: bool) -> Elements:
    """An endpoint's own elements: its bridge port's guard (the port, its MAC, its
    address), and the port's isolation when its network forbids icc."""
    port = endpoint.host_ifname
    return Elements(
        guarded_ports={port},
        port_macs={(port, endpoint.mac.lower())},
        port_addrs={(port, endpoint.address.ip)},
        no_icc_ports=set() if icc else {port},
    )


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
    # A port range repeats a few addresses and protocols a thousand times: each
    # is turned into text once.
    texts: dict[object, str] = {}

    def text(value: object) -> str:
        found = texts.get(value)
        if found is None:
            found = texts[value] = str(value)
        return found

    if el.publish_any:
        out["publish_any"] = [
            [{"concat": [text(proto), port]}, {"concat": [text(addr), tport]}]
            for (proto, port), (addr, tport) in sorted(el.publish_any.items())
        ]
    if el.publish_addr:
        out["publish_addr"] = [
            [{"concat": [text(hip), text(proto), port]}, {"concat": [text(addr), tport]}]
            for (hip, proto, port), (addr, tport) in sorted(el.publish_addr.items())
        ]
    if el.guarded_ports:
        out["guarded_ports"] = sorted(el.guarded_ports)
    if el.port_macs:
        out["port_macs"] = [{"concat": [port, mac]} for port, mac in sorted(el.port_macs)]
    if el.port_addrs:
        out["port_addrs"] = [{"concat": [port, str(addr)]} for port, addr in sorted(el.port_addrs)]
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
            elif name == "guarded_ports":
                el.guarded_ports.add(item)
            elif name == "port_macs":
                port, mac = item["concat"]
                el.port_macs.add((port, mac))
            elif name == "port_addrs":
                port, addr = item["concat"]
                el.port_addrs.add((port, ipaddress.IPv4Address(addr)))
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

"""Set and map elements: what varies with networks, endpoints and ports, as data.

Pure. Every change to the tables is an element add or delete, whatever the
count; this module renders those commands, each element marked with its
dockyard root's owner mark, and reads elements back from `nft -j list`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from dockyard import digests
from dockyard.errors import InvalidArgument
from dockyard.model import Endpoint, Network, PortBinding, Protocol
from dockyard.policy.rules.expr import Json
from dockyard.policy.rules.table import BRIDGE_FAMILY, FAMILY, TABLE

BRIDGE_SETS_NAMES = (
    "guarded_ports",
    "port_macs",
    "port_addrs",
    "port_addrs6",
    "port_targets6",
    "no_icc_ports",
)
MAPS = ("publish_any", "publish_addr", "publish_any6", "publish_addr6")

PublishAnyKey = tuple[Protocol, int]
PublishAddrKey = tuple[ipaddress.IPv4Address, Protocol, int]
PublishAddr6Key = tuple[ipaddress.IPv6Address, Protocol, int]
Target = tuple[ipaddress.IPv4Address, int]
Target6 = tuple[ipaddress.IPv6Address, int]

# Docker's option for how an IPv6 network meets the outside: "nat" (NAT66,
# the default) or "routed" (the containers' own addresses, no NAT, only
# published ports open). Docker 28's "nat-unprotected" and "isolated" are
# not implemented and are refused by name.
GATEWAY_MODE_IPV6 = "com.docker.network.bridge.gateway_mode_ipv6"
GATEWAY_MODES = ("nat", "routed")
ANY4 = ipaddress.IPv4Address("0.0.0.0")
ANY6 = ipaddress.IPv6Address("::")


def owner_mark(root: str) -> str:
    """The comment that marks a root's elements and bridges: stable, short, not a path."""
    return "dy:" + digests.sha256(root.encode()).hexdigest()[:12]


@dataclass
class Elements:
    """Set and map elements: what varies with networks, endpoints and ports.

    Every field is a set (of set elements) or a dict (map key -> value), named
    after its set or map.
    """

    bridges: set[str] = field(default_factory=set)
    masq_nets: set[ipaddress.IPv4Network] = field(default_factory=set)
    masq_nets6: set[ipaddress.IPv6Network] = field(default_factory=set)
    bridge_nets: set[tuple[ipaddress.IPv4Network, str]] = field(default_factory=set)
    bridge_nets6: set[tuple[ipaddress.IPv6Network, str]] = field(default_factory=set)
    icc_pairs: set[tuple[str, str]] = field(default_factory=set)
    dns_gateways: set[ipaddress.IPv4Address] = field(default_factory=set)
    dns_gateways6: set[ipaddress.IPv6Address] = field(default_factory=set)
    internal: set[str] = field(default_factory=set)
    # Routed IPv6: (container address, protocol, container port) open from outside.
    routed6: set[tuple[ipaddress.IPv6Address, Protocol, int]] = field(default_factory=set)
    publish_any: dict[PublishAnyKey, Target] = field(default_factory=dict)
    publish_addr: dict[PublishAddrKey, Target] = field(default_factory=dict)
    publish_any6: dict[PublishAnyKey, Target6] = field(default_factory=dict)
    publish_addr6: dict[PublishAddr6Key, Target6] = field(default_factory=dict)
    guarded_ports: set[str] = field(default_factory=set)
    port_macs: set[tuple[str, str]] = field(default_factory=set)
    port_addrs: set[tuple[str, ipaddress.IPv4Address]] = field(default_factory=set)
    port_addrs6: set[tuple[str, ipaddress.IPv6Address]] = field(default_factory=set)
    # The same pairs as port_addrs6, for the NDP target match (an integer-typed set).
    port_targets6: set[tuple[str, ipaddress.IPv6Address]] = field(default_factory=set)
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


def link_local(mac: str) -> ipaddress.IPv6Address:
    """The fe80::/64 address a kernel derives from a MAC (modified EUI-64, RFC 4291 appendix A)."""
    octets = bytes.fromhex(mac.replace(":", ""))
    eui = bytes([octets[0] ^ 0x02]) + octets[1:3] + b"\xff\xfe" + octets[3:6]
    return ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + eui)


def endpoint_elements(endpoint: Endpoint, icc: bool) -> Elements:
    """An endpoint's own elements: its bridge port's guard (the port, its MAC, its
    addresses: IPv6 also its link-local one), and the port's isolation when its
    network forbids icc. An endpoint without IPv6 may send none."""
    port = endpoint.host_ifname
    el = Elements(
        guarded_ports={port},
        port_macs={(port, endpoint.mac.lower())},
        no_icc_ports=set() if icc else {port},
    )
    if endpoint.address is not None:
        el.port_addrs.add((port, endpoint.address.ip))
    if endpoint.address6 is not None:
        own = {(port, endpoint.address6.ip), (port, link_local(endpoint.mac))}
        el.port_addrs6 |= own
        el.port_targets6 |= own
    return el


def check_gateway_mode6(options: Iterable[tuple[str, str]]) -> None:
    """Refuse a gateway_mode_ipv6 this engine does not implement, by name."""
    for key, value in options:
        if key == GATEWAY_MODE_IPV6 and value not in GATEWAY_MODES:
            raise InvalidArgument(
                f"invalid value {value!r} for option {key}: use nat or routed"
                " (nat-unprotected and isolated are not supported)"
            )


def routed6(network: Network) -> bool:
    """Docker's routed IPv6 mode: the network's IPv6 addresses are reached without NAT."""
    return dict(network.options).get(GATEWAY_MODE_IPV6) == "routed"


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
    """A bridge network's elements, per family it has; user networks also get their
    resolver's gateways. A routed IPv6 subnet is not masqueraded (no NAT66)."""
    el = Elements(bridges={network.bridge})
    if network.icc:
        el.icc_pairs.add((network.bridge, network.bridge))
    if network.internal:
        el.internal.add(network.bridge)
    nat = network.masquerade and not network.internal
    user = network.name != "bridge"
    # Each subnet of a family alike (a network's later subnets are as much its own as its first).
    for config in network.subnet_configs(4):
        subnet, gateway = config.subnet, config.gateway
        assert isinstance(subnet, ipaddress.IPv4Network)
        el.update(network_elements(network.bridge, subnet, network.masquerade, network.internal, network.icc))
        if user and isinstance(gateway, ipaddress.IPv4Address):
            el.dns_gateways.add(gateway)
    for config in network.subnet_configs(6) if network.enable_ipv6 else ():
        subnet6, gateway6 = config.subnet, config.gateway
        assert isinstance(subnet6, ipaddress.IPv6Network)
        el.bridge_nets6.add((subnet6, network.bridge))
        if nat and not routed6(network):
            el.masq_nets6.add(subnet6)
        if user and isinstance(gateway6, ipaddress.IPv6Address):
            el.dns_gateways6.add(gateway6)
    return el


def publish_elements(
    address: ipaddress.IPv4Address | None,
    bindings: Iterable[PortBinding],
    address6: ipaddress.IPv6Address | None = None,
    routed: bool = False,
) -> Elements:
    """One element per binding and family: a binding on every address (host_ip
    None) is published on each family the endpoint has, 0.0.0.0 on IPv4 only,
    :: on IPv6 only, one address on its own family. On a routed IPv6 network
    the IPv6 half opens the container's own port instead of a DNAT."""
    el = Elements()
    for b in bindings:
        hip = b.host_ip
        if address is not None and (hip is None or hip.version == 4):
            target = (address, b.container_port)
            if hip is None or hip == ANY4:
                el.publish_any[(b.proto, b.host_port)] = target
            else:
                assert isinstance(hip, ipaddress.IPv4Address)
                el.publish_addr[(hip, b.proto, b.host_port)] = target
        if address6 is not None and (hip is None or hip.version == 6):
            target6 = (address6, b.container_port)
            if routed:
                el.routed6.add((address6, b.proto, b.container_port))
            elif hip is None or hip == ANY6:
                el.publish_any6[(b.proto, b.host_port)] = target6
            else:
                assert isinstance(hip, ipaddress.IPv6Address)
                el.publish_addr6[(hip, b.proto, b.host_port)] = target6
    return el


def endpoint_publish_elements(
    network: Network, endpoint: Endpoint, bindings: Iterable[PortBinding]
) -> Elements:
    """publish_elements for an endpoint on its network: its addresses, the network's mode."""
    return publish_elements(
        endpoint.address.ip if endpoint.address is not None else None,
        bindings,
        endpoint.address6.ip if endpoint.address6 is not None else None,
        routed6(network),
    )


def _elem_json(el: Elements) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    if el.bridges:
        out["bridges"] = sorted(el.bridges)
    _nets_json(out, "", el.masq_nets, el.bridge_nets, el.dns_gateways)
    _nets_json(out, "6", el.masq_nets6, el.bridge_nets6, el.dns_gateways6)
    if el.icc_pairs:
        out["icc_pairs"] = [{"concat": [a, b]} for a, b in sorted(el.icc_pairs)]
    if el.internal:
        out["internal"] = sorted(el.internal)
    if el.routed6:
        out["routed6"] = [{"concat": [str(a), str(p), port]} for a, p, port in sorted(el.routed6)]
    # A port range repeats a few addresses and protocols a thousand times: each
    # is turned into text once.
    texts: dict[object, str] = {}

    def text(value: object) -> str:
        found = texts.get(value)
        if found is None:
            found = texts[value] = str(value)
        return found

    for six, any_map, addr_map in (
        ("", el.publish_any, el.publish_addr),
        ("6", el.publish_any6, el.publish_addr6),
    ):
        if any_map:
            out["publish_any" + six] = [
                [{"concat": [text(proto), port]}, {"concat": [text(addr), tport]}]
                for (proto, port), (addr, tport) in sorted(any_map.items())  # type: ignore[attr-defined]
            ]
        if addr_map:
            out["publish_addr" + six] = [
                [{"concat": [text(hip), text(proto), port]}, {"concat": [text(addr), tport]}]
                for (hip, proto, port), (addr, tport) in sorted(addr_map.items())  # type: ignore[attr-defined]
            ]
    if el.guarded_ports:
        out["guarded_ports"] = sorted(el.guarded_ports)
    if el.port_macs:
        out["port_macs"] = [{"concat": [port, mac]} for port, mac in sorted(el.port_macs)]
    if el.port_addrs:
        out["port_addrs"] = [{"concat": [port, str(addr)]} for port, addr in sorted(el.port_addrs)]
    if el.port_addrs6:
        out["port_addrs6"] = [{"concat": [port, str(addr)]} for port, addr in sorted(el.port_addrs6)]
    if el.port_targets6:
        out["port_targets6"] = [
            {"concat": [port, f"0x{int(addr):032x}"]} for port, addr in sorted(el.port_targets6)
        ]
    if el.no_icc_ports:
        out["no_icc_ports"] = sorted(el.no_icc_ports)
    return out


def _prefix(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Json:
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _nets_json(out: dict[str, list[Any]], six: str, nets: Any, bridge_nets: Any, gateways: Any) -> None:
    """masq_nets, bridge_nets and dns_gateways of one family (six: "" or "6")."""
    if nets:
        out["masq_nets" + six] = [_prefix(n) for n in sorted(nets)]
    if bridge_nets:
        out["bridge_nets" + six] = [{"concat": [_prefix(n), b]} for n, b in sorted(bridge_nets)]
    if gateways:
        out["dns_gateways" + six] = [str(a) for a in sorted(gateways)]


def _net(item: Any) -> Any:
    """An interval set's element as listed: a prefix, or a lone address (a /32 or /128)."""
    if isinstance(item, dict):
        p = item["prefix"]
        return ipaddress.ip_network(f"{p['addr']}/{p['len']}")
    return ipaddress.ip_network(item)


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
            _parse_item(el, name, item)
    return el


def _parse_item(el: Elements, name: str, item: Any) -> None:
    """One listed element into its field of el (names not ours are left out)."""
    if name in ("bridges", "no_icc_ports", "guarded_ports", "internal"):
        getattr(el, name).add(item)
    elif name == "port_macs":
        port, mac = item["concat"]
        el.port_macs.add((port, mac))
    elif name == "port_addrs":
        port, addr = item["concat"]
        el.port_addrs.add((port, ipaddress.IPv4Address(addr)))
    elif name == "port_addrs6":
        port, addr = item["concat"]
        el.port_addrs6.add((port, ipaddress.IPv6Address(addr)))
    elif name == "port_targets6":
        port, number = item["concat"]
        el.port_targets6.add((port, ipaddress.IPv6Address(int(str(number), 0))))
    elif name in ("masq_nets", "masq_nets6"):
        getattr(el, name).add(_net(item))
    elif name in ("dns_gateways", "dns_gateways6"):
        getattr(el, name).add(ipaddress.ip_address(item))
    elif name == "icc_pairs":
        a, b = item["concat"]
        el.icc_pairs.add((a, b))
    elif name in ("bridge_nets", "bridge_nets6"):
        net, b = item["concat"]
        getattr(el, name).add((_net(net), b))
    elif name == "routed6":
        addr, proto, port = item["concat"]
        el.routed6.add((ipaddress.IPv6Address(addr), Protocol(proto), int(port)))
    elif name in ("publish_any", "publish_any6"):
        (proto, port), (addr, tport) = item[0]["concat"], item[1]["concat"]
        getattr(el, name)[(Protocol(proto), int(port))] = (ipaddress.ip_address(addr), int(tport))
    elif name in ("publish_addr", "publish_addr6"):
        (hip, proto, port), (addr, tport) = item[0]["concat"], item[1]["concat"]
        getattr(el, name)[(ipaddress.ip_address(hip), Protocol(proto), int(port))] = (
            ipaddress.ip_address(addr),
            int(tport),
        )

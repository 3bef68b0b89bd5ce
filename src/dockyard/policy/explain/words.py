"""How explain names kernel objects: as `nft list` and `ip link` would show them. Pure."""

from __future__ import annotations

import ipaddress

from dockyard.model import Protocol
from dockyard.observed import Link, Namespace, Route

INET = "inet dockyard"
BRIDGE = "bridge dockyard"


def element(table: str, kind: str, name: str, value: str) -> str:
    return f"{table} {kind} {name} {{ {value} }}"


def set_element(name: str, value: object, table: str = INET) -> str:
    return element(table, "set", name, str(value))


def publish_any(proto: Protocol, port: int, target: tuple[ipaddress.IPv4Address, int]) -> str:
    return element(INET, "map", "publish_any", f"{proto} . {port} : {target[0]} . {target[1]}")


def publish_addr(
    host_ip: ipaddress.IPv4Address, proto: Protocol, port: int, target: tuple[ipaddress.IPv4Address, int]
) -> str:
    return element(INET, "map", "publish_addr", f"{host_ip} . {proto} . {port} : {target[0]} . {target[1]}")


def publish_any6(proto: Protocol, port: int, target: tuple[ipaddress.IPv6Address, int]) -> str:
    return element(INET, "map", "publish_any6", f"{proto} . {port} : {target[0]} . {target[1]}")


def publish_addr6(
    host_ip: ipaddress.IPv6Address, proto: Protocol, port: int, target: tuple[ipaddress.IPv6Address, int]
) -> str:
    return element(INET, "map", "publish_addr6", f"{host_ip} . {proto} . {port} : {target[0]} . {target[1]}")


def routed6(address: ipaddress.IPv6Address, proto: Protocol, port: int) -> str:
    return set_element("routed6", f"{address} . {proto} . {port}")


def rule(table: str, chain: str, text: str) -> str:
    return f"{table} {chain}: `{text}`"


def link(lk: Link) -> str:
    return f"link {lk.name} (index {lk.index})"


def addresses(lk: Link) -> str:
    """Its IPv4 addresses, then its global IPv6 ones (a link-local address is every link's)."""
    six = [a for a in lk.addresses6 if not a.ip.is_link_local]
    return ", ".join(str(a) for a in (*lk.addresses, *six)) or "no IPv4 address"


def route_text(r: Route) -> str:
    dst = "default" if r.dst.prefixlen == 0 else str(r.dst)
    via = f" via {r.gateway}" if r.gateway else ""
    return f"{dst}{via} dev {r.dev}"


def lookup(ns: Namespace, addr: ipaddress.IPv4Address) -> Route | None:
    """The main table's route to addr, by longest prefix (what `ip route get` finds, without rules)."""
    best: Route | None = None
    for r in ns.routes:
        if addr in r.dst and (best is None or r.dst.prefixlen > best.dst.prefixlen):
            best = r
    return best


def local_addresses(ns: Namespace) -> set[ipaddress.IPv4Address]:
    """Every address of the namespace (what `fib daddr type local` matches), 127.0.0.0/8 aside."""
    return {a.ip for lk in ns.links for a in lk.addresses}


def is_local(ns: Namespace, addr: ipaddress.IPv4Address) -> bool:
    return addr.is_loopback or addr in local_addresses(ns)


def owner_of(ns: Namespace, addr: ipaddress.IPv4Address) -> Link | None:
    return next((lk for lk in ns.links for a in lk.addresses if a.ip == addr), None)

"""How explain names kernel objects: as `nft list` and `ip link` would show them. Pure."""

from __future__ import annotations

import ipaddress

from dockyard.model import Protocol
from dockyard.observed import Link, Namespace, Route, Route6

Addr = ipaddress.IPv4Address | ipaddress.IPv6Address

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


def route_text(r: Route | Route6) -> str:
    dst = "default" if r.dst.prefixlen == 0 else str(r.dst)
    via = f" via {r.gateway}" if r.gateway else ""
    return f"{dst}{via} dev {r.dev}"


def lookup(ns: Namespace, addr: Addr) -> Route | Route6 | None:
    """The main table's route to addr, by longest prefix (what `ip route get` finds, without
    rules), in addr's family's table."""
    best: Route | Route6 | None = None
    routes: tuple[Route | Route6, ...] = ns.routes6 if addr.version == 6 else ns.routes
    for r in routes:
        if addr in r.dst and (best is None or r.dst.prefixlen > best.dst.prefixlen):
            best = r
    return best


def local_addresses(ns: Namespace) -> set[ipaddress.IPv4Address]:
    """Every address of the namespace (what `fib daddr type local` matches), 127.0.0.0/8 aside."""
    return {a.ip for lk in ns.links for a in lk.addresses}


def local_addresses6(ns: Namespace) -> set[ipaddress.IPv6Address]:
    """local_addresses' IPv6 twin (link-local ones included), ::1 aside."""
    return {a.ip for lk in ns.links for a in lk.addresses6}


def is_local(ns: Namespace, addr: Addr) -> bool:
    if addr.version == 6:
        return addr.is_loopback or addr in local_addresses6(ns)
    return addr.is_loopback or addr in local_addresses(ns)


def owner_of(ns: Namespace, addr: Addr) -> Link | None:
    return next((lk for lk in ns.links if addr in _ips(lk)), None)


def _ips(lk: Link) -> set[Addr]:
    return {a.ip for a in lk.addresses} | {a.ip for a in lk.addresses6}

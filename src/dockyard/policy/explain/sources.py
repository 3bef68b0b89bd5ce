"""Where explain's packets come from and go to: sources by address, ways in to a port. Pure.

A source is understood from its address (resolve_source): 127.0.0.0/8
(the host's loopback), an address of the host, a running container's
address, another address of a dockyard subnet (a device on that bridge),
or anything else: outside, arriving on the interface the host routes it
to. The ways in to a container's port (destinations) are each published
host port that DNATs to it, by the kernel's map elements, on the address
that source would use, and the container's own address. reach.py walks
each pair.

Both families: an IPv6 source (::1, the host's IPv6 address, a container's
IPv6 address, the IPv6 outside) reaches the container's IPv6 address, by
the IPv6 maps (publish_any6, publish_addr6) and directly; an IPv4 source
its IPv4 address. A container without IPv6 has no IPv6 way in.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from dockyard.model import Protocol
from dockyard.observed import Link, Namespace, Route, Route6
from dockyard.policy.explain import words
from dockyard.policy.explain.report import Member, View

ANY = ipaddress.IPv4Address("0.0.0.0")
LOOPBACK = ipaddress.IPv4Address("127.0.0.1")
ANY6 = ipaddress.IPv6Address("::")
LOOPBACK6 = ipaddress.IPv6Address("::1")
Addr = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Source:
    kind: str  # outside, host, loopback, container, network
    address: Addr
    label: str
    member: Member | None = None
    iif: str = ""  # the host interface it arrives on (outside, container, network)
    bridge: str = ""  # its bridge (container, network)


@dataclass(frozen=True)
class Destination:
    address: Addr
    port: int
    proto: Protocol
    how: str  # "published", "direct"
    element: str = ""


def resolve_source(view: View, addr: Addr) -> Source:
    host = view.host
    if addr.is_loopback:
        return Source("loopback", addr, f"{addr} (the host's loopback)")
    if words.is_local(host, addr):
        lk = words.owner_of(host, addr)
        on = f" on {lk.name}" if lk else ""
        return Source("host", addr, f"{addr} (the host itself{on})")
    for m in view.members:
        if addr in (m.address, m.address6):
            return Source(
                "container",
                addr,
                f"{addr} (container {m.name} on {m.network.name})",
                member=m,
                iif=m.network.bridge,
                bridge=m.network.bridge,
            )
    for n in view.networks:
        if n.config_of(addr) is not None and n.bridge:
            return Source(
                "network",
                addr,
                f"{addr} (a device on {n.name}'s bridge {n.bridge}, no container of the records)",
                iif=n.bridge,
                bridge=n.bridge,
            )
    r = words.lookup(host, addr)
    iif = r.dev if r else ""
    where = f"arrives on {iif}" if iif else "the host has no route back to it"
    return Source("outside", addr, f"{addr} (outside, {where})", iif=iif)


def default_sources(view: View, target: Member) -> list[Addr]:
    """Sources worth asking about: outside (the host's default gateway), the host, its
    loopback, and every running container's address (the target's own too: hairpin); for a
    target with IPv6, each one's IPv6 twin too."""
    out: list[Addr] = []
    for version, loopback in ((4, LOOPBACK), (6, LOOPBACK6)):
        if (target.address6 if version == 6 else target.address) is None:
            continue  # a family the target lacks (no IPv6, or IPv6-only): no way in by it
        routes = view.host.routes6 if version == 6 else view.host.routes
        default = next((r for r in routes if r.dst.prefixlen == 0 and r.gateway), None)
        if default is not None and default.gateway is not None:
            out.append(default.gateway)
        primary = host_address(view.host, version=version)
        if primary is not None:
            out.append(primary)
        out.append(loopback)
        for m in view.members:
            own = m.address6 if version == 6 else m.address
            if own is not None and own not in out:
                out.append(own)
    return out


def host_address(host: Namespace, on: str = "", version: int = 4) -> Addr | None:
    """The host's address on `on`, else on the default route's interface, else any not on lo;
    of the family `version` (a global IPv6 address: a link-local one is no way in)."""

    def of(lk: Link | None) -> Addr | None:
        if lk is None:
            return None
        if version == 6:
            return next((a.ip for a in lk.addresses6 if not a.ip.is_link_local), None)
        return lk.addresses[0].ip if lk.addresses else None

    if on and (found := of(host.link(on))) is not None:
        return found
    routes: tuple[Route | Route6, ...] = host.routes6 if version == 6 else host.routes
    default = next((r for r in routes if r.dst.prefixlen == 0), None)
    if default is not None:
        if default.prefsrc:
            return default.prefsrc
        if (found := of(host.link(default.dev))) is not None:
            return found
    for lk in host.links:
        if lk.name != "lo" and (found := of(lk)) is not None and not found.is_loopback:
            return found
    return None


def destinations(view: View, target: Member, port: int, proto: Protocol, source: Source) -> list[Destination]:
    """Where this source would send to reach the container's port: each published host
    port of it (by the kernel's elements of the source's family) on the address the source
    would use, and the container's own address of that family."""
    version = source.address.version
    address: Addr | None = target.address6 if version == 6 else target.address
    if address is None:
        return []
    el = view.elements
    any_map: dict[Any, Any] = el.publish_any6 if version == 6 else el.publish_any
    addr_map: dict[Any, Any] = el.publish_addr6 if version == 6 else el.publish_addr
    say_any = words.publish_any6 if version == 6 else words.publish_any
    say_addr = words.publish_addr6 if version == 6 else words.publish_addr
    order = str if version == 6 else None
    out: list[Destination] = []
    want = (address, port)
    for (p, hp), t in sorted(any_map.items(), key=order):
        if p is proto and t == want:
            dst: Addr | None = LOOPBACK6 if version == 6 else LOOPBACK
            if source.kind != "loopback":
                dst = host_address(view.host, source.iif if source.kind == "outside" else "", version=version)
            if dst is not None:
                out.append(Destination(dst, hp, p, "published", say_any(p, hp, t)))
    for (hip, p, hp), t in sorted(addr_map.items(), key=order):
        if p is proto and t == want:
            out.append(Destination(hip, hp, p, "published", say_addr(hip, p, hp, t)))
    out.append(Destination(address, port, proto, "direct"))
    return out

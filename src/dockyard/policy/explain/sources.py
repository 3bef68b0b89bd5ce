"""Where explain's packets come from and go to: sources by address, ways in to a port. Pure.

A source is understood from its address (resolve_source): 127.0.0.0/8
(the host's loopback), an address of the host, a running container's
address, another address of a dockyard subnet (a device on that bridge),
or anything else: outside, arriving on the interface the host routes it
to. The ways in to a container's port (destinations) are each published
host port that DNATs to it, by the kernel's map elements, on the address
that source would use, and the container's own address. reach.py walks
each pair.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from dockyard.model import Protocol
from dockyard.observed import Namespace
from dockyard.policy.explain import words
from dockyard.policy.explain.report import Member, View

ANY = ipaddress.IPv4Address("0.0.0.0")
LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


@dataclass(frozen=True)
class Source:
    kind: str  # outside, host, loopback, container, network
    address: ipaddress.IPv4Address
    label: str
    member: Member | None = None
    iif: str = ""  # the host interface it arrives on (outside, container, network)
    bridge: str = ""  # its bridge (container, network)


@dataclass(frozen=True)
class Destination:
    address: ipaddress.IPv4Address
    port: int
    proto: Protocol
    how: str  # "published", "direct"
    element: str = ""


def resolve_source(view: View, addr: ipaddress.IPv4Address) -> Source:
    host = view.host
    if addr.is_loopback:
        return Source("loopback", addr, f"{addr} (the host's loopback)")
    if addr in words.local_addresses(host):
        lk = words.owner_of(host, addr)
        on = f" on {lk.name}" if lk else ""
        return Source("host", addr, f"{addr} (the host itself{on})")
    for m in view.members:
        if m.address == addr:
            return Source(
                "container",
                addr,
                f"{addr} (container {m.name} on {m.network.name})",
                member=m,
                iif=m.network.bridge,
                bridge=m.network.bridge,
            )
    for n in view.networks:
        if n.subnet is not None and addr in n.subnet and n.bridge:
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


def default_sources(view: View, target: Member) -> list[ipaddress.IPv4Address]:
    """Sources worth asking about: outside (the host's default gateway), the host, its
    loopback, and every running container's address (the target's own too: hairpin)."""
    out: list[ipaddress.IPv4Address] = []
    default = next((r for r in view.host.routes if r.dst.prefixlen == 0 and r.gateway), None)
    if default is not None and default.gateway is not None:
        out.append(default.gateway)
    primary = host_address(view.host)
    if primary is not None:
        out.append(primary)
    out.append(LOOPBACK)
    for m in view.members:
        if m.address not in out:
            out.append(m.address)
    return out


def host_address(host: Namespace, on: str = "") -> ipaddress.IPv4Address | None:
    """The host's address on `on`, else on the default route's interface, else any not on lo."""
    if on:
        lk = host.link(on)
        if lk and lk.addresses:
            return lk.addresses[0].ip
    default = next((r for r in host.routes if r.dst.prefixlen == 0), None)
    if default is not None:
        if default.prefsrc:
            return default.prefsrc
        lk = host.link(default.dev)
        if lk and lk.addresses:
            return lk.addresses[0].ip
    for lk in host.links:
        for a in lk.addresses:
            if not a.ip.is_loopback:
                return a.ip
    return None


def destinations(view: View, target: Member, port: int, proto: Protocol, source: Source) -> list[Destination]:
    """Where this source would send to reach the container's port: each published host
    port of it (by the kernel's elements) on the address the source would use, and the
    container's own address."""
    out: list[Destination] = []
    el = view.elements
    want = (target.address, port)
    for (p, hp), t in sorted(el.publish_any.items()):
        if p is proto and t == want:
            dst: ipaddress.IPv4Address | None = LOOPBACK
            if source.kind != "loopback":
                dst = host_address(view.host, source.iif if source.kind == "outside" else "")
            if dst is not None:
                out.append(Destination(dst, hp, p, "published", words.publish_any(p, hp, t)))
    for (hip, p, hp), t in sorted(el.publish_addr.items()):
        if p is proto and t == want:
            out.append(Destination(hip, hp, p, "published", words.publish_addr(hip, p, hp, t)))
    out.append(Destination(target.address, port, proto, "direct"))
    return out

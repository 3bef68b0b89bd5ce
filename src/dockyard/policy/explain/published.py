"""explain's claims of a container's published ports, per family: the DNAT element of each. Pure.

A binding on every address is one element per family the endpoint has
(publish_any, publish_any6), one on 0.0.0.0 or :: (or an address) one of its
own family; on a routed IPv6 network the IPv6 half is the container's own
port opened in routed6 instead of a DNAT. Each claim says whether the
daemon's hold of the host port is seen; elements that point at the
container and that no binding of its records explains are mismatches.
"""

from __future__ import annotations

import ipaddress

from dockyard.model import PortBinding
from dockyard.observed import Namespace
from dockyard.policy.explain import words
from dockyard.policy.explain.report import Member, Section, View
from dockyard.policy.rules.elements import ANY6, endpoint_publish_elements, routed6


def _held(host: Namespace, b: PortBinding) -> bool:
    """Whether a host socket holds the published port (the daemon's hold)."""
    # On every address: 0.0.0.0, or one dual-stack :: socket when the endpoint has IPv6 too.
    every: set[object] = {ipaddress.IPv4Address("0.0.0.0"), ipaddress.IPv6Address("::")}
    want = every | {b.host_ip} if b.host_ip else every
    return any(s.proto is b.proto and s.port == b.host_port and s.address in want for s in host.sockets)


def _dnat_claim(
    s: Section, b: PortBinding, obj: str, found: object, target: tuple[object, int], where: str, hold: str
) -> None:
    addr, port = target
    shown = f"[{addr}]:{port}" if isinstance(addr, ipaddress.IPv6Address) else f"{addr}:{port}"
    if found == target:
        s.add(
            "dnat",
            f"in: {b.proto} port {b.host_port} on {where} is DNATed to {shown} "
            f"({obj}; nat prerouting and output: `fib daddr type local jump publish`); the host port is "
            f"{hold}",
            [obj],
        )
        return
    actual = f"it points to {found[0]}:{found[1]}" if isinstance(found, tuple) else "it is absent"
    s.add(
        "dnat",
        f"in: {b} is published in the records, but the element {obj} is not there ({actual})",
        [obj],
        mismatch=f"published port {b} has no DNAT element ({actual})",
    )


def published(view: View, s: Section, m: Member) -> None:
    """Each binding's element per family the endpoint has: publish_any/publish_addr for IPv4,
    publish_any6/publish_addr6 for IPv6 (or, on a routed IPv6 network, routed6)."""
    el = view.elements
    want = endpoint_publish_elements(m.network, m.endpoint, m.bindings)
    address6 = m.address6
    routed = address6 is not None and routed6(m.network)
    for b in m.bindings:
        held = _held(view.host, b)
        hold = (
            "held by the daemon (a socket bound in the host, never accepting)"
            if held
            else "not held (no socket of the daemon's on it)"
        )
        hip = b.host_ip
        address = m.address
        # On every address: IPv4's half when it has IPv4 (an IPv6-only endpoint has none).
        if address is not None and (hip is None or hip.version == 4):
            target = (address, b.container_port)
            if hip is None or hip.is_unspecified:
                obj = words.publish_any(b.proto, b.host_port, target)
                found: object = el.publish_any.get((b.proto, b.host_port))
            else:
                assert isinstance(hip, ipaddress.IPv4Address)
                obj = words.publish_addr(hip, b.proto, b.host_port, target)
                found = el.publish_addr.get((hip, b.proto, b.host_port))
            where = "every host address" if hip is None else str(hip)
            if hip is None and address6 is not None and not routed:
                where = "every host IPv4 address"
            _dnat_claim(s, b, obj, found, target, where, hold)
        if address6 is None or (hip is not None and hip.version == 4):
            continue
        if routed:
            obj = words.routed6(address6, b.proto, b.container_port)
            there = (address6, b.proto, b.container_port) in el.routed6
            s.add(
                "dnat",
                f"in: routed IPv6 (no NAT66): {b.proto} port {b.container_port} of [{address6}] is open "
                f"from outside, at the container's own address ({obj}; forward: "
                "`ip6 daddr . meta l4proto . th dport @routed6 accept`)"
                if there
                else f"in: {b} is published in the records, but the element {obj} is not there",
                [obj],
                mismatch="" if there else f"published port {b} has no routed6 element",
            )
            continue
        target6 = (address6, b.container_port)
        if hip is None or hip == ANY6:
            obj = words.publish_any6(b.proto, b.host_port, target6)
            found = el.publish_any6.get((b.proto, b.host_port))
            where = "every host IPv6 address" if hip is None else "::"
        else:
            assert isinstance(hip, ipaddress.IPv6Address)
            obj = words.publish_addr6(hip, b.proto, b.host_port, target6)
            found = el.publish_addr6.get((hip, b.proto, b.host_port))
            where = f"[{hip}]"
        _dnat_claim(s, b, obj, found, target6, where, hold)
    # Elements pointing at this container that the records do not know.
    stray = (
        [words.publish_any(p, hp, t) for (p, hp), t in el.publish_any.items() if t[0] == m.address]
        + [words.publish_addr(h, p, hp, t) for (h, p, hp), t in el.publish_addr.items() if t[0] == m.address]
        + [words.publish_any6(p, hp, t) for (p, hp), t in el.publish_any6.items() if t[0] == address6]
        + [words.publish_addr6(h, p, hp, t) for (h, p, hp), t in el.publish_addr6.items() if t[0] == address6]
        + [words.routed6(a, p, cp) for a, p, cp in el.routed6 if a == address6]
    )
    known = (
        {words.publish_any(p, hp, t) for (p, hp), t in want.publish_any.items()}
        | {words.publish_addr(h, p, hp, t) for (h, p, hp), t in want.publish_addr.items()}
        | {words.publish_any6(p, hp, t) for (p, hp), t in want.publish_any6.items()}
        | {words.publish_addr6(h, p, hp, t) for (h, p, hp), t in want.publish_addr6.items()}
        | {words.routed6(a, p, cp) for a, p, cp in want.routed6}
    )
    for obj in sorted(stray):
        if obj not in known:
            s.add(
                "dnat",
                f"in: {obj} sends traffic to {m.name}, and no published port of its records says so",
                [obj],
                mismatch=f"stray DNAT element {obj}",
            )
    if not m.bindings:
        s.add("dnat", "in: no port is published: from outside the host nothing reaches it")

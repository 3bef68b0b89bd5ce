"""The claims of explain's path, one topic each, read from the kernel and checked against the records. Pure.

Each function adds to a Section the claim of one topic: the container's
interface, its veth peer, the bridge, its routes, the way out
(masquerade), hairpin, isolation,
anti-spoofing, the resolver, and dockyard's tables themselves. A claim
names the kernel objects it rests on; where the records expect what the
kernel does not show (or shows otherwise), it carries the difference in
`mismatch`. Published ports are published.py's. paths.py puts them together for a container or a network.
"""

from __future__ import annotations

import ipaddress

from dockyard.model import Network, Protocol
from dockyard.observed import Link, Route, Route6
from dockyard.policy.explain import words
from dockyard.policy.explain.report import Member, Section, View
from dockyard.policy.rules.elements import endpoint_elements, routed6

DNS_PORT = 53


def rules_claims(view: View, section: Section) -> None:
    if view.tables.inet is None:
        section.add(
            "tables",
            "the table inet dockyard does not exist in this namespace: nothing is DNATed, masqueraded "
            "or isolated by dockyard",
            ["table inet dockyard"],
            mismatch="table inet dockyard is missing ('dockyard system gc' makes it again)",
        )
    elif not view.inet_rules_ok:
        section.add(
            "tables",
            "the chains and rules of inet dockyard differ from dockyard's own: what follows assumes them",
            ["table inet dockyard"],
            mismatch="the rules of inet dockyard were changed by hand or by another tool",
        )
    if view.tables.bridge is None:
        section.add(
            "tables",
            "the table bridge dockyard does not exist: no port is guarded and icc=false is not enforced",
            ["table bridge dockyard"],
            mismatch="table bridge dockyard is missing",
        )
    elif not view.bridge_rules_ok:
        section.add(
            "tables",
            "the chains and rules of bridge dockyard differ from dockyard's own",
            ["table bridge dockyard"],
            mismatch="the rules of bridge dockyard were changed by hand or by another tool",
        )
    others = [f"{f} {n}" for f, n in view.tables.others]
    if others:
        section.add(
            "tables",
            f"other tables see the same packets and are not read here: {', '.join(others)}",
            others,
        )


def interface(s: Section, m: Member, eth: Link | None) -> None:
    ep = m.endpoint
    if eth is None:
        s.add(
            "interface",
            f"no interface {ep.ifname} in the container's namespace",
            [f"link {ep.ifname} in net:[{m.sandbox.inode if m.sandbox else '?'}]"],
            mismatch=f"the records give {m.name} {ep.ifname} with {ep.address or ep.address6}; its namespace "
            "has none",
        )
        return
    bad = []
    if eth.mac != ep.mac.lower():
        bad.append(f"MAC {eth.mac}, the records {ep.mac}")
    if ep.address is not None and ep.address not in eth.addresses:
        bad.append(f"addresses {words.addresses(eth)}, the records {ep.address}")
    if ep.address is None and eth.addresses:
        bad.append(f"addresses {words.addresses(eth)}, the records no IPv4 (an IPv6-only network)")
    if ep.address6 is not None and ep.address6 not in eth.addresses6:
        bad.append(f"addresses {words.addresses(eth)}, the records {ep.address6}")
    if not eth.up:
        bad.append("it is down")
    s.add(
        "interface",
        f"in the container: {eth.name} {words.addresses(eth)}, MAC {eth.mac}, "
        f"{'up' if eth.up else 'DOWN'}, MTU {eth.mtu}",
        [words.link(eth)],
        mismatch="; ".join(bad),
    )


def peer(s: Section, m: Member, eth: Link | None, veth: Link | None, bridge: Link | None) -> None:
    ep, n = m.endpoint, m.network
    if veth is None:
        s.add(
            "peer",
            f"its veth peer {ep.host_ifname} does not exist in the host",
            [f"link {ep.host_ifname}"],
            mismatch=f"the records name {ep.host_ifname} as the host end, the host has no such link",
        )
        return
    bad = []
    paired = eth is not None and veth.peer_index == eth.index and eth.peer_index == veth.index
    if eth is not None and not paired:
        bad.append(f"{veth.name} is not the peer of the container's {eth.name}")
    on_bridge = bridge is not None and veth.master == bridge.index
    if not on_bridge:
        bad.append(f"{veth.name} is not a port of {n.bridge}")
    hairpin = "hairpin on" if veth.hairpin else "hairpin off"
    peer = f"the peer of {eth.name} (index {eth.index})" if paired and eth else "a veth"
    s.add(
        "peer",
        f"in the host: {veth.name} (index {veth.index}), {peer}, a port of bridge {n.bridge} "
        f"({hairpin}), {'up' if veth.up else 'DOWN'}",
        [words.link(veth)],
        mismatch="; ".join(bad),
    )


def bridge(s: Section, n: Network, bridge: Link | None) -> None:
    if bridge is None:
        s.add(
            "bridge",
            f"the bridge {n.bridge} does not exist",
            [f"link {n.bridge}"],
            mismatch=f"network {n.name} should have bridge {n.bridge}",
        )
        return
    gw = ipaddress.IPv4Interface(f"{n.gateway}/{n.subnet.prefixlen}") if n.gateway and n.subnet else None
    bad = []
    if gw is not None and gw not in bridge.addresses:
        bad.append(f"{n.bridge} has {words.addresses(bridge)}, the records give the gateway {gw}")
    gw6 = None
    if n.enable_ipv6 and n.gateway6 is not None and n.subnet6 is not None:
        gw6 = ipaddress.IPv6Interface(f"{n.gateway6}/{n.subnet6.prefixlen}")
    if gw6 is not None and gw6 not in bridge.addresses6:
        bad.append(f"{n.bridge} has {words.addresses(bridge)}, the records give the IPv6 gateway {gw6}")
    if not bridge.up:
        bad.append(f"{n.bridge} is down")
    if n.subnet is None:  # IPv6-only (--ipv4=false)
        gateways = (
            f"no IPv4 (IPv6-only); the IPv6 gateway {n.gateway6} of {n.subnet6} is the host's address on it"
        )
    else:
        six = f"; the IPv6 gateway {n.gateway6} of {n.subnet6} too" if gw6 is not None else ""
        gateways = f"the gateway {n.gateway} of {n.subnet} is the host's address on it{six}"
    s.add(
        "bridge",
        f"bridge {n.bridge}: {words.addresses(bridge)}, {'up' if bridge.up else 'DOWN'}, MTU {bridge.mtu}; "
        + gateways,
        [words.link(bridge)],
        mismatch="; ".join(bad),
    )


def routes(s: Section, m: Member) -> None:
    if m.sandbox is None:
        return
    # IPv4's routes; an IPv6-only endpoint's IPv6 ones (its link-local route aside).
    routes: tuple[Route | Route6, ...] = m.sandbox.routes
    if m.address is None:
        routes = tuple(r for r in m.sandbox.routes6 if not r.dst.is_link_local)
    mine = [r for r in routes if r.dev == m.endpoint.ifname]
    default = next((r for r in routes if r.dst.prefixlen == 0), None)
    text = "; ".join(words.route_text(r) for r in mine) or "none"
    mismatch = ""
    if m.network.internal:
        note = "no default route: an internal network has no way out"
    elif default is not None and default.dev == m.endpoint.ifname:
        note = f"the default route goes to the gateway {default.gateway}"
    elif default is not None:
        note = f"the default route leaves by {default.dev}, another network"
    else:
        note = "no default route"
        mismatch = f"{m.name} has no default route"
    s.add("routes", f"routes through {m.endpoint.ifname}: {text} ({note})", [], mismatch)


def _expect(view: View, s: Section, topic: str, present: bool, text: str, absent: str, obj: str) -> None:
    s.add(topic, text if present else absent, [obj], "" if present else f"missing: {obj}")


def out(view: View, s: Section, n: Network) -> None:
    el, subnet = view.elements, n.subnet
    if n.internal:
        _expect(
            view,
            s,
            "out",
            n.bridge in el.internal,
            f"internal: nothing leaves {n.bridge} for another interface, nothing comes in from one "
            f"({words.set_element('internal', n.bridge)}; forward: `iifname @internal oifname != "
            "@internal drop` and its mirror)",
            f"internal in the records, but {n.bridge} is not in the set internal: its traffic is not cut off",
            words.set_element("internal", n.bridge),
        )
        return
    if not n.masquerade:
        s.add("out", f"leaving the host, its packets keep their source (masquerade off for {n.name})")
        return
    if subnet is None:  # IPv6-only: its way out is IPv6's alone
        out6(view, s, n)
        return
    fwd = "net.ipv4.ip_forward=1" if view.host.forwarding else "net.ipv4.ip_forward=0: nothing is routed out"
    _expect(
        view,
        s,
        "out",
        subnet in el.masq_nets,
        f"out: routed by the host ({fwd}) and masqueraded to the address of the interface it leaves by "
        f"({words.set_element('masq_nets', subnet)}; postrouting: `ip saddr @masq_nets oifname != "
        "@bridges masquerade`)",
        f"out: routed, but {subnet} is not in masq_nets: it leaves with its own address",
        words.set_element("masq_nets", subnet),
    )
    out6(view, s, n)


def out6(view: View, s: Section, n: Network) -> None:
    """The IPv6 half of the way out: NAT66 (masq_nets6), or none on a routed network."""
    el, subnet6 = view.elements, n.subnet6
    if not n.enable_ipv6 or subnet6 is None or n.internal:
        return
    obj = words.set_element("masq_nets6", subnet6)
    if routed6(n):
        s.add(
            "out",
            f"out on IPv6: routed mode, no NAT66: {subnet6} leaves with the containers' own addresses",
            [obj],
            mismatch=f"{subnet6} is in masq_nets6 on a routed network" if subnet6 in el.masq_nets6 else "",
        )
        return
    _expect(
        view,
        s,
        "out",
        subnet6 in el.masq_nets6,
        f"out on IPv6: masqueraded (NAT66) to the address of the interface it leaves by ({obj}; "
        "postrouting: `ip6 saddr @masq_nets6 oifname != @bridges masquerade`)",
        f"out on IPv6: routed, but {subnet6} is not in masq_nets6: it leaves with its own address",
        obj,
    )


def hairpin(view: View, s: Section, n: Network, veth: Link | None) -> None:
    port = ""
    if veth is not None:
        port = f"; its bridge port's hairpin mode is {'on' if veth.hairpin else 'off'}"
    if n.subnet is None:  # IPv6-only
        _hairpin6(
            view,
            s,
            n,
            f"hairpin: a member of {n.name} reaching a port published back into {n.bridge} "
            f"is masqueraded to the IPv6 gateway, so that the reply comes back through the host{port}",
        )
        return
    pair = (n.subnet, n.bridge)
    obj = words.set_element("bridge_nets", f"{n.subnet} . {n.bridge}")
    _expect(
        view,
        s,
        "hairpin",
        pair in view.elements.bridge_nets,
        f"hairpin: a member of {n.name} reaching a port published back into {n.bridge} is masqueraded "
        f"to the gateway, so that the reply comes back through the host ({obj}; postrouting: "
        f"`ct status dnat ip saddr . oifname @bridge_nets masquerade`){port}",
        f"hairpin: {n.subnet} . {n.bridge} is not in bridge_nets: hairpin traffic is not masqueraded",
        obj,
    )
    _hairpin6(view, s, n, "hairpin on IPv6 alike")


def _hairpin6(view: View, s: Section, n: Network, text: str) -> None:
    if not n.enable_ipv6 or n.subnet6 is None:
        return
    obj6 = words.set_element("bridge_nets6", f"{n.subnet6} . {n.bridge}")
    _expect(
        view,
        s,
        "hairpin",
        (n.subnet6, n.bridge) in view.elements.bridge_nets6,
        f"{text} ({obj6}; postrouting: `ct status dnat ip6 saddr . oifname @bridge_nets6 masquerade`)",
        f"hairpin: {n.subnet6} . {n.bridge} is not in bridge_nets6: IPv6 hairpin traffic is not masqueraded",
        obj6,
    )


def isolation(view: View, s: Section, m: Member) -> None:
    n, el = m.network, view.elements
    bridges = words.set_element("bridges", n.bridge)
    _expect(
        view,
        s,
        "isolation",
        n.bridge in el.bridges,
        f"isolation: into {n.bridge} only replies and DNATed packets are forwarded; anything else routed "
        f"at it, from outside or from another network, is dropped ({bridges}; forward: `oifname @bridges "
        "drop`)",
        f"isolation: {n.bridge} is not in the set bridges: other networks and the outside are not kept out",
        bridges,
    )
    if n.icc:
        pair = words.set_element("icc_pairs", f"{n.bridge} . {n.bridge}")
        # br_netfilter of the family its members talk over (IPv6's alone on an IPv6-only network).
        bridge_nf = view.host.bridge_nf if m.address is not None else view.host.bridge_nf6
        _expect(
            view,
            s,
            "isolation",
            (n.bridge, n.bridge) in el.icc_pairs,
            f"members of {n.name} reach each other directly, bridged port to port "
            f"({pair}{', with br_netfilter' if bridge_nf else ''})",
            f"icc is on for {n.name}, but {n.bridge} . {n.bridge} is not in icc_pairs",
            pair,
        )
    else:
        port = m.endpoint.host_ifname
        obj = words.set_element("no_icc_ports", port, words.BRIDGE)
        _expect(
            view,
            s,
            "isolation",
            port in el.no_icc_ports,
            f"icc off: nothing it sends is bridged to another member of {n.name} ({obj}; bridge forward: "
            "`iifname @no_icc_ports drop`)",
            f"icc is off for {n.name}, but {port} is not in no_icc_ports",
            obj,
        )


def guard(view: View, s: Section, m: Member, eth: Link | None) -> None:
    el, ep = view.elements, m.endpoint
    port = ep.host_ifname
    want = endpoint_elements(ep, m.network.icc)
    objs = [
        words.set_element("guarded_ports", port, words.BRIDGE),
        words.set_element("port_macs", f"{port} . {ep.mac.lower()}", words.BRIDGE),
    ]
    oks = [port in el.guarded_ports, want.port_macs <= el.port_macs]
    four = "for IPv4 and ARP, no address: it has none (IPv6-only), every IPv4 packet and ARP frame is dropped"
    if m.address is not None:
        objs.append(words.set_element("port_addrs", f"{port} . {m.address}", words.BRIDGE))
        oks.append(want.port_addrs <= el.port_addrs)
        four = f"for IPv4 and ARP, the address {m.address}"
    six = "anything else, IPv6 included, is dropped"
    if ep.address6 is not None:
        objs += [
            words.set_element("port_addrs6", f"{port} . {a}", words.BRIDGE)
            for _, a in sorted(want.port_addrs6)
        ]
        oks += [(port, a) in el.port_addrs6 for _, a in sorted(want.port_addrs6)]
        six = (
            f"for IPv6 its address {ep.address6.ip} or its link-local one, and a neighbour advertisement "
            "must target one of them; anything else is dropped"
        )
    missing = [o for o, ok in zip(objs, oks, strict=True) if not ok]
    if eth is not None and eth.mac != ep.mac.lower():
        missing.append(f"the container's {eth.name} sends from {eth.mac}, which the guard drops")
    s.add(
        "anti-spoofing",
        f"anti-spoofing: every frame from {port} must carry MAC {ep.mac.lower()} and, {four}; {six} "
        "(bridge dockyard ports, prerouting -300)",
        objs,
        mismatch="; ".join(f"missing: {o}" if o.startswith("bridge ") else o for o in missing),
    )


def dns(view: View, s: Section, n: Network, who_asks: str, nameservers: tuple[str, ...] = ()) -> None:
    servers = ", ".join(nameservers) or "none"
    if n.name == "bridge":
        s.add(
            "dns",
            f"DNS: the default bridge has no DNS by name (as Docker's); /etc/resolv.conf names {servers}",
        )
        return
    gw = n.gateway
    if gw is None:
        if n.enable_ipv6 and n.gateway6 is not None:  # IPv6-only: the resolver is on the IPv6 gateway
            _dns6(view, s, n.gateway6, f"every user network {who_asks} is on", nameservers)
        return
    obj = words.set_element("dns_gateways", gw)
    listening = [f"{sk.proto}" for sk in view.host.sockets if sk.port == DNS_PORT and sk.address == gw]
    who = f"the resolver (PID {view.resolver_pid})" if view.resolver_pid else "no resolver process"
    bad = []
    if gw not in view.elements.dns_gateways:
        bad.append(f"missing: {obj}")
    if Protocol.UDP.value not in listening:
        bad.append(f"nothing listens on {gw}:53/udp")
    names = f"; /etc/resolv.conf names {servers}" if nameservers else ""
    s.add(
        "dns",
        f"DNS: {who} answers on {gw}:53 ({'/'.join(sorted(listening)) or 'no socket'}) with the names of "
        f"every user network {who_asks} is on; port 53 of the gateway is never DNATed ({obj}){names}",
        [obj, f"socket {gw}:53"],
        mismatch="; ".join(bad),
    )
    if n.enable_ipv6 and n.gateway6 is not None:
        _dns6(view, s, n.gateway6)


def _dns6(
    view: View, s: Section, gw6: ipaddress.IPv6Address, only: str = "", nameservers: tuple[str, ...] = ()
) -> None:
    """The resolver on the IPv6 gateway: beside the IPv4 one, or (`only`: whose names it
    answers with) the only one, on an IPv6-only network."""
    obj = words.set_element("dns_gateways6", gw6)
    listening = sorted(
        {f"{sk.proto}" for sk in view.host.sockets if sk.port == DNS_PORT and sk.address == gw6}
    )
    bad = []
    if gw6 not in view.elements.dns_gateways6:
        bad.append(f"missing: {obj}")
    if Protocol.UDP.value not in listening:
        bad.append(f"nothing listens on [{gw6}]:53/udp")
    sockets = "/".join(listening) or "no socket"
    if only:
        who = f"the resolver (PID {view.resolver_pid})" if view.resolver_pid else "no resolver process"
        names = f"; /etc/resolv.conf names {', '.join(nameservers)}" if nameservers else ""
        text = (
            f"DNS on IPv6 (the network has no IPv4): {who} answers on [{gw6}]:53 ({sockets}) with the "
            f"names of {only}; port 53 of the IPv6 gateway is never DNATed ({obj}){names}"
        )
    else:
        text = (
            f"DNS on IPv6: the resolver answers on [{gw6}]:53 ({sockets}) too; "
            f"port 53 of the IPv6 gateway is never DNATed ({obj})"
        )
    s.add(
        "dns",
        text,
        [obj, f"socket [{gw6}]:53"],
        mismatch="; ".join(bad),
    )

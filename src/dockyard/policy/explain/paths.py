"""A container's or a network's data path in words, each claim read from the kernel. Pure.

For a container: its namespace, then for each network it is on, its
interface and the veth peer in the host, the bridge and the gateway, its
routes, and the set and map elements that concern it: masquerade out, DNAT
in (each published port's exact element), hairpin, isolation,
anti-spoofing, and its DNS resolver. For a network: its bridge, its
elements, its resolver and its members. Every claim names the kernel
objects it was read from; where the records expect what the kernel does
not show (or shows otherwise), the claim says so in `mismatch`. The claims
of each topic are claims.py's; this module puts them in order.
"""

from __future__ import annotations

from dockyard.model import Container, DriverName, ModeKind, Network
from dockyard.policy.explain import claims, published, words
from dockyard.policy.explain.report import Member, Report, Section, View
from dockyard.policy.rules.elements import elements_of_network


def explain_container(view: View, c: Container, owner: Container | None = None) -> Report:
    """The path of a container's packets, in words.

    `owner` is the container whose namespace a `container:` mode container
    shares (its endpoints are the ones that carry the traffic).
    """
    report = Report(subject=f"container {c.name}")
    ns = Section("Namespace")
    report.sections.append(ns)
    kind = c.config.network_mode.kind
    if not c.running:
        ns.add("state", f"{c.name} is {c.state}: it has no namespace and no endpoint now")
        return report
    if kind is ModeKind.HOST:
        ns.add(
            "namespace",
            f"{c.name} (PID {c.pid}) uses the host's network namespace net:[{view.host.inode}]: "
            "no veth, no bridge, no NAT; its ports are the host's own and nothing of dockyard's "
            "tables concerns it",
            [f"net:[{view.host.inode}]"],
        )
        return report
    members = view.members_of(owner.id if owner else c.id)
    if kind is ModeKind.CONTAINER:
        if owner is None:
            ns.add("namespace", f"{c.name} shared the namespace of a container that is gone: only lo is left")
            return report
        ns.add(
            "namespace",
            f"{c.name} shares the network namespace of {owner.name} (--net container:{owner.name}): "
            f"the same interfaces, addresses, routes and ports; the path below is {owner.name}'s",
        )
    first = members[0] if members else None
    if first is not None and first.sandbox is not None:
        ns.add(
            "namespace",
            f"{c.name} (PID {c.pid}) runs in the network namespace net:[{first.sandbox.inode}], "
            f"pinned at {first.sandbox_path}",
            [f"net:[{first.sandbox.inode}]", first.sandbox_path],
        )
    elif kind is ModeKind.NONE or (first is None and kind is not ModeKind.CONTAINER):
        ns.add("namespace", f"{c.name} (PID {c.pid}) has a network namespace of its own with only lo in it")
        return report
    elif first is not None:
        ns.add(
            "namespace",
            f"the namespace of {c.name} could not be read at {first.sandbox_path}",
            [first.sandbox_path],
            mismatch=f"{c.name} is running but its namespace pin {first.sandbox_path} cannot be read",
        )
    for m in members:
        report.sections.append(_member_section(view, m))
    rules = Section("Tables")
    claims.rules_claims(view, rules)
    if rules.claims:
        report.sections.append(rules)
    return report


def _member_section(view: View, m: Member) -> Section:
    n, ep = m.network, m.endpoint
    s = Section(f"Network {n.name} (bridge {n.bridge})")
    host = view.host
    veth = host.link(ep.host_ifname)
    bridge = host.link(n.bridge)
    eth = m.sandbox.link(ep.ifname) if m.sandbox else None
    claims.interface(s, m, eth)
    claims.peer(s, m, eth, veth, bridge)
    claims.bridge(s, n, bridge)
    claims.routes(s, m)
    claims.out(view, s, n)
    published.published(view, s, m)
    claims.hairpin(view, s, n, veth)
    claims.isolation(view, s, m)
    claims.guard(view, s, m, eth)
    claims.dns(view, s, m.network, m.name, m.nameservers)
    return s


def explain_network(view: View, n: Network) -> Report:
    report = Report(subject=f"network {n.name}")
    s = Section(f"Network {n.name}")
    report.sections.append(s)
    if n.driver is DriverName.HOST:
        s.add("driver", "the host network: its containers use the host's namespace; dockyard adds nothing")
        return report
    if n.driver is DriverName.NONE:
        s.add("driver", "the none network: its containers have only lo")
        return report
    bridge = view.host.link(n.bridge)
    claims.bridge(s, n, bridge)
    if bridge is not None:
        ports = [lk for lk in view.host.links if lk.master == bridge.index]
        members = {m.endpoint.host_ifname: m for m in view.members if m.network.id == n.id}
        for lk in ports:
            m = members.get(lk.name)
            who = f"{m.name}'s {m.endpoint.ifname} ({m.primary})" if m else "no container of the records"
            s.add(
                "port",
                f"port {lk.name} (index {lk.index}, hairpin {'on' if lk.hairpin else 'off'}): {who}",
                [words.link(lk)],
                mismatch="" if m else f"{lk.name} is a port of {n.bridge} that no endpoint owns",
            )
        for name, m in members.items():
            if view.host.link(name) is None or view.host.link(name).master != bridge.index:  # type: ignore[union-attr]
                s.add(
                    "port",
                    f"{m.name}'s host end {name} is not a port of {n.bridge}",
                    [f"link {name}"],
                    mismatch=f"endpoint of {m.name} has no port {name} on {n.bridge}",
                )
    if n.subnet is not None or n.subnet6 is not None:
        claims.out(view, s, n)
        claims.hairpin(view, s, n, None)
        want = elements_of_network(n)
        missing = want.minus(view.elements)
        if missing.icc_pairs or (n.bridge not in view.elements.bridges):
            s.add("isolation", f"{n.bridge}'s isolation elements are missing", [], f"missing: {missing}")
        else:
            icc = "members reach each other" if n.icc else "icc off: members cannot reach each other"
            s.add(
                "isolation",
                f"other networks and the outside reach its members only through published ports "
                f"({words.set_element('bridges', n.bridge)}); {icc}",
                [words.set_element("bridges", n.bridge)],
            )
        if n.name != "bridge":
            claims.dns(view, s, n, "a member")
    rules = Section("Tables")
    claims.rules_claims(view, rules)
    if rules.claims:
        report.sections.append(rules)
    return report

"""Does a packet from this source reach that port? A walk through what was read. Pure.

The walk follows one new packet (the first of a connection) the way the
kernel takes it through dockyard's fixed rules, deciding each step by what
the View read: the source container's routes and its bridge port's guard
(bridge dockyard `ports`), bridging port to port or routing through the
host, the 127.0.0.0/8 guard (`localnet`), DNAT (`publish`, by the map
elements), the routing decision, the perimeter (`forward`), masquerade
(`postrouting`), and at the end the container's interface, a socket
waiting there, and a route for the reply. The first step that stops it
decides, and the verdict names its element or check.

Sources and the ways in to a port are sources.py's.

An IPv6 packet takes the same steps with IPv6's elements and sysctls
(port_addrs6, publish_addr6/publish_any6, dns_gateways6, routed6,
bridge_nets6, masq_nets6, net.ipv6.conf.all.forwarding): ::1 from an
interface is the kernel's to drop (no localnet rule needed), and ::1 from
the host leaves only towards a dockyard bridge, masqueraded.

What the walk does not model: other tables at the same hooks (named in
the report, never read), policy routing, and replies other than the first.
"""

from __future__ import annotations

from dockyard.model import Protocol
from dockyard.policy.explain import words
from dockyard.policy.explain.report import Hop, Member, Verdict, View
from dockyard.policy.explain.sources import (
    ANY,
    ANY6,
    Addr,
    Destination,
    Source,
    destinations,
    host_address,
    resolve_source,
)

DNS_PORT = 53


class _Walk:
    def __init__(self, view: View, source: Source, dst: Destination, target: Member) -> None:
        self.view = view
        self.el = view.elements
        self.host = view.host
        self.source = source
        self.dst = dst
        self.target = target
        self.hops: list[Hop] = []
        self.note = ""
        self.v6 = dst.address.version == 6
        # Why the container's answer never gets back, though the packet reaches it.
        self.reply_lost = ""

    def hop(self, where: str, text: str, effect: str) -> None:
        self.hops.append(Hop(where, text, effect))

    def verdict(self, reaches: bool, decided_by: str, answered: bool = False, target: str = "") -> Verdict:
        return Verdict(
            source=self.source.label,
            source_kind=self.source.kind,
            src=str(self.source.address),
            dst=f"{_hostport(self.dst.address, self.dst.port)}/{self.dst.proto}",
            reaches=reaches,
            answered=answered,
            decided_by=decided_by,
            target=target,
            hops=self.hops,
            note=self.note,
        )

    # -- the walk ---------------------------------------------------------------

    def run(self) -> Verdict:
        s = self.source
        if self.target.sandbox is None:
            return self.verdict(False, f"{self.target.name} is not running (no namespace to deliver to)")
        if s.kind in ("container", "network"):
            return self._from_bridge()
        if s.kind in ("host", "loopback"):
            return self._from_host()
        return self._from_outside()

    def _from_outside(self) -> Verdict:
        s, d = self.source, self.dst
        if not s.iif:
            return self.verdict(False, f"the host has no route to {s.address}: it could not answer")
        if d.how == "direct":
            subnet = self.target.network.subnet6 if self.v6 else self.target.network.subnet
            self.note = (
                f"only if {s.address} sends {d.address} to this host (a route to "
                f"{subnet} via one of its addresses)"
            )
        self.hop("in", f"arrives on {s.iif}", "pass")
        return self._routed(s.iif, local_origin=False)

    def _from_host(self) -> Verdict:
        self.hop("out", f"sent by a host process from {self.source.address}", "pass")
        return self._routed("", local_origin=True)

    def _from_bridge(self) -> Verdict:
        s, d, t = self.source, self.dst, self.target
        m = s.member
        if m is not None:
            if m.sandbox is None:
                return self.verdict(False, f"{m.name}'s namespace could not be read")
            if words.is_local(m.sandbox, d.address):
                self.hop(f"{m.name}: routing", f"{d.address} is an address of its own namespace", "local")
                if m.sandbox.inode != (t.sandbox.inode if t.sandbox else None):
                    return self.verdict(False, f"{d.address} is {m.name}'s own address, not {t.name}'s")
                return self._deliver(d.address, d.port, s.address)
            r = words.lookup(m.sandbox, d.address)
            if r is None:
                routes = "; ".join(words.route_text(x) for x in m.sandbox.routes) or "none"
                return self.verdict(False, f"{m.name} has no route to {d.address} (its routes: {routes})")
            self.hop(f"{m.name}: routing", f"route {words.route_text(r)}", "route")
            out = next((x for x in self.view.members_of(m.container.id) if x.endpoint.ifname == r.dev), None)
            if out is None:
                return self.verdict(
                    False, f"{m.name} sends it out by {r.dev}, which no endpoint of its records has"
                )
            if out is not m:
                m = out
                leaves = m.address6 if self.v6 else m.address
                if leaves is None:
                    family = "IPv6" if self.v6 else "IPv4"
                    return self.verdict(False, f"{m.name} has no {family} address on {m.network.name}")
                s = self.source = Source(s.kind, leaves, s.label, m, m.network.bridge, m.network.bridge)
                self.hop(f"{m.name}: routing", f"it leaves from {leaves} on {m.network.name}", "route")
            stop = self._guard(m)
            if stop is not None:
                return stop
        else:
            self.hop(
                f"bridge {s.bridge}",
                "a port that is no endpoint's passes the guard untouched "
                "(`iifname != @guarded_ports accept`)",
                "pass",
            )
        bridge = s.bridge
        net = self.view.network_of_bridge(bridge)
        # The source's own subnet (on a network of several, the one it has its address in).
        config = net.config_of(s.address) if net is not None and s.address is not None else None
        subnet = config.subnet if config is not None else None
        # On-link to another member of the same bridge: bridged, not routed.
        if (
            d.how == "direct"
            and t.network.bridge == bridge
            and subnet is not None
            and d.address in subnet
            and not words.is_local(self.host, d.address)
        ):
            return self._bridged(bridge)
        return self._routed(bridge, local_origin=False)

    def _guard(self, m: Member) -> Verdict | None:
        el = self.el
        port = m.endpoint.host_ifname
        where = f"{words.BRIDGE} ports (prerouting, -300) on {port}"
        if port not in el.guarded_ports:
            self.hop(where, f"{port} is not guarded: `iifname != @guarded_ports accept`", "pass")
            return None
        eth = m.sandbox.link(m.endpoint.ifname) if m.sandbox else None
        mac = eth.mac if eth else m.endpoint.mac.lower()
        if (port, mac) not in el.port_macs:
            obj = words.set_element("port_macs", f"{port} . {mac}", words.BRIDGE)
            self.hop(
                where, f"source MAC {mac} is not its own: `iifname . ether saddr != @port_macs drop`", "drop"
            )
            return self.verdict(False, f"dropped by the anti-spoofing guard: no element {obj}")
        addrs, name = (el.port_addrs6, "port_addrs6") if self.v6 else (el.port_addrs, "port_addrs")
        if (port, self.source.address) not in addrs:  # type: ignore[operator]
            obj = words.set_element(name, f"{port} . {self.source.address}", words.BRIDGE)
            self.hop(
                where, f"source {self.source.address} is not its own address: the last rule drops it", "drop"
            )
            return self.verdict(False, f"dropped by the anti-spoofing guard: no element {obj}")
        self.hop(
            where,
            "its own MAC and address: accepted by "
            + words.set_element(name, f"{port} . {self.source.address}", words.BRIDGE),
            "pass",
        )
        return None

    def _bridged(self, bridge: str) -> Verdict:
        t, el = self.target, self.el
        self.hop(
            f"bridge {bridge}", f"{self.dst.address} is on the same bridge: bridged port to port", "bridge"
        )
        if self.host.bridge_nf6 if self.v6 else self.host.bridge_nf:
            where = f"{words.INET} forward (filter, 0), with br_netfilter"
            pair = (bridge, bridge)
            if pair in el.icc_pairs:
                obj = words.set_element("icc_pairs", f"{bridge} . {bridge}")
                self.hop(where, f"`iifname . oifname @icc_pairs accept` ({obj})", "pass")
            else:
                self.hop(where, "not in icc_pairs: `oifname @bridges drop`", "drop")
                return self.verdict(
                    False,
                    f"dropped: {bridge} . {bridge} is not in icc_pairs (icc is off for {t.network.name}); "
                    f"{words.rule(words.INET, 'forward', 'oifname @bridges drop')}",
                )
        port = self.source.member.endpoint.host_ifname if self.source.member else ""
        if port and port in el.no_icc_ports:
            obj = words.set_element("no_icc_ports", port, words.BRIDGE)
            self.hop(f"{words.BRIDGE} forward (filter, 0)", f"`iifname @no_icc_ports drop` ({obj})", "drop")
            return self.verdict(False, f"dropped: icc is off ({obj})")
        return self._deliver(self.dst.address, self.dst.port, self.source.address)

    def _routed(self, iif: str, local_origin: bool) -> Verdict:
        s, d, el, host = self.source, self.dst, self.el, self.host
        src, dst = s.address, d.address
        if self.v6 and not local_origin and (dst.is_loopback or src.is_loopback):
            which = "destination" if dst.is_loopback else "source"
            self.hop("in", f"a ::1 {which} from {iif}", "drop")
            return self.verdict(
                False, f"dropped by the kernel: ::1 as a {which} never comes from an interface"
            )
        # 127.0.0.0/8 guard, for what arrives from an interface.
        if not self.v6 and not local_origin and (dst.is_loopback or src.is_loopback):
            which = "destination" if dst.is_loopback else "source"
            text = f'ip {which[0]}addr 127.0.0.0/8 iifname != "lo" drop'
            self.hop(f"{words.INET} localnet (prerouting, -300)", f"a 127.0.0.0/8 {which} from {iif}", "drop")
            return self.verdict(False, f"dropped: {words.rule(words.INET, 'localnet', text)}")
        if not local_origin and not self.v6:
            self.hop(f"{words.INET} localnet (prerouting, -300)", "no 127.0.0.0/8 address: passes", "pass")
        hook = "output" if local_origin else "prerouting"
        where = f"{words.INET} {hook} (nat, -100)"
        target_addr, target_port = dst, d.port
        dnat = False
        if words.is_local(host, dst):
            self.hop(where, f"{dst} is an address of the host: `fib daddr type local jump publish`", "pass")
            pwhere = f"{words.INET} publish"
            six = "6" if self.v6 else ""
            dns = el.dns_gateways6 if self.v6 else el.dns_gateways
            by_addr: dict = el.publish_addr6 if self.v6 else el.publish_addr  # type: ignore[assignment]
            by_any: dict = el.publish_any6 if self.v6 else el.publish_any  # type: ignore[assignment]
            if dst in dns and d.port == DNS_PORT and d.proto in (Protocol.UDP, Protocol.TCP):
                self.hop(
                    pwhere,
                    f"port 53 of a network's gateway: "
                    f"`ip{six} daddr @dns_gateways{six} {d.proto} dport 53 return`",
                    "pass",
                )
            elif (dst, d.proto, d.port) in by_addr:
                target_addr, target_port = by_addr[(dst, d.proto, d.port)]
                name = words.publish_addr6 if self.v6 else words.publish_addr
                obj = name(dst, d.proto, d.port, (target_addr, target_port))  # type: ignore[arg-type]
                self.hop(pwhere, f"DNAT to {_hostport(target_addr, target_port)} by {obj}", "dnat")
                dnat = True
            elif (d.proto, d.port) in by_any:
                target_addr, target_port = by_any[(d.proto, d.port)]
                obj = (words.publish_any6 if self.v6 else words.publish_any)(
                    d.proto, d.port, (target_addr, target_port)
                )
                self.hop(pwhere, f"DNAT to {_hostport(target_addr, target_port)} by {obj}", "dnat")
                dnat = True
            else:
                self.hop(
                    pwhere,
                    f"no element for {dst} . {d.proto} . {d.port} nor {d.proto} . {d.port}: no DNAT",
                    "pass",
                )
        if not dnat and words.is_local(host, target_addr):
            return self._host_takes(target_addr, target_port)
        # Routing.
        r = words.lookup(host, target_addr)
        if r is None:
            self.hop("routing", f"no route to {target_addr}", "drop")
            return self.verdict(False, f"the host has no route to {target_addr}")
        oif = r.dev
        self.hop("routing", f"to {target_addr}: {words.route_text(r)}", "route")
        if self.v6 and local_origin and src.is_loopback and oif != "lo" and oif not in el.bridges:
            return self.verdict(
                False, f"the kernel never sends a ::1 source out of {oif} (only to dockyard's bridges)"
            )
        if self.v6 and local_origin and src.is_loopback and oif in el.bridges and host.bridge_nf6:
            self.reply_lost = (
                "the answer is lost: with net.bridge.bridge-nf-call-ip6tables=1, br_netfilter undoes "
                f"the reply's NAT at {oif} and the kernel drops a packet to ::1 that did not come by lo"
            )
        if (
            not self.v6
            and local_origin
            and src.is_loopback
            and oif != "lo"
            and oif not in host.route_localnet
        ):
            return self.verdict(
                False,
                f"the kernel drops a 127.0.0.0/8 source leaving by {oif}: "
                f"net.ipv4.conf.{oif}.route_localnet is 0",
            )
        if not local_origin:
            if self.v6 and not host.forwarding6:
                return self.verdict(False, "not forwarded: net.ipv6.conf.all.forwarding is 0 in the host")
            if not self.v6 and not host.forwarding:
                return self.verdict(False, "not forwarded: net.ipv4.ip_forward is 0 in the host")
            stop = self._forward(iif, oif, dnat, target_addr, target_port)
            if stop is not None:
                return stop
        bridge_nf = host.bridge_nf6 if self.v6 else host.bridge_nf
        if not local_origin and bridge_nf and dnat and iif == oif and s.member is not None:
            stop = self._bridged_dnat(oif, s.member)
            if stop is not None:
                return stop
        reply_to = self._postrouting(src, oif, dnat, local_origin)
        if oif != self.target.network.bridge or target_addr not in (
            self.target.address,
            self.target.address6,
        ):
            who = self.view.network_of_bridge(oif)
            elsewhere = f"network {who.name}" if who else oif
            return self.verdict(False, f"it goes to {target_addr} by {elsewhere}, not to {self.target.name}")
        self.hop(f"bridge {oif}", f"delivered by the bridge to {self.target.endpoint.host_ifname}", "bridge")
        return self._deliver(target_addr, target_port, reply_to)

    def _bridged_dnat(self, bridge: str, m: Member) -> Verdict | None:
        """With br_netfilter, a frame DNATed to a member of the bridge it came from is
        bridged back out, port to port: the bridge's own rules apply to it."""
        el = self.el
        port = m.endpoint.host_ifname
        self.hop(
            f"bridge {bridge}",
            "br_netfilter: the DNATed frame goes back out of the bridge it came in by, port to port",
            "bridge",
        )
        if port in el.no_icc_ports:
            obj = words.set_element("no_icc_ports", port, words.BRIDGE)
            self.hop(f"{words.BRIDGE} forward (filter, 0)", f"`iifname @no_icc_ports drop` ({obj})", "drop")
            return self.verdict(False, f"dropped: icc is off, also for hairpin traffic ({obj})")
        if port == self.target.endpoint.host_ifname:
            lk = self.host.link(port)
            if lk is not None and not lk.hairpin:
                self.hop(f"bridge {bridge}", f"{port}'s hairpin mode is off", "drop")
                return self.verdict(
                    False, f"dropped by the bridge: {port} is not in hairpin mode, it sends nothing back out"
                )
        return None

    def _forward(self, iif: str, oif: str, dnat: bool, addr: Addr, port: int) -> Verdict | None:
        el = self.el
        where = f"{words.INET} forward (filter, 0)"
        if iif in el.internal and oif not in el.internal:
            self.hop(where, f"{iif} is internal: `iifname @internal oifname != @internal drop`", "drop")
            return self.verdict(
                False, f"dropped: {iif} belongs to an internal network ({words.set_element('internal', iif)})"
            )
        if oif in el.internal and iif not in el.internal:
            self.hop(where, f"{oif} is internal: `oifname @internal iifname != @internal drop`", "drop")
            return self.verdict(
                False, f"dropped: {oif} belongs to an internal network ({words.set_element('internal', oif)})"
            )
        if oif in el.bridges:
            if dnat:
                self.hop(where, "DNATed: `oifname @bridges ct status dnat accept`", "pass")
                return None
            if (iif, oif) in el.icc_pairs:
                self.hop(where, f"`iifname . oifname @icc_pairs accept` ({iif} . {oif})", "pass")
                return None
            if self.v6 and (addr, self.dst.proto, port) in el.routed6:
                obj = words.routed6(addr, self.dst.proto, port)  # type: ignore[arg-type]
                self.hop(where, f"a routed IPv6 port: `... @routed6 accept` ({obj})", "pass")
                return None
            self.hop(where, "a new packet, not DNATed, into a bridge: `oifname @bridges drop`", "drop")
            return self.verdict(
                False,
                f"dropped by {words.rule(words.INET, 'forward', 'oifname @bridges drop')} "
                f"({words.set_element('bridges', oif)}): only replies and published ports enter a network",
            )
        self.hop(where, f"{oif} is no dockyard bridge: the chain's policy accepts", "pass")
        return None

    def _postrouting(self, src: Addr, oif: str, dnat: bool, local_origin: bool) -> Addr:
        """The source the container sees after postrouting's masquerade."""
        el, host = self.el, self.host
        where = f"{words.INET} postrouting (nat, 100)"
        six = "6" if self.v6 else ""
        bridge_addr = host_address(host, oif, version=6 if self.v6 else 4) or src
        if src.is_loopback and oif in el.bridges:
            loopback = "::1" if self.v6 else "127.0.0.0/8"
            self.hop(
                where,
                f"`ip{six} saddr {loopback} oifname @bridges masquerade`: to {bridge_addr}",
                "masquerade",
            )
            return bridge_addr
        bridge_nets: set = el.bridge_nets6 if self.v6 else el.bridge_nets  # type: ignore[assignment]
        if dnat and any(src in net and b == oif for net, b in bridge_nets):
            net = next(n for n, b in bridge_nets if src in n and b == oif)
            obj = words.set_element(f"bridge_nets{six}", f"{net} . {oif}")
            self.hop(
                where,
                f"hairpin: `ct status dnat ip{six} saddr . oifname @bridge_nets{six} masquerade` ({obj}): "
                f"to {bridge_addr}",
                "masquerade",
            )
            return bridge_addr
        masq_nets: set = el.masq_nets6 if self.v6 else el.masq_nets  # type: ignore[assignment]
        if any(src in net for net in masq_nets) and oif not in el.bridges:
            self.hop(
                where,
                f"`ip{six} saddr @masq_nets{six} oifname != @bridges masquerade`: to {bridge_addr}",
                "masquerade",
            )
            return bridge_addr
        self.hop(where, f"no masquerade: the container sees {src}", "pass")
        return src

    def _host_takes(self, addr: Addr, port: int) -> Verdict:
        d = self.dst
        listener = next(
            (
                sk
                for sk in self.host.sockets
                if sk.proto is d.proto and sk.port == port and sk.address in (ANY6 if self.v6 else ANY, addr)
            ),
            None,
        )
        if listener is not None:
            text = (
                f"a host socket on {_hostport(listener.address, port)}/{d.proto} takes it "
                f"(the host itself, not {self.target.name})"
            )
        else:
            text = f"nothing of the host's waits on {_hostport(addr, port)}/{d.proto}: refused by the host"
        self.hop("input", text, "local")
        return self.verdict(False, f"not DNATed: the host itself gets it; {text}")

    def _deliver(self, addr: Addr, port: int, seen_from: Addr) -> Verdict:
        t, d = self.target, self.dst
        ns = t.sandbox
        assert ns is not None
        eth = ns.link(t.endpoint.ifname)
        target = _hostport(addr, port)
        if eth is None or addr not in {a.ip for a in eth.addresses} | {a.ip for a in eth.addresses6}:
            return self.verdict(False, f"{t.name} has no interface with {addr}", target=target)
        self.hop(f"{t.name}: {eth.name}", f"arrives at {target} from {seen_from}", "deliver")
        back = words.lookup(ns, seen_from)
        if back is None:
            self.hop(f"{t.name}: routing", f"no route back to {seen_from}", "drop")
            return self.verdict(
                True, f"it arrives, but {t.name} has no route back to {seen_from}", target=target
            )
        listener = next(
            (
                sk
                for sk in ns.sockets
                if sk.proto is d.proto and sk.port == port and sk.address in (ANY6 if self.v6 else ANY, addr)
            ),
            None,
        )
        if listener is None:
            what = "a reset (refused)" if d.proto is not Protocol.UDP else "ICMP port unreachable"
            self.hop(f"{t.name}: sockets", f"nothing waits on {port}/{d.proto}: {what}", "refuse")
            return self.verdict(
                True, f"it arrives, but nothing in {t.name} waits on {port}/{d.proto}", target=target
            )
        self.hop(
            f"{t.name}: sockets",
            f"a socket on {_hostport(listener.address, port)}/{d.proto} takes it",
            "answer",
        )
        if self.reply_lost:
            self.hop(f"bridge {t.network.bridge}", self.reply_lost, "drop")
            return self.verdict(True, self.reply_lost, target=target)
        decided = self._decider()
        return self.verdict(True, decided, answered=True, target=target)

    def _decider(self) -> str:
        for h in self.hops:
            if h.effect == "dnat":
                return h.text.split(" by ", 1)[1] if " by " in h.text else h.text
        for h in self.hops:
            if h.effect == "bridge":
                return h.text
        return "routed to it"


def _hostport(addr: Addr, port: int) -> str:
    """addr:port, an IPv6 address in brackets (as Docker prints it)."""
    return f"[{addr}]:{port}" if addr.version == 6 else f"{addr}:{port}"


def reach(view: View, target: Member, port: int, proto: Protocol, sources: list[Addr]) -> list[Verdict]:
    out = []
    for addr in sources:
        source = resolve_source(view, addr)
        for dst in destinations(view, target, port, proto, source):
            out.append(_Walk(view, source, dst, target).run())
    return out

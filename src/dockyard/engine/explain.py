"""The use cases of `dockyard explain`, `trace` and `graph`: read the kernel, join the records.

Reads only: the host's namespace and every running container's, dockyard's
two tables and their elements (this root's), the other tables of the
namespace, the containers' resolv.conf; then hands them to the pure
reasoning (policy/explain, policy/graph.py). Nothing takes the engine's
lock: a person asking sees the kernel as it is, also halfway through a
`run`.

`trace` is the one that changes something, and only for its length: it
adds two tables of its own (`inet` and `bridge dockyard-trace-<mark>-<tag>`)
that switch nftrace on for one flow, watches `nft monitor` and conntrack,
and deletes the tables in a finally. `gc` deletes any of this root's trace
tables that a crash left behind.

The reasoning (policy/explain, policy/graph.py) and the reading of
namespaces (kernel/topology.py) load with the first explain, graph or
trace, not with the daemon: some 0.6 MB of its RSS that most daemons never
use. gc, run at every start, needs neither.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard import digests
from dockyard.errors import InvalidArgument, KernelError, NotFound
from dockyard.kernel import files
from dockyard.kernel import trace as ktrace
from dockyard.model import Container, DriverName, ModeKind, Network, Protocol
from dockyard.policy import rules
from dockyard.policy.rules import trace as trace_rules

if TYPE_CHECKING:
    from dockyard.engine import Engine
    from dockyard.policy import explain as policy
    from dockyard.policy import graph as pgraph

# After the traced flow's first packet, how long more lines (the rest of its path, a
# retransmission) are waited for when no probe tells when the exchange ended.
SETTLE = 1.0
MAX_TRACE_WAIT = 120.0


def _nameservers(text: bytes | None) -> tuple[str, ...]:
    if not text:
        return ()
    out = []
    for line in text.decode(errors="replace").splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            out.append(words[1])
    return tuple(out)


class Explainer:
    """explain, trace, graph and their gc, over one Engine's records and kernel."""

    def __init__(self, engine: Engine) -> None:
        self.e = engine

    # -- reading -------------------------------------------------------------------

    def _netns_owner(self, c: Container) -> Container | None:
        if c.config.network_mode.kind is ModeKind.CONTAINER and c.netns_owner:
            return self.e.store.find_container(c.netns_owner)
        return None

    def view(self) -> policy.View:
        from dockyard.kernel import topology
        from dockyard.observed import Tables
        from dockyard.policy import explain as policy

        store = self.e.store
        networks = tuple(store.networks())
        bridges = tuple(n.bridge for n in networks if n.bridge)
        host = topology.namespace(None, bridges)
        nft = self.e.k.nft
        inet = nft.list_table(rules.FAMILY, rules.TABLE)
        bridge = nft.list_table(rules.BRIDGE_FAMILY, rules.TABLE)
        others = tuple(t for t in ktrace.list_tables() if t not in rules.TABLES)
        elements = rules.parse_listed_elements((inet or []) + (bridge or []), self.e.owner)
        containers = tuple(store.containers())
        by_id = {n.id: n for n in networks}
        members = []
        sandboxes: dict[str, object] = {}
        for c in containers:
            if not c.running:
                continue
            bindings = tuple(b for _, b in store.ports(c.id))
            pin = self.e.paths.sandbox_pin(c.id)
            for ep in store.endpoints(container_id=c.id):
                n = by_id.get(ep.network_id)
                if n is None:
                    continue
                if c.id not in sandboxes:
                    try:
                        sandboxes[c.id] = topology.namespace(pin)
                    except KernelError:
                        sandboxes[c.id] = None
                resolv = files.read(self.e.paths.root, self.e.paths.container_dir(c.id) / "resolv.conf")
                members.append(
                    policy.Member(
                        container=c,
                        endpoint=ep,
                        network=n,
                        bindings=tuple(b for b in bindings),
                        sandbox=sandboxes[c.id],  # type: ignore[arg-type]
                        sandbox_path=str(pin),
                        nameservers=_nameservers(resolv),
                    )
                )
        return policy.View(
            host=host,
            elements=elements,
            tables=Tables(inet, bridge, others),
            networks=networks,
            members=tuple(members),
            containers=containers,
            owner=self.e.owner,
            resolver_pid=self._resolver_pid(),
            inet_rules_ok=inet is not None
            and rules.strip_listing(inet) == rules.expected_listing(rules.FAMILY),
            bridge_rules_ok=bridge is not None
            and rules.strip_listing(bridge) == rules.expected_listing(rules.BRIDGE_FAMILY),
        )

    def _resolver_pid(self) -> int | None:
        text = files.read(self.e.paths.root, self.e.paths.root / "dns.pid")
        value = text.decode(errors="replace").strip() if text else ""
        return int(value) if value.isdigit() else None

    # -- explain -------------------------------------------------------------------

    def explain(
        self,
        ref: str,
        port: tuple[int, Protocol] | None = None,
        source: str = "",
    ) -> policy.Report:
        """A container's path (with a port: from which sources it answers), or a network's."""
        from dockyard.policy import explain as policy

        store = self.e.store
        c = store.find_container(ref)
        if c is None:
            n = store.find_network(ref)
            if n is None:
                raise NotFound(f"no such container or network: {ref}")
            if port is not None or source:
                raise InvalidArgument("--port and --from explain a container's port: name a container")
            return policy.explain_network(self.view(), n)
        owner = self._netns_owner(c)
        view = self.view()
        report = policy.explain_container(view, c, owner)
        if port is None:
            if source:
                raise InvalidArgument("--from needs --port: say which port of the container")
            return report
        number, proto = port
        if c.config.network_mode.kind is ModeKind.HOST:
            report.notes.append(
                f"{c.name} uses the host's namespace: port {number}/{proto} is the host's own, "
                "no element of dockyard's concerns it"
            )
            return report
        targets = view.members_of((owner or c).id)
        if not targets:
            report.notes.append(f"{c.name} has no endpoint: nothing reaches port {number}/{proto}")
            return report
        target = targets[0]
        container_port, note = self._container_port(target, number, proto)
        if note:
            report.notes.append(note)
        sources = [self._source(view, source)] if source else policy.default_sources(view, target)
        for t in targets:
            report.verdicts += policy.reach(view, t, container_port, proto, sources)
        return report

    def _container_port(self, target: policy.Member, number: int, proto: Protocol) -> tuple[int, str]:
        """The container's port meant: itself, or the one a host port of the container publishes."""
        if any(b.container_port == number and b.proto is proto for b in target.bindings):
            return number, ""
        for b in target.bindings:
            if b.host_port == number and b.proto is proto:
                return b.container_port, (
                    f"{number}/{proto} is not a port of {target.name} but a host port it publishes: "
                    f"explaining its container port {b.container_port}/{proto}"
                )
        return number, ""

    def _source(self, view: policy.View, text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        try:
            return ipaddress.ip_address(text)
        except ValueError:
            pass
        c = self.e.store.find_container(text)
        if c is None:
            raise InvalidArgument(f"invalid --from {text!r}: give an IP address or a container's name")
        members = view.members_of(c.id) or view.members_of(c.netns_owner or c.id)
        if not members:
            raise InvalidArgument(
                f"invalid --from {text!r}: {c.name} has no address (not running, or no network)"
            )
        return members[0].primary  # its IPv4 address, or its IPv6 one on an IPv6-only network

    # -- graph ---------------------------------------------------------------------

    def graph(self, ref: str = "") -> pgraph.Graph:
        from dockyard.kernel import topology
        from dockyard.policy import graph as pgraph

        only: Network | None = None
        if ref:
            only = self.e.store.get_network(ref)
            if only.driver is not DriverName.BRIDGE:
                raise InvalidArgument(f"network {only.name} has no bridge to draw (driver {only.driver})")
        view = self.view()
        groups: dict[str, list[Container]] = {}
        host_mode = []
        for c in view.containers:
            if not c.running:
                continue
            kind = c.config.network_mode.kind
            if kind is ModeKind.HOST:
                host_mode.append(c)
                continue
            owner = self._netns_owner(c) if kind is ModeKind.CONTAINER else c
            if owner is None or not owner.running:
                continue
            if owner.config.network_mode.kind is ModeKind.HOST:
                host_mode.append(c)
                continue
            groups.setdefault(owner.id, []).append(c)
        sandboxes = []
        for owner_id, members in groups.items():
            try:
                ns = topology.namespace(self.e.paths.sandbox_pin(owner_id))
            except KernelError:
                continue
            members.sort(key=lambda c: (c.id != owner_id, c.name))
            sandboxes.append(pgraph.Sandbox(ns, tuple(members)))
        return pgraph.build(view.host, sandboxes, host_mode, view.elements, only)

    # -- trace ---------------------------------------------------------------------

    def trace(
        self,
        flow: trace_rules.Flow,
        probe: bool,
        timeout: float,
        on_ready: Callable[[str], None],
    ) -> policy.TraceReport:
        """Trace one flow: the tables, the watchers, a probe or a real packet, and nothing left."""
        from dockyard.policy import explain as policy

        if not 0 < timeout <= MAX_TRACE_WAIT:
            raise InvalidArgument(f"invalid --timeout {timeout:g}: give 1 to {MAX_TRACE_WAIT:g} seconds")
        where = self._probe_namespace(flow.src) if probe else None
        name = trace_rules.table_name(self.e.owner, digests.token_hex(3))
        hooks: dict[tuple[str, str, str], tuple[str, str, int]] = {}
        outcome = ""
        watch = ktrace.Watch(flow.src, flow.dst, flow.port, flow.proto)
        try:
            watch.ready()
            self.e.k.nft.apply(trace_rules.add_commands(name, flow), f"add the trace tables {name}")
            hooks = ktrace.chain_hooks()
            on_ready(name)
            if probe:
                outcome = ktrace.probe(where, flow.src, flow.dst, flow.port, flow.proto)
                self._settle(watch, SETTLE)
            else:
                self._wait_for_packet(watch, timeout)
        finally:
            try:
                self.e.k.nft.apply(
                    trace_rules.delete_commands([(f, name) for f in trace_rules.FAMILIES]),
                    f"delete the trace tables {name}",
                )
            finally:
                watch.close()
        lines = [x for x in map(trace_rules.parse_line, watch.monitor_lines()) if x is not None]
        conntrack = [x for x in map(policy.parse_conntrack, watch.conntrack_lines()) if x is not None]
        report = policy.summarize(str(flow), f"inet {name}, bridge {name}", lines, hooks, conntrack, outcome)
        if not watch.has_conntrack:
            report.notes.append(
                "conntrack's view is missing: install the conntrack tool (apt-get install conntrack)"
            )
        if not lines:
            report.notes.append(
                f"no packet of {flow} was seen within {timeout:g} s"
                if not probe
                else "the probe's packet met no chain: it never reached this namespace's hooks"
            )
        return report

    def _probe_namespace(self, src: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Path | None:
        """Where a probe from src is sent: the host (None) or a container's namespace."""
        from dockyard.kernel import topology

        host = topology.namespace(None)
        own = {a.ip for lk in host.links for a in lk.addresses} | {
            a.ip for lk in host.links for a in lk.addresses6
        }
        if src.is_loopback or src in own:
            return None
        for c in self.e.store.containers():
            if not c.running:
                continue
            for ep in self.e.store.endpoints(container_id=c.id):
                if src in (ep.address.ip if ep.address else None, ep.address6.ip if ep.address6 else None):
                    return self.e.paths.sandbox_pin(c.id)
        raise InvalidArgument(
            f"cannot send a probe from {src}: it is no address of this host or of a running container; "
            "leave out --probe and send a packet from there while trace waits"
        )

    @staticmethod
    def _settle(watch: ktrace.Watch, quiet: float) -> None:
        """Wait until no new monitor line came for `quiet` seconds (bounded)."""
        deadline = time.monotonic() + quiet * 5
        seen = -1
        while time.monotonic() < deadline:
            count = len(watch.monitor_lines())
            if count == seen:
                return
            seen = count
            time.sleep(quiet)

    def _wait_for_packet(self, watch: ktrace.Watch, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(line.startswith("trace id") for line in watch.monitor_lines()):
                self._settle(watch, SETTLE)
                return
            time.sleep(0.05)

    def gc(self) -> list[str]:
        """Delete the trace tables of this root that a crashed trace left behind."""
        stale = [(f, n) for f, n in ktrace.list_tables() if trace_rules.is_owned(n, self.e.owner)]
        if not stale:
            return []
        self.e.k.nft.apply(trace_rules.delete_commands(stale), "delete stale trace tables")
        return [f"nftables table {f} {n} (a trace's)" for f, n in stale]

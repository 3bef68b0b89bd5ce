"""What explain reasons over (a View) and what it answers (a Report): pure data.

A View joins the records (networks, containers, endpoints, bindings: what
dockyard intends) with what was read from the kernel (the host namespace,
each running container's namespace, the two tables and their elements:
what is there). The engine builds it (engine/explain.py); paths.py and
reach.py read it and answer with Claims, Sections and Verdicts, each
naming the kernel objects it rests on. A claim where the records and the
kernel disagree carries the disagreement in `mismatch`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from dockyard.model import Container, Endpoint, Network, PortBinding
from dockyard.observed import Namespace, Tables
from dockyard.policy.rules.elements import Elements


@dataclass(frozen=True)
class Member:
    """One endpoint of a container on a network, from the records, with its namespace as read."""

    container: Container
    endpoint: Endpoint
    network: Network
    bindings: tuple[PortBinding, ...] = ()
    sandbox: Namespace | None = None  # None: not running, or its namespace could not be read
    sandbox_path: str = ""
    # The container's /etc/resolv.conf as bound in (its nameserver lines), when read.
    nameservers: tuple[str, ...] = ()

    @property
    def address(self) -> ipaddress.IPv4Address | None:
        """Its IPv4 address; None on an IPv6-only network (--ipv4=false)."""
        return self.endpoint.address.ip if self.endpoint.address is not None else None

    @property
    def address6(self) -> ipaddress.IPv6Address | None:
        """Its IPv6 address, on a network with IPv6."""
        return self.endpoint.address6.ip if self.endpoint.address6 is not None else None

    @property
    def primary(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        """The address it is named by: its IPv4 one, else (IPv6-only) its IPv6 one."""
        found = self.address or self.address6
        assert found is not None, "an endpoint has an address of one family at least"
        return found

    @property
    def name(self) -> str:
        return self.container.name


@dataclass(frozen=True)
class View:
    """The host as read, and the records it is compared with."""

    host: Namespace
    elements: Elements  # this root's elements, read back from the kernel
    tables: Tables
    networks: tuple[Network, ...]
    members: tuple[Member, ...]  # every running container's endpoints
    containers: tuple[Container, ...] = ()
    owner: str = ""
    resolver_pid: int | None = None
    # Whether the fixed sets, chains and rules of each table are exactly dockyard's.
    inet_rules_ok: bool = True
    bridge_rules_ok: bool = True

    def network_of_bridge(self, bridge: str) -> Network | None:
        return next((n for n in self.networks if n.bridge == bridge and n.bridge), None)

    def members_of(self, container_id: str) -> list[Member]:
        return [m for m in self.members if m.container.id == container_id]


@dataclass
class Claim:
    """One sentence about the path, and the kernel objects it was read from."""

    topic: str
    text: str
    objects: list[str] = field(default_factory=list)
    mismatch: str = ""  # what the records say that the kernel does not show


@dataclass
class Section:
    title: str
    claims: list[Claim] = field(default_factory=list)

    def add(self, topic: str, text: str, objects: list[str] | None = None, mismatch: str = "") -> Claim:
        claim = Claim(topic, text, list(objects or []), mismatch)
        self.claims.append(claim)
        return claim


@dataclass
class Hop:
    """One place the packet passes: a hook and chain, a routing decision, a socket."""

    where: str
    text: str
    effect: str  # pass, drop, dnat, masquerade, route, bridge, deliver, answer, refuse, local


@dataclass
class Verdict:
    """Whether a packet from one source to one destination reaches the container's port."""

    source: str  # how the source was understood: "198.51.100.2 (outside, arrives on up0)"
    source_kind: str  # outside, host, loopback, container, network
    src: str
    dst: str  # the destination the packet is sent to: "198.51.100.1:8080/tcp"
    reaches: bool  # it arrives at the container's interface
    answered: bool  # ... and a socket there waits for it
    decided_by: str  # the element or check that decides
    target: str = ""  # where it arrives after DNAT: "172.17.0.2:80"
    hops: list[Hop] = field(default_factory=list)
    note: str = ""  # a condition the answer rests on


@dataclass
class Report:
    subject: str
    sections: list[Section] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def mismatches(self) -> list[str]:
        return [c.mismatch for s in self.sections for c in s.claims if c.mismatch]

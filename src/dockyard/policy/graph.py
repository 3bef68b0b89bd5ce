"""The host's topology as a graph, and as Graphviz DOT text. Pure.

Nodes are what the kernel showed: the host namespace and each container's
namespace (clusters), their links (bridges, veth ends, VXLAN devices, the
host's other links), the containers in each namespace (a `container:` one
shares its target's cluster, a `host` one sits in the host's), and the
published ports as the map elements give them. Edges: a veth's two ends,
a port to its bridge, a VXLAN device to the link it sends through and to
its remote VTEPs, a published port to the interface it DNATs to.

An overlay network's other hosts are drawn as remote VTEPs: the VXLAN
device's fixed remote, if it has one, and the destinations of its own
forwarding entries (what the overlay driver programs from etcd), read from
the kernel like the rest.

The graph is data first (`Graph`, JSON-able, compared by the tests with
`ip -j link` and the records); `to_dot` renders it. Rendering DOT to SVG or
PNG is Graphviz's, outside this module.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from dockyard.model import Container, ModeKind, Network
from dockyard.observed import Link, Namespace
from dockyard.policy.rules.elements import Elements

_SHAPES = {
    "bridge": ("box", "#cfe2f3"),
    "veth": ("ellipse", "#ffffff"),
    "vxlan": ("hexagon", "#f4cccc"),
    "link": ("ellipse", "#eeeeee"),
    "port": ("note", "#fff2cc"),
    "container": ("component", "#d9ead3"),
    "remote": ("box3d", "#f4cccc"),
}


@dataclass
class Node:
    id: str
    kind: str  # bridge, veth, vxlan, link, port, container, remote
    label: str
    namespace: str = ""  # the cluster: "host" or "net:[INODE]"; "" outside every namespace
    name: str = ""  # the link's name, for links
    index: int = 0  # the link's index in its namespace


@dataclass
class Edge:
    a: str
    b: str
    kind: str  # veth, master, publish, vxlan-dev, vxlan-remote
    label: str = ""


@dataclass
class Cluster:
    id: str
    label: str


@dataclass
class Graph:
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    clusters: list[Cluster] = field(default_factory=list)

    def node(self, node_id: str) -> Node | None:
        return next((n for n in self.nodes if n.id == node_id), None)


@dataclass(frozen=True)
class Sandbox:
    """A container namespace as read, and who is in it."""

    namespace: Namespace
    containers: tuple[Container, ...]


def _link_label(lk: Link) -> str:
    lines = [lk.name]
    if lk.kind == "vxlan" and lk.vxlan is not None:
        v = lk.vxlan
        lines.append(f"vxlan {v.vni} :{v.port}")
        if v.local:
            lines.append(f"local {v.local}")
    lines += [str(a) for a in lk.addresses]
    lines += [str(a) for a in lk.addresses6 if not a.ip.is_link_local]  # a link-local one is every link's
    if lk.kind == "bridge":
        lines.append("bridge")
    if not lk.up:
        lines.append("DOWN")
    return "\n".join(lines)


def _kind(lk: Link) -> str:
    return lk.kind if lk.kind in ("bridge", "veth", "vxlan") else "link"


def build(
    host: Namespace,
    sandboxes: list[Sandbox],
    host_mode: list[Container],
    elements: Elements,
    only: Network | None = None,
) -> Graph:
    """The graph of the host (or of one network: its bridge, its ports and their namespaces)."""
    g = Graph()
    g.clusters.append(Cluster("host", f"host namespace net:[{host.inode}]"))
    wanted_host: set[int] | None = None
    if only is not None:
        bridge = host.link(only.bridge)
        wanted_host = set()
        if bridge is not None:
            wanted_host = {bridge.index} | {lk.index for lk in host.links if lk.master == bridge.index}
    for lk in host.links:
        if lk.name == "lo" or (wanted_host is not None and lk.index not in wanted_host):
            continue
        g.nodes.append(Node(f"host/{lk.index}", _kind(lk), _link_label(lk), "host", lk.name, lk.index))
    for lk in host.links:
        if g.node(f"host/{lk.index}") is None:
            continue
        if lk.master and g.node(f"host/{lk.master}") is not None:
            g.edges.append(Edge(f"host/{lk.index}", f"host/{lk.master}", "master", "port"))
        if lk.vxlan is not None:
            if lk.vxlan.device and g.node(f"host/{lk.vxlan.device}") is not None:
                g.edges.append(
                    Edge(f"host/{lk.index}", f"host/{lk.vxlan.device}", "vxlan-dev", "sends through")
                )
            remotes = [lk.vxlan.remote] if lk.vxlan.remote is not None else []
            for remote in [*remotes, *(p for p in lk.vxlan.peers if p not in remotes)]:
                rid = f"remote/{remote}"
                if g.node(rid) is None:
                    g.nodes.append(Node(rid, "remote", f"remote VTEP\n{remote}"))
                g.edges.append(Edge(f"host/{lk.index}", rid, "vxlan-remote", f"vni {lk.vxlan.vni}"))
    for c in host_mode:
        if only is None:
            g.nodes.append(Node(f"container/{c.id}", "container", f"{c.name}\n--net host", "host"))
    peers = {lk.index: lk for lk in host.links if lk.kind == "veth" and lk.peer_elsewhere}
    eth_of_address: dict[str, str] = {}
    for sb in sandboxes:
        ns = sb.namespace
        cid = f"net:[{ns.inode}]"
        ends = [lk for lk in ns.links if lk.peer_index is not None and lk.peer_elsewhere]
        joined = [lk for lk in ends if lk.peer_index in peers and g.node(f"host/{lk.peer_index}") is not None]
        if only is not None and not joined:
            continue
        names = ", ".join(c.name for c in sb.containers)
        g.clusters.append(Cluster(cid, f"{names}: net:[{ns.inode}]"))
        for c in sb.containers:
            mode = c.config.network_mode
            label = c.name if mode.kind is not ModeKind.CONTAINER else f"{c.name}\n--net {mode}"
            g.nodes.append(Node(f"container/{c.id}", "container", label, cid))
        for lk in ns.links:
            if lk.name == "lo" and len(ns.links) > 1:
                continue
            nid = f"{cid}/{lk.index}"
            g.nodes.append(Node(nid, _kind(lk), _link_label(lk), cid, lk.name, lk.index))
            for a in lk.addresses:
                eth_of_address[str(a.ip)] = nid
            for a6 in lk.addresses6:
                eth_of_address[str(a6.ip)] = nid
        for lk in ends:
            host_end = peers.get(lk.peer_index or -1)
            if host_end is not None and host_end.peer_index == lk.index and g.node(f"host/{host_end.index}"):
                g.edges.append(Edge(f"host/{host_end.index}", f"{cid}/{lk.index}", "veth", "veth pair"))
    published: list[tuple[str, tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]]] = sorted(
        [(f"0.0.0.0:{hp}/{p}", t) for (p, hp), t in elements.publish_any.items()]
        + [(f"{h}:{hp}/{p}", t) for (h, p, hp), t in elements.publish_addr.items()]
        + [(f"[::]:{hp}/{p}", t) for (p, hp), t in elements.publish_any6.items()]
        + [(f"[{h}]:{hp}/{p}", t) for (h, p, hp), t in elements.publish_addr6.items()],
        key=lambda x: x[0],
    )
    for text, (addr, port) in published:
        eth = eth_of_address.get(str(addr))
        if eth is None:
            continue
        pid = f"port/{text}"
        target = f"[{addr}]:{port}" if addr.version == 6 else f"{addr}:{port}"
        g.nodes.append(Node(pid, "port", f"published\n{text}", "host"))
        g.edges.append(Edge(pid, eth, "publish", f"DNAT {target}"))
    return g


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(g: Graph, title: str = "dockyard") -> str:
    out = [f"graph {_quote(title)} {{"]
    out.append('  graph [rankdir=LR, fontname="Helvetica", fontsize=11, compound=true];')
    out.append('  node [fontname="Helvetica", fontsize=10, style=filled];')
    out.append('  edge [fontname="Helvetica", fontsize=9];')

    def node_line(n: Node, indent: str) -> str:
        shape, color = _SHAPES.get(n.kind, ("ellipse", "#ffffff"))
        return f"{indent}{_quote(n.id)} [label={_quote(n.label)}, shape={shape}, fillcolor={_quote(color)}];"

    for i, cl in enumerate(g.clusters):
        out.append(f"  subgraph cluster_{i} {{")
        out.append(f"    label={_quote(cl.label)}; style=rounded; color={_quote('#999999')};")
        out += [node_line(n, "    ") for n in g.nodes if n.namespace == cl.id]
        out.append("  }")
    known = {cl.id for cl in g.clusters}
    out += [node_line(n, "  ") for n in g.nodes if n.namespace not in known]
    styles = {
        "veth": "bold",
        "master": "solid",
        "publish": "dashed",
        "vxlan-dev": "solid",
        "vxlan-remote": "dotted",
    }
    for e in g.edges:
        style = styles.get(e.kind, "solid")
        out.append(f"  {_quote(e.a)} -- {_quote(e.b)} [label={_quote(e.label)}, style={style}];")
    out.append("}")
    return "\n".join(out) + "\n"

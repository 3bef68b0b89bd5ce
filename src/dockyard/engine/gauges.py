"""What the metrics read at each scrape: counts of records, of nft elements, the resolver's counts.

Containers by state, endpoints by network and published ports by protocol
come from the records; elements by table and set come from the kernel
(this root's, as gc reads them); the resolver's query and forward counts
from the file it rewrites (dns/stats.py). Formatting them is the
daemon's (daemon/metrics.py).
"""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

from dockyard.kernel import files
from dockyard.policy import rules

if TYPE_CHECKING:
    from dockyard.engine import Engine

DNS_STATS = "dns-stats.json"  # dockyard.dns.stats.FILE


@dataclass
class Gauges:
    containers: dict[str, int] = field(default_factory=dict)  # by state
    endpoints: dict[str, int] = field(default_factory=dict)  # by network name
    published_ports: dict[str, int] = field(default_factory=dict)  # by protocol
    elements: dict[tuple[str, str], int] = field(default_factory=dict)  # (table, set) -> count
    dns_queries: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (network, proto, outcome)
    dns_forwards: dict[str, int] = field(default_factory=dict)  # answered, failed


def read(engine: Engine) -> Gauges:
    store = engine.store
    g = Gauges()
    states = collections.Counter(str(c.state) for c in store.containers())
    g.containers = {s: states.get(s, 0) for s in ("created", "running", "exited", "removing")}
    names = {n.id: n.name for n in store.networks()}
    per_net = collections.Counter(names.get(ep.network_id, ep.network_id[:12]) for ep in store.endpoints())
    g.endpoints = {name: per_net.get(name, 0) for name in names.values()}
    protos = collections.Counter(str(b.proto) for _, b in store.ports())
    g.published_ports = {p: protos.get(p, 0) for p in ("tcp", "udp", "sctp")}
    for family, name in rules.TABLES:
        listing = engine.k.nft.list_table(family, name) or []
        el = rules.parse_listed_elements(listing, engine.owner)
        for f in fields(el):
            wanted = f.name in rules.BRIDGE_SETS_NAMES
            if wanted == (family == rules.BRIDGE_FAMILY):
                g.elements[(f"{family} {name}", f.name)] = len(getattr(el, f.name))
    raw = files.read(engine.paths.root, engine.paths.root / DNS_STATS)
    if raw:
        try:
            data = json.loads(raw)
            for q in data.get("queries", []):
                key = (str(q["network"]), str(q["protocol"]), str(q["outcome"]))
                g.dns_queries[key] = int(q["count"])
            g.dns_forwards = {k: int(v) for k, v in (data.get("forwards") or {}).items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            pass  # half a file cannot be (it is renamed into place); an odd one counts nothing
    return g

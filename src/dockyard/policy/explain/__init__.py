"""explain's reasoning: the data path in words, a port's reachability, a trace's summary. Pure.

    report.py  what it reasons over (View, Member) and answers (Report, Section, Claim, Verdict)
    words.py   how kernel objects are named (elements as nft prints them, links, routes)
    paths.py   a container's or a network's path: interfaces, peer, bridge, elements, DNS
    claims.py  the claims of a path, one topic each, with their mismatches
    published.py  the claims of the published ports, per family
    sources.py where packets come from (a source by address) and the ways in to a port
    reach.py   whether a packet from a source reaches a port, and what decides
    traced.py  what a traced packet met, in order, and conntrack's view of its NAT

Everything here reads what the engine read from the kernel (observed.py)
and the records (model.py); nothing does I/O.
"""

from dockyard.policy.explain.paths import explain_container, explain_network
from dockyard.policy.explain.reach import reach
from dockyard.policy.explain.report import Claim, Hop, Member, Report, Section, Verdict, View
from dockyard.policy.explain.sources import default_sources, resolve_source
from dockyard.policy.explain.traced import TraceReport, parse_conntrack, summarize

__all__ = [
    "Claim",
    "Hop",
    "Member",
    "Report",
    "Section",
    "TraceReport",
    "Verdict",
    "View",
    "default_sources",
    "explain_container",
    "explain_network",
    "parse_conntrack",
    "reach",
    "resolve_source",
    "summarize",
]

"""What a traced packet met, in order, and what conntrack did with it. Pure.

Input: the monitor's trace lines (policy/rules/trace.py parses them),
every base chain's type, hook and priority (a line names only the table
and chain), `conntrack -E` lines for the flow, and the probe's outcome
when one was sent. Output: a TraceReport, packet by packet (a trace id
is one packet), each step with its hook, and the NAT conntrack recorded.
The steps in the trace tables themselves (which only switch tracing on)
are left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dockyard.observed import ConntrackEntry, TraceLine
from dockyard.policy.rules.trace import PREFIX

Hooks = dict[tuple[str, str, str], tuple[str, str, int]]
_IP_ID = re.compile(r"\bip id (\d+)\b")
_CT_EVENT = re.compile(r"^\s*\[(?P<event>[A-Z]+)\]\s+(?P<proto>\S+)\s+\d+\s+(?P<rest>.*)$")


@dataclass
class TraceStep:
    family: str
    table: str
    chain: str
    hook: str  # "prerouting (nat, -100)", or "jumped to" for a regular chain
    kind: str  # rule, policy, verdict
    rule: str
    verdict: str


@dataclass
class TracedPacket:
    trace_id: str
    packet: str  # its fields as the monitor printed them at the first chain
    steps: list[TraceStep] = field(default_factory=list)
    fate: str = ""  # "dropped by ...", "accepted"


@dataclass
class TraceReport:
    flow: str
    tables: str
    packets: list[TracedPacket] = field(default_factory=list)
    conntrack: list[ConntrackEntry] = field(default_factory=list)
    nat: str = ""
    probe: str = ""
    notes: list[str] = field(default_factory=list)


def parse_conntrack(line: str) -> ConntrackEntry | None:
    """One `conntrack -E` line, or None for anything else."""
    m = _CT_EVENT.match(line)
    if not m:
        return None
    pairs: list[dict[str, str]] = [{}]
    state = ""
    flags: list[str] = []
    for word in m["rest"].split():
        if word.startswith("["):
            flags.append(word.strip("[]"))
            continue
        key, sep, value = word.partition("=")
        if not sep:
            if word.isupper():
                state = word
            continue
        if key in pairs[-1]:
            pairs.append({})
        pairs[-1][key] = value
    if len(pairs) < 2:
        return None
    orig, reply = pairs[0], pairs[1]

    def port(d: dict[str, str], key: str) -> int:
        return int(d.get(key, "0") or 0)

    return ConntrackEntry(
        event=m["event"],
        proto=m["proto"],
        state=state,
        orig_src=orig.get("src", ""),
        orig_dst=orig.get("dst", ""),
        orig_sport=port(orig, "sport"),
        orig_dport=port(orig, "dport"),
        reply_src=reply.get("src", ""),
        reply_dst=reply.get("dst", ""),
        reply_sport=port(reply, "sport"),
        reply_dport=port(reply, "dport"),
        flags=tuple(flags),
    )


def _ip_id(packet: str) -> str:
    m = _IP_ID.search(packet)
    return m.group(1) if m else ""


def _hook(hooks: Hooks, line: TraceLine) -> str:
    found = hooks.get((line.family, line.table, line.chain))
    if found is None:
        return "jumped to"
    ctype, hook, prio = found
    return f"{hook} ({ctype}, {prio})"


def summarize(
    flow: str,
    tables: str,
    lines: list[TraceLine],
    hooks: Hooks,
    conntrack: list[ConntrackEntry],
    probe: str = "",
) -> TraceReport:
    report = TraceReport(flow=flow, tables=tables, conntrack=conntrack, probe=probe)
    # A trace id is not a packet: the kernel derives it from the buffer's address, which a
    # later packet of the flow may reuse, and a packet routed out of a bridge may get a new
    # one. The monitor prints the packet's headers at each hook it enters; their IPv4 id
    # tells one packet from the next (a forwarded packet keeps it).
    packets: list[TracedPacket] = []
    current: dict[str, TracedPacket] = {}  # trace id -> the packet its lines now belong to
    by_ip_id: dict[str, TracedPacket] = {}
    for line in lines:
        pkt = current.get(line.trace_id)
        if line.kind == "packet":
            ident = _ip_id(line.text)
            if ident and ident != _ip_id(pkt.packet if pkt else ""):
                pkt = by_ip_id.get(ident)
                if pkt is None:
                    pkt = by_ip_id[ident] = TracedPacket(line.trace_id, line.text)
                    packets.append(pkt)
                current[line.trace_id] = pkt
        if pkt is None:
            pkt = current[line.trace_id] = TracedPacket(line.trace_id, "")
            packets.append(pkt)
        if line.kind == "packet":
            if not pkt.packet:
                pkt.packet = line.text
            continue
        if line.table.startswith(PREFIX):
            continue  # the trace's own tables: they only switch tracing on
        pkt.steps.append(
            TraceStep(
                line.family, line.table, line.chain, _hook(hooks, line), line.kind, line.text, line.verdict
            )
        )
    for pkt in packets:
        drop = next((s for s in pkt.steps if s.verdict.startswith("drop")), None)
        if drop is not None:
            what = f"`{drop.rule}`" if drop.rule else "the chain's policy"
            pkt.fate = f"dropped in {drop.family} {drop.table} {drop.chain} by {what}"
        elif pkt.steps:
            pkt.fate = "accepted by every chain it met"
        else:
            pkt.fate = "met no chain but the trace's own"
        report.packets.append(pkt)
    report.nat = nat_seen(conntrack)
    return report


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def nat_seen(entries: list[ConntrackEntry]) -> str:
    """What conntrack says was done to the flow: DNAT, SNAT (masquerade), both or none."""
    if not entries:
        return (
            "conntrack recorded no connection for this flow "
            "(a packet dropped before conntrack confirms it leaves none)"
        )
    e = next((x for x in entries if x.event == "NEW"), entries[0])
    parts = []
    if e.dnat:
        parts.append(
            f"DNAT: {_hostport(e.orig_dst, e.orig_dport)} -> {_hostport(e.reply_src, e.reply_sport)}"
        )
    if e.snat:
        parts.append(f"SNAT (masquerade): {e.orig_src} -> {e.reply_dst}")
    done = "; ".join(parts) or "no NAT"
    state = f", {e.state}" if e.state else ""
    flags = f" [{' '.join(e.flags)}]" if e.flags else ""
    return f"{done} ({e.event.lower()}{state}{flags})"

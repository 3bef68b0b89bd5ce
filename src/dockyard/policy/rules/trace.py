"""`dockyard trace`'s tables and what `nft monitor` says about them: pure.

Tracing one flow needs `meta nftrace set 1` on its packets before any
chain of interest sees them. It lives in tables of its own, never in
`inet dockyard`: one `inet` table with a prerouting chain (packets that
arrive) and an output chain (the host's own packets), and one `bridge`
table with a prerouting chain (frames from a container's port, which the
inet hooks may never see), each at priority -350, before dockyard's
guards at -300. Each matches the one flow (source, destination,
protocol, destination port) and nothing else.

The tables are named after the root's owner mark and a random tag
(`dockyard-trace-<mark>-<tag>`): the command deletes them when it ends, and
gc deletes any of this root's that a crash left, never another root's.

The monitor's lines (`trace id ID FAMILY TABLE CHAIN packet: ...`, `...
rule RULE (verdict V)`, `... policy accept`, `... verdict V`) are parsed
here into observed.TraceLine; what they mean for a person is
policy/explain's.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from dockyard.model import Protocol
from dockyard.observed import TraceLine
from dockyard.policy.rules.expr import Json, match, meta, payload

PREFIX = "dockyard-trace-"
PRIORITY = -350
FAMILIES = ("inet", "bridge")
_CHAINS = {"inet": (("pre", "prerouting"), ("out", "output")), "bridge": (("pre", "prerouting"),)}
_LINE = re.compile(
    r"^trace id (?P<id>[0-9a-f]+) (?P<family>\S+) (?P<table>\S+) (?P<chain>\S+) "
    r"(?P<kind>packet:|rule|policy|verdict|unknown)\s*(?P<rest>.*)$"
)
_VERDICT = re.compile(r"\(verdict (?P<verdict>[^)]*)\)\s*$")


@dataclass(frozen=True)
class Flow:
    """One flow to trace: from a source to a destination port."""

    src: ipaddress.IPv4Address | ipaddress.IPv6Address  # both of one family
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int
    proto: Protocol

    def __str__(self) -> str:
        dst = f"[{self.dst}]" if self.dst.version == 6 else str(self.dst)
        return f"{self.src} -> {dst}:{self.port}/{self.proto}"


def owner_part(owner: str) -> str:
    """The mark without its `dy:`: what a table name may hold."""
    return owner.removeprefix("dy:")


def table_name(owner: str, tag: str) -> str:
    return f"{PREFIX}{owner_part(owner)}-{tag}"


def is_owned(name: str, owner: str) -> bool:
    """A trace table of this root's (a crash may have left it)."""
    return name.startswith(f"{PREFIX}{owner_part(owner)}-")


def _flow_match(flow: Flow) -> list[Json]:
    ip = "ip6" if flow.dst.version == 6 else "ip"
    return [
        match(payload(ip, "saddr"), str(flow.src)),
        match(payload(ip, "daddr"), str(flow.dst)),
        match(meta("l4proto"), str(flow.proto)),
        match(payload("th", "dport"), flow.port),
    ]


def add_commands(name: str, flow: Flow) -> list[Json]:
    """The trace tables for one flow, as one transaction."""
    out: list[Json] = []
    for family in FAMILIES:
        out.append({"add": {"table": {"family": family, "name": name}}})
        for chain, hook in _CHAINS[family]:
            out.append(
                {
                    "add": {
                        "chain": {
                            "family": family,
                            "table": name,
                            "name": chain,
                            "type": "filter",
                            "hook": hook,
                            "prio": PRIORITY,
                            "policy": "accept",
                        }
                    }
                }
            )
            expr = [*_flow_match(flow), {"mangle": {"key": meta("nftrace"), "value": 1}}]
            out.append({"add": {"rule": {"family": family, "table": name, "chain": chain, "expr": expr}}})
    return out


def delete_commands(names: list[tuple[str, str]]) -> list[Json]:
    """Delete these (family, name) tables; `add` first, so one already gone is no error."""
    out: list[Json] = []
    for family, name in names:
        table = {"table": {"family": family, "name": name}}
        out += [{"add": table}, {"delete": table}]
    return out


def parse_line(line: str) -> TraceLine | None:
    """One line of `nft monitor`, or None for a line that is not a trace's."""
    m = _LINE.match(line.rstrip("\n"))
    if not m:
        return None
    kind = m["kind"].rstrip(":")
    rest = m["rest"].strip()
    verdict = ""
    if kind == "rule":
        v = _VERDICT.search(rest)
        if v:
            verdict = v["verdict"]
            rest = rest[: v.start()].strip()
    elif kind in ("policy", "verdict"):
        verdict, rest = rest, ""
    return TraceLine(m["id"], m["family"], m["table"], m["chain"], kind, rest, verdict)

"""Neighbours: dockyard's rules in the iptables filter table (iptables-nft's `ip filter`).

Pure. Where another tool (Docker does this) set the iptables FORWARD policy
to DROP, a packet must also be accepted there: one pair of rules per bridge,
marked with the owner's comment so that only ours are ever removed. The same
pair, as iptables-legacy arguments, for a host still on the legacy backend
(kernel/xtables.py applies them; nftables cannot see that chain).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from dockyard.policy.rules.expr import Json, match, meta

IPTABLES_FORWARD = ("ip", "filter", "FORWARD")


def forward_accept_commands(bridge: str, owner: str) -> list[Json]:
    family, table, chain = IPTABLES_FORWARD
    return [
        {
            "insert": {
                "rule": {
                    "family": family,
                    "table": table,
                    "chain": chain,
                    "comment": f"{owner} {bridge}",
                    "expr": [match(meta(direction), bridge), {"accept": None}],
                }
            }
        }
        for direction in ("oifname", "iifname")
    ]


def forward_rules_of(listing: list[Json], owner: str) -> dict[str, list[int]]:
    """The handles of an owner's FORWARD rules, by bridge."""
    out: dict[str, list[int]] = {}
    for obj in listing:
        rule = obj.get("rule")
        if not rule:
            continue
        owner_part, _, bridge = str(rule.get("comment", "")).partition(" ")
        if owner_part == owner and bridge:
            out.setdefault(bridge, []).append(int(rule["handle"]))
    return out


def forward_policy_drop(listing: list[Json]) -> bool:
    return any(obj.get("chain", {}).get("policy") == "drop" for obj in listing)


def delete_rule_commands(handles: Iterable[int]) -> list[Json]:
    family, table, chain = IPTABLES_FORWARD
    return [
        {"delete": {"rule": {"family": family, "table": table, "chain": chain, "handle": h}}} for h in handles
    ]


# -- iptables-legacy: the same pair of rules, as `iptables -S` prints them -----


def legacy_accept_specs(bridge: str, owner: str) -> list[list[str]]:
    """Arguments after `-I FORWARD`, in the order to insert them (as forward_accept_commands)."""
    return [
        [flag, bridge, "-m", "comment", "--comment", f"{owner} {bridge}", "-j", "ACCEPT"]
        for flag in ("-o", "-i")
    ]


def legacy_policy_drop(lines: Iterable[str]) -> bool:
    return "-P FORWARD DROP" in (line.strip() for line in lines)


def legacy_rules_of(lines: Iterable[str], owner: str) -> dict[str, list[list[str]]]:
    """An owner's rules in `iptables-legacy -S FORWARD`, by bridge, as arguments for `-D FORWARD`."""
    out: dict[str, list[list[str]]] = {}
    for line in lines:
        if not line.startswith("-A FORWARD "):
            continue
        try:
            words = shlex.split(line)[2:]
        except ValueError:
            continue  # not a rule of ours, whatever it is
        if "--comment" not in words or words.index("--comment") + 1 >= len(words):
            continue
        owner_part, _, bridge = words[words.index("--comment") + 1].partition(" ")
        if owner_part == owner and bridge:
            out.setdefault(bridge, []).append(words)
    return out

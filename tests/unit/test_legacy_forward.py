"""The iptables-legacy FORWARD rules as arguments, and reading ours back from `iptables -S`."""

from __future__ import annotations

import shlex

from dockyard.policy.rules.forward import legacy_accept_specs, legacy_policy_drop, legacy_rules_of

OWNER = "dy:15dacdc41243"


def _as_listed(spec: list[str]) -> str:
    """What `iptables-legacy -S FORWARD` prints for a rule added with these arguments."""
    return "-A FORWARD " + " ".join(f'"{w}"' if " " in w else w for w in spec)


def test_our_rules_read_back_as_the_arguments_that_delete_them() -> None:
    specs = legacy_accept_specs("dockyard0", OWNER)
    assert [s[:2] for s in specs] == [["-o", "dockyard0"], ["-i", "dockyard0"]]
    listing = [
        "-P FORWARD DROP",
        "-A FORWARD -i eth0 -j DROP",  # someone else's
        '-A FORWARD -o dy-1 -m comment --comment "dy:000000000000 dy-1" -j ACCEPT',  # another root's
        '-A FORWARD -m comment --comment "unbalanced -j ACCEPT',  # unparsable: not ours
        *(_as_listed(s) for s in reversed(specs)),  # -I puts the last inserted first
    ]
    assert legacy_rules_of(listing, OWNER) == {"dockyard0": list(reversed(specs))}
    assert legacy_rules_of(listing, "dy:000000000000") == {"dy-1": [shlex.split(listing[2])[2:]]}


def test_the_policy_is_read_from_its_line() -> None:
    assert legacy_policy_drop(["-P FORWARD DROP", "-A FORWARD -j ACCEPT"])
    assert not legacy_policy_drop(["-P FORWARD ACCEPT", '-A FORWARD -m comment --comment "-P FORWARD DROP"'])

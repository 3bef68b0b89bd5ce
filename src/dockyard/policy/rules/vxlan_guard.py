"""The VXLAN guard: VXLAN to this host's VTEP only from the cluster's live VTEPs, as data.

A VXLAN packet carries a whole Ethernet frame; whoever can send UDP to port
4789 of a VTEP can put frames on an overlay network with any source
address and MAC (CVE-2023-28840/28841/28842 were Docker's). The overlay
driver's table drops, before conntrack, every packet to this host's VTEP
and port 4789 whose source is not in `vteps`, the set of the other live
hosts' VTEPs, which the driver keeps equal to the cluster's view. The
table is the driver's alone (never `inet dockyard`): it exists while an
overlay network does on this host.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

FAMILY = "ip"
TABLE = "dockyard_vxlan"
SET = "vteps"
PORT = 4789


def table_text(vtep: ipaddress.IPv4Address, vteps: Iterable[ipaddress.IPv4Address]) -> str:
    """The whole table, made anew (the set's elements included) in one transaction."""
    return (
        f"table {FAMILY} {TABLE}\n"
        f"delete table {FAMILY} {TABLE}\n"
        f"table {FAMILY} {TABLE} {{\n"
        f"  set {SET} {{ type ipv4_addr; }}\n"
        "  chain guard {\n"
        "    type filter hook prerouting priority -300; policy accept;\n"
        f"    ip daddr {vtep} udp dport {PORT} ip saddr != @{SET} counter drop\n"
        "  }\n"
        "}\n" + set_text(vteps)
    )


def set_text(vteps: Iterable[ipaddress.IPv4Address]) -> str:
    """Replace the set's elements, in one transaction."""
    elements = ", ".join(str(a) for a in sorted(vteps))
    text = f"flush set {FAMILY} {TABLE} {SET}\n"
    if elements:
        text += f"add element {FAMILY} {TABLE} {SET} {{ {elements} }}\n"
    return text


def delete_text() -> str:
    return f"table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n"

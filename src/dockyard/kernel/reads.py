"""Reads of the kernel that CNI results and CHECK need: nothing here changes anything.

- `link_mac`: a host link's MAC by one ioctl (SIOCGIFHWADDR), cheaper on
  the path of every ADD than a netlink dump under the host handle's lock;
- `is_network_namespace`: whether a path is a network namespace (NS_GET_NSTYPE),
  which a stat alone cannot tell from another kind of namespace file;
- `sandbox_interface`: what one interface in a sandbox looks like (MAC, up,
  IPv4 addresses) and the IPv4 routes of the sandbox's main table, read
  through a netlink socket opened in that namespace.

Comparing what was read with what should be is the caller's (attachment_checks.py).
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from dockyard.kernel.netlink import RT_TABLE_MAIN, sandbox_netlink

SIOCGIFHWADDR = 0x8927
NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3), Linux 4.11
CLONE_NEWNET = 0x40000000
IFF_UP = 1

# (destination, gateway or None), of either family.
Route = tuple[
    ipaddress.IPv4Network | ipaddress.IPv6Network, ipaddress.IPv4Address | ipaddress.IPv6Address | None
]


def link_mac(name: str) -> str:
    """The MAC of a link in this (the host's) namespace, or "" if it is gone."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            raw = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return ""
    return ":".join(f"{b:02x}" for b in raw[18:24])


def is_network_namespace(path: str | Path) -> bool:
    """True when path opens as a network namespace (a pin, /proc/PID/ns/net, ...)."""
    try:
        fd = os.open(str(path), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET
    except OSError:  # ENOTTY: not a namespace file at all
        return False
    finally:
        os.close(fd)


@dataclass(frozen=True)
class SandboxInterface:
    mac: str
    up: bool
    addresses: frozenset[ipaddress.IPv4Interface | ipaddress.IPv6Interface]
    # The sandbox's routes of the main table (both families), whatever their device.
    routes: frozenset[Route]


def sandbox_interface(netns: Path, ifname: str) -> SandboxInterface | None:
    """The interface ifname in the sandbox at netns, or None when it has none of that name."""
    with sandbox_netlink(netns) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return None
        idx = found[0]
        (link,) = ipr.get_links(idx)
        addresses = frozenset(
            ipaddress.ip_interface(f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}")
            for family in (socket.AF_INET, socket.AF_INET6)
            for m in ipr.get_addr(family=family, index=idx)
        )
        routes: set[Route] = set()
        for family, anywhere in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            for m in ipr.get_routes(family=family, table=RT_TABLE_MAIN):
                dst = m.get_attr("RTA_DST") or anywhere
                gw = m.get_attr("RTA_GATEWAY")
                routes.add(
                    (
                        ipaddress.ip_network(f"{dst}/{m['dst_len']}", strict=False),
                        ipaddress.ip_address(gw) if gw else None,
                    )
                )
    return SandboxInterface(
        mac=str(link.get_attr("IFLA_ADDRESS") or "").lower(),
        up=bool(link["flags"] & IFF_UP),
        addresses=addresses,
        routes=frozenset(routes),
    )

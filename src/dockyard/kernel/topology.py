"""Reads of a network namespace for explain, graph and metrics: nothing here changes anything.

`namespace(path)` gives one namespace as `observed.Namespace`: its nsfs
inode, its links (kind, MAC, state, master, a veth's peer index, a bridge
port's hairpin mode, a VXLAN device's settings), IPv4 and IPv6 addresses, the
IPv4 and IPv6 routes of the main table, the sockets waiting for traffic (TCP and SCTP listeners,
bound UDP sockets, from /proc/thread-self/net/*), and the sysctls that
decide a path (ip_forward and IPv6's forwarding, route_localnet per
interface, br_netfilter's bridge-nf-call-iptables and -ip6tables). `path=None` reads the calling thread's own
namespace: in the daemon, the host's.

Each read opens its own netlink socket in the namespace and closes it: the
daemon's host handle (netlink.py) is for changes, under its lock, and a
read for a person need not wait for a `run`. What the reads mean is
policy/explain's.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyroute2.iproute.linux import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from dockyard.errors import KernelError
from dockyard.kernel import netns, sysctl
from dockyard.model import Protocol
from dockyard.observed import Link, Namespace, Route, Route6, Socket, Vxlan

RT_TABLE_MAIN = 254
IFF_UP = 1
TCP_LISTEN = "0A"
# /proc/net files of waiting sockets: TCP and SCTP listeners, UDP sockets bound to a port.
_SOCKET_FILES = (
    ("tcp", Protocol.TCP),
    ("udp", Protocol.UDP),
    ("tcp6", Protocol.TCP),
    ("udp6", Protocol.UDP),
)


@contextlib.contextmanager
def _inside(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    try:
        with netns.entered(path):
            yield
    except OSError as e:
        raise KernelError(f"cannot enter the network namespace {path}: {e.strerror}") from e


def _hex_address(text: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """`0100007F:1F90` of /proc/net/tcp: an address in host order and a port; tcp6's
    address is four such 32-bit words."""
    addr, port = text.split(":")
    raw = bytes.fromhex(addr)
    if len(raw) == 16:
        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        return ipaddress.IPv6Address(words), int(port, 16)
    return ipaddress.IPv4Address(raw[::-1]), int(port, 16)


def _sockets() -> tuple[Socket, ...]:
    """The waiting sockets of the calling thread's namespace."""
    out: set[Socket] = set()
    for name, proto in _SOCKET_FILES:
        try:
            lines = Path(f"/proc/thread-self/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4:
                continue
            # TCP: listeners only; UDP: any socket bound to a port (its state is 07, "closed").
            if proto is Protocol.TCP and fields[3] != TCP_LISTEN:
                continue
            address, port = _hex_address(fields[1])
            if port:
                out.add(Socket(proto, address, port))
    try:
        # SCTP listeners: ENDPT lines, "LPORT" is the 6th field and the addresses follow.
        lines = Path("/proc/thread-self/net/sctp/eps").read_text().splitlines()[1:]
    except OSError:
        lines = []
    for line in lines:
        fields = line.split()
        with contextlib.suppress(ValueError, IndexError):
            port = int(fields[5])
            for text in fields[8:] or ["0.0.0.0"]:
                with contextlib.suppress(ValueError):
                    out.add(Socket(Protocol.SCTP, ipaddress.IPv4Address(text), port))
    return tuple(sorted(out, key=lambda s: (s.proto, s.port, int(s.address))))


def _sysctl_flag(key: str) -> bool:
    try:
        return sysctl.read(key) == "1"
    except KernelError:
        return False


def _vtep_peers(ipr: IPRoute, index: int) -> tuple[ipaddress.IPv4Address, ...]:
    """The destinations of a VXLAN device's own forwarding entries: the VTEPs it sends to."""
    peers: set[ipaddress.IPv4Address] = set()
    with contextlib.suppress(NetlinkError):
        for m in ipr.fdb("dump", ifindex=index):
            dst = m.get_attr("NDA_DST")
            if m["ifindex"] == index and dst and dst != "0.0.0.0":
                peers.add(ipaddress.IPv4Address(dst))
    return tuple(sorted(peers))


def _vxlan(info: Any, peers: tuple[ipaddress.IPv4Address, ...] = ()) -> Vxlan | None:
    data = info.get_attr("IFLA_INFO_DATA") if info else None
    if data is None:
        return None
    remote = data.get_attr("IFLA_VXLAN_GROUP")
    local = data.get_attr("IFLA_VXLAN_LOCAL")
    return Vxlan(
        vni=int(data.get_attr("IFLA_VXLAN_ID") or 0),
        port=int(data.get_attr("IFLA_VXLAN_PORT") or 4789),
        local=ipaddress.IPv4Address(local) if local else None,
        remote=ipaddress.IPv4Address(remote) if remote and remote != "0.0.0.0" else None,
        device=data.get_attr("IFLA_VXLAN_LINK") or None,
        peers=peers,
    )


def _links(ipr: IPRoute) -> tuple[Link, ...]:
    addresses: dict[int, list[ipaddress.IPv4Interface]] = {}
    for m in ipr.get_addr(family=socket.AF_INET):
        addresses.setdefault(m["index"], []).append(
            ipaddress.IPv4Interface(f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}")
        )
    addresses6: dict[int, list[ipaddress.IPv6Interface]] = {}
    for m in ipr.get_addr(family=socket.AF_INET6):
        addresses6.setdefault(m["index"], []).append(
            ipaddress.IPv6Interface(f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}")
        )
    hairpin: dict[int, bool] = {}
    with contextlib.suppress(NetlinkError):
        for m in ipr.get_links(family=socket.AF_BRIDGE):
            info = m.get_attr("IFLA_PROTINFO")
            if info is not None and m.get_attr("IFLA_MASTER"):
                hairpin[m["index"]] = bool(info.get_attr("IFLA_BRPORT_MODE"))
    out = []
    for m in ipr.get_links():
        info = m.get_attr("IFLA_LINKINFO")
        kind = str(info.get_attr("IFLA_INFO_KIND") or "") if info else ""
        idx = m["index"]
        peer = m.get_attr("IFLA_LINK") if kind == "veth" else None
        out.append(
            Link(
                index=idx,
                name=str(m.get_attr("IFLA_IFNAME")),
                kind=kind,
                mac=str(m.get_attr("IFLA_ADDRESS") or "").lower(),
                up=bool(m["flags"] & IFF_UP),
                mtu=int(m.get_attr("IFLA_MTU") or 0),
                master=m.get_attr("IFLA_MASTER") or None,
                peer_index=int(peer) if peer else None,
                peer_elsewhere=m.get_attr("IFLA_LINK_NETNSID") is not None,
                alias=str(m.get_attr("IFLA_IFALIAS") or ""),
                addresses=tuple(addresses.get(idx, ())),
                addresses6=tuple(addresses6.get(idx, ())),
                hairpin=hairpin.get(idx) if m.get_attr("IFLA_MASTER") else None,
                vxlan=_vxlan(info, _vtep_peers(ipr, idx)) if kind == "vxlan" else None,
            )
        )
    return tuple(out)


def _routes(ipr: IPRoute, names: dict[int, str]) -> tuple[Route, ...]:
    out = []
    for m in ipr.get_routes(family=socket.AF_INET, table=RT_TABLE_MAIN):
        dst = m.get_attr("RTA_DST") or "0.0.0.0"
        gw = m.get_attr("RTA_GATEWAY")
        src = m.get_attr("RTA_PREFSRC")
        out.append(
            Route(
                dst=ipaddress.IPv4Network(f"{dst}/{m['dst_len']}", strict=False),
                dev=names.get(m.get_attr("RTA_OIF"), ""),
                gateway=ipaddress.IPv4Address(gw) if gw else None,
                prefsrc=ipaddress.IPv4Address(src) if src else None,
            )
        )
    return tuple(out)


def _routes6(ipr: IPRoute, names: dict[int, str]) -> tuple[Route6, ...]:
    out = []
    for m in ipr.get_routes(family=socket.AF_INET6, table=RT_TABLE_MAIN):
        dev = names.get(m.get_attr("RTA_OIF"), "")
        if not dev or m["type"] != 1:  # unicast routes with a device only (no multipath, no reject)
            continue
        dst = m.get_attr("RTA_DST") or "::"
        gw = m.get_attr("RTA_GATEWAY")
        src = m.get_attr("RTA_PREFSRC")
        out.append(
            Route6(
                dst=ipaddress.IPv6Network(f"{dst}/{m['dst_len']}", strict=False),
                dev=dev,
                gateway=ipaddress.IPv6Address(gw) if gw else None,
                prefsrc=ipaddress.IPv6Address(src) if src else None,
            )
        )
    return tuple(out)


def namespace(path: Path | None = None, localnet_of: tuple[str, ...] = ()) -> Namespace:
    """The namespace at path (a pin, /proc/PID/ns/net), or the calling thread's own.

    `localnet_of` names the interfaces whose route_localnet is read.
    """
    with _inside(path):
        try:
            inode = os.stat("/proc/thread-self/ns/net").st_ino
            ipr = IPRoute()
        except OSError as e:
            raise KernelError(f"cannot read the network namespace {path or 'of the host'}: {e}") from e
        try:
            links = _links(ipr)
            routes = _routes(ipr, {lk.index: lk.name for lk in links})
            routes6 = _routes6(ipr, {lk.index: lk.name for lk in links})
        except NetlinkError as e:
            raise KernelError(f"cannot read the links of {path or 'the host'}: {e}") from e
        finally:
            ipr.close()
        names = {lk.name for lk in links}
        localnet = tuple(
            name
            for name in localnet_of
            if name in names and _sysctl_flag(sysctl.interface_key(name, "route_localnet"))
        )
        return Namespace(
            inode=inode,
            links=links,
            routes=routes,
            sockets=_sockets(),
            forwarding=_sysctl_flag("net.ipv4.ip_forward"),
            route_localnet=localnet,
            bridge_nf=_sysctl_flag("net.bridge.bridge-nf-call-iptables"),
            routes6=routes6,
            forwarding6=_sysctl_flag("net.ipv6.conf.all.forwarding"),
            bridge_nf6=_sysctl_flag("net.bridge.bridge-nf-call-ip6tables"),
        )

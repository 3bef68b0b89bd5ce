"""Typed verbs over netlink for the overlay driver: VXLAN devices, their FDB and neighbour entries.

A VXLAN device of dockyard's is made with learning off (no entry comes
from what arrives: a forged source cannot point a MAC at itself) and
`proxy` (the device answers ARP, and IPv6 neighbour solicitations, for
the addresses in its neighbour table, so no broadcast nor NDP multicast
crosses the underlay), and without any all-zeros FDB
entry: nothing is flooded. Every remote MAC is a static FDB entry
(`self`, `permanent`, with the VTEP as `dst`) set by `replace`: `append`
would add a second destination to the entry and keep the old VTEP, which
is how a MAC that moved hosts keeps going to the old one. Entries are set,
removed and listed, and the device's index looked up, over a socket of
kernel/neighnl.py's (an event's few entries in one write); the devices
are made and removed through pyroute2.
"""

from __future__ import annotations

import errno
import ipaddress
import os
from collections.abc import Mapping
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from dockyard.errors import Conflict, KernelError
from dockyard.kernel.neighnl import Entry, NeighSocket
from dockyard.kernel.netlink import Netlink

VXLAN_PORT = 4789
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _fail(e: NetlinkError, what: str) -> KernelError:
    return KernelError(f"cannot {what}: {e.args[1] if len(e.args) > 1 else e}")


class Vxlan:
    """VXLAN devices in the namespace of a Netlink handle (the host's)."""

    def __init__(self, netlink: Netlink) -> None:
        self.nl = netlink
        # Device name -> index, as last looked up (_index).
        self._indexes: dict[str, int] = {}
        # Made here, where the daemon makes its kernel handles: in the host's namespace.
        self._entries = NeighSocket()

    @property
    def _ipr(self) -> Any:
        return self.nl._ipr

    def ensure(
        self, name: str, vni: int, local: ipaddress.IPv4Address, bridge: str, mtu: int, owner: str
    ) -> bool:
        """Create the device if missing, on the bridge, up. True when created here."""
        created = False
        with self.nl._lock:
            bridge_idx = self.nl.index(bridge)
            if bridge_idx is None:
                raise KernelError(f"bridge {bridge} does not exist")
            idx = self.nl.index(name)
            if idx is None:
                try:
                    self._ipr.link(
                        "add",
                        ifname=name,
                        kind="vxlan",
                        vxlan_id=vni,
                        vxlan_local=str(local),
                        vxlan_port=VXLAN_PORT,
                        vxlan_learning=0,
                        vxlan_proxy=1,
                        mtu=mtu,
                    )
                except NetlinkError as e:
                    if e.code == errno.EEXIST:
                        raise Conflict(
                            f"cannot create VXLAN device {name} (id {vni}): a device with this id "
                            "and port exists already on this host"
                        ) from e
                    raise _fail(e, f"create VXLAN device {name} (id {vni})") from e
                created = True
                idx = self.nl.index(name)
                if idx is None:
                    raise KernelError(f"VXLAN device {name} vanished while being created")
                try:
                    self._ipr.link("set", index=idx, ifalias=owner)
                except NetlinkError as e:
                    raise _fail(e, f"mark VXLAN device {name}") from e
            elif self.nl._alias(idx) != owner:
                raise Conflict(f"a link named {name} already exists and is not this dockyard root's")
            try:
                self._ipr.link("set", index=idx, master=bridge_idx, state="up")
            except NetlinkError as e:
                raise _fail(e, f"attach {name} to {bridge}") from e
            self._indexes[name] = idx
        return created

    def delete(self, name: str, owner: str) -> bool:
        with self.nl._lock:
            idx = self.nl.index(name)
            if idx is None or self.nl._alias(idx) != owner:
                return False
        self._indexes.pop(name, None)
        return self.nl.delete_link(name)

    # -- remote endpoints ----------------------------------------------------------------------

    def _index(self, name: str, fresh: bool = False) -> int | None:
        """The device's index, kept after the first lookup (an event's entries need no lookup
        of the device each: see apply for a device made again)."""
        if not fresh:
            idx = self._indexes.get(name)
            if idx is not None:
                return idx
        idx = self._entries.index(name)
        if idx is None:
            self._indexes.pop(name, None)
        else:
            self._indexes[name] = idx
        return idx

    def apply(
        self,
        name: str,
        fdb: Mapping[str, ipaddress.IPv4Address | None],
        neighbours: Mapping[Address, str | None],
    ) -> None:
        """Set these entries of the device, and remove those mapped to None: FDB entries
        (MAC -> VTEP, by replace) and permanent neighbour entries (address -> MAC). Only
        these: nothing is listed. A removed FDB entry goes whatever VTEP it pointed to."""
        entries = [Entry(vtep is not None, mac=mac, vtep=vtep) for mac, vtep in fdb.items()]
        entries += [Entry(mac is not None, mac=mac, address=a) for a, mac in neighbours.items()]
        idx = self._index(name) if entries else None
        if idx is None:
            return
        failed = self._entries.change(idx, entries)
        if any(code == errno.ENODEV for _, code in failed):
            # The index kept names no device any more: the device was deleted, maybe made again.
            again = self._index(name, fresh=True)
            if again is None or again == idx:
                return
            failed = self._entries.change(again, entries)
        for e, code in failed:
            if not e.set and code in (errno.ENOENT, errno.ESRCH):
                continue  # already gone
            what = (
                (f"point {e.mac} to {e.vtep}" if e.set else f"remove {e.mac}")
                if e.fdb
                else (f"add neighbour {e.address}" if e.set else f"remove neighbour {e.address}")
            )
            raise KernelError(f"cannot {what} on {name}: {os.strerror(code)}")

    def fdb(self, name: str) -> dict[str, ipaddress.IPv4Address]:
        """The device's own (`self`) entries with a destination: MAC -> VTEP."""
        idx = self._index(name, fresh=True)
        return {} if idx is None else self._entries.fdb(idx)

    def neighbours(self, name: str) -> dict[Address, str]:
        """The device's permanent neighbour entries, ARP's and NDP's: address -> MAC."""
        idx = self._index(name, fresh=True)
        return {} if idx is None else self._entries.neighbours(idx)

    def mtu_of_address(self, address: ipaddress.IPv4Address) -> int | None:
        """The MTU of the link that holds address (the underlay's), None when no link has it."""
        for dev, iface in self.nl.addresses():
            if iface.ip == address:
                with self.nl._lock:
                    idx = self.nl.index(dev)
                    if idx is None:
                        return None
                    (msg,) = self._ipr.get_links(idx)
                return int(msg.get_attr("IFLA_MTU"))
        return None

    def address_of(self, ifname: str) -> ipaddress.IPv4Address | None:
        """The first IPv4 address of a link (--cluster-advertise IFACE)."""
        for dev, iface in self.nl.addresses():
            if dev == ifname:
                return iface.ip
        return None

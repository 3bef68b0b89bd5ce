"""The overlay driver: a global network's host side on this host, over VXLAN.

Per network and host: the bridge driver's bridge (the same name, gateway
address and MAC on every host, so a container's gateway is its own host's,
masqueraded there) with its firewall elements, plus a VXLAN device
(`vx-<12 hex of the network id>`, the network's VNI, dstport 4789, local =
this host's VTEP, learning off, proxy ARP, nothing flooded: kernel/vxlan.py)
as one more port of the bridge. Endpoints join as on a bridge network.

Remote endpoints are what the cluster's view (the watch's cache of etcd)
says: a static FDB entry (MAC -> VTEP, by replace) and a permanent
neighbour entry per address (address -> MAC, answered by the device's
proxy ARP, and for an IPv6 address by its proxy NDP: the neighbour
solicitation never crosses the underlay) each.
The driver is the view's listener for endpoints: an endpoint added, updated
or removed sets or removes the entries of its MAC and its addresses only,
each as the view says now (the newest remote endpoint holding it: a MAC
that moved host is re-pointed, not removed), without listing the tables,
so each event costs the same whatever the network holds. A host gone, and
the daemon's periodic reconcile, make the network's whole tables match the
view again (`sync`), so an entry lost or left stale is repaired.
A network is programmed from the view when it is made, before any local
container can send.

The driver knows the view only by the queries below (it never imports the
cluster module: drivers sit beside it), and never touches the store.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Iterable
from typing import Any, Protocol

from dockyard.drivers.bridge import BridgeDriver
from dockyard.errors import DockyardError, KernelError
from dockyard.kernel import Kernel
from dockyard.kernel.vxlan import Vxlan
from dockyard.model import Network
from dockyard.policy.rules import vxlan_guard

log = logging.getLogger(__name__)

VNI_OPTION = "com.docker.network.driver.overlay.vxlanid_list"
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14).
VXLAN_OVERHEAD = 50


class RemoteEndpoints(Protocol):
    """What the driver reads of the cluster's view (cluster/view.py's ClusterView)."""

    def fdb(self, network_id: str) -> dict[str, ipaddress.IPv4Address]: ...

    def neighbours(self, network_id: str) -> dict[ipaddress.IPv4Address | ipaddress.IPv6Address, str]: ...

    def entries(
        self, network_id: str, macs: Iterable[str], addresses: Iterable[Address]
    ) -> tuple[dict[str, ipaddress.IPv4Address], dict[Address, str]]: ...

    def vteps(self) -> set[ipaddress.IPv4Address]: ...

    def wait_ready(self, timeout: float) -> bool: ...


def vxlan_name(network: Network | str) -> str:
    network_id = network if isinstance(network, str) else network.id
    return "vx-" + network_id[:12]


def vni_of(network: Network) -> int:
    value = dict(network.options).get(VNI_OPTION, "")
    if not value.isdigit():
        raise KernelError(f"network {network.name} has no VXLAN id")
    return int(value)


class OverlayDriver(BridgeDriver):
    def __init__(
        self, kernel: Kernel, owner: str, vtep: ipaddress.IPv4Address, view: RemoteEndpoints
    ) -> None:
        super().__init__(kernel, owner)
        self.vtep = vtep
        self.view = view
        self.vxlan = Vxlan(kernel.netlink)
        # The watch's thread and the monitor's reconcile both program the tables.
        self._tables = threading.Lock()
        # Network ids whose devices exist here (the listener ignores the others).
        self._here: set[str] = set()
        # The VTEPs the guard's set held when sync_guard last read or wrote it: an endpoint
        # added whose VTEP is among them needs no listing of the table (the periodic
        # reconcile's sync_guard lists it, and repairs what changed behind our back).
        self._let_in: frozenset[ipaddress.IPv4Address] = frozenset()

    # -- the network's host side ----------------------------------------------------------------

    def create_network(self, network: Network) -> None:
        super().create_network(network)
        try:
            self.vxlan.ensure(
                vxlan_name(network), vni_of(network), self.vtep, network.bridge, network.mtu, self.owner
            )
        except DockyardError:
            super().delete_network(network)
            raise
        self._here.add(network.id)
        self.sync_guard()
        self.sync(network.id)

    def delete_network(self, network: Network) -> None:
        self._here.discard(network.id)
        errors: list[Exception] = []
        try:
            self.vxlan.delete(vxlan_name(network), self.owner)
        except DockyardError as e:
            errors.append(e)
        super().delete_network(network)
        if not self._here:
            try:
                self._let_in = frozenset()
                if self.k.nft.table_exists(vxlan_guard.FAMILY, vxlan_guard.TABLE):
                    self.k.nft.apply_text(vxlan_guard.delete_text(), "remove the VXLAN guard")
            except DockyardError as e:
                errors.append(e)
        if errors:
            raise KernelError(f"removing network {network.name}: {errors[0]}")

    # -- remote endpoints (the view's listener, on the watch's thread) ------------------------------

    def endpoint_added(self, ep) -> None:  # type: ignore[no-untyped-def]
        # Its host's VXLAN is let in before traffic to it is sent there (its answers come back).
        if ep.network_id in self._here and ep.vtep not in self._let_in:
            self.sync_guard()
        self._program(ep.network_id, ep)

    def endpoint_updated(self, old, new) -> None:  # type: ignore[no-untyped-def]
        if new.network_id in self._here and new.vtep not in self._let_in:
            self.sync_guard()
        self._program(new.network_id, old, new)

    def endpoint_removed(self, ep, successor) -> None:  # type: ignore[no-untyped-def]
        self._program(ep.network_id, ep)

    def _program(self, network_id: str, *eps: Any) -> None:
        """The entries of these endpoints' MACs and addresses made what the view says now: each
        to the remote endpoint that holds it (the newest, when a MAC or an address moved), or
        removed when none does. A constant cost per event: no listing of the tables (drift is
        the periodic reconcile's), and the view was updated before it told us."""
        if network_id not in self._here:
            return
        macs = {ep.mac for ep in eps}
        addresses = {a for ep in eps for a in (ep.address, ep.address6) if a is not None}
        fdb, neighbours = self.view.entries(network_id, macs, addresses)
        with self._tables:
            self.vxlan.apply(
                vxlan_name(network_id),
                {mac: fdb.get(mac) for mac in sorted(macs)},
                {address: neighbours.get(address) for address in sorted(addresses, key=str)},
            )

    def network_added(self, network) -> None: ...  # type: ignore[no-untyped-def]

    def network_removed(self, network) -> None: ...  # type: ignore[no-untyped-def]

    def host_added(self, host) -> None:  # type: ignore[no-untyped-def]
        self.sync_guard()

    def host_removed(self, host) -> None:  # type: ignore[no-untyped-def]
        # Its VXLAN is dropped from now on; its endpoints go with its lease (each heard as
        # removed): the sync only catches a lag.
        self.sync_guard()
        for network_id in list(self._here):
            self.sync(network_id)

    # -- the VXLAN guard --------------------------------------------------------------------------------

    def sync_guard(self) -> list[str]:
        """The guard's table while an overlay network is here, its set the view's live VTEPs."""
        if not self._here:
            return []
        with self._tables:
            wanted = self.view.vteps()
            listing = self.k.nft.list_table(vxlan_guard.FAMILY, vxlan_guard.TABLE)
            if listing is not None and not self.view.wait_ready(0):
                self._let_in = frozenset(_set_elements(listing))
                return []  # as in sync: the set the kernel holds until the view knows better
            self._let_in = frozenset()  # until the kernel is known to hold wanted
            if listing is None:
                self.k.nft.apply_text(vxlan_guard.table_text(self.vtep, wanted), "add the VXLAN guard")
                self._let_in = frozenset(wanted)
                return [f"VXLAN guard: made, {len(wanted)} VTEP(s) let in"]
            if _set_elements(listing) != wanted:
                self.k.nft.apply_text(vxlan_guard.set_text(wanted), "update the VXLAN guard's VTEPs")
                self._let_in = frozenset(wanted)
                return [f"VXLAN guard: {len(wanted)} VTEP(s) let in"]
            self._let_in = frozenset(wanted)
        return []

    # -- reconcile -----------------------------------------------------------------------------------

    def sync(self, network_id: str) -> list[str]:
        """Make the network's FDB and neighbour tables what the view says; return what changed."""
        if network_id not in self._here or not self.view.wait_ready(0):
            # Before the first listing the view knows nothing: what the kernel holds (a
            # daemon restarted) keeps the overlay working until it does.
            return []
        dev = vxlan_name(network_id)
        changes: list[str] = []
        with self._tables:
            want_fdb = self.view.fdb(network_id)
            have_fdb = self.vxlan.fdb(dev)
            fdb: dict[str, ipaddress.IPv4Address | None] = {}
            for mac, vtep in have_fdb.items():
                if mac not in want_fdb:
                    fdb[mac] = None
                    changes.append(f"{dev}: forwarding entry {mac} -> {vtep} removed")
            for mac, want in want_fdb.items():
                if have_fdb.get(mac) != want:
                    fdb[mac] = want
                    changes.append(f"{dev}: forwarding entry {mac} -> {want} set")
            want_nb = self.view.neighbours(network_id)
            have_nb = self.vxlan.neighbours(dev)
            neighbours: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, str | None] = {}
            for address in have_nb.keys() - want_nb.keys():
                neighbours[address] = None
                changes.append(f"{dev}: neighbour {address} removed")
            for address, mac in want_nb.items():
                if have_nb.get(address) != mac:
                    neighbours[address] = mac
                    changes.append(f"{dev}: neighbour {address} -> {mac} set")
            self.vxlan.apply(dev, fdb, neighbours)
        return changes

    def sync_all(self) -> list[str]:
        out: list[str] = []
        try:
            out += self.sync_guard()
        except DockyardError as e:
            log.warning("overlay reconcile of the VXLAN guard: %s", e)
        for network_id in sorted(self._here):
            try:
                out += self.sync(network_id)
            except DockyardError as e:
                log.warning("overlay reconcile of %s: %s", vxlan_name(network_id), e)
        return out


def _set_elements(listing: list[dict[str, Any]]) -> set[ipaddress.IPv4Address]:
    for obj in listing:
        body = obj.get("set")
        if body and body.get("name") == vxlan_guard.SET:
            return {ipaddress.IPv4Address(e) for e in body.get("elem", []) if isinstance(e, str)}
    return set()

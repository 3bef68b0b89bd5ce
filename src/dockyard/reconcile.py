"""Make the kernel match the state: at daemon start (restore) and on demand (gc).

Works from ownership, never from names alone: store records, the
`inet dockyard` table (wholly dockyard's), the pins under $ROOT/netns, the
ports of dockyard's own bridges, and recorded PIDs with their start times.
It finishes or undoes what a crash left half-done:

- a container recorded as running whose process is gone gets its exit
  status (from the shim's exit file, else 137) and its endpoint released;
- a container that is alive is adopted: its host ports are held again;
- endpoints being released, and those of containers that never started,
  are torn down; their addresses then become free;
- pins, veths and set/map elements that no record owns are removed, and
  the elements the records need are put back.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from typing import ClassVar

from dockyard import rules
from dockyard.engine import Engine
from dockyard.errors import DockyardError
from dockyard.kernel import procs, sysctl
from dockyard.model import ContainerState, DriverName, ModeKind
from dockyard.store import now

# Docker gives 128 to a container whose start failed before its command ran.
EXIT_START_INTERRUPTED = 128


class Reconciler:
    def __init__(self, engine: Engine) -> None:
        self.e = engine
        self.removed: list[str] = []

    def _log(self, what: str) -> None:
        self.removed.append(what)

    # -- the fixed table -------------------------------------------------

    def ensure_table(self) -> bool:
        """Load the tables if missing or different; True when (re)loaded (elements lost)."""
        reloaded = False
        for (family, name), text in zip(
            rules.TABLES, (rules.TABLE_TEXT, rules.BRIDGE_TABLE_TEXT), strict=True
        ):
            listing = self.e.k.nft.list_table(family, name)
            if listing is None or rules.strip_listing(listing) != rules.expected_listing(family):
                self.e.k.nft.apply_text(text, f"create nftables table {family} {name}")
                reloaded = True
        return reloaded

    # -- start-up ----------------------------------------------------------

    def startup(self) -> list[str]:
        sysctl.write("net.ipv4.ip_forward", "1")
        self.ensure_table()
        self.e.networks.ensure_builtin()
        self._remake_bridge_table()
        # After a reboot the bridges are gone: make every one again (idempotent).
        for network in self.e.store.networks():
            if network.driver is DriverName.BRIDGE:
                self.e.drivers[network.driver].create_network(network)
        return self.gc()

    def _remake_bridge_table(self) -> None:
        """Make the bridge-family table anew now that a bridge exists (see
        rules.BRIDGE_TABLE_TEXT), keeping every element, another root's too."""
        nft = self.e.k.nft
        listing = nft.list_table(rules.BRIDGE_FAMILY, rules.TABLE) or []
        keep = [
            {
                "add": {
                    "element": {
                        "family": rules.BRIDGE_FAMILY,
                        "table": rules.TABLE,
                        "name": body["name"],
                        "elem": body["elem"],
                    }
                }
            }
            for obj in listing
            if (body := obj.get("set")) and body.get("elem")
        ]
        nft.apply_text(rules.BRIDGE_TABLE_TEXT, "create nftables table bridge dockyard")
        nft.apply(keep, "restore the bridge table's elements")

    # -- reset -------------------------------------------------------------

    def reset(self) -> list[str]:
        """Remove everything dockyard made in the kernel; the caller then drops the state."""
        self.removed = []
        e = self.e
        for c in e.store.containers():
            if c.running:
                e.kill(c.id)
                e.wait_exit(c.id, 30)
                self._log(f"container {c.name}: killed")
        e.settle()
        with e.lock:
            for c in e.store.containers():
                e.teardown(c)
                e.remove_record(c.id, None)
                self._log(f"container {c.name}: removed")
            e.settle()
            for network in e.store.networks():
                if network.driver is DriverName.BRIDGE:
                    with contextlib.suppress(DockyardError):
                        e.drivers[network.driver].delete_network(network)
                    self._log(f"network {network.name}: bridge {network.bridge} removed")
                e.store.delete_network(network.id)
            for name in e.sandboxes.pinned():
                e.sandboxes.remove_by_name(name)
            for change in e.sync_forward():
                self._log(change)
            if e.dns is not None:
                e.dns.stop()
            # The tables are shared by every root of this host namespace: they go
            # only with the last element; another root's elements stay.
            left = rules.Elements()
            for family, name in rules.TABLES:
                left.update(rules.parse_listed_elements(e.k.nft.list_table(family, name) or []))
            if left.empty():
                e.k.nft.apply(rules.delete_table_commands(), "delete the dockyard nftables tables")
                self._log("nftables: tables inet dockyard and bridge dockyard removed")
            else:
                self._log("nftables: tables kept for another dockyard root's elements")
        return self.removed

    # -- gc ----------------------------------------------------------------

    def gc(self) -> list[str]:
        self.removed = []
        e = self.e
        e.settle()
        with e.lock:
            self._intents()
            self._containers()
            self._releasing()
            self._pins()
            self._veths()
            self._elements()
            self._holds()
            for change in e.sync_forward():
                self._log(change)
        return self.removed

    # -- operations a crash cut short ---------------------------------------

    def _intents(self) -> None:
        e = self.e
        intents = e.store.intents()
        if not intents:
            return
        try:
            children = e.shim.children()
        except DockyardError:
            children = {}
        for intent_id, op, subject in intents:
            handler = self.INTENT_HANDLERS.get(op)
            if handler is None:
                self._log(f"unknown operation {op!r} on {subject} left by a crash: dropped")
            else:
                handler(self, subject, children)
            e.store.done_intent(intent_id)
        e.settle()

    def _undo_start(self, container_id: str, children: dict[str, int]) -> None:
        e = self.e
        c = e.store.find_container(container_id)
        if c is None or c.running:
            return  # gone, or the start had finished
        pid = children.get(c.id)
        if pid:
            # Started, but never recorded as running: the start failed as far as
            # its caller knows, so the process goes.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        e.teardown(c)
        e.finish(c, EXIT_START_INTERRUPTED, "start interrupted: the daemon stopped while starting it")
        self._log(f"container {c.name}: undid a start cut short")

    def _finish_remove(self, container_id: str, children: dict[str, int]) -> None:
        e = self.e
        c = e.store.find_container(container_id)
        if c is None:
            return
        pid = children.get(c.id)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        e.teardown(c)
        e.remove_record(c.id, None)
        self._log(f"container {c.name}: finished a removal cut short")

    def _undo_network_create(self, network_id: str, children: dict[str, int]) -> None:
        e = self.e
        network = e.store.find_network(network_id)
        if network is None or e.store.endpoint_count(network.id):
            return
        with contextlib.suppress(DockyardError):
            e.drivers[network.driver].delete_network(network)
        e.store.delete_network(network.id)
        self._log(f"network {network.name}: undid a creation cut short")

    def _finish_network_remove(self, network_id: str, children: dict[str, int]) -> None:
        e = self.e
        network = e.store.find_network(network_id)
        if network is None:
            return
        e.drivers[network.driver].delete_network(network)
        e.store.delete_network(network.id)
        self._log(f"network {network.name}: finished a removal cut short")

    def _undo_connect(self, subject: str, children: dict[str, int]) -> None:
        e = self.e
        container_id, _, ifname = subject.partition("/")
        for ep in e.store.endpoints(container_id=container_id):
            if ep.ifname == ifname:
                e.endpoints.release(container_id, only=ep)
                self._log(f"endpoint {ep.host_ifname}: undid a connect cut short")

    INTENT_HANDLERS: ClassVar[dict[str, Callable[[Reconciler, str, dict[str, int]], None]]] = {
        "start": _undo_start,
        "rm": _finish_remove,
        "network.create": _undo_network_create,
        "network.rm": _finish_network_remove,
        "connect": _undo_connect,
    }

    # -- containers --------------------------------------------------------

    def _containers(self) -> None:
        e = self.e
        for c in e.store.containers():
            if c.state is ContainerState.RUNNING:
                if procs.alive(c.pid, e.store.pid_start(c.id)):
                    continue
                status = e.exit_status_from_file(c.id)
                e.teardown(c)
                e.settle()
                e.store.update_container(
                    c.id,
                    state=ContainerState.EXITED,
                    exit_code=status,
                    pid=0,
                    pid_start=0,
                    finished_at=c.finished_at or now(),
                )
                self._log(f"container {c.name}: process {c.pid} gone, recorded exit {status}")
                if c.config.auto_remove:
                    e.remove_record(c.id, status)
                    self._log(f"container {c.name}: removed (--rm)")
            elif c.state in (ContainerState.CREATED, ContainerState.EXITED):
                # Endpoints of a container that is not running: a start cut short.
                eps = e.store.endpoints(container_id=c.id)
                if eps or e.store.ports(c.id):
                    e.teardown(c)
                    self._log(f"container {c.name}: released the endpoint of an unfinished start")
            elif c.state is ContainerState.REMOVING:
                e.teardown(c)
                e.remove_record(c.id, None)
                self._log(f"container {c.name}: finished removal")
        e.settle()
        e._notify()

    def _releasing(self) -> None:
        e = self.e
        for ep in e.store.endpoints(state="releasing"):
            network = e.store.find_network(ep.network_id)
            if network is not None:
                try:
                    e.drivers[network.driver].leave(network, ep)
                except DockyardError as err:
                    self._log(f"endpoint {ep.host_ifname}: cannot remove yet: {err}")
                    continue
            e.store.delete_endpoint(ep.id)
            self._log(f"endpoint {ep.host_ifname}: released {ep.address.ip}")

    def _owned_pins(self) -> set[str]:
        e = self.e
        out = set()
        for c in e.store.containers():
            if c.running and not c.netns_owner and c.config.network_mode.kind is not ModeKind.HOST:
                out.add(e.paths.sandbox_pin(c.id).name)
        return out

    def _pins(self) -> None:
        owned = self._owned_pins()
        for name in self.e.sandboxes.pinned():
            if name not in owned:
                self.e.sandboxes.remove_by_name(name)
                self._log(f"sandbox pin {name}: removed")

    def _veths(self) -> None:
        e = self.e
        owned = {ep.host_ifname for ep in e.store.endpoints(state=None)}
        for network in e.store.networks():
            if network.driver is not DriverName.BRIDGE:
                continue
            for port in e.k.netlink.bridge_ports(network.bridge):
                if port.startswith("veth") and port not in owned:
                    e.k.netlink.delete_link(port)
                    self._log(f"veth {port} on {network.bridge}: removed")

    def desired_elements(self) -> rules.Elements:
        e = self.e
        el = rules.Elements()
        for network in e.store.networks():
            if network.driver is DriverName.BRIDGE and network.subnet is not None:
                el.update(rules.elements_of_network(network))
        for c in e.store.containers():
            if not c.running:
                continue
            for ep in e.store.endpoints(container_id=c.id):
                el.update(rules.publish_elements(ep.address.ip, e.endpoints.bindings(c.id, ep.id)))
                network = e.store.find_network(ep.network_id)
                if network is not None:
                    el.update(rules.endpoint_elements(ep.host_ifname, network.icc))
        return el

    def _elements(self) -> None:
        e = self.e
        self.ensure_table()
        present = rules.Elements()
        for family, name in rules.TABLES:
            present.update(rules.parse_listed_elements(e.k.nft.list_table(family, name) or [], e.owner))
        desired = self.desired_elements()
        extra = present.minus(desired)
        # A map key pointing elsewhere must be deleted before the right value goes in.
        if not extra.empty():
            e.k.nft.apply(rules.element_commands("delete", extra), "remove stale elements")
            self._log(f"nftables: removed {extra.count()} stale element(s)")
        missing = desired.minus(present)
        if not missing.empty():
            e.k.nft.apply(rules.element_commands("add", missing, e.owner), "restore elements")

    def _holds(self) -> None:
        e = self.e
        held = e.k.holds.owners()
        for c in e.store.containers():
            if not c.running:
                continue
            for ep in e.store.endpoints(container_id=c.id):
                bindings = list(e.endpoints.bindings(c.id, ep.id))
                if bindings and ep.id not in held:
                    with contextlib.suppress(DockyardError):
                        e.k.holds.hold(ep.id, bindings)

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
  the elements the records need are put back (CNI attachments' included);
- CNI attachments whose ADD was cut short are undone (attachments.py);
- an exited `--rm` container whose removal was cut short is removed;
- children of the shim that no running container owns are killed, by PID
  through the shim (which signals its own child's pidfd, never a reused PID);
- container directories (layers) no record owns are removed, and the pids
  cgroups under this root's parent that no running container owns.

What gc removed, what it could not remove yet and what it put back are
reported apart. The start-up reconciliation's report is kept for the first
`system gc`, which is usually the command that started the daemon.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from dockyard.drivers import Driver
from dockyard.engine.cni.attachments import DOCKER_ENDPOINT, Attachments
from dockyard.engine.containers.execs import KEY_PREFIX, container_of_key
from dockyard.engine.containers.exits import ContainerExits
from dockyard.engine.containers.stop import ContainerStop
from dockyard.engine.coordination import Changes
from dockyard.engine.endpoints import Endpoints
from dockyard.engine.networks.changes import NetworkChanges
from dockyard.engine.networks.service import Networks
from dockyard.engine.sandbox import Sandboxes
from dockyard.errors import DockyardError
from dockyard.kernel import Kernel, procs, sysctl
from dockyard.kernel.cgroups import Cgroups
from dockyard.kernel.shim_client import ShimClient
from dockyard.model import ContainerState, DriverName, EndpointOwner, ModeKind
from dockyard.policy import ports, rules
from dockyard.settings import Paths
from dockyard.store import Store, now

# How long gc waits for a process it killed to be reaped (seconds).
KILL_WAIT = 5.0
# Docker gives 128 to a container whose start failed before its command ran.
EXIT_START_INTERRUPTED = 128

log = logging.getLogger(__name__)


@dataclass
class Report:
    """What a reconciliation did, kept apart for the user."""

    removed: list[str] = field(default_factory=list)
    not_removed: list[str] = field(default_factory=list)  # left for a later try, or kept
    restored: list[str] = field(default_factory=list)  # put back as the records want

    def add(self, other: Report) -> None:
        self.removed += other.removed
        self.not_removed += other.not_removed
        self.restored += other.restored


class Reconciler:
    """gc, restore at start-up and reset, over the engine's services (each given, none borrowed)."""

    def __init__(
        self,
        *,
        store: Store,
        lock: threading.RLock,
        kernel: Kernel,
        paths: Paths,
        owner_mark: str,
        drivers: Mapping[DriverName, Driver],
        networks: Networks,
        network_changes: NetworkChanges,
        endpoints: Endpoints,
        sandboxes: Sandboxes,
        cgroups: Cgroups,
        shim: ShimClient,
        exits: ContainerExits,
        stop: ContainerStop,
        changes: Changes,
        attachments: Attachments,
    ) -> None:
        self.store = store
        self.lock = lock
        self.k = kernel
        self.paths = paths
        # This root's mark on its nftables elements: only those are this gc's to remove.
        self.owner_mark = owner_mark
        self.drivers = drivers
        self.networks = networks
        self.network_changes = network_changes
        self.endpoints = endpoints
        self.sandboxes = sandboxes
        self.cgroups = cgroups
        self.shim = shim
        self.exits = exits
        self.stop = stop
        self.changes = changes
        self.attachments = attachments
        self.report = Report()
        # Children killed by this gc already (they may not be reaped yet).
        self._killed: set[tuple[str, int]] = set()

    @property
    def removed(self) -> list[str]:
        return self.report.removed

    def _log(self, what: str) -> None:
        self.report.removed.append(what)

    def _not_removed(self, what: str) -> None:
        self.report.not_removed.append(what)

    def _restored(self, what: str) -> None:
        self.report.restored.append(what)

    def _forward(self, changes: list[str]) -> None:
        for change in changes:
            (self._log if " removed " in change else self._restored)(change)

    # -- the fixed table -------------------------------------------------

    def ensure_table(self) -> bool:
        """Load the tables if missing or different; True when (re)loaded (elements lost)."""
        reloaded = False
        for (family, name), text in zip(
            rules.TABLES, (rules.TABLE_TEXT, rules.BRIDGE_TABLE_TEXT), strict=True
        ):
            listing = self.k.nft.list_table(family, name)
            if listing is None or rules.strip_listing(listing) != rules.expected_listing(family):
                self.k.nft.apply_text(text, f"create nftables table {family} {name}")
                reloaded = True
        return reloaded

    # -- start-up ----------------------------------------------------------

    def startup(self) -> list[str]:
        sysctl.write("net.ipv4.ip_forward", "1")
        self.ensure_table()
        self.networks.ensure_builtin()
        self._remake_bridge_table()
        # After a reboot the bridges are gone: make every one again (idempotent).
        for network in self.store.networks():
            if network.bridged and network.driver in self.drivers:
                self.drivers[network.driver].create_network(network)
        return self.gc()

    def _remake_bridge_table(self) -> None:
        """Make the bridge-family table anew now that a bridge exists (see
        rules.BRIDGE_TABLE_TEXT), keeping every element, another root's too."""
        nft = self.k.nft
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
        self.report = Report()
        for c in self.store.containers():
            if c.running:
                self.stop.kill(c.id)
                self.exits.wait_exit(c.id, 30)
                self._log(f"container {c.name}: killed")
        self.endpoints.settle()
        with self.lock:
            for c in self.store.containers():
                self.exits.teardown(c)
                self.exits.remove_record(c.id, None)
                self._log(f"container {c.name}: removed")
            self.endpoints.settle()
            for network in self.store.networks():
                if network.bridged and network.driver in self.drivers:
                    with contextlib.suppress(DockyardError):
                        self.drivers[network.driver].delete_network(network)
                    self._log(f"network {network.name}: bridge {network.bridge} removed")
                self.store.delete_network(network.id)
            for name in self.sandboxes.pinned():
                self.sandboxes.remove_by_name(name)
            self.sandboxes.release()
            self.cgroups.remove_parent()
            for change in self.network_changes.sync_forward():
                self._log(change)
            if self.network_changes.dns is not None:
                self.network_changes.dns.stop()
            # The tables are shared by every root of this host namespace: they go
            # only with the last element; another root's elements stay.
            left = rules.Elements()
            for family, name in rules.TABLES:
                left.update(rules.parse_listed_elements(self.k.nft.list_table(family, name) or []))
            if left.empty():
                self.k.nft.apply(rules.delete_table_commands(), "delete the dockyard nftables tables")
                self._log("nftables: tables inet dockyard and bridge dockyard removed")
            else:
                self._log("nftables: tables kept for another dockyard root's elements")
        return self.removed

    # -- gc ----------------------------------------------------------------

    def gc(self) -> list[str]:
        self.report = Report()
        self.endpoints.settle()
        with self.lock:
            self._intents()
            self._containers()
            self._processes()
            self._leftovers()
            self._attachments()
            self._releasing()
            self._pins()
            self._veths()
            self._elements()
            self._holds()
            self._forward(self.network_changes.sync_forward())
        return self.removed

    # -- operations a crash cut short ---------------------------------------

    def _intents(self) -> None:
        intents = self.store.intents()
        if not intents:
            return
        try:
            children = self.shim.children()
        except DockyardError:
            children = {}
        for intent_id, op, subject in intents:
            handler = self.INTENT_HANDLERS.get(op)
            if handler is None:
                self._log(f"unknown operation {op!r} on {subject} left by a crash: dropped")
            else:
                handler(self, subject, children)
            self.store.done_intent(intent_id)
        self.endpoints.settle()

    def _kill_child(self, key: str, pid: int) -> None:
        """Kill a child of the shim and wait (bounded) until the shim has reaped it: its
        exit file is written by then, not into a directory being removed, and its PID
        namespace, cgroup and layer are free."""
        started = procs.start_time(pid)
        self.shim.kill(key, pid)
        self._killed.add((key, pid))
        deadline = time.monotonic() + KILL_WAIT
        while procs.alive(pid, started) and time.monotonic() < deadline:
            time.sleep(0.005)

    def _undo_start(self, container_id: str, children: dict[str, int]) -> None:
        c = self.store.find_container(container_id)
        if c is None or c.running:
            return  # gone, or the start had finished
        pid = children.get(c.id)
        if pid:
            # Started, but never recorded as running: the start failed as far as
            # its caller knows, so the process goes.
            self._kill_child(c.id, pid)
        self.exits.teardown(c)
        self.exits.finish(
            c, EXIT_START_INTERRUPTED, "start interrupted: the daemon stopped while starting it"
        )
        self._log(f"container {c.name}: undid a start cut short")

    def _finish_remove(self, container_id: str, children: dict[str, int]) -> None:
        c = self.store.find_container(container_id)
        if c is None:
            return
        pid = children.get(c.id)
        if pid:
            self._kill_child(c.id, pid)
        self.exits.teardown(c)
        self.exits.remove_record(c.id, None)
        self._log(f"container {c.name}: finished a removal cut short")

    def _undo_network_create(self, network_id: str, children: dict[str, int]) -> None:
        network = self.store.find_network(network_id)
        if network is None or self.store.endpoint_count(network.id):
            return
        with contextlib.suppress(DockyardError):
            self.drivers[network.driver].delete_network(network)
        self.store.delete_network(network.id)
        self._log(f"network {network.name}: undid a creation cut short")

    def _finish_network_remove(self, network_id: str, children: dict[str, int]) -> None:
        network = self.store.find_network(network_id)
        if network is None:
            return
        if self.store.endpoint_count(network.id):
            # Endpoints joined it after all: it stays, made whole again.
            with contextlib.suppress(DockyardError):
                self.drivers[network.driver].create_network(network)
            self._not_removed(f"network {network.name}: kept, its removal was cut short and it has endpoints")
            return
        self.drivers[network.driver].delete_network(network)
        self.store.delete_network(network.id)
        self._log(f"network {network.name}: finished a removal cut short")

    def _undo_connect(self, subject: str, children: dict[str, int]) -> None:
        container_id, _, ifname = subject.partition("/")
        for ep in self.store.endpoints(container_id=container_id):
            if ep.ifname == ifname:
                self.endpoints.release(EndpointOwner.container(container_id), only=ep)
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
        for c in self.store.containers():
            if c.state is ContainerState.RUNNING:
                if procs.alive(c.pid, self.store.pid_start(c.id)):
                    continue
                status = self.exits.exit_status_from_file(c.id)
                self.exits.teardown(c)
                self.endpoints.settle()
                self.store.update_container(
                    c.id,
                    state=ContainerState.EXITED,
                    exit_code=status,
                    pid=0,
                    pid_start=0,
                    finished_at=c.finished_at or now(),
                )
                self._log(f"container {c.name}: process {c.pid} gone, recorded exit {status}")
                if c.config.auto_remove:
                    self.exits.remove_record(c.id, status)
                    self._log(f"container {c.name}: removed (--rm)")
            elif c.state in (ContainerState.CREATED, ContainerState.EXITED):
                # Endpoints of a container that is not running: a start cut short.
                if self.store.endpoints(container_id=c.id):
                    self.exits.teardown(c)
                    self._log(f"container {c.name}: released the endpoint of an unfinished start")
                if c.state is ContainerState.EXITED and c.config.auto_remove:
                    # Its exit was recorded, its removal (--rm) cut short.
                    self.exits.teardown(c)
                    self.exits.remove_record(c.id, c.exit_code)
                    self._log(f"container {c.name}: removed (--rm), its removal was cut short")
            elif c.state is ContainerState.REMOVING:
                self.exits.teardown(c)
                self.exits.remove_record(c.id, None)
                self._log(f"container {c.name}: finished removal")
        self.endpoints.settle()
        self.changes.notify()

    def _processes(self) -> None:
        """Kill the shim's children that no running container owns."""
        try:
            children = self.shim.processes()
        except DockyardError:
            return
        running = {c.id: c for c in self.store.containers() if c.running}
        for key, pid in children:
            if (key, pid) in self._killed:
                continue
            if key.startswith(KEY_PREFIX):
                if container_of_key(key) in running:
                    continue
                what = f"exec process {pid} of container {container_of_key(key)[:12]}"
            else:
                owner = running.get(key)
                if owner is not None and owner.pid == pid:
                    continue
                c = self.store.find_container(key)
                what = f"process {pid} of container {c.name if c else key[:12]}"
            if self.shim.kill(key, pid):
                self._log(f"{what}: killed, no running container owns it")

    def _leftovers(self) -> None:
        """Layers of containers no record owns (a crash between rm's steps), and
        cgroups no running container owns (a start cut short, a busy removal)."""
        records = {c.id: c for c in self.store.containers()}
        if self.paths.containers_dir.is_dir():
            for directory in self.paths.containers_dir.iterdir():
                if directory.name not in records:
                    shutil.rmtree(directory, ignore_errors=True)
                    self._log(f"container directory {directory.name[:12]}: removed, no container owns it")
        for cid in self.cgroups.owned():
            owner = records.get(cid)
            if owner is not None and owner.running:
                continue
            if self.cgroups.remove(cid):
                self._log(f"cgroup of container {owner.name if owner else cid[:12]}: removed")
            else:
                self._not_removed(f"cgroup of container {cid[:12]}: still has processes")

    def _attachments(self) -> None:
        """CNI attachments: ADDs a crash cut short are undone, the others' bridges made again."""
        for line in self.attachments.recover():
            self._log(line)

    def _releasing(self) -> None:
        for ep, err in self.endpoints.retry_releasing():
            if err is None:
                released = ep.address.ip if ep.address else ep.address6.ip if ep.address6 else "nothing"
                self._log(f"endpoint {ep.host_ifname}: released {released}")
            else:
                self._not_removed(f"endpoint {ep.host_ifname}: cannot remove yet: {err}")

    def _owned_pins(self) -> set[str]:
        out = set()
        for c in self.store.containers():
            if c.running and not c.netns_owner and c.config.network_mode.kind is not ModeKind.HOST:
                out.add(self.paths.sandbox_pin(c.id).name)
        return out

    def _pins(self) -> None:
        owned = self._owned_pins()
        for name in self.sandboxes.pinned():
            if name not in owned:
                self.sandboxes.remove_by_name(name)
                self._log(f"sandbox pin {name}: removed")

    def _veths(self) -> None:
        owned = {ep.host_ifname for ep in self.store.endpoints(state=None)}
        for network in self.store.networks():
            if not network.bridged:
                continue
            for port in self.k.netlink.bridge_ports(network.bridge):
                if port.startswith("veth") and port not in owned:
                    self.k.netlink.delete_link(port)
                    self._log(f"veth {port} on {network.bridge}: removed")

    def desired_elements(self) -> rules.Elements:
        el = rules.Elements()
        for network in self.store.networks():
            if network.bridged and (network.subnet is not None or network.subnet6 is not None):
                el.update(rules.elements_of_network(network))
        for c in self.store.containers():
            if not c.running:
                continue
            for ep in self.store.endpoints(container_id=c.id):
                found = self.store.find_network(ep.network_id)
                if found is not None:
                    bindings = self.endpoints.bindings(ep.owner, ep.id)
                    el.update(rules.endpoint_publish_elements(found, ep, bindings))
                    el.update(rules.endpoint_elements(ep, found.icc))
        el.update(self.attachments.desired_elements())
        return el

    def _elements(self) -> None:
        self.ensure_table()
        present = rules.Elements()
        for family, name in rules.TABLES:
            present.update(
                rules.parse_listed_elements(self.k.nft.list_table(family, name) or [], self.owner_mark)
            )
        desired = self.desired_elements()
        extra = present.minus(desired)
        # A map key pointing elsewhere must be deleted before the right value goes in.
        if not extra.empty():
            self.k.nft.apply(rules.element_commands("delete", extra), "remove stale elements")
            self._log(f"nftables: removed {extra.count()} stale element(s)")
        missing = desired.minus(present)
        if not missing.empty():
            self.k.nft.apply(rules.element_commands("add", missing, self.owner_mark), "restore elements")
            self._restored(f"nftables: put back {missing.count()} missing element(s)")

    def _holds(self) -> None:
        held = self.k.holds.owners()
        for c in self.store.containers():
            if not c.running:
                continue
            for ep in self.store.endpoints(container_id=c.id):
                bindings = list(self.endpoints.bindings(ep.owner, ep.id))
                if bindings and ep.id not in held:
                    # A host process may have taken a port while no daemon held it.
                    every = ports.families(ep.address is not None, ep.address6 is not None)
                    for err in self.k.holds.hold_each(ep.id, bindings, every):
                        log.warning("container %s: %s; the port stays published but is not held", c.name, err)
        # Docker's endpoints publish ports too, and Docker holds none for a remote driver: held
        # alike. A CNI attachment's ports are its runtime's to hold, as with portmap.
        for a in self.attachments.all():
            if a.state != "ready" or a.netns != DOCKER_ENDPOINT:
                continue
            for ep in self.store.endpoints(container_id=a.owner):
                bindings = list(self.endpoints.bindings(a.endpoint_owner, ep.id))
                if bindings and ep.id not in held:
                    for err in self.k.holds.hold_each(ep.id, bindings):
                        log.warning("%s: %s; the port stays published but is not held", a.label, err)

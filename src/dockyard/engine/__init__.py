"""The Engine: the daemon's use cases over one $ROOT, composed of services.

This module is the engine's composition root. It builds each service with
what that service needs, given in its constructor and typed (no service
borrows another's attributes), and offers their verbs as one façade to the
daemon and its API:

- the shared parts: the store, the kernel handles, the drivers (a typed
  registry, drivers.Drivers), the sandboxes, the cgroups, the endpoints
  (endpoints.py), the shim and the exec instances, the engine's write lock,
  the change notification and the intents (coordination.py);
- containers/: create and start (run.py), what a process sees (env.py,
  ContainerFiles), what confines it (confine.py), how it ends (exits.py),
  stop, kill and rm (stop.py), clients attached to its stdio and its
  terminal's size (attach.py), its log read back (logs.py), exec instances
  (execs.py), its files (archive.py: diff, cp, export);
- networks/: the networks' own logic (service.py), their use cases and what
  follows a change (changes.py), connect and disconnect (attach.py);
- cni/: CNI attachments (attachments.py), their networks (networks.py),
  CHECK and STATUS (checks.py);
- reconcile.py: gc, the start-up restore and reset; request_check.py: the
  cheap check run with requests;
- views.py: what ps, inspect and network ls show;
- docker_plugin.py: what dockerd asks of dockyard as its network and IPAM plugin.

Order in every mutation (style.md 3.4): validate first, in pure code; then,
under the engine's write lock, record the intent in one store transaction
(the container; at start its endpoint, address and host ports), do the
kernel work through named steps that push their undo, and commit the
outcome. On failure the undo steps run in reverse and the records go, so
bad input and failed starts change nothing; an undo step that fails is
reported (steps.py) and left for gc.
"""

from __future__ import annotations

import ipaddress
import signal
import threading

from dockyard.drivers import Drivers
from dockyard.engine.cni.attachments import Attachments
from dockyard.engine.cni.checks import AttachmentChecks
from dockyard.engine.cni.networks import ConfigNetworks
from dockyard.engine.containers.archive import ContainerArchive
from dockyard.engine.containers.attach import Attaching
from dockyard.engine.containers.attach import Client as AttachedClient
from dockyard.engine.containers.confine import Confinement
from dockyard.engine.containers.env import DEFAULT_PATH, NETWORK_FILES, ContainerFiles
from dockyard.engine.containers.execs import ExecInstance, Execs, exec_fields, exec_relay
from dockyard.engine.containers.exits import EXIT_UNKNOWN, ContainerExits
from dockyard.engine.containers.logs import Logs
from dockyard.engine.containers.restarts import RestartPolicies
from dockyard.engine.containers.run import ContainerRun
from dockyard.engine.containers.stop import STOP_TIMEOUT, ContainerStop
from dockyard.engine.coordination import Changes, Intents
from dockyard.engine.docker_plugin import DockerPlugin
from dockyard.engine.endpoints import Endpoints
from dockyard.engine.events import Events
from dockyard.engine.images import Images
from dockyard.engine.networks.attach import NetworkAttach
from dockyard.engine.networks.changes import DnsSync, NetworkChanges
from dockyard.engine.networks.service import NetworkFilter, Networks, NetworkSpec
from dockyard.engine.reconcile import Reconciler, Report
from dockyard.engine.request_check import CHECK_INTERVAL, RequestCheck
from dockyard.engine.sandbox import Sandboxes
from dockyard.engine.views import ContainerView, Member, Views
from dockyard.kernel import Kernel
from dockyard.kernel.cgroups import Cgroups
from dockyard.kernel.shim_client import ShimClient
from dockyard.model import Container, ContainerConfig, Endpoint, ImageRun, Network, OwnerKind
from dockyard.policy import rules
from dockyard.policy.container_filters import PruneFilter
from dockyard.settings import DaemonSettings
from dockyard.store import Store

__all__ = [
    "CHECK_INTERVAL",
    "DEFAULT_PATH",
    "EXIT_UNKNOWN",
    "NETWORK_FILES",
    "STOP_TIMEOUT",
    "DnsSync",
    "Engine",
    "Report",
]


class Engine:
    """The daemon's use cases over one $ROOT: its state, its kernel work and its lock."""

    def __init__(
        self, settings: DaemonSettings, store: Store, kernel: Kernel, shim: ShimClient | None = None
    ) -> None:
        self.settings = settings
        self.paths = settings.paths
        self.store = store
        self.k = kernel
        # Marks this root's bridges and nftables elements apart from another root's.
        self.owner = rules.owner_mark(str(settings.root))
        self.drivers = Drivers(kernel, self.owner)
        self.sandboxes = Sandboxes(self.paths)
        self.cgroups = Cgroups(settings.root)
        self.lock = threading.RLock()
        self.changes = Changes()
        self.intents = Intents(store)
        # docker events, and --restart's timers (issue 13): the policies act through
        # this façade (start), so they take the engine itself.
        self.events = Events()
        self.restart_policies = RestartPolicies(self)
        self.endpoints = Endpoints(store, kernel, self.drivers)
        self.networks = Networks(settings, store, kernel, self.drivers)
        self.network_changes = NetworkChanges(
            store, self.lock, self.networks, self.endpoints, self.drivers.forward
        )
        self.exits = ContainerExits(
            store,
            self.lock,
            self.paths,
            self.endpoints,
            self.sandboxes,
            self.cgroups,
            self.changes,
            self.events,
            self.restart_policies,
        )
        self.shim = shim or ShimClient(self.paths, self.exits.on_shim_exit)
        self.execs = Execs(self.shim)
        self.attaching = Attaching(self.shim, self.paths, store, self.lock)
        self.logs = Logs(store, self.paths, self.changes)
        self.exits.attach_stdio(self.execs, self.attaching)
        self.files = ContainerFiles(settings, self.paths, store)
        self.images = Images(settings, store)
        self.archive = ContainerArchive(store, self.images, self.paths)
        self.confinement = Confinement(self.paths, self.cgroups, self.images)
        self.stopper = ContainerStop(
            store, self.lock, self.intents, self.changes, self.exits, self.events, self.restart_policies
        )
        self.runner = ContainerRun(
            store=store,
            lock=self.lock,
            paths=self.paths,
            sandboxes=self.sandboxes,
            endpoints=self.endpoints,
            cgroups=self.cgroups,
            shim=self.shim,
            files=self.files,
            confinement=self.confinement,
            images=self.images,
            attaching=self.attaching,
            exits=self.exits,
            intents=self.intents,
            changes=self.changes,
            events=self.events,
            ensure_dns=self.network_changes.ensure_dns,
        )
        self.attach = NetworkAttach(
            store=store,
            lock=self.lock,
            endpoints=self.endpoints,
            sandboxes=self.sandboxes,
            intents=self.intents,
            files=self.files,
            events=self.events,
            ensure_dns=self.network_changes.ensure_dns,
        )
        self.requests = RequestCheck(store, self.lock, self.endpoints, self.exits, self.shim)
        config_networks = ConfigNetworks(
            store, self.paths, self.networks, self.network_changes, self.endpoints
        )
        self.cni = Attachments(
            store=store,
            lock=self.lock,
            kernel=kernel,
            drivers=self.drivers,
            endpoints=self.endpoints,
            networks=config_networks,
        )
        self.cni_checks = AttachmentChecks(self.cni, self.networks, settings, self.owner)
        # Attachments are among a network's users, by their labels.
        self.networks.name_owners(OwnerKind.CNI, self.cni.labels)
        self.views = Views(store, self.paths, self.networks, self.cni)
        # dockerd's network and IPAM plugin (issue 17): its endpoints are recorded as attachments.
        self.docker_plugin = DockerPlugin(
            settings=settings,
            store=store,
            lock=self.lock,
            drivers=self.drivers,
            endpoints=self.endpoints,
            networks=self.networks,
            network_changes=self.network_changes,
        )
        # What the start-up reconciliation removed and did not remove, until
        # the first `system gc` reports it (that command often started the daemon).
        self.startup_report: Report | None = None

    # -- the resolver ------------------------------------------------------

    @property
    def dns(self) -> DnsSync | None:
        """The resolver process of user networks, when the daemon runs one."""
        return self.network_changes.dns

    @dns.setter
    def dns(self, dns: DnsSync | None) -> None:
        self.network_changes.dns = dns

    # -- reconciliation ------------------------------------------------------

    def reconciler(self) -> Reconciler:
        return Reconciler(
            store=self.store,
            lock=self.lock,
            kernel=self.k,
            paths=self.paths,
            owner_mark=self.owner,
            drivers=self.drivers,
            networks=self.networks,
            network_changes=self.network_changes,
            endpoints=self.endpoints,
            sandboxes=self.sandboxes,
            cgroups=self.cgroups,
            shim=self.shim,
            exits=self.exits,
            stop=self.stopper,
            changes=self.changes,
            attachments=self.cni,
        )

    def restore(self) -> Report:
        """At daemon start: the tables, the built-in networks, every bridge again, then gc."""
        reconciler = self.reconciler()
        reconciler.startup()
        return reconciler.report

    def gc(self) -> Report:
        """`system gc`: reconcile now; the first one also reports what the daemon's
        start-up reconciliation did (after a crash, gc is often what started it)."""
        reconciler = self.reconciler()
        reconciler.gc()
        with self.lock:
            earlier, self.startup_report = self.startup_report, None
        report = Report()
        if earlier is not None:
            report.add(earlier)
        report.add(reconciler.report)
        return report

    def reset(self) -> list[str]:
        """`system reset`: remove all dockyard made in the kernel (the daemon then forgets its state)."""
        if self.networks.overlay is not None:
            self.networks.overlay.hold()  # no global network mirrored again meanwhile
        return self.reconciler().reset()

    def check(self) -> bool:
        return self.requests.check()

    def on_request(self) -> None:
        self.requests.on_request()

    def settle(self) -> None:
        self.endpoints.settle()

    def close(self) -> None:
        self.restart_policies.close()
        self.endpoints.close()
        self.shim.close()
        self.exits.close()

    # -- containers ------------------------------------------------------------

    def get(self, ref: str) -> Container:
        return self.store.get_container(ref)

    def create(
        self, config: ContainerConfig, name: str | None, image: ImageRun | None = None
    ) -> tuple[Container, list[str]]:
        return self.runner.create(config, name, image)

    def start(self, ref: str, stdio: list[int] | None = None) -> Container:
        return self.runner.start(ref, stdio)

    def stop(self, ref: str, timeout: int | None = None) -> Container:
        return self.stopper.stop(ref, timeout)

    def kill(self, ref: str, sig: int = signal.SIGKILL) -> Container:
        return self.stopper.kill(ref, sig)

    def remove(self, ref: str, force: bool = False) -> None:
        self.stopper.remove(ref, force)

    def wait(self, ref: str, condition: str = "not-running") -> int:
        return self.exits.wait(ref, condition)

    def wait_exit(self, container_id: str, timeout: float | None) -> bool:
        return self.exits.wait_exit(container_id, timeout)

    def containers(self, running_only: bool = False) -> list[Container]:
        return self.views.containers(running_only)

    def inspect(self, ref: str) -> ContainerView:
        return self.views.inspect(self.get(ref))

    def summary(self, c: Container) -> ContainerView:
        """What ps shows of a container (inspect's view, sandbox key aside)."""
        return self.views.inspect(c)

    # -- exec ----------------------------------------------------------------

    def exec_create(
        self, ref: str, cmd: tuple[str, ...], env: tuple[str, ...] = (), workdir: str = ""
    ) -> ExecInstance:
        return self.execs.create(self.store.get_container(ref), cmd, env, workdir)

    def exec_start(
        self, exec_id: str, stdio: list[int] | None, clients: list[AttachedClient] | None = None
    ) -> ExecInstance:
        """Start an exec with the caller's `stdio`, or attached `clients` (closed here), or detached."""
        inst = self.execs.get(exec_id)
        try:
            c = self.store.get_container(inst.container_id)
            relay = None if stdio else exec_relay(inst.opts, clients or [])
            self.execs.start(
                inst,
                c,
                self.files.environment(c, c.config.hostname or c.short_id),
                stdio,
                exec_fields(self.confinement.process_fields(c), inst.opts),
                relay,
                [cl.sock.fileno() for cl in clients or []],
            )
        finally:
            for client in clients or []:
                client.close()
        return inst

    def exec_wait(self, exec_id: str) -> int:
        return self.execs.wait(exec_id)

    # -- networks ------------------------------------------------------------

    def network(self, ref: str) -> Network:
        return self.networks.get(ref)

    def network_list(self, wanted: NetworkFilter | None = None) -> list[Network]:
        return self.views.networks_matching(wanted)

    def network_members(self, n: Network) -> tuple[list[Member], tuple[Container, ...]]:
        """(its endpoints' owners with the endpoints, the containers in its mode: host or none)."""
        return self.views.members(n), self.views.mode_members(n)

    def network_create(self, spec: NetworkSpec) -> Network:
        return self.network_changes.create(spec)

    def network_remove(self, ref: str) -> Network:
        return self.network_changes.remove(ref)

    def network_prune(self, wanted: PruneFilter | None = None) -> list[str]:
        return self.network_changes.prune(wanted)

    def configure_default_bridge(self, bridge: str, bip: ipaddress.IPv4Interface | None) -> Network:
        return self.network_changes.configure_default_bridge(bridge, bip)

    def networks_changed(self) -> list[str]:
        return self.network_changes.networks_changed()

    def ensure_dns(self) -> None:
        self.network_changes.ensure_dns()

    def sync_forward(self) -> list[str]:
        return self.network_changes.sync_forward()

    def connect(
        self,
        network_ref: str,
        container_ref: str,
        ip: ipaddress.IPv4Address | None = None,
        aliases: tuple[str, ...] = (),
        mac: str = "",
        ip6: ipaddress.IPv6Address | None = None,
    ) -> Endpoint:
        return self.attach.connect(network_ref, container_ref, ip, aliases, mac, ip6)

    def disconnect(self, network_ref: str, container_ref: str, force: bool = False) -> None:
        self.attach.disconnect(network_ref, container_ref, force)

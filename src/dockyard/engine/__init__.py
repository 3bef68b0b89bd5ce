"""The Engine: the daemon's one object of use cases, and what they share.

This module owns the Engine's construction (settings, store, kernel, the
drivers, sandboxes, endpoints, networks, the shim and its exit worker), its
write lock, the change notification waiters sleep on, the intents a crash
leaves for gc, close, and the exec verbs (thin over execs.py). The use cases
themselves are mixed into the Engine from modules of one job each:

- container_run.py: create and start (`docker run` is the two);
- container_env.py: what a started process sees: environment, /etc files;
- confine.py: what keeps it in its box: PID namespace, root, capabilities,
  user, cgroup;
- container_exits.py: exits from the shim, teardown, waiting for an exit;
- container_stop.py: stop, kill, rm;
- network_changes.py: network create, rm, prune; the resolver and the
  firewall kept in step with the networks;
- network_attach.py: connect and disconnect of a running container;
- request_check.py: the cheap check run with requests.

Composed, not mixed in: containers/attach.py (clients attached to a
container's stdio, its terminal's size), containers/logs.py (its log read
back), containers/execs.py (exec instances).

The networks' own logic is networks.py's; gc and restore after a crash or
reboot are reconcile.py's.

Order in every mutation (style.md 3.4): validate first, in pure code; then,
under the engine's write lock, record the intent in one store transaction
(the container; at start its endpoint, address and host ports), do the
kernel work through named steps that push their undo, and commit the
outcome. On failure the undo steps run in reverse and the records go, so
bad input and failed starts change nothing.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator

from dockyard.drivers import Driver, registry
from dockyard.engine import sandbox
from dockyard.engine.containers.attach import Attaching
from dockyard.engine.containers.attach import Client as AttachedClient
from dockyard.engine.containers.confine import ContainerConfine
from dockyard.engine.containers.env import DEFAULT_PATH, NETWORK_FILES, ContainerEnv
from dockyard.engine.containers.execs import ExecInstance, Execs, exec_fields, exec_relay
from dockyard.engine.containers.exits import EXIT_UNKNOWN, ContainerExits
from dockyard.engine.containers.logs import Logs
from dockyard.engine.containers.run import ContainerRun
from dockyard.engine.containers.stop import STOP_TIMEOUT, ContainerStop
from dockyard.engine.endpoints import Endpoints
from dockyard.engine.images import Images
from dockyard.engine.networks.attach import NetworkAttach
from dockyard.engine.networks.changes import DnsSync, NetworkChanges
from dockyard.engine.networks.service import Networks
from dockyard.engine.request_check import CHECK_INTERVAL, RequestCheck
from dockyard.kernel import Kernel
from dockyard.kernel.cgroups import Cgroups
from dockyard.kernel.shim_client import ShimClient
from dockyard.model import Container, Network
from dockyard.policy import rules
from dockyard.settings import DaemonSettings
from dockyard.store import Store

# Importers of dockyard.engine find these here, as before the use cases moved out.
__all__ = [
    "CHECK_INTERVAL",
    "DEFAULT_PATH",
    "EXIT_UNKNOWN",
    "NETWORK_FILES",
    "STOP_TIMEOUT",
    "DnsSync",
    "Engine",
]


class Engine(
    ContainerRun,
    ContainerConfine,
    ContainerEnv,
    ContainerExits,
    ContainerStop,
    NetworkChanges,
    NetworkAttach,
    RequestCheck,
):
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
        self.drivers: dict = registry(kernel, self.owner)
        self.sandboxes = sandbox.Sandboxes(self.paths)
        self.cgroups = Cgroups(settings.root)
        self.endpoints = Endpoints(store, kernel, self.drivers)
        self.networks = Networks(settings, store, kernel, self.drivers, self._attached_names)
        self.shim = shim or ShimClient(self.paths, self._on_shim_exit)
        self.execs = Execs(self.shim)
        self.images = Images(settings, store)
        # The resolver process of user networks, when the daemon runs one.
        self.dns: DnsSync | None = None
        self.lock = threading.RLock()
        self.attaching = Attaching(self.shim, self.paths, store, self.lock)
        self.changed = threading.Condition()
        self.logs = Logs(store, self.paths, self.changed)
        self._generation = 0
        self._exit_queue: queue.Queue[tuple[str, int, int] | None] = queue.Queue()
        self._exit_worker = threading.Thread(target=self._exit_loop, name="exits", daemon=True)
        self._exit_worker.start()
        # Exit codes of auto-removed containers, for waiters that come late.
        self._removed_exit: dict[str, int] = {}
        self._check_lock = threading.Lock()
        self._last_check = float("-inf")
        # What the start-up reconciliation removed and did not remove, until
        # the first `system gc` reports it (that command often started the daemon).
        self.startup_report: object | None = None  # a reconcile.Report

    # -- helpers -----------------------------------------------------------

    def _attached_names(self, network: Network) -> list[str]:
        out = []
        for ep in self.store.endpoints(network_id=network.id):
            c = self.store.find_container(ep.container_id)
            out.append(c.name if c else ep.container_id[:12])
        return out

    def notify(self) -> None:
        """Wake the waiters: a container's state changed."""
        with self.changed:
            self._generation += 1
            self.changed.notify_all()

    @contextlib.contextmanager
    def intent(self, op: str, subject: str) -> Iterator[None]:
        """Record an operation under way; a crash leaves the record for gc."""
        intent_id = self.store.add_intent(op, subject)
        try:
            yield
        finally:
            # Reached on success and on a handled failure (its undo has run);
            # a crash (SIGKILL) never gets here.
            self.store.done_intent(intent_id)

    def driver_for(self, network: Network) -> Driver:
        return self.drivers[network.driver]

    def get(self, ref: str) -> Container:
        return self.store.get_container(ref)

    def settle(self) -> None:
        self.endpoints.settle()

    def close(self) -> None:
        self.endpoints.close()
        self.shim.close()
        self._exit_queue.put(None)
        self._exit_worker.join(timeout=5)

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
                self.environment(c, c.config.hostname or c.short_id),
                stdio,
                exec_fields(self.process_fields(c), inst.opts),
                relay,
                [cl.sock.fileno() for cl in clients or []],
            )
        finally:
            for client in clients or []:
                client.close()
        return inst

    def exec_wait(self, exec_id: str) -> int:
        return self.execs.wait(exec_id)

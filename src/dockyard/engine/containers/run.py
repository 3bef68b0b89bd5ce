"""Create and start a container (`docker run` is the two): ContainerRun.

This module owns the checks of a new container's config and its record
(create), and start: the sandbox its network mode resolves to (its own
pinned netns, none for host, the target's for container:), its endpoint
recorded and plugged, its spawn through the shim, each step pushing its
undo, and the running state recorded.

The files and environment the process is given are containers/env.py's;
its confinement (PID namespace, root, capabilities, user, cgroup) is
containers/confine.py's; addresses and host ports are endpoints.py's; what
ends a container is containers/exits.py's and containers/stop.py's.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import replace

from dockyard.engine.containers import names, requests
from dockyard.engine.containers.attach import Attaching
from dockyard.engine.containers.confine import Confinement
from dockyard.engine.containers.env import ContainerFiles
from dockyard.engine.containers.exits import ContainerExits
from dockyard.engine.coordination import Changes, Intents
from dockyard.engine.endpoints import Endpoints, new_id
from dockyard.engine.events import Events
from dockyard.engine.images import Images
from dockyard.engine.sandbox import Sandboxes
from dockyard.engine.steps import Undo, step
from dockyard.errors import CommandNotFound, CommandNotRunnable, Conflict, InvalidArgument
from dockyard.kernel import procs
from dockyard.kernel.cgroups import Cgroups
from dockyard.kernel.shim_client import ShimClient
from dockyard.kernel.spawn import SpawnRequest
from dockyard.model import (
    Container,
    ContainerConfig,
    ContainerState,
    Endpoint,
    EndpointOwner,
    ImageRun,
    ModeKind,
    Network,
    PortBinding,
    check_name,
)
from dockyard.policy import image_defaults
from dockyard.settings import Paths
from dockyard.store import Store, now


class ContainerRun:
    """create and start."""

    def __init__(
        self,
        *,
        store: Store,
        lock: threading.RLock,
        paths: Paths,
        sandboxes: Sandboxes,
        endpoints: Endpoints,
        cgroups: Cgroups,
        shim: ShimClient,
        files: ContainerFiles,
        confinement: Confinement,
        images: Images,
        attaching: Attaching,
        exits: ContainerExits,
        intents: Intents,
        changes: Changes,
        events: Events,
        ensure_dns: Callable[[], None],
    ) -> None:
        self.store = store
        self.lock = lock
        self.paths = paths
        self.sandboxes = sandboxes
        self.endpoints = endpoints
        self.cgroups = cgroups
        self.shim = shim
        self.files = files
        self.confinement = confinement
        self.images = images
        self.attaching = attaching
        self.exits = exits
        self.intents = intents
        self.changes = changes
        self.events = events
        # The resolver, started again if user networks need it and it died (networks/changes.py).
        self.ensure_dns = ensure_dns

    # -- create ------------------------------------------------------------

    def create(
        self, config: ContainerConfig, name: str | None, image: ImageRun | None = None
    ) -> tuple[Container, list[str]]:
        warnings: list[str] = []
        mode = config.network_mode
        if name is not None:
            name = check_name(name.lstrip("/"), "container")
        if image is not None:
            found = self.images.get(image.name)
            config = image_defaults.container_config(
                config, self.images.runtime_config(found), found.id, image
            )
        if not config.cmd:
            raise InvalidArgument("no command given: dockyard has no images, so name the command to run")
        if mode.kind in (ModeKind.HOST, ModeKind.NONE):
            if config.ports:
                warnings.append(f"Published ports are discarded when using {mode.kind.value} network mode")
                config = replace(config, ports=())
            if config.ip is not None:
                raise InvalidArgument(f"--ip cannot be used with the {mode.kind.value} network mode")
        if mode.kind is ModeKind.CONTAINER:
            for what, given in (
                ("port publishing", config.ports),
                ("hostname", config.hostname),
                ("--ip", config.ip),
            ):
                if given:
                    raise InvalidArgument(f"conflicting options: {what} and the container type network mode")
            self.store.get_container(mode.target)
        # A network missing now is start's error (404 "network X not found"), as Docker's:
        # at create, a 404 makes the docker CLI look for the image instead.
        network = self.store.find_network(mode.network_name) if mode.network_name is not None else None
        if network is not None:
            self.endpoints.check_request(network, config.ip, bool(config.ports), config.ip6)
        requests.check(self, config)
        config = requests.with_image_id(self, config)
        self.confinement.check(config)
        with self.lock, self.store.transaction():
            if name is None:
                name = names.generate(lambda n: self.store.find_container(n) is not None)
            container = Container(id=new_id(), name=name, config=config, created=now())
            self.store.add_container(container)
        self.paths.container_dir(container.id).mkdir(parents=True, exist_ok=True)
        self.events.container("create", container)
        return container, warnings

    # -- start -------------------------------------------------------------

    def start(self, ref: str, stdio: list[int] | None = None) -> Container:
        # "Restarted by the next dockyard command if it died" (issue 4): a pid check,
        # before the lock and outside any store transaction (the resolver opens the store).
        self.ensure_dns()
        with self.lock:
            c = self.store.get_container(ref)
            if c.state is ContainerState.RUNNING:
                return c
            undo = Undo()
            with self.intents.under("start", c.id):
                try:
                    started = self._start(c, stdio, undo)
                    self.events.container("start", started)
                    return started
                except (CommandNotFound, CommandNotRunnable) as e:
                    undo.rollback(e, f"start of container {c.name}")
                    self.attaching.forget(c.id)
                    self.exits.finish(c, e.exit_code, str(e))
                    raise
                except BaseException as e:
                    undo.rollback(e, f"start of container {c.name}")
                    self.attaching.forget(c.id)
                    raise

    def _resolve_sandbox(self, c: Container) -> tuple[str, str]:
        """(netns path to enter, owner of that netns) for the container's mode."""
        mode = c.config.network_mode
        if mode.kind is ModeKind.HOST:
            return "", ""
        if mode.kind is ModeKind.CONTAINER:
            target = self.store.get_container(mode.target)
            if target.id == c.id:
                raise InvalidArgument("a container cannot join its own network namespace")
            if not target.running:
                raise Conflict(f"cannot join network of a non running container: {target.name}")
            if target.config.network_mode.kind is ModeKind.HOST:
                return "", target.id
            owner = target.netns_owner or target.id
            return str(self.sandboxes.pin(owner)), owner
        return str(self.sandboxes.pin(c.id)), c.id

    def _start(self, c: Container, stdio: list[int] | None, undo: Undo) -> Container:
        mode = c.config.network_mode
        netns_path, owner = self._resolve_sandbox(c)
        endpoint: Endpoint | None = None
        network: Network | None = None
        bindings: tuple[PortBinding, ...] = ()
        me = EndpointOwner.container(c.id)
        step("run.begin")
        requests.check_start(c)
        if mode.network_name is not None and not c.config.network_left:
            network = self.store.get_network(mode.network_name)
            undo.push(lambda: self.endpoints.drop_records(me), "run.records")
            endpoint, bindings = self.endpoints.record(
                me,
                network,
                "eth0",
                c.config.ip,
                c.config.ports,
                c.config.aliases,
                c.config.mac,
                requested_ip6=c.config.ip6,
                plugging=True,
            )
        if owner == c.id:
            step("run.sandbox")
            undo.push(lambda: self.sandboxes.remove(c.id), "run.sandbox")
            self.sandboxes.create(c.id)
            requests.apply_sysctls(c, self.sandboxes.pin(c.id))
        if endpoint is not None and network is not None:
            self.endpoints.plug(network, endpoint, bindings, self.sandboxes.pin(c.id), undo)
        if c.config.networks:
            routed = endpoint is not None and network is not None and not network.internal
            requests.plug_further(self, c, self.sandboxes.pin(c.id), routed, undo)
        target = self.store.find_container(owner) if owner and owner != c.id else None
        hostname = c.config.hostname or c.short_id
        if target is not None:
            hostname = target.config.hostname or target.short_id
        files = self.files.network_files(c, hostname, endpoint, target)
        undo.push(lambda: self.cgroups.remove(c.id), "run.cgroup")
        req = SpawnRequest(
            key=c.id,
            argv=self.confinement.command_line(c),
            env=self.files.environment(c, hostname),
            cwd=c.config.workdir,
            netns=netns_path,
            new_uts=mode.kind is not ModeKind.HOST,
            hostname=hostname,
            binds=[(str(path), target_path) for target_path, path in files.items()],
            volumes=[[m.source, m.target, m.read_only] for m in c.config.mounts],
            exit_file=str(self.paths.exit_file(c.id)),
            **self.confinement.start_fields(c),
        )
        with contextlib.suppress(FileNotFoundError):
            self.paths.exit_file(c.id).unlink()
        step("run.spawn")
        if stdio:  # the caller's own descriptors (the dockyard CLI's foreground run)
            pid = self.shim.spawn(req, stdio)
        else:  # the shim holds its stdio: the log, and the clients attached (attach.py)
            relay, clients = self.attaching.relay_for(c)
            try:
                pid = self.shim.spawn(req, [cl.sock.fileno() for cl in clients], relay)
            finally:
                for client in clients:
                    client.close()
        # The process runs: if recording it fails, it must not run on unowned.
        undo.push(lambda: self.shim.kill(c.id, pid), "run.process")
        step("run.spawned")
        self.store.update_container(
            c.id,
            state=ContainerState.RUNNING,
            pid=pid,
            pid_start=procs.start_time(pid),
            started_at=now(),
            finished_at="",
            exit_code=0,
            error="",
            netns_owner=owner if owner != c.id else "",
        )
        step("run.done")
        self.changes.notify()
        return self.store.get_container(c.id)

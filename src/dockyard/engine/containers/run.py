"""Create and start a container (`docker run` is the two), mixed into the Engine.

This module owns the checks of a new container's config and its record
(create), and start: the sandbox its network mode resolves to (its own
pinned netns, none for host, the target's for container:), its endpoint
recorded and plugged, its spawn through the shim, each step pushing its
undo, and the running state recorded.

The files and environment the process is given are container_env.py's;
its confinement (PID namespace, root, capabilities, user, cgroup) is
confine.py's;
addresses and host ports are endpoints.py's; what ends a container is
container_exits.py's and container_stop.py's.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

from dockyard.engine.containers import names
from dockyard.engine.endpoints import new_id
from dockyard.engine.steps import Undo, step
from dockyard.errors import CommandNotFound, CommandNotRunnable, Conflict, InvalidArgument
from dockyard.kernel import procs
from dockyard.kernel.spawn import SpawnRequest
from dockyard.model import Container, ContainerConfig, ContainerState, Endpoint, ModeKind, check_name
from dockyard.store import now


class ContainerRun:
    """create and start; uses the Engine's store, lock, paths, sandboxes,
    endpoints, shim, intents and notify, container_env's files and
    environment, and container_exits' finish."""

    # -- create ------------------------------------------------------------

    def create(self, config: ContainerConfig, name: str | None) -> tuple[Container, list[str]]:
        warnings: list[str] = []
        mode = config.network_mode
        if name is not None:
            name = check_name(name.lstrip("/"), "container")
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
        if mode.network_name is not None:
            network = self.store.get_network(mode.network_name)
            self.endpoints.check_request(network, config.ip, bool(config.ports))
        self.check_confinement(config)
        with self.lock, self.store.transaction():
            if name is None:
                name = names.generate(lambda n: self.store.find_container(n) is not None)
            container = Container(id=new_id(), name=name, config=config, created=now())
            self.store.add_container(container)
        self.paths.container_dir(container.id).mkdir(parents=True, exist_ok=True)
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
            with self.intent("start", c.id):
                try:
                    return self._start(c, stdio, undo)
                except (CommandNotFound, CommandNotRunnable) as e:
                    undo.run()
                    self.attaching.forget(c.id)
                    self.finish(c, e.exit_code, str(e))
                    raise
                except BaseException:
                    undo.run()
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
        step("run.begin")
        if mode.network_name is not None:
            network = self.store.get_network(mode.network_name)
            undo.push(lambda: self.endpoints.drop_records(c.id))
            endpoint, bindings = self.endpoints.record(
                c.id, network, "eth0", c.config.ip, c.config.ports, c.config.aliases
            )
        if owner == c.id:
            step("run.sandbox")
            undo.push(lambda: self.sandboxes.remove(c.id))
            self.sandboxes.create(c.id)
        if endpoint is not None:
            self.endpoints.plug(network, endpoint, bindings, self.sandboxes.pin(c.id), undo)
        target = self.store.find_container(owner) if owner and owner != c.id else None
        hostname = c.config.hostname or c.short_id
        if target is not None:
            hostname = target.config.hostname or target.short_id
        files = self._network_files(c, hostname, endpoint, target)
        undo.push(lambda: self.cgroups.remove(c.id))
        req = SpawnRequest(
            key=c.id,
            argv=self.command_line(c),
            env=self.environment(c, hostname),
            cwd=c.config.workdir,
            netns=netns_path,
            new_uts=mode.kind is not ModeKind.HOST,
            hostname=hostname,
            binds=[(str(path), target_path) for target_path, path in files.items()],
            exit_file=str(self.paths.exit_file(c.id)),
            **self.start_fields(c),
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
        undo.push(lambda: self.shim.kill(c.id, pid))
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
        self.notify()
        return self.store.get_container(c.id)

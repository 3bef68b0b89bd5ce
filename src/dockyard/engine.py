"""Use cases on containers: create, start, stop, kill, rm, wait, exec, and
network connect/disconnect of a running container; network create, rm and
prune under the engine's lock, then the resolver and the firewall kept in
step (the networks' own logic is networks.py's; gc and restore after a
crash or reboot are reconcile.py's).

Order in every mutation (style.md 3.4): validate first, in pure code; then,
under the engine's write lock, record the intent in one store transaction
(the container; at start its endpoint, address and host ports), do the
kernel work through named steps that push their undo, and commit the
outcome. On failure the undo steps run in reverse and the records go, so
bad input and failed starts change nothing.

Exits come from the shim (the containers' parent); they are handled on a
worker thread of their own, because a start holding the lock may be
waiting on the shim's reader for its reply.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import queue
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from dockyard import names, rules, sandbox
from dockyard.drivers import Driver, registry
from dockyard.endpoints import Endpoints, new_id
from dockyard.errors import CommandNotFound, CommandNotRunnable, Conflict, InvalidArgument, NotFound
from dockyard.execs import KEY_PREFIX, ExecInstance, Execs
from dockyard.kernel import Kernel, procs
from dockyard.kernel.shim_client import ShimClient
from dockyard.kernel.spawn import SpawnRequest
from dockyard.model import (
    Container,
    ContainerConfig,
    ContainerState,
    DriverName,
    Endpoint,
    ModeKind,
    Network,
    check_name,
)
from dockyard.networks import Networks, NetworkSpec
from dockyard.settings import DaemonSettings
from dockyard.steps import Undo, step
from dockyard.store import Store, now


class DnsSync(Protocol):
    def sync(self, needed: bool) -> None: ...

    def running(self) -> bool: ...

    def stop(self) -> None: ...


DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STOP_TIMEOUT = 10
EXIT_UNKNOWN = 137
# The cheap part of reconciliation runs with requests, at most this often
# (seconds); DOCKYARD_CHECK_INTERVAL changes it, for tests.
CHECK_INTERVAL = float(os.environ.get("DOCKYARD_CHECK_INTERVAL") or 1.0)
NETWORK_FILES = (("/etc/hosts", "hosts"), ("/etc/hostname", "hostname"), ("/etc/resolv.conf", "resolv.conf"))


class Engine:
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
        self.endpoints = Endpoints(store, kernel, self.drivers)
        self.networks = Networks(settings, store, kernel, self.drivers, self._attached_names)
        self.shim = shim or ShimClient(self.paths, self._on_shim_exit)
        self.execs = Execs(self.shim)
        # The resolver process of user networks, when the daemon runs one.
        self.dns: DnsSync | None = None
        self.lock = threading.RLock()
        self.changed = threading.Condition()
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

    def networks_changed(self) -> list[str]:
        """Keep the resolver and the neighbours' firewall in step with the networks."""
        if self.dns is not None:
            self.dns.sync(bool(self.networks.user_networks()))
        return self.sync_forward()

    def ensure_dns(self) -> None:
        """Start the resolver again if user networks need it and it died (cheap otherwise)."""
        if self.dns is not None and not self.dns.running() and self.networks.user_networks():
            self.dns.sync(True)

    def sync_forward(self) -> list[str]:
        bridges = {n.bridge for n in self.store.networks() if n.driver is DriverName.BRIDGE and n.bridge}
        bridge_driver = self.drivers[DriverName.BRIDGE]
        return list(bridge_driver.sync_forward(bridges))

    def close(self) -> None:
        self.endpoints.close()
        self.shim.close()
        self._exit_queue.put(None)
        self._exit_worker.join(timeout=5)

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
                    self.finish(c, e.exit_code, str(e))
                    raise
                except BaseException:
                    undo.run()
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
        req = SpawnRequest(
            key=c.id,
            argv=list(c.config.cmd),
            env=self.environment(c, hostname),
            cwd=c.config.workdir,
            netns=netns_path,
            new_uts=mode.kind is not ModeKind.HOST,
            hostname=hostname,
            binds=[(str(path), target_path) for target_path, path in files.items()],
            mount_sys=bool(netns_path),
            detach_under=[str(self.paths.netns_dir)],
            log_path="" if stdio else str(self.paths.container_log(c.id)),
            exit_file=str(self.paths.exit_file(c.id)),
        )
        with contextlib.suppress(FileNotFoundError):
            self.paths.exit_file(c.id).unlink()
        step("run.spawn")
        pid = self.shim.spawn(req, stdio)
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

    def _network_files(
        self, c: Container, hostname: str, endpoint: Endpoint | None, target: Container | None
    ) -> dict[str, Path]:
        if c.config.network_mode.kind is ModeKind.HOST:
            return {}
        if target is not None:
            # container: mode shares the target's files, as Docker does.
            directory = self.paths.container_dir(target.id)
            found = {t: directory / f for t, f in NETWORK_FILES}
            if all(p.exists() for p in found.values()):
                return found
        address = endpoint.address.ip if endpoint else None
        network = self.store.find_network(endpoint.network_id) if endpoint else None
        resolv = self._resolv_conf(c, [network] if network is not None else [])
        extra = [c.name] if address is not None else []
        return sandbox.write_network_files(self.paths.container_dir(c.id), hostname, address, extra, resolv)

    def _resolv_conf(self, c: Container, networks: list[Network]) -> str:
        """resolv.conf for a container on these networks (in the order it joined them).

        On a user network: dockyard's resolver on the gateway of the first one,
        which answers for every network of the container; --dns there names the
        servers it forwards to. Otherwise (the default bridge, none): the
        host's resolvers, or --dns, or daemon.json's dns, written in.
        """
        cfg = c.config
        for network in networks:
            if network.driver is DriverName.BRIDGE and network.name != "bridge" and network.gateway:
                return sandbox.resolv_conf("", (network.gateway,), cfg.dns_search, cfg.dns_options)
        return sandbox.resolv_conf(
            sandbox.host_resolv_conf(), cfg.dns or self.settings.dns, cfg.dns_search, cfg.dns_options
        )

    def _refresh_resolv_conf(self, c: Container) -> None:
        """After connect or disconnect: name a resolver the container still reaches.

        As Docker, which rewrites it when a container first joins a network
        with DNS by name; here also when the network it named is left. The
        file is rewritten in place: it is bind-mounted into the container
        (and into those sharing its namespace, container: mode).
        """
        path = self.paths.container_dir(c.id) / "resolv.conf"
        if not path.exists():
            return
        networks = [
            n
            for ep in self.store.endpoints(container_id=c.id)
            if (n := self.store.find_network(ep.network_id)) is not None
        ]
        text = self._resolv_conf(c, networks)
        with contextlib.suppress(OSError):  # the container may be going away meanwhile
            if path.read_text() != text:
                path.write_text(text)

    def environment(self, c: Container, hostname: str) -> list[str]:
        env = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname, "HOME": "/root"}
        for item in c.config.env:
            key, _, value = item.partition("=")
            env[key] = value
        return [f"{k}={v}" for k, v in env.items()]

    # -- exits and teardown --------------------------------------------------

    def _on_shim_exit(self, key: str, pid: int, status: int) -> None:
        self._exit_queue.put((key, pid, status))

    def _exit_loop(self) -> None:
        while (item := self._exit_queue.get()) is not None:
            key, pid, status = item
            try:
                if key.startswith(KEY_PREFIX):
                    self.execs.exited(key, status)
                else:
                    self.container_exited(key, pid, status)
            except Exception as e:  # one bad exit must not stop the others
                print(f"dockyardd: handling the exit of {key} failed: {e!r}", file=sys.stderr, flush=True)

    def container_exited(self, container_id: str, pid: int, status: int) -> None:
        with self.lock:
            c = self.store.find_container(container_id)
            if c is None or c.state is not ContainerState.RUNNING or (pid and c.pid != pid):
                return
            step("exit.teardown")
            self.teardown(c)
            self.finish(c, status)

    def finish(self, c: Container, status: int, error: str = "") -> None:
        self.store.update_container(
            c.id,
            state=ContainerState.EXITED,
            exit_code=status,
            pid=0,
            pid_start=0,
            finished_at=now(),
            error=error,
        )
        if c.config.auto_remove:
            step("exit.remove")
            self.remove_record(c.id, status)
        self.notify()

    def teardown(self, c: Container) -> None:
        """Undo everything start made for c; idempotent."""
        self.endpoints.release(c.id)
        if not c.netns_owner:
            step("teardown.sandbox")
            self.sandboxes.remove(c.id)

    def exit_status_from_file(self, container_id: str) -> int:
        try:
            return int(json.loads(self.paths.exit_file(container_id).read_text())["status"])
        except (OSError, ValueError, KeyError):
            return EXIT_UNKNOWN

    def check_alive(self, container_id: str) -> None:
        """Catch an exit the shim could not report (for instance after the shim died)."""
        c = self.store.find_container(container_id)
        if c is not None and c.running and not procs.alive(c.pid, self.store.pid_start(c.id)):
            self.container_exited(c.id, c.pid, self.exit_status_from_file(c.id))

    # -- the cheap part of reconciliation ------------------------------------

    def check(self) -> bool:
        """What every command does on its way (the full part is gc): record the
        exits nobody reported (the shim died), retry endpoints whose release
        failed. Skipped, returning False, while a mutation holds the lock: a
        read must never wait for a slow run."""
        if not self.lock.acquire(blocking=False):
            return False
        try:
            for c in self.store.containers():
                if c.running:
                    self.check_alive(c.id)
            self.endpoints.retry_releasing()
        finally:
            self.lock.release()
        return True

    def on_request(self) -> None:
        """Called with every API request: check(), at most once per CHECK_INTERVAL."""
        if time.monotonic() - self._last_check < CHECK_INTERVAL:
            return
        if not self._check_lock.acquire(blocking=False):
            return  # another request is checking right now
        try:
            if self.check():
                self._last_check = time.monotonic()
        finally:
            self._check_lock.release()

    # -- waiting -------------------------------------------------------------

    def _wait_until(
        self, container_id: str, done: Callable[[Container | None], bool], timeout: float | None
    ) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self.changed:
                generation = self._generation
            if done(self.store.find_container(container_id)):
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            with self.changed:
                if self._generation == generation:
                    self.changed.wait(min(left, 1.0) if left is not None else 1.0)
            self.check_alive(container_id)

    def wait_exit(self, container_id: str, timeout: float | None) -> bool:
        """Wait until the container is not running; True when it is not."""
        return self._wait_until(container_id, lambda c: c is None or not c.running, timeout)

    def wait(self, ref: str, condition: str = "not-running") -> int:
        """Docker's wait: block until the condition, return the exit code."""
        c = self.store.get_container(ref)
        if condition == "removed":
            self._wait_until(c.id, lambda x: x is None, None)
        elif condition == "next-exit":
            before = c.finished_at
            self._wait_until(
                c.id,
                lambda x: x is None or (x.state is ContainerState.EXITED and x.finished_at != before),
                None,
            )
        else:
            self.wait_exit(c.id, None)
        after = self.store.find_container(c.id)
        if after is None:
            return self._removed_exit.get(c.id, 0)
        return after.exit_code

    # -- stop, kill, remove --------------------------------------------------

    def _signal(self, c: Container, sig: int) -> None:
        if procs.alive(c.pid, self.store.pid_start(c.id)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(c.pid, sig)

    def kill(self, ref: str, sig: int = signal.SIGKILL) -> Container:
        c = self.store.get_container(ref)
        if not c.running:
            raise Conflict(f"container {c.name} is not running")
        self._signal(c, sig)
        return c

    def stop(self, ref: str, timeout: int | None = None) -> Container:
        c = self.store.get_container(ref)
        if not c.running:
            return c
        grace = STOP_TIMEOUT if timeout is None else timeout
        step("stop.sigterm")
        self._signal(c, signal.SIGTERM)
        if grace > 0 and self.wait_exit(c.id, grace):
            return self.store.find_container(c.id) or c
        step("stop.sigkill")
        self._signal(c, signal.SIGKILL)
        self.wait_exit(c.id, None)
        return self.store.find_container(c.id) or c

    def remove(self, ref: str, force: bool = False) -> None:
        c = self.store.get_container(ref)
        if c.running and not force:
            raise Conflict(
                f"you cannot remove a running container {c.short_id}; stop the container "
                "before attempting removal or force remove (rm -f)"
            )
        with self.intent("rm", c.id):
            if c.running:
                step("rm.kill")
                self._signal(c, signal.SIGKILL)
                self.wait_exit(c.id, None)
            with self.lock:
                if self.store.find_container(c.id) is not None:
                    step("rm.records")
                    self.remove_record(c.id, None)
        self.notify()

    def remove_record(self, container_id: str, exit_code: int | None) -> None:
        # Endpoints still recorded here belong to a start that never reached
        # the kernel; those of an ended container are with the reaper.
        self.endpoints.drop_records_active(container_id)
        self.store.delete_container(container_id)
        if exit_code is not None:
            self._removed_exit[container_id] = exit_code
            while len(self._removed_exit) > 1000:
                self._removed_exit.pop(next(iter(self._removed_exit)))
        shutil.rmtree(self.paths.container_dir(container_id), ignore_errors=True)

    # -- networks ------------------------------------------------------------------

    def network_create(self, spec: NetworkSpec) -> Network:
        with self.lock:
            network = self.networks.create(spec)
        self.networks_changed()
        return network

    def network_remove(self, ref: str) -> Network:
        with self.lock:
            network = self.networks.remove(ref)
        self.networks_changed()
        return network

    def network_prune(self) -> list[str]:
        with self.lock:
            removed = self.networks.prune()
        self.networks_changed()
        return removed

    def configure_default_bridge(self, bridge: str, bip: ipaddress.IPv4Interface | None) -> Network:
        with self.lock:
            return self.networks.configure_default_bridge(bridge, bip)

    # -- network connect / disconnect ---------------------------------------------

    def connect(
        self,
        network_ref: str,
        container_ref: str,
        ip: ipaddress.IPv4Address | None = None,
        aliases: tuple[str, ...] = (),
    ) -> Endpoint:
        """Plug a running container into one more network: a new ethN appears."""
        network = self.store.get_network(network_ref)
        self.ensure_dns()
        with self.lock:
            c = self.store.get_container(container_ref)
            kind = c.config.network_mode.kind
            if kind in (ModeKind.HOST, ModeKind.NONE, ModeKind.CONTAINER):
                raise InvalidArgument(
                    f"container {c.name} uses the {c.config.network_mode} network mode and cannot be "
                    "connected to other networks"
                )
            if network.builtin:
                raise InvalidArgument(
                    f"containers cannot be connected to the pre-defined network {network.name}"
                )
            if not c.running:
                raise Conflict(f"container {c.name} is not running; start it before connecting it")
            self.endpoints.check_request(network, ip, False)
            current = self.store.endpoints(container_id=c.id)
            if any(ep.network_id == network.id for ep in current):
                raise Conflict(f"container {c.name} is already connected to network {network.name}")
            used = {ep.ifname for ep in self.store.endpoints(container_id=c.id, state=None)}
            ifname = next(f"eth{i}" for i in range(len(used) + 1) if f"eth{i}" not in used)
            undo = Undo()
            with self.intent("connect", f"{c.id}/{ifname}"):
                try:
                    undo.push(lambda: self.endpoints.drop_records(c.id, only_ifname=ifname))
                    endpoint, _ = self.endpoints.record(c.id, network, ifname, ip, (), aliases)
                    has_route = any(
                        (n := self.store.find_network(ep.network_id)) is not None and not n.internal
                        for ep in current
                    )
                    self.endpoints.plug(network, endpoint, (), self.sandboxes.pin(c.id), undo, not has_route)
                except BaseException:
                    undo.run()
                    raise
                step("connect.done")
            self._refresh_resolv_conf(c)
        return endpoint

    def disconnect(self, network_ref: str, container_ref: str, force: bool = False) -> None:
        network = self.store.get_network(network_ref)
        with self.lock:
            c = self.store.get_container(container_ref)
            found = [ep for ep in self.store.endpoints(container_id=c.id) if ep.network_id == network.id]
            if not found:
                if force:
                    return
                raise NotFound(f"container {c.name} is not connected to network {network.name}")
            step("disconnect.begin")
            self.endpoints.release(c.id, only=found[0])
            self._refresh_resolv_conf(c)
            step("disconnect.done")

    # -- exec ----------------------------------------------------------------

    def exec_create(
        self, ref: str, cmd: tuple[str, ...], env: tuple[str, ...] = (), workdir: str = ""
    ) -> ExecInstance:
        return self.execs.create(self.store.get_container(ref), cmd, env, workdir)

    def exec_start(self, exec_id: str, stdio: list[int] | None) -> ExecInstance:
        inst = self.execs.get(exec_id)
        c = self.store.get_container(inst.container_id)
        self.execs.start(inst, c, self.environment(c, c.config.hostname or c.short_id), stdio)
        return inst

    def exec_wait(self, exec_id: str) -> int:
        return self.execs.wait(exec_id)

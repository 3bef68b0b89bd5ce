"""Use cases on containers: create, start, stop, kill, rm, wait, exec.

Order in every mutation (style.md 3.4): validate in pure code first; then,
under the engine's write lock, record the intent in one store transaction
(the container, its endpoint and address, its host ports), do the kernel
work pushing one undo step per change, and commit the outcome. On failure
the undo steps run in reverse and the records are removed, so bad input
and failed starts change nothing.

Teardown when a container ends is split: what would misroute traffic or
hold a port (map elements, host-port holds, the sandbox pin) goes at once;
deleting the veth, which costs an RCU grace period (15-40 ms here), is done
by a reaper thread, and the address lease is released only after the link
is gone, so an address is never given twice.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import queue
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from dockyard import ipam, names, ports, sandbox
from dockyard.drivers import Driver, registry
from dockyard.errors import (
    CommandNotFound,
    CommandNotRunnable,
    Conflict,
    DockyardError,
    InvalidArgument,
    NotFound,
)
from dockyard.kernel import Kernel, holds, sysctl
from dockyard.kernel.netlink import mac_for
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
    PortBinding,
    check_name,
)
from dockyard.networks import Networks
from dockyard.settings import DaemonSettings
from dockyard.store import Store, now

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STOP_TIMEOUT = 10


def new_id() -> str:
    return secrets.token_hex(32)


def process_start_time(pid: int) -> int:
    """The kernel's start time of a process: with the pid, its identity."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[19])


def alive(pid: int, start_time: int) -> bool:
    return pid > 0 and start_time > 0 and process_start_time(pid) == start_time


@dataclass
class ExecInstance:
    id: str
    container_id: str
    cmd: tuple[str, ...]
    env: tuple[str, ...] = ()
    workdir: str = ""
    pid: int = 0
    running: bool = False
    exit_code: int | None = None
    done: threading.Event = field(default_factory=threading.Event)


class Undo:
    """Undo steps, run in reverse on failure; secondary errors are collected."""

    def __init__(self) -> None:
        self.steps: list[Callable[[], object]] = []

    def push(self, step: Callable[[], object]) -> None:
        self.steps.append(step)

    def run(self) -> list[Exception]:
        errors: list[Exception] = []
        for step in reversed(self.steps):
            try:
                step()
            except Exception as e:
                errors.append(e)
        self.steps.clear()
        return errors


class Engine:
    def __init__(
        self, settings: DaemonSettings, store: Store, kernel: Kernel, shim: ShimClient | None = None
    ) -> None:
        self.settings = settings
        self.paths = settings.paths
        self.store = store
        self.k = kernel
        self.drivers: dict[DriverName, Driver] = registry(kernel)
        self.sandboxes = sandbox.Sandboxes(self.paths)
        self.networks = Networks(settings, store, kernel, self.drivers, self._attached_names)
        self.shim = shim or ShimClient(self.paths, self._on_shim_exit)
        self.lock = threading.RLock()
        self.changed = threading.Condition()
        self.execs: dict[str, ExecInstance] = {}
        self._reap_queue: queue.Queue[tuple[str, Network, Endpoint] | None] = queue.Queue()
        self._reaper = threading.Thread(target=self._reap_loop, name="reaper", daemon=True)
        self._reaper.start()
        # Exits are handled off the shim's reader thread: a start holding the
        # lock may be waiting on that reader for the shim's reply.
        self._exit_queue: queue.Queue[tuple[str, int, int] | None] = queue.Queue()
        self._exit_worker = threading.Thread(target=self._exit_loop, name="exits", daemon=True)
        self._exit_worker.start()
        self._generation = 0
        # Exit codes of auto-removed containers, for waiters that come late.
        self._removed_exit: dict[str, int] = {}

    # -- helpers -----------------------------------------------------------

    def _attached_names(self, network: Network) -> list[str]:
        out = []
        for ep in self.store.endpoints(network_id=network.id):
            c = self.store.find_container(ep.container_id)
            out.append(c.name if c else ep.container_id[:12])
        return out

    def _notify(self) -> None:
        with self.changed:
            self._generation += 1
            self.changed.notify_all()

    def _wait_change(self, generation: int, timeout: float) -> None:
        with self.changed:
            if self._generation == generation:
                self.changed.wait(timeout)

    def driver_for(self, network: Network) -> Driver:
        return self.drivers[network.driver]

    def get(self, ref: str) -> Container:
        return self.store.get_container(ref)

    # -- create ------------------------------------------------------------

    def create(self, config: ContainerConfig, name: str | None) -> tuple[Container, list[str]]:
        warnings: list[str] = []
        mode = config.network_mode
        if name is not None:
            check_name(name.lstrip("/"), "container")
            name = name.lstrip("/")
        if not config.cmd:
            raise InvalidArgument("no command given: dockyard has no images, so name the command to run")
        if mode.kind in (ModeKind.HOST, ModeKind.NONE) and config.ports:
            warnings.append(f"Published ports are discarded when using {mode.kind.value} network mode")
            config = replace(config, ports=())
        if mode.kind is ModeKind.CONTAINER:
            if config.ports:
                raise InvalidArgument(
                    "conflicting options: port publishing and the container type network mode"
                )
            if config.hostname:
                raise InvalidArgument("conflicting options: hostname and the network mode container:")
            if config.ip is not None:
                raise InvalidArgument("conflicting options: --ip and the network mode container:")
            self.store.get_container(mode.target)
        elif mode.kind in (ModeKind.HOST, ModeKind.NONE) and config.ip is not None:
            raise InvalidArgument(f"--ip cannot be used with the {mode.kind.value} network mode")
        network_name = mode.network_name
        if network_name is not None:
            network = self.store.get_network(network_name)
            if network.driver is not DriverName.BRIDGE:
                # `--net host` spelled as a network name, for instance.
                raise InvalidArgument(
                    f"network {network.name} cannot be joined with --network {network_name}"
                )
            if config.ip is not None:
                assert network.subnet is not None
                ipam.check_in_subnet(config.ip, network.subnet, "--ip")
                if config.ip == network.gateway:
                    raise Conflict(f"address {config.ip} is the gateway of network {network.name}")
            if config.ports and network.internal:
                raise InvalidArgument(f"network {network.name} is internal: ports cannot be published")
        cid = new_id()
        with self.lock, self.store.transaction():
            if name is None:
                name = names.generate(lambda n: self.store.find_container(n) is not None)
            container = Container(id=cid, name=name, config=config, created=now())
            self.store.add_container(container)
        self.paths.container_dir(cid).mkdir(parents=True, exist_ok=True)
        return container, warnings

    # -- start -------------------------------------------------------------

    def start(self, ref: str, stdio: list[int] | None = None) -> Container:
        with self.lock:
            c = self.store.get_container(ref)
            if c.state is ContainerState.RUNNING:
                return c
            if c.state is ContainerState.REMOVING:
                raise Conflict(f"container {c.name} is being removed")
            undo = Undo()
            try:
                c = self._start(c, stdio, undo)
            except CommandNotFound as e:
                self._start_failed(c, undo, 127, str(e))
                raise
            except CommandNotRunnable as e:
                self._start_failed(c, undo, 126, str(e))
                raise
            except BaseException:
                undo.run()
                raise
            return c

    def _start_failed(self, c: Container, undo: Undo, code: int, message: str) -> None:
        undo.run()
        self.store.update_container(
            c.id, state=ContainerState.EXITED, exit_code=code, error=message, finished_at=now()
        )
        if c.config.auto_remove:
            self._remove_record(c.id, code)
        self._notify()

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
        network: Network | None = None
        endpoint: Endpoint | None = None
        bindings: tuple[PortBinding, ...] = ()
        if mode.network_name is not None:
            network = self.store.get_network(mode.network_name)
            endpoint, bindings = self._record_endpoint(c, network, "eth0")
            undo.push(lambda: self._drop_records(c.id))
        if owner == c.id:
            self.sandboxes.create(c.id)
            undo.push(lambda: self.sandboxes.remove(c.id))
        if network is not None and endpoint is not None:
            driver = self.driver_for(network)
            driver.join(network, endpoint, self.sandboxes.pin(c.id))
            undo.push(lambda: driver.leave(network, endpoint))
            driver.publish(network, endpoint, bindings)
            undo.push(lambda: driver.unpublish(endpoint, bindings))
        hostname = c.config.hostname or c.short_id
        owner_container = self.store.find_container(owner) if owner and owner != c.id else None
        if mode.kind is ModeKind.CONTAINER and owner_container is not None:
            hostname = owner_container.config.hostname or owner_container.short_id
        files = self._network_files(c, hostname, endpoint, owner_container)
        env = self._environment(c, hostname)
        req = SpawnRequest(
            key=c.id,
            argv=list(c.config.cmd),
            env=env,
            cwd=c.config.workdir,
            netns=netns_path,
            new_uts=mode.kind not in (ModeKind.HOST,),
            hostname=hostname,
            binds=[(str(path), target) for target, path in files.items()],
            mount_sys=bool(netns_path),
            detach_under=[str(self.paths.netns_dir)],
            log_path="" if stdio else str(self.paths.container_log(c.id)),
            exit_file=str(self.paths.exit_file(c.id)),
        )
        with contextlib.suppress(FileNotFoundError):
            self.paths.exit_file(c.id).unlink()
        pid = self.shim.spawn(req, stdio)
        started = now()
        self.store.update_container(
            c.id,
            state=ContainerState.RUNNING,
            pid=pid,
            pid_start=process_start_time(pid),
            started_at=started,
            finished_at="",
            exit_code=0,
            error="",
            netns_owner=owner if owner != c.id else "",
        )
        self._notify()
        return self.store.get_container(c.id)

    def _record_endpoint(
        self, c: Container, network: Network, ifname: str
    ) -> tuple[Endpoint, tuple[PortBinding, ...]]:
        """Choose address and host ports, and record them: the intent."""
        assert network.subnet is not None
        reserved = [network.gateway, *(a for _, a in network.aux_addresses)]
        allocator = ipam.AddressAllocator(network.subnet, [r for r in reserved if r], network.ip_range)
        with self.store.transaction():
            used = lambda a: self.store.address_used(network.id, a)  # noqa: E731
            if c.config.ip is not None:
                address = allocator.check_requested(c.config.ip, used)
            else:
                address = allocator.allocate(used, self.store.ip_cursor(network.id))
                self.store.set_ip_cursor(network.id, address)
            eid = new_id()
            endpoint = Endpoint(
                id=eid,
                container_id=c.id,
                network_id=network.id,
                ifname=ifname,
                address=ipaddress.IPv4Interface(f"{address}/{network.subnet.prefixlen}"),
                gateway=network.gateway,
                mac=mac_for(address),
                host_ifname="veth" + eid[:7],
            )
            self.store.add_endpoint(endpoint)
            bindings = self._choose_ports(c, network)
            self.store.add_ports(c.id, bindings)
        return endpoint, bindings

    def _choose_ports(self, c: Container, network: Network) -> tuple[PortBinding, ...]:
        if not c.config.ports:
            return ()
        taken: dict[ports.Key, list[ipaddress.IPv4Address | None]] = {}
        for _, b in self.store.ports():
            taken.setdefault((b.host_port, b.proto), []).append(b.host_ip)
        requests = [
            r
            if r.host_ip is not None or network.host_binding is None
            else replace(r, host_ip=network.host_binding)
            for r in c.config.ports
        ]
        chooser = ports.HostPortChooser(taken, holds.can_bind, sysctl.local_port_range())
        return chooser.choose(requests)

    def _drop_records(self, container_id: str) -> None:
        with self.store.transaction():
            for ep in self.store.endpoints(container_id=container_id, state=None):
                self.store.delete_endpoint(ep.id)
            self.store.delete_ports(container_id)

    def _network_files(
        self, c: Container, hostname: str, endpoint: Endpoint | None, owner: Container | None
    ) -> dict[str, os.PathLike[str]]:
        mode = c.config.network_mode
        if mode.kind is ModeKind.HOST:
            return {}
        if owner is not None:
            # container: mode shares the target's files, as Docker does.
            directory = self.paths.container_dir(owner.id)
            found = {
                t: directory / f
                for t, f in (
                    ("/etc/hosts", "hosts"),
                    ("/etc/hostname", "hostname"),
                    ("/etc/resolv.conf", "resolv.conf"),
                )
            }
            if all(p.exists() for p in found.values()):
                return dict(found)
        address = endpoint.address.ip if endpoint else None
        resolv = sandbox.resolv_conf(sandbox.host_resolv_conf(), self.settings.dns)
        names_ = [c.name] if address is not None else []
        return dict(
            sandbox.write_network_files(self.paths.container_dir(c.id), hostname, address, names_, resolv)
        )

    def _environment(self, c: Container, hostname: str) -> list[str]:
        env = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname, "HOME": "/root"}
        for item in c.config.env:
            key, _, value = item.partition("=")
            env[key] = value
        return [f"{k}={v}" for k, v in env.items()]

    # -- exit and teardown ---------------------------------------------------

    def _on_shim_exit(self, key: str, pid: int, status: int) -> None:
        self._exit_queue.put((key, pid, status))

    def _exit_loop(self) -> None:
        while (item := self._exit_queue.get()) is not None:
            try:
                self._handle_exit(*item)
            except Exception as e:  # one bad exit must not stop the others
                print(f"dockyardd: handling the exit of {item[0]} failed: {e!r}", flush=True)

    def _handle_exit(self, key: str, pid: int, status: int) -> None:
        if key.startswith("exec:"):
            inst = self.execs.get(key[5:])
            if inst is not None:
                inst.exit_code, inst.running = status, False
                inst.done.set()
            return
        self.container_exited(key, pid, status)

    def container_exited(self, container_id: str, pid: int, status: int) -> None:
        with self.lock:
            c = self.store.find_container(container_id)
            if c is None or c.state is not ContainerState.RUNNING or (pid and c.pid != pid):
                return
            self.teardown(c)
            self.store.update_container(
                c.id, state=ContainerState.EXITED, exit_code=status, pid=0, pid_start=0, finished_at=now()
            )
            if c.config.auto_remove:
                self._remove_record(c.id, status)
        self._notify()

    def teardown(self, c: Container) -> None:
        """Undo everything start made for c; idempotent."""
        with self.store.transaction():
            eps = self.store.endpoints(container_id=c.id)
            bindings = tuple(b for _, b in self.store.ports(c.id))
            for ep in eps:
                self.store.set_endpoint_state(ep.id, "releasing")
            self.store.delete_ports(c.id)
        for ep in eps:
            network = self.store.find_network(ep.network_id)
            if network is None:
                self.store.delete_endpoint(ep.id)
                continue
            self.driver_for(network).unpublish(ep, bindings)
            self._reap_queue.put((ep.id, network, ep))
        if not c.netns_owner:
            self.sandboxes.remove(c.id)

    def _reap_loop(self) -> None:
        while True:
            item = self._reap_queue.get()
            try:
                if item is None:
                    return
                eid, network, ep = item
                try:
                    self.driver_for(network).leave(network, ep)
                except DockyardError as e:
                    # Left for gc, which retries from the 'releasing' record.
                    print(f"dockyardd: cannot remove {ep.host_ifname}: {e}", flush=True)
                    continue
                self.store.delete_endpoint(eid)
            finally:
                self._reap_queue.task_done()

    def settle(self) -> None:
        """Wait until every pending veth removal is done."""
        self._reap_queue.join()

    def close(self) -> None:
        self.settle()
        self._reap_queue.put(None)
        self._reaper.join(timeout=5)
        self.shim.close()
        self._exit_queue.put(None)
        self._exit_worker.join(timeout=5)

    # -- stop, kill, remove --------------------------------------------------

    def kill(self, ref: str, sig: int = signal.SIGKILL) -> Container:
        c = self.store.get_container(ref)
        if not c.running:
            raise Conflict(f"container {c.name} is not running")
        self._signal(c, sig)
        return c

    def _signal(self, c: Container, sig: int) -> None:
        if not alive(c.pid, self.store.pid_start(c.id)):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(c.pid, sig)

    def wait_exit(self, container_id: str, timeout: float | None) -> bool:
        """Wait until the container is not running; True when it is not."""
        return self._wait_until(container_id, lambda c: c is None or not c.running, timeout)

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
            self._wait_change(generation, min(left, 1.0) if left is not None else 1.0)
            self._check_alive(container_id)

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
            code = self._removed_exit.get(c.id)
            return 0 if code is None else code
        return after.exit_code

    def _check_alive(self, container_id: str) -> None:
        """Catch an exit the shim could not report (the shim itself died)."""
        c = self.store.find_container(container_id)
        if c is not None and c.running and not alive(c.pid, self.store.pid_start(c.id)):
            self.container_exited(c.id, c.pid, self._exit_status_from_file(c.id))

    def _exit_status_from_file(self, container_id: str) -> int:
        try:
            return int(json.loads(self.paths.exit_file(container_id).read_text())["status"])
        except (OSError, ValueError, KeyError):
            return 137

    def stop(self, ref: str, timeout: int | None = None) -> Container:
        c = self.store.get_container(ref)
        if not c.running:
            return c
        t = STOP_TIMEOUT if timeout is None else timeout
        if t > 0 or timeout is None:
            self._signal(c, signal.SIGTERM)
            if self.wait_exit(c.id, t):
                return self.store.find_container(c.id) or c
        self._signal(c, signal.SIGKILL)
        self.wait_exit(c.id, None)
        return self.store.find_container(c.id) or c

    def remove(self, ref: str, force: bool = False) -> None:
        c = self.store.get_container(ref)
        if c.running:
            if not force:
                raise Conflict(
                    f"you cannot remove a running container {c.short_id}; stop the container "
                    "before attempting removal or force remove (rm -f)"
                )
            self._signal(c, signal.SIGKILL)
            self.wait_exit(c.id, None)
        with self.lock:
            if self.store.find_container(c.id) is not None:
                self._remove_record(c.id, None)
        self._notify()

    def _remove_record(self, container_id: str, exit_code: int | None) -> None:
        self._drop_records_if_created(container_id)
        self.store.delete_container(container_id)
        if exit_code is not None:
            self._removed_exit[container_id] = exit_code
            while len(self._removed_exit) > 1000:
                self._removed_exit.pop(next(iter(self._removed_exit)))
        shutil.rmtree(self.paths.container_dir(container_id), ignore_errors=True)

    def _drop_records_if_created(self, container_id: str) -> None:
        # Endpoints of a container that never started (or whose start failed)
        # hold no kernel objects; those of an ended one are being reaped.
        with self.store.transaction():
            for ep in self.store.endpoints(container_id=container_id):
                self.store.delete_endpoint(ep.id)
            self.store.delete_ports(container_id)

    def removed_exit_code(self, container_id: str) -> int | None:
        return self._removed_exit.get(container_id)

    # -- exec ----------------------------------------------------------------

    def exec_create(
        self, ref: str, cmd: tuple[str, ...], env: tuple[str, ...] = (), workdir: str = ""
    ) -> ExecInstance:
        c = self.store.get_container(ref)
        if not c.running:
            raise Conflict(f"container {c.short_id} is not running")
        if not cmd:
            raise InvalidArgument("no command given to exec")
        inst = ExecInstance(new_id(), c.id, cmd, env, workdir)
        self.execs[inst.id] = inst
        return inst

    def exec_start(self, exec_id: str, stdio: list[int] | None) -> ExecInstance:
        inst = self.execs.get(exec_id)
        if inst is None:
            raise NotFound(f"no such exec instance: {exec_id}")
        c = self.store.get_container(inst.container_id)
        if not c.running:
            raise Conflict(f"container {c.short_id} is not running")
        hostname = c.config.hostname or c.short_id
        env = self._environment(c, hostname) + list(inst.env)
        req = SpawnRequest(
            key=f"exec:{inst.id}",
            argv=list(inst.cmd),
            env=env,
            cwd=inst.workdir or c.config.workdir,
            join_pid=c.pid,
        )
        inst.running = True
        try:
            inst.pid = self.shim.spawn(req, stdio)
        except DockyardError:
            inst.running = False
            raise
        return inst

    def exec_wait(self, exec_id: str) -> int:
        inst = self.execs.get(exec_id)
        if inst is None:
            raise NotFound(f"no such exec instance: {exec_id}")
        inst.done.wait()
        self.execs.pop(exec_id, None)
        return inst.exit_code if inst.exit_code is not None else 0

"""`exec` instances: a command run inside a running container's namespaces.

Kept in memory, as Docker keeps them: created, started once, inspected
(`Running`, `ExitCode`, `Pid`, `ProcessConfig`) while they run and after;
a finished one is forgotten KEEP_FINISHED seconds after its end, or with
its container. The shim forks the process into the container's namespaces
and reports its exit like a container's.

Its stdio: the caller's own descriptors (the dockyard CLI), or held by the
shim (kernel/relay.py) with the hijacked connection of the client that
started it attached (Docker's exec start), or nothing for a detached one
(/dev/null; a pty nobody reads when it asked for one).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from dockyard import digests
from dockyard.errors import CommandNotFound, CommandNotRunnable, Conflict, InvalidArgument, NotFound
from dockyard.kernel.shim_client import ShimClient
from dockyard.kernel.spawn import SpawnRequest
from dockyard.model import Container
from dockyard.policy import security

# An exec's key at the shim: exec:<container id>/<exec id>, so that gc can
# tell whose it is even after a daemon restart forgot the instance.
KEY_PREFIX = "exec:"
# Docker forgets an ended exec some minutes after it ended.
KEEP_FINISHED = 300.0


def exec_key(container_id: str, exec_id: str) -> str:
    return f"{KEY_PREFIX}{container_id}/{exec_id}"


def container_of_key(key: str) -> str:
    """The container an exec's key belongs to."""
    return key[len(KEY_PREFIX) :].partition("/")[0]


@dataclass(frozen=True)
class ExecOptions:
    """What `POST /containers/{id}/exec` asks for, in Docker's names' order."""

    cmd: tuple[str, ...]
    env: tuple[str, ...] = ()
    workdir: str = ""
    user: str = ""  # "" : the container's
    privileged: bool = False
    tty: bool = False
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True
    detach_keys: str = ""
    console_size: tuple[int, int] = (0, 0)  # (height, width) of its pty at start


@dataclass
class ExecInstance:
    id: str
    container_id: str
    cmd: tuple[str, ...]
    env: tuple[str, ...] = ()
    workdir: str = ""
    options: ExecOptions | None = None
    pid: int = 0
    running: bool = False
    started: bool = False
    exit_code: int | None = None
    ended_at: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def opts(self) -> ExecOptions:
        return self.options or ExecOptions(self.cmd, self.env, self.workdir)


def exec_fields(container_fields: dict[str, Any], opts: ExecOptions) -> dict[str, Any]:
    """The container's process fields with the exec's own User and Privileged."""
    fields = dict(container_fields)
    if opts.user:
        spec = security.parse_user(opts.user)
        fields.update(user=spec.user, group=spec.group)
    if opts.privileged:
        fields["caps"] = security.capability_mask(security.capabilities((), (), True))
        fields["no_new_privs"] = False
    return fields


def exec_relay(opts: ExecOptions, clients: list[Any]) -> dict[str, Any] | None:
    """The shim's relay request for an exec with these attached clients; None: /dev/null."""
    if not clients and not opts.tty:
        return None
    relay: dict[str, Any] = {
        "tty": opts.tty,
        "stdin": opts.stdin and bool(clients),
        "stdin_once": True,
        "log": "",
        "attach": [cl.spec() for cl in clients],
    }
    if any(opts.console_size):
        relay["size"] = list(opts.console_size)
    return relay


class Execs:
    def __init__(self, shim: ShimClient) -> None:
        self.shim = shim
        self._items: dict[str, ExecInstance] = {}
        self._lock = threading.Lock()

    def create(
        self,
        c: Container,
        cmd: tuple[str, ...],
        env: tuple[str, ...] = (),
        workdir: str = "",
        options: ExecOptions | None = None,
    ) -> ExecInstance:
        if options is not None:
            cmd, env, workdir = options.cmd, options.env, options.workdir
        if not c.running:
            raise Conflict(f"container {c.id} is not running")
        if not cmd:
            raise InvalidArgument("no command given to exec")
        inst = ExecInstance(digests.token_hex(32), c.id, cmd, env, workdir, options)
        now = time.monotonic()
        with self._lock:
            for old in [i for i in self._items.values() if i.ended_at and now - i.ended_at > KEEP_FINISHED]:
                del self._items[old.id]
            self._items[inst.id] = inst
        return inst

    def get(self, exec_id: str) -> ExecInstance:
        inst = self._items.get(exec_id)
        if inst is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return inst

    def start(
        self,
        inst: ExecInstance,
        c: Container,
        env: list[str],
        stdio: list[int] | None,
        confinement: dict[str, Any] | None = None,
        relay: dict[str, Any] | None = None,
        clients: list[int] | None = None,
    ) -> None:
        """Fork it: with the caller's `stdio`, or with `relay` (the shim's) and the sockets of
        its attached `clients`."""
        if not c.running:
            raise Conflict(f"container {c.id} is not running")
        with self._lock:
            if inst.started:
                raise Conflict(f"exec instance {inst.id} has already been started")
            inst.started = True
        # The container's namespaces (its PID namespace too: the shim forks it
        # there), user, capabilities and cgroup (engine/containers/confine.py).
        req = SpawnRequest(
            key=exec_key(c.id, inst.id),
            argv=list(inst.cmd),
            env=env + list(inst.env),
            cwd=inst.workdir or c.config.workdir,
            join_pid=c.pid,
            **(confinement or {}),
        )
        inst.running = True
        try:
            inst.pid = self.shim.spawn(req, clients if relay is not None else stdio, relay)
        except (CommandNotFound, CommandNotRunnable) as e:
            # Docker's: the exec ran and failed, with 127 or 126 as its exit code.
            inst.exit_code, inst.running = e.exit_code, False
            inst.ended_at = time.monotonic()
            inst.done.set()
            raise
        except BaseException:
            inst.running = False
            with self._lock:
                self._items.pop(inst.id, None)
            raise

    def exited(self, key: str, status: int) -> None:
        inst = self._items.get(key.rpartition("/")[2])
        if inst is not None:
            inst.exit_code, inst.running = status, False
            inst.ended_at = time.monotonic()
            inst.done.set()

    def settled(self, inst: ExecInstance) -> ExecInstance:
        """The instance with every exit the shim reported so far applied (its stream's end
        comes after its exit's report: an inspect after the stream sees the exit)."""
        if inst.running:
            self.shim.barrier()
        return inst

    def wait(self, exec_id: str) -> int:
        inst = self.get(exec_id)
        inst.done.wait()
        with self._lock:
            self._items.pop(exec_id, None)
        return inst.exit_code if inst.exit_code is not None else 0

    def forget(self, container_id: str) -> None:
        """The container is gone: so are its execs."""
        with self._lock:
            for inst in [i for i in self._items.values() if i.container_id == container_id]:
                del self._items[inst.id]

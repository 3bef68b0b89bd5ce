"""`exec` instances: a command run inside a running container's namespaces.

Kept in memory, as Docker keeps them: they live as long as their process.
The shim forks the process into the container's namespaces and reports its
exit like a container's.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.kernel.shim_client import ShimClient
from dockyard.kernel.spawn import SpawnRequest
from dockyard.model import Container

# An exec's key at the shim: exec:<container id>/<exec id>, so that gc can
# tell whose it is even after a daemon restart forgot the instance.
KEY_PREFIX = "exec:"


def exec_key(container_id: str, exec_id: str) -> str:
    return f"{KEY_PREFIX}{container_id}/{exec_id}"


def container_of_key(key: str) -> str:
    """The container an exec's key belongs to."""
    return key[len(KEY_PREFIX) :].partition("/")[0]


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


class Execs:
    def __init__(self, shim: ShimClient) -> None:
        self.shim = shim
        self._items: dict[str, ExecInstance] = {}

    def create(self, c: Container, cmd: tuple[str, ...], env: tuple[str, ...], workdir: str) -> ExecInstance:
        if not c.running:
            raise Conflict(f"container {c.short_id} is not running")
        if not cmd:
            raise InvalidArgument("no command given to exec")
        inst = ExecInstance(secrets.token_hex(32), c.id, cmd, env, workdir)
        self._items[inst.id] = inst
        return inst

    def get(self, exec_id: str) -> ExecInstance:
        inst = self._items.get(exec_id)
        if inst is None:
            raise NotFound(f"no such exec instance: {exec_id}")
        return inst

    def start(
        self,
        inst: ExecInstance,
        c: Container,
        env: list[str],
        stdio: list[int] | None,
        confinement: dict[str, Any] | None = None,
    ) -> None:
        if not c.running:
            raise Conflict(f"container {c.short_id} is not running")
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
            inst.pid = self.shim.spawn(req, stdio)
        except BaseException:
            inst.running = False
            self._items.pop(inst.id, None)
            raise

    def exited(self, key: str, status: int) -> None:
        inst = self._items.get(key.rpartition("/")[2])
        if inst is not None:
            inst.exit_code, inst.running = status, False
            inst.done.set()

    def wait(self, exec_id: str) -> int:
        inst = self.get(exec_id)
        inst.done.wait()
        self._items.pop(exec_id, None)
        return inst.exit_code if inst.exit_code is not None else 0

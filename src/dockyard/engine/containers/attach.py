"""Clients attached to a container's stdio (Docker's attach), and its terminal's size.

A client attaches with the socket of its hijacked API connection. To a
running container the socket goes straight to the shim, which holds the
container's stdio (kernel/relay.py). To a container not started yet (the
docker CLI attaches before it starts a foreground `run`, and `start -a`
the same) the socket waits here and rides with the spawn request, so the
client sees the container's output from its first byte. Such a socket
goes when the container is removed or its start fails.

A container started with the caller's own descriptors (the dockyard CLI's
foreground run) or by an older shim has no relay: attaching to it is
refused.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.kernel import relay as relay_keys
from dockyard.kernel.shim_client import ShimClient
from dockyard.model import Container
from dockyard.settings import Paths
from dockyard.store import Store


@dataclass
class Client:
    """One attached client: its socket (ours to close) and what it asked for."""

    sock: socket.socket
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True
    logs: bool = False
    detach_keys: str = ""
    pending: bytes = b""  # what it sent before the shim took its socket

    def spec(self) -> dict[str, Any]:
        return {
            "stdin": self.stdin,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "logs": self.logs,
            "keys": self.detach_keys or None,
            "pending": self.pending.hex(),
        }

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def check_detach_keys(text: str) -> str:
    if text:
        try:
            relay_keys.detach_keys(text)
        except ValueError as e:
            raise InvalidArgument(str(e)) from None
    return text


class Attaching:
    """Attached clients of containers; the spawn's relay request."""

    def __init__(self, shim: ShimClient, paths: Paths, store: Store, lock: threading.RLock) -> None:
        self.shim = shim
        self.paths = paths
        self.store = store
        # The engine's: a start takes the waiting clients under it, so a client is
        # either handed to the running container's relay or waits for its next start.
        self.engine_lock = lock
        self._waiting: dict[str, list[Client]] = {}
        self._lock = threading.Lock()

    def check(self, c: Container) -> None:
        """Refuse before the connection is hijacked: a running container without a relay."""
        if c.running and not self.shim.request({"op": "relayed", "key": c.id}).get("ok"):
            raise Conflict(
                f"container {c.short_id} was started with its caller's own terminal (or by an older "
                "dockyard): its output cannot be attached to"
            )

    def attach(self, container_id: str, client: Client, ready: Callable[[], None]) -> None:
        """Hand the client to the running container's relay, or keep it for its start.

        `ready` is called once the client is sure to see every output from its
        start on (the API's answer: the client starts the container after it);
        the client's socket is closed (its stream ends) when it cannot be attached.
        """
        with self.engine_lock:
            c = self.store.find_container(container_id)
            if c is None:
                client.close()
                raise NotFound(f"No such container: {container_id}")
            try:
                ready()
            except BaseException:
                client.close()
                raise
            if not c.running:
                with self._lock:
                    self._waiting.setdefault(c.id, []).append(client)
                return
        try:
            if c is not None:
                self.shim.attach(c.id, client.sock.fileno(), client.spec())
        finally:
            client.close()

    def relay_for(self, c: Container) -> tuple[dict[str, Any], list[Client]]:
        """The spawn's relay request for a container, and the clients waiting for it (the caller
        closes them once the spawn took their sockets)."""
        with self._lock:
            clients = self._waiting.pop(c.id, [])
        spec: dict[str, Any] = {
            "tty": c.config.tty,
            "stdin": c.config.open_stdin,
            "stdin_once": c.config.stdin_once,
            "log": str(self.paths.container_log(c.id)),
            "attach": [cl.spec() for cl in clients],
        }
        if any(c.config.console_size):
            spec["size"] = list(c.config.console_size)
        return spec, clients

    def forget(self, container_id: str) -> None:
        """The container is gone (or could not start): its waiting clients' streams end."""
        with self._lock:
            clients = self._waiting.pop(container_id, [])
        for client in clients:
            client.close()

    def resize(self, key: str, height: int, width: int) -> None:
        if height < 0 or width < 0 or height > 0xFFFF or width > 0xFFFF:
            raise InvalidArgument(f"invalid terminal size {height}x{width}")
        if not self.shim.resize(key, height, width):
            raise Conflict("the process has no terminal (it was not started with -t, or has ended)")

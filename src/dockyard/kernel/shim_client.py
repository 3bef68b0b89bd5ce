"""The daemon's side of the shim: start it when absent, ask it to spawn, hear exits."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from dockyard.errors import CommandNotFound, CommandNotRunnable, InvalidArgument, KernelError
from dockyard.kernel import files
from dockyard.kernel.shim import VERSION, recv_message, send_message
from dockyard.kernel.spawn import SpawnRequest
from dockyard.settings import Paths

log = logging.getLogger(__name__)

ExitCallback = Callable[[str, int, int], None]  # key, pid, status
START_TIMEOUT = 10.0


class ShimClient:
    def __init__(self, paths: Paths, on_exit: ExitCallback) -> None:
        self.paths = paths
        self.on_exit = on_exit
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._seq = itertools.count(1)
        self._pending: dict[int, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self._pending_lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self._connect_lock = threading.Lock()
        self.closed = False
        # Counts connections made and lost: exits may have gone unreported
        # since it last changed (a shim that died, or one from before this
        # connection), so the engine's check then looks at every container.
        self.generation = 0

    # -- connection ------------------------------------------------------

    def _try_connect(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.connect(str(self.paths.shim_socket))
            # An older shim (the previous version's, kept for its containers)
            # cannot confine: a new one is started, which takes over the path.
            send_message(sock, {"op": "ping", "seq": 0})
            sock.settimeout(START_TIMEOUT)
            reply = json.loads(recv_message(sock)[0] or b"{}")
            sock.settimeout(None)
            if int(reply.get("version", 1)) < VERSION:
                sock.close()
                return None
        except (OSError, ValueError):
            sock.close()
            return None
        return sock

    def _start_shim(self) -> None:
        log = files.open_private(self.paths.daemon_log, 0o600, append=True)
        try:
            subprocess.Popen(
                [sys.executable, "-m", "dockyard.kernel.shim", "--root", str(self.paths.root)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            os.close(log)

    def connect(self) -> None:
        with self._connect_lock:
            if self._sock is not None:
                return
            sock = self._try_connect()
            if sock is None:
                self._start_shim()
                deadline = time.monotonic() + START_TIMEOUT
                while sock is None and time.monotonic() < deadline:
                    time.sleep(0.005)
                    sock = self._try_connect()
            if sock is None:
                raise KernelError(f"cannot start the container shim (see {self.paths.daemon_log})")
            self._sock = sock
            self.generation += 1
            self._reader = threading.Thread(target=self._read_loop, name="shim-reader", daemon=True)
            self._reader.start()

    def close(self) -> None:
        self.closed = True
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _read_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        while True:
            try:
                data, fds = recv_message(sock)
            except OSError:
                data, fds = b"", []
            for fd in fds:
                os.close(fd)
            if not data:
                break
            msg = json.loads(data)
            if msg.get("event") == "exit":
                try:
                    self.on_exit(msg["key"], int(msg["pid"]), int(msg["status"]))
                except Exception:  # the reader must survive a failing handler
                    log.exception("the exit handler failed for %s", msg["key"])
                continue
            with self._pending_lock:
                waiter = self._pending.pop(msg.get("seq"), None)
            if waiter:
                waiter[1].append(msg)
                waiter[0].set()
        # The shim went away: wake every waiter, and reconnect on next use.
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        for event, box in pending.values():
            box.append({"ok": False, "error": "the container shim exited"})
            event.set()
        if self._sock is sock:
            self._sock = None
        self.generation += 1

    def request(
        self, msg: dict[str, Any], fds: list[int] | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        self.connect()
        seq = next(self._seq)
        event = threading.Event()
        box: list[dict[str, Any]] = []
        with self._pending_lock:
            self._pending[seq] = (event, box)
        sock = self._sock
        try:
            if sock is None:
                raise OSError("not connected")
            with self._send_lock:
                send_message(sock, {**msg, "seq": seq}, fds)
        except OSError as e:
            with self._pending_lock:
                self._pending.pop(seq, None)
            raise KernelError(f"cannot reach the container shim: {e}") from e
        if not event.wait(timeout):
            with self._pending_lock:
                self._pending.pop(seq, None)
            raise KernelError("the container shim did not answer")
        return box[0]

    # -- verbs -----------------------------------------------------------

    def spawn(
        self, req: SpawnRequest, fds: list[int] | None = None, relay: dict[str, Any] | None = None
    ) -> int:
        """Fork the process; `fds` are its stdio, or with `relay` the sockets of its attached
        clients (relay: {"tty", "stdin", "stdin_once", "log", "size", "attach": [one per
        socket: {"stdin", "stdout", "stderr", "logs", "keys", "pending"}]})."""
        msg: dict[str, Any] = {"op": "spawn", "request": req.to_json()}
        if relay is not None:
            msg["relay"] = relay
        reply = self.request(msg, fds)
        if reply.get("ok"):
            return int(reply["pid"])
        error = str(reply.get("error", "cannot start the command"))
        if reply.get("stage") == "exec":
            if reply.get("errno") == 2:
                raise CommandNotFound(error)
            raise CommandNotRunnable(error)
        if reply.get("stage") == "chdir":
            raise CommandNotRunnable(error)
        if reply.get("stage") == "user":
            raise InvalidArgument(error)
        raise KernelError(error)

    def attach(self, key: str, sock_fd: int, spec: dict[str, Any]) -> bool:
        """Hand a client's socket to the relay of a running process; False when it has none."""
        reply = self.request({"op": "attach", "key": key, **spec}, [sock_fd])
        return bool(reply.get("ok"))

    def resize(self, key: str, height: int, width: int) -> bool:
        reply = self.request({"op": "resize", "key": key, "height": height, "width": width})
        return bool(reply.get("ok"))

    def barrier(self) -> None:
        """Returns once every message the shim sent before now has been handled (exits included)."""
        self.request({"op": "ping"})

    def children(self) -> dict[str, int]:
        return dict(self.processes())

    def processes(self) -> list[tuple[str, int]]:
        """Every live child of the shim: (key, PID)."""
        reply = self.request({"op": "list"})
        return [(str(c["key"]), int(c["pid"])) for c in reply.get("children", [])]

    def kill(self, key: str, pid: int, sig: int = signal.SIGKILL) -> bool:
        """Signal a child of the shim by key and PID; False when it is not (or no longer) one."""
        reply = self.request({"op": "kill", "key": key, "pid": pid, "signal": int(sig)})
        return bool(reply.get("ok"))

"""dockyard-shim: the parent of every container process of one $ROOT.

Why a separate process: containers must outlive the daemon (Docker's
live-restore), and only a process's parent learns its exit status. The shim
is that parent. It is small and single-threaded (so forking into namespaces
is safe), forks each container on the daemon's request, reaps it, writes
its exit status to the container's `exit` file, and tells the connected
daemon. A restarted daemon reconnects and reads the exit files of what
ended while it was away. The shim ends when it has no children and no
daemon. Stdlib only.

A process spawned with `relay` has its stdio held here (relay.py): pipes,
or a pty whose master its child sends back, copied to the container's log
and to the clients attached to it (the sockets of hijacked API
connections, handed over by the daemon). Its output is read to the end
before its exit is reported, and its clients' streams end after that.

Wire: SOCK_SEQPACKET on $ROOT/shim.sock, one JSON object per message; the
descriptors of a foreground container's stdio, or the sockets of attached
clients, ride along (SCM_RIGHTS).
"""

from __future__ import annotations

import argparse
import array
import contextlib
import json
import logging
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dockyard import logconfig
from dockyard.errors import KernelError
from dockyard.kernel import files, netns
from dockyard.kernel.relay import Relay, Watches
from dockyard.kernel.shim_stdio import StdioEnds, attach_client
from dockyard.kernel.spawn import SpawnRequest, run_child
from dockyard.settings import Paths

# The requests this shim understands: 2 added confinement (kernel/spawn.py),
# 3 volumes, an image's layers as the root and --init bound into it, 4 stdio
# relays (attach, relayed, resize, spawn with relay, SpawnRequest.tty).
# A daemon finding an older shim (one left running by the previous version
# for the containers it started) starts a new one, which takes over the
# socket's path; the older one serves its containers until they end.
VERSION = 4
MAX_MESSAGE = 1 << 20
MAX_FDS = 64
# How long a fresh shim waits for its daemon to connect before giving up.
FIRST_CLIENT_TIMEOUT = 10.0


def recv_message(sock: socket.socket) -> tuple[bytes, list[int]]:
    fds = array.array("i")
    data, ancdata, _flags, _addr = sock.recvmsg(
        MAX_MESSAGE, socket.CMSG_SPACE(MAX_FDS * fds.itemsize), socket.MSG_CMSG_CLOEXEC
    )
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - (len(payload) % fds.itemsize)
            fds.frombytes(payload[:usable])
    return data, list(fds)


def send_message(sock: socket.socket, obj: object, fds: list[int] | None = None) -> None:
    data = json.dumps(obj).encode()
    if fds:
        sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        sock.send(data)


@dataclass
class Child:
    key: str
    pid: int
    pidfd: int
    exit_file: str
    relay: Relay | None = None


def _exit_status(info: os.waitid_result) -> int:
    # Docker's convention: killed by signal N gives 128+N.
    if info.si_code == os.CLD_EXITED:
        return info.si_status
    return 128 + info.si_status


def _write_exit(root: Path, path: str, pid: int, status: int) -> None:
    """The exit file, atomically and never through a link (a container may see $ROOT)."""
    data = json.dumps({"pid": pid, "status": status, "finished": time.time()})
    with contextlib.suppress(KernelError):  # its directory is gone: the container was removed
        files.write(root, Path(path), data, 0o600)


class Shim:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.sel = selectors.DefaultSelector()
        self.clients: set[socket.socket] = set()
        self.children: dict[int, Child] = {}  # by pidfd
        self.watches = Watches(self.sel)
        # Relays of running processes by key, and of ended ones still sending their end.
        self.relays: dict[str, Relay] = {}
        self.lingering: list[Relay] = []
        self.ever_connected = False
        self.started = time.monotonic()
        self.own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        self.listener = self._listen()

    def _listen(self) -> socket.socket:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.paths.shim_socket)
        listener.bind(str(self.paths.shim_socket))
        os.chmod(self.paths.shim_socket, 0o600)
        self.bound = os.stat(self.paths.shim_socket).st_ino
        listener.listen(16)
        self.sel.register(listener, selectors.EVENT_READ, "listen")
        return listener

    def _keep_socket(self) -> None:
        """An older shim ending removes the path this one took over: bind it again."""
        if not self.paths.shim_socket.exists():
            self.sel.unregister(self.listener)
            self.listener.close()
            self.listener = self._listen()

    def should_exit(self) -> bool:
        if self.children or self.clients or self.lingering:
            return False
        if not self.ever_connected:
            return time.monotonic() - self.started > FIRST_CLIENT_TIMEOUT
        return True

    def serve(self) -> None:
        while not self.should_exit():
            events = self.sel.select(timeout=1.0)
            if not events:
                self._keep_socket()
            for key, mask in events:
                if callable(key.data):  # a relay's descriptor
                    key.data(mask)
                elif key.data == "listen":
                    conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                    self.clients.add(conn)
                    self.ever_connected = True
                    self.sel.register(conn, selectors.EVENT_READ, "client")
                elif key.data == "client":
                    self._on_client(key.fileobj)  # type: ignore[arg-type]
                else:
                    self._on_exit(key.fileobj)  # type: ignore[arg-type]
            if self.lingering:
                now = time.monotonic()
                for relay in self.lingering:
                    relay.expire(now)
                self.lingering = [r for r in self.lingering if not r.done]
        self.close()

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.paths.shim_socket).st_ino == self.bound:  # not a newer shim's
                os.unlink(self.paths.shim_socket)
        with contextlib.suppress(FileNotFoundError):
            if self.paths.shim_pid.read_text().strip() == str(os.getpid()):
                os.unlink(self.paths.shim_pid)
        self.listener.close()

    def _drop(self, conn: socket.socket) -> None:
        self.sel.unregister(conn)
        self.clients.discard(conn)
        conn.close()

    def _on_client(self, conn: socket.socket) -> None:
        try:
            data, fds = recv_message(conn)
        except OSError:
            self._drop(conn)
            return
        if not data:
            for fd in fds:
                os.close(fd)
            self._drop(conn)
            return
        try:
            msg = json.loads(data)
            reply = self._handle(msg, fds)
        except Exception as e:  # a bad request must not end the shim
            msg = {}
            reply = {"ok": False, "error": f"shim: {e}"}
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        reply["seq"] = msg.get("seq") if isinstance(msg, dict) else None
        with contextlib.suppress(OSError):
            send_message(conn, reply)

    def _handle(self, msg: dict, fds: list[int]) -> dict:
        op = msg.get("op")
        if op == "ping":
            return {"ok": True, "pid": os.getpid(), "version": VERSION}
        if op == "list":
            return {"ok": True, "children": [{"key": c.key, "pid": c.pid} for c in self.children.values()]}
        if op == "spawn":
            return self._spawn(SpawnRequest.from_json(msg["request"]), fds, msg.get("relay"))
        if op == "relayed":
            return {"ok": str(msg["key"]) in self.relays}
        if op == "attach":
            return self._attach(str(msg["key"]), msg, fds)
        if op == "resize":
            relay = self.relays.get(str(msg["key"]))
            if relay is None or not relay.tty:
                return {"ok": False, "error": f"{msg['key']} has no terminal"}
            relay.resize(int(msg["height"]), int(msg["width"]))
            return {"ok": True}
        if op == "kill":
            return self._kill(str(msg["key"]), int(msg["pid"]), int(msg.get("signal", signal.SIGKILL)))
        return {"ok": False, "error": f"unknown op {op!r}"}

    def _kill(self, key: str, pid: int, sig: int) -> dict:
        """Signal one of our own children, named by key and PID. Through its
        pidfd: a PID reused by another process is never hit."""
        for child in self.children.values():
            if child.key == key and child.pid == pid:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(child.pidfd, sig)
                return {"ok": True}
        return {"ok": False, "error": f"process {pid} of {key} is not a child of the shim"}

    def _attach(self, key: str, msg: dict, fds: list[int]) -> dict:
        relay = self.relays.get(key)
        if relay is None or not fds:
            return {"ok": False, "error": f"{key} has no stdio to attach to"}
        attach_client(relay, msg, fds[0])
        return {"ok": True}

    def _spawn(self, req: SpawnRequest, fds: list[int], relay_spec: dict | None = None) -> dict:
        # With a relay, the descriptors passed are the attached clients' sockets;
        # the child's stdio are made here (pipes), or by the child itself (a pty).
        ends = StdioEnds(req, relay_spec) if relay_spec is not None else None
        child_fds = ends.child if ends is not None else fds
        console = ends.console_child if ends is not None else -1
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        try:
            with self._pid_namespace(req):
                pid = os.fork()
                if pid == 0:  # the child: never returns
                    os.close(read_end)
                    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
                    run_child(req, child_fds, write_end, console)
        except OSError as e:
            os.close(read_end)
            os.close(write_end)
            if ends is not None:
                ends.close_all()
            return {
                "ok": False,
                "stage": "pidns",
                "errno": e.errno or 0,
                "error": f"cannot fork the container: {e}",
            }
        os.close(write_end)
        if ends is not None:
            ends.close_child()
        chunks = []
        while chunk := os.read(read_end, 65536):
            chunks.append(chunk)
        os.close(read_end)
        if chunks:
            os.waitpid(pid, 0)
            if ends is not None:
                ends.close_all()
            failure = json.loads(b"".join(chunks))
            return {"ok": False, **failure}
        relay = None
        if ends is not None and relay_spec is not None:
            relay = ends.relay(self.watches, relay_spec)
            for spec, fd in zip(relay_spec.get("attach") or [], fds, strict=False):
                attach_client(relay, spec, fd)
            self.relays[req.key] = relay
        pidfd = os.pidfd_open(pid)
        self.children[pidfd] = Child(req.key, pid, pidfd, req.exit_file, relay)
        self.sel.register(pidfd, selectors.EVENT_READ, "child")
        return {"ok": True, "pid": pid}

    @contextlib.contextmanager
    def _pid_namespace(self, req: SpawnRequest) -> Iterator[None]:
        """The PID namespace of the next fork: a new one (the child is its PID 1)
        or the container's (exec); the shim's own again afterwards, so other
        forks are unaffected and no process stands between the shim and a
        container (its pidfd and waitid keep working)."""
        if not req.new_pidns and not req.join_pid:
            yield
            return
        target = -1
        if req.join_pid:
            target = os.open(f"/proc/{req.join_pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if target >= 0:
                netns.setns(target, netns.CLONE_NEWPID)
            else:
                netns.unshare(netns.CLONE_NEWPID)
            try:
                yield
            finally:
                netns.setns(self.own_pidns, netns.CLONE_NEWPID)
        finally:
            if target >= 0:
                os.close(target)

    def _on_exit(self, pidfd: int) -> None:
        child = self.children.pop(pidfd)
        self.sel.unregister(pidfd)
        os.close(pidfd)
        # Read the status without reaping, write it down, then reap: whoever
        # sees the process gone from /proc finds its exit file already there.
        info = os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
        code = _exit_status(info) if info is not None else 137
        if child.relay is not None:
            # Its output is whole in the log before its exit is known.
            child.relay.drain()
        if child.exit_file:
            with contextlib.suppress(OSError):
                _write_exit(self.paths.root, child.exit_file, child.pid, code)
        # The container ends with its first process. In its own PID namespace the
        # kernel has killed the rest already; an unconfined one (an older daemon's
        # request) has its session's stragglers killed here.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
        os.waitpid(child.pid, 0)
        event = {"event": "exit", "key": child.key, "pid": child.pid, "status": code}
        for conn in list(self.clients):
            try:
                send_message(conn, event)
            except OSError:
                self._drop(conn)
        if child.relay is not None:
            # The clients' streams end after the exit is reported.
            child.relay.end()
            if self.relays.get(child.key) is child.relay:
                del self.relays[child.key]
            if not child.relay.done:
                self.lingering.append(child.relay)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dockyard-shim")
    parser.add_argument("--root", required=True)
    args = parser.parse_args(argv)
    logconfig.configure()  # its stderr is the daemon log
    paths = Paths(Path(args.root))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    shim = Shim(paths)
    files.write(paths.root, paths.shim_pid, str(os.getpid()), 0o644)
    # By its name: run as `python -m dockyard.kernel.shim`, this module is __main__.
    log = logging.getLogger("dockyard.kernel.shim")
    log.info("dockyard-shim %d serving %s", os.getpid(), paths.shim_socket)
    shim.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())

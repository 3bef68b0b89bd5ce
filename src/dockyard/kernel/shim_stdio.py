"""The stdio of a process the shim relays: its pipes or pty, and the clients handed to it.

What the shim makes around a fork when a spawn asks for a relay: the
child's ends (stdin, stdout and stderr pipes; or, for a TTY, a socket over
which the child sends the master of the pty it makes in its own devpts)
and the shim's ends, which become a Relay (relay.py) once the child has
exec'd; and the attaching of a client's socket, with the log replayed
first when it asks for it. Stdlib only.
"""

from __future__ import annotations

import array
import os
import socket
from pathlib import Path

from dockyard.kernel import files, logfile
from dockyard.kernel.relay import Relay, Watches, detach_keys
from dockyard.kernel.spawn import SpawnRequest


def recv_fds(sock: socket.socket) -> list[int]:
    fds = array.array("i")
    _data, ancdata, _flags, _addr = sock.recvmsg(
        16, socket.CMSG_SPACE(4 * fds.itemsize), socket.MSG_CMSG_CLOEXEC
    )
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    return list(fds)


def attach_client(relay: Relay, spec: dict, fd: int) -> None:
    """Hand one client's socket (a dup of `fd`: the caller closes its own) to a relay."""
    sock = socket.socket(fileno=os.dup(fd))
    keys = spec.get("keys")
    replay = None
    if spec.get("logs") and relay.log_path:
        replay = list(logfile.Reader(relay.log_path).read())
    relay.attach(
        sock,
        bool(spec.get("stdin")),
        bool(spec.get("stdout")),
        bool(spec.get("stderr")),
        detach_keys(keys) if keys else None,
        bytes.fromhex(spec.get("pending") or ""),
        replay,
    )


class StdioEnds:
    """The stdio of a relayed child: the child's ends, and the shim's."""

    def __init__(self, req: SpawnRequest, spec: dict) -> None:
        self.tty = bool(spec.get("tty"))
        req.tty = self.tty
        size = spec.get("size")
        if self.tty and size:
            req.tty_size = [int(size[0]), int(size[1])]
        self.child: list[int] = []
        self.parent: list[int] = []  # stdin's writing end (or -1), stdout's and stderr's reading ends
        self.console_child = self.console_parent = -1
        if self.tty:
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.console_parent, self.console_child = a.detach(), b.detach()
            os.set_inheritable(self.console_child, False)
            return
        if spec.get("stdin"):
            stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
        else:
            stdin_r, stdin_w = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC), -1
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        self.child = [stdin_r, out_w, err_w]
        self.parent = [stdin_w, out_r, err_r]

    def close_child(self) -> None:
        for fd in [*self.child, self.console_child]:
            if fd >= 0:
                os.close(fd)
        self.child, self.console_child = [], -1

    def close_all(self) -> None:
        self.close_child()
        for fd in [*self.parent, self.console_parent]:
            if fd >= 0:
                os.close(fd)
        self.parent, self.console_parent = [], -1

    def relay(self, watches: Watches, spec: dict) -> Relay:
        log_path = str(spec.get("log") or "")
        log = logfile.Writer(files.open_private(Path(log_path), 0o600, append=True)) if log_path else None
        if self.tty:
            # The child sent its pty's master before it exec'd: the message waits here.
            console = socket.socket(fileno=self.console_parent)
            self.console_parent = -1
            console.setblocking(False)
            try:
                fds = recv_fds(console)
            except OSError:
                fds = []
            finally:
                console.close()
            master = fds[0] if fds else -1
            stdin, outputs = master, ({master: 1} if fds else {})
        else:
            stdin, out_r, err_r = self.parent
            outputs = {out_r: 1, err_r: 2}
        self.parent = []
        relay = Relay(watches, self.tty, stdin, outputs, log, bool(spec.get("stdin_once")))
        relay.log_path = log_path
        return relay

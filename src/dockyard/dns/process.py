"""The resolver as a process: its pid file, its signals, its command line.

SIGHUP re-reads the networks and binds or unbinds gateways; SIGTERM (or
SIGINT) ends the process; it also ends by itself when no user network is
left. `$ROOT/dns.pid` is locked while the process lives, so a second
resolver for the same root refuses to start; it holds the pid once every
socket is bound (its presence means "answering", which the daemon waits
for), and goes away at exit.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import signal
import socket
from pathlib import Path

from dockyard import logconfig
from dockyard.dns import PID_FILE
from dockyard.dns.answers import Resolver
from dockyard.dns.serving import Server
from dockyard.dns.stats import FILE as STATS_FILE
from dockyard.dns.upstreams import Upstreams
from dockyard.errors import DockyardError
from dockyard.settings import Paths
from dockyard.store import Store

log = logging.getLogger(__name__)


class Process:
    def __init__(self, root: Path, resolv_conf: Path) -> None:
        self.root = root
        self.store = Store(Paths(root).database)
        upstreams = Upstreams(root, resolv_conf, lambda: self.server.bound)
        self.server = Server(self.store, Resolver(self.store, upstreams))
        self.server.stats.path = root / STATS_FILE
        self.stopping = False

    def run(self) -> int:
        pid_path = self.root / PID_FILE
        try:
            # Never through a link planted under $ROOT.
            pid_fd = os.open(pid_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as e:
            log.error("cannot open %s: %s", pid_path, e.strerror)
            return 1
        try:
            fcntl.flock(pid_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(pid_fd)
            log.error("another resolver already serves %s", self.root)
            return 1
        try:
            return self._serve(pid_fd)
        except DockyardError as e:
            log.error("%s", e)
            return 1
        finally:
            self.server.stats.flush(force=True)
            with contextlib.suppress(OSError):
                pid_path.unlink()
            os.close(pid_fd)
            self.server.close()
            self.store.close()

    def _serve(self, pid_fd: int) -> int:
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)  # the wakeup fd carries the signal number
        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        self.server.watch(wake_r, lambda: self._on_signal(wake_r))
        if not self.server.reload("start"):
            log.info("no user network: exiting")
            return 0
        # The pid goes in once every socket is bound: its presence means "answering".
        os.ftruncate(pid_fd, 0)
        os.pwrite(pid_fd, f"{os.getpid()}\n".encode(), 0)
        self.server.run(lambda: self.stopping)
        return 0

    def _on_signal(self, wake_r: socket.socket) -> None:
        try:
            signals = wake_r.recv(256)
        except OSError:
            return
        if signal.SIGTERM in signals or signal.SIGINT in signals:
            log.info("stopping")
            self.stopping = True
        elif signal.SIGHUP in signals and not self.server.reload("reload"):
            log.info("no user network left: exiting")
            self.stopping = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dockyard.dns", description="dockyard's DNS resolver for user networks"
    )
    parser.add_argument("--root", required=True, help="dockyard's state directory")
    parser.add_argument(
        "--resolv-conf",
        default="/etc/resolv.conf",
        help="the host's resolver list, the last choice for forwarding (default: /etc/resolv.conf)",
    )
    args = parser.parse_args(argv)
    logconfig.configure()  # its stderr is the daemon log
    root = Path(args.root).resolve()
    try:
        process = Process(root, Path(args.resolv_conf))
    except DockyardError as e:
        log.error("%s", e)
        return 1
    return process.run()

"""The daemon's side of the DNS resolver (the dockyard.dns package): start, reload, stop.

The resolver is a process of its own, started in the background when a user
network first needs it, told to re-read the networks with SIGHUP, and
stopped with SIGTERM when none is left. It is found through `$ROOT/dns.pid`
plus its command line (it must be `dockyard.dns` for this root), never by
name, so a reused pid is never signalled. The process is started from the
calling thread, hence in that thread's network namespace: the daemon's host
namespace.

Call `sync` after the store transaction that changed the networks has
committed: the resolver reads the networks when it starts or gets SIGHUP,
and opening the store waits for a write transaction to end (so a `sync`
inside one would wait for itself until START_TIMEOUT).

This module does not import dnslib: the daemon pays for it only in the
resolver's own process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

from dockyard.errors import KernelError
from dockyard.kernel import files
from dockyard.settings import Paths

PID_FILE = "dns.pid"  # the name the resolver writes (dockyard.dns.PID_FILE)
MODULE = "dockyard.dns"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


class DnsProcess:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.pid_file = paths.root / PID_FILE
        self._lock = threading.Lock()
        # The process this object started, to reap it (it is our child).
        self._child: subprocess.Popen[bytes] | None = None

    # -- identity --------------------------------------------------------

    def _is_resolver(self, pid: int) -> bool:
        """pid is a live resolver of this root (a zombie's cmdline is empty)."""
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            return False
        return MODULE.encode() in args and str(self.paths.root).encode() in args

    def _pid(self) -> int | None:
        self._reap()
        try:
            text = self.pid_file.read_text().strip()
        except OSError:
            return None
        pid = int(text) if text.isdigit() else 0
        return pid if pid > 0 and self._is_resolver(pid) else None

    def _reap(self) -> None:
        if self._child is not None and self._child.poll() is not None:
            self._child = None

    # -- verbs -----------------------------------------------------------

    def running(self) -> bool:
        return self._pid() is not None

    def sync(self, needed: bool) -> None:
        """Make the resolver match the networks: started or reloaded if needed, else stopped."""
        with self._lock:
            if not needed:
                self._stop()
                return
            pid = self._pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGHUP)
                return
            self._start()

    def stop(self) -> None:
        with self._lock:
            self._stop()

    # -- work ------------------------------------------------------------

    def _start(self) -> None:
        log = files.open_private(self.paths.daemon_log, 0o600, append=True)
        try:
            child = subprocess.Popen(
                [sys.executable, "-m", MODULE, "--root", str(self.paths.root)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            os.close(log)
        self._child = child
        # The resolver writes its pid once its sockets are bound: then it answers.
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            status = child.poll()
            if status is not None:
                self._child = None
                if status == 0:
                    return  # it found no user network to serve
                if self._pid() is not None:
                    return  # another one (started concurrently) serves this root
                raise KernelError(
                    f"the DNS resolver exited with status {status} (see {self.paths.daemon_log})"
                )
            if self._pid() == child.pid:
                return
            time.sleep(0.005)
        self._terminate(child.pid)
        raise KernelError(f"the DNS resolver did not start in time (see {self.paths.daemon_log})")

    def _stop(self) -> None:
        pid = self._pid()
        if pid is not None:
            self._terminate(pid)
        self._reap()
        # A pid file left by a resolver that was killed outright.
        if self._pid() is None:
            with contextlib.suppress(OSError):
                self.pid_file.unlink()

    def _terminate(self, pid: int) -> None:
        """SIGTERM, wait; SIGKILL if it will not end."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if self._wait_gone(pid, STOP_TIMEOUT):
                return
        raise KernelError(f"the DNS resolver (pid {pid}) does not stop")

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        child = self._child if self._child is not None and self._child.pid == pid else None
        if child is not None:
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            self._child = None
            return True
        deadline = time.monotonic() + timeout
        while self._is_resolver(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

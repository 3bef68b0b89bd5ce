"""Starting, probing and stopping the daemon of a root, mixed into the API client.

Stdlib only, like the rest of the client. Whether a daemon runs is told by
its root's lock, not only by an answer: a daemon whose API is saturated
still holds the lock with a live process, and is running.
"""

from __future__ import annotations

import json
import os
import sys
import time

from dockyard.clients.wire import PING_TIMEOUT, Connection
from dockyard.errors import DaemonUnavailable, DockyardError

TYPE_CHECKING = False  # typing is not imported at run time: clients start faster
if TYPE_CHECKING:
    from typing import Any

    from dockyard.clients.api import ClientPaths

DAEMON_START_TIMEOUT = 20.0


class DaemonControl:
    """The daemon's side of Client: uses its paths, options, request and close."""

    if TYPE_CHECKING:
        # What Client (api.py), the one class this is mixed into, gives.
        paths: ClientPaths
        host_netns: str | None
        bridge: str | None
        bip: str | None
        debug: bool

        def request(
            self,
            method: str,
            path: str,
            body: Any = None,
            query: dict[str, Any] | None = None,
            fds: list[int] | None = None,
            timeout: float | None = None,
        ) -> Any: ...

        def close(self) -> None: ...

    def daemon_args(self) -> list[str]:
        args = [sys.executable, "-m", "dockyard.daemon.main", "--root", self.paths.root]
        if self.host_netns:
            args += ["--host-netns", self.host_netns]
        if self.bridge:
            args += ["--bridge", self.bridge]
        if self.bip:
            args += ["--bip", self.bip]
        if self.debug:
            args.append("--debug")
        return args

    def start_daemon(self) -> None:
        import subprocess

        os.makedirs(self.paths.root, mode=0o700, exist_ok=True)
        # Root's alone, and never through a link planted in the root.
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        log = os.open(self.paths.daemon_log, flags, 0o600)
        try:
            proc = subprocess.Popen(
                self.daemon_args(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            os.close(log)
        deadline = time.monotonic() + DAEMON_START_TIMEOUT
        while time.monotonic() < deadline:
            code = proc.poll()
            if self.ping():
                return
            if code is not None:
                if self.ping():
                    return
                other = self.daemon_pid()
                if other is None or other == proc.pid or not _pid_alive(other):
                    raise DaemonUnavailable(f"the daemon failed to start: {self._last_log_line()}")
                # Ours found the root taken: another client's daemon is starting (it
                # answers soon), or one that does not answer holds it (reported below).
            time.sleep(0.01)
        other = self.daemon_pid()
        if proc.poll() is not None and other is not None and other != proc.pid and _pid_alive(other):
            raise DaemonUnavailable(
                f"dockyardd (pid {other}) holds {self.paths.root} but does not answer on "
                f"{self.paths.socket}: stop it (kill {other}) and run the command again"
            )
        raise DaemonUnavailable(
            f"the daemon did not answer within {DAEMON_START_TIMEOUT:.0f} s (see {self.paths.daemon_log})"
        )

    def _last_log_line(self) -> str:
        try:
            with open(self.paths.daemon_log, errors="replace") as f:
                lines = [x for x in f.read().splitlines() if x.strip()]
        except OSError:
            return f"see {self.paths.daemon_log}"
        for line in reversed(lines):
            if line.startswith("dockyardd: "):
                return line[len("dockyardd: ") :]
        return lines[-1] if lines else f"see {self.paths.daemon_log}"

    def ping(self) -> bool:
        return self.daemon_state()[0] == "answers"

    def daemon_state(self) -> tuple[str, str]:
        """Whether this root's daemon runs, as (state, why).

        "answers": it answered a ping. "busy": it answered 503 (every
        connection it may have open is serving a request). "silent": no
        answer within PING_TIMEOUT, but a live dockyardd holds the root's
        lock. "stopped": none holds it. A daemon whose API is saturated is
        running: it holds the lock and its process lives.
        """
        why = ""
        try:
            conn = Connection(self.paths.socket, PING_TIMEOUT, PING_TIMEOUT)
        except OSError as e:
            why = f"its socket takes no connection ({e.strerror or e})"
        else:
            try:
                try:  # noqa: SIM105 - contextlib costs every command its import
                    conn.send("GET", "/_ping", close=True)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # closed first: its answer (503) may be waiting
                status, headers = conn.read_head(PING_TIMEOUT)
                if status == 200:
                    return "answers", ""
                body = conn.read_body(headers)
                try:
                    why = str(json.loads(body).get("message", "")) or f"it answered {status}"
                except (ValueError, AttributeError):
                    why = f"it answered {status}"
                if status == 503:
                    return "busy", why
            except TimeoutError:
                why = f"it did not answer within {PING_TIMEOUT:.0f} s"
            except (OSError, DockyardError) as e:
                why = f"it did not answer ({e})"
            finally:
                conn.close()
        if self.lock_holder() is not None:
            return "silent", why
        return "stopped", why

    def lock_holder(self) -> int | None:
        """The live process holding this root's lock (the flock of its pid file), if any.

        Read from /proc/locks: testing the lock by taking it could make a
        daemon starting at that moment believe the root is taken.
        """
        try:
            st = os.stat(self.paths.daemon_pid)
            with open("/proc/locks") as f:
                lines = f.read().splitlines()
        except OSError:
            return None
        inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        for line in lines:
            fields = line.split()
            # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF"; a waiter has "->" after the id.
            if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == inode and fields[4].isdigit():
                pid = int(fields[4])
                if _pid_alive(pid):
                    return pid
        return None

    def daemon_pid(self) -> int | None:
        try:
            with open(self.paths.daemon_pid) as f:
                text = f.read().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def stop_daemon_wait(self, timeout: float = 30.0) -> None:
        """Wait for a daemon that is stopping by itself to be gone."""
        pid = self.daemon_pid()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (pid is None or not _pid_alive(pid)) and not os.path.exists(self.paths.socket):
                return
            time.sleep(0.01)

    def stop_daemon(self, timeout: float = 30.0) -> bool:
        """Ask the daemon to stop and wait until its process is gone.

        A daemon whose API does not answer (saturated) is asked with SIGTERM,
        which it handles the same way.
        """
        pid = self.daemon_pid()
        state, _ = self.daemon_state()
        if state == "stopped":
            return False
        asked = False
        if state == "answers":
            try:
                self.request("POST", "/dockyard/shutdown")
                asked = True
            except (DockyardError, OSError):
                pass
        self.close()
        holder = self.lock_holder()
        if not asked and holder is not None:
            import signal

            pid = holder
            try:  # noqa: SIM105 - contextlib costs every command its import
                os.kill(holder, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (pid is None or not _pid_alive(pid)) and not os.path.exists(self.paths.socket):
                return True
            time.sleep(0.01)
        raise DaemonUnavailable(f"the daemon (pid {pid}) did not stop within {timeout:.0f} s")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

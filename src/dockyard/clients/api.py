"""The API client: what the CLI uses, and what Python programs can use.

Stdlib only, so every client pays only the bare interpreter's start-up.
Speaks HTTP/1.1 over $ROOT/dockyard.sock and starts the daemon of that
root in the background when none answers.

Nothing waits forever on a daemon that does not answer: connecting gives
up after CONNECT_TIMEOUT (a full listen backlog is tried again until
then), and an answer must begin within the read timeout
(DOCKYARD_CLIENT_TIMEOUT, default READ_TIMEOUT seconds; `stop -t N` gets N
more). What is meant to take long is not cut: the body of a deferred
answer (a foreground run's exit status, `wait`, exec) is waited for
without limit once its headers came. A keep-alive connection the daemon
closed (idle for its Keep-Alive timeout, or the oldest idle one when its
connections ran short) is noticed before use and replaced.

    from dockyard.clients.api import Client
    c = Client("/var/lib/dockyard")
    cid = c.create({"Cmd": ["sleep", "60"], "HostConfig": {"NetworkMode": "bridge"}})["Id"]
    c.start(cid)
    print(c.inspect(cid)["NetworkSettings"]["IPAddress"])
"""

from __future__ import annotations

import errno
import json
import os
import sys
import time

from dockyard import locations
from dockyard.clients.wire import (
    PING_TIMEOUT,
    STOP_GRACE,
    TIMEOUT_ENV,
    Connection,
    decode,
    quote,
    read_timeout_from_env,
    urlencode,
)
from dockyard.errors import DaemonUnavailable, DockyardError

# Every import here is paid by every command: no typing, pathlib or urllib.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class ClientPaths:
    """The few files a client touches, as plain strings."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.socket = os.path.join(root, locations.SOCKET)
        self.daemon_pid = os.path.join(root, locations.DAEMON_PID)
        self.daemon_log = os.path.join(root, locations.DAEMON_LOG)


DAEMON_START_TIMEOUT = 20.0


class Client:
    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        host_netns: str | None = None,
        bridge: str | None = None,
        bip: str | None = None,
        debug: bool = False,
        autostart: bool = True,
    ) -> None:
        self.paths = ClientPaths(locations.root_dir(os.fspath(root) if root else None))
        self.host_netns = host_netns
        self.bridge = bridge
        self.bip = bip
        self.debug = debug
        self.autostart = autostart
        self.read_timeout = read_timeout_from_env()
        self._conn: Connection | None = None

    # -- plumbing ------------------------------------------------------------

    def _connect(self, timeout: float | None = None) -> Connection:
        try:
            return Connection(self.paths.socket, timeout)
        except OSError as e:
            if isinstance(e, TimeoutError):
                raise DaemonUnavailable(
                    f"the daemon of {self.paths.root} takes no connection: {e.strerror or e}; "
                    f"'dockyard daemon status' tells whether it runs (see {self.paths.daemon_log})"
                ) from None
            if e.errno not in (errno.ENOENT, errno.ECONNREFUSED):
                if e.errno == errno.EACCES:
                    raise DaemonUnavailable(
                        f"permission denied on {self.paths.socket}: dockyard needs root"
                    ) from None
                raise DaemonUnavailable(
                    f"cannot reach the daemon at {self.paths.socket}: {e.strerror or e}; give --root "
                    f"(or DOCKYARD_ROOT) a directory dockyard can use (now {self.paths.root})"
                ) from None
            if not self.autostart:
                raise DaemonUnavailable(
                    f"the daemon is not running for {self.paths.root}; start it with 'dockyard daemon start'"
                ) from None
            self.start_daemon()
            return Connection(self.paths.socket, timeout)

    def connection(self) -> Connection:
        if self._conn is not None and self._conn.stale():
            self.close()
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        fds: list[int] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """One request; `timeout` adds to the read timeout (a stop's grace period)."""
        target = path + ("?" + urlencode(query) if query else "")
        wait = None if self.read_timeout is None else self.read_timeout + (timeout or 0)
        for attempt in (0, 1):
            conn = self.connection()
            sent = True
            try:
                try:
                    conn.send(method, target, body, fds)
                except (BrokenPipeError, ConnectionResetError):
                    # The daemon closed it first; it may have said why (503 when busy).
                    sent = False
                status, headers = conn.read_head(wait)
                # HEAD, 204 and 304 answers carry no body, whatever their headers say.
                data = b"" if method == "HEAD" or status in (204, 304) else conn.read_body(headers)
            except TimeoutError:
                self.close()
                raise DaemonUnavailable(
                    f"the daemon did not answer within {wait:.0f} s ({TIMEOUT_ENV} changes how long "
                    f"to wait); 'dockyard daemon status' tells whether it runs, {self.paths.daemon_log} "
                    "what it did"
                ) from None
            except (BrokenPipeError, ConnectionResetError, DaemonUnavailable) as e:
                self.close()
                # Only a read is safe to send twice: a change might have been made
                # before the daemon went away (gc settles it). A request that could
                # not even be sent was not seen.
                if attempt or (sent and method not in ("GET", "HEAD")):
                    if isinstance(e, DaemonUnavailable):
                        raise
                    raise DaemonUnavailable(
                        f"the daemon closed the connection ({e.strerror}); see {self.paths.daemon_log}"
                    ) from None
                continue
            conn.answered(headers)
            if headers.get("connection", "").lower() == "close":
                self.close()
            return decode(status, headers, data)
        return None

    def deferred(
        self, method: str, path: str, query: dict[str, Any] | None = None, fds: list[int] | None = None
    ) -> Connection:
        """Send a request whose body comes later (wait, exec); the headers are read here.

        The headers come at once, within the read timeout; the body, the end
        of what is waited for, is read without limit (deferred_result).
        """
        conn = self._connect()
        try:
            try:  # noqa: SIM105 - contextlib costs every command its import
                conn.send(method, path + ("?" + urlencode(query) if query else ""), fds=fds, close=True)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the daemon closed it first; its answer says why
            status, headers = conn.read_head(self.read_timeout)
            if status >= 400:
                decode(status, headers, conn.read_body(headers))
        except TimeoutError:
            conn.close()
            raise DaemonUnavailable(
                f"the daemon did not answer within {self.read_timeout:.0f} s; see {self.paths.daemon_log}"
            ) from None
        except BaseException:
            conn.close()
            raise
        conn.headers = headers  # type: ignore[attr-defined]
        return conn

    @staticmethod
    def deferred_result(conn: Connection) -> Any:
        try:
            conn.sock.settimeout(None)  # as long as the container or exec runs
            body = conn.read_body(conn.headers)  # type: ignore[attr-defined]
        finally:
            conn.close()
        return json.loads(body) if body else {}

    # -- the daemon ------------------------------------------------------------

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

    # -- Docker's API ------------------------------------------------------------

    def create(self, body: dict[str, Any], name: str | None = None) -> dict[str, Any]:
        return self.request("POST", "/containers/create", body, {"name": name} if name else None)

    def start(self, ref: str, fds: list[int] | None = None) -> None:
        self.request("POST", f"/containers/{quote(ref)}/start", fds=fds)

    def wait(self, ref: str, condition: str = "not-running") -> int:
        conn = self.deferred("POST", f"/containers/{quote(ref)}/wait", {"condition": condition})
        return int(self.deferred_result(conn).get("StatusCode", -1))

    def stop(self, ref: str, timeout: int | None = None) -> None:
        # The grace period is the daemon's to wait: the answer may take that much longer.
        self.request(
            "POST",
            f"/containers/{quote(ref)}/stop",
            query={"t": timeout} if timeout is not None else None,
            timeout=max(timeout, 0) if timeout is not None else STOP_GRACE,
        )

    def kill(self, ref: str, signal: str | int = "SIGKILL") -> None:
        self.request("POST", f"/containers/{quote(ref)}/kill", query={"signal": signal})

    def remove(self, ref: str, force: bool = False) -> None:
        self.request("DELETE", f"/containers/{quote(ref)}", query={"force": "1"} if force else None)

    def inspect(self, ref: str) -> dict[str, Any]:
        return self.request("GET", f"/containers/{quote(ref)}/json")

    def containers(self, all: bool = False) -> list[dict[str, Any]]:
        return self.request("GET", "/containers/json", query={"all": "1"} if all else None)

    def logs(self, ref: str) -> bytes:
        return self.request("GET", f"/containers/{quote(ref)}/logs")

    def exec_create(self, ref: str, cmd: list[str], env: list[str] | None = None, workdir: str = "") -> str:
        body = {"Cmd": cmd, "Env": env or [], "WorkingDir": workdir}
        return self.request("POST", f"/containers/{quote(ref)}/exec", body)["Id"]

    def exec_run(self, exec_id: str, fds: list[int] | None = None) -> int:
        conn = self.deferred("POST", f"/exec/{quote(exec_id)}/start", fds=fds)
        return int(self.deferred_result(conn).get("ExitCode", -1))

    def networks(self, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        """`network ls`: filters as Docker's ({"name": [...], "label": [...]}), checked by the daemon."""
        query = {"filters": json.dumps(filters)} if filters else None
        return self.request("GET", "/networks", query=query)

    def network_inspect(self, ref: str) -> dict[str, Any]:
        return self.request("GET", f"/networks/{quote(ref)}")

    def gc(self) -> list[str]:
        return list(self.gc_report()["Removed"])

    def gc_report(self) -> dict[str, list[str]]:
        """`system gc`: what was removed, what could not be (yet), what was put back."""
        answer = self.request("POST", "/system/gc")
        return {key: list(answer.get(key) or []) for key in ("Removed", "NotRemoved", "Restored")}

    def settle(self) -> None:
        self.request("POST", "/dockyard/settle")

    def configure_default_bridge(self, bridge: str | None, bip: str | None) -> dict[str, Any]:
        return self.request("POST", "/dockyard/default-bridge", {"bridge": bridge, "bip": bip})

    def info(self) -> dict[str, Any]:
        return self.request("GET", "/info")


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

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

from dockyard import locations
from dockyard.clients.daemon_control import DaemonControl
from dockyard.clients.explain_calls import ExplainCalls
from dockyard.clients.image_calls import ImageCalls
from dockyard.clients.wire import (
    STOP_GRACE,
    TIMEOUT_ENV,
    Connection,
    decode,
    quote,
    read_timeout_from_env,
    urlencode,
)
from dockyard.errors import DaemonUnavailable

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


class Client(DaemonControl, ImageCalls, ExplainCalls):
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

    def logs(self, ref: str) -> list[tuple[int, bytes]]:
        """A container's log as (stream, bytes): 1 stdout, 2 stderr (all stdout with a TTY)."""
        conn = self.deferred("GET", f"/containers/{quote(ref)}/logs", {"stdout": "1", "stderr": "1"})
        try:
            body = conn.read_body(conn.headers)  # type: ignore[attr-defined]
        finally:
            conn.close()
        if not conn.headers.get("content-type", "").endswith("multiplexed-stream"):  # type: ignore[attr-defined]
            return [(1, body)] if body else []
        out, at = [], 0
        while at + 8 <= len(body):
            stream, length = body[at], int.from_bytes(body[at + 4 : at + 8], "big")
            out.append((stream, body[at + 8 : at + 8 + length]))
            at += 8 + length
        return out

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

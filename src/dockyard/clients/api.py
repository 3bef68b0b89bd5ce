"""The API client: what the CLI uses, and what Python programs can use.

Stdlib only, so every client pays only the bare interpreter's start-up.
Speaks HTTP/1.1 over $ROOT/dockyard.sock and starts the daemon of that
root in the background when none answers.

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
import socket
import sys
import time

from dockyard import locations
from dockyard.errors import DaemonUnavailable, DockyardError, from_wire

# Every import here is paid by every command: no typing, pathlib or urllib.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# RFC 3986 unreserved characters pass; anything else is %-escaped.
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def quote(text: str) -> str:
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in str(text).encode())


def urlencode(query: dict[str, Any]) -> str:
    return "&".join(f"{quote(k)}={quote(str(v))}" for k, v in query.items() if v is not None)


class ClientPaths:
    """The few files a client touches, as plain strings."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.socket = os.path.join(root, locations.SOCKET)
        self.daemon_pid = os.path.join(root, locations.DAEMON_PID)
        self.daemon_log = os.path.join(root, locations.DAEMON_LOG)


DAEMON_START_TIMEOUT = 20.0


class Connection:
    """One keep-alive HTTP connection to the daemon."""

    def __init__(self, path: str, timeout: float | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if timeout is not None:
            self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send(
        self, method: str, target: str, body: Any = None, fds: list[int] | None = None, close: bool = False
    ) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: dockyard\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
        ).encode()
        if fds:
            import array

            self.sock.sendmsg([head + data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        else:
            self.sock.sendall(head + data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def read_head(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise DaemonUnavailable("the daemon closed the connection (see daemon.log)")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return status, headers

    def read_body(self, headers: dict[str, str]) -> bytes:
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n:
                if not self._fill():
                    raise DaemonUnavailable("the daemon closed the connection mid-answer")
            body, self.buf = self.buf[:n], self.buf[n:]
            return body
        while self._fill():
            pass
        body, self.buf = self.buf, b""
        return body


def _decode(status: int, headers: dict[str, str], body: bytes) -> Any:
    ctype = headers.get("content-type", "")
    data: Any = body
    if ctype.startswith("application/json") and body:
        data = json.loads(body)
    if status >= 400:
        if isinstance(data, dict):
            raise from_wire(str(data.get("kind", "DockyardError")), str(data.get("message", data)))
        raise DockyardError(f"daemon error {status}: {body[:200]!r}")
    return data


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
        self._conn: Connection | None = None

    # -- plumbing ------------------------------------------------------------

    def _connect(self, timeout: float | None = None) -> Connection:
        try:
            return Connection(self.paths.socket, timeout)
        except OSError as e:
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
    ) -> Any:
        target = path + ("?" + urlencode(query) if query else "")
        for attempt in (0, 1):
            conn = self.connection()
            try:
                conn.send(method, target, body, fds)
                status, headers = conn.read_head()
                # HEAD, 204 and 304 answers carry no body, whatever their headers say.
                data = b"" if method == "HEAD" or status in (204, 304) else conn.read_body(headers)
                if headers.get("connection", "").lower() == "close":
                    self.close()
                return _decode(status, headers, data)
            except (BrokenPipeError, ConnectionResetError, DaemonUnavailable) as e:
                self.close()
                # Only a read is safe to send twice: a change might have been
                # made before the daemon went away (gc settles it).
                if attempt or method not in ("GET", "HEAD"):
                    if isinstance(e, DaemonUnavailable):
                        raise
                    raise DaemonUnavailable(
                        f"the daemon closed the connection ({e.strerror}); see {self.paths.daemon_log}"
                    ) from None
        return None

    def deferred(self, method: str, path: str, query: dict[str, Any] | None = None) -> Connection:
        """Send a request whose body comes later (wait); the headers are read here."""
        conn = self._connect()
        conn.send(method, path + ("?" + urlencode(query) if query else ""), close=True)
        status, headers = conn.read_head()
        if status >= 400:
            _decode(status, headers, conn.read_body(headers))
        conn.headers = headers  # type: ignore[attr-defined]
        return conn

    @staticmethod
    def deferred_result(conn: Connection) -> Any:
        try:
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
        try:
            conn = Connection(self.paths.socket, timeout=5)
        except OSError:
            return False
        try:
            conn.send("GET", "/_ping", close=True)
            status, _ = conn.read_head()
            return status == 200
        except (OSError, DockyardError):
            return False
        finally:
            conn.close()

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
        """Ask the daemon to stop and wait until its process is gone."""
        pid = self.daemon_pid()
        if not self.ping():
            return False
        try:  # noqa: SIM105 - contextlib costs every command its import
            self.request("POST", "/dockyard/shutdown")
        except (DockyardError, OSError):
            pass
        self.close()
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
        self.request(
            "POST", f"/containers/{quote(ref)}/stop", query={"t": timeout} if timeout is not None else None
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
        conn = self._connect()
        conn.send("POST", f"/exec/{quote(exec_id)}/start", fds=fds, close=True)
        status, headers = conn.read_head()
        if status >= 400:
            try:
                _decode(status, headers, conn.read_body(headers))
            finally:
                conn.close()
        conn.headers = headers  # type: ignore[attr-defined]
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

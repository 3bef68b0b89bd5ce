"""dockyard-cni: the CNI plugin (spec 1.1.0; results also as 0.3.x, 0.4.0 and 1.0.0).

A thin client of dockyardd, stdlib only, because every ADD is a new
process: it reads the CNI environment and the configuration on stdin,
checks what needs no daemon (variables, JSON, version, types), sends one
request to the daemon of `dataDir` (starting it when none answers), and
prints the result (joined to prevResult when chained, cni_results.py) or
the spec's error object. The kernel work, the addresses and the state are
the daemon's (attachments.py, api/cni.py).

    {"cniVersion": "1.1.0", "name": "mynet", "type": "dockyard",
     "bridge": "cni0", "subnet": "10.88.0.0/16", "ipMasq": true,
     "dataDir": "/var/lib/dockyard",
     "capabilities": {"portMappings": true, "ips": true, "mac": true}}

The runtime's network namespace travels as a descriptor: the plugin, a
process of the runtime in the runtime's mount namespace, opens CNI_NETNS
and passes it with the request (SCM_RIGHTS, as `dockyard run` passes its
stdio), so a namespace mounted where the daemon cannot see it (a private
mount namespace, `ip netns exec`, /proc/<pid>/ns/net of a process in
another PID namespace) works all the same. The daemon never opens the path.

The configuration's checks are config.py's, the results' shapes results.py's.
The HTTP framing is dockyard.wire.http's (clients/wire.py's connection),
the error codes and the JSON paths in messages dockyard.wire.cni's.
dockyard.clients.api is imported only when no daemon answers, to start one.

See docs/cni.md for every key, the error codes and the design.
"""

from __future__ import annotations

import errno
import os
import sys
import time

from dockyard import locations
from dockyard.clients import leave
from dockyard.clients.cni.config import (
    PluginError,
    _typed,
    attachment_of,
    check_container_id,
    check_ifname,
    dumps,
    loads,
    network_of,
    prev_result_of,
    version_tuple,
)
from dockyard.clients.cni.results import format_result, merge_result
from dockyard.clients.wire import Connection
from dockyard.wire import cni as codes

TYPE_CHECKING = False  # typing costs every ADD its import
if TYPE_CHECKING:
    from typing import Any, BinaryIO

SPEC_VERSION = "1.1.0"
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")
REQUIRED_ENV = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
}
# The oldest configuration version that has each newer verb.
VERB_SINCE = {"CHECK": (0, 4, 0), "GC": (1, 1, 0), "STATUS": (1, 1, 0)}
DAEMON_WAIT = 20.0
# The runtime gives a whole sandbox set-up a deadline (kubelet's runtime request timeout is
# 2 minutes by default; containerd and CRI-O run CNI under it): an ADD must end, with a CNI
# error if need be, well before it, so the runtime reports why and calls DEL rather than
# killing the plugin. The daemon's own start (DAEMON_WAIT) fits in what is left.
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 90.0
# How CNI_NETNS is opened: never blocking (a FIFO put there), never a controlling terminal.
NETNS_OPEN = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


# -- the daemon -----------------------------------------------------------------


def post(socket_path: str, path: str, body: object, fds: list[int] | None = None) -> tuple[int, bytes]:
    """One HTTP request on the daemon's socket, `fds` passed with it; OSError when nothing answers.

    TimeoutError (an OSError) when it takes no connection within
    CONNECT_TIMEOUT or sends nothing for READ_TIMEOUT.
    """
    conn = Connection(socket_path, READ_TIMEOUT, CONNECT_TIMEOUT)
    try:
        try:  # noqa: SIM105 - contextlib costs every ADD its import
            conn.send("POST", path, body, fds=fds, close=True)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon closed it first: its answer (503 when busy) is still there to read
        status, headers = conn.read_head(READ_TIMEOUT)
        return status, conn.read_body(headers)
    finally:
        conn.close()


def open_netns(path: str, command: str) -> int | None:
    """CNI_NETNS opened here, in the runtime's mount namespace, for the daemon to work on.

    None for a DEL whose namespace is gone (or not given): DEL frees all the same.
    """
    if not path:
        return None
    try:
        return os.open(path, NETNS_OPEN)
    except OSError as e:
        if command == "DEL":
            return None  # the DEL frees everything whatever the namespace became
        if e.errno == errno.ENOENT:
            raise PluginError(codes.CODE_INVALID_ENV, f"CNI_NETNS {path} does not exist") from None
        raise PluginError(codes.CODE_INVALID_ENV, f"cannot open CNI_NETNS {path}: {e.strerror}") from None


def start_daemon(root: str | None) -> None:
    """Start the daemon of root (dockyard.clients.api's way), or wait for another plugin starting it."""
    from dockyard.clients.api import Client
    from dockyard.errors import DaemonUnavailable

    client = Client(root)
    try:
        client.connection()
    except DaemonUnavailable:
        deadline = time.monotonic() + DAEMON_WAIT
        while not client.ping():
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    finally:
        client.close()


def call(
    root: str | None, path: str, body: dict[str, Any], unavailable: int, fds: list[int] | None = None
) -> Any:
    """One request to the daemon of root; its CNI error becomes a PluginError."""
    root_dir = locations.root_dir(root)
    socket_path = os.path.join(root_dir, locations.SOCKET)
    try:
        try:
            status, data = post(socket_path, path, body, fds)
        except (FileNotFoundError, ConnectionRefusedError):
            start_daemon(root_dir)
            status, data = post(socket_path, path, body, fds)
    except TimeoutError as e:
        raise PluginError(
            unavailable,
            f"the dockyard daemon of {root_dir} did not answer in time: {e}",
            f"it gets {CONNECT_TIMEOUT:.0f} s to take the connection and {READ_TIMEOUT:.0f} s to "
            "answer; see its daemon.log",
        ) from None
    except Exception as e:  # OSError, or the client's DaemonUnavailable
        raise PluginError(
            unavailable, f"the dockyard daemon of {root_dir} is not available: {e}", "see its daemon.log"
        ) from None
    payload = loads(data.decode()) if data.strip() else None
    if status == 404 and not (payload or {}).get("cni"):
        raise PluginError(
            codes.CODE_TRY_AGAIN,
            f"the dockyard daemon of {root_dir} does not know CNI requests: it predates dockyard-cni; "
            "restart it (dockyard daemon stop)",
        )
    if status >= 400:
        cni = (payload or {}).get("cni") or {}
        # 503 without a CNI error: the daemon's connections are all busy; the runtime may retry.
        raise PluginError(
            int(cni.get("code", unavailable if status == 503 else codes.CODE_INTERNAL)),
            str(cni.get("msg") or (payload or {}).get("message") or f"daemon error {status}"),
            str(cni.get("details") or ""),
        )
    return payload


# -- the verbs --------------------------------------------------------------------


def run(env: dict[str, str], stdin: BinaryIO, out: Any, seen: dict[str, str]) -> None:
    """Do the command; `seen` gets the config's version, for an error object."""
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise PluginError(codes.CODE_INVALID_ENV, "required env variables [CNI_COMMAND] missing")
    if command not in COMMANDS:
        raise PluginError(codes.CODE_INVALID_ENV, f"unknown CNI_COMMAND: {command}")
    if command == "VERSION":
        out.write(dumps({"cniVersion": SPEC_VERSION, "supportedVersions": list(SUPPORTED_VERSIONS)}) + "\n")
        return
    missing = [k for k in REQUIRED_ENV.get(command, ()) if not env.get(k)]
    if missing:
        raise PluginError(codes.CODE_INVALID_ENV, f"required env variables [{','.join(missing)}] missing")
    try:
        conf = loads(stdin.read().decode())
    except (ValueError, UnicodeDecodeError) as e:
        raise PluginError(codes.CODE_DECODE, f"cannot decode the network configuration: {e}") from None
    if not isinstance(conf, dict):
        raise PluginError(codes.CODE_DECODE, "the network configuration must be a JSON object")
    version = conf.get("cniVersion")
    if version not in SUPPORTED_VERSIONS:
        raise PluginError(
            codes.CODE_INCOMPATIBLE_VERSION,
            "incompatible CNI versions",
            f"config is {dumps(version)}, plugin supports {list(SUPPORTED_VERSIONS)}",
        )
    seen["version"] = version
    if command in VERB_SINCE and version_tuple(version) < VERB_SINCE[command]:
        raise PluginError(
            codes.CODE_INCOMPATIBLE_VERSION, f"config version {version} does not allow {command}"
        )
    if not isinstance(conf.get("name"), str) or not conf["name"]:
        raise PluginError(codes.CODE_INVALID_CONFIG, "missing network name")
    if command in REQUIRED_ENV:
        check_container_id(env["CNI_CONTAINERID"])
        check_ifname(env["CNI_IFNAME"])
    root = _typed(conf, "dataDir", str, "a directory") or None
    net = network_of(conf)
    if command in ("ADD", "CHECK", "DEL"):
        prev = prev_result_of(conf) if command != "DEL" else None
        if command == "CHECK" and prev is None:
            raise PluginError(codes.CODE_INVALID_CONFIG, "CHECK needs prevResult, the result of the ADD")
        dns = _typed(conf, "dns", dict, "an object") or {}
        fd = open_netns(env.get("CNI_NETNS", ""), command)
        try:
            fds = [fd] if fd is not None else []
            if command == "ADD":
                body = {"network": net, **attachment_of(conf, env)}
                result = format_result(
                    call(root, "/dockyard/cni/add", body, codes.CODE_TRY_AGAIN, fds), version, dns
                )
                out.write(dumps(merge_result(prev, result) if prev is not None else result) + "\n")
            elif command == "DEL":
                body = {"network": {"name": net["name"]}, **attachment_of(conf, env)}
                call(root, "/dockyard/cni/del", body, codes.CODE_TRY_AGAIN, fds)
            else:
                body = {"network": net, **attachment_of(conf, env), "prevResult": prev}
                call(root, "/dockyard/cni/check", body, codes.CODE_TRY_AGAIN, fds)
        finally:
            if fd is not None:
                os.close(fd)
    elif command == "GC":
        valid = conf.get("cni.dev/valid-attachments", conf.get("cni.dev/attachments"))
        if not isinstance(valid, list) or not all(isinstance(v, dict) for v in valid):
            raise PluginError(
                codes.CODE_INVALID_CONFIG,
                "GC needs cni.dev/valid-attachments, a list of {containerID, ifname}",
            )
        pairs = [[str(v.get("containerID", "")), str(v.get("ifname", ""))] for v in valid]
        call(
            root, "/dockyard/cni/gc", {"network": {"name": net["name"]}, "valid": pairs}, codes.CODE_TRY_AGAIN
        )
    elif command == "STATUS":
        call(root, "/dockyard/cni/status", {"network": net}, codes.CODE_NOT_AVAILABLE)


def main(env: dict[str, str], stdin: BinaryIO, out: Any) -> int:
    seen = {"version": SPEC_VERSION}
    try:
        run(env, stdin, out, seen)
    except PluginError as e:
        error: dict[str, Any] = {"cniVersion": seen["version"], "code": e.code, "msg": e.msg}
        if e.details:
            error["details"] = e.details
        out.write(dumps(error) + "\n")
        return 1
    except Exception as e:  # a bug: still answer with an error object, never a traceback
        bug = {
            "cniVersion": seen["version"],
            "code": codes.CODE_INTERNAL,
            "msg": f"dockyard-cni failed: {e!r}",
        }
        out.write(dumps(bug) + "\n")
        return 1
    return 0


def entry() -> None:
    leave(main(dict(os.environ), sys.stdin.buffer, sys.stdout))


if __name__ == "__main__":
    entry()

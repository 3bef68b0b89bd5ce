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

Why `_json` and `_socket` rather than json and dockyard.clients.api: an ADD
is a new interpreter each time, and importing json (which pulls in re and
enum) and socket (selectors) costs 10 ms, as much as the daemon's kernel
work. The C halves of those modules do the same job; they are CPython's
private modules, so where one cannot be imported the public module is used
instead. dockyard.clients.api is imported only when no daemon answers, to start one.

See docs/cni.md for every key, the error codes and the design.
"""

from __future__ import annotations

import os
import sys
import time

try:
    import _json
except ImportError:  # not CPython's C half: loads and dumps use the json package
    _json = None  # type: ignore[assignment]
try:
    import _socket
except ImportError:
    import socket as _socket  # type: ignore[no-redef]  # the same socket type, AF_UNIX and SOCK_STREAM

from dockyard import locations
from dockyard.clients.cni.results import format_result, merge_result

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
IPAM_TYPES = ("", "host-local", "dockyard")

# The spec's codes (dockyard's own, 100 and up, come from the daemon).
E_VERSION = 1
E_ENV = 4
E_DECODE = 6
E_CONFIG = 7
E_TRY_AGAIN = 11
E_NOT_AVAILABLE = 50
E_INTERNAL = 999
DAEMON_WAIT = 20.0
# The runtime gives a whole sandbox set-up a deadline (kubelet's runtime request timeout is
# 2 minutes by default; containerd and CRI-O run CNI under it): an ADD must end, with a CNI
# error if need be, well before it, so the runtime reports why and calls DEL rather than
# killing the plugin. The daemon's own start (DAEMON_WAIT) fits in what is left.
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 90.0


class PluginError(Exception):
    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


# -- JSON through the C halves of the json module ------------------------------------


class _Decoding:
    """What json's C scanner reads from its context: plain JSON."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float


def _not_json(o: object) -> object:
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


if _json is not None:
    # The C scanner reads only these attributes of its context (json.decoder.JSONDecoder's).
    _scan = _json.make_scanner(_Decoding())  # type: ignore[arg-type]
    _encode = _json.make_encoder(
        None, _not_json, _json.encode_basestring_ascii, None, ": ", ", ", False, False, True
    )


def loads(text: str) -> Any:
    """json.loads for one document; ValueError when it is not one (nested too deeply too)."""
    text = text.strip(" \t\r\n")
    try:
        if _json is None:
            import json

            return json.loads(text)
        try:
            value, end = _scan(text, 0)
        except StopIteration as e:
            raise ValueError(f"expected a JSON value at character {e.value}") from None
        except SystemError:
            # The C scanner raises its JSONDecodeError from json.decoder, which it finds only
            # once loaded; before that an error comes out as SystemError (CPython 3.11).
            import json

            json.loads(text)  # raises the precise JSONDecodeError
            raise
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if end != len(text):
        raise ValueError(f"extra data at character {end}")
    return value


def dumps(value: object) -> str:
    if _json is None:
        import json

        return json.dumps(value, default=_not_json)
    return "".join(_encode(value, 0))


# -- checks that need no daemon ------------------------------------------------


def check_container_id(cid: str) -> None:
    ok = (
        cid[:1].isascii()
        and cid[:1].isalnum()
        and all(c.isascii() and (c.isalnum() or c in "_.-") for c in cid)
    )
    if not ok:
        raise PluginError(
            E_ENV, f"CNI_CONTAINERID {cid!r} is invalid: a letter or digit, then letters, digits, _ . or -"
        )


def check_ifname(name: str) -> None:
    if not name or name in (".", "..") or len(name) > 15 or any(c in "/:" or c.isspace() for c in name):
        raise PluginError(
            E_ENV,
            f"CNI_IFNAME {name!r} is invalid: up to 15 characters, not . or .., without / : or spaces",
        )


def cni_args(text: str) -> dict[str, str]:
    """CNI_ARGS: "K=V;K=V" (IP and MAC are used, the rest is ignored)."""
    out = {}
    for pair in text.split(";"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise PluginError(E_ENV, f"CNI_ARGS {text!r} is invalid: expected KEY=VALUE pairs separated by ;")
        out[key] = value
    return out


def _typed(conf: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = conf.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PluginError(E_CONFIG, f"{key} must be {what}, not {dumps(value)}")
    return value


def network_of(conf: dict[str, Any]) -> dict[str, Any]:
    """The network keys of the config, checked for type, with ipam/ranges folded in."""
    ipam = _typed(conf, "ipam", dict, "an object") or {}
    ipam_type = str(ipam.get("type") or "")
    if ipam_type not in IPAM_TYPES:
        raise PluginError(
            E_CONFIG,
            f"ipam type {ipam_type!r} is not supported: dockyard-cni manages addresses itself; "
            "leave ipam out and give subnet (or ranges) in the plugin's config",
        )
    net: dict[str, Any] = {"name": conf.get("name")}
    for key in ("subnet", "gateway", "rangeStart", "rangeEnd"):
        source = conf if conf.get(key) is not None else ipam
        net[key] = _typed(source, key, str, "a string")
    ranges = conf.get("ranges") if conf.get("ranges") is not None else ipam.get("ranges")
    if ranges is not None:
        flat = (
            [r for rs in ranges for r in rs]
            if isinstance(ranges, list) and all(isinstance(rs, list) for rs in ranges)
            else None
        )
        if not flat or not all(isinstance(r, dict) and isinstance(r.get("subnet"), str) for r in flat):
            raise PluginError(E_CONFIG, 'ranges must be a list of range sets: [[{"subnet": "10.1.0.0/24"}]]')
        v4 = [r for r in flat if ":" not in r["subnet"]]
        if len(flat) != len(v4):
            raise PluginError(E_CONFIG, "IPv6 ranges are not supported: dockyard networks are IPv4")
        if len(v4) != 1:
            raise PluginError(E_CONFIG, f"ranges gives {len(v4)} IPv4 ranges; a dockyard network takes one")
        (r,) = v4
        if net["subnet"] is not None and net["subnet"] != r["subnet"]:
            raise PluginError(E_CONFIG, f"subnet {net['subnet']} and ranges subnet {r['subnet']} disagree")
        for key in ("subnet", "gateway", "rangeStart", "rangeEnd"):
            if r.get(key) is not None:
                net[key] = _typed(r, key, str, "a string")
    net["bridge"] = _typed(conf, "bridge", str, "an interface name")
    net["mtu"] = _typed(conf, "mtu", int, "a number")
    for key in ("ipMasq", "isGateway", "isDefaultGateway", "hairpinMode"):
        net[key] = _typed(conf, key, bool, "true or false")
    net["routes"] = _typed(ipam, "routes", list, 'a list of {"dst", "gw"} objects')
    return net


def attachment_of(conf: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """The per-container part: addresses, MAC and ports asked for."""
    runtime = _typed(conf, "runtimeConfig", dict, "an object") or {}
    args = cni_args(env.get("CNI_ARGS", ""))
    conv = ((conf.get("args") or {}).get("cni") or {}) if isinstance(conf.get("args"), dict) else {}
    ips = list(_typed(runtime, "ips", list, "a list of addresses") or [])
    ips += list(conv.get("ips") or []) if isinstance(conv, dict) else []
    if args.get("IP"):
        ips += args["IP"].split(",")
    mac = runtime.get("mac") or (conv.get("mac") if isinstance(conv, dict) else None) or args.get("MAC")
    ports = _typed(runtime, "portMappings", list, "a list of port mappings") or []
    return {
        "containerId": env.get("CNI_CONTAINERID", ""),
        "ifname": env.get("CNI_IFNAME", ""),
        "netns": env.get("CNI_NETNS", ""),
        "ips": ips,
        "mac": mac,
        "portMappings": ports,
    }


# -- results ------------------------------------------------------------------


def prev_result_of(conf: dict[str, Any]) -> dict[str, Any] | None:
    """The config's prevResult, checked for the shape a result has; None when absent."""
    prev = conf.get("prevResult")
    if prev is None:
        return None
    if not isinstance(prev, dict):
        raise PluginError(E_CONFIG, f"prevResult must be a result object, not {dumps(prev)}")
    for key in ("interfaces", "ips", "routes"):
        items = prev.get(key)
        if items is not None and not (isinstance(items, list) and all(isinstance(x, dict) for x in items)):
            raise PluginError(E_CONFIG, f"prevResult is malformed: {key} must be a list of objects")
    if prev.get("dns") is not None and not isinstance(prev["dns"], dict):
        raise PluginError(E_CONFIG, "prevResult is malformed: dns must be an object")
    count = len(prev.get("interfaces") or ())
    for ip in prev.get("ips") or ():
        index = ip.get("interface")
        if index is not None and (type(index) is not int or not 0 <= index < count):
            raise PluginError(
                E_CONFIG,
                f"prevResult is malformed: an ips entry names interface {dumps(index)}, "
                f"and its interfaces list has {count}",
            )
    return prev


# -- the daemon -----------------------------------------------------------------


def _connect(sock: Any, socket_path: str) -> None:
    """connect(), again while the daemon's listen backlog is full (EAGAIN), up to CONNECT_TIMEOUT."""
    deadline = time.monotonic() + CONNECT_TIMEOUT
    sock.settimeout(CONNECT_TIMEOUT)
    while True:
        try:
            sock.connect(socket_path)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"its socket took no connection within {CONNECT_TIMEOUT:.0f} s") from None
            time.sleep(0.02)


def post(socket_path: str, path: str, body: object) -> tuple[int, bytes]:
    """One HTTP request on the daemon's socket; OSError when nothing answers there.

    TimeoutError (an OSError) when it takes no connection within
    CONNECT_TIMEOUT or sends nothing for READ_TIMEOUT.
    """
    data = dumps(body).encode()
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        _connect(sock, socket_path)
        sock.settimeout(READ_TIMEOUT)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: dockyard\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
        )
        try:  # noqa: SIM105 - contextlib costs every ADD its import
            sock.sendall(head.encode() + data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon closed it first: its answer (503 when busy) is still there to read
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    finally:
        sock.close()
    reply = b"".join(chunks)
    head_bytes, sep, payload = reply.partition(b"\r\n\r\n")
    if not sep:
        raise ConnectionResetError("the daemon closed the connection before answering")
    return int(head_bytes.split(b" ", 2)[1]), payload


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


def call(root: str | None, path: str, body: dict[str, Any], unavailable: int) -> Any:
    """One request to the daemon of root; its CNI error becomes a PluginError."""
    root_dir = locations.root_dir(root)
    socket_path = os.path.join(root_dir, locations.SOCKET)
    try:
        try:
            status, data = post(socket_path, path, body)
        except (FileNotFoundError, ConnectionRefusedError):
            start_daemon(root_dir)
            status, data = post(socket_path, path, body)
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
            E_TRY_AGAIN,
            f"the dockyard daemon of {root_dir} does not know CNI requests: it predates dockyard-cni; "
            "restart it (dockyard daemon stop)",
        )
    if status >= 400:
        cni = (payload or {}).get("cni") or {}
        # 503 without a CNI error: the daemon's connections are all busy; the runtime may retry.
        raise PluginError(
            int(cni.get("code", unavailable if status == 503 else E_INTERNAL)),
            str(cni.get("msg") or (payload or {}).get("message") or f"daemon error {status}"),
            str(cni.get("details") or ""),
        )
    return payload


# -- the verbs --------------------------------------------------------------------


def run(env: dict[str, str], stdin: BinaryIO, out: Any, seen: dict[str, str]) -> None:
    """Do the command; `seen` gets the config's version, for an error object."""
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise PluginError(E_ENV, "required env variables [CNI_COMMAND] missing")
    if command not in COMMANDS:
        raise PluginError(E_ENV, f"unknown CNI_COMMAND: {command}")
    if command == "VERSION":
        out.write(dumps({"cniVersion": SPEC_VERSION, "supportedVersions": list(SUPPORTED_VERSIONS)}) + "\n")
        return
    missing = [k for k in REQUIRED_ENV.get(command, ()) if not env.get(k)]
    if missing:
        raise PluginError(E_ENV, f"required env variables [{','.join(missing)}] missing")
    try:
        conf = loads(stdin.read().decode())
    except (ValueError, UnicodeDecodeError) as e:
        raise PluginError(E_DECODE, f"cannot decode the network configuration: {e}") from None
    if not isinstance(conf, dict):
        raise PluginError(E_DECODE, "the network configuration must be a JSON object")
    version = conf.get("cniVersion")
    if version not in SUPPORTED_VERSIONS:
        raise PluginError(
            E_VERSION,
            "incompatible CNI versions",
            f"config is {dumps(version)}, plugin supports {list(SUPPORTED_VERSIONS)}",
        )
    seen["version"] = version
    if command in VERB_SINCE and version_tuple(version) < VERB_SINCE[command]:
        raise PluginError(E_VERSION, f"config version {version} does not allow {command}")
    if not isinstance(conf.get("name"), str) or not conf["name"]:
        raise PluginError(E_CONFIG, "missing network name")
    if command in REQUIRED_ENV:
        check_container_id(env["CNI_CONTAINERID"])
        check_ifname(env["CNI_IFNAME"])
    root = _typed(conf, "dataDir", str, "a directory") or None
    net = network_of(conf)
    if command == "ADD":
        netns = env["CNI_NETNS"]
        if not os.path.exists(netns):
            raise PluginError(E_ENV, f"CNI_NETNS {netns} does not exist")
        dns = _typed(conf, "dns", dict, "an object") or {}
        prev = prev_result_of(conf)
        body = {"network": net, **attachment_of(conf, env)}
        result = format_result(call(root, "/dockyard/cni/add", body, E_TRY_AGAIN), version, dns)
        out.write(dumps(merge_result(prev, result) if prev is not None else result) + "\n")
    elif command == "DEL":
        body = {"network": {"name": net["name"]}, **attachment_of(conf, env)}
        call(root, "/dockyard/cni/del", body, E_TRY_AGAIN)
    elif command == "CHECK":
        prev = prev_result_of(conf)
        if prev is None:
            raise PluginError(E_CONFIG, "CHECK needs prevResult, the result of the ADD")
        body = {"network": net, **attachment_of(conf, env), "prevResult": prev}
        call(root, "/dockyard/cni/check", body, E_TRY_AGAIN)
    elif command == "GC":
        valid = conf.get("cni.dev/valid-attachments", conf.get("cni.dev/attachments"))
        if not isinstance(valid, list) or not all(isinstance(v, dict) for v in valid):
            raise PluginError(E_CONFIG, "GC needs cni.dev/valid-attachments, a list of {containerID, ifname}")
        pairs = [[str(v.get("containerID", "")), str(v.get("ifname", ""))] for v in valid]
        call(root, "/dockyard/cni/gc", {"network": {"name": net["name"]}, "valid": pairs}, E_TRY_AGAIN)
    elif command == "STATUS":
        call(root, "/dockyard/cni/status", {"network": net}, E_NOT_AVAILABLE)


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
        bug = {"cniVersion": seen["version"], "code": E_INTERNAL, "msg": f"dockyard-cni failed: {e!r}"}
        out.write(dumps(bug) + "\n")
        return 1
    return 0


def entry() -> None:
    sys.exit(main(dict(os.environ), sys.stdin.buffer, sys.stdout))


if __name__ == "__main__":
    entry()

"""dockyard run and dockyard exec: Docker's flags, the caller's own terminal.

In the foreground the client hands its stdin, stdout and stderr to the
daemon (descriptor passing), forwards SIGINT and SIGTERM to the container,
and exits with the command's status, as `docker run` does.
"""

from __future__ import annotations

import os
import signal
import sys

from dockyard.clients.cli import run_fields
from dockyard.errors import DockyardError, InvalidArgument

TYPE_CHECKING = False  # typing is not imported at run time: clients start faster
if TYPE_CHECKING:
    import argparse
    from typing import Any

FORWARDED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


def register(sub: Any) -> None:
    import argparse  # here only: a plain `run` is read without it (quick.py)

    # add_help=False: Docker's -h is --hostname; --help stays.
    p = sub.add_parser("run", help="run a command in a new container", add_help=False)
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("--name", help="assign a name to the container")
    p.add_argument(
        "-d", "--detach", action="store_true", help="run in the background and print the container id"
    )
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument(
        "--net",
        "--network",
        dest="network",
        action="append",
        default=None,
        metavar="MODE",
        help="bridge (default), none, host, container:<name|id>, or a network's name (again: joined too)",
    )
    p.add_argument(
        "-p",
        "--publish",
        action="append",
        default=[],
        metavar="SPEC",
        help="publish a port: [IP:][HOSTPORT:]CONTAINERPORT[/PROTO]",
    )
    p.add_argument(
        "-P", "--publish-all", action="store_true", help="publish every exposed port on a random host port"
    )
    p.add_argument(
        "--expose", action="append", default=[], metavar="PORT[/PROTO]", help="expose a port (for -P)"
    )
    p.add_argument("--hostname", "-h", dest="hostname", default="", help="container host name")
    p.add_argument("--ip", default="", help="IPv4 address for the container")
    p.add_argument("--ip6", default="", help="IPv6 address for the container")
    p.add_argument(
        "--network-alias",
        action="append",
        default=[],
        metavar="NAME",
        help="a name for the container on its network",
    )
    p.add_argument("--dns", action="append", default=[], metavar="IP", help="a DNS server for the container")
    p.add_argument("--dns-search", action="append", default=[], metavar="DOMAIN", help="a DNS search domain")
    p.add_argument("--dns-option", action="append", default=[], metavar="OPT", help="a resolv.conf option")
    p.add_argument(
        "-e", "--env", action="append", default=[], metavar="K=V", help="set an environment variable"
    )
    p.add_argument(
        "-w", "--workdir", default="", metavar="DIR", help="working directory inside the container"
    )
    p.add_argument(
        "-u", "--user", default="", metavar="USER[:GROUP]", help="username or UID, optionally a group or GID"
    )
    p.add_argument(
        "--group-add", action="append", default=[], metavar="GROUP", help="add a supplementary group"
    )
    p.add_argument(
        "--cap-add", action="append", default=[], metavar="CAP", help="add a Linux capability (or ALL)"
    )
    p.add_argument(
        "--cap-drop", action="append", default=[], metavar="CAP", help="drop a Linux capability (or ALL)"
    )
    p.add_argument(
        "--privileged", action="store_true", help="give extended privileges: every capability and device"
    )
    p.add_argument(
        "--security-opt",
        action="append",
        default=[],
        metavar="OPT",
        help="security option: no-new-privileges[:true|false]",
    )
    p.add_argument(
        "--init", action="store_true", help="run an init inside the container that forwards signals and reaps"
    )
    p.add_argument(
        "--pids-limit",
        type=int,
        default=None,
        metavar="N",
        help="tune the container's pids limit (-1: unlimited)",
    )
    p.add_argument(
        "-i",
        "--interactive",
        action="store_true",
        help="accepted for Docker compatibility: stdin is always attached",
    )
    p.add_argument(
        "-t",
        "--tty",
        action="store_true",
        help="accepted for Docker compatibility: the caller's terminal is used",
    )
    run_fields.add_arguments(p)
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD [ARG...]")
    p.set_defaults(func=cmd_run)

    e = sub.add_parser("exec", help="run a command in a running container")
    e.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
    e.add_argument("-w", "--workdir", default="", metavar="DIR")
    e.add_argument("-i", "--interactive", action="store_true", help="accepted for Docker compatibility")
    e.add_argument("-t", "--tty", action="store_true", help="accepted for Docker compatibility")
    e.add_argument("container")
    e.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD [ARG...]")
    e.set_defaults(func=cmd_exec)


def _env(items: list[str]) -> list[str]:
    out = []
    for item in items:
        if "=" in item:
            if item.startswith("="):
                raise InvalidArgument(f"invalid environment variable {item!r}: the name is empty")
            out.append(item)
        elif item in os.environ:
            # Docker's `-e NAME`: take the value from the client's environment.
            out.append(f"{item}={os.environ[item]}")
    return out


def _command(words: list[str]) -> list[str]:
    if words and words[0] == "--":
        words = words[1:]
    return words


def _bracketed(body: str) -> list[str]:
    """[IPv6]:HOSTPORT:CPORT as its three parts; anything else whole, for the daemon to refuse."""
    ip, bracket, rest = body[1:].partition("]")
    parts = rest[1:].split(":") if bracket and rest.startswith(":") else []
    return [ip, *parts] if len(parts) == 2 else [body]


def _port_bindings(specs: list[str]) -> dict[str, list[dict[str, str]]]:
    """-p specs to Docker's HostConfig.PortBindings; the daemon validates them."""
    out: dict[str, list[dict[str, str]]] = {}
    for spec in specs:
        body, slash, proto = spec.partition("/")
        parts = body.rsplit(":", 2) if not body.startswith("[") else _bracketed(body)
        container = parts[-1] + (slash + proto if slash else "")
        host_port = parts[-2] if len(parts) >= 2 else ""
        host_ip = parts[-3] if len(parts) == 3 else ""
        # The one check the daemon cannot make: PortBindings says ':80' as it says '80'.
        if len(parts) == 2 and host_port == "":
            raise InvalidArgument(f"invalid port spec {spec!r}: no host port before ':'")
        out.setdefault(container, []).append({"HostIp": host_ip, "HostPort": host_port})
    return out


def _stdio_fds() -> list[int]:
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            fd = os.open(os.devnull, os.O_RDWR)
        fds.append(fd)
    return fds


def cmd_run(client: Any, args: argparse.Namespace) -> int:
    command = _command(args.command)
    if not command:
        raise InvalidArgument("'dockyard run' requires a command to run: dockyard run [OPTIONS] CMD [ARG...]")
    networks = args.network or ["bridge"]
    args.network = networks[0]
    body: dict[str, Any] = {
        "Cmd": command,
        "Env": _env(args.env),
        "WorkingDir": args.workdir,
        "Hostname": args.hostname,
        "User": args.user,
        "AttachStdout": not args.detach,
        "ExposedPorts": {p: {} for p in args.expose},
        "HostConfig": {
            "NetworkMode": args.network,
            "PortBindings": _port_bindings(args.publish),
            "PublishAllPorts": args.publish_all,
            "AutoRemove": args.rm,
            "Dns": args.dns,
            "DnsSearch": args.dns_search,
            "DnsOptions": args.dns_option,
            "GroupAdd": args.group_add,
            "CapAdd": args.cap_add,
            "CapDrop": args.cap_drop,
            "Privileged": args.privileged,
            "SecurityOpt": args.security_opt,
            "Init": args.init,
            "PidsLimit": args.pids_limit,
        },
    }
    if args.ip or args.ip6 or args.network_alias:
        endpoint: dict[str, Any] = {}
        if args.ip or args.ip6:
            endpoint["IPAMConfig"] = ({"IPv4Address": args.ip} if args.ip else {}) | (
                {"IPv6Address": args.ip6} if args.ip6 else {}
            )
        if args.network_alias:
            endpoint["Aliases"] = args.network_alias
        body["NetworkingConfig"] = {"EndpointsConfig": {args.network: endpoint}}
    run_fields.apply(body, args, networks)
    created = client.create(body, args.name)
    for warning in created.get("Warnings") or []:
        print(f"WARNING: {warning}", file=sys.stderr)
    cid = created["Id"]
    if args.detach:
        try:
            client.start(cid)
        except DockyardError as e:
            _undo_create(client, cid, e)
            raise
        print(cid)
        return 0
    return _run_foreground(client, cid, args.rm)


def _undo_create(client: Any, cid: str, error: DockyardError) -> None:
    # Bad input changes nothing; a command that cannot run stays recorded, as with Docker.
    if error.exit_code == 125:
        try:  # noqa: SIM105 - no contextlib import in the client
            client.remove(cid, force=True)
        except DockyardError:
            pass  # already gone


def _run_foreground(client: Any, cid: str, auto_remove: bool) -> int:
    waiter = client.deferred(
        "POST", f"/containers/{cid}/wait", {"condition": "removed" if auto_remove else "next-exit"}
    )

    def forward(signum: int, _frame: Any) -> None:
        from dockyard.clients.api import Client

        other = Client(client.paths.root, autostart=False)
        try:  # noqa: SIM105 - no contextlib import in the client
            other.kill(cid, signum)
        except (DockyardError, OSError):
            pass  # the container may have ended meanwhile
        other.close()

    previous = {s: signal.signal(s, forward) for s in FORWARDED_SIGNALS}
    try:
        try:
            client.start(cid, fds=_stdio_fds())
        except DockyardError as e:
            waiter.close()
            _undo_create(client, cid, e)
            raise
        client.close()
        result = client.deferred_result(waiter)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    error = result.get("Error")
    if error:
        raise DockyardError(str(error.get("Message", error)) if isinstance(error, dict) else str(error))
    return int(result.get("StatusCode", 0))


def cmd_exec(client: Any, args: argparse.Namespace) -> int:
    command = _command(args.command)
    if not command:
        raise InvalidArgument("'dockyard exec' requires a command: dockyard exec CONTAINER CMD [ARG...]")
    exec_id = client.exec_create(args.container, command, _env(args.env), args.workdir)
    return client.exec_run(exec_id, fds=_stdio_fds())

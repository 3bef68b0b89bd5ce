"""ps, inspect, logs, stop, rm, port: reading and ending containers."""

from __future__ import annotations

import argparse
import sys

from dockyard.clients.cli import container_verbs, output
from dockyard.errors import DockyardError, InvalidArgument, NotFound

TYPE_CHECKING = False  # typing is not imported at run time: clients start faster
if TYPE_CHECKING:
    from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("ps", help="list containers")
    p.add_argument("-a", "--all", action="store_true", help="show all containers (default: running)")
    p.add_argument("-q", "--quiet", action="store_true", help="only ids")
    p.add_argument("--no-trunc", action="store_true", help="full ids and commands")
    p.add_argument(
        "-f", "--filter", action="append", default=[], metavar="KEY=VALUE", help="Docker's ps filters"
    )
    p.add_argument("-n", "--last", type=int, default=-1, metavar="N", help="the last N created (all states)")
    p.set_defaults(func=cmd_ps)

    p = sub.add_parser("inspect", help="low-level information on containers (JSON)")
    p.add_argument("refs", nargs="+", metavar="NAME|ID")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("logs", help="a detached container's output")
    p.add_argument("ref", metavar="NAME|ID")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("stop", help="stop containers: SIGTERM, then SIGKILL after a grace period")
    p.add_argument(
        "-t", "--time", type=int, default=None, metavar="SECONDS", help="grace period (default 10)"
    )
    p.add_argument("refs", nargs="+", metavar="NAME|ID")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("kill", help="send a signal to containers (default SIGKILL)")
    p.add_argument("-s", "--signal", default="SIGKILL")
    p.add_argument("refs", nargs="+", metavar="NAME|ID")
    p.set_defaults(func=cmd_kill)

    p = sub.add_parser("rm", help="remove containers")
    p.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    p.add_argument("refs", nargs="+", metavar="NAME|ID")
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("port", help="list a container's published ports")
    p.add_argument("ref", metavar="NAME|ID")
    p.add_argument("private", nargs="?", metavar="CPORT[/PROTO]")
    p.set_defaults(func=cmd_port)


def _each(refs: list[str], fn: Any) -> int:
    """Docker's multi-target commands: do each, report each failure, fail at the end."""
    failed = 0
    for ref in refs:
        try:
            fn(ref)
        except DockyardError as e:
            print(f"dockyard: {output.one_line(e)}", file=sys.stderr)
            failed = e.exit_code
    return failed


def cmd_ps(client: Any, args: argparse.Namespace) -> int:
    query = {**container_verbs.filters_query(args.filter), **({"all": "1"} if args.all else {})}
    if args.last >= 0:
        query["limit"] = str(args.last)
    items = client.request("GET", "/containers/json", query=query or None)
    if args.quiet:
        for c in items:
            print(c["Id"] if args.no_trunc else c["Id"][:12])
        return 0
    rows = []
    for c in items:
        command = c["Command"] if args.no_trunc else output.quoted_command(c["Command"])
        networks = ",".join(c["NetworkSettings"]["Networks"]) or c["HostConfig"]["NetworkMode"]
        rows.append(
            [
                c["Id"] if args.no_trunc else c["Id"][:12],
                c["Names"][0].lstrip("/"),
                command,
                c["Status"],
                output.ports_text(c["Ports"]),
                networks,
            ]
        )
    output.table(["CONTAINER ID", "NAME", "COMMAND", "STATUS", "PORTS", "NETWORK"], rows, sys.stdout)
    return 0


def cmd_inspect(client: Any, args: argparse.Namespace) -> int:
    found, failed = [], 0
    for ref in args.refs:
        try:
            found.append(client.inspect(ref))
        except NotFound as e:
            print(f"dockyard: {output.one_line(e)}", file=sys.stderr)
            failed = e.exit_code
    output.json_array(found, sys.stdout)
    return failed


def cmd_logs(client: Any, args: argparse.Namespace) -> int:
    # Docker's way: what the container wrote to stderr goes to stderr.
    for stream, data in client.logs(args.ref):
        out = sys.stderr if stream == 2 else sys.stdout
        out.buffer.write(data)
        out.flush()
    return 0


def cmd_stop(client: Any, args: argparse.Namespace) -> int:
    if args.time is not None and args.time < 0:
        raise InvalidArgument("invalid -t: the grace period cannot be negative")

    def stop(ref: str) -> None:
        client.stop(ref, args.time)
        print(ref)

    return _each(args.refs, stop)


def cmd_kill(client: Any, args: argparse.Namespace) -> int:
    def kill(ref: str) -> None:
        client.kill(ref, args.signal)
        print(ref)

    return _each(args.refs, kill)


def cmd_rm(client: Any, args: argparse.Namespace) -> int:
    def rm(ref: str) -> None:
        client.remove(ref, force=args.force)
        print(ref)

    return _each(args.refs, rm)


def cmd_port(client: Any, args: argparse.Namespace) -> int:
    info = client.inspect(args.ref)
    ports = info["NetworkSettings"]["Ports"] or {}
    wanted = None
    if args.private:
        wanted = args.private if "/" in args.private else args.private + "/tcp"
    lines = []
    for key, binds in sorted(ports.items(), key=lambda kv: (int(kv[0].split("/")[0]), kv[0])):
        if wanted and key != wanted:
            continue
        for b in binds or []:
            # Docker's way: an IPv6 address in brackets, [::]:8080.
            host = f"[{b['HostIp']}]" if ":" in b["HostIp"] else b["HostIp"]
            lines.append(f"{host}:{b['HostPort']}" if wanted else f"{key} -> {host}:{b['HostPort']}")
    if wanted and not lines:
        raise NotFound(f"no public port '{wanted}' published for {args.ref}")
    for line in lines:
        print(line)
    return 0

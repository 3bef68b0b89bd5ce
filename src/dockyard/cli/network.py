"""dockyard network ls|inspect."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dockyard.cli import output
from dockyard.errors import NotFound


def register(sub: Any) -> None:
    net = sub.add_parser("network", help="manage networks")
    nsub = net.add_subparsers(dest="network_command", metavar="COMMAND", parser_class=type(net))
    net.set_defaults(func=lambda client, args: (net.print_help(), 0)[1])

    p = nsub.add_parser("ls", aliases=["list"], help="list networks")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="name=VALUE")
    p.set_defaults(func=cmd_ls)

    p = nsub.add_parser("inspect", help="networks as JSON")
    p.add_argument("refs", nargs="+", metavar="NETWORK")
    p.set_defaults(func=cmd_inspect)


def cmd_ls(client: Any, args: argparse.Namespace) -> int:
    names = []
    for f in args.filter:
        key, _, value = f.partition("=")
        if key != "name":
            from dockyard.errors import InvalidArgument

            raise InvalidArgument(f"invalid filter {f!r}: only name=VALUE is supported")
        names.append(value)
    nets = client.networks(names or None)
    if args.quiet:
        for n in nets:
            print(n["Id"] if args.no_trunc else n["Id"][:12])
        return 0
    rows = [[n["Id"] if args.no_trunc else n["Id"][:12], n["Name"], n["Driver"], n["Scope"]] for n in nets]
    output.table(["NETWORK ID", "NAME", "DRIVER", "SCOPE"], rows, sys.stdout)
    return 0


def cmd_inspect(client: Any, args: argparse.Namespace) -> int:
    found, failed = [], 0
    for ref in args.refs:
        try:
            found.append(client.network_inspect(ref))
        except NotFound as e:
            print(f"dockyard: {e}", file=sys.stderr)
            failed = e.exit_code
    output.json_array(found, sys.stdout)
    return failed

"""dockyard network ls|inspect|create|rm|prune|connect|disconnect."""

from __future__ import annotations

import argparse
import sys

from dockyard.clients.cli import output
from dockyard.errors import DockyardError, InvalidArgument, NotFound

TYPE_CHECKING = False  # typing is not imported at run time: clients start faster
if TYPE_CHECKING:
    from typing import Any


def register(sub: Any) -> None:
    net = sub.add_parser("network", help="manage networks")
    nsub = net.add_subparsers(dest="network_command", metavar="COMMAND", parser_class=type(net))
    net.set_defaults(func=lambda client, args: (net.print_help(), 0)[1])

    p = nsub.add_parser("ls", aliases=["list"], help="list networks")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    keys = "name, id, driver, type (builtin|custom), label"
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE", help=keys)
    p.set_defaults(func=cmd_ls)

    p = nsub.add_parser("inspect", help="networks as JSON")
    p.add_argument("refs", nargs="+", metavar="NETWORK")
    p.set_defaults(func=cmd_inspect)

    p = nsub.add_parser("create", help="create a network")
    p.add_argument("-d", "--driver", default="bridge")
    p.add_argument("--subnet", default="", metavar="CIDR")
    p.add_argument("--gateway", default="", metavar="IP")
    p.add_argument("--ip-range", default="", metavar="CIDR")
    p.add_argument("--aux-address", action="append", default=[], metavar="NAME=IP")
    p.add_argument("--internal", action="store_true", help="no route out, nothing masqueraded")
    p.add_argument("--attachable", action="store_true", help="containers may attach (always so)")
    p.add_argument("--label", action="append", default=[], metavar="K=V")
    p.add_argument("-o", "--opt", action="append", default=[], metavar="K=V", help="driver option")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_create)

    p = nsub.add_parser("rm", aliases=["remove"], help="remove networks")
    p.add_argument("refs", nargs="+", metavar="NETWORK")
    p.set_defaults(func=cmd_rm)

    p = nsub.add_parser("prune", help="remove every unused user network")
    p.add_argument("-f", "--force", action="store_true", help="accepted for Docker compatibility")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE", help="label, label!, until")
    p.set_defaults(func=cmd_prune)

    p = nsub.add_parser("connect", help="connect a running container to a network")
    p.add_argument("--ip", default="")
    p.add_argument("--alias", action="append", default=[], metavar="NAME")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=cmd_connect)

    p = nsub.add_parser("disconnect", help="disconnect a container from a network")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=cmd_disconnect)


def cmd_ls(client: Any, args: argparse.Namespace) -> int:
    filters: dict[str, list[str]] = {}
    for f in args.filter:
        key, sep, value = f.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"invalid filter {f!r}: expected KEY=VALUE")
        filters.setdefault(key, []).append(value)
    nets = client.networks(filters or None)
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
            print(f"dockyard: {output.one_line(e)}", file=sys.stderr)
            failed = e.exit_code
    output.json_array(found, sys.stdout)
    return failed


def _pairs(items: list[str], flag: str, bare: bool = False) -> dict[str, str]:
    """KEY=VALUE items; bare: a KEY alone is KEY="" (Docker's `--opt encrypted`)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if (not sep and not bare) or not key:
            raise InvalidArgument(f"invalid {flag} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def cmd_create(client: Any, args: argparse.Namespace) -> int:
    ipam_config: dict[str, Any] = {}
    if args.subnet:
        ipam_config["Subnet"] = args.subnet
    if args.gateway:
        ipam_config["Gateway"] = args.gateway
    if args.ip_range:
        ipam_config["IPRange"] = args.ip_range
    if args.aux_address:
        ipam_config["AuxiliaryAddresses"] = _pairs(args.aux_address, "--aux-address")
    body = {
        "Name": args.name,
        "Driver": args.driver,
        "Internal": args.internal,
        "Attachable": args.attachable,
        "Labels": _pairs(args.label, "--label"),
        "Options": _pairs(args.opt, "--opt", bare=args.driver == "overlay"),
        "IPAM": {"Driver": "default", "Config": [ipam_config] if ipam_config else []},
    }
    print(client.request("POST", "/networks/create", body)["Id"])
    return 0


def cmd_rm(client: Any, args: argparse.Namespace) -> int:
    failed = 0
    for ref in args.refs:
        try:
            client.request("DELETE", f"/networks/{output.quote(ref)}")
            print(ref)
        except DockyardError as e:
            print(f"dockyard: {output.one_line(e)}", file=sys.stderr)
            failed = e.exit_code
    return failed


def cmd_prune(client: Any, args: argparse.Namespace) -> int:
    from dockyard.clients.cli import container_verbs  # not at import: `--help` stays light

    query = container_verbs.filters_query(args.filter) or None
    removed = client.request("POST", "/networks/prune", query=query)["NetworksDeleted"] or []
    if removed:
        print("Deleted Networks:")
        for name in removed:
            print(name)
    return 0


def cmd_connect(client: Any, args: argparse.Namespace) -> int:
    endpoint: dict[str, Any] = {"Aliases": args.alias}
    if args.ip:
        endpoint["IPAMConfig"] = {"IPv4Address": args.ip}
    client.request(
        "POST",
        f"/networks/{output.quote(args.network)}/connect",
        {"Container": args.container, "EndpointConfig": endpoint},
    )
    return 0


def cmd_disconnect(client: Any, args: argparse.Namespace) -> int:
    client.request(
        "POST",
        f"/networks/{output.quote(args.network)}/disconnect",
        {"Container": args.container, "Force": args.force},
    )
    return 0

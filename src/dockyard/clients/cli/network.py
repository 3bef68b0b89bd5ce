"""dockyard network ls|inspect|create|rm|prune|connect|disconnect."""

from __future__ import annotations

import argparse
import sys

from dockyard.clients.cli import output
from dockyard.errors import DockyardError, InvalidArgument, NotFound

TYPE_CHECKING = False  # typing is not imported at run time: clients start faster
if TYPE_CHECKING:
    import ipaddress
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
    # Each may be given once per family; gateways, ranges and aux addresses go with the
    # subnet that holds them (Docker's CLI pairs them so).
    p.add_argument("--subnet", action="append", default=[], metavar="CIDR")
    p.add_argument("--gateway", action="append", default=[], metavar="IP")
    p.add_argument("--ip-range", action="append", default=[], metavar="CIDR")
    # Docker's boolean flags: --ipv6 alone, or --ipv6=true|false (never taking the next word,
    # which is the network's name); the explicit forms are options of their own.
    for family, default in (("ipv6", False), ("ipv4", True)):
        p.add_argument(
            f"--{family}",
            action="store_true",
            default=default,
            help=f"enable {family[:2].upper()}{family[2:]}",
        )
        for word, value in (("true", True), ("1", True), ("false", False), ("0", False)):
            p.add_argument(
                f"--{family}={word}", dest=family, action="store_const", const=value, help=argparse.SUPPRESS
            )
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
    p.add_argument("--ip6", default="")
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


def _network_of(text: str, flag: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    import ipaddress  # not at import: `--help` stays light

    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid {flag} {text!r}: expected a CIDR such as 10.1.0.0/24") from None


def _ipam_configs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """--subnet, --gateway, --ip-range and --aux-address as IPAM.Config entries: one per subnet,
    each other value with the subnet that holds it (the daemon checks the rest)."""
    configs: list[dict[str, Any]] = [{"Subnet": s} for s in args.subnet]
    nets = [_network_of(s, "--subnet") for s in args.subnet]

    def owner(value: str, flag: str, key: str) -> dict[str, Any]:
        """The entry a value goes with: the subnet of its family that holds it, else the
        first of its family (the daemon then says why it does not fit)."""
        where = _network_of(value, flag)
        family = [(cfg, net) for cfg, net in zip(configs, nets, strict=True) if net.version == where.version]
        free = [(cfg, net) for cfg, net in family if not key or key not in cfg]
        for cfg, net in free:
            if where.subnet_of(net):  # type: ignore[arg-type]
                return cfg
        if free:
            return free[0][0]
        if not configs:
            raise InvalidArgument(f"{flag} {value} needs a --subnet")
        raise InvalidArgument(f"no matching subnet for {flag} {value}")

    for gateway in args.gateway:
        owner(gateway, "--gateway", "Gateway")["Gateway"] = gateway
    for ip_range in args.ip_range:
        owner(ip_range, "--ip-range", "IPRange")["IPRange"] = ip_range
    for name, address in _pairs(args.aux_address, "--aux-address").items():
        owner(address, "--aux-address", "").setdefault("AuxiliaryAddresses", {})[name] = address
    return configs


def cmd_create(client: Any, args: argparse.Namespace) -> int:
    body = {
        "Name": args.name,
        "Driver": args.driver,
        "Internal": args.internal,
        "Attachable": args.attachable,
        "Labels": _pairs(args.label, "--label"),
        "Options": _pairs(args.opt, "--opt", bare=args.driver == "overlay"),
        "IPAM": {"Driver": "default", "Config": _ipam_configs(args)},
        "EnableIPv6": args.ipv6,
        "EnableIPv4": args.ipv4,
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
    if args.ip or args.ip6:
        endpoint["IPAMConfig"] = ({"IPv4Address": args.ip} if args.ip else {}) | (
            {"IPv6Address": args.ip6} if args.ip6 else {}
        )
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

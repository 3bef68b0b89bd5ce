"""restart, rename, top and container prune; --filter's KEY=VALUE as the API's JSON."""

from __future__ import annotations

import argparse
import sys

from dockyard.clients.cli import output
from dockyard.errors import DockyardError, InvalidArgument

TYPE_CHECKING = False  # typing is not imported at run time: clients start faster
if TYPE_CHECKING:
    from typing import Any


def filters_query(items: list[str]) -> dict[str, str]:
    """-f KEY=VALUE ... to the `filters` query Docker's API takes ({"KEY": ["VALUE", ...]})."""
    wanted: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"bad format of filter (expected name=value): {item}")
        wanted.setdefault(key, []).append(value)
    import json  # not at import: `--help` stays light

    return {"filters": json.dumps(wanted)} if wanted else {}


def register(sub: Any) -> None:
    p = sub.add_parser("restart", help="stop then start containers")
    p.add_argument("-t", "--time", type=int, default=None, metavar="SECONDS", help="stop's grace period")
    p.add_argument("refs", nargs="+", metavar="NAME|ID")
    p.set_defaults(func=cmd_restart)

    p = sub.add_parser("rename", help="rename a container")
    p.add_argument("ref", metavar="CONTAINER")
    p.add_argument("name", metavar="NEW_NAME")
    p.set_defaults(func=cmd_rename)

    p = sub.add_parser("top", help="a running container's processes")
    p.add_argument("ref", metavar="CONTAINER")
    p.add_argument("ps_args", nargs=argparse.REMAINDER, metavar="PS OPTIONS")
    p.set_defaults(func=cmd_top)

    c = sub.add_parser("container", help="manage containers")
    csub = c.add_subparsers(dest="container_cmd", metavar="COMMAND", required=True)
    p = csub.add_parser("prune", help="remove every stopped container")
    p.add_argument("-f", "--force", action="store_true", help="accepted for Docker compatibility")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE", help="label, label!, until")
    p.set_defaults(func=cmd_prune)


def cmd_restart(client: Any, args: argparse.Namespace) -> int:
    failed = 0
    for ref in args.refs:
        try:
            query = {"t": args.time} if args.time is not None else None
            client.request("POST", f"/containers/{output.quote(ref)}/restart", query=query)
            print(ref)
        except DockyardError as e:
            print(f"dockyard: {output.one_line(e)}", file=sys.stderr)
            failed = e.exit_code
    return failed


def cmd_rename(client: Any, args: argparse.Namespace) -> int:
    client.request("POST", f"/containers/{output.quote(args.ref)}/rename", query={"name": args.name})
    return 0


def cmd_top(client: Any, args: argparse.Namespace) -> int:
    query = {"ps_args": " ".join(args.ps_args)} if args.ps_args else None
    answer = client.request("GET", f"/containers/{output.quote(args.ref)}/top", query=query)
    output.table(answer["Titles"], answer["Processes"] or [], sys.stdout)
    return 0


def cmd_prune(client: Any, args: argparse.Namespace) -> int:
    answer = client.request("POST", "/containers/prune", query=filters_query(args.filter) or None)
    removed = answer.get("ContainersDeleted") or []
    if removed:
        print("Deleted Containers:")
        for cid in removed:
            print(cid)
    return 0

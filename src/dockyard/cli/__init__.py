"""dockyard: the command line, a thin client of dockyardd.

argparse and the stdlib only (a test checks that neither pyroute2 nor
nftables is loaded). `main(argv)` returns the exit code: 125 for dockyard's
own errors, 126/127 when the container's command cannot run or is not
found, else the command's own status. Errors print one line,
`dockyard: <message>`; tracebacks only with --debug.
"""

from __future__ import annotations

import argparse
import os
import sys

from dockyard.errors import DockyardError, InvalidArgument

EXIT_USAGE = 125


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as dockyard errors (exit 125, one line)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> Parser:
    from dockyard.cli import containers, daemon, network, run

    p = Parser(prog="dockyard", description="Run processes as containers, wired up the way Docker does.")
    p.add_argument("--root", help="state directory (env DOCKYARD_ROOT, default /var/lib/dockyard)")
    p.add_argument(
        "--host-netns", metavar="NAME|PATH", help="work as if this network namespace were the host"
    )
    p.add_argument("--bridge", metavar="NAME", help="the default bridge's name (default dockyard0)")
    p.add_argument(
        "--bip", metavar="CIDR", help="the default bridge's address with prefix, e.g. 10.10.0.1/24"
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    run.register(sub)
    containers.register(sub)
    network.register(sub)
    daemon.register(sub)
    return p


def make_client(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from dockyard.client import Client

    return Client(args.root, args.host_netns, args.bridge, args.bip, args.debug)


def _check_root() -> None:
    if os.geteuid() != 0:
        raise DockyardError(
            "dockyard needs root: it manages network namespaces, links and nftables (run it with sudo)"
        )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = False
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        debug = args.debug
        if args.command is None:
            parser.print_help()
            return 0
        if getattr(args, "needs_root", True):
            _check_root()
        client = make_client(args)
        if (args.bridge or args.bip) and args.command not in ("daemon",):
            _apply_default_bridge(client, args)
        return int(args.func(client, args) or 0)
    except UsageError as e:
        print(f"dockyard: {e}", file=sys.stderr)
        return EXIT_USAGE
    except DockyardError as e:
        if debug:
            raise
        print(f"dockyard: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        # Outside the daemon: an unusable --root, a vanished socket, ...
        if debug:
            raise
        where = f" ({e.filename})" if e.filename else ""
        print(f"dockyard: {e.strerror or e}{where}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def _apply_default_bridge(client, args: argparse.Namespace) -> None:  # type: ignore[no-untyped-def]
    # A daemon already running keeps its settings unless these flags change them.
    if args.bip and "/" not in args.bip:
        raise InvalidArgument(f"invalid --bip {args.bip!r}: the prefix length is missing (e.g. /24)")
    client.configure_default_bridge(args.bridge, args.bip)


def entry() -> None:
    sys.exit(main())

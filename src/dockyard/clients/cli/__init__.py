"""dockyard: the command line, a thin client of dockyardd.

argparse and the stdlib only (a test checks that neither pyroute2 nor
nftables is loaded). `main(argv)` returns the exit code: 125 for dockyard's
own errors, 126/127 when the container's command cannot run or is not
found, else the command's own status. Errors print one line,
`dockyard: <message>`; tracebacks only with --debug.
"""

from __future__ import annotations

import os
import sys

from dockyard.clients import leave
from dockyard.clients.cli import top_help
from dockyard.clients.cli.output import one_line
from dockyard.errors import DockyardError, InvalidArgument

TYPE_CHECKING = False  # importing typing would cost every command
if TYPE_CHECKING:
    import argparse
    from typing import Any

EXIT_USAGE = 125


class UsageError(Exception):
    pass


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser of the command named in argv (of every command when argv is None)."""
    from dockyard.clients.cli import parser

    return parser.build_parser(argv)


def make_client(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from dockyard.clients.api import Client

    return Client(args.root, args.host_netns, args.bridge, args.bip, args.debug)


def _check_root() -> None:
    if os.geteuid() != 0:
        raise DockyardError(
            "dockyard needs root: it manages network namespaces, links and nftables (run it with sudo)"
        )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = False
    root_option = None
    try:
        if top_help.wanted(argv):
            # Printed without argparse where its layout is proven (top_help.py).
            text = top_help.render(top_help.terminal_width() - 2)
            if text is not None:
                sys.stdout.write(text)
                return 0
        args: Any = None  # argparse's Namespace, or quick.py's equal of it
        if "run" in argv:  # a plain `run` is read without argparse (quick.py)
            from dockyard.clients.cli.quick import parse_run

            args = parse_run(argv)
        if args is None:
            from dockyard.clients.cli.parser import Rebuild

            parser = build_parser(argv)
            try:
                args = parser.parse_args(argv)
            except Rebuild:
                parser = build_parser()
                args = parser.parse_args(argv)
            if args.command is None:
                parser.print_help()
                return 0
        debug = args.debug
        root_option = args.root
        if getattr(args, "needs_root", True):
            _check_root()
        client = make_client(args)
        if (args.bridge or args.bip) and args.command not in ("daemon",):
            _apply_default_bridge(client, args)
        return int(args.func(client, args) or 0)
    except UsageError as e:
        print(f"dockyard: {one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except DockyardError as e:
        if debug:
            raise
        print(f"dockyard: {one_line(e)}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        if isinstance(e, BrokenPipeError) and _stdout_closed():
            # `dockyard ps | head -1`: the reader left; nothing is wrong, nothing more to say.
            # The interpreter flushes stdout at exit: point it at /dev/null first.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        # Outside the daemon: an unusable --root, a vanished socket, ...
        if debug:
            raise
        print(f"dockyard: {one_line(_os_error_message(e, root_option))}", file=sys.stderr)
        return EXIT_USAGE
    except UnicodeEncodeError as e:
        # A name or reference from bytes that are not UTF-8 (the shell's $'\xff'): it
        # cannot go into the API's URL, and no name of dockyard's holds it anyway.
        if debug:
            raise
        text = one_line(repr(e.object))
        print(f"dockyard: invalid argument {text}: it is not valid UTF-8", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _stdout_closed() -> bool:
    """Whether our stdout is a pipe whose reader is gone (poll reports an error on it)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (OSError, ValueError):
        return False


def _os_error_message(e: OSError, root_option: str | None) -> str:
    """An OSError met in the client, with what to do about it."""
    from dockyard import locations

    root = locations.root_dir(root_option)
    what = e.strerror or str(e)
    name = os.fsdecode(e.filename) if e.filename else ""
    if name and (name == root or name.startswith(root + "/") or root.startswith(name.rstrip("/") + "/")):
        # The state directory (or the way to it) cannot be made or used.
        return (
            f"cannot use {root} as dockyard's state directory: {what} ({name}); "
            "choose another with --root DIR (or DOCKYARD_ROOT)"
        )
    where = f" ({name})" if name else ""
    return f"{what}{where}; run again with --debug to see where"


def _apply_default_bridge(client, args: argparse.Namespace) -> None:  # type: ignore[no-untyped-def]
    # A daemon already running keeps its settings unless these flags change them.
    if args.bip and "/" not in args.bip:
        raise InvalidArgument(f"invalid --bip {args.bip!r}: the prefix length is missing (e.g. /24)")
    client.configure_default_bridge(args.bridge, args.bip)


def entry() -> None:
    leave(main())

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

from dockyard.clients.cli.output import one_line
from dockyard.errors import DockyardError, InvalidArgument

EXIT_USAGE = 125


class UsageError(Exception):
    pass


def _terminal_width() -> int:
    """shutil.get_terminal_size()'s columns, without importing shutil (and bz2, lzma, fnmatch)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class Formatter(argparse.HelpFormatter):
    """argparse's formatter, told the width: its own way of asking imports shutil."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(prog, indent_increment, max_help_position, width or _terminal_width() - 2)


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as dockyard errors (exit 125, one line)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> object:
        # `--name=--`: argparse drops the "--" and hands the action [] for a string, a
        # traceback further on. No option of dockyard's takes "--" as its value.
        if action.option_strings and arg_strings == ["--"]:
            self.error(f"argument {'/'.join(action.option_strings)}: expected one argument, not '--'")
        return super()._get_values(action, arg_strings)  # type: ignore[misc]


GLOBAL_OPTIONS_WITH_VALUE = ("--root", "--host-netns", "--bridge", "--bip")


def command_word(argv: list[str]) -> str | None:
    """The command named in argv, after the global options; None if there is none."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in GLOBAL_OPTIONS_WITH_VALUE:
            i += 2
            continue
        if word.startswith("-"):
            i += 1
            continue
        return word
    return None


class _Ignored:
    """Stands in for the parsers of commands that were not asked for."""

    def __getattr__(self, name: str) -> object:
        return lambda *args, **kwargs: self


class _Rebuild(Exception):
    """argparse chose a command other than the one command_word() found
    (an abbreviated global option, say): parse again with every command built."""


class _Unbuilt:
    """A command's entry in argparse's map while its parser is not built."""

    def parse_known_args(self, *args: object, **kwargs: object) -> object:
        raise _Rebuild


class _OnlyOne:
    """Subparsers that fully build only the command being run.

    Building every command's arguments costs ~12 ms, a fifth of a `run`, and
    even a bare parser per command ~0.2 ms each (some 40 of them, for
    `dockyard --help`): the others get only their line in argparse's help
    and a name in its choices. wanted None builds them all; "" (no command
    named: `dockyard --help`) none.
    """

    def __init__(self, sub: argparse._SubParsersAction, wanted: str | None) -> None:  # type: ignore[type-arg]
        self._sub = sub
        self._wanted = wanted

    def add_parser(self, name: str, **kwargs: object) -> object:
        if self._wanted is None or name == self._wanted:
            return self._sub.add_parser(name, **kwargs)  # type: ignore[arg-type]
        # What add_parser records for the help and the choices, without the parser.
        sub = self._sub
        help_text = kwargs.get("help")
        if help_text is not None:
            sub._choices_actions.append(sub._ChoicesPseudoAction(name, (), help_text))  # type: ignore[attr-defined]
        sub._name_parser_map[name] = _Unbuilt()  # type: ignore[assignment]
        return _Ignored()


def build_parser(argv: list[str] | None = None) -> Parser:
    from dockyard.clients.cli import container_verbs, containers, daemon, explain, images, network, run

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
    real = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub = _OnlyOne(real, (command_word(argv) or "") if argv is not None else None)
    run.register(sub)
    containers.register(sub)
    container_verbs.register(sub)
    network.register(sub)
    daemon.register(sub)
    images.register(sub)
    explain.register(sub)
    return p


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
        parser = build_parser(argv)
        try:
            args = parser.parse_args(argv)
        except _Rebuild:
            parser = build_parser()
            args = parser.parse_args(argv)
        debug = args.debug
        root_option = args.root
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
    sys.exit(main())
